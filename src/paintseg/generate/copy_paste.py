"""Copy-paste backend: the paper's baseline (Ghiasi et al., 2021) on the same placements as the diffusion backend.

The reference's own pixels are pasted through its mask, scaled to the placement box, optionally flipped/rotated per
candidate and blended with a feathered edge. The object mask is exactly the pasted silhouette.
"""

from __future__ import annotations

import cv2
import numpy as np

from paintseg.curate.compose import feather
from paintseg.generate.masks import mask_box

from .candidates import Candidate, WindowJob


class CopyPasteBackend:
    """Paste the reference into the placement box; candidate k uses a seeded flip/rot90 variant (k=0: as is)."""

    name = "copy-paste"

    def __init__(self, feather_radius: float = 1.5):
        self.feather_radius = feather_radius

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        return [[self._paste(job, k) for k in range(candidates)] for job in jobs]

    def _paste(self, job: WindowJob, k: int) -> Candidate:
        ref = job.reference
        b = mask_box(ref.mask)
        pixels = ref.image[b.y0 : b.y1, b.x0 : b.x1]
        mask = ref.mask[b.y0 : b.y1, b.x0 : b.x1]
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
        alpha = feather(object_mask, self.feather_radius)[..., None]
        region = (slice(box.y0, box.y1), slice(box.x0, box.x1))
        pasted = out.astype(np.float32)
        pasted[region] = pixels.astype(np.float32)
        out = np.clip(np.round(alpha * pasted + (1 - alpha) * out.astype(np.float32)), 0, 255).astype(np.uint8)
        return Candidate(image=out, paint_mask=object_mask, object_mask=object_mask)
