"""Curation quality on held-out query scenes: how well each refiner recovers an object from the inpaint mask
(``mask_quality``) and how much each filter's choice among K candidates improves the painting (``filter_quality``).

Mask quality.

Every connected component of a novel class in the query labels (at least ``min_pixels``; up to ``count`` per class,
seeded) gets a context window as placements do (``placement.window_for``) and the pipeline's rectangle inpaint mask
around it (``masks.rectangle_mask``); each refiner then recovers the object from the window and that mask, as it
does for a painted candidate, and is scored by IoU with the true instance. ``none`` (the inpaint mask itself) is the
reference point. Real objects are the best case a refiner meets: on paintings it can only do as well as the
painting's outline allows.

Filter quality. A backend paints K candidates into each held-out test window of ``painting.painting_quality``
(a reference of the class, a window of a query image that holds real instances of it); every candidate gets the
class probe's probability (``painting.ClassProbe``: is it the class?) and its colour distance to the image's real
instances (``delta_e``). Each filter scores the K candidates as curation does (``score_many``) and is judged by
what picking its best candidate buys over picking at random (the mean over the K): ``p_class`` up and ``delta_e``
down are gains. The within-test rank correlation of its score with ``p_class`` (Spearman) and, where the probe
calls some candidates the class and some not, the ROC-AUC of its score for telling them apart, are given too.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np
from scipy import ndimage

from paintseg.config import CurateConfig
from paintseg.curate.refine import Refiner, refine_iou
from paintseg.curate.score import Encoder, ranking_auc, score_many
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, to_uint8
from paintseg.paint.candidates import Backend
from paintseg.place.masks import Box, mask_box, rectangle_mask
from paintseg.place.placement import window_for
from paintseg.place.references import Reference

from .placement_fit import query_instances


def mask_quality(episode: Episode, refiners: dict[str, Refiner], count: int = 24, seed: int = 0,
                 min_pixels: int = 64) -> dict:
    """Mean IoU (%) with the true instance and seconds per instance of every refiner, per novel class."""
    rng = np.random.default_rng([seed, 737373])
    out: dict[str, dict] = {}
    for cid in episode.classes.novel_ids:
        found = query_instances(episode, cid, min_pixels)
        picked = [found[i] for i in sorted(rng.permutation(len(found))[:count])]
        scores: dict[str, list[float]] = {name: [] for name in refiners}
        seconds: dict[str, float] = {name: 0.0 for name in refiners}
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # the current query image (instances come in order)
        for index, box in picked:
            if index not in cache:
                sample = episode.query[index]
                label = episode.read_label(sample).array
                cache = {index: (to_uint8(read_image(sample.image).array),
                                 ndimage.label(label == cid, structure=np.ones((3, 3)))[0])}
            image, comps = cache[index]
            inside = comps[box.y0 : box.y1, box.x0 : box.x1]
            k = np.bincount(inside[inside > 0]).argmax()
            truth = comps == k
            tight = mask_box(truth)
            win = window_for(tight, truth.shape, rng)
            rows, cols = slice(win.y0, win.y1), slice(win.x0, win.x1)
            window, gt = np.ascontiguousarray(image[rows, cols]), truth[rows, cols]
            local = tight.shift(-win.x0, -win.y0)
            inpaint = rectangle_mask(gt.shape, local, rng)
            for name, refiner in refiners.items():
                start = time.perf_counter()
                refined = refiner.refine(window, inpaint, Box(*local))
                seconds[name] += time.perf_counter() - start
                scores[name].append(100 * refine_iou(refined, gt))
        if picked:
            out[episode.classes.name(cid)] = {
                name: {"iou": round(statistics.fmean(v), 2), "instances": len(v),
                       "seconds_per_instance": round(seconds[name] / len(v), 4)} for name, v in scores.items()}
    return {"per_class": out, "note": "IoU (%) of each refiner's mask with the true instance, recovered from the "
            "rectangle inpaint mask around a real held-out query instance ('none': the rectangle itself)"}


def filter_quality(episode: Episode, backend: Backend, encoders: dict[str, Encoder], references: Sequence[Reference],
                   candidates: int = 4, tests: int = 12, seed: int = 0, mode: str | None = None,
                   min_pixels: int = 64, modes: Sequence[str] | None = None) -> dict:
    """What each filter's pick among ``candidates`` paintings of the same held-out test gains over a random pick
    (see the module doc); per filter and overall, with the per-test records. ``modes`` scores the same paintings
    with every encoder in each of these modes (filters named ``encoder/mode``) instead of ``mode`` alone (None: the
    curation default, :class:`~paintseg.config.CurateConfig`'s ``score_mode``)."""
    mode = mode or CurateConfig().score_mode
    from scipy.stats import spearmanr

    from .painting import ClassProbe, _tests, colour_distances

    if candidates < 2:
        raise ValueError(f"filter_quality needs at least 2 candidates per test to choose from, not {candidates}")
    tests = _tests(episode, references, tests, seed, min_pixels)
    if not tests:
        return {"tests": 0, "filters": {}, "records": [], "note": "no held-out query image holds a novel class"}
    probe = ClassProbe(episode, references, seed)
    filters = ({f"{name}/{m}": (enc, m) for name, enc in encoders.items() for m in modes} if modes
               else {name: (enc, mode) for name, enc in encoders.items()})
    records = []
    start = time.perf_counter()
    for job, real in tests:
        cands = [c for c in backend.paint([job], candidates)[0] if c.object_mask.sum() >= 8]
        if len(cands) < 2:
            continue
        records.append({
            "test": job.index, "class": episode.classes.name(job.placement.class_id),
            "p_class": [round(probe.score_object(c.image, c.object_mask), 4) for c in cands],
            "delta_e": [round(colour_distances(c.image[c.object_mask], real)["delta_e"], 3) for c in cands],
            "scores": {name: [round(float(v), 5) for v in score_many(enc, [(job.reference, cands, job.box)], m)[0]]
                       for name, (enc, m) in filters.items()}})
    seconds = (time.perf_counter() - start) / max(len(records), 1)
    out: dict[str, dict] = {}
    for name in filters:
        gain_p, gain_e, rho, labels, scores = [], [], [], [], []
        for r in records:
            s, p, e = np.array(r["scores"][name]), np.array(r["p_class"]), np.array(r["delta_e"])
            k = int(np.argmax(s))
            gain_p.append(p[k] - p.mean())
            gain_e.append(e[k] - e.mean())
            if np.ptp(s) > 0 and np.ptp(p) > 0:
                rho.append(float(spearmanr(s, p).statistic))
            labels += list(p > 0.5)
            scores += list(s)
        row = {"tests": len(records), "p_class_gain": round(statistics.fmean(gain_p), 4) if gain_p else None,
               "delta_e_gain": round(statistics.fmean(gain_e), 3) if gain_e else None,
               "spearman_p_class": round(statistics.fmean(rho), 3) if rho else None,
               "auc_probe": round(ranking_auc(scores, labels), 3) if 0 < sum(labels) < len(labels) else None}
        out[name] = row
    picked = [p for r in records for p in r["p_class"]]
    return {"tests": len(records), "candidates": candidates, "modes": list(modes or [mode]), "filters": out,
            "records": records,
            "candidate_class_rate": round(float(np.mean(np.array(picked) > 0.5)), 3) if picked else None,
            "seconds_per_test": round(seconds, 3),
            "note": "per filter: what picking its best of K candidates gains over a random pick - class-probe "
                    "probability (p_class_gain, higher is better) and colour distance to the image's real "
                    "instances (delta_e_gain, lower is better); Spearman of score vs p_class within tests; ROC-AUC "
                    "of score for the probe's class/not-class label over all candidates"}
