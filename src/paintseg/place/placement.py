"""Placement: where to paint each new instance — scene, box, context window, mask shape and seed.

Novel objects have typical surroundings (boats lie on water, cars on roads). :class:`ContextPrior` learns them from
the support set: the share of each base class in a ring around every reference instance. Support labels carry only
their novel class, so the base classes there come from a *base predictor* (image → base-class ids); by default a
small Gaussian pixel classifier (:class:`PixelClassifier`) fitted on the trainset.

:func:`plan_placements` then, for each placement, takes a reference (cycling through the class's references in random
order), a box of the reference's size (± ``size_jitter``), ``candidates`` random positions in random trainset scenes,
scores each by the Bhattacharyya coefficient between the base-class histogram of the trainset *label* in the ring
around the box and the class prior, and draws one with probability ∝ score ** ``temperature`` — mostly fitting
surroundings, sometimes not. ``prior="uniform"`` draws scenes and positions uniformly. Boxes never cover mostly
ignore pixels and never overlap another box in the same scene. Boxes are ``(x0, y0, x1, y1)``, half-open, in scene
pixels. Everything is deterministic for the seed::

    refs = extract_references(episode)
    plan = plan_placements(episode, refs, per_class=200, seed=0)
    save_placements(plan, "run/placements.jsonl")
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from paintseg.config import PlaceConfig
from paintseg.data.classes import IGNORE, ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .masks import MASK_KINDS, Box
from .references import Reference

log = logging.getLogger(__name__)

PRIORS = ("context", "uniform", "appearance", "auto")
REFERENCE_WEIGHTS = ("uniform", "area")
BasePredictor = Callable[[np.ndarray], np.ndarray]  # uint8 H×W×3 image -> H×W base-class ids
FEATURE_SCALES = (5, 15)  # box-filter sizes (pixels) of the pixel classifier's features


class PlacementError(PaintsegError):
    """Placement settings or data that cannot give a plan; the message names the setting or file and the fix."""


@dataclass
class Placement:
    """One instance to paint: into which trainset scene, from which reference, where, and with which mask shape."""

    scene: str  # trainset image name (an episode.train_names entry)
    class_id: int
    reference: int  # index into the references list
    box: Box  # where the instance goes, scene pixel coordinates
    window: Box  # square context window (scene coordinates) holding the box; painted, then pasted back
    mask_kind: str  # one of MASK_KINDS
    seed: int  # drives mask shape and sampling noise downstream
    angle: float = 0.0  # degrees (counter-clockwise) the reference is turned by (paintseg.place.orientation)
    score: float | None = None  # the prior's score of the chosen spot (None: uniform placement)

    def to_dict(self) -> dict:
        return {**asdict(self), "box": list(self.box), "window": list(self.window)}

    @classmethod
    def from_dict(cls, data: dict) -> "Placement":
        score = data.get("score")
        return cls(str(data["scene"]), int(data["class_id"]), int(data["reference"]), Box(*map(int, data["box"])),
                   Box(*map(int, data["window"])), str(data["mask_kind"]), int(data["seed"]),
                   float(data.get("angle", 0.0)), None if score is None else float(score))


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
    ring: int = 8

    @classmethod
    def fit(cls, episode: Episode, references: list[Reference], base_predictor: BasePredictor | None = None,
            ring: int = 8) -> "ContextPrior":
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
    def from_classes(cls, episode: Episode, names: list[str], ring: int = 8) -> "ContextPrior":
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
                           base_predictor: BasePredictor | None = None, ring: int = 8) -> dict[int, np.ndarray]:
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
                   {int(k): int(v) for k, v in data.get("instances", {}).items()}, int(data.get("ring", 8)))


def prior_summary(prior: ContextPrior, classes: ClassMap) -> dict:
    """Class name → {base class name: share}, largest share first (for reports: "building: 60 % land, 30 % road")."""
    out = {}
    for cid, hist in prior.histograms.items():
        order = np.argsort(-hist, kind="stable")
        out[classes.name(cid)] = {classes.name(prior.base_ids[i]): round(float(hist[i]), 3) for i in order}
    return out


# --------------------------------------------------------------------------------------------- windows
def window_for(box: Box, scene_hw: tuple[int, int], rng: np.random.Generator,
               coverage: tuple[float, float] = (0.10, 0.25)) -> Box:
    """A square window holding ``box`` so that the box covers a share of it drawn uniformly from ``coverage``.

    The box sits at a random offset inside; the window is then shifted (never shrunk) into the scene. It is never
    smaller than the box's longer side (so a very elongated box covers less than ``coverage[0]``) and never larger
    than the scene's shorter side (a scene too small for the ideal window gets the largest square that fits).
    """
    lo, hi = coverage
    if not 0 < lo <= hi <= 1:
        raise PlacementError(f"coverage {coverage} must satisfy 0 < low <= high <= 1 (for example (0.10, 0.25))")
    height, width = scene_hw
    area = max(box.area, 1)
    side = int(round(np.sqrt(area / rng.uniform(lo, hi))))
    smallest, largest = int(np.ceil(np.sqrt(area / hi))), int(np.floor(np.sqrt(area / lo)))
    if smallest <= largest:  # keep the rounded side inside the coverage range when integers allow
        side = min(max(side, smallest), largest)
    side = min(max(side, box.width, box.height, 1), height, width)
    x0 = int(rng.integers(box.x1 - side, box.x0 + 1)) if side >= box.width else box.x0
    y0 = int(rng.integers(box.y1 - side, box.y0 + 1)) if side >= box.height else box.y0
    x0, y0 = min(max(x0, 0), width - side), min(max(y0, 0), height - side)
    return Box(x0, y0, x0 + side, y0 + side)


# --------------------------------------------------------------------------------------------- planning
def _draw(rng: np.random.Generator, scenes: list[np.ndarray], size: tuple[int, int], taken: dict[int, list[Box]],
          count: int, ring: int, bins: int, max_ignore: float) -> tuple[list[tuple[int, Box]], list[np.ndarray]]:
    """``count`` random boxes of ``size`` (clipped to the scene) in random scenes; the free ones (at most
    ``max_ignore`` ignore, no overlap with ``taken``) as (scene, box), and the base-class ring histogram of each."""
    spots, hists = [], []
    for s in rng.integers(0, len(scenes), count).tolist():
        height, width = scenes[s].shape
        w, h = min(size[0], width), min(size[1], height)
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = Box(x0, y0, x0 + w, y0 + h)
        inside = box_counts(scenes[s], box, bins + 2)
        if inside[bins] <= max_ignore * box.area and not any(box.overlaps(b) for b in taken.get(s, [])):
            spots.append((s, box))
            hists.append(share_of((box_counts(scenes[s], grow_box(box, ring, height, width), bins + 2) - inside)[:bins]))
    return spots, hists


def plan_placements(episode: Episode, references: list[Reference], per_class: int, seed: int = 0,
                    prior: str = "context", size_jitter: float = 0.2, mask_kinds: Sequence[str] = MASK_KINDS,
                    coverage: tuple[float, float] = (0.10, 0.25), progress: bool = True, *,
                    context: ContextPrior | None = None, base_predictor: BasePredictor | None = None,
                    ring: int = 8, candidates: int = 64,
                    temperature: float = PlaceConfig.model_fields["selectivity"].default, max_ignore: float = 0.5,
                    rounds: int = 8, reference_weights: str = "uniform", scorer=None,
                    features: Sequence[str] = ("colour",), orient: bool = False) -> list[Placement]:
    """``per_class`` placements for every class of ``references``, ordered by class (see the module docstring).

    ``prior`` ``"appearance"`` and ``"auto"`` weigh spots with a :class:`paintseg.place.appearance.SpotScorer`
    (``scorer``, fitted here with the appearance ``features`` when None): how the surroundings look, alone or mixed
    with the label prior by held-out measurement. ``orient`` turns elongated references so that they keep the
    relation to the structure around them that they had in their support image (:mod:`.orientation`).

    ``context`` is a fitted :class:`ContextPrior` (fitted here with ``base_predictor`` and ``ring`` when None and
    ``prior="context"``). ``reference_weights`` picks each placement's reference: ``uniform`` cycles through the
    class's references in random order (every instance equally often); ``area`` draws them with probability ∝ their
    pixel count, so the pasted pixels follow the support set's own mix of large and small instances (a support set
    with many small label fragments would otherwise paste mostly fragments). A box may cover at most ``max_ignore``
    ignore pixels. When ``rounds`` draws of ``candidates`` positions give no free, valid spot, that placement is
    skipped with a warning.
    """
    if prior not in PRIORS:
        raise PlacementError(f"unknown prior {prior!r}; use one of {', '.join(PRIORS)}")
    if reference_weights not in REFERENCE_WEIGHTS:
        raise PlacementError(f"unknown reference_weights {reference_weights!r}; use one of "
                             f"{', '.join(REFERENCE_WEIGHTS)}")
    if not mask_kinds or any(k not in MASK_KINDS for k in mask_kinds):
        raise PlacementError(f"mask kinds {list(mask_kinds)} must be a non-empty subset of {', '.join(MASK_KINDS)}")
    if per_class < 0 or not 0 <= size_jitter < 1 or candidates < 1 or rounds < 1 or temperature < 0:
        raise PlacementError(f"need per_class >= 0, 0 <= size_jitter < 1, candidates >= 1, rounds >= 1 and "
                             f"temperature >= 0; got {per_class}, {size_jitter}, {candidates}, {rounds}, {temperature}")
    if not references:
        raise PlacementError("no references to place; extract them from the support set first (extract_references)")
    if not episode.train_names:
        raise PlacementError(f"{episode.root / 'train.txt'}: lists no trainset scenes to paint into")
    if prior in ("uniform", "appearance"):
        context = None
    elif context is None:
        context = ContextPrior.fit(episode, references, base_predictor, ring)
    base_ids, ring = (context.base_ids, context.ring) if context is not None else (episode.classes.base_ids, ring)
    n, names = len(base_ids), episode.train_names
    scenes = [label_codes(episode.read_label(s).array, base_ids)
              for s in tqdm(episode.train, desc="read scenes", unit="label", disable=not progress)]
    if prior in ("appearance", "auto") and scorer is None:
        from .appearance import fit_scorer

        scorer = fit_scorer(episode, references, prior, scenes, context, base_predictor, ring, features=features,
                            seed=seed, progress=progress, cell=PlaceConfig.model_fields["appearance_cell"].default)
    taken: dict[int, list[Box]] = {}  # scene index -> boxes placed in it
    turn = _Orienter(episode, references, ring) if orient else None
    plan: list[Placement] = []
    classes = sorted({r.class_id for r in references})
    bar = tqdm(total=per_class * len(classes), desc="plan placements", unit="placement", disable=not progress)
    for cid in classes:
        rng = np.random.default_rng([seed, cid])
        mine = [i for i, r in enumerate(references) if r.class_id == cid]
        queue: list[int] = []
        areas = np.array([float(np.count_nonzero(references[i].mask)) for i in mine])
        for _ in range(per_class):
            if reference_weights == "area":
                ref_index = mine[int(rng.choice(len(mine), p=areas / areas.sum()))]
            else:
                if not queue:
                    queue = [mine[i] for i in rng.permutation(len(mine))]
                ref_index = queue.pop(0)
            inst = references[ref_index].instance_box
            factor = rng.uniform(1 - size_jitter, 1 + size_jitter)
            size = (max(1, int(round(inst.width * factor))), max(1, int(round(inst.height * factor))))
            found = None
            for _ in range(rounds):
                spots, hists = _draw(rng, scenes, size, taken, candidates, ring, n, max_ignore)
                if not spots:
                    continue
                scores = None
                if scorer is not None:  # appearance (and label) prior
                    scores = np.asarray(scorer.score(cid, spots, hists), np.float64)
                elif context is not None:
                    scores = np.asarray(context.score(cid, np.stack(hists)), np.float64)
                weights = np.ones(len(spots)) if scores is None else scores ** temperature  # p ∝ score ** T
                weights = weights if weights.sum() > 0 else np.ones(len(spots))  # nothing fits at all: any spot
                pick = int(rng.choice(len(spots), p=weights / weights.sum()))
                found = (*spots[pick], None if scores is None else round(float(scores[pick]), 4))
                break
            bar.update(1)
            if found is None:
                log.warning("class %s: no free spot for a %dx%d box after %d x %d candidates; placement skipped "
                            "(lower per_class or add trainset scenes)", cid, size[0], size[1], rounds, candidates)
                continue
            s, box, score = found
            angle = 0.0
            if turn is not None:
                angle, box = turn(ref_index, names[s], box, factor, scenes[s], taken.get(s, []), max_ignore, n)
            taken.setdefault(s, []).append(box)
            window = window_for(box, scenes[s].shape, rng, coverage)
            kind = mask_kinds[int(rng.integers(len(mask_kinds)))]
            plan.append(Placement(names[s], cid, ref_index, box, window, kind, int(rng.integers(2**31 - 1)), angle,
                                  score))
    bar.close()
    return plan


class _Orienter:
    """For ``orient=True``: the structure direction around every reference (in its support image) and, per chosen
    spot, the turn that keeps it (:func:`paintseg.place.orientation.placement_angle`) with the turned box."""

    def __init__(self, episode: Episode, references: list[Reference], ring: int):
        from paintseg.data.episode import SceneCache
        from .orientation import instance_axis, structure_angle

        self.references, self.ring = references, max(ring, 16)
        support = {s.name: s for s in episode.support_samples}
        images: dict[str, np.ndarray] = {}
        self.structure, self.elongation = [], []
        for ref in references:
            if ref.source not in images:
                images[ref.source] = to_uint8(episode.read_image(support[ref.source]).array)
            self.structure.append(structure_angle(images[ref.source], ref.instance_box, self.ring))
            self.elongation.append(instance_axis(ref.mask)[1])
        self.scenes = SceneCache(episode)

    def __call__(self, ref_index: int, scene: str, box: Box, factor: float, codes: np.ndarray, taken: list[Box],
                 max_ignore: float, bins: int) -> tuple[float, Box]:
        from .orientation import placement_angle, rotated_size, structure_angle

        spot = structure_angle(self.scenes.image(scene), box, self.ring)
        angle = placement_angle(self.structure[ref_index], spot, self.elongation[ref_index])
        if angle == 0:
            return 0.0, box
        w, h = rotated_size(self.references[ref_index].mask, angle)
        height, width = codes.shape
        w, h = min(max(1, int(round(w * factor))), width), min(max(1, int(round(h * factor))), height)
        cx, cy = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
        x0, y0 = min(max(cx - w // 2, 0), width - w), min(max(cy - h // 2, 0), height - h)
        turned = Box(x0, y0, x0 + w, y0 + h)
        if box_counts(codes, turned, bins + 2)[bins] > max_ignore * turned.area or any(turned.overlaps(b)
                                                                                      for b in taken):
            return 0.0, box  # the turned box does not fit where the upright one did: keep it upright
        return angle, turned


# --------------------------------------------------------------------------------------------- storage
def save_placements(placements: list[Placement], path: str | Path) -> Path:
    """One JSON object per line (:meth:`Placement.to_dict`), written to a temporary name and renamed."""
    path = Path(path)
    write_text(path, "".join(json.dumps(p.to_dict()) + "\n" for p in placements))
    log.info("wrote %d placements to %s", len(placements), path)
    return path


def load_placements(path: str | Path) -> list[Placement]:
    """Read what :func:`save_placements` wrote."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"{path}: no such placements file; write it with save_placements (or the plan stage)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Placement.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise PlacementError(f"{path}: line {n} is not a placement ({e!r}); rewrite the file with "
                                 f"save_placements") from None
    return out
