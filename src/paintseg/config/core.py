"""The rules every paintseg config follows: validation with messages that name the file, the field and the fix;
fields added after runs were first recorded (:func:`later`) and the one cache-key rule (:func:`recipe`); configs
echoed into run folders and guarded there (:func:`dump_yaml`, :func:`guard_settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError

from paintseg.errors import PaintsegError
from paintseg.files import write_text

M = TypeVar("M", bound=BaseModel)


class ConfigError(PaintsegError):
    """A config file that cannot be read or does not validate; the message names the file and each bad field."""


_DEFAULT = object()


def later(default: Any, *, neutral: Any = _DEFAULT, **kwargs: Any) -> Any:
    """A field added after runs and stages were first recorded (the one rule for such fields): at its ``neutral``
    value - what the code did before it; the ``default`` unless a better default came with it - a cache key
    (:func:`recipe`) leaves it out, and a run folder or plan recorded without it reads it as that value. So a new
    option neither invalidates finished stages nor stops old runs from resuming, and a new default that changes the
    output gives new stage keys."""
    extra = {"added_later": True} | ({} if neutral is _DEFAULT else {"neutral": neutral})
    return Field(default, json_schema_extra=extra, **kwargs)


def added_later(model: type[BaseModel]) -> dict[str, Any]:
    """The :func:`later` fields of ``model`` with their neutral values."""
    out = {}
    for name, f in model.model_fields.items():
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("added_later"):
            out[name] = f.json_schema_extra.get("neutral", f.get_default(call_default_factory=True))
    return out


def recipe(model: BaseModel) -> dict:
    """A config's fields for a cache key (``paintseg run``'s stage hashes, a plan's ``place.yaml``), by one rule:
    without its fields added later (:func:`later`) at their neutral values, so a new option does not invalidate
    finished stages, and without the fields it says decide nothing under its other settings (its ``unused_fields()``, where
    it has one)."""
    data, neutral = model.model_dump(mode="json"), added_later(type(model))
    unused = model.unused_fields() if hasattr(model, "unused_fields") else set()
    return {k: v for k, v in data.items() if not (k in neutral and v == neutral[k]) and k not in unused}


def stage_part(config: BaseModel, model: type[M]) -> M:
    """The ``model`` part (e.g. :class:`PlaceConfig`) of a config that composes it (e.g. :class:`GenerateConfig`)."""
    return model.model_validate({k: getattr(config, k) for k in model.model_fields})


# What a user calls each config (in messages and help), by class name: the classes themselves are internal
TITLES = {"ExperimentConfig": "run config", "SplitRecipe": "split options", "TrainConfig": "train settings",
          "GeneratorConfig": "generator settings", "HarmoniserConfig": "harmoniser settings",
          "PlaceConfig": "placement settings", "PaintConfig": "painting settings",
          "CurateConfig": "curation settings", "GenerateConfig": "generation settings"}


def title(model: type[BaseModel]) -> str:
    """The name a user knows ``model`` by (``TITLES``), e.g. 'run config' for ExperimentConfig."""
    return TITLES.get(model.__name__, model.__name__)


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The field names of the (nested) model at ``loc`` - where a misspelt key sat - or [] if not a model there."""
    import typing

    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue  # a list index: the list's item type was found at its field
        field = model.model_fields.get(part)
        if field is None:
            return []
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        kinds += [a for k in kinds for a in typing.get_args(k)]  # list[Model], Model | None
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _describe(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per bad field, named by its dotted path as the YAML spells it; a misspelt key gets its close
    matches, a check of the whole config no path."""
    import difflib

    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, tuple(e["loc"][:-1])) if model is not None else []
            close = difflib.get_close_matches(str(e["loc"][-1]), known, 3, 0.6)
            msg = "unknown field" + (f"; did you mean {' or '.join(close)}?" if close else "") + (
                f" (known here: {', '.join(known)})" if known and not close else "")
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")
    return "\n".join(lines)


def validate(data: dict[str, Any], model: type[M], source: str = "config") -> M:
    """``model.model_validate(data)``, with a :class:`ConfigError` naming ``source`` and every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: invalid {title(model)}:\n{_describe(e, model)}") from None


def dump_yaml(obj: BaseModel | dict[str, Any], path: str | Path) -> Path:
    """Write a config (or a plain mapping) as YAML, to a temporary name first and then renamed into place."""
    path = Path(path)
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def guard_settings(path: str | Path, settings: dict[str, Any], what: str = "this folder",
                   model: type[BaseModel] | None = None) -> None:
    """Record the settings that produced a stage's folder (``path``, YAML), or, when the folder already has them,
    check that a resumed run asks for exactly the same; otherwise stop before anything is overwritten. A field of
    ``model`` added later (:func:`later`) that the folder did not record reads as its neutral value, on both sides."""
    path = Path(path)
    if path.is_file():
        neutral = added_later(model) if model is not None else {}
        old = {**neutral, **(yaml.safe_load(path.read_text()) or {})}
        new = {**neutral, **settings}
        diff = [f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        if diff:
            raise ConfigError(f"{path}: {what} was written with other settings ({'; '.join(diff)}); pass a new "
                              f"--out, or the same settings to resume")
        return
    dump_yaml(settings, path)
