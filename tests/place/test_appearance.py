"""The appearance prior's pieces: ring descriptors from summed-area tables, calibration, the alpha choice, the
fallback where labels hold no base class, and its settings at the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paintseg.config import PlaceConfig
from paintseg.data.episode import Episode
from paintseg.data.raster import read_label, write_label
from paintseg.place.appearance import SceneGrid, _colour_quantities, choose_alpha, roc_auc
from paintseg.place.masks import Box

from conftest import make_water_episode


def test_ring_descriptor_equals_the_frame_pixels_statistics_on_cell_aligned_boxes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3)).astype(np.uint8)
    grid = SceneGrid.of(image, cell=8)
    box, ring = Box(16, 24, 40, 40), 8  # cell-aligned: the frame is exactly the 8-px band around the box
    q = _colour_quantities(image)
    frame = np.zeros(image.shape[:2], bool)
    frame[16:48, 8:48] = True
    frame[24:40, 16:40] = False
    px = q[frame]
    want = np.concatenate([px[:, :3].mean(0), np.sqrt(px[:, 3:6].mean(0) - px[:, :3].mean(0) ** 2),
                           px[:, 6:8].mean(0)])
    assert grid.ring(box, ring) == pytest.approx(want, rel=1e-4, abs=1e-5)  # std from float32 cell means
    assert grid.ring(Box(0, 0, 80, 64), ring) is None  # the box covers the image: no frame
    assert grid.ring(Box(70, 60, 80, 64), 4).shape == (8,)  # a box at the corner still has a frame


def test_roc_auc_and_alpha_choice():
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2, 0.85])) == pytest.approx(5 / 6)
    assert roc_auc(np.array([0.5]), np.array([0.5])) == 0.5
    rng = np.random.default_rng(0)
    neg_a, neg_l = rng.uniform(size=500), rng.uniform(size=500)
    # appearance tells held-out support frames apart, a constant label score does not: alpha 1
    alpha, aucs = choose_alpha(np.full(5, 0.5), np.full(500, 0.5), np.full(5, 0.95), neg_a)
    assert alpha == 1.0 and aucs["0"] == 0.5 and aucs["1"] > 0.9
    # the labels tell them apart and appearance does not: alpha 0
    alpha, aucs = choose_alpha(np.full(5, 0.97), neg_l, rng.uniform(size=5), neg_a)
    assert alpha == 0.0 and aucs["0"] > 0.9


def test_auto_falls_back_to_appearance_without_base_labels(tmp_path: Path):
    """An episode whose trainset labels hold no base class (everything 0): 'context' cannot plan and says what to
    use; 'auto' plans with appearance alone and says why in prior.json."""
    from paintseg.place.plan import place
    from paintseg.place.context import PlacementError
    from paintseg.place.placement import plan_placements
    from paintseg.place.references import extract_references

    root = make_water_episode(tmp_path / "ep", n_train=6)
    ep = Episode(root)
    for n in ep.train_names:
        lab = read_label(root / "trainset/labels" / n).array
        write_label(root / "trainset/labels" / n, np.where(lab == 255, 255, 0).astype(np.uint8), classes=ep.classes)
    ep = Episode(root)
    with pytest.raises(PlacementError, match="use prior 'appearance'"):
        plan_placements(ep, extract_references(ep), PlaceConfig(per_class=5, prior="context"), progress=False)
    summary = place(ep, tmp_path / "plan", PlaceConfig(per_class=12, prior="auto"), progress=False)
    assert summary["placements"] == 12
    info = json.loads((tmp_path / "plan/prior.json").read_text())
    assert info["labels"].startswith("not used:") and info["mix"] == {"pool": {"alpha": 1.0}}
    assert info["appearance"]["support_frames"] == {"4": 3}


def test_cli_place_with_the_auto_prior_and_a_bad_appearance_setting(tmp_path: Path):
    from typer.testing import CliRunner

    from paintseg.cli import app

    root = make_water_episode(tmp_path / "ep", n_train=6, queries=3)
    runner = CliRunner()
    bad = runner.invoke(app, ["place", str(root), "--out", str(tmp_path / "x"), "--prior", "auto",
                              "--appearance", "lite0"])
    assert bad.exit_code != 0 and "appearance: Input should be 'colour' or 'colour+lite0'" in bad.output
    done = runner.invoke(app, ["place", str(root), "--out", str(tmp_path / "plan"), "--per-class", "20", "--prior",
                               "auto"])
    assert done.exit_code == 0, done.output
    assert "pool: fit rate" in done.output and "by base-class shares" in done.output
    info = json.loads((tmp_path / "plan/prior.json").read_text())
    assert set(info) == {"labels", "appearance", "mix"} and info["labels"]["pool"]["water"] > 0.9
    assert set(info["mix"]["pool"]["held_out_auc"]) == {"0", "0.25", "0.5", "0.75", "1"}
    quality = json.loads((tmp_path / "plan/placement_quality.json").read_text())["pool"]
    assert quality["fit_rate_labels"] > 0.6  # pools placed on water, by the labels' own yardstick


def test_lite0_features_join_the_descriptor_and_guide_placement(tmp_path: Path):
    from paintseg.place.appearance import DeepCells
    from paintseg.place.context import ring_histogram
    from paintseg.place.placement import plan_placements
    from paintseg.place.references import extract_references

    deep = DeepCells()
    grid = SceneGrid.of(np.full((50, 70, 3), 128, np.uint8), cell=8, deep=deep)
    assert grid.deep.shape == (5, 6, 112)  # summed-area table of ceil(50/16) x ceil(70/16) cells, 112 channels
    assert grid.ring(Box(16, 16, 32, 32), 8).shape == (8 + 112,)

    root = make_water_episode(tmp_path / "ep", n_train=8)
    ep = Episode(root)
    refs = extract_references(ep)
    config = PlaceConfig(per_class=30, prior="appearance", appearance="colour+lite0")
    plan = plan_placements(ep, refs, config, progress=False)
    labels = {n: read_label(root / "trainset/labels" / n).array for n in ep.train_names}
    water = np.mean([ring_histogram(labels[p.scene], p.box, 8, [1, 2, 3])[1] > 0.5 for p in plan])
    assert water > 0.6  # uniform placement: about a third
