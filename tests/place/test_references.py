"""references: novel-class instances cut from support masks, checked on tiny episodes built in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label, write_label
from paintseg.errors import PaintsegError
from paintseg.place.masks import Box
from paintseg.place.references import (ReferencesError, extract_references, instance_masks, load_references,
                                          padded_box, references_summary, save_references)

from conftest import tiny_classes

POOL = 4


def test_tiny_episode_gives_one_reference_per_pool_square(tiny_episode: Path):
    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    supports = ep.support_samples
    assert len(refs) == len(supports) == 2  # each support image holds one pool square
    for ref, sample in zip(refs, supports):
        label = read_label(sample.label).array
        image = read_image(sample.image).array
        ys, xs = np.nonzero(label == POOL)
        side = int(xs.max() - xs.min() + 1)
        assert ref.class_id == POOL and ref.source == sample.name
        assert ref.instance_box == Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        assert ref.area == side * side == len(ys)
        pad = math.ceil(0.15 * side)
        expected = Box(ref.instance_box.x0 - pad, ref.instance_box.y0 - pad, ref.instance_box.x1 + pad,
                       ref.instance_box.y1 + pad).clip(64, 64)
        assert ref.box == expected
        rows, cols = slice(ref.box.y0, ref.box.y1), slice(ref.box.x0, ref.box.x1)
        np.testing.assert_array_equal(ref.mask, label[rows, cols] == POOL)
        np.testing.assert_array_equal(ref.image, image[rows, cols])
        assert ref.image.dtype == np.uint8 and ref.image.shape == (*ref.mask.shape, 3)


def test_padding_is_clipped_at_the_image_edge():
    assert padded_box(Box(0, 10, 20, 30), 0.15, 64, 64) == Box(0, 7, 23, 33)
    assert padded_box(Box(50, 50, 64, 64), 0.5, 64, 64) == Box(43, 43, 64, 64)
    assert padded_box(Box(10, 10, 20, 20), 0.0, 64, 64) == Box(10, 10, 20, 20)


def _constructed() -> np.ndarray:
    m = np.zeros((60, 60), bool)
    m[5:15, 5:15] = True  # large A (100 px)
    m[16:18, 8:10] = True  # fragment 2 px below A (one empty row between): merged into A
    m[40:50, 40:50] = True  # large B (100 px)
    m[52:54, 52:54] = True  # fragment 3 px off B's corner (chessboard distance): merged into B
    m[30:33, 2:5] = True  # fragment 15 px from everything: dropped
    return m


def test_fragments_merge_into_the_nearest_large_instance_or_are_dropped():
    masks = instance_masks(_constructed(), min_area=16, merge_distance=3)
    assert [int(m.sum()) for m in masks] == [104, 104]
    assert masks[0][16:18, 8:10].all() and masks[1][52:54, 52:54].all()
    assert not any(m[30:33, 2:5].any() for m in masks)
    # with merge_distance 2 the corner fragment (3 px away) is dropped, the one 2 px away still merges
    assert [int(m.sum()) for m in instance_masks(_constructed(), 16, 2)] == [104, 100]
    # with min_area above 100 every component is small: the largest (A, first in raster order) is kept
    only = instance_masks(_constructed(), min_area=200, merge_distance=3)
    assert len(only) == 1 and only[0][5:15, 5:15].all() and int(only[0].sum()) == 104
    assert instance_masks(np.zeros((8, 8), bool)) == []


def test_support_image_of_fragments_keeps_its_largest(tiny_episode: Path):
    ep = Episode(tiny_episode)
    first = ep.support_samples[0]
    label = np.zeros((64, 64), np.uint8)
    label[5:8, 5:8] = POOL  # 9 px
    label[40:42, 40:42] = POOL  # 4 px, far away
    write_label(first.label, label, classes=tiny_classes())
    refs = extract_references(ep, min_area=16)
    mine = [r for r in refs if r.source == first.name]
    assert len(mine) == 1 and mine[0].area == 9 and mine[0].instance_box == Box(5, 5, 8, 8)
    assert len(refs) == 2


def test_class_without_pixels_is_an_error_naming_class_and_files(tiny_episode: Path):
    ep = Episode(tiny_episode)
    for s in ep.support_samples:
        write_label(s.label, np.zeros((64, 64), np.uint8), classes=tiny_classes())
    with pytest.raises(ReferencesError) as err:
        extract_references(ep)
    msg = str(err.value)
    assert isinstance(err.value, PaintsegError)
    assert "pool" in msg and "support_0.png" in msg and "support_1.png" in msg and "pick support images" in msg


def test_summary_save_and_load(tiny_episode: Path, tmp_path: Path):
    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    summary = references_summary(refs, ep.classes)
    areas = sorted(r.area for r in refs)
    assert list(summary) == ["pool"] and summary["pool"]["count"] == 2 and summary["pool"]["images"] == 2
    assert summary["pool"]["area"] == pytest.approx({
        "min": areas[0], "q25": areas[0] + 0.25 * (areas[1] - areas[0]), "median": (areas[0] + areas[1]) / 2,
        "q75": areas[0] + 0.75 * (areas[1] - areas[0]), "max": areas[1]})
    assert list(references_summary(refs)) == [POOL]

    folder = save_references(refs, tmp_path / "refs", classes=ep.classes)
    assert sorted(p.name for p in folder.iterdir()) == [
        "pool_0.png", "pool_0_mask.png", "pool_1.png", "pool_1_mask.png", "references.jsonl"]
    lines = [json.loads(x) for x in (folder / "references.jsonl").read_text().splitlines()]
    assert [d["area"] for d in lines] == [r.area for r in refs]
    assert lines[0]["source"] == "support_0.png" and lines[0]["box"] == list(refs[0].box)
    back = load_references(folder)
    for a, b in zip(refs, back):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert (a.class_id, a.source, a.box, a.instance_box) == (b.class_id, b.source, b.box, b.instance_box)
    with pytest.raises(ReferencesError, match="references.jsonl: missing"):
        load_references(tmp_path)
