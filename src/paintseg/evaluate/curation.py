"""Mask quality on real held-out instances: how well each refiner recovers an object from the inpaint mask.

Every connected component of a novel class in the query labels (at least ``min_pixels``; up to ``count`` per class,
seeded) gets a context window as placements do (``placement.window_for``) and the pipeline's rectangle inpaint mask
around it (``masks.rectangle_mask``); each refiner then recovers the object from the window and that mask, as it
does for a painted candidate, and is scored by IoU with the true instance. ``none`` (the inpaint mask itself) is the
reference point. Real objects are the best case a refiner meets: on paintings it can only do as well as the
painting's outline allows.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from scipy import ndimage

from paintseg.curate.refine import Refiner, refine_iou
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, to_uint8
from paintseg.generate.masks import Box, mask_box, rectangle_mask
from paintseg.generate.placement import window_for

from .placement import query_instances


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
