"""The `paintseg` command line: one thin function per subcommand; the work lives in the stage packages."""

from __future__ import annotations

import errno
import glob
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from paintseg import distributed
from paintseg.config import (CurateConfig, GenerateConfig, GeneratorConfig, HarmoniserConfig, PaintConfig, PlaceConfig,
                             TrainConfig, stage_part, title)

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
    return typed(model.model_fields[field].default)


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
              else "a run folder's config.yaml (its settings section)")
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
        if isinstance(given, tuple):  # a repeatable option
            return list(given)
        return None if nullable and given == "none" else given

    base = _run(load_yaml, config, model) if config else model()
    given = {k: value(k, v) for k, v in options.items()
             if k in model.model_fields and v is not None and v != () and v != []}  # () / []: a list option unset
    return _run(validate, {**base.model_dump(), **given}, model, "the options given")


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
data_app = typer.Typer(help="Inspect and validate episodes.", no_args_is_help=True, rich_markup_mode=None,
                       context_settings=SETTINGS)
app.add_typer(data_app, name="data")


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


# ------------------------------------------------------------------------------------------------- split
@app.command()
def split(
    out: Path = typer.Option(..., callback=_folder, help="New episode folder to write (OpenEarthMap few-shot layout)."),
    novel: str = typer.Option(..., help="Novel class name(s), comma-separated; every other class becomes base."),
    dataset: Optional[str] = typer.Option(
        None, help="A built-in dataset (loveda, potsdam, vaihingen, openearthmap) under --root, as released or as "
        "converted by mmsegmentation: its class map, file patterns and groups are built in."),
    root: Optional[Path] = typer.Option(None, help="With --dataset: the folder that holds the dataset."),
    layout: Optional[str] = typer.Option(None, help="With --dataset: release or mmseg (default: the one found)."),
    images: Optional[str] = typer.Option(
        None, help="Glob of the images, e.g. 'data/*/images/*.jpg' (quote it). ** recurses. Not with --dataset."),
    labels: Optional[str] = typer.Option(
        None, help="Glob of the labels; paired with images by file stem (within a group). Not with --dataset."),
    classes: Optional[Path] = typer.Option(
        None, help="classes.json with every class's id, name, role and colour(s) (with --dataset: replaces the "
        "built-in map)."),
    shots: int = typer.Option(5, help="Support images per novel class."),
    seed: int = typer.Option(0, help="Seed for the group assignment and the support choice."),
    group: Optional[str] = typer.Option(
        None, help="Regex on the path naming a group (e.g. 'Tile \\d+'); train, support and query never share a "
        "group, so nearby pixels never leak between training and evaluation."),
    block: Optional[int] = typer.Option(
        None, help="Cut every scene into square spatial blocks of this many pixels that serve as the groups: for a "
        "few large scenes, or one."),
    gap: int = typer.Option(64, help="With --block: pixels between the tiles of neighbouring blocks (no train tile "
                            "touches a support or query tile)."),
    tile: int = typer.Option(512, help="Cut larger images into tiles of this size (0 keeps images whole)."),
    query_fraction: float = typer.Option(0.25, help="Share of the groups used as the query set."),
    min_pixels: int = typer.Option(64, help="Least pixels of a novel class for an image to serve as its support."),
) -> None:
    """Build a few-shot episode from any fully labelled dataset, or a built-in one (--dataset).

    Trainset labels keep the base classes only (novel pixels become background 0), each support label keeps only its
    novel class, query labels keep everything - as in the OpenEarthMap few-shot challenge. Deterministic for a seed.
    The episode is checked as `paintseg data check` checks it before it is complete.
    """
    from paintseg.data.datasets import split_recipe
    from paintseg.data.split import format_summary
    from paintseg.experiment.spec import SplitRecipe
    from paintseg.config import validate

    settings = dict(dataset=dataset, root=str(root) if root else None, layout=layout, images=images, labels=labels,
                    classes=str(classes) if classes else None, novel=[n.strip() for n in novel.split(",") if n.strip()],
                    shots=shots, seed=seed, group=group, block=block, gap=gap, tile=tile, query_fraction=query_fraction,
                    min_pixels=min_pixels)
    recipe = _run(validate, settings, SplitRecipe, "paintseg split")
    summary = _run(split_recipe, recipe, out, echo=typer.echo)
    typer.echo(format_summary(summary))
    typer.echo(f"episode written to {out} (checked: `paintseg data check {out}` passes)")


