"""The configs of ``paintseg demo``: the packaged demo.yaml (also configs/demo.yaml), and ``--quick``'s budgets."""

from __future__ import annotations

from pathlib import Path

from .spec import ExperimentConfig, load_experiment

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")

# ``--quick``: the same stages and arms with tiny budgets, a smoke run in under 2 minutes on 2 CPU cores
QUICK = {
    "episode": {"demo": {"scenes": 8, "size": 128, "shots": 3, "query": 3}},
    "generator": {"train": {"minutes": None, "steps": 40, "snapshots": 2, "checkpoint_every": 20, "sample_every": 40,
                            "warmup_steps": 5}},
    "generation": {"per_class": 8, "candidates": 2, "steps": 8, "keep": "top:0.75"},
    "train": {"steps": 12, "checkpoint_every": 6, "warmup_steps": 2, "crop": 64},
    "seeds": [0],
    "report": {"samples": 4, "overlays": 2},
}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def demo_config(quick: bool = False) -> ExperimentConfig:
    """The demo experiment; ``quick=True`` applies :data:`QUICK`."""
    config = load_experiment(DEMO_CONFIG)
    if not quick:
        return config
    data = _merge(config.model_dump(mode="json"), QUICK)
    data["name"] = "demo-quick"
    return ExperimentConfig.model_validate(data)
