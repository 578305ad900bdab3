"""What every `paintseg` command shares: the app and its command order, options generated from config fields
(:func:`config_options`), the one place bad input becomes a one-line message (:func:`_run`, :func:`_fail`), and the
checks of output paths before any work starts (:func:`_folder`, :func:`_file`)."""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from paintseg import distributed
from paintseg.config import SplitRecipe, title

# The order `paintseg --help` lists commands in: the main job first, then the stages in data-flow order.
COMMAND_ORDER = ("demo", "run", "report", "split", "data", "train", "predict", "evaluate", "generator", "convert",
                 "harmoniser", "place", "generate", "curate", "painting-quality")


class _OrderedGroup(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))

    def invoke(self, ctx):
        """Every command: bad input that a stage did not catch itself (a path that is a file where a folder goes, a
        folder that cannot be written) ends in one line naming the path and the fix, not a traceback."""
        return _run(super().invoke, ctx)


# Plain click help (rich_markup_mode=None): paragraphs re-wrapped to the terminal, no type tag on flags, and every
# option's default shown.
SETTINGS = {"show_default": True, "max_content_width": 100}


def typed(value) -> str:
    """A value as a user types it on the command line: none, on/off, a list as its items."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ", ".join(typed(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={typed(v)}" for k, v in value.items()) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _from(model, field: str) -> str:
    """What --help shows as the default of an option that falls back to a config field (a --config file's value
    replaces it; its --config help says so)."""
    f = model.model_fields[field]
    return "required (here or in the --config file)" if f.is_required() else typed(f.default)


def _field(model, name: str, *flags: str, **extra):
    """An option for the config field ``name`` of ``model``: unset unless given (the --config file's value or the
    field's default applies), its help the field's description: one source for the option and the YAML key."""
    return typer.Option(None, *flags, show_default=False, help=f"{model.model_fields[name].description}  "
                        f"[default: {_from(model, name)}]", **extra)


# Flags of config fields whose option is not simply --field-name (a second spelling kept for older scripts)
FLAGS = {"orient": ("--orient/--upright",), "mask_kinds": ("--mask-kind",), "window": ("--window", "--window-size"),
         "learn_background": ("--learn-background/--ignore-background",),
         "keep_checkpoint": ("--keep-checkpoint/--drop-checkpoint",), "spatial_hint": ("--spatial-hint/--no-spatial-hint",)}


def _option_type(annotation) -> type:
    """The command-line type of a config field: Optional[...] of int, float, bool, str (Literals too) or list[str]."""
    import typing

    import types

    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(annotation) if a is not type(None)) if union else annotation
    if typing.get_origin(kind) is list:
        return Optional[list[str]]
    if typing.get_origin(kind) is typing.Literal:
        return Optional[str]
    return Optional[kind if kind in (int, float, bool) else str]


def _spellable(annotation) -> bool:
    """Whether a command line can spell a field of this type: not a mapping nor a fixed-length pair."""
    import typing

    return all(typing.get_origin(t) not in (dict, tuple) and t not in (dict, tuple)
               for t in (annotation, *typing.get_args(annotation)))


def config_options(model, skip: tuple[str, ...] = ()):
    """Give the decorated command a ``--config FILE`` option and one option per field of ``model`` (all but those
    of ``skip`` and those a command line cannot spell: mappings, pairs), generated from the field: its name, type,
    description, and its default shown, not restated. The command receives ``config=`` the validated model (the
    file's values, or the defaults, with the options given laid over them) instead of those options."""
    import functools
    import inspect

    from paintseg.config import GenerateConfig

    source = ("a run config (its generation section)" if set(model.model_fields) <= set(GenerateConfig.model_fields)
              else "a run folder's config.yaml (its settings section)" if model is not SplitRecipe
              else "the same mapping as a run config's episode.split (paths read from the working directory)")
    declared = dict.fromkeys(n for base in model.__mro__ for n in vars(base).get("__annotations__", {}))
    fields = [n for n in declared if n in model.model_fields and n not in skip  # place, paint, curate order
              and _spellable(model.model_fields[n].annotation)]

    def wrap(fn):
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.name != "config"]
        generated = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                       default=typer.Option(None, help=f"YAML with the {title(model)}, or "
                                                            f"{source}; options here override it."))]
        types = {n: _option_type(model.model_fields[n].annotation) for n in fields}
        generated += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=types[n], default=_field(
            model, n, *FLAGS.get(n, ()), **({"metavar": "<str>, repeatable"} if types[n] == Optional[list[str]]
                                            else {}))) for n in fields]

        @functools.wraps(fn)
        def command(**kwargs):
            options = {n: kwargs.pop(n) for n in fields}
            return fn(config=_configured(model, kwargs.pop("config"), options), **kwargs)

        command.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "config"}
        command.__signature__ = signature.replace(parameters=[
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params] + generated)
        return command
    return wrap