# ------------------------------------------------------------------------------------------------- data
@data_app.command("check")
def data_check(
    episode: Path = typer.Argument(..., help="Episode folder (train.txt, val.json, trainset/, valset/)."),
    split: str = typer.Option("valset", help="Which evaluation split to check: valset or testset."),
    shots: Optional[int] = typer.Option(None, show_default=False, help="Support images every novel class must have "
                                        "[default: the shots the episode was split for (its split.json), else 5]"),
) -> None:
    """Validate an episode and print every problem; exit code 1 if there is any (an episode that cannot be read at
    all included), 2 for bad options."""
    from paintseg.data.episode import Episode
    from paintseg.errors import PaintsegError

    try:
        ep = Episode(episode, split)
    except PaintsegError as e:
        typer.echo(f"- {e}")
        typer.secho(f"1 problem in {episode}: it cannot be read as an episode", fg=typer.colors.RED)
        raise typer.Exit(1)
    problems, warnings = ep.check(expected_shots=shots)
    for p in problems:
        typer.echo(f"- {p}")
    for w in warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW)
    n = len(ep.train) + len(ep.support_samples) + len(ep.query)
    if problems:
        typer.secho(f"{len(problems)} problem(s) in {episode} ({n} images checked)", fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.secho(f"ok: {episode} ({len(ep.train)} train, {len(ep.support_samples)} support, {len(ep.query)} query "
                f"images; novel classes {', '.join(ep.classes.name(c) for c in ep.classes.novel_ids)})",
                fg=typer.colors.GREEN)


# ------------------------------------------------------------------------------------------------- train
@app.command()
@config_options(TrainConfig)
def train(
    episode: Path = typer.Argument(..., help="Episode folder."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Run folder: config, checkpoints, log and model.pt are written here."),
    synthetic: List[Path] = typer.Option([], metavar="<path>, repeatable",
                                         help="Synthetic set(s) (images/ + labels/) to mix in; repeatable."),
    split: str = typer.Option("valset", help="Which split's support set to train on: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    config: TrainConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Train a segmentation model on base + novel classes: trainset + support set (+ synthetic sets)."""
    from paintseg.data.episode import Episode
    from paintseg.segment.train import train as train_model

    ep = _run(Episode, episode, split)
    _threads()
    _run(train_model, ep, out, config, synthetic=list(synthetic), resume=resume)


# ------------------------------------------------------------------------------------------------- predict
def _expand(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for p in patterns:
        matches = sorted(glob.glob(p, recursive=True)) if any(ch in p for ch in "*?[") else [p]
        if not matches:
            _fail(f"--images {p!r} matched no file; check the pattern (quote it so the shell does not expand it)")
        paths.extend(Path(m) for m in matches)
    return paths


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run folder written by `paintseg train` (holds model.pt)."),
    out: Path = typer.Option(..., callback=_folder, help="Folder for the predicted labels (+ color/ previews)."),
    images: List[str] = typer.Option([], metavar="<path or glob>, repeatable",
                                     help="Image file, folder or quoted glob; repeatable."),
    episode: Optional[Path] = typer.Option(None, help="Predict this episode's query images (instead of --images)."),
    split: str = typer.Option("valset", help="With --episode: valset or testset."),
    window: Optional[int] = typer.Option(None, help="Sliding-window size (default: the training crop)."),
    overlap: float = typer.Option(0.25, help="Overlap between neighbouring windows, 0..0.9."),
    batch: int = typer.Option(4, help="Windows per forward pass."),
) -> None:
    """Sliding-window prediction on images of any size: one single-band label per image, same stem, same format
    (JPEG input gives PNG labels) and georeference, plus a colour preview in OUT/color/."""
    from paintseg.segment.predict import predict as predict_images

    paths = _expand(list(images))
    if episode is not None:
        from paintseg.data.episode import Episode

        paths += [s.image for s in _run(Episode, episode, split).query]
    if not paths:
        _fail("nothing to predict: pass --images PATH (file, folder or glob) or --episode DIR")
    _threads()
    written = _run(predict_images, run, paths, out, window=window, overlap=overlap, batch=batch)
    typer.echo(f"{len(written)} label(s) written to {out}")


# ------------------------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    pred: Path = typer.Option(..., help="Folder of predicted labels (same stems as the query images)."),
    episode: Path = typer.Option(..., help="Episode folder whose query labels are the ground truth."),
    split: str = typer.Option("valset", help="valset or testset."),
    out: Optional[Path] = typer.Option(None, callback=_file, help="Write the metrics JSON here."),
    skip_absent: bool = typer.Option(False, help="Leave classes with an empty union out of the means "
                                     "(default: they score 0, as in the challenge)."),
) -> None:
    """OpenEarthMap few-shot protocol: one confusion matrix over the query set; per-class IoU, base mIoU, novel
    mIoU and score = 0.4 x base + 0.6 x novel (background not scored, ignore 255 not counted)."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.metrics import evaluate_predictions, format_table, to_json

    ep = _run(Episode, episode, split)
    metrics = _run(evaluate_predictions, pred, ep, skip_absent=skip_absent)
    typer.echo(format_table(metrics))
    if out is not None:
        from paintseg.files import write_text

        write_text(out, to_json(metrics))
        typer.echo(f"metrics written to {out}")


# ------------------------------------------------------------------------------------------------- generator
generator_app = typer.Typer(help="Train the exemplar-conditioned inpainting generator.", no_args_is_help=True,
                            rich_markup_mode=None, context_settings=SETTINGS)
app.add_typer(generator_app, name="generator")


@generator_app.command("train")
@config_options(GeneratorConfig)
def generator_train(
    episode: Path = typer.Argument(..., help="Episode folder; the generator learns from its trainset + support scenes "
                                   "(no novel-class labels needed)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Generator folder (GEN): config, checkpoints, sample grids, model.pt."),
    split: str = typer.Option("valset", help="Which split's support scenes to include: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    init: Optional[str] = typer.Option(None, help="Fine-tune this pretrained Paint-by-Example-family pipeline "
                                       "(a diffusers folder or hub id, e.g. a converted RS-Paint) instead of training "
                                       "paintseg's own model; OUT becomes a pipeline folder."),
    mixed_precision: str = typer.Option("no", help="With --init: no (fp32), fp16 or bf16 (GPUs)."),
    gradient_checkpointing: bool = typer.Option(True, "--gradient-checkpointing/--no-gradient-checkpointing",
                                                help="With --init: recompute UNet activations to save memory."),
    device: Optional[str] = typer.Option(None, help="cuda, cuda:1 or cpu (default: cuda when there is one)."),
    config: GeneratorConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Self-supervised training: hide an instance (or a random region) of a real scene under an inpaint mask and
    learn to paint it back from a strongly augmented crop of itself, so the model learns to paint what a reference
    shows, fitted to its surroundings. With --init, the same recipe fine-tunes a pretrained pipeline's UNet and
    reference mapper in its latent space (accelerate; `accelerate launch -m paintseg generator train ...` for
    several GPUs)."""
    from paintseg.data.episode import Episode
    from paintseg.paint.diffusion.train import train_generator

    ep = _run(Episode, episode, split)
    _threads()
    if init is not None:
        from paintseg.paint.finetune import finetune_pipeline

        _run(finetune_pipeline, ep, init, out, config, resume=resume, device=device, mixed_precision=mixed_precision,
             gradient_checkpointing=gradient_checkpointing)
        return
    _run(train_generator, ep, out, config, resume=resume, device=device)


@generator_app.command("curve")
def generator_curve(
    gen: Path = typer.Argument(..., help="Generator folder (GEN) trained with --snapshots N (a folder without "
                               "snapshots gives one point)."),
    episode: Path = typer.Argument(..., help="Episode folder; its query images are the held-out test scenes."),
    out: Path = typer.Option(..., callback=_file,
                             help="JSON file for the curve: one point per snapshot and strength, and the "
                             "copy-paste controls."),
    figure: Optional[Path] = typer.Option(None, callback=_file,
                                          help="PNG of the curve (class rate, ΔE, novelty/diversity against "
                                          "training minutes); with it also FIGURE_samples.png (the first --samples "
                                          "tests painted by every point)."),
    strengths: list[float] = typer.Option([0.3], "--strength", metavar="<float>, repeatable",
                                          help="Painting strength, repeatable (1: from noise)."),
    per_class: int = typer.Option(24, help="Tests per novel class."),
    candidates: int = typer.Option(2, help="Candidates painted per test (2 or more measure diversity)."),
    paste_noise: float = typer.Option(17.5, help="The copy-paste-noise control's noise (grey levels); 0: leave it "
                                      "out."),
    config: Optional[Path] = typer.Option(None, help="YAML with the painting settings, or a run config (its generation "
                                          "section): paint as that run paints; options here override it."),
    steps: Optional[int] = _field(PaintConfig, "steps"),
    guidance: Optional[float] = _field(PaintConfig, "guidance"),
    samples: int = typer.Option(4, help="Tests shown in FIGURE_samples.png."),
    seed: int = typer.Option(0, help="Seed for the test windows and the noise."),
    split: str = typer.Option("valset", help="valset or testset."),
) -> None:
    """The painter's learning curve: paint the same held-out query tests with every snapshot of a generator run
    (and the finished generator) beside copy-paste and copy-paste-noise, and measure how often the class probe
    calls the painted object the class, how close its colours are to the real instances, how far it is from its
    reference and how much two candidates differ."""
    import shutil
    import tempfile

    from paintseg.data.episode import Episode
    from paintseg.evaluate.curve import curve_lines, painting_curve
    from paintseg.files import write_bytes, write_text
    from paintseg.place.references import extract_references

    if candidates < 1:
        _fail(f"--candidates {candidates}: paint at least 1 per test (2 or more to measure diversity)")
    if any(not 0 < s <= 1 for s in strengths):
        _fail(f"--strength {strengths}: each strength is in (0, 1] (0.3: from the copy-paste composite, 1: from noise)")
    paint = _configured(PaintConfig, config, locals())
    ep = _run(Episode, episode, split)
    _threads()
    folder = Path(tempfile.mkdtemp(prefix="paintseg-curve-")) if figure is not None else None
    curve = _run(painting_curve, ep, gen, _run(extract_references, ep), strengths=strengths, paint=paint,
                 per_class=per_class, seed=seed, candidates=candidates, paste_noise=paste_noise or None,
                 samples_dir=folder, samples=samples)
    if figure is not None:
        from paintseg.experiment.figures import curve_chart, painting_samples_figure, png_bytes

        write_bytes(figure, png_bytes(curve_chart(curve)))
        write_bytes(figure.with_name(f"{figure.stem}_samples.png"),
                    png_bytes(painting_samples_figure(curve["quality"], folder)))
        shutil.rmtree(folder, ignore_errors=True)
    curve["quality"].pop("samples", None)
    write_text(out, json.dumps(curve, indent=1, default=str) + "\n")
    for line in curve_lines(curve):
        typer.echo(line)
    typer.echo(f"written {out}" + (f", {figure}" if figure is not None else ""))


@app.command()
@config_options(PlaceConfig)
def place(
    episode: Path = typer.Argument(..., help="Episode folder (references from its support set, scenes from its "
                                   "trainset)."),
    out: Path = typer.Option(..., callback=_folder, help="Folder for placements.jsonl, place.yaml, prior.json and "
                             "placement_quality.json; `paintseg generate --out` on the same folder paints these very "
                             "placements."),
    seed: int = typer.Option(0, help="Seed for scenes, boxes, windows and mask shapes."),
    split: str = typer.Option("valset", help="valset or testset support and query set."),
    config: PlaceConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Plan where new instances go (scene, box, context window, mask shape) and measure the plan: the fit rate per
    novel class is the share of placements whose surroundings look more like a real query instance's than a random
    spot's do (0.5: no better than uniform). Several backends can then paint the same plan."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.placement_fit import placement_quality
    from paintseg.place.plan import place as run_place

    ep = _run(Episode, episode, split)
    summary = _run(run_place, ep, out, config, seed)
    typer.echo(f"{summary['placements']} placements written to {out / 'placements.jsonl'}")
    quality = placement_quality(ep, summary["plan"], summary["references"], out, seed=seed)
    for name, q in quality.items():
        labels = f", {q['fit_rate_labels']:.2f} by base-class shares" if "fit_rate_labels" in q else ""
        typer.echo(f"{name}: fit rate {q['fit_rate']:.2f} by colour/texture{labels} ({q['placements']} placements vs "
                   f"{q['query_instances']} real query instances; 0.5 = no better than random spots)")
        o = q.get("orientation") or {}
        if o.get("query") is not None and o.get("placed") is not None:
            typer.echo(f"{name}: alignment with the surrounding structure cos 2Δ {o['placed']:.2f} placed vs "
                       f"{o['query']:.2f} real (1 = along it, -1 = across it, 0 = random)")
    if not quality:
        typer.echo("fit rate: not measured (no labelled novel-class instances in the query set)")


convert_app = typer.Typer(help="Convert released checkpoints into generator folders that --generator paints with.",
                          no_args_is_help=True, rich_markup_mode=None, context_settings=SETTINGS)
app.add_typer(convert_app, name="convert")


@convert_app.command("rs-paint")
def convert_rs_paint_command(
    ckpt: Path = typer.Option(..., help="RS-Paint's LDM checkpoint (sd_inpaint_samrs_ep74.ckpt)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="The diffusers Paint-by-Example folder to write (must not exist yet)."),
    remoteclip: Optional[Path] = typer.Option(None, help="RemoteCLIP's open_clip checkpoint (RemoteCLIP-ViT-L-14.pt); "
                                              "needed only when the checkpoint holds no image tower."),
    remoteclip_model: str = typer.Option("ViT-L-14", help="open_clip architecture of the image tower (or a model "
                                         "config .json)."),
    config: Optional[Path] = typer.Option(None, help="The checkpoint's LDM yaml (default: RS-Paint's "
                                          "configs/rs_remoteclip.yaml architecture)."),
) -> None:
    """Convert RS-Paint's released generator into a diffusers PaintByExamplePipeline folder: diffusers' own LDM
    converters for the UNet and VAE, the RemoteCLIP tower and mapper mapped key by key (paintseg.paint.convert)
    and checked against open_clip. Then: paintseg generate EPISODE --generator OUT ..."""
    import yaml

    from paintseg.paint.convert import convert_rs_paint

    original = None
    if config is not None:
        try:
            original = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as e:
            _fail(f"{config}: not a readable yaml ({e})")
    record = _run(convert_rs_paint, ckpt, out, remoteclip=remoteclip, remoteclip_model=remoteclip_model,
                  config=original)
    typer.echo(f"wrote {out} (image tower from {record['image_encoder']['from']}, max error vs open_clip "
               f"{record['image_encoder']['max_abs_error_vs_open_clip']:.1e}); paint with --generator {out}")


harmoniser_app = typer.Typer(help="Train the harmoniser (copy-paste composites re-coloured to fit their scene).",
                             no_args_is_help=True, rich_markup_mode=None, context_settings=SETTINGS)
app.add_typer(harmoniser_app, name="harmoniser")


@harmoniser_app.command("train")
@config_options(HarmoniserConfig)
def harmoniser_train(
    episode: Path = typer.Argument(..., help="Episode folder; the harmoniser learns from its trainset + support "
                                   "scenes (every labelled class's instances; no novel-class labels needed)."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Harmoniser folder (HARM): config, log, harmoniser.pt, samples.png."),
    split: str = typer.Option("valset", help="Which split's support scenes to include: valset or testset."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from checkpoints/last.pt."),
    config: HarmoniserConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Self-supervised training: re-colour a real instance as if it had been pasted from another scene and learn
    to give back its real pixels from the composite and its mask. The held-out error of the composite (copy-paste)
    and of the harmonised window is printed and written to train_summary.json."""
    from paintseg.data.episode import Episode
    from paintseg.paint.harmonise.train import train_harmoniser

    ep = _run(Episode, episode, split)
    _threads()
    _run(train_harmoniser, ep, out, config, resume=resume)


@app.command()
@config_options(GenerateConfig)
def generate(
    episode: Path = typer.Argument(..., help="Episode folder (references come from its support set, scenes from "
                                   "its trainset)."),
    generator: str = typer.Option(..., help="A generator folder written by `paintseg generator train`, a "
                                  "diffusers pipeline folder or hub id (Paint-by-Example, SD inpainting, a converted "
                                  "RS-Paint: `paintseg convert rs-paint`), a harmoniser folder written by `paintseg "
                                  "harmoniser train` (copy-paste, then re-coloured to fit the scene), or "
                                  "'copy-paste' for the copy-paste baseline."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Synthetic set folder (SYN): candidates/, images/, labels/, manifest.jsonl."),
    prompt: list[str] = typer.Option([], metavar="CLASS=TEXT, repeatable",
                                     help="SD inpainting: the prompt of a novel class "
                                     "(repeat per class; added to the config's prompts; default 'a top-down "
                                     "satellite image of a {class}')."),
    paste_colour: str = typer.Option("none", help="Copy-paste and harmonise: 'match' moves the pasted pixels from "
                                     "the colour statistics of the reference's surroundings to the new ones' (Lab "
                                     "mean/std) and flips each paste at random; 'poisson' blends the paste into "
                                     "its new surroundings by Poisson image editing; 'none': as cut."),
    paste_noise: float = typer.Option(0.0, help="Copy-paste: add smooth colour noise of this std (grey levels) to "
                                      "each paste and its seam - a control for painting from the composite."),
    seed: int = typer.Option(0, help="Seed for placements, masks and sampling noise."),
    select: str = typer.Option("best", help="'best': score candidates with --filter and keep the best per "
                               "placement; 'first': candidate 0, unscored; 'none': write candidates only."),
    split: str = typer.Option("valset", help="valset or testset support set."),
    config: GenerateConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Paint novel-class references into trainset scenes (N placements per class x K candidates), keep the best
    candidate per placement, refine its mask and compose a synthetic set that `paintseg train --synthetic` reads:
    `paintseg place`, the painting and `paintseg curate` in one command."""
    from paintseg.data.episode import Episode
    from paintseg.paint.generate import generate as run_generate
    from paintseg.paint.generate import make_backend

    if select not in ("best", "first", "none"):
        _fail(f"--select {select!r}: use best, first or none")
    ep = _run(Episode, episode, split)
    prompts = dict(config.prompts)
    for item in prompt:
        name, sep, text = item.partition("=")
        if not sep or not text:
            _fail(f"--prompt {item!r}: give CLASS=TEXT, e.g. --prompt 'pool=a swimming pool seen from above'")
        prompts[name.strip()] = text.strip()
    paint = stage_part(config, PaintConfig).model_copy(update={"prompts": prompts})
    if paint.device is None and distributed.world_size() > 1:  # accelerate launch: this process's device
        paint = paint.model_copy(update={"device": distributed.device()})
    novel = {c: ep.classes.name(c) for c in ep.classes.novel_ids}
    backend, settings = _run(make_backend, generator, paint, seed=seed, paste_colour=paste_colour,
                             paste_noise=paste_noise, class_names=novel)
    curation = None
    if select != "none":  # built before painting, so a bad filter or SAM checkpoint stops the command at once
        from paintseg.curate.pipeline import CurationModels

        cur = stage_part(config, CurateConfig)
        cur = cur.model_copy(update={"filter": "none"}) if select == "first" else cur
        curation = cur, _run(CurationModels.build, cur)
    _threads()
    summary = _run(run_generate, ep, backend, out, stage_part(config, PlaceConfig), paint, seed=seed,
                   backend_settings=settings)
    if "rank" in summary:  # another process of `accelerate launch`: the first one curates and reports
        return
    typer.echo(json.dumps({k: summary[k] for k in ("placements", "candidates", "painted_now", "prior", "seconds")},
                          indent=1))
    if curation is not None:  # the curation stage on the candidates just painted: the best, or candidate 0 unscored
        from paintseg.curate.pipeline import curate, format_summary

        typer.echo(format_summary(_run(curate, ep, out, out, curation[0], models=curation[1])))
    typer.echo(f"synthetic set written to {out}")


@app.command("painting-quality")
def painting_quality_command(
    episode: Path = typer.Argument(..., help="Episode folder; its query images are the held-out test scenes."),
    generator: list[str] = typer.Option(..., metavar="<backend>, repeatable",
                                        help="A backend to test, repeatable: 'copy-paste', a HARM or GEN "
                                        "folder; ':match' at the end pastes colour-matched, '@S' after a GEN folder "
                                        "paints from the composite at strength S (e.g. gen@0.3)."),
    out: Path = typer.Option(..., callback=_file,
                             help="JSON file for the distances (per backend, per class, per test)."),
    per_class: int = typer.Option(24, help="Tests per novel class."),
    figure: Optional[Path] = typer.Option(None, callback=_file,
                                          help="PNG of the first --samples tests: the query window, then "
                                          "every backend's painting (object outlined); with --conditioning also "
                                          "FIGURE_conditioning.png (references, masked window, three paintings, "
                                          "real window)."),
    samples: int = typer.Option(6, help="Tests shown in --figure."),
    conditioning: int = typer.Option(0, help="For every GEN backend also paint N held-out query instances per class "
                                     "back from their own, a wrong-class and no reference (PSNR/SSIM in the mask; "
                                     "paintseg.evaluate.conditioning); 0: off."),
    filter_quality: int = typer.Option(0, "--filter-quality", help="For every GEN backend also paint K candidates "
                                       "per test (half the tests) and measure what each --filter's pick gains over "
                                       "a random one (class probe, ΔE; paintseg.evaluate.curation); 0: off."),
    filters: list[str] = typer.Option(["handcrafted"], "--filter", metavar="<encoder>, repeatable",
                                      help="Encoders judged by --filter-quality, repeatable (as `paintseg curate "
                                      "--filter`)."),
    config: Optional[Path] = typer.Option(None, help="YAML with the generation settings, or a run config (its "
                                          "generation section): paint and score as that run does; options here "
                                          "override it."),
    score_mode: Optional[str] = _field(GenerateConfig, "score_mode"),
    steps: Optional[int] = _field(GenerateConfig, "steps"),
    guidance: Optional[float] = _field(GenerateConfig, "guidance"),
    seed: int = typer.Option(0, help="Seed for the test windows and the references they paint."),
    split: str = typer.Option("valset", help="valset or testset."),
) -> None:
    """Paint the same references into the same windows of held-out query images with every backend, and measure
    how far each painted object's colours are from the real instances of its class in that image (CIE76 distance
    of the mean Lab colour, lightness-spread difference, histogram distance; lower is better) and whether a linear
    probe on frozen ImageNet features calls it the class."""
    from paintseg.data.episode import Episode
    from paintseg.evaluate.assess import Assessment, assess_painting, generators
    from paintseg.files import write_bytes, write_text
    from paintseg.paint.generate import make_backend

    import shutil
    import tempfile

    if filter_quality == 1 or filter_quality < 0:
        _fail(f"--filter-quality {filter_quality}: a filter needs at least 2 candidates to choose from (0: off)")
    cfg = _configured(GenerateConfig, config, locals())
    paint = stage_part(cfg, PaintConfig)
    ep = _run(Episode, episode, split)
    backends = {}
    for spec in generator:
        path, colour = (spec[: -len(":match")], "match") if spec.endswith(":match") else (spec, "none")
        path, _, strength = path.partition("@")
        at = paint.model_copy(update={"strength": float(strength)}) if strength else paint
        backends[spec] = _run(make_backend, path, at, seed=seed, paste_colour=colour)[0]
    _threads()
    work = Path(tempfile.mkdtemp(prefix="paintseg-quality-")) if figure is not None else None
    what = Assessment(tests=per_class, seed=seed, against=generator[0], samples=samples, paint=paint,
                      curation=stage_part(cfg, CurateConfig), conditioning=conditioning,
                      samples_dir=work / "samples" if work is not None else None,
                      conditioning_dirs=(lambda name: work / f"conditioning-{name.replace('/', '_')}")
                      if work is not None else None)
    if filter_quality:
        from paintseg.curate.score import build_encoder

        what.filters = {spec: _run(build_encoder, spec) for spec in filters}
        what.filter_candidates = filter_quality
    painters = generators(backends)

    def conditioned(name: str, found: dict) -> None:  # its figure, and one line
        if work is not None:
            from paintseg.experiment.figures import conditioning_figure, png_bytes

            n = painters.index(name) if len(painters) > 1 else ""
            target = figure.with_name(f"{figure.stem}_conditioning{n}.png")
            write_bytes(target, png_bytes(conditioning_figure(found, what.conditioning_dirs(name))))
            found["summary"]["figure"] = str(target)
        s = found["summary"]
        if s["instances"]:
            typer.echo(f"conditioning of {name}: PSNR true {s['psnr_true']:.2f} / wrong {s['psnr_wrong']:.2f} / "
                       f"none {s['psnr_null']:.2f} dB, true beats wrong {s['psnr_true_beats_wrong']['wins']}/"
                       f"{s['instances']} (p {s['psnr_true_beats_wrong']['p']:.3f})")

    quality = _run(assess_painting, ep, backends, what, on_conditioning=conditioned)
    if work is not None:
        from paintseg.experiment.figures import painting_samples_figure, png_bytes

        write_bytes(figure, png_bytes(painting_samples_figure(quality, work / "samples")))
        shutil.rmtree(work, ignore_errors=True)
        quality.pop("samples")
    for name, found in quality["filter_quality"].items():
        for spec, row in found["filters"].items():
            if row["p_class_gain"] is not None:
                typer.echo(f"filter {spec} on {name}: pick vs random p_class {row['p_class_gain']:+.3f}, "
                           f"delta_e {row['delta_e_gain']:+.2f} ({row['tests']} tests of {filter_quality})")
    write_text(out, json.dumps(quality, indent=1) + "\n")
    for name, row in quality["backends"].items():
        typer.echo(f"{name}: {row['tests']} tests, " + ", ".join(f"{m} {row.get(m, float('nan')):.2f}"
                                                               for m in quality["metrics"]))
    typer.echo(f"written {out}")


@app.command()
@config_options(CurateConfig)
def curate(
    source: Path = typer.Argument(..., help="Folder written by `paintseg generate` (references/, candidates/)."),
    episode: Path = typer.Option(..., help="The episode the candidates were painted for."),
    out: Optional[Path] = typer.Option(None, callback=_folder,
                                       help="Synthetic set to write (default: SOURCE itself). Use a new "
                                       "folder per setting to compare filters or refiners on the same paintings."),
    split: str = typer.Option("valset", help="valset or testset."),
    config: CurateConfig = None,  # the --config file and the generated options, validated (config_options)
) -> None:
    """Re-curate painted candidates without repainting: score, keep the best per placement, filter per class,
    refine the object masks, compose a synthetic set and print what was kept and why the rest was rejected."""
    from paintseg.curate.pipeline import curate as run_curate
    from paintseg.curate.pipeline import CurationModels, format_summary
    from paintseg.data.episode import Episode

    models = _run(CurationModels.build, config)
    summary = _run(run_curate, _run(Episode, episode, split), source, out, config, models=models)
    typer.echo(format_summary(summary))
    typer.echo(f"synthetic set written to {out or source}")


# ------------------------------------------------------------------------------------------- experiments
def _experiment(config, out: Path, progress: bool, command: str) -> None:
    from paintseg.experiment.run import run_experiment
    from paintseg.experiment.summary import format_headline

    _threads()
    results = _run(run_experiment, config, out, progress=progress, command=command, lines=True)
    if isinstance(results, dict):  # another process of `accelerate launch`: the first one gathers and reports
        return
    typer.echo(format_headline(results))
    typer.echo(f"results: {out / 'results.json'}\nreport:  {out / 'report.html'}  (open it in a browser; "
               f"{results.wall_seconds / 60:.1f} min this run; {out} holds {results.disk_mb:.0f} MB)")


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="Experiment YAML (see configs/): episode, generator, generation, arms, "
                                  "models, train, seeds."),
    out: Path = typer.Option(..., callback=_folder,
                             help="Experiment folder EXP; run again with the same --out to resume."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds instead of the config's (e.g. 0,1,2,3,4: "
                                        "more seeds tell a gain from seed noise; finished seeds are reused)."),
    progress: bool = typer.Option(True, help="Progress bars on stderr (a line per stage is printed either way)."),
) -> None:
    """Run baseline vs copy-paste vs diffusion (and ablations) for every model and seed of CONFIG; writes
    EXP/results.json and EXP/report.html. Every stage is cached by a hash of its settings, so a killed or changed
    run redoes only what changed."""
    from paintseg.config import validate
    from paintseg.experiment.spec import ExperimentConfig, load_experiment

    cfg = _run(load_experiment, config)
    line = f"paintseg run {config} --out {out}"
    if seeds is not None:
        try:
            chosen = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            _fail(f"--seeds {seeds!r}: give comma-separated whole numbers, e.g. --seeds 0,1,2")
        cfg = _run(validate, {**cfg.model_dump(mode="json"), "seeds": chosen}, ExperimentConfig, "--seeds")
        line += f" --seeds {seeds}"
    _experiment(cfg, out, progress, line)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), callback=_folder,
                             help="Experiment folder to write (resumes if it exists)."),
    quick: bool = typer.Option(False, help="Smoke run of the same path with every budget shrunk."),
    progress: bool = typer.Option(True, help="Progress bars on stderr (a line per stage is printed either way)."),
) -> None:
    """The whole method on built-in procedural aerial scenes with a novel class (solar panels), as configs/demo.yaml
    sets it: demo scenes → painter → painting → curation → every arm × seed with an ImageNet Lite0 Unet →
    report.html. Its measured time and disk are in the README (generated from a run of that config)."""
    from paintseg.experiment.demo_run import demo_config

    cfg = demo_config(quick)
    _experiment(cfg, out, progress, "paintseg demo" + (" --quick" if quick else "") + f" --out {out}")


@app.command()
def report(
    exp: Path = typer.Argument(..., help="Experiment folder written by `paintseg run`."),
    screenshot: Optional[Path] = typer.Option(None, callback=_file,
                                              help="Also render the whole report with headless Chromium into this "
                                              "PNG."),
) -> None:
    """(Re)write EXP/report.html from EXP/results.json, optionally with a screenshot."""
    from paintseg.experiment.report import screenshot as take_screenshot
    from paintseg.experiment.report import write_report

    html = _run(write_report, exp)
    typer.echo(f"report: {html}")
    if screenshot is not None:
        typer.echo(f"screenshot: {_run(take_screenshot, html, screenshot)}")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="paintseg")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
