"""Is a difference between two arms larger than chance? Paired seeds and a bootstrap over query tiles.

Two arms of an experiment (e.g. diffusion vs copy-paste) trained with the same seeds are compared two ways:

- **seeds** (:func:`paired_seeds`): the per-seed differences of a metric, their mean, sample std and a 95 %
  t-interval of the mean; with one seed the seed noise is unknown;
- **query tiles** (:func:`tile_bootstrap`): the query images are resampled with replacement (the same resample for
  both arms, so the comparison stays paired), the metric is recomputed from the summed per-image confusion matrices
  of each run, and the 2.5 / 97.5 percentiles of the seed-averaged difference give a 95 % interval. This measures
  how much the verdict depends on which tiles happened to be in the query set.

:func:`compare` says a difference is *beyond noise* only when both intervals exclude zero (with one seed, only the
tile interval is available and the verdict says so); otherwise it is *within noise*. IoU follows the challenge
(paintseg.evaluate.metrics.summarize): background is not scored, a class with an empty union scores 0.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import numpy as np

from paintseg.data.classes import ClassMap
from paintseg.evaluate.metrics import BASE_WEIGHT, NOVEL_WEIGHT

METRICS = ("novel_miou", "base_miou", "score")
BOOTSTRAP_SAMPLES = 2000


def metric_of(matrices: np.ndarray, classes: ClassMap, metric: str) -> np.ndarray:
    """``metric`` (percent) of each confusion matrix in ``matrices`` (``...×K×K``), as the challenge computes it."""
    m = np.asarray(matrices, np.float64)
    inter = np.diagonal(m, axis1=-2, axis2=-1)
    union = m.sum(-1) + m.sum(-2) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    means = {}
    for role, ids in (("base", classes.base_ids), ("novel", classes.novel_ids)):
        means[role] = iou[..., list(ids)].mean(-1) if len(ids) else np.full(iou.shape[:-1], np.nan)
    if metric == "score":
        return 100 * (BASE_WEIGHT * means["base"] + NOVEL_WEIGHT * means["novel"])
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    return 100 * means[metric.removesuffix("_miou")]


def paired_seeds(a: dict[int, float], b: dict[int, float]) -> dict:
    """Per-seed differences ``a - b`` over the seeds both have: mean, sample std, a 95 % t-interval of the mean
    (None with one seed) and whether it excludes 0."""
    from scipy.stats import t as student

    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    out = {"seeds": seeds, "differences": [round(d, 3) for d in diffs], "n": len(diffs),
           "mean": round(statistics.fmean(diffs), 3) if diffs else None, "std": None, "low": None, "high": None,
           "beyond": None}
    if len(diffs) >= 2:
        std = statistics.stdev(diffs)
        half = float(student.ppf(0.975, len(diffs) - 1)) * std / math.sqrt(len(diffs))
        mean = statistics.fmean(diffs)
        out.update(std=round(std, 3), low=round(mean - half, 3), high=round(mean + half, 3),
                   beyond=bool(mean - half > 0 or mean + half < 0))
    return out


def tile_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], classes: ClassMap, metric: str,
                   samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> dict:
    """95 % bootstrap interval over query tiles of the seed-averaged difference ``a - b`` of ``metric``.

    ``a[i]`` and ``b[i]`` are the per-image confusion matrices (``n_images×K×K``, images in the same order) of the
    two arms' runs with the i-th common seed."""
    if not a or len(a) != len(b):
        raise ValueError("tile_bootstrap needs the same number (>= 1) of runs of both arms, paired by seed")
    n = a[0].shape[0]
    if any(x.shape != a[0].shape for x in (*a, *b)):
        raise ValueError("tile_bootstrap: every run must have the same query images and classes")
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]).astype(np.float64)
    diff = np.zeros(samples)
    point = 0.0
    for x, y in zip(a, b):
        k = x.shape[-1]
        xs = (counts @ x.reshape(n, -1)).reshape(samples, k, k)
        ys = (counts @ y.reshape(n, -1)).reshape(samples, k, k)
        diff += metric_of(xs, classes, metric) - metric_of(ys, classes, metric)
        point += float(metric_of(x.sum(0), classes, metric) - metric_of(y.sum(0), classes, metric))
    diff /= len(a)
    low, high = np.percentile(diff, [2.5, 97.5])
    return {"mean": round(point / len(a), 3), "low": round(float(low), 3), "high": round(float(high), 3),
            "images": n, "samples": samples, "beyond": bool(low > 0 or high < 0)}