def _configured(model, config: Optional[Path], options: dict):
    """``model`` read from ``config`` (or its defaults) with the command's options that name its fields laid over
    it (``options``: the command's arguments, e.g. ``locals()``; those left unset are None). 'none' given for a field
    that may be null (e.g. ``--encoder-weights none``) sets it to null, as ``null`` does in the YAML."""
    import typing

    from paintseg.config import load_yaml, validate

    def value(name: str, given):
        nullable = type(None) in typing.get_args(model.model_fields[name].annotation)
        if isinstance(given, (tuple, list)):  # a repeatable option; each value may list several, comma-separated
            return [item.strip() for v in given for item in str(v).split(",") if item.strip()]
        return None if nullable and given == "none" else given

    base = _run(load_yaml, config, model).model_dump() if config else {}  # {}: the defaults (or required fields)
    given = {k: value(k, v) for k, v in options.items()
             if k in model.model_fields and v is not None and v != () and v != []}  # () / []: a list option unset
    return _run(validate, {**base, **given}, model, "the options given")


app = typer.Typer(
    help="paintseg: few-shot segmentation of aerial and satellite imagery. Build a few-shot episode from labelled "
    "data, train segmentation models on base + novel classes, predict, and evaluate with the OpenEarthMap "
    "few-shot protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=SETTINGS,
    cls=_OrderedGroup,
)


def group(name: str, help: str) -> typer.Typer:
    """A command group (``paintseg NAME ...``) registered on the app, with the app's help settings."""
    sub = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, context_settings=SETTINGS)
    app.add_typer(sub, name=name)
    return sub


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


# the commands that share their work between the processes `accelerate launch` starts (paintseg.distributed)
MULTI_PROCESS = ("demo", "run", "generate", "train", "generator", "harmoniser")


def _version(value: bool) -> None:
    if value:
        from paintseg import __version__

        typer.echo(f"paintseg {__version__}")
        raise typer.Exit()


@app.callback()
def _launched(ctx: typer.Context, version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print paintseg's version and exit.")) -> None:
    if not sys.stderr.isatty():  # a log file or a pipe: plain lines, not redrawn bars
        from paintseg.progress import plain_lines

        plain_lines()
    if distributed.world_size() > 1 and ctx.invoked_subcommand not in MULTI_PROCESS:
        _fail(f"`paintseg {ctx.invoked_subcommand}` runs in one process, but {distributed.world_size()} were "
              f"started (accelerate launch / torchrun); start it as plain `paintseg {ctx.invoked_subcommand} ...`. "
              f"Commands that use several processes: {', '.join(MULTI_PROCESS)}")


def _run(fn, *args, **kwargs):
    """Call into a stage; bad input (a PaintsegError, whose message names the file and the fix) is printed and the
    command exits with code 2, without a traceback."""
    from paintseg.errors import PaintsegError

    try:
        return fn(*args, **kwargs)
    except PaintsegError as e:
        _fail(str(e))
    except OSError as e:
        message = _os_message(e)
        if message is None:
            raise
        _fail(message)


def _os_message(e: OSError) -> str | None:
    """What a user reads for an OSError their input caused (the path named, the fix), or None for one that is not
    theirs to fix."""
    where = e.filename or "the output folder"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{where}: cannot write here ({e.strerror}); pass an --out folder you may write to (nothing written "
                f"before was changed)")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{where}: no space left on the device ({e.strerror}); free some space or pass an --out folder on "
                f"another disk, then run the same command again: it resumes from what is complete")
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # mkdir on a file, or a path through one
        return (f"{where}: a file is in the way of a folder this command writes ({e.strerror}); pass a folder "
                f"path (new or written by the same command) or move the file")
    if e.errno == errno.EISDIR:
        return f"{where}: is a folder, but a file is written here; pass a file path (e.g. {Path(where).name}.json)"
    if isinstance(e, FileNotFoundError):
        return str(e)
    return None


def _folder(value: Optional[Path]) -> Optional[Path]:
    """An option that names a folder to write: an existing file there is refused before any work starts."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file; this option names a folder to write (new, or one the same "
                                 f"command wrote before, to resume): pass another path or move the file")
    return value


def _file(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """An option that names a file to write: an existing folder there is refused before any work starts."""
    if value is not None and value.is_dir():
        example = value / f"{param.name}{'.png' if param.name in ('figure', 'screenshot') else '.json'}"
        raise typer.BadParameter(f"{value} is a folder; this option names a file to write: pass a file path, e.g. "
                                 f"{example}")
    return value


def _threads() -> None:
    """Choose torch's CPU threads for a heavy command (paintseg.threads) and say what was chosen."""
    from paintseg.threads import configure_threads

    choice = _run(configure_threads)
    typer.secho(f"torch threads: {choice['threads']} ({choice['reason']}; set OMP_NUM_THREADS to override)",
                err=True, dim=True)
