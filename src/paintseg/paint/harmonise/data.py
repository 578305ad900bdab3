"""Self-supervised harmonisation pairs: real instances re-coloured as if they had been pasted from elsewhere.

Every connected component of a labelled class (``find_instances``, as for the diffusion generator) is an instance.
One pair: a square window around the instance (the box covers a share in ``box_fraction`` of it), resized to
``crop``; the instance's pixels re-coloured by one of

- another training scene's colour statistics (per-channel mean and std of a random window of a random scene
  replace this window's: the instance as that scene's light, sensor and season would show it), with
  ``other_scene_prob``;
- a random colour transform: per-channel gain and offset, a gamma and a saturation change (scaled by ``shift``);

then, each with some probability, resampled (shrunk and enlarged: a pasted reference is resized) and blurred, and
blended back through its own mask with the copy-paste backend's feathered edge. The target is the real window.
Pair ``i`` of step ``s`` depends only on ``(seed, s)``; the validation pairs only on the seed, and come from
scenes that the training pairs never use when there are enough (every fifth scene with instances).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from paintseg.config import HarmoniserConfig
from paintseg.place.masks import feather
from paintseg.data.episode import Episode

from ..augment import recolour
from ..diffusion.data import Instance, find_instances, read_scenes
from .model import HarmoniserError

VALIDATION_TAG = 5_555_551
HELD_OUT_EVERY = 5  # every fifth scene with instances serves the validation pairs (when there are >= 5)
FEATHER = 1.5  # the copy-paste backend's edge


@dataclass
class HarmonyBatch:
    composite: Tensor  # B×3×C×C in [0, 1]: the window with the re-coloured instance pasted back
    mask: Tensor  # B×1×C×C in {0, 1}: the instance
    target: Tensor  # B×3×C×C in [0, 1]: the real window

    def to(self, device: str | torch.device) -> "HarmonyBatch":
        return HarmonyBatch(self.composite.to(device), self.mask.to(device), self.target.to(device))

    def __getitem__(self, rows: slice) -> "HarmonyBatch":
        """The pairs ``rows`` (a process's share of a global batch)."""
        return HarmonyBatch(self.composite[rows], self.mask[rows], self.target[rows])


def transfer(pixels: np.ndarray, source: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``pixels`` (float RGB) moved from ``source``'s per-channel mean/std to ``other``'s (std ratio in 0.5..2)."""
    mu_s, sd_s = source.reshape(-1, 3).mean(0), source.reshape(-1, 3).std(0) + 1e-3
    mu_o, sd_o = other.reshape(-1, 3).mean(0), other.reshape(-1, 3).std(0) + 1e-3
    ratio = np.clip(sd_o / sd_s, 0.5, 2.0)
    return np.clip((pixels - mu_s) * ratio + mu_o, 0, 1).astype(np.float32)


class HarmonyPairs:
    """All training scenes in memory, and the deterministic harmonisation pairs of any step."""

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray], config: HarmoniserConfig):
        self.config, self.images = config, images
        instances = [find_instances(i, lab, config) for i, lab in enumerate(labels)]
        with_instances = [i for i, found in enumerate(instances) if found]
        if not with_instances:
            raise HarmoniserError(f"no usable instances in {len(images)} scenes (connected components of a labelled "
                                  f"class with >= {config.min_instance_pixels} pixels whose box can cover "
                                  f"{list(config.box_fraction)} of a window); lower min_instance_pixels or widen "
                                  f"box_fraction")
        held = with_instances[::HELD_OUT_EVERY] if len(with_instances) >= HELD_OUT_EVERY else []
        self.train = [inst for i in with_instances if i not in held for inst in instances[i]]
        self.held_out = [inst for i in held for inst in instances[i]] or self.train

    @classmethod
    def from_episode(cls, episode: Episode, config: HarmoniserConfig, progress: bool = False) -> "HarmonyPairs":
        images, labels, _ = read_scenes(episode, config.rgb_bands, progress)
        return cls(images, labels, config)

    def describe(self) -> str:
        return f"{len(self.images)} scenes, {len(self.train)} training and {len(self.held_out)} held-out instances"

    def batch(self, step: int) -> HarmonyBatch:
        rng = np.random.default_rng([self.config.seed, step])
        return _stack([self.pair(self.train[int(rng.integers(len(self.train)))], rng)
                       for _ in range(self.config.batch)])

    def validation(self, count: int) -> HarmonyBatch:
        pairs = []
        for i in range(count):
            rng = np.random.default_rng([self.config.seed, VALIDATION_TAG, i])
            pairs.append(self.pair(self.held_out[int(rng.integers(len(self.held_out)))], rng))
        return _stack(pairs)

    def pair(self, inst: Instance, rng: np.random.Generator) -> dict[str, Tensor]:
        image = self.images[inst.scene]
        h, w = image.shape[:2]
        c = self.config.crop
        lo, hi = self.config.box_fraction
        b = inst.box
        s_min = min(max(int(np.ceil(np.sqrt(b.area / hi))), b.width + 2, b.height + 2), h, w)
        s_max = max(min(int(np.sqrt(b.area / lo)), h, w), s_min)
        side = int(rng.integers(s_min, s_max + 1))
        x0 = int(rng.integers(max(0, b.x1 - side), min(b.x0, w - side) + 1))
        y0 = int(rng.integers(max(0, b.y1 - side), min(b.y0, h - side) + 1))
        window = cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (c, c), interpolation=cv2.INTER_AREA)
        obj = np.zeros((side, side), np.uint8)
        obj[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0] = inst.mask
        mask = cv2.resize(obj, (c, c), interpolation=cv2.INTER_NEAREST) > 0
        if not mask.any():
            mask = cv2.resize(obj.astype(np.float32), (c, c), interpolation=cv2.INTER_AREA) > 0
        target = window.astype(np.float32) / 255
        if rng.random() < self.config.other_scene_prob:
            other = self.images[int(rng.integers(len(self.images)))]
            oh, ow = other.shape[:2]
            os_ = min(side, oh, ow)
            oy, ox = int(rng.integers(0, oh - os_ + 1)), int(rng.integers(0, ow - os_ + 1))
            other_window = other[oy : oy + os_, ox : ox + os_].astype(np.float32) / 255
            moved = transfer(target, target, other_window)
        else:
            moved = recolour(target, rng, self.config.shift)
        if rng.random() < 0.5:  # resampled, as a reference scaled into a new box is
            small = max(8, int(round(c * rng.uniform(0.5, 0.9))))
            moved = cv2.resize(cv2.resize(moved, (small, small), interpolation=cv2.INTER_AREA), (c, c),
                               interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.3:
            moved = cv2.GaussianBlur(moved, (0, 0), float(rng.uniform(0.4, 1.0)))
        alpha = feather(mask, FEATHER)[..., None]
        composite = alpha * moved + (1 - alpha) * target
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()  # noqa: E731
        return {"composite": as_tensor(composite), "mask": torch.from_numpy(mask.astype(np.float32))[None],
                "target": as_tensor(target)}


def _stack(pairs: list[dict[str, Tensor]]) -> HarmonyBatch:
    return HarmonyBatch(**{key: torch.stack([p[key] for p in pairs]) for key in pairs[0]})
