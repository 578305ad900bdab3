"""The diffusion backend: paint placements with a trained generator (a GEN folder).

Each window is resized to the model's resolution, painted K times (K candidates, one batched call per placement,
seeded by the placement so a resumed or re-batched run paints the same pixels), resized back to the window's
native size, and pasted over the original window inside the inpaint mask only. Until curation refines it, the
object mask is the inpaint mask.

With ``strength`` < 1 every window starts from its copy-paste composite (the reference pasted into the box, as the
copy-paste backend does) noised to that strength (SDEdit; see :func:`.sample.paint`): the painted region is the
inpaint mask joined with the pasted silhouette grown by 2 px (so the seam is repainted too), and the object mask
is the pasted silhouette, which a low strength keeps in place. The model works at its own (low) resolution, so
what it changes is added to the full-resolution composite: at strength 0 the result is the copy-paste candidate
exactly, and the pasted object keeps its detail at every strength.

With ``paste_noise`` σ > 0 (and ``strength`` < 1) the composite is the copy-paste-noise one: smooth colour noise of
std σ on the pasted object, which the model then paints over - new instances that keep the appearance variation of
the copy-paste-noise control.

A generator trained with ``spatial_hint`` also gets the pasted reference (the copy-paste composite's object, at the
model's resolution) as its 4 hint channels, at any strength.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from paintseg.config import PaintConfig

from ..candidates import BackendOptions, Candidate, WindowJob
from ..copy_paste import CopyPasteBackend
from .data import hint_tensor
from .latent import paint_windows
from .model import GeneratorError, load_autoencoder_of, load_generator
from .sample import SCHEDULERS, paint, resize_square, to_tensor, to_uint8


def square_reference(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre a reference crop on a square grey canvas (mask 0 around it), as the training references are square.

    The model saw such grey margins in training (the zoom-out augmentation), so no pixels are invented."""
    h, w = mask.shape
    side = max(h, w)
    canvas = np.full((side, side, 3), 128, np.uint8)
    square_mask = np.zeros((side, side), bool)
    oy, ox = (side - h) // 2, (side - w) // 2
    canvas[oy : oy + h, ox : ox + w] = image[..., :3]
    square_mask[oy : oy + h, ox : ox + w] = mask
    return canvas, square_mask


