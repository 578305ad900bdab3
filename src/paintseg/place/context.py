"""The label prior of placement: which base classes surround each novel class.

Novel objects have typical surroundings (boats lie on water, cars on roads). :class:`ContextPrior` learns them from
the support set: the share of each base class in a ring around every reference instance. Support labels carry only
their novel class, so the base classes there come from a *base predictor* (image → base-class ids); by default a
small Gaussian pixel classifier (:class:`PixelClassifier`) fitted on the trainset. Labels are held as bin codes
(:func:`label_codes`), whose counts in a box (:func:`box_counts`) give the ring histograms that
:mod:`.placement` and :mod:`.appearance` score spots with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from paintseg.data.classes import IGNORE, ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8
from paintseg.errors import PaintsegError

from .masks import Box
from .references import Reference

log = logging.getLogger(__name__)

BasePredictor = Callable[[np.ndarray], np.ndarray]  # uint8 H×W×3 image -> H×W base-class ids
FEATURE_SCALES = (5, 15)  # box-filter sizes (pixels) of the pixel classifier's features
RING = 8  # pixels around an instance whose base classes describe its surroundings


class PlacementError(PaintsegError):
    """Placement settings or data that cannot give a plan; the message names the setting or file and the fix."""


# --------------------------------------------------------------------------------------------- base predictor
def pixel_features(image: np.ndarray) -> np.ndarray:
    """Cheap local features per pixel, H×W×8 float32: at each of FEATURE_SCALES the box-blurred RGB and the local
    standard deviation of the grey level (texture)."""
    img = to_uint8(image).astype(np.float32) / 255.0
    gray = img.mean(axis=2)
    feats = []
    for k in FEATURE_SCALES:
        mean = cv2.blur(gray, (k, k))
        var = cv2.blur(gray * gray, (k, k)) - mean * mean
        feats += [cv2.blur(img, (k, k)), np.sqrt(np.maximum(var, 0))[..., None]]
    return np.concatenate(feats, axis=2)


class PixelClassifier:
    """A Gaussian classifier (one full-covariance Gaussian per base class, class priors from pixel counts) on
    :func:`pixel_features`. Calling it on an image gives H×W base-class ids."""

    def __init__(self, class_ids: Sequence[int], means: np.ndarray, covariances: np.ndarray, log_priors: np.ndarray):
        self.class_ids = np.asarray(class_ids, np.uint8)
        self.means = np.asarray(means, np.float64)
        chol = np.linalg.cholesky(np.asarray(covariances, np.float64))
        self._whiten = np.linalg.inv(chol).transpose(0, 2, 1)  # z = (x - mean) @ whiten  has unit covariance
        self._offset = np.asarray(log_priors) - np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)

    @classmethod
    def fit(cls, episode: Episode, max_images: int = 32, pixels_per_class: int = 1500, seed: int = 0,
            progress: bool = False) -> "PixelClassifier":
        """Fit on up to ``max_images`` random trainset images, at most ``pixels_per_class`` random pixels of each base
        class per image (0 and 255 ignored)."""
        base = np.array(episode.classes.base_ids, np.int64)
        rng = np.random.default_rng(seed)
        samples = episode.train
        picked = sorted(rng.permutation(len(samples))[:max_images].tolist())
        xs: list[list[np.ndarray]] = [[] for _ in base]
        counts = np.zeros(len(base), np.float64)
        for i in tqdm(picked, desc="fit base predictor", unit="image", disable=not progress):
            label = episode.read_label(samples[i]).array
            feats = pixel_features(episode.read_image(samples[i]).array)
            if feats.shape[:2] != label.shape:
                raise PlacementError(f"{samples[i].label}: label size {label.shape} differs from its image "
                                     f"{feats.shape[:2]}; run `paintseg data check` on the episode")
            for j, cid in enumerate(base):
                idx = np.flatnonzero(label.reshape(-1) == cid)
                counts[j] += len(idx)
                if len(idx) > pixels_per_class:
                    idx = rng.choice(idx, pixels_per_class, replace=False)
                xs[j].append(feats.reshape(-1, feats.shape[2])[idx])
        keep = [j for j in range(len(base)) if counts[j] > 1]
        if not keep:
            raise PlacementError(f"{episode.root / 'train.txt'}: the trainset labels hold no base-class pixels, so "
                                 f"no base predictor can be fitted; use prior 'appearance' (surroundings by how they "
                                 f"look) or 'uniform', or pass base_predictor=")
        means, covs = [], []
        for j in keep:
            x = np.concatenate(xs[j]).astype(np.float64)  # at least 2 rows: counts[j] > 1
            cov = np.cov(x, rowvar=False)
            covs.append(cov + np.eye(x.shape[1]) * (1e-4 + 0.01 * np.trace(cov) / x.shape[1]))  # shrunk: invertible
            means.append(x.mean(axis=0))
        priors = np.log(counts[keep] / counts[keep].sum())
        return cls(base[keep], np.stack(means), np.stack(covs), priors)

    def log_posteriors(self, image: np.ndarray) -> np.ndarray:
        """H×W×C unnormalised log posteriors, C = len(class_ids)."""
        feats = pixel_features(image)
        x = feats.reshape(-1, feats.shape[2]).astype(np.float64)
        out = np.empty((x.shape[0], len(self.class_ids)))
        for c in range(len(self.class_ids)):
            z = (x - self.means[c]) @ self._whiten[c]
            out[:, c] = self._offset[c] - 0.5 * np.einsum("ij,ij->i", z, z)
        return out.reshape(*feats.shape[:2], -1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.class_ids[np.argmax(self.log_posteriors(image), axis=2)]


# --------------------------------------------------------------------------------------------- context
def label_codes(label: np.ndarray, base_ids: Sequence[int]) -> np.ndarray:
    """Label → bin codes: base class i → i, ignore → B, anything else (background, novel) → B + 1."""
    lut = np.full(256, len(base_ids) + 1, np.uint8)
    lut[IGNORE] = len(base_ids)
    lut[np.asarray(base_ids, np.int64)] = np.arange(len(base_ids))
    return lut[label]


def grow_box(box: Box, by: int, height: int, width: int) -> Box:
    """``box`` grown by ``by`` pixels on every side, clipped to a ``height`` × ``width`` image."""
    return Box(box.x0 - by, box.y0 - by, box.x1 + by, box.y1 + by).clip(height, width)


def box_counts(codes: np.ndarray, box: Box, bins: int) -> np.ndarray:
    """How many pixels of each bin code (:func:`label_codes`) lie inside ``box``."""
    return np.bincount(codes[box.y0 : box.y1, box.x0 : box.x1].reshape(-1), minlength=bins)


def share_of(counts: np.ndarray) -> np.ndarray:
    """Counts as shares of their sum (zeros when there are none): a base-class histogram."""
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def ring_histogram(label: np.ndarray, box: Box, ring: int, base_ids: Sequence[int]) -> np.ndarray:
    """Share of each base class (in ``base_ids`` order) among the labelled base pixels of the frame ``ring`` pixels
    wide around ``box``; background, novel and ignore pixels do not count. All zeros when there are none."""
    codes = label_codes(label, base_ids)
    n = len(base_ids)
    grown = grow_box(box, ring, *label.shape)
    return share_of((box_counts(codes, grown, n + 2) - box_counts(codes, box, n + 2))[:n])


@dataclass
class ContextPrior:
    """For each novel class, the mean share of each base class in the ring around its support instances."""

    base_ids: list[int]
    histograms: dict[int, np.ndarray]  # novel class id -> shares over base_ids (sums to 1)
    instances: dict[int, int] = field(default_factory=dict)  # novel class id -> references that contributed
    ring: int = RING

    @classmethod
    def fit(cls, episode: Episode, references: list[Reference], base_predictor: BasePredictor | None = None,
            ring: int = RING) -> "ContextPrior":
        """Predict base classes on each support image (``base_predictor``, default :meth:`PixelClassifier.fit` on
        the trainset) and average, per class, the normalised base-class histogram of the ring around each instance
        (the instance dilated by ``ring`` pixels, minus novel and ignore pixels)."""
        base_ids = list(episode.classes.base_ids)
        hists = cls.support_histograms(episode, references, base_predictor, ring)
        sums: dict[int, np.ndarray] = {}
        used: dict[int, int] = {}
        for i, hist in hists.items():
            cid = references[i].class_id
            sums[cid] = sums.get(cid, 0) + hist
            used[cid] = used.get(cid, 0) + 1
        for cid in sorted({r.class_id for r in references} - set(sums)):
            log.warning("class %s: no base pixels around any reference; its placements ignore context", cid)
        return cls(base_ids, {c: sums[c] / used[c] for c in sorted(sums)}, used, ring)

    @classmethod
    def from_classes(cls, episode: Episode, names: list[str], ring: int = RING) -> "ContextPrior":
        """The surroundings a user names instead of those the support shows: every novel class lives among the
        base classes ``names``, in equal shares (a support set that shows the class in one kind of place only)."""
        base = {episode.classes.name(i): i for i in episode.classes.base_ids}
        unknown = [n for n in names if n not in base]
        if unknown:
            raise PlacementError(f"near {unknown}: not a base class of {episode.root}; name some of "
                                 f"{', '.join(base)}")
        base_ids = list(episode.classes.base_ids)
        hist = share_of(np.isin(base_ids, [base[n] for n in names]).astype(np.float64))
        return cls(base_ids, {c: hist.copy() for c in episode.classes.novel_ids}, {}, ring)

    @staticmethod
    def support_histograms(episode: Episode, references: list[Reference],
                           base_predictor: BasePredictor | None = None, ring: int = RING) -> dict[int, np.ndarray]:
        """Reference index -> the normalised base-class histogram of the ring around that instance, as predicted
        by ``base_predictor`` (references with no base pixel around them are left out)."""
        base_ids = list(episode.classes.base_ids)
        predictor = base_predictor if base_predictor is not None else PixelClassifier.fit(episode)
        novel = np.array(episode.classes.novel_ids + [IGNORE], np.int64)
        kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
        samples = {(s.name, s.class_id): s for s in episode.support_samples}
        out: dict[int, np.ndarray] = {}
        for key in sorted({(r.source, r.class_id) for r in references}):
            if key not in samples:
                raise PlacementError(f"reference source {key[0]!r} (class {key[1]}) is not a support image of "
                                     f"{episode.root}; extract the references from this episode")
            sample = samples[key]
            excluded = np.isin(episode.read_label(sample).array, novel)
            codes = label_codes(np.asarray(predictor(to_uint8(episode.read_image(sample).array)), np.uint8), base_ids)
            for i, ref in enumerate(references):
                if (ref.source, ref.class_id) != key:
                    continue
                full = np.zeros(codes.shape, np.uint8)
                full[ref.box.y0 : ref.box.y1, ref.box.x0 : ref.box.x1] = ref.mask
                region = grow_box(ref.instance_box, ring, *codes.shape)
                rows, cols = slice(region.y0, region.y1), slice(region.x0, region.x1)
                inst = full[rows, cols]
                ringed = (cv2.dilate(inst, kernel) > 0) & (inst == 0) & ~excluded[rows, cols]
                hist = np.bincount(codes[rows, cols][ringed], minlength=len(base_ids) + 2)[: len(base_ids)]
                if hist.sum() > 0:
                    out[i] = share_of(hist)
        return out

    def score(self, class_id: int, histograms: np.ndarray) -> np.ndarray | float:
        """Bhattacharyya coefficient (0: disjoint, 1: identical) between the class prior and one ring histogram
        (1-D) or each row of a 2-D array; 1 for a class without a prior, 0 for an empty histogram."""
        h = np.asarray(histograms, np.float64)
        prior = self.histograms.get(class_id)
        if prior is None:
            out = np.ones(h.shape[:-1])
        else:
            out = np.sqrt(np.clip(h, 0, None) * prior).sum(axis=-1)
        return float(out) if h.ndim == 1 else out

    def to_dict(self) -> dict:
        return {"base_ids": self.base_ids, "ring": self.ring,
                "instances": {str(k): v for k, v in self.instances.items()},
                "histograms": {str(k): [float(x) for x in v] for k, v in self.histograms.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "ContextPrior":
        return cls([int(i) for i in data["base_ids"]], {int(k): np.asarray(v) for k, v in data["histograms"].items()},
                   {int(k): int(v) for k, v in data.get("instances", {}).items()}, int(data.get("ring", RING)))


def prior_summary(prior: ContextPrior, classes: ClassMap) -> dict:
    """Class name → {base class name: share}, largest share first (for reports: "building: 60 % land, 30 % road")."""
    out = {}
    for cid, hist in prior.histograms.items():
        order = np.argsort(-hist, kind="stable")
        out[classes.name(cid)] = {classes.name(prior.base_ids[i]): round(float(hist[i]), 3) for i in order}
    return out
