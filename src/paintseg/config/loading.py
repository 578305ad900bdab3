"""Config files: read a YAML file as a config, whether it holds the config itself, a run folder's echoed
config.yaml or a run config (its ``generation`` section for the placement, painting and curation configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .core import M, ConfigError, title, validate
from .synthetic import GenerateConfig


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read a YAML mapping from ``path`` and validate it as ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; pass the path of a YAML file of {title(model)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); fix the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {title(model)} (key: value lines), "
                          f"got {type(data).__name__}")
    return validate(run_settings(data, model), model, str(path))


# The sections under which a run folder's config.yaml echoes its settings, beside the run's own record
RUN_SECTIONS = ("train", "generator", "harmoniser")
RUN_RECORD = {"episode", "split", "synthetic", "seed", "paintseg_version"}


def run_settings(data: dict[str, Any], model: type[M]) -> dict[str, Any]:
    """``data`` itself, or - for the config.yaml a run folder echoes (``{generator: {...}, episode: ..., seed: ...,
    paintseg_version: ...}``) - its settings section, so that any run's config.yaml is a valid ``--config``; for the
    placement, painting and curation configs, a run config's ``generation`` section (its fields of ``model``)."""
    if isinstance(data.get("generation"), dict) and "episode" in data and set(model.model_fields) <= set(
            GenerateConfig.model_fields):  # a run config given to place / generate / curate: its generation section
        return {k: v for k, v in data["generation"].items() if k in model.model_fields}
    sections = [k for k in RUN_SECTIONS if isinstance(data.get(k), dict)]
    if len(sections) == 1 and set(data) <= RUN_RECORD | set(sections) and not set(model.model_fields) >= set(data):
        return data[sections[0]]
    return data
