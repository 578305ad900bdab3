"""The appearance prior: where a novel class lives, learnt from how the surroundings of its support instances *look*.

The label prior (:class:`paintseg.place.context.ContextPrior`) describes an instance's surroundings by base
classes. Where the labels do not describe them - an object dataset whose non-object pixels are one background
class (water, lawn and car park all "background"), or coarse land-cover classes ("land" = sand, yards and car
parks) - it cannot tell a good spot from a bad one. The appearance prior reads only images:

- every trainset scene and support image becomes a :class:`SceneGrid`: per cell of ``cell`` pixels, the mean of
  colour/texture quantities (CIE Lab and their squares, the local grey-level std, the gradient magnitude) and,
  optionally (``features`` holding ``"lite0"``), the frozen ImageNet EfficientNet-Lite0 stride-16 features. Summed
  area tables make the descriptor of the frame around any box (:meth:`SceneGrid.ring`) a few array look-ups;
- :meth:`AppearancePrior.fit` describes the frame around every support instance, standardises every statistic over
  random trainset frames, and scores a candidate frame by how near it is to the nearest support frame
  (``exp(-d² / 2h²)``, ``h`` = the median distance from a support frame to its nearest other one), calibrated to
  the share of random trainset frames it beats (a percentile in [0, 1]);
- :class:`SpotScorer` is what :func:`paintseg.place.placement.plan_placements` asks for each candidate spot:
  the label prior alone (``prior="context"``, unchanged), the appearance prior alone (``"appearance"``), or their
  mix (``"auto"``): ``score = p_label ** (1 - alpha) * p_appearance ** alpha`` with both calibrated as percentiles
  of random trainset spots and ``alpha`` chosen per class from :data:`ALPHAS` by how well the mix tells each
  support instance's own surroundings (held out from the prior) from random trainset spots (ROC-AUC, leave one
  out). Labels that say nothing about the surroundings give the label prior an AUC near 0.5, and the mix then
  leans on appearance by itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from paintseg.config import PlaceConfig
from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8

from .context import BasePredictor, ContextPrior, box_counts, grow_box, label_codes, share_of
from .masks import Box
from .references import Reference

log = logging.getLogger(__name__)

FEATURES = ("colour", "lite0")
COLOUR_STATISTICS = ("L mean", "a mean", "b mean", "L std", "a std", "b std", "local std", "gradient")
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEEP_CELL = 16  # the stride of EfficientNet-Lite's stride-16 features
RING_WIDTH = 16  # pixels around a box whose appearance describes its surroundings
RANDOM_SPOTS = 512  # random trainset frames per class that calibrate the scores


def _colour_quantities(image: np.ndarray) -> np.ndarray:
    """H×W×8 float32: L, a, b, their squares, the local (5×5) grey-level std and the gradient magnitude."""
    lab = cv2.cvtColor(np.ascontiguousarray(to_uint8(image)[..., :3]), cv2.COLOR_RGB2LAB).astype(np.float32) / 255
    grey = lab[..., 0]
    mean, sq = cv2.blur(grey, (5, 5)), cv2.blur(grey * grey, (5, 5))
    local = np.sqrt(np.maximum(sq - mean * mean, 0))
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    return np.concatenate([lab, lab * lab, local[..., None], gradient[..., None]], axis=2)


def _cell_means(values: np.ndarray, cell: int) -> np.ndarray:
    """Mean of ``values`` (H×W×D) over cells of ``cell`` pixels (the image edge-padded to whole cells)."""
    h, w = values.shape[:2]
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.pad(values, ((0, gh * cell - h), (0, gw * cell - w), (0, 0)), mode="edge")
    return padded.reshape(gh, cell, gw, cell, -1).mean(axis=(1, 3))


def _integral(cells: np.ndarray, dtype=np.float64) -> np.ndarray:
    out = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1, cells.shape[2]), dtype)
    out[1:, 1:] = cells.astype(np.float64).cumsum(0).cumsum(1)
    return out


class DeepCells:
    """Frozen EfficientNet-Lite0 stride-16 features of an image at its own resolution (padded to a multiple of 32)."""

    def __init__(self) -> None:
        import timm
        import torch

        from paintseg.pretrained import INPUT_MEAN, INPUT_STD, load_packaged_encoder

        self.torch = torch
        self.backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True,
                                          out_indices=(3,))
        load_packaged_encoder(self.backbone, "tf_efficientnet_lite0")
        self.backbone.eval().requires_grad_(False)
        self.mean = torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(INPUT_STD).view(1, 3, 1, 1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        torch = self.torch
        img = to_uint8(image)[..., :3]
        h, w = img.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        x = torch.from_numpy(np.pad(img, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")).permute(2, 0, 1)
        x = (x[None].float() / 255 - self.mean) / self.std
        with torch.no_grad():
            feats = self.backbone(x)[-1][0]
        gh, gw = -(-h // DEEP_CELL), -(-w // DEEP_CELL)
        return feats[:, :gh, :gw].permute(1, 2, 0).numpy().astype(np.float32)


@dataclass
class SceneGrid:
    """Summed-area tables of one image's per-cell colour/texture (and deep) means; see the module docstring."""

    shape: tuple[int, int]  # image height, width
    cell: int
    colour: np.ndarray  # (gh+1)×(gw+1)×8 integral of the colour quantities' cell means
    deep: np.ndarray | None = None  # integral of the deep features' cells (DEEP_CELL pixels), or None

    @classmethod
    def of(cls, image: np.ndarray, cell: int, deep: DeepCells | None = None) -> "SceneGrid":
        colour = _integral(_cell_means(_colour_quantities(image), cell))
        # deep tables in float32: 112 channels per cell, sums of at most a few thousand cells
        return cls(image.shape[:2], cell, colour, _integral(deep(image), np.float32) if deep is not None else None)

    @staticmethod
    def _frame(table: np.ndarray, box: Box, ring: int, cell: int) -> np.ndarray | None:
        gh, gw = table.shape[0] - 1, table.shape[1] - 1
        x0, y0 = min(box.x0 // cell, gw - 1), min(box.y0 // cell, gh - 1)
        x1, y1 = max(-(-box.x1 // cell), x0 + 1), max(-(-box.y1 // cell), y0 + 1)
        r = max(1, int(round(ring / cell)))
        X0, Y0, X1, Y1 = max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, gw), min(y1 + r, gh)

        def total(a0: int, b0: int, a1: int, b1: int) -> np.ndarray:
            return table[b1, a1].astype(np.float64) - table[b0, a1] - table[b1, a0] + table[b0, a0]

        count = (X1 - X0) * (Y1 - Y0) - (x1 - x0) * (y1 - y0)
        if count <= 0:
            return None
        return (total(X0, Y0, X1, Y1) - total(x0, y0, x1, y1)) / count

    def ring(self, box: Box, ring: int) -> np.ndarray | None:
        """The descriptor of the frame ``ring`` pixels wide around ``box`` (cells snapped outwards): the 8
        :data:`COLOUR_STATISTICS`, then the mean deep features when the grid has them; None for an empty frame."""
        m = self._frame(self.colour, box, ring, self.cell)
        if m is None:
            return None
        std = np.sqrt(np.maximum(m[3:6] - m[:3] ** 2, 0))
        parts = [m[:3], std, m[6:8]]
        if self.deep is not None:
            d = self._frame(self.deep, box, max(ring, DEEP_CELL), DEEP_CELL)
            if d is None:
                return None
            parts.append(d)
        return np.concatenate(parts)

    def rings(self, box: Box, ring: int) -> np.ndarray | None:
        """Two scales of surroundings: :meth:`ring` of width ``ring`` and of width ``2 * ring`` (the near frame says
        what the object touches, the wider one what kind of place it is in); None when either is empty."""
        near, wide = self.ring(box, ring), self.ring(box, 2 * ring)
        return None if near is None or wide is None else np.concatenate([near, wide])


def scene_grids(episode: Episode, samples: Sequence, features: Sequence[str], cell: int, progress: bool = False,
                desc: str = "describe scenes") -> list[SceneGrid]:
    """A :class:`SceneGrid` of every sample's image (``features``: ``colour``, optionally with ``lite0``) on cells
    of ``cell`` pixels."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown or "colour" not in features:
        raise ValueError(f"appearance features {list(features)}: use 'colour', optionally with 'lite0'")
    deep = DeepCells() if "lite0" in features else None
    return [SceneGrid.of(episode.read_image(s).array, cell, deep)
            for s in tqdm(samples, desc=desc, unit="image", disable=not progress)]


def _random_spots(rng: np.random.Generator, grids: list[SceneGrid], sizes: list[tuple[int, int]],
                  count: int) -> list[tuple[int, Box]]:
    spots = []
    for _ in range(count):
        s = int(rng.integers(len(grids)))
        h, w = grids[s].shape
        bw, bh = sizes[int(rng.integers(len(sizes)))]
        bw, bh = min(bw, w), min(bh, h)
        x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        spots.append((s, Box(x0, y0, x0 + bw, y0 + bh)))
    return spots


def _nearest(x: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Distance of every row of ``x`` to its nearest row of ``support``."""
    return np.sqrt(((x[:, None, :] - support[None]) ** 2).sum(-1)).min(1)


def _percentile(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Share of ``reference`` values below each of ``values`` (ties count half), in [0, 1]."""
    ref = np.sort(reference)
    lo, hi = np.searchsorted(ref, values, "left"), np.searchsorted(ref, values, "right")
    return (lo + hi) / (2 * max(len(ref), 1))


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties half (the Mann-Whitney form of the ROC-AUC)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    return float(_percentile(np.asarray(positive, np.float64), np.asarray(negative, np.float64)).mean())


@dataclass
class AppearancePrior:
    """Per novel class, the standardised descriptors of the frames around its support instances."""

    features: tuple[str, ...]
    ring: int
    centre: np.ndarray
    scale: np.ndarray  # per statistic; deep features are further divided so each part weighs the same
    support: dict[int, np.ndarray]  # class id -> n×D standardised descriptors
    bandwidth: dict[int, float]
    calibration: dict[int, np.ndarray] = field(default_factory=dict)  # class -> raw scores of random spots
    members: dict[int, list[int]] = field(default_factory=dict)  # class -> reference index of each support row

    @classmethod
    def fit(cls, episode: Episode, references: list[Reference], train_grids: list[SceneGrid],
            support_grids: dict[str, SceneGrid], features: Sequence[str] = ("colour",), ring: int = RING_WIDTH,
            seed: int = 0) -> "AppearancePrior":
        """Describe the frame around every reference instance (in its support image's grid) and calibrate the
        scores on :data:`RANDOM_SPOTS` random trainset frames of the class's reference sizes."""
        rng = np.random.default_rng([seed, 7])
        raw: dict[int, list[np.ndarray]] = {}
        members: dict[int, list[int]] = {}
        for i, ref in enumerate(references):
            d = support_grids[ref.source].rings(ref.instance_box, ring)
            if d is not None:
                raw.setdefault(ref.class_id, []).append(d)
                members.setdefault(ref.class_id, []).append(i)
        sizes = {c: [(r.instance_box.width, r.instance_box.height) for r in references if r.class_id == c]
                 for c in raw}
        background = {c: [d for s, b in _random_spots(rng, train_grids, sizes[c], RANDOM_SPOTS)
                          if (d := train_grids[s].rings(b, ring)) is not None] for c in raw}
        every = np.stack([d for c in raw for d in raw[c] + background[c]])
        centre, scale = every.mean(0), every.std(0) + 1e-6
        if "lite0" in features:  # colour (8 statistics) and deep parts weigh the same in a distance
            deep = len(centre) - len(COLOUR_STATISTICS)
            scale[len(COLOUR_STATISTICS):] *= np.sqrt(deep / len(COLOUR_STATISTICS))
        prior = cls(tuple(features), ring, centre, scale, {}, {}, members=members)
        for c in sorted(raw):
            sup = (np.stack(raw[c]) - centre) / scale
            prior.support[c] = sup
            if len(sup) > 1:
                dist = np.sqrt(((sup[:, None] - sup[None]) ** 2).sum(-1))
                np.fill_diagonal(dist, np.inf)
                h = float(np.median(dist.min(1)))
            else:
                h = float(np.median(_nearest((np.stack(background[c]) - centre) / scale, sup)))
            prior.bandwidth[c] = max(h, 1e-3)
            prior.calibration[c] = np.sort(prior.raw_score(c, np.stack(background[c])))
        return prior

    def raw_score(self, class_id: int, descriptors: np.ndarray, exclude: int | None = None) -> np.ndarray:
        """``exp(-d² / 2h²)``, d = distance of each raw descriptor to the nearest support frame of the class
        (without support frame ``exclude``, for held-out checks)."""
        sup = self.support[class_id]
        if exclude is not None:
            sup = np.delete(sup, exclude, axis=0)
        d = _nearest((np.atleast_2d(descriptors) - self.centre) / self.scale, sup)
        return np.exp(-0.5 * (d / self.bandwidth[class_id]) ** 2)

    def score(self, class_id: int, descriptors: np.ndarray) -> np.ndarray:
        """Percentile of :meth:`raw_score` among the random trainset frames: ~uniform in [0, 1] for random spots,
        near 1 for frames like the support instances'; 1 for a class without support frames."""
        if class_id not in self.support:
            return np.ones(len(np.atleast_2d(descriptors)))
        return _percentile(self.raw_score(class_id, descriptors), self.calibration[class_id])

    def summary(self) -> dict:
        return {"features": list(self.features), "ring": self.ring,
                "support_frames": {str(c): len(v) for c, v in self.support.items()},
                "bandwidth": {str(c): round(v, 4) for c, v in self.bandwidth.items()}}


@dataclass
class SpotScorer:
    """How :func:`~paintseg.place.placement.plan_placements` weighs candidate spots (see the module docstring).

    ``label`` is a fitted ContextPrior or None, ``appearance`` an AppearancePrior or None, ``alpha`` the appearance
    weight per class; with only a label prior the raw Bhattacharyya coefficient is used (as ``prior="context"``
    always did)."""

    label: object | None
    appearance: AppearancePrior | None
    grids: list[SceneGrid] | None
    alpha: dict[int, float] = field(default_factory=dict)
    label_calibration: dict[int, np.ndarray] = field(default_factory=dict)
    selection: dict = field(default_factory=dict)  # held-out AUC per alpha per class, for prior.json

    def summary(self, classes) -> dict:
        """For prior.json: the appearance prior, and per class name the appearance weight and how it was chosen."""
        return {"appearance": self.appearance.summary() if self.appearance is not None else None,
                "mix": {classes.name(int(c)): v for c, v in self.selection.items()} if self.selection else
                {classes.name(c): {"alpha": a} for c, a in self.alpha.items()}}

    def score(self, class_id: int, spots: list[tuple[int, Box]], hists: list[np.ndarray]) -> np.ndarray:
        if self.appearance is None:
            return np.asarray(self.label.score(class_id, np.stack(hists)), np.float64)
        descs = [self.grids[s].rings(b, self.appearance.ring) for s, b in spots]
        ok = np.array([d is not None for d in descs])
        app = np.zeros(len(spots))
        if ok.any():
            app[ok] = self.appearance.score(class_id, np.stack([d for d in descs if d is not None]))
        alpha = self.alpha.get(class_id, 1.0)
        if self.label is None or alpha >= 1:
            return app
        lab = _percentile(np.asarray(self.label.score(class_id, np.stack(hists)), np.float64),
                          self.label_calibration[class_id])
        return lab ** (1 - alpha) * app ** alpha


AGREEMENT = 0.6  # least mean appearance percentile of the label prior's favourite spots for auto to use the labels


def label_agreement(label_scores: np.ndarray, appearance_percentiles: np.ndarray, top: float = 0.1) -> float:
    """The mean appearance percentile (0..1 among random spots) of the ``top`` share of random spots the label
    prior scores highest: about 0.5 when the labels' favourite spots look like any spot, near 1 when they look like
    the support surroundings, below 0.5 when the labels point elsewhere."""
    k = max(1, int(round(top * len(label_scores))))
    best = np.argsort(-label_scores, kind="stable")[:k]
    return float(np.mean(appearance_percentiles[best]))


def choose_alpha(label_pos: np.ndarray, label_neg: np.ndarray, app_pos: np.ndarray,
                 app_neg: np.ndarray) -> tuple[float, dict[str, float]]:
    """The appearance weight of :data:`ALPHAS` whose mixed score best separates held-out support frames
    (``*_pos``, one per support instance) from random trainset frames (``*_neg``); scores are percentiles.
    Returns (alpha, {alpha: AUC}). Mixes within 0.005 AUC of the best tie (a constant label score, for one, ranks
    every mix with alpha > 0 alike); among them the one nearest to each prior's own strength wins,
    ``(AUC_appearance - 0.5) / (AUC_appearance - 0.5 + AUC_label - 0.5)``."""
    aucs = {}
    for a in ALPHAS:
        pos = label_pos ** (1 - a) * app_pos ** a
        neg = label_neg ** (1 - a) * app_neg ** a
        aucs[f"{a:g}"] = round(roc_auc(pos, neg), 4)
    top = max(aucs.values())
    strength_label, strength_app = max(aucs["0"] - 0.5, 0), max(aucs["1"] - 0.5, 0)
    own = strength_app / (strength_app + strength_label) if strength_app + strength_label > 0 else 0.5
    best = min((a for a in ALPHAS if aucs[f"{a:g}"] >= top - 0.005), key=lambda a: (abs(a - own), a))
    return best, aucs


def fit_scorer(episode: Episode, references: list[Reference], config: PlaceConfig,
               scenes: list[np.ndarray] | None = None, context: ContextPrior | None = None,
               base_predictor: BasePredictor | None = None, seed: int = 0, progress: bool = False) -> SpotScorer:
    """The :class:`SpotScorer` of ``config.prior`` ``"appearance"`` or ``"auto"`` (see the module docstring): the
    ``config.appearance`` features on cells of ``config.appearance_cell`` pixels; for ``auto`` mixed with the label
    prior ``context`` (fitted with ``base_predictor`` when None).

    ``scenes`` are the trainset labels as placement bin codes (as :func:`~paintseg.place.placement.plan_placements`
    holds them; read here when None), used for the label prior's random-spot calibration and held-out check."""
    prior, features, cell, ring = config.prior, tuple(config.appearance.split("+")), config.appearance_cell, RING_WIDTH
    if prior not in ("appearance", "auto"):
        raise ValueError(f"fit_scorer is for prior 'appearance' or 'auto', not {prior!r}")

    train_grids = scene_grids(episode, episode.train, features, cell=cell, progress=progress)
    sources = sorted({r.source for r in references})
    by_name = {s.name: s for s in episode.support_samples}
    support_grids = dict(zip(sources, scene_grids(episode, [by_name[n] for n in sources], features, cell=cell,
                                                  desc="describe support")))
    appearance = AppearancePrior.fit(episode, references, train_grids, support_grids, features, ring, seed)
    if prior == "appearance":
        return SpotScorer(None, appearance, train_grids, {c: 1.0 for c in appearance.support})
    label = context if context is not None else ContextPrior.fit(episode, references, base_predictor)
    if scenes is None:
        scenes = [label_codes(episode.read_label(s).array, label.base_ids) for s in episode.train]
    held = ContextPrior.support_histograms(episode, references, base_predictor, label.ring)
    n = len(label.base_ids)
    rng = np.random.default_rng([seed, 11])
    scorer = SpotScorer(label, appearance, train_grids)
    for cid in sorted({r.class_id for r in references}):
        mine = [i for i, r in enumerate(references) if r.class_id == cid]
        sizes = [(references[i].instance_box.width, references[i].instance_box.height) for i in mine]
        spots = _random_spots(rng, train_grids, sizes, RANDOM_SPOTS)
        neg_hist = np.stack([share_of((box_counts(scenes[s], grow_box(b, label.ring, *scenes[s].shape), n + 2)
                                         - box_counts(scenes[s], b, n + 2))[:n]) for s, b in spots])
        neg_desc = [train_grids[s].rings(b, ring) for s, b in spots]
        keep = [k for k, d in enumerate(neg_desc) if d is not None]
        neg_hist, neg_desc = neg_hist[keep], np.stack([neg_desc[k] for k in keep])
        neg_label = np.asarray(label.score(cid, neg_hist), np.float64)
        scorer.label_calibration[cid] = np.sort(neg_label)
        if cid not in appearance.support:
            scorer.alpha[cid] = 0.0
            continue
        # do the spots the labels like best look like the support surroundings? (labels that mis-describe them -
        # water that no class names, predicted as the nearest labelled class - favour spots that do not)
        agreement = label_agreement(neg_label, appearance.score(cid, neg_desc))
        if agreement < AGREEMENT:
            scorer.alpha[cid] = 1.0
            scorer.selection[str(cid)] = {
                "alpha": 1.0, "label_agreement": round(agreement, 3),
                "why": f"label prior refused: the random spots it scores highest have a mean appearance percentile of "
                       f"{agreement:.2f} (< {AGREEMENT}): the labels point away from surroundings like the support's"}
            continue
        # held-out check: each support instance against the priors fitted without it
        frames = appearance.members[cid]  # the references behind the support frames, row by row
        label_pos, label_neg, app_pos, app_neg = [], [], [], []
        for k, i in enumerate(frames):
            others = [held[j] for j in mine if j != i and j in held]
            if i not in held or not others or len(frames) < 2:
                continue
            loo = type(label)(label.base_ids, {cid: np.mean(others, axis=0)}, {}, label.ring)
            neg_l = np.asarray(loo.score(cid, neg_hist), np.float64)
            label_pos.append(_percentile(np.array([loo.score(cid, held[i])]), neg_l)[0])
            label_neg.append(_percentile(neg_l, neg_l))
            neg_a = appearance.raw_score(cid, neg_desc, exclude=k)
            pos_a = appearance.raw_score(cid, appearance.support[cid][k] * appearance.scale + appearance.centre,
                                         exclude=k)
            app_pos.append(_percentile(pos_a, neg_a)[0])
            app_neg.append(_percentile(neg_a, neg_a))
        if not label_pos:
            scorer.alpha[cid] = 0.5
            scorer.selection[str(cid)] = {"alpha": 0.5, "why": "fewer than 2 support instances to hold out"}
            continue
        alpha, aucs = choose_alpha(np.array(label_pos), np.concatenate(label_neg), np.array(app_pos),
                                   np.concatenate(app_neg))
        # every held-out instance is compared with the same random spots: AUC over (instance, spot) pairs
        scorer.alpha[cid] = alpha
        scorer.selection[str(cid)] = {"alpha": alpha, "held_out_auc": aucs, "instances": len(label_pos),
                                      "label_agreement": round(agreement, 3)}
    return scorer
