"""Placement quality without any training: do the placed instances' surroundings look like the real ones'?

For every real novel instance of the query set (a connected component of its label, at least ``min_pixels``), the
*ring* around it - its box grown by ``ring`` pixels, minus the box - is described by colour and texture statistics
of the image (:func:`ring_descriptor`: Lab mean and std, the local grey-level std, the gradient magnitude). Each
placement's ring in its trainset scene is described the same way, and so is the ring of a *random spot*: a box of
the same size at a uniformly drawn position of a random trainset scene (``spots`` of them per placement). The
**fit rate** is the share of (placement, random spot) pairs where the placement's descriptor is nearer (Euclidean,
after standardising every statistic over all rings) to the nearest real query ring than the random spot's is: about
0.5 for uniformly placed instances, higher when placement follows where the class really occurs, lower when it
avoids it.

With ``space="image"`` (the default) only images are read for the descriptors, never labels, so the measure works
where the labels do not describe the surroundings (object datasets whose background is one class); the query labels
are used only to find the real instances - the evaluation set, exactly as the segmentation score uses it. A prior
that itself scores colour/texture statistics (``prior="appearance"``) is partly judged by its own yardstick there,
so ``space="labels"`` describes every ring instead by its base-class histogram (trainset labels for placed and
random spots, query labels for the real instances; Hellinger distance): independent of any image statistic, and
meaningful where the base classes describe the surroundings. ``labels_from`` reads the labels of another episode
with the same file names (e.g. the fully labelled one a relabelled benchmark episode was made from).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8
from paintseg.files import write_text
from paintseg.place.masks import Box
from paintseg.place.context import grow_box

STATISTICS = ("L mean", "a mean", "b mean", "L std", "a std", "b std", "local std", "gradient")


def ring_descriptor(image: np.ndarray, box: Box, ring: int = 16) -> np.ndarray | None:
    """:data:`STATISTICS` of the pixels in the frame ``ring`` pixels wide around ``box`` (None when the frame is
    empty, e.g. a box covering the whole image)."""
    image = to_uint8(image)[..., :3]
    h, w = image.shape[:2]
    outer = grow_box(box, ring, h, w)
    crop = np.ascontiguousarray(image[outer.y0 : outer.y1, outer.x0 : outer.x1])
    frame = np.ones(crop.shape[:2], bool)
    frame[max(box.y0 - outer.y0, 0) : box.y1 - outer.y0, max(box.x0 - outer.x0, 0) : box.x1 - outer.x0] = False
    if not frame.any():
        return None
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
    grey = lab[..., 0]
    mean, sq = cv2.blur(grey, (5, 5)), cv2.blur(grey * grey, (5, 5))
    local = np.sqrt(np.maximum(sq - mean * mean, 0))
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    px = lab[frame]
    return np.concatenate([px.mean(0), px.std(0), [local[frame].mean(), gradient[frame].mean()]]).astype(np.float64)


def query_instances(episode: Episode, class_id: int, min_pixels: int = 16,
                    samples: list | None = None) -> list[tuple[int, Box]]:
    """(sample index, tight box) of every connected component of ``class_id`` in the labels of ``samples``
    (default: the query set)."""
    out = []
    for i, sample in enumerate(episode.query if samples is None else samples):
        if sample.label is None:
            continue
        components, n = ndimage.label(episode.read_label(sample).array == class_id, structure=np.ones((3, 3)))
        for k, (rows, cols) in enumerate(ndimage.find_objects(components), 1):
            if (components[rows, cols] == k).sum() >= min_pixels:
                out.append((i, Box(cols.start, rows.start, cols.stop, rows.stop)))
    return out


def label_ring(label: np.ndarray, box: Box, ring: int, base_ids: list[int]) -> np.ndarray | None:
    """Square root of the base-class shares of the frame around ``box`` (so Euclidean distance is Hellinger's);
    None when the frame holds no base pixel."""
    from paintseg.place.context import ring_histogram

    hist = ring_histogram(label, box, ring, base_ids)
    return np.sqrt(hist) if hist.sum() > 0 else None


def fit_rate(episode: Episode, placements: list, ring: int = 16, seed: int = 0, min_pixels: int = 16,
             spots: int = 8, space: str = "image", labels_from: Episode | None = None,
             against: str = "query") -> dict:
    """The placement-quality figure of the module docstring, per novel class: ``{class name: {"fit_rate",
    "placements", "query_instances"}}`` (a class without real query instances or placements is left out). Each
    placement is compared with ``spots`` random spots of its size (the share it beats), which steadies the figure.
    ``space``: ``"image"`` (colour/texture of the ring) or ``"labels"`` (its base-class shares). ``against="support"``
    compares with the support instances' surroundings instead of the query's (image space only: support labels hold
    no base class) - does a plan follow what the support set shows, whatever the query looks like?"""
    if space not in ("image", "labels"):
        raise ValueError(f"fit_rate space {space!r}: use 'image' or 'labels'")
    if against not in ("query", "support") or (against == "support" and space == "labels"):
        raise ValueError(f"fit_rate against {against!r} in space {space!r}: use 'query', or 'support' with 'image'")
    rng = np.random.default_rng(seed)
    images: dict[str, np.ndarray] = {}
    source = labels_from if labels_from is not None else episode
    base_ids = list(source.classes.base_ids)

    def image(kind: str, key) -> np.ndarray:
        name = f"{kind}:{key}"
        if name not in images:
            ep = source if space == "labels" else episode
            real = ep.query if against == "query" else ep.support_samples
            sample = real[key] if kind == "query" else ep.train[ep.train_names.index(key)]
            images[name] = (ep.read_label(sample).array if space == "labels"
                            else to_uint8(episode.read_image(sample).array))
        return images[name]

    def describe(array: np.ndarray, box: Box) -> np.ndarray | None:
        return label_ring(array, box, ring, base_ids) if space == "labels" else ring_descriptor(array, box, ring)

    out = {}
    for cid in episode.classes.novel_ids:
        mine = [p for p in placements if p.class_id == cid]
        pool = episode.query if against == "query" else [s for s in episode.support_samples if s.class_id == cid]
        if against == "support":  # indices into support_samples, as image() reads them
            pool_index = [episode.support_samples.index(s) for s in pool]
            found = [(pool_index[i], box) for i, box in query_instances(episode, cid, min_pixels, pool)]
        else:
            found = query_instances(episode, cid, min_pixels)
        real = [describe(image("query", i), box) for i, box in found]
        real = [d for d in real if d is not None]
        if not mine or not real:
            continue
        placed, random, owner = [], [], []
        for p in mine:
            d = describe(image("train", p.scene), p.box)
            if d is None:
                continue
            for _ in range(spots):
                scene = image("train", episode.train_names[int(rng.integers(len(episode.train_names)))])
                h, w = scene.shape[:2]
                bw, bh = min(p.box.width, w), min(p.box.height, h)
                x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
                r = describe(scene, Box(x0, y0, x0 + bw, y0 + bh))
                if r is not None:
                    random.append(r)
                    owner.append(len(placed))
            placed.append(d)
        if not placed or not random:
            continue
        every = np.concatenate([real, placed, random])
        centre, scale = every.mean(0), every.std(0) + 1e-9
        if space == "labels":  # shares are comparable as they are: no standardising
            centre, scale = np.zeros_like(centre), np.ones_like(scale)
        q, a, b = ((np.asarray(x) - centre) / scale for x in (real, placed, random))
        near_placed = np.sqrt(((a[:, None] - q[None]) ** 2).sum(-1)).min(1)
        near_random = np.sqrt(((b[:, None] - q[None]) ** 2).sum(-1)).min(1)
        beats = near_placed[np.asarray(owner)] < near_random  # each random spot against its own placement
        out[episode.classes.name(cid)] = {"fit_rate": round(float(beats.mean()), 3), "placements": len(placed),
                                          "query_instances": len(real), "random_spots": len(random)}
    return out


def orientation_agreement(episode: Episode, placements: list, references: list, ring: int = 16,
                          min_pixels: int = 64) -> dict:
    """Do placed instances lie along their surroundings' structure the way real query instances do?

    Per novel class: the mean :func:`paintseg.place.orientation.alignment` (``cos 2Δ`` between an instance's
    axis and the direction of the edges around it; 1 = along it, -1 = across it, ~0 for random angles) over
    the real query instances and over the placements (their reference's axis turned by the placement's angle),
    counting only elongated instances in coherent surroundings (the thresholds of
    :func:`~paintseg.place.orientation.placement_angle`)."""
    from paintseg.place.orientation import (MIN_COHERENCE, MIN_ELONGATION, alignment, instance_axis,
                                               structure_angle)

    out = {}
    train = {s.name: s for s in episode.train}
    for cid in episode.classes.novel_ids:
        real = []
        for i, box in query_instances(episode, cid, min_pixels):
            sample = episode.query[i]
            label = episode.read_label(sample).array[box.y0 : box.y1, box.x0 : box.x1] == cid
            axis, elongation = instance_axis(label)
            angle, coherence = structure_angle(to_uint8(episode.read_image(sample).array), box, ring)
            if elongation >= MIN_ELONGATION and coherence >= MIN_COHERENCE:
                real.append(alignment(axis, angle))
        placed = []
        for p in (p for p in placements if p.class_id == cid and p.scene in train):
            axis, elongation = instance_axis(references[p.reference].mask)
            angle, coherence = structure_angle(to_uint8(episode.read_image(train[p.scene]).array), p.box, ring)
            if elongation >= MIN_ELONGATION and coherence >= MIN_COHERENCE:
                placed.append(alignment(axis + p.angle, angle))
        if real or placed:
            out[episode.classes.name(cid)] = {
                "query": round(float(np.mean(real)), 3) if real else None, "query_instances": len(real),
                "placed": round(float(np.mean(placed)), 3) if placed else None, "placements": len(placed)}
    return out


def placement_quality(episode: Episode, placements: list, references: list, out: Path | None = None,
                      seed: int = 0) -> dict:
    """How well a plan fits, per novel class (written to ``out/placement_quality.json`` when ``out`` is given): the
    fit rate by colour/texture, by base-class shares (``fit_rate_labels``, independent of image statistics) and
    against the support instances' own surroundings (``fit_rate_support``), and the orientation agreement (do placed
    instances lie along their surroundings as the real query instances do)."""
    quality = fit_rate(episode, placements, seed=seed)
    by_labels = fit_rate(episode, placements, seed=seed, space="labels")
    by_support = fit_rate(episode, placements, seed=seed, against="support")
    for name, q in quality.items():
        if name in by_labels:
            q["fit_rate_labels"] = by_labels[name]["fit_rate"]
        if name in by_support:
            q["fit_rate_support"] = by_support[name]["fit_rate"]
    for name, agreement in orientation_agreement(episode, placements, references).items():
        if name in quality:
            quality[name]["orientation"] = agreement
    if out is not None:
        write_text(Path(out) / "placement_quality.json", json.dumps(quality, indent=1) + "\n")
    return quality
