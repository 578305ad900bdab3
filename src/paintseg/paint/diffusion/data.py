"""Self-supervised training pairs for the inpainting model, cut from the episode's labelled scenes.

Every trainset and support image is read once into memory with its label; every connected component of a labelled
class (not background 0, not ignore 255) of at least ``min_instance_pixels`` pixels whose box can cover a share in
``config.box_fraction`` of a square window inside the image is an *instance*. One pair:

1. an instance of a random scene - or, with ``random_region_prob``, a random region (a Bézier blob in a random box),
   or, with ``novel_share``, one of the support set's novel-class instances (the painter adapted to its few shots);
2. a square context window inside the image that holds the instance's box, sized so that the box covers a random
   share in ``box_fraction`` of it, resized to the model resolution R;
3. an inpaint mask over the instance, of a random kind of ``mask_kinds`` (``paintseg.place.masks``; the
   silhouette is the instance's own mask);
4. the reference: a square crop around the instance from the same image (+ its object mask), resized to
   ``ref_size`` and strongly augmented (flips, 90° rotations, rescale/crop, elastic warp, blur, colour jitter), so
   that copying its pixels into the hole does not pay and the model must learn *what* the object is; with
   ``cross_reference``, that share of the instance pairs take another instance of the same class instead (its crop
   the reference, itself pasted into the hidden instance's box the hint), as painting pastes an exemplar into a box
   where a different object would belong.

Images are tensors in [-1, 1]; masks are {0, 1} floats. Pair ``i`` of step ``s`` depends only on ``(seed, s)``, so a
resumed run sees the pairs an uninterrupted one would; the validation pairs depend only on the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from paintseg.config import GeneratorConfig
from paintseg.data.classes import BACKGROUND, IGNORE
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label, to_uint8
from paintseg.place.masks import Box, bezier_mask, make_mask, mask_box
from ..augment import recolour
from .model import GeneratorError, spec_for
from .sample import resize_square, to_tensor

MIN_SCENE = 16  # smallest scene side used for training
MAX_INSTANCES_PER_IMAGE = 512  # components remembered per image (the largest ones)
REFERENCE_PAD = 0.15  # the reference crop is the instance's box grown by this share of its longer side, each side
VALIDATION_TAG = 7_777_777  # second seed word of the validation pairs (training pairs use the step there)
JITTER = {"brightness": 0.25, "contrast": 0.25, "saturation": 0.25, "hue": 0.03}


@dataclass(frozen=True)
class Instance:
    """One connected component: the scene it lies in, its box (image pixels) and its mask inside the box."""

    scene: int
    class_id: int
    box: Box
    mask: np.ndarray  # bool box.height × box.width


@dataclass
class PairBatch:
    """A batch of training pairs (R: model resolution, r: reference size)."""

    target: Tensor  # B×3×R×R in [-1, 1]: the context window
    masked: Tensor  # B×3×R×R: the window with the inpaint region set to 0
    mask: Tensor  # B×1×R×R in {0, 1}: 1 = paint here
    reference: Tensor  # B×3×r×r in [-1, 1]: augmented crop of the instance
    ref_mask: Tensor  # B×1×r×r in {0, 1}: its (augmented) object mask
    boxes: Tensor  # B×4 int64: the instance's box (x0, y0, x1, y1) in window pixels at resolution R
    class_ids: Tensor  # B int64: the instance's class, -1 for a random region
    hint: Tensor  # B×4×R×R: the spatial hint (the instance re-coloured and warped × its mask, the mask); zeros
    #               unless config.spatial_hint

    def to(self, device: str | torch.device) -> "PairBatch":
        return PairBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    def __getitem__(self, rows: slice) -> "PairBatch":
        """The pairs ``rows`` (a process's share of a global batch)."""
        return PairBatch(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))


def find_instances(scene: int, label: np.ndarray, config: GeneratorConfig) -> list[Instance]:
    """Components of every labelled class whose box fits a window as ``box_fraction`` asks."""
    lo, hi = config.box_fraction
    side_max = min(label.shape)
    found: list[tuple[int, Instance]] = []
    for value in np.flatnonzero(np.bincount(label.ravel(), minlength=256)):
        if value in (BACKGROUND, IGNORE):
            continue
        count, comp, stats, _ = cv2.connectedComponentsWithStats((label == value).astype(np.uint8), connectivity=8)
        for i in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < config.min_instance_pixels:
                continue
            smallest = max(int(np.ceil(np.sqrt(w * h / hi))), w, h)
            if smallest > min(int(np.sqrt(w * h / lo)), side_max):
                continue  # too elongated or too large for a window it covers lo..hi of
            box = Box(x, y, x + w, y + h)
            found.append((area, Instance(scene, int(value), box, comp[y : y + h, x : x + w] == i)))
    found.sort(key=lambda item: -item[0])
    return [inst for _, inst in found[:MAX_INSTANCES_PER_IMAGE]]


