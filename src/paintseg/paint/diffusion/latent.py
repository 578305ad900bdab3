"""The latent painter's data: training windows encoded once, pairs drawn from them, and painting through the
autoencoder.

A latent painter (``GeneratorConfig.space: latent``) is the same exemplar-conditioned inpainting model as the pixel
one, on the latents of a pretrained autoencoder (:mod:`paintseg.paint.autoencoder`): noisy latent + the masked
scene's latent + the mask at 1/8 (+ the hint: the pasted reference's latent × its mask, and the mask), cross-
attending to tokens of the reference crop (pixels, as before). The autoencoder renders the pixels, so diffusion only
has to get a small latent right (the paper's LDM design).

Encoding is the expensive part on a CPU, so the training windows are cut once - ``config.latent_pool`` of them, by
the pixel painter's own rule (:meth:`PairSampler.draw`: an instance or random region, a window where its box covers
``box_fraction``, resized to the model's resolution, a random flip / quarter turn; with ``cross_reference`` the
reference and hint of that share from another instance of the class, :meth:`PairSampler.cross`) - and encoded once into
``GEN/latents.pt`` (reused on resume, removed with the checkpoint). Each step draws its pairs from that pool with a
fresh inpaint mask (any of ``mask_kinds``, drawn at pixel resolution, a latent cell painted when any of its pixels
is) and a fresh augmentation of the reference crop: pair ``i`` of step ``s`` depends only on ``(seed, s)``.
The masked scene's latent is the window's latent with the masked cells zeroed (as in training, so in painting).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from paintseg.config import GeneratorConfig
from paintseg.place.masks import make_mask, mask_box
from paintseg.runs import save_torch

from .data import PairSampler, StepPairs, augment_reference, hint_image
from .model import LATENT_FACTOR, GeneratorError, PaintModel, spec_for
from .sample import paint, to_tensor

log = logging.getLogger(__name__)

POOL_FILE = "latents.pt"
POOL_TAG = 5_555_557  # second seed word of the pool's windows
ENCODE_BATCH = 16


def latent_mask(mask: Tensor) -> Tensor:
    """A pixel mask ``B×1×R×R`` → ``B×1×R/8×R/8``: a latent cell is painted when any of its pixels is."""
    return F.max_pool2d((mask > 0.5).float(), LATENT_FACTOR)


@torch.inference_mode()
def encode(autoencoder, images: Tensor, batch: int = ENCODE_BATCH) -> Tensor:
    """Raw latents of ``N×3×R×R`` images in [-1, 1], ``batch`` at a time."""
    device = next(autoencoder.parameters()).device
    return torch.cat([autoencoder.encode(images[i : i + batch].to(device)).float().cpu()
                      for i in range(0, len(images), batch)]) if len(images) else images.new_zeros(0)


def _pool_key(config: GeneratorConfig, sources: list[str], autoencoder_id: str) -> str:
    fields = ("seed", "latent_pool", "resolution", "ref_size", "size", "box_fraction", "min_instance_pixels",
              "random_region_prob", "novel_share", "spatial_hint", "hint_jitter", "rgb_bands")
    crossed = {"cross_reference": config.cross_reference} if config.cross_reference else {}  # 0: the old keys
    data = {k: getattr(config, k) for k in fields} | crossed | {"sources": sources, "autoencoder": autoencoder_id}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dihedral(arrays: list[np.ndarray], k: int, flip: bool) -> list[np.ndarray]:
    out = []
    for a in arrays:
        a = np.rot90(a, k)
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out


class LatentPairSampler(StepPairs):
    """The latent pool of an episode and the deterministic training pairs of any step (the interface of
    :class:`PairSampler`: ``config``, ``batch(step)``, ``validation(count)`` of :class:`StepPairs`, ``describe()``)."""

    def __init__(self, pixels: PairSampler, autoencoder, cache: Path | None = None, progress: bool = False,
                 autoencoder_id: str = ""):
        self.config = config = pixels.config
        self.pixels = pixels
        spec = spec_for(config)
        self.resolution, self.ref_size = spec.resolution, spec.ref_size
        key = _pool_key(config, pixels.sources, autoencoder_id)
        start = time.perf_counter()
        pool = None
        if cache is not None and cache.is_file():
            pool = torch.load(cache, map_location="cpu", weights_only=True)
            if pool.get("key") != key:
                log.info("%s: made for other settings; encoding the windows again", cache)
                pool = None
        self.reused = pool is not None
        if pool is None:
            pool = self._build(pixels, autoencoder, key, progress)
            if cache is not None:
                save_torch(pool, cache)
        self.pool = pool
        self.seconds = time.perf_counter() - start
        self.latent_channels = int(pool["latents"].shape[1])

    def _build(self, pixels: PairSampler, autoencoder, key: str, progress: bool) -> dict:
        config = self.config
        windows, hints, objects, hint_masks, refs, ref_masks, classes = [], [], [], [], [], [], []
        for i in range(config.latent_pool):
            rng = np.random.default_rng([config.seed, POOL_TAG, i])
            inst, window, obj, box, image = pixels.draw(rng)
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            crossed = pixels.cross(inst, window, box, rng)  # another instance as reference and hint, or None
            ref, ref_mask, hint_rgb, hint_obj = crossed or (*pixels.reference_crop(image, inst), window, obj)
            window, obj, hint_rgb, hint_obj = _dihedral([window, obj, hint_rgb, hint_obj], k, flip)
            windows.append(window)
            objects.append(obj)
            refs.append(ref)
            ref_masks.append(ref_mask)
            classes.append(inst.class_id)
            if config.spatial_hint:
                rgb, m = hint_image(hint_rgb, hint_obj, mask_box(hint_obj), rng, config.hint_jitter)
                hints.append(rgb)
                hint_masks.append(m)
        images = to_tensor(np.stack(windows))
        bar = tqdm(total=2 * len(images) if hints else len(images), desc="encoding training windows", unit="win",
                   disable=not progress, leave=False)
        latents = []
        with bar:
            for i in range(0, len(images), ENCODE_BATCH):
                latents.append(encode(autoencoder, images[i : i + ENCODE_BATCH]))
                bar.update(len(latents[-1]))
            hint_latents = []
            for i in range(0, len(hints), ENCODE_BATCH):
                hint_latents.append(encode(autoencoder, to_tensor(np.stack(hints[i : i + ENCODE_BATCH]))))
                bar.update(len(hint_latents[-1]))
        pool = {"key": key, "latents": torch.cat(latents), "objects": torch.from_numpy(np.stack(objects)),
                "refs": torch.from_numpy(np.stack(refs)), "ref_masks": torch.from_numpy(np.stack(ref_masks)),
                "classes": torch.tensor(classes, dtype=torch.int64)}
        if hints:
            pool["hints"] = torch.cat(hint_latents)
            pool["hint_masks"] = torch.from_numpy(np.stack(hint_masks))
        return pool

    # ------------------------------------------------------------------------------------------- statistics
    def scale(self) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std of the pool's raw latents (the painter's standardisation)."""
        flat = self.pool["latents"].transpose(0, 1).reshape(self.latent_channels, -1).double()
        return flat.mean(1).float(), flat.std(1).float()

    def describe(self) -> str:
        how = "reused" if self.reused else "encoded"
        return (f"{self.pixels.describe()}; {len(self.pool['latents'])} training windows {how} into latents "
                f"{tuple(self.pool['latents'].shape[1:])} in {self.seconds:.0f} s")

    # ---------------------------------------------------------------------------------------------- pairs
    def bind(self, model: PaintModel) -> "LatentPairSampler":
        """Standardise with ``model``'s latent scale (set before the first batch)."""
        self.mean = model.latent_mean.detach().cpu().view(1, -1, 1, 1)
        self.std = model.latent_std.detach().cpu().view(1, -1, 1, 1)
        return self

    def pair(self, rng: np.random.Generator) -> dict[str, Tensor]:
        pool, R = self.pool, self.resolution
        j = int(rng.integers(len(pool["latents"])))
        obj = pool["objects"][j].numpy()
        box = mask_box(obj)
        kind = self.config.mask_kinds[int(rng.integers(len(self.config.mask_kinds)))]
        inpaint = torch.from_numpy(make_mask(kind, (R, R), box, rng, ref_mask=obj).astype(np.float32))[None, None]
        mask = latent_mask(inpaint)[0]
        target = ((pool["latents"][j : j + 1] - self.mean) / self.std)[0]
        reference, ref_mask = augment_reference(pool["refs"][j].numpy(), pool["ref_masks"][j].numpy(), rng)
        if "hints" in pool:
            m = latent_mask(pool["hint_masks"][j][None, None].float())[0]
            hint = torch.cat([((pool["hints"][j : j + 1] - self.mean) / self.std)[0] * m, m])
        else:
            hint = torch.zeros(self.latent_channels + 1, *target.shape[1:])
        return {"target": target, "masked": target * (1 - mask), "mask": mask, "reference": reference,
                "ref_mask": ref_mask, "boxes": torch.tensor(list(box), dtype=torch.int64),
                "class_ids": pool["classes"][j].clone(), "hint": hint}


