"""Training batches for the segmentation stage: base trainset + k-shot support set (+ synthetic sets), mixed.

Every image is read once into memory (uint8 H×W×3; uint16 imagery is stretched per image first, as
``paintseg.data.raster.to_float`` does at prediction time). Three pools feed each batch:

- ``train``: the episode's base-class trainset (``episode.train``);
- ``support``: the k-shot support images (``episode.support_samples``);
- ``synthetic``: each synthetic set folder holds ``images/`` and ``labels/`` with the episode's layout, paired by
  file stem (a ``manifest.jsonl`` beside them is not read here).

A sample picks its pool by the configured shares (an empty pool gives its share to the others in proportion), an
image uniformly, then a random crop (support and synthetic crops are, half of the time, centred near a random
novel-class pixel so the few novel pixels are seen), random flips and 90° rotations, and a mild colour jitter.

Label value 0 is ambiguous in trainset and support labels: true background, or a class that split does not label
(novel pixels are 0 in the trainset, base pixels are 0 in a support label). Unless ``learn_background`` is set, 0
becomes ignore (255) in every pool. Query labels are never read.

Batch ``step`` depends only on ``(config.seed, step)``, so a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from paintseg.errors import PaintsegError
from ..config import TrainConfig
from ..data.classes import BACKGROUND, IGNORE, ClassMap
from ..data.episode import Episode
from ..data.raster import FORMATS, read_image, read_label, to_uint8

POOLS = ("train", "support", "synthetic")
CENTRED_CROP_PROB = 0.5  # support/synthetic crops centred near a novel pixel
MAX_NOVEL_POINTS = 4096  # novel pixels remembered per image for centred crops
JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.02}


class DataError(PaintsegError):
    """Training data that cannot be used as given; the message names the file and the fix."""


@dataclass
class Item:
    """One training image in memory."""

    source: str  # image path, for messages
    image: np.ndarray  # H×W×3 uint8
    label: np.ndarray  # H×W uint8, with 0 already mapped to IGNORE unless background is learnt
    novel: np.ndarray  # flat indices (int64) of up to MAX_NOVEL_POINTS novel-class pixels


def synthetic_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) paths of a synthetic set, paired by stem; an image without a label is an error."""
    folder = Path(folder)
    images, labels = folder / "images", folder / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise DataError(f"{folder}: a synthetic set needs images/ and labels/ folders (as written by "
                        f"`paintseg curate`); pass the folder that holds them")
    by_stem = {p.stem: p for p in sorted(labels.iterdir()) if p.suffix.lower() in FORMATS and p.name[0] != "."}
    pairs = []
    for img in sorted(images.iterdir()):
        if img.suffix.lower() not in FORMATS or img.name[0] == ".":
            continue
        if img.stem not in by_stem:
            raise DataError(f"{img}: no label with stem {img.stem!r} in {labels}; add it or remove the image")
        pairs.append((img, by_stem[img.stem]))
    if not pairs:
        raise DataError(f"{images}: no images ({', '.join(sorted(FORMATS))}); is this a synthetic set folder?")
    return pairs


def near_novel(label: np.ndarray, novel_ids: Sequence[int], radius: int) -> np.ndarray:
    """``label`` with every pixel farther than ``radius`` pixels from a novel-class pixel set to ignore (a label
    without novel pixels becomes all ignore)."""
    import cv2

    novel = np.isin(label, novel_ids).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near = cv2.dilate(novel, kernel) > 0
    return np.where(near, label, IGNORE).astype(label.dtype)


def ignore_border(label: np.ndarray, novel_ids: Sequence[int], width: int) -> np.ndarray:
    """``label`` with the band of ``width`` pixels on both sides of every novel object's outline set to ignore."""
    import cv2

    novel = np.isin(label, novel_ids).astype(np.uint8)
    if width <= 0 or not novel.any():
        return label
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    band = (cv2.dilate(novel, kernel) > 0) & ~(cv2.erode(novel, kernel, borderType=cv2.BORDER_REPLICATE) > 0)
    return np.where(band, IGNORE, label).astype(label.dtype)