def read_scenes(episode: Episode, rgb_bands: list[int] | None = None,
                progress: bool = False) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """The episode's trainset and support images (uint8 RGB), their labels and their paths, each read once."""
    images, labels, sources = [], [], []
    samples = episode.train + episode.support_samples
    for sample in tqdm(samples, desc="loading scenes", unit="img", disable=not progress, leave=False):
        if sample.label is None:
            raise GeneratorError(f"{sample.image}: no label with stem {sample.stem!r} in "
                                 f"{sample.image.parent.parent / 'labels'}; add it or remove the name")
        image = to_uint8(read_image(sample.image, rgb_bands).array)
        label = read_label(sample.label, episode.classes).array
        if label.shape != image.shape[:2]:
            raise GeneratorError(f"{sample.label}: label is {label.shape[1]}x{label.shape[0]} but its image "
                                 f"{Path(sample.image).name} is {image.shape[1]}x{image.shape[0]}; image and "
                                 f"label must have the same size")
        images.append(image)
        labels.append(label)
        sources.append(str(sample.image))
    return images, labels, sources


class StepPairs:
    """The deterministic batches of a pair sampler (``config`` and ``pair(rng)``): the pairs of step ``s`` depend
    only on ``(seed, s)``, the validation pairs only on the seed."""

    config: GeneratorConfig

    def pair(self, rng: np.random.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def batch(self, step: int) -> PairBatch:
        """The ``config.batch`` pairs of training step ``step``."""
        rng = np.random.default_rng([self.config.seed, step])
        return _stack([self.pair(rng) for _ in range(self.config.batch)])

    def validation(self, count: int) -> PairBatch:
        """``count`` fixed pairs (same for every step of a run with this seed) for the sample grids."""
        return _stack([self.pair(np.random.default_rng([self.config.seed, VALIDATION_TAG, i + 1]))
                       for i in range(count)])


class PairSampler(StepPairs):
    """All training scenes in memory, and the deterministic training pairs of any step."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], config: GeneratorConfig,
                 sources: list[str] | None = None, novel: tuple[int, ...] = ()):
        """``novel``: the novel class ids, whose instances ``config.novel_share`` of the pairs are drawn from."""
        self.config = config
        spec = spec_for(config)
        self.resolution, self.ref_size = spec.resolution, spec.ref_size
        self.images, self.labels = images, labels
        self.sources = sources or [f"scene {i}" for i in range(len(images))]
        if not images:
            raise GeneratorError("no training scenes: the episode's train.txt and support set are empty")
        for image, source in zip(images, self.sources):
            if min(image.shape[:2]) < MIN_SCENE:
                raise GeneratorError(f"{source}: the scene is {image.shape[1]}x{image.shape[0]} pixels; training "
                                     f"scenes must be at least {MIN_SCENE}x{MIN_SCENE}, remove it from the lists")
        self.instances = [find_instances(i, lab, config) for i, lab in enumerate(labels)]
        self.scenes_with_instances = [i for i, found in enumerate(self.instances) if found]
        if not self.scenes_with_instances and config.random_region_prob == 0:
            raise GeneratorError(f"no usable instances in {len(images)} scenes (connected components of a labelled "
                                 f"class with >= {config.min_instance_pixels} pixels whose box can cover "
                                 f"{list(config.box_fraction)} of a window); lower min_instance_pixels, widen "
                                 f"box_fraction or set random_region_prob > 0")
        self.novel_instances = [inst for found in self.instances for inst in found if inst.class_id in novel]
        self.by_class: dict[int, list[Instance]] = {}
        for inst in (i for found in self.instances for i in found):
            self.by_class.setdefault(inst.class_id, []).append(inst)
        if config.novel_share and not self.novel_instances:
            raise GeneratorError(f"novel_share {config.novel_share} needs novel-class instances, and the support "
                                 f"scenes hold none the generator can use (components of >= "
                                 f"{config.min_instance_pixels} pixels whose box can cover "
                                 f"{list(config.box_fraction)} of a window); widen box_fraction or set novel_share "
                                 f"to null")

    @classmethod
    def from_episode(cls, episode: Episode, config: GeneratorConfig, progress: bool = False) -> "PairSampler":
        """Read the episode's trainset and support images and labels (each once)."""
        images, labels, sources = read_scenes(episode, config.rgb_bands, progress)
        return cls(images, labels, config, sources, novel=tuple(episode.classes.novel_ids))

    @property
    def num_instances(self) -> int:
        return sum(len(found) for found in self.instances)

    def describe(self) -> str:
        novel = (f", {len(self.novel_instances)} novel-class instances drawn for {self.config.novel_share:.0%} of "
                 f"the pairs" if self.config.novel_share else "")
        return (f"{len(self.images)} scenes, {self.num_instances} instances, random regions "
                f"{self.config.random_region_prob:.0%}{novel}")

    # ---------------------------------------------------------------------------------------------- pairs
    def pair(self, rng: np.random.Generator) -> dict[str, Tensor]:
        """One training pair drawn with ``rng``."""
        inst, window, object_r, box, image = self.draw(rng)
        R = self.resolution
        kind = self.config.mask_kinds[int(rng.integers(len(self.config.mask_kinds)))]
        inpaint = make_mask(kind, (R, R), box, rng, ref_mask=object_r)

        target = to_tensor(window)[0]
        mask = torch.from_numpy(inpaint.astype(np.float32))[None]
        crossed = self.cross(inst, window, box, rng)
        ref_rgb, ref_obj, hint_rgb, hint_obj = crossed or (*self.reference_crop(image, inst), window, object_r)
        reference, ref_mask = augment_reference(ref_rgb, ref_obj, rng)
        hint_box = mask_box(hint_obj) if crossed else box
        hint = spatial_hint(hint_rgb, hint_obj, hint_box, rng, self.config.hint_jitter) \
            if self.config.spatial_hint else torch.zeros(4, R, R)
        return {"target": target, "masked": target * (1 - mask), "mask": mask, "reference": reference,
                "ref_mask": ref_mask, "boxes": torch.tensor(list(box), dtype=torch.int64),
                "class_ids": torch.tensor(inst.class_id, dtype=torch.int64), "hint": hint}

    def draw(self, rng: np.random.Generator) -> tuple[Instance, np.ndarray, np.ndarray, Box, np.ndarray]:
        """The geometry of one pair: an instance (or random region), its context window resized to the model
        resolution R (uint8 R×R×3), the object's mask and box in it, and the scene image."""
        if not self.scenes_with_instances or rng.random() < self.config.random_region_prob:
            inst = self._random_region(rng)
        elif self.config.novel_share and rng.random() < self.config.novel_share:
            inst = self.novel_instances[int(rng.integers(len(self.novel_instances)))]
        else:
            found = self.instances[self.scenes_with_instances[int(rng.integers(len(self.scenes_with_instances)))]]
            inst = found[int(rng.integers(len(found)))]
        image = self.images[inst.scene]
        h, w = image.shape[:2]
        R = self.resolution

        # context window: square, inside the image, holding the box, box covering lo..hi of it
        lo, hi = self.config.box_fraction
        b = inst.box
        s_min = min(max(int(np.ceil(np.sqrt(b.area / hi))), b.width, b.height), h, w)
        s_max = max(min(int(np.sqrt(b.area / lo)), h, w), s_min)
        side = int(rng.integers(s_min, s_max + 1))
        x0 = int(rng.integers(max(0, b.x1 - side), min(b.x0, w - side) + 1))
        y0 = int(rng.integers(max(0, b.y1 - side), min(b.y0, h - side) + 1))
        window = resize_square(image[y0 : y0 + side, x0 : x0 + side], R)
        object_mask = np.zeros((side, side), np.uint8)
        object_mask[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0] = inst.mask
        object_r = resize_square(object_mask, R, nearest=True) > 0
        box = b.shift(-x0, -y0).scale(R / side).clip(R, R)
        if not object_r.any():
            object_r[box.y0 : box.y1, box.x0 : box.x1] = True
        return inst, window, object_r, box, image

    def cross(self, inst: Instance, window: np.ndarray, box: Box,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """With ``config.cross_reference`` (that share of the instance pairs): another instance of ``inst``'s class,
        as ``(reference rgb, its mask)`` at ref_size and ``(window with it pasted, its mask)`` at the window's size -
        scaled to fit the hidden instance's ``box`` (aspect kept) and centred on it, as copy-paste places an exemplar.
        None: the pair keeps its own instance (no share set - no draw from ``rng`` - a random region, or a class with
        one instance)."""
        share = self.config.cross_reference
        if not share or inst.class_id < 0 or rng.random() >= share:
            return None
        same = self.by_class.get(inst.class_id, [])
        if len(same) < 2:
            return None
        donor = same[int(rng.integers(len(same) - 1))]
        if donor is inst:  # draw among the others: the last one stands in for the instance itself
            donor = same[-1]
        image = self.images[donor.scene]
        d = donor.box
        fit = min(box.width / d.width, box.height / d.height)
        w, h = max(1, round(d.width * fit)), max(1, round(d.height * fit))
        x0 = int(np.clip((box.x0 + box.x1 - w) // 2, 0, window.shape[1] - w))
        y0 = int(np.clip((box.y0 + box.y1 - h) // 2, 0, window.shape[0] - h))
        rgb = cv2.resize(image[d.y0 : d.y1, d.x0 : d.x1], (w, h), interpolation=cv2.INTER_AREA)
        obj = cv2.resize(donor.mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        if not obj.any():
            obj[:] = True
        pasted, pasted_mask = window.copy(), np.zeros(window.shape[:2], bool)
        pasted[y0 : y0 + h, x0 : x0 + w][obj] = rgb[obj]
        pasted_mask[y0 : y0 + h, x0 : x0 + w] = obj
        return (*self.reference_crop(image, donor), pasted, pasted_mask)

    def _random_region(self, rng: np.random.Generator) -> Instance:
        """A Bézier blob in a random box of a random scene, as if it were an instance (class -1)."""
        scene = int(rng.integers(len(self.images)))
        h, w = self.images[scene].shape[:2]
        lo, hi = self.config.box_fraction
        side = int(rng.integers(max(min(h, w) // 2, 8), min(h, w) + 1))
        area = rng.uniform(lo, hi) * side * side
        aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        bw = int(np.clip(round(np.sqrt(area * aspect)), 2, side))
        bh = int(np.clip(round(area / bw), 2, side))
        x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        blob = bezier_mask((bh, bw), Box(0, 0, bw, bh), rng)
        tight = mask_box(blob)
        return Instance(scene, -1, tight.shift(x0, y0), blob[tight.y0 : tight.y1, tight.x0 : tight.x1])

    def reference_crop(self, image: np.ndarray, inst: Instance) -> tuple[np.ndarray, np.ndarray]:
        """The square crop around the instance (uint8, + its bool object mask), resized to ref_size; training
        augments it (:func:`augment_reference`)."""
        h, w = image.shape[:2]
        b = inst.box
        side = min(int(round(max(b.width, b.height) * (1 + 2 * REFERENCE_PAD))), h, w)
        cx, cy = (b.x0 + b.x1) // 2, (b.y0 + b.y1) // 2
        x0 = int(np.clip(cx - side // 2, 0, w - side))
        y0 = int(np.clip(cy - side // 2, 0, h - side))
        crop_mask = np.zeros((side, side), np.uint8)
        ys, xs = np.nonzero(inst.mask)
        ys, xs = ys + b.y0 - y0, xs + b.x0 - x0
        keep = (ys >= 0) & (ys < side) & (xs >= 0) & (xs < side)
        crop_mask[ys[keep], xs[keep]] = 1
        r = self.ref_size
        rgb = resize_square(image[y0 : y0 + side, x0 : x0 + side], r)
        return rgb, resize_square(crop_mask, r, nearest=True) > 0


def hint_tensor(rgb: np.ndarray, mask: np.ndarray) -> Tensor:
    """The 4 hint channels of an R×R uint8 image and its object mask: RGB in [-1, 1] times the mask, the mask."""
    m = torch.from_numpy(mask.astype(np.float32))[None]
    return torch.cat([to_tensor(rgb)[0] * m, m])


def spatial_hint(window: np.ndarray, obj: np.ndarray, box: Box, rng: np.random.Generator,
                 jitter: float = 1.0) -> Tensor:
    """:func:`hint_image` as the 4 hint channels."""
    return hint_tensor(*hint_image(window, obj, box, rng, jitter))


def hint_image(window: np.ndarray, obj: np.ndarray, box: Box, rng: np.random.Generator,
               jitter: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A training hint: the instance's own pixels (``window`` R×R×3 uint8, ``obj`` its mask) re-coloured (a mild
    random colour transform, strength 0.5 × ``jitter``) and warped by a small random similarity about the box centre
    (at ``jitter`` 1: scale 0.9-1.1, ±10°, shift ±4 % of the side), as a pasted reference differs from the object
    that belongs there."""
    r = window.shape[0]
    colour = (recolour(window.astype(np.float32) / 255, rng, 0.5 * jitter) * 255).round().astype(np.uint8)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    matrix = cv2.getRotationMatrix2D((cx, cy), float(rng.uniform(-10, 10)) * jitter,
                                     1 + float(rng.uniform(-0.1, 0.1)) * jitter)
    matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * r * jitter
    rgb = cv2.warpAffine(colour, matrix, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(obj.astype(np.uint8), matrix, (r, r), flags=cv2.INTER_NEAREST) > 0
    if not mask.any():
        rgb, mask = colour, obj
    return rgb, mask


def augment_reference(rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Strong, ``rng``-driven augmentation of a reference (uint8 r×r×3) and its object mask (bool r×r).

    Flips and 90° rotations, a random rescale (zoom in by cropping, or zoom out onto a grey canvas), a smooth
    elastic warp, a Gaussian blur, and brightness/contrast/saturation/hue jitter (OpenCV on the small crop: cheap
    enough to run in the training loop). The mask follows every geometric step; a zoom or warp that would empty
    it is undone. Returns ``3×r×r`` in [-1, 1] and ``1×r×r`` in {0, 1}.
    """
    r = rgb.shape[0]
    x = np.concatenate([rgb.astype(np.float32) / 255, mask[..., None].astype(np.float32)], 2)  # r×r×4 in [0, 1]
    x = np.rot90(x, int(rng.integers(4)))
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.5:
        x = x[::-1]
    x = flipped = np.ascontiguousarray(x)
    if rng.random() < 0.7:  # zoom in: crop a random 65-100 % square and scale it back up
        c = int(round(r * rng.uniform(0.65, 1.0)))
        top, left = (int(v) for v in rng.integers(0, r - c + 1, 2))
        x = cv2.resize(x[top : top + c, left : left + c], (r, r), interpolation=cv2.INTER_LINEAR)
    elif rng.random() < 0.5:  # zoom out: shrink onto a grey canvas (mask 0 around it)
        c = max(4, int(round(r * rng.uniform(0.7, 1.0))))
        top, left = (int(v) for v in rng.integers(0, r - c + 1, 2))
        canvas = np.full_like(x, 0.5)
        canvas[..., 3] = 0
        canvas[top : top + c, left : left + c] = cv2.resize(x, (c, c), interpolation=cv2.INTER_AREA)
        x = canvas
    if rng.random() < 0.7:  # elastic: a smooth random displacement field, up to ~4 % of the side
        field = cv2.GaussianBlur(rng.uniform(-1, 1, (r, r, 2)).astype(np.float32), (0, 0), max(r / 8, 1.0))
        field *= rng.uniform(0.01, 0.04) * r / max(float(np.abs(field).max()), 1e-6)
        grid_y, grid_x = np.mgrid[0:r, 0:r].astype(np.float32)
        warped = cv2.remap(x, grid_x + field[..., 0], grid_y + field[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        if (warped[..., 3] > 0.5).any():
            x = warped
    if not (x[..., 3] > 0.5).any():  # the zoom cut the object out: keep the flipped crop
        x = flipped.copy()
    if rng.random() < 0.4:
        x[..., :3] = cv2.GaussianBlur(np.ascontiguousarray(x[..., :3]), (0, 0), float(rng.uniform(0.3, 1.2)) * r / 32)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    image = np.clip(x[..., :3], 0, 1) * (1 + rng.uniform(-JITTER["brightness"], JITTER["brightness"]))
    mean = float((image @ luma).mean())
    image = (image - mean) * (1 + rng.uniform(-JITTER["contrast"], JITTER["contrast"])) + mean
    grey = (image @ luma)[..., None]
    saturation = 1 + rng.uniform(-JITTER["saturation"], JITTER["saturation"])
    image = np.clip((image - grey) * saturation + grey, 0, 1).astype(np.float32)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)  # float input: hue in degrees
    hsv[..., 0] = (hsv[..., 0] + 360 * rng.uniform(-JITTER["hue"], JITTER["hue"])) % 360
    image = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0, 1)
    out = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) * 2 - 1
    return out.contiguous(), torch.from_numpy(x[..., 3] > 0.5).float()[None].contiguous()


def _stack(pairs: list[dict[str, Tensor]]) -> PairBatch:
    return PairBatch(**{key: torch.stack([p[key] for p in pairs]) for key in pairs[0]})