# ------------------------------------------------------------------------------------------------ painting
@torch.inference_mode()
def paint_windows(model: PaintModel, autoencoder, windows: Tensor, mask: Tensor, reference: Tensor,
                  ref_mask: Tensor, candidates: int = 1, init: Tensor | None = None, hint_mask: Tensor | None = None,
                  **kwargs) -> Tensor:
    """Paint ``candidates`` variants of each pixel window with a latent painter; returns the decoded windows
    ``(B·candidates)×3×R×R`` in [-1, 1] (candidate-major within each window).

    ``windows``: ``B×3×R×R`` in [-1, 1]; ``mask``: ``B×1×R×R`` pixel inpaint mask (a latent cell is painted when any
    of its pixels is); ``reference``/``ref_mask`` as :func:`.sample.paint` takes them; ``init`` (``B×3×R×R``, e.g.
    the copy-paste composite) is the start image at ``strength`` < 1 and, with ``hint_mask`` (its pasted object),
    the hint of a generator trained with one (without them such a generator gets an empty hint). The decoded window
    differs from the input everywhere (the autoencoder is lossy): the caller pastes back only the painted region.
    ``kwargs`` go to :func:`.sample.paint`."""
    if not model.spec.latent:
        raise GeneratorError("paint_windows is for latent painters; paint a pixel painter with paint()")
    device = next(model.parameters()).device
    scene = model.normalise(encode(autoencoder, windows).to(device))
    start = model.normalise(encode(autoencoder, init).to(device)) if init is not None else None
    hint = None
    if model.spec.hint:  # the pasted object's latents (zeros without a composite: no hint)
        if init is not None and hint_mask is not None:
            m = latent_mask(hint_mask.to(device))
            hint = torch.cat([start * m, m], 1)
        else:
            hint = scene.new_zeros(scene.shape[0], scene.shape[1] + 1, *scene.shape[2:])
    k = candidates
    rep = lambda x: None if x is None else x.repeat_interleave(k, 0)  # noqa: E731
    painted = paint(model, rep(scene), rep(latent_mask(mask.to(device))), rep(reference), rep(ref_mask),
                    init=rep(start), hint=rep(hint), **kwargs)
    out = torch.cat([autoencoder.decode(model.denormalise(painted[i : i + ENCODE_BATCH]))
                     for i in range(0, len(painted), ENCODE_BATCH)])
    return out.float()
