"""Paired seed differences and the query-tile bootstrap (paintseg.evaluate.significance)."""

from __future__ import annotations

import numpy as np
import pytest

from paintseg.data.classes import ClassMap
from paintseg.evaluate.metrics import summarize
from paintseg.evaluate.significance import compare, metric_of, paired_seeds, tile_bootstrap
from paintseg.experiment.summary import verdict_line
from paintseg.evaluate.significance import explain, seeds_needed

CLASSES = ClassMap.from_dict({"classes": [
    {"id": 0, "name": "background", "role": "background", "color": "#000000"},
    {"id": 1, "name": "land", "role": "base", "color": "#aa8800"},
    {"id": 2, "name": "water", "role": "base", "color": "#0000ff"},
    {"id": 3, "name": "boat", "role": "novel", "color": "#ff0000"}]})


def images(n: int, novel_hit: float, rng: np.random.Generator) -> np.ndarray:
    """n per-image 4x4 confusion matrices: base classes mostly right, the novel class found with rate novel_hit."""
    out = np.zeros((n, 4, 4), np.int64)
    for i in range(n):
        land, water, boat = rng.integers(800, 1200), rng.integers(300, 700), rng.integers(20, 60)
        out[i, 1, 1], out[i, 1, 2] = land * 0.9, land * 0.1
        out[i, 2, 2], out[i, 2, 1] = water * 0.95, water * 0.05
        hit = int(boat * np.clip(novel_hit + rng.normal(0, 0.05), 0, 1))
        out[i, 3, 3], out[i, 3, 1] = hit, boat - hit
    return out


def test_metric_of_matches_summarize():
    m = images(10, 0.5, np.random.default_rng(0))
    total = m.sum(0)
    want = summarize(total, CLASSES)
    for metric in ("novel_miou", "base_miou", "score"):
        assert metric_of(total, CLASSES, metric) == pytest.approx(want[metric], abs=1e-3)
    assert metric_of(m, CLASSES, "novel_miou").shape == (10,)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        metric_of(total, CLASSES, "f1")


def test_paired_seeds_interval():
    out = paired_seeds({0: 12.0, 1: 14.0, 2: 13.0}, {0: 10.0, 1: 10.5, 2: 11.0, 3: 99.0})
    assert out["seeds"] == [0, 1, 2] and out["differences"] == [2.0, 3.5, 2.0] and out["mean"] == 2.5
    assert out["std"] == pytest.approx(0.866, abs=1e-3)
    assert out["low"] == pytest.approx(2.5 - 4.303 * 0.866 / 3 ** 0.5, abs=1e-2) and out["beyond"] is True
    noisy = paired_seeds({0: 12.0, 1: 8.0}, {0: 10.0, 1: 10.0})
    assert noisy["mean"] == 0.0 and noisy["beyond"] is False
    one = paired_seeds({0: 12.0}, {0: 10.0})
    assert one["mean"] == 2.0 and one["std"] is None and one["beyond"] is None


def test_tile_bootstrap_separates_a_real_gain_from_none():
    rng = np.random.default_rng(1)
    better = [images(40, 0.8, rng) for _ in range(3)]
    worse = [images(40, 0.4, rng) for _ in range(3)]
    gain = tile_bootstrap(better, worse, CLASSES, "novel_miou", samples=500)
    assert gain["beyond"] and gain["low"] > 20 and gain["mean"] == pytest.approx(
        np.mean([metric_of(b.sum(0), CLASSES, "novel_miou") - metric_of(w.sum(0), CLASSES, "novel_miou")
                 for b, w in zip(better, worse)]), abs=1e-3)
    same = tile_bootstrap(better, better, CLASSES, "novel_miou", samples=200)
    assert same["mean"] == 0 and same["low"] == 0 and same["high"] == 0 and not same["beyond"]
    with pytest.raises(ValueError, match="paired by seed"):
        tile_bootstrap(better, worse[:2], CLASSES, "novel_miou")


def _metrics(matrices: np.ndarray) -> dict:
    total = matrices.sum(0)
    return {**summarize(total, CLASSES), "per_image_confusion": {f"q{i}": m.tolist() for i, m in enumerate(matrices)}}


def test_compare_and_the_report_verdict():
    rng = np.random.default_rng(2)
    painted = {s: _metrics(images(30, 0.7 + 0.02 * s, rng)) for s in range(3)}
    pasted = {s: _metrics(images(30, 0.45, rng)) for s in range(3)}
    c = compare(painted, pasted, CLASSES, "novel_miou")
    assert c["verdict"] == "beyond noise" and c["beyond"] and c["tiles"]["images"] == 30
    one = compare({0: painted[0]}, {0: pasted[0]}, CLASSES)
    assert one["verdict"] == "beyond tile noise; seed noise unknown (1 seed)" and not one["beyond"]
    results = {"comparisons": [{"arm": "diffusion", "against": "copy-paste", "model": "unet-x", "novel_miou": c}]}
    line = verdict_line(results["comparisons"])
    assert line.startswith(f"painting (diffusion) raised novel IoU by {c['seeds']['mean']:.1f} ± ")
    assert "over copy-paste (unet-x) - beyond noise: the 3 seeds' 95 % interval [" in line
    assert "and the query-tile interval [" in line and line.endswith("both exclude 0.")
    assert verdict_line([]) is None
    # against copy-paste-noise too: the verdict names the strongest control, and with one seed what to do
    noisy = {"arm": "diffusion", "against": "copy-paste-noise", "model": "unet-x", "novel_miou": one}
    line = verdict_line(results["comparisons"] + [noisy])
    assert "over copy-paste-noise (unet-x) - not settled: the query-tile interval [" in line
    assert line.endswith("excludes 0, but with 1 seed the seed-to-seed spread is unknown; run 3 or more seeds.")
    # of the two painting arms, the better one against that control
    over_noise = {"arm": "diffusion-noise", "against": "copy-paste-noise", "model": "unet-x", "novel_miou": c}
    line = verdict_line(results["comparisons"] + [noisy, over_noise])
    assert line.startswith("painting (diffusion-noise) raised novel IoU") and "over copy-paste-noise" in line


def test_a_within_noise_verdict_says_which_interval_and_how_many_seeds():
    """2 seeds, a clear tile interval but a wide seed interval (the case that read as a contradiction): the words
    say that the seeds are too few and about how many would settle it."""
    c = {"seeds": {"n": 2, "mean": -13.9, "std": 3.9, "low": -49.0, "high": 21.1, "beyond": False},
         "tiles": {"low": -19.7, "high": -9.0, "beyond": True}, "beyond": False, "verdict": "within noise"}
    text = explain(c)
    assert text.startswith("within noise: the 2 seeds' 95 % interval [-49.0, +21.1] includes 0; at this spread "
                           "about 3 seeds would settle a difference this large")
    assert text.endswith("the query-tile interval [-19.7, -9.0] excludes 0")
    assert seeds_needed(-13.9, 3.9) == 3 and seeds_needed(1.0, 10.0, limit=20) is None
