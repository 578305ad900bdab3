"""Copy-paste backend: the paper's baseline (Ghiasi et al., 2021) on the same placements as the diffusion backend.

The reference's own pixels are pasted through its mask, scaled to the placement box, optionally flipped/rotated per
candidate and blended with a feathered edge. The object mask is exactly the pasted silhouette.

``colour="match"`` is the stronger, hand-made variant: the pasted pixels are moved in Lab from the colour
statistics of the reference's own surroundings (its crop outside the mask) to those of the new surroundings (the
window outside the box's silhouette), per channel mean and std (ratio clipped to 0.5..2; Reinhard et al. 2001), so
the object keeps its contrast to its background while the illumination follows the new scene; and every
candidate, k = 0 too, is flipped at random (seeded by the placement).

``colour="poisson"`` blends the paste into its new surroundings by Poisson image editing (Pérez et al. 2003,
OpenCV's ``seamlessClone``): the pasted gradients are kept and the colours solved for from the window's border
around the silhouette, the classical harmonisation that needs no training (a paste that touches the window's edge,
where the solver has no border, is blended with the feathered edge instead).

``noise=σ`` is a control for painting from the composite (SDEdit): zero-mean colour noise of per-channel std σ,
smooth at the scale of a 64-px model window (drawn at 64×64 and resized to the window), is added to the pasted
silhouette grown by 2 px - the region and about the size of the change a low-strength painting makes - so a gain
of SDEdit over copy-paste can be told from a gain of noisy pastes.
"""

from __future__ import annotations

import cv2
import numpy as np

from paintseg.config import PaintConfig
from paintseg.errors import PaintsegError
from paintseg.place.masks import feather, mask_box

from .candidates import BackendOptions, Candidate, WindowJob


COLOURS = ("none", "match", "poisson")
NOISE_GRID = 64  # the noise control is drawn at this resolution (the small generator's window) and resized


def match_colour(pixels: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pixels`` (uint8 ...×3) moved in Lab from the mean/std of ``source`` pixels (N×3) to those of ``target``."""
    if len(source) < 16 or len(target) < 16:
        return pixels
    lab = lambda a: cv2.cvtColor(a.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2LAB).reshape(-1, 3)  # noqa
    src, tgt = lab(source).astype(np.float32), lab(target).astype(np.float32)
    ratio = np.clip((tgt.std(0) + 1) / (src.std(0) + 1), 0.5, 2.0)
    moved = (lab(pixels).astype(np.float32) - src.mean(0)) * ratio + tgt.mean(0)
    moved = np.clip(np.round(moved), 0, 255).astype(np.uint8).reshape(-1, 1, 3)
    return cv2.cvtColor(moved, cv2.COLOR_LAB2RGB).reshape(pixels.shape)


def _inside(mask: np.ndarray, margin: int) -> bool:
    """Whether ``mask`` is non-empty and keeps ``margin`` pixels from every edge of its array."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return len(ys) > 0 and ys.min() >= margin and xs.min() >= margin and ys.max() < h - margin and xs.max() < w - margin


def _poisson(pasted: np.ndarray, window: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pasted``'s pixels under ``mask`` blended into ``window`` by Poisson image editing (OpenCV seamlessClone)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch = np.ascontiguousarray(pasted[y0:y1, x0:x1])
    region = (mask[y0:y1, x0:x1] * 255).astype(np.uint8)
    centre = (int(x0 + (x1 - x0) // 2), int(y0 + (y1 - y0) // 2))
    return cv2.seamlessClone(patch, np.ascontiguousarray(window), region, centre, cv2.NORMAL_CLONE)


class CopyPasteBackend:
    """Paste the reference into the placement box; candidate k uses a seeded flip/rot90 variant (k=0: as is)."""

    name = "copy-paste"

    def __init__(self, feather_radius: float = 1.5, colour: str = "none", noise: float = 0.0):
        if colour not in COLOURS:
            raise PaintsegError(f"copy-paste colour {colour!r}: use one of {', '.join(COLOURS)}")
        if not 0 <= noise <= 128:
            raise PaintsegError(f"copy-paste noise {noise}: give a std in grey levels, 0 (none) to 128")
        self.feather_radius = feather_radius
        self.colour = colour
        self.noise = noise

    @classmethod
    def from_config(cls, source: str, paint: PaintConfig, options: BackendOptions) -> "CopyPasteBackend":
        return cls(colour=options.paste_colour, noise=options.paste_noise)

    def settings(self) -> dict:
        return ({"paste_noise": self.noise} if self.noise else {}) | (
            {"paste_colour": self.colour} if self.colour != "none" else {})

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        return [[self._paste(job, k) for k in range(candidates)] for job in jobs]

    def _paste(self, job: WindowJob, k: int) -> Candidate:
        ref = job.reference
        b = mask_box(ref.mask)
        pixels = ref.image[b.y0 : b.y1, b.x0 : b.x1]
        mask = ref.mask[b.y0 : b.y1, b.x0 : b.x1]
        if self.colour == "match":
            rng = np.random.default_rng([job.placement.seed, k, 1])
            if rng.random() < 0.5:
                pixels, mask = pixels[:, ::-1], mask[:, ::-1]
            if rng.random() < 0.5:
                pixels, mask = pixels[::-1], mask[::-1]
        if k > 0:
            rng = np.random.default_rng([job.placement.seed, k])
            if rng.random() < 0.5:
                pixels, mask = pixels[:, ::-1], mask[:, ::-1]
            turns = int(rng.integers(0, 4))
            pixels, mask = np.rot90(pixels, turns), np.rot90(mask, turns)
        box = job.box
        size = (box.width, box.height)
        pixels = cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(np.ascontiguousarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        out = job.window_image.copy()
        object_mask = np.zeros(job.window_image.shape[:2], bool)
        object_mask[box.y0 : box.y1, box.x0 : box.x1] = mask
        if self.colour == "match":
            pixels = match_colour(pixels, ref.image[~ref.mask], job.window_image[~object_mask])
        alpha = feather(object_mask, self.feather_radius)[..., None]
        region = (slice(box.y0, box.y1), slice(box.x0, box.x1))
        pasted = out.astype(np.float32)
        pasted[region] = pixels.astype(np.float32)
        if self.colour == "poisson" and _inside(object_mask, margin=2):
            out = _poisson(pasted.astype(np.uint8), out, object_mask)
        else:
            out = np.clip(np.round(alpha * pasted + (1 - alpha) * out.astype(np.float32)), 0, 255).astype(np.uint8)
        if self.noise > 0:
            region = cv2.dilate(object_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            rng = np.random.default_rng([job.placement.seed, k, 2])
            h, w = object_mask.shape
            field = cv2.resize(rng.normal(0, 1, (NOISE_GRID, NOISE_GRID, 3)).astype(np.float32), (w, h),
                               interpolation=cv2.INTER_LINEAR)
            field *= self.noise / max(float(field[region].std()), 1e-6)
            noisy = out.astype(np.float32)
            noisy[region] += field[region]
            out = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
            return Candidate(image=out, paint_mask=region, object_mask=object_mask)
        return Candidate(image=out, paint_mask=object_mask, object_mask=object_mask)
