"""Challenge metrics: one confusion matrix per query set, background never scored, 0.4·base + 0.6·novel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paintseg.data.classes import ClassInfo, ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import write_label
from paintseg.evaluate.metrics import (
    ConfusionMatrix,
    EvaluationError,
    evaluate_predictions,
    format_table,
    iou_per_class,
    summarize,
)

# 3x4 pixels, classes 0 (background), 1, 2; the bottom-right target pixel is ignore.
TARGET = np.array([[0, 0, 1, 1],
                   [0, 1, 1, 2],
                   [2, 2, 2, 255]], np.uint8)
PRED = np.array([[0, 1, 1, 1],
                 [0, 1, 2, 2],
                 [2, 2, 1, 1]], np.uint8)


def four_classes() -> ClassMap:
    return ClassMap([
        ClassInfo(0, "background", "background"),
        ClassInfo(1, "a", "base"),
        ClassInfo(2, "b", "base"),
        ClassInfo(3, "c", "novel"),
        ClassInfo(4, "d", "novel"),
        ClassInfo(255, "ignore", "ignore"),
    ])


# rows = target, cols = pred. Background predicted as "a" twice; "d" absent everywhere.
MATRIX = np.array([[10, 2, 0, 0, 0],
                   [0, 6, 2, 0, 0],
                   [0, 0, 8, 0, 0],
                   [1, 0, 0, 3, 0],
                   [0, 0, 0, 0, 0]], np.int64)


# ------------------------------------------------------------------------------------------------ ConfusionMatrix
def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    expected = np.array([[2, 1, 0],
                         [0, 3, 1],
                         [0, 1, 3]])
    assert cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, expected)
    # IoU 0: 2/(3+2-2); IoU 1: 3/(4+5-3); IoU 2: 3/(4+4-3)
    np.testing.assert_allclose(iou_per_class(cm.matrix), [2 / 3, 0.5, 0.6])


def test_ignore_pixels_not_counted():
    cm = ConfusionMatrix(3)
    cm.update(PRED, TARGET)
    assert cm.matrix.sum() == 11  # 12 pixels, one ignored
    other = PRED.copy()
    other[2, 3] = 0  # whatever is predicted on an ignore pixel does not matter
    cm2 = ConfusionMatrix(3)
    cm2.update(other, TARGET)
    np.testing.assert_array_equal(cm.matrix, cm2.matrix)


def test_background_predicted_as_class_is_false_positive():
    target = np.array([[1, 1, 0, 0]], np.uint8)
    exact, spill = ConfusionMatrix(2), ConfusionMatrix(2)
    exact.update(np.array([[1, 1, 0, 0]], np.uint8), target)
    spill.update(np.array([[1, 1, 1, 1]], np.uint8), target)
    assert iou_per_class(exact.matrix)[1] == 1.0
    assert iou_per_class(spill.matrix)[1] == 0.5  # union grows by the 2 background pixels


def test_accumulation_equals_concatenation_not_mean_of_image_ious():
    t1, p1 = np.ones((1, 4), np.uint8), np.ones((1, 4), np.uint8)  # class 1 IoU 1
    t2, p2 = np.array([[1, 0, 0, 0]], np.uint8), np.array([[0, 1, 0, 0]], np.uint8)  # class 1 IoU 0
    acc = ConfusionMatrix(2)
    acc.update(p1, t1)
    acc.update(p2, t2)
    whole = ConfusionMatrix(2)
    whole.update(np.concatenate([p1, p2], axis=1), np.concatenate([t1, t2], axis=1))
    np.testing.assert_array_equal(acc.matrix, whole.matrix)
    iou = iou_per_class(acc.matrix)[1]
    assert iou == pytest.approx(4 / 6)  # intersection 4, union 5 + 5 - 4
    per_image = [iou_per_class(m)[1] for m in _single_matrices([(p1, t1), (p2, t2)])]
    assert np.mean(per_image) == pytest.approx(0.5)
    assert iou != pytest.approx(np.mean(per_image))


def _single_matrices(pairs):
    for p, t in pairs:
        cm = ConfusionMatrix(2)
        cm.update(p, t)
        yield cm.matrix


def test_values_outside_classes_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"prediction holds value\(s\) \[3\]"):
        cm.update(np.array([[0, 3]], np.uint8), np.array([[0, 1]], np.uint8))
    with pytest.raises(ValueError, match=r"target holds value\(s\) \[7\]"):
        cm.update(np.array([[0, 1]], np.uint8), np.array([[7, 1]], np.uint8))
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    assert cm.matrix.sum() == 0  # nothing half-added
    cm.update(np.array([[0, 1]], np.uint8), np.array([[255, 1]], np.uint8))  # 255 in the target is ignore
    assert cm.matrix.sum() == 1


def test_iou_empty_union_is_nan():
    iou = iou_per_class(MATRIX)
    np.testing.assert_allclose(iou[1:4], [0.6, 0.8, 0.75])
    assert np.isnan(iou[4])


# ------------------------------------------------------------------------------------------------ summarize
def test_summarize_absent_class_scores_zero():
    m = summarize(MATRIX, four_classes())
    assert m["per_class_iou"] == {"a": 60.0, "b": 80.0, "c": 75.0, "d": 0.0}
    assert m["base_miou"] == pytest.approx(70.0)
    assert m["novel_miou"] == pytest.approx(37.5)
    assert m["score"] == pytest.approx(0.4 * 70.0 + 0.6 * 37.5)  # 50.5
    assert m["score"] == pytest.approx(50.5)
    assert "skipped" not in m
    assert "background" not in m["per_class_iou"]
    assert m["roles"] == {"a": "base", "b": "base", "c": "novel", "d": "novel"}


def test_summarize_skip_absent():
    m = summarize(MATRIX, four_classes(), skip_absent=True)
    assert m["per_class_iou"] == {"a": 60.0, "b": 80.0, "c": 75.0}
    assert m["skipped"] == ["d"]
    assert m["novel_miou"] == pytest.approx(75.0)
    assert m["score"] == pytest.approx(0.4 * 70.0 + 0.6 * 75.0)  # 73


def test_predicted_but_absent_from_targets_is_not_skipped():
    matrix = MATRIX.copy()
    matrix[0, 4] = 5  # background predicted as "d": a non-empty union with no intersection
    m = summarize(matrix, four_classes(), skip_absent=True)
    assert m["per_class_iou"]["d"] == 0.0
    assert "skipped" not in m
    assert m["per_class_iou"]["a"] == 60.0


def test_summarize_rejects_small_matrix():
    with pytest.raises(ValueError, match="4x4"):
        summarize(np.zeros((4, 4), np.int64), four_classes())


def test_format_table():
    text = format_table(summarize(MATRIX, four_classes(), skip_absent=True))
    lines = text.splitlines()
    assert any(ln.startswith("a ") and "base" in ln and "60.00" in ln for ln in lines)
    assert any(ln.startswith("c ") and "novel" in ln and "75.00" in ln for ln in lines)
    assert any(ln.startswith("d ") and "skipped" in ln for ln in lines)
    assert any(ln.startswith("base mIoU") and "70.00" in ln for ln in lines)
    assert any(ln.startswith("novel mIoU") and "75.00" in ln for ln in lines)
    assert any(ln.startswith("score") and "73.00" in ln for ln in lines)


# ------------------------------------------------------------------------------------------------ end to end
def _write_perfect_predictions(episode: Episode, pred_dir: Path) -> dict[str, np.ndarray]:
    labels = {}
    for i, sample in enumerate(episode.query):
        label = episode.read_label(sample).array
        suffix = ".tif" if i == 0 else ".png"  # any non-JPEG raster format is found by stem
        write_label(pred_dir / f"{sample.stem}{suffix}", label, classes=episode.classes)
        labels[sample.stem] = label
    return labels


def test_evaluate_predictions_perfect_then_corrupted(tiny_episode: Path, tmp_path: Path):
    episode = Episode(tiny_episode)
    pred_dir = tmp_path / "preds"
    labels = _write_perfect_predictions(episode, pred_dir)

    m = evaluate_predictions(pred_dir, episode, progress=False)
    assert m["images"] == 3
    assert m["per_class_iou"] == {"field": 100.0, "water": 100.0, "road": 100.0, "pool": 100.0}
    assert m["base_miou"] == 100.0 and m["novel_miou"] == 100.0 and m["score"] == 100.0
    assert m["class_ids"] == [0, 1, 2, 3, 4]
    matrix = np.array(m["confusion_matrix"])
    assert matrix.shape == (5, 5)
    assert matrix.sum() == 3 * 64 * 64
    assert (matrix == np.diag(np.diag(matrix))).all()

    # Paint every pool pixel of query_1 as field: pool loses intersection, field gains false positives.
    stem = "query_1"
    bad = labels[stem].copy()
    lost = int((bad == 4).sum())
    bad[bad == 4] = 1
    write_label(pred_dir / f"{stem}.png", bad, classes=episode.classes)
    m2 = evaluate_predictions(pred_dir, episode, progress=False)
    all_labels = np.stack(list(labels.values()))
    pool, field = int((all_labels == 4).sum()), int((all_labels == 1).sum())
    assert lost > 0
    assert m2["per_class_iou"]["pool"] == pytest.approx(100 * (pool - lost) / pool, abs=1e-4)
    assert m2["per_class_iou"]["field"] == pytest.approx(100 * field / (field + lost), abs=1e-4)
    assert m2["per_class_iou"]["water"] == 100.0
    assert m2["novel_miou"] < 100.0 and m2["score"] < m["score"]
    assert m2["score"] == pytest.approx(0.4 * m2["base_miou"] + 0.6 * m2["novel_miou"], abs=1e-3)


def test_missing_prediction_names_stem_and_fix(tiny_episode: Path, tmp_path: Path):
    episode = Episode(tiny_episode)
    pred_dir = tmp_path / "preds"
    _write_perfect_predictions(episode, pred_dir)
    (pred_dir / "query_2.png").unlink()
    with pytest.raises(EvaluationError, match="query_2") as info:
        evaluate_predictions(pred_dir, episode, progress=False)
    assert isinstance(info.value, ValueError)
    assert "1 of 3" in str(info.value)
    assert "paintseg predict" in str(info.value)


def test_size_mismatch_names_both_files(tiny_episode: Path, tmp_path: Path):
    episode = Episode(tiny_episode)
    pred_dir = tmp_path / "preds"
    _write_perfect_predictions(episode, pred_dir)
    write_label(pred_dir / "query_2.png", np.zeros((32, 64), np.uint8))
    with pytest.raises(EvaluationError) as info:
        evaluate_predictions(pred_dir, episode, progress=False)
    msg = str(info.value)
    assert "query_2.png" in msg and str(episode.query[2].label) in msg
    assert "64x32" in msg and "64x64" in msg


def test_unknown_prediction_value_names_file(tiny_episode: Path, tmp_path: Path):
    episode = Episode(tiny_episode)
    pred_dir = tmp_path / "preds"
    _write_perfect_predictions(episode, pred_dir)
    write_label(pred_dir / "query_2.png", np.full((64, 64), 9, np.uint8))
    with pytest.raises(EvaluationError, match=r"query_2\.png.*\[9\]"):
        evaluate_predictions(pred_dir, episode, progress=False)