class DiffusionBackend:
    """Paint with our exemplar-conditioned inpainting model (``paintseg generator train``)."""

    name = "diffusion"

    def __init__(self, generator: str | Path, paint: PaintConfig | None = None, seed: int = 0,
                 paste_noise: float = 0.0):
        paint = paint or PaintConfig()
        steps, guidance, scheduler, strength = paint.steps, paint.guidance, paint.scheduler, paint.strength
        if scheduler not in SCHEDULERS:
            raise GeneratorError(f"scheduler {scheduler!r} for a paintseg generator: use one of "
                                 f"{', '.join(SCHEDULERS)}")
        if paste_noise and strength >= 1.0:
            raise GeneratorError(f"paste noise {paste_noise}: painting from pure noise (strength 1) never sees the "
                                 f"noisy paste; give a strength below 1 (e.g. 0.3) or no paste noise")
        self.strength, self.paste_noise = strength, paste_noise
        self.device = paint.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.source = Path(generator).resolve()
        self.model, self.config = load_generator(generator, self.device)
        self.autoencoder = load_autoencoder_of(generator, self.model, self.device)  # a latent painter's
        self.resolution = self.model.spec.resolution
        self.ref_size = self.model.spec.ref_size
        self.steps, self.guidance, self.scheduler, self.seed = steps, guidance, scheduler, seed

    @classmethod
    def from_config(cls, source: str, paint: PaintConfig, options: BackendOptions) -> "DiffusionBackend":
        if options.paste_colour != "none":
            raise GeneratorError(f"paste colour {options.paste_colour!r} with a generator: the colour handling is "
                                 f"copy-paste's and the harmoniser's (a generator paints its own colours); leave it "
                                 f"out, or paint over noisy pastes with paste_noise and strength < 1")
        return cls(source, paint, seed=options.seed, paste_noise=options.paste_noise)

    def settings(self) -> dict:
        return ({"generator": str(self.source), "steps": self.steps, "guidance": self.guidance,
                 "scheduler": self.scheduler} | ({"strength": self.strength} if self.strength != 1.0 else {})
                | ({"paste_noise": self.paste_noise} if self.paste_noise else {}))

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        out = []
        for job in jobs:
            k = candidates
            ref_image, ref_mask = square_reference(job.reference.image, job.reference.mask)
            region, objects, init, hint = job.mask, job.mask, None, None
            if self.strength < 1.0 or self.model.spec.hint:
                composite = CopyPasteBackend(noise=self.paste_noise).paint([job], 1)[0][0]
            if self.autoencoder is not None:
                out.append(self._paint_latent(job, k, composite if self.strength < 1.0 or self.model.spec.hint
                                              else None, ref_image, ref_mask))
                continue
            if self.model.spec.hint:  # the pasted reference, at model resolution
                rgb = resize_square(composite.image, self.resolution)
                pasted = resize_square(composite.object_mask.astype(np.uint8), self.resolution, nearest=True) > 0
                hint = hint_tensor(rgb, pasted)[None].repeat(k, 1, 1, 1)
            if self.strength < 1.0:
                objects = composite.object_mask
                grown = cv2.dilate(objects.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
                region = job.mask | grown
                init = to_tensor(composite.image, self.resolution).repeat(k, 1, 1, 1)
            window = to_tensor(job.window_image, self.resolution).repeat(k, 1, 1, 1)
            mask_r = to_tensor(self._mask_at_resolution(region), None).repeat(k, 1, 1, 1)
            reference = to_tensor(ref_image, self.ref_size).repeat(k, 1, 1, 1)
            reference_mask = to_tensor(ref_mask, self.ref_size).repeat(k, 1, 1, 1)
            gen = torch.Generator(device=self.device).manual_seed(int(job.placement.seed) ^ (self.seed << 20))
            painted = to_uint8(paint(self.model, window, mask_r, reference, reference_mask, steps=self.steps,
                                     guidance=self.guidance, scheduler=self.scheduler, generator=gen,
                                     strength=self.strength, init=init, hint=hint))
            h, w = job.mask.shape
            interpolation = cv2.INTER_CUBIC if h > self.resolution else cv2.INTER_AREA
            if init is not None:  # the model's change, added to the composite at its own resolution
                start = cv2.resize(to_uint8(init[:1])[0], (w, h), interpolation=interpolation).astype(np.float32)
            cands = []
            for image in painted:
                native = cv2.resize(image, (w, h), interpolation=interpolation)
                if init is not None:
                    change = native.astype(np.float32) - start
                    native = np.clip(np.round(composite.image.astype(np.float32) + change), 0, 255).astype(np.uint8)
                result = job.window_image.copy()
                result[region] = native[region]
                cands.append(Candidate(image=result, paint_mask=region.copy(), object_mask=objects.copy()))
            out.append(cands)
        return out

    def _paint_latent(self, job: WindowJob, k: int, composite: Candidate | None, ref_image: np.ndarray,
                      ref_mask: np.ndarray) -> list[Candidate]:
        """A latent painter's K candidates of one window: the window (and the composite) resized to the model's
        resolution and encoded, painted in latent space, decoded, resized back; only the painted region - the
        inpaint mask, joined at strength < 1 with the pasted silhouette grown by 2 px - returns to the scene."""
        region, objects, init, hint_mask = job.mask, job.mask, None, None
        if composite is not None:
            init = to_tensor(composite.image, self.resolution)
            hint_mask = to_tensor(resize_square(composite.object_mask.astype(np.uint8), self.resolution,
                                                nearest=True) > 0)
        if self.strength < 1.0:
            objects = composite.object_mask
            region = job.mask | (cv2.dilate(objects.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
        gen = torch.Generator(device=self.device).manual_seed(int(job.placement.seed) ^ (self.seed << 20))
        painted = to_uint8(paint_windows(
            self.model, self.autoencoder, to_tensor(job.window_image, self.resolution),
            to_tensor(self._mask_at_resolution(region)), to_tensor(ref_image, self.ref_size),
            to_tensor(ref_mask, self.ref_size), candidates=k, init=init, hint_mask=hint_mask, steps=self.steps,
            guidance=self.guidance, scheduler=self.scheduler, generator=gen, strength=self.strength))
        h, w = job.mask.shape
        interpolation = cv2.INTER_CUBIC if h > self.resolution else cv2.INTER_AREA
        cands = []
        for image in painted:
            result = job.window_image.copy()
            result[region] = cv2.resize(image, (w, h), interpolation=interpolation)[region]
            cands.append(Candidate(image=result, paint_mask=region.copy(), object_mask=objects.copy()))
        return cands

    def _mask_at_resolution(self, mask: np.ndarray) -> np.ndarray:
        """The inpaint mask at model resolution; any pixel touched by the native mask is painted (area > 0), so a
        thin native mask never vanishes when a large window is shrunk."""
        area = cv2.resize(mask.astype(np.float32), (self.resolution, self.resolution), interpolation=cv2.INTER_AREA)
        return area > 0.0
