"""Property-based: every episode that `paintseg data check` passes runs to a written report (issue 32).

Small episodes of many shapes - image sides that are no multiple of 32 and smaller than the crop, 1 to 3 shots,
1 to 4 query images, few or many novel instances, PNG or GeoTIFF - each run by `paintseg run` with minimal budgets
through every stage (painter with a learning curve, painting quality, copy-paste, copy-paste-noise, painting over
noisy pastes, training, prediction, evaluation) to report.html."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from conftest import tiny_classes, tiny_scene  # noqa: E402
from paintseg.cli import app  # noqa: E402
from paintseg.data.raster import write_image, write_label  # noqa: E402

pytestmark = pytest.mark.slow


def _episode(root: Path, sides: list[int], shots: int, queries: int, pools: int, fmt: str, seed: int) -> Path:
    """An episode in the challenge layout whose images have the given ``sides`` (cycled)."""
    rng = np.random.default_rng(seed)
    classes = tiny_classes()
    root.mkdir(parents=True)
    classes.save(root / "classes.json")
    label_fmt = ".tif" if fmt == ".tif" else ".png"
    side = iter(sides * 10)
    names: dict[str, list[str]] = {"train": [], "support": [], "query": []}
    for role, count in (("train", 3), ("support", shots), ("query", queries)):
        for i in range(count):
            image, label = tiny_scene(rng, next(side), pools=pools if role == "query" else 1)
            if role == "train":
                label[label == 4] = 0
            elif role == "support":
                label = np.where(label == 4, 4, 0).astype(np.uint8)
            folder = "trainset" if role == "train" else "valset"
            write_image(root / folder / "images" / f"{role}_{i}{fmt}", image)
            write_label(root / folder / "labels" / f"{role}_{i}{label_fmt}", label, classes=classes)
            names[role].append(f"{role}_{i}{fmt}")
    (root / "train.txt").write_text("".join(n + "\n" for n in names["train"]))
    (root / "val.json").write_text(json.dumps({"support_set": {"4": names["support"]}, "query_set": names["query"]}))
    return root


MINIMAL = {"arms": ["baseline", "copy-paste", "copy-paste-noise", "diffusion-noise"],
           "generator": {"train": {"size": "tiny", "steps": 4, "batch": 2, "snapshots": 2, "checkpoint_every": 4,
                                   "sample_every": 4, "warmup_steps": 1, "max_strength": 0.3}},
           "generation": {"per_class": 2, "candidates": 1, "steps": 2, "batch": 2, "filter": "none",
                          "quality_tests": 2},
           "models": [{"arch": "unet", "encoder": "resnet18"}],
           "train": {"steps": 2, "batch": 2, "crop": 64, "checkpoint_every": 2, "warmup_steps": 1},
           "report": {"samples": 2, "overlays": 1}}


@settings(max_examples=6, deadline=None)
@given(sides=st.lists(st.integers(40, 112), min_size=1, max_size=3), shots=st.integers(1, 3),
       queries=st.integers(1, 4), pools=st.integers(1, 3), fmt=st.sampled_from([".png", ".tif"]),
       quality_tests=st.sampled_from([0, 1, 2]), seed=st.integers(0, 99))
def test_every_episode_that_data_check_passes_runs_to_a_report(sides, shots, queries, pools, fmt, quality_tests,
                                                                 seed) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="paintseg-run-property-"))
    try:
        episode = _episode(tmp / "episode", sides, shots, queries, pools, fmt, seed)
        check = CliRunner().invoke(app, ["data", "check", str(episode), "--shots", str(shots)])
        if check.exit_code != 0:  # not an episode the contract covers; data check said why
            assert "- " in check.output, check.output
            return
        config = {**MINIMAL, "name": "property", "episode": {"path": str(episode)}, "seeds": [seed % 3],
                  "generation": {**MINIMAL["generation"], "quality_tests": quality_tests}}
        (tmp / "run.yaml").write_text(yaml.safe_dump(config))
        result = CliRunner().invoke(app, ["run", str(tmp / "run.yaml"), "--out", str(tmp / "exp"), "--no-progress"])
        assert result.exit_code == 0, (result.output, result.exception)
        results = json.loads((tmp / "exp" / "results.json").read_text())
        assert results["complete"] and {r["arm"] for r in results["summary"]} == set(MINIMAL["arms"])
        page = (tmp / "exp" / "report.html").read_text()
        assert "1. Results" in page and "novel vs copy-paste-noise" in page
        if quality_tests == 0:  # painting quality was not measured: the report says so instead of a table
            assert "Painting quality" not in page or "not measured" in page
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
