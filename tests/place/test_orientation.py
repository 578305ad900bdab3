"""orientation: structure directions, instance axes, turned references, and plans that keep a boat along its quay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paintseg.config import PlaceConfig
from paintseg.data.episode import Episode
from paintseg.data.raster import write_image, write_label
from paintseg.place.masks import Box
from paintseg.place.orientation import (alignment, instance_axis, placement_angle, rotate_reference,
                                           structure_angle)
from paintseg.place.placement import Placement, load_placements, plan_placements, save_placements
from paintseg.place.references import extract_references

from conftest import tiny_classes


def stripes(h: int, w: int, vertical: bool, period: int = 8) -> np.ndarray:
    axis = np.arange(w if vertical else h) // period % 2
    band = (axis[None, :] if vertical else axis[:, None]) * np.ones((h, w), np.int64)
    return np.where(band[..., None] == 1, [200, 190, 170], [40, 80, 140]).astype(np.uint8)


def test_structure_angle_and_instance_axis():
    rows = stripes(64, 64, vertical=False)
    angle, coherence = structure_angle(rows, Box(24, 24, 40, 40), 16)
    assert abs(angle) < 1 and coherence > 0.95  # horizontal edges
    angle, coherence = structure_angle(stripes(64, 64, vertical=True), Box(24, 24, 40, 40), 16)
    assert abs(abs(angle) - 90) < 1 and coherence > 0.95
    assert structure_angle(np.full((32, 32, 3), 90, np.uint8), Box(8, 8, 24, 24), 8) == (0.0, 0.0)  # flat: none

    mask = np.zeros((20, 40), bool)
    mask[8:12, 4:36] = True  # a 32x4 horizontal bar
    axis, elongation = instance_axis(mask)
    assert abs(axis) < 1 and elongation == pytest.approx(8, rel=0.05)
    diagonal = np.eye(30, dtype=bool) | np.eye(30, k=1, dtype=bool)  # down-right as displayed: -45 (clockwise)
    assert instance_axis(diagonal)[0] == pytest.approx(-45, abs=1)
    assert alignment(0, 90) == pytest.approx(-1) and alignment(5, -5) > 0.9
    assert alignment(10, 55) == pytest.approx(0, abs=1e-9)

    assert placement_angle((0.0, 0.9), (90.0, 0.8), elongation=8) == 90
    assert placement_angle((0.0, 0.9), (90.0, 0.1), elongation=8) == 0  # the spot has no direction
    assert placement_angle((0.0, 0.9), (90.0, 0.8), elongation=1.1) == 0  # a round instance is not turned


def test_rotate_reference_turns_crop_and_mask():
    from paintseg.place.references import Reference

    image = np.zeros((20, 40, 3), np.uint8)
    mask = np.zeros((20, 40), bool)
    mask[8:12, 4:36] = True
    image[mask] = 255
    ref = Reference(image, mask, 4, "s.png", Box(0, 0, 40, 20), Box(4, 8, 36, 12))
    turned = rotate_reference(ref, 90)
    assert turned.image.shape[:2] == (40, 20) and turned.mask.shape == (40, 20)
    assert abs(abs(instance_axis(turned.mask)[0]) - 90) < 1 and turned.mask.sum() == pytest.approx(mask.sum(), 0.1)
    assert (turned.image[turned.mask] > 200).all() and rotate_reference(ref, 0) is ref


def make_quay_episode(root: Path) -> Path:
    """Boats (32x6, class 4) lie along horizontal quays in the support images; trainset quays run vertically."""
    classes = tiny_classes()
    root.mkdir(parents=True)
    classes.save(root / "classes.json")
    rng = np.random.default_rng(0)
    train = []
    for i in range(6):
        write_image(root / f"trainset/images/t{i}.png", stripes(96, 96, vertical=True, period=12))
        write_label(root / f"trainset/labels/t{i}.png", np.full((96, 96), 1, np.uint8), classes=classes)
        train.append(f"t{i}.png")
    support = []
    for i in range(3):
        image = stripes(96, 96, vertical=False, period=12)
        label = np.zeros((96, 96), np.uint8)
        y, x = 26 + 24 * i, int(rng.integers(10, 50))
        label[y : y + 6, x : x + 32] = 4
        image[label == 4] = (230, 60, 40)
        write_image(root / f"valset/images/s{i}.png", image)
        write_label(root / f"valset/labels/s{i}.png", label, classes=classes)
        support.append(f"s{i}.png")
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.json").write_text(json.dumps({"support_set": {"4": support}, "query_set": []}))
    return root


def test_orient_turns_boats_along_vertical_quays(tmp_path: Path):
    from paintseg.paint.candidates import SceneCache, make_job

    ep = Episode(make_quay_episode(tmp_path / "ep"))
    refs = extract_references(ep)
    upright = plan_placements(ep, refs, PlaceConfig(per_class=12, prior="uniform"), progress=False)
    assert all(p.angle == 0 and p.box.width > p.box.height for p in upright)
    turned = plan_placements(ep, refs, PlaceConfig(per_class=12, prior="uniform", orient=True), progress=False)
    assert len(turned) == 12
    assert np.mean([abs(p.angle) == 90 and p.box.height > p.box.width for p in turned]) > 0.8
    save_placements(turned, tmp_path / "plan.jsonl")
    assert load_placements(tmp_path / "plan.jsonl") == turned  # the angle survives the file
    p = next(p for p in turned if p.angle)
    job = make_job(0, p, refs, SceneCache(ep))
    assert job.reference.mask.shape[0] > job.reference.mask.shape[1]  # the painted reference is turned too
    old = {k: v for k, v in p.to_dict().items() if k not in ("angle", "score")}
    assert Placement.from_dict(old).angle == 0.0  # plans written before the field still load


def test_cli_place_orient_writes_turned_placements(tmp_path: Path):
    from typer.testing import CliRunner

    from paintseg.cli import app

    root = make_quay_episode(tmp_path / "ep")
    done = CliRunner().invoke(app, ["place", str(root), "--out", str(tmp_path / "plan"), "--per-class", "8",
                                    "--prior", "uniform", "--orient"])
    assert done.exit_code == 0, done.output
    plan = load_placements(tmp_path / "plan/placements.jsonl")
    assert len(plan) == 8 and sum(abs(p.angle) == 90 for p in plan) >= 6


def test_orientation_agreement_tells_turned_from_upright(tmp_path: Path):
    """Query boats lie along vertical quays (cos 2Δ = 1); turned placements agree, upright ones lie across (-1)."""
    from paintseg.evaluate.placement_fit import orientation_agreement

    root = make_quay_episode(tmp_path / "ep")
    image = stripes(96, 96, vertical=True, period=12)
    label = np.ones((96, 96), np.uint8)
    label[20:52, 40:46] = 4  # a vertical boat
    image[label == 4] = (230, 60, 40)
    write_image(root / "valset/images/q0.png", image)
    write_label(root / "valset/labels/q0.png", label, classes=tiny_classes())
    val = json.loads((root / "val.json").read_text())
    (root / "val.json").write_text(json.dumps({**val, "query_set": ["q0.png"]}))
    ep = Episode(root)
    refs = extract_references(ep)
    turned = plan_placements(ep, refs, PlaceConfig(per_class=10, prior="uniform", orient=True), progress=False)
    result = orientation_agreement(ep, turned, refs)["pool"]
    assert result["query_instances"] == 1 and result["query"] > 0.9
    assert result["placements"] >= 8 and result["placed"] > 0.9
    upright = plan_placements(ep, refs, PlaceConfig(per_class=10, prior="uniform"), progress=False)
    assert orientation_agreement(ep, upright, refs)["pool"]["placed"] < -0.9