def _load(image_path: Path, label_path: Path, classes: ClassMap, config: TrainConfig, pool: str = "train") -> Item:
    image = to_uint8(read_image(image_path, config.rgb_bands).array)
    label = read_label(label_path, classes).array.copy()
    if label.shape != image.shape[:2]:
        raise DataError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but its image {image_path.name} "
                        f"is {image.shape[1]}x{image.shape[0]}; image and label must have the same size")
    values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    bad = [int(v) for v in values if v != IGNORE and v >= classes.num_classes]
    if bad:
        raise DataError(f"{label_path}: label value(s) {bad} are not classes of {classes.source} (ids < "
                        f"{classes.num_classes} or 255); add them to classes.json or fix the label")
    if not config.learn_background:
        label[label == BACKGROUND] = IGNORE
    if pool == "synthetic" and config.synthetic_context > 0:
        label = near_novel(label, classes.novel_ids, config.synthetic_context)
    if pool == "synthetic" and config.synthetic_border > 0:
        label = ignore_border(label, classes.novel_ids, config.synthetic_border)
    novel = np.flatnonzero(np.isin(label, classes.novel_ids))
    if novel.size > MAX_NOVEL_POINTS:
        novel = novel[:: -(-novel.size // MAX_NOVEL_POINTS)]
    return Item(str(image_path), image, label, novel)


class TrainingSampler:
    """All training images in memory, and the deterministic batch of any step."""

    def __init__(self, episode: Episode, config: TrainConfig, synthetic: Sequence[str | Path] = (),
                 progress: bool = False):
        self.config = config
        self.classes = episode.classes
        jobs: list[tuple[str, Path, Path]] = []
        for sample in episode.train + episode.support_samples:
            if sample.label is None:
                raise DataError(f"{sample.image}: no label with stem {sample.stem!r} in "
                                f"{sample.image.parent.parent / 'labels'}; add it or remove the name from the lists")
            jobs.append(("train" if sample.role == "train" else "support", sample.image, sample.label))
        for folder in synthetic:
            jobs.extend(("synthetic", img, lab) for img, lab in synthetic_pairs(folder))
        self.pools: dict[str, list[Item]] = {p: [] for p in POOLS}
        for pool, img, lab in tqdm(jobs, desc="loading images", unit="img", disable=not progress, leave=False):
            self.pools[pool].append(_load(img, lab, self.classes, config, pool))
        share = {"train": 1 - config.support_fraction - config.synthetic_fraction,
                 "support": config.support_fraction, "synthetic": config.synthetic_fraction}
        present = [p for p in POOLS if self.pools[p]]
        if not present:
            raise DataError(f"{episode.root}: no training images (train.txt and the support set are empty)")
        # An empty pool's share goes to the trainset (so without synthetic sets a batch is 1 - support_fraction
        # trainset crops); without a trainset, the shares of the others are renormalised.
        if "train" in present:
            share["train"] += sum(share[p] for p in POOLS if p not in present)
        total = sum(share[p] for p in present)
        self.weights = {p: (share[p] / total if total > 0 else 1 / len(present)) if p in present else 0.0
                        for p in POOLS}

    def describe(self) -> str:
        return ", ".join(f"{p}: {len(self.pools[p])} images ({self.weights[p]:.0%} of each batch)" for p in POOLS)

    # ---------------------------------------------------------------------------------------------- statistics
    def class_frequencies(self, weights: dict[str, float] | None = None) -> np.ndarray:
        """Expected share of each class (channel) among the labelled pixels of a batch, given the pool shares
        (``weights``, default the sampler's own)."""
        weights = self.weights if weights is None else weights
        freq = np.zeros(self.classes.num_classes, np.float64)
        for pool, share in weights.items():
            items = self.pools[pool]
            if not items or share == 0:
                continue
            counts = sum(np.bincount(it.label.ravel(), minlength=256) for it in items)
            pixels = sum(it.label.size for it in items)
            freq += share * counts[: len(freq)] / pixels
        return freq / freq.sum() if freq.sum() > 0 else freq

    def class_weights(self) -> np.ndarray:
        """Inverse square root of the class frequencies, mean 1 over the classes that occur (others weigh 1).

        With ``class_weights_from: real`` the frequencies are those of the trainset and support pools alone, so
        adding synthetic data does not change how much each class weighs."""
        weights = None
        if self.config.class_weights_from == "real":  # the shares a batch would have without synthetic sets
            weights = {"train": 1 - self.config.support_fraction if self.pools["train"] else 0.0,
                       "support": self.config.support_fraction if self.pools["support"] else 0.0}
        freq = self.class_frequencies(weights)
        weights = np.ones_like(freq)
        seen = freq > 0
        if seen.any():
            w = 1 / np.sqrt(freq[seen])
            weights[seen] = w / w.mean()
        return weights.astype(np.float32)

    # ---------------------------------------------------------------------------------------------- sampling
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number ``step``: images ``B×3×crop×crop`` float32 in [0, 1] and labels ``B×crop×crop`` int64."""
        rng = np.random.default_rng([self.config.seed, step])
        names = [p for p in POOLS if self.weights[p] > 0]
        probs = np.array([self.weights[p] for p in names])
        images, labels = [], []
        for _ in range(self.config.batch):
            pool = names[int(rng.choice(len(names), p=probs / probs.sum()))]
            items = self.pools[pool]
            item = items[int(rng.integers(len(items)))]
            centred = pool != "train" and rng.random() < CENTRED_CROP_PROB
            image, label = self._crop(item, rng, centred)
            image, label = _flip_rotate(image, label, rng)
            images.append(_jitter(image, rng))
            labels.append(torch.from_numpy(label.astype(np.int64)))
        return torch.stack(images), torch.stack(labels)

    def _crop(self, item: Item, rng: np.random.Generator, centred: bool) -> tuple[np.ndarray, np.ndarray]:
        crop = self.config.crop
        h, w = item.label.shape
        if centred and item.novel.size:
            cy, cx = divmod(int(item.novel[int(rng.integers(item.novel.size))]), w)
            dy, dx = (int(v) for v in rng.integers(-(crop // 4), crop // 4 + 1, 2))
            top, left = cy - crop // 2 + dy, cx - crop // 2 + dx
        else:
            top, left = int(rng.integers(0, max(h - crop, 0) + 1)), int(rng.integers(0, max(w - crop, 0) + 1))
        top, left = min(max(top, 0), max(h - crop, 0)), min(max(left, 0), max(w - crop, 0))
        image = item.image[top : top + crop, left : left + crop]
        label = item.label[top : top + crop, left : left + crop]
        if image.shape[:2] != (crop, crop):  # smaller than the crop: pad with black / ignore at a random offset
            ch, cw = label.shape
            oy, ox = int(rng.integers(0, crop - ch + 1)), int(rng.integers(0, crop - cw + 1))
            padded_image = np.zeros((crop, crop, 3), np.uint8)
            padded_label = np.full((crop, crop), IGNORE, np.uint8)
            padded_image[oy : oy + ch, ox : ox + cw] = image
            padded_label[oy : oy + ch, ox : ox + cw] = label
            image, label = padded_image, padded_label
        return image, label


def _flip_rotate(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    image, label = np.rot90(image, k), np.rot90(label, k)
    if flip:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def _jitter(image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """uint8 H×W×3 → float32 3×H×W in [0, 1] with random brightness, contrast, saturation and hue."""
    b, c, s = (1 + rng.uniform(-JITTER[k], JITTER[k]) for k in ("brightness", "contrast", "saturation"))
    h = rng.uniform(-JITTER["hue"], JITTER["hue"])
    x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    x = TF.adjust_brightness(x, b)
    x = TF.adjust_contrast(x, c)
    x = TF.adjust_saturation(x, s)
    x = TF.adjust_hue(x, h)
    return x.clamp_(0, 1).contiguous()