def compare(a: dict[int, dict], b: dict[int, dict], classes: ClassMap, metric: str = "novel_miou") -> dict:
    """Arm ``a`` against arm ``b``: ``a`` and ``b`` map seed -> metrics.json dict (with ``per_image_confusion``).

    Returns the seed statistics, the tile bootstrap (None when a run lacks per-image matrices) and a verdict:
    ``beyond noise`` / ``within noise`` (``beyond tile noise; seed noise unknown (1 seed)`` with one seed)."""
    seeds = sorted(set(a) & set(b))
    out = {"metric": metric, "seeds": paired_seeds({s: a[s][metric] for s in seeds},
                                                   {s: b[s][metric] for s in seeds}), "tiles": None}
    if seeds and all("per_image_confusion" in r[s] for r in (a, b) for s in seeds):
        stems = sorted(a[seeds[0]]["per_image_confusion"])
        mats = {name: [np.array([r[s]["per_image_confusion"][t] for t in stems]) for s in seeds]
                for name, r in (("a", a), ("b", b))}
        out["tiles"] = tile_bootstrap(mats["a"], mats["b"], classes, metric)
    tiles_beyond = out["tiles"]["beyond"] if out["tiles"] else None
    seeds_beyond = out["seeds"]["beyond"]
    if seeds_beyond is None:
        out["verdict"] = ("beyond tile noise; seed noise unknown (1 seed)" if tiles_beyond
                          else "within noise")
    else:
        out["verdict"] = "beyond noise" if seeds_beyond and tiles_beyond is not False else "within noise"
    out["beyond"] = out["verdict"] == "beyond noise"
    return out


def seeds_needed(mean: float, std: float, limit: int = 50) -> int | None:
    """The fewest paired seeds whose 95 % t-interval would exclude 0 for a difference of ``mean`` with this seed
    spread ``std`` (None: not within ``limit`` seeds, or no difference)."""
    from scipy.stats import t as student

    if not mean or std is None:
        return None
    for n in range(2, limit + 1):
        if float(student.ppf(0.975, n - 1)) * std / math.sqrt(n) < abs(mean):
            return n
    return None


def explain(comparison: dict) -> str:
    """The verdict of :func:`compare` in words a user can act on: which interval includes 0, and what would settle
    it (more seeds - how many at this spread - or more query tiles)."""
    seeds, tiles = comparison["seeds"], comparison.get("tiles")
    tile_text = (f"the query-tile interval [{tiles['low']:+.1f}, {tiles['high']:+.1f}]" if tiles else None)
    if comparison["beyond"]:
        return (f"beyond noise: the {seeds['n']} seeds' 95 % interval [{seeds['low']:+.1f}, {seeds['high']:+.1f}]"
                + (f" and {tile_text}" if tile_text else "") + " both exclude 0")
    if seeds["beyond"] is None:
        start = f"{tile_text} {'excludes' if tiles and tiles['beyond'] else 'includes'} 0, " if tile_text else ""
        return f"not settled: {start}but with 1 seed the seed-to-seed spread is unknown; run 3 or more seeds"
    parts = []
    if not seeds["beyond"]:
        need = seeds_needed(seeds["mean"], seeds["std"])
        more = (f"; at this spread about {need} seeds would settle a difference this large (--seeds)" if need and
                need > seeds["n"] else "; at this spread no practical number of seeds would settle it")
        parts.append(f"the {seeds['n']} seeds' 95 % interval [{seeds['low']:+.1f}, {seeds['high']:+.1f}] includes 0"
                     + more)
    if tiles and not tiles["beyond"]:
        parts.append(f"{tile_text} includes 0 (the difference depends on which tiles are in the query set)")
    elif tiles and tiles["beyond"]:
        parts.append(f"{tile_text} excludes 0")
    return "within noise: " + "; ".join(parts)


def sign_test(wins: int, n: int) -> float:
    """Two-sided exact sign test: the p-value of ``wins`` successes in ``n`` paired trials against 1/2."""
    from scipy.stats import binomtest

    return float(binomtest(wins, n, 0.5).pvalue) if n else 1.0
