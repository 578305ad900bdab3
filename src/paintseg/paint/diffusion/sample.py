"""Painting: fill an inpaint mask in a batch of context windows with what a reference shows.

``paint`` runs a DDIM or DPM-Solver++ sampler (made from the model's training noise schedule) with classifier-free
guidance - the conditional and the unconditional (null reference) predictions in one batched forward - and pastes
the known pixels back at the end, so the output equals the input outside the mask exactly. Like Paint-by-Example,
the known region is not re-noised at each step: the network sees the masked window and the mask as inputs.

``strength`` < 1 paints from a start image instead of pure noise (SDEdit): ``init`` (e.g. the copy-paste
composite) is noised to the timestep that leaves the last ``strength`` share of the sampling steps, and only those
run - strength 0 returns ``init`` as it is (copy-paste), 1 paints from noise. The model then renders a variant of a
visible object and harmonises it with the scene instead of inventing it.

``to_tensor`` and ``to_uint8`` convert between uint8 windows / bool masks (NumPy, H×W×3 / H×W, optionally batched)
and the model's tensors (B×3×R×R in [-1, 1] / B×1×R×R in {0, 1}), resizing on the way when asked.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor

from .model import GeneratorError, PaintModel

SCHEDULERS = ("ddim", "dpm++", "dpm++sde")


def make_scheduler(model: PaintModel, name: str = "ddim") -> SchedulerMixin:
    """A sampler over the model's training noise schedule: ``"ddim"`` and ``"dpm++"`` (DPM-Solver++ 2M) are
    deterministic given the start noise; ``"dpm++sde"`` (its SDE form) adds fresh noise at every step, so the same
    start noise gives different paintings (on the demo's CPU painters no more varied than dpm++'s: docs/results.md)."""
    config = model.noise_scheduler().config
    # "trailing" spacing starts sampling at the last training timestep (pure noise), as few-step samplers should
    if name == "ddim":
        return DDIMScheduler.from_config(config, timestep_spacing="trailing")
    if name in ("dpm++", "dpm++sde"):
        # lambda_min_clipped keeps the cosine schedule's last, nearly noise-only steps numerically stable
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="sde-dpmsolver++" if name == "dpm++sde" else "dpmsolver++", solver_order=2,
            timestep_spacing="trailing", lambda_min_clipped=-5.1)
    raise GeneratorError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")


def _check(name: str, x: Tensor, channels: int, batch: int | None = None, size: int | None = None) -> None:
    if x.ndim != 4 or x.shape[1] != channels or x.shape[2] != x.shape[3]:
        raise GeneratorError(f"paint: {name} must be a B×{channels}×S×S tensor, got {tuple(x.shape)}; convert "
                             f"arrays with paintseg.paint.diffusion.to_tensor")
    if batch is not None and x.shape[0] != batch:
        raise GeneratorError(f"paint: {name} holds {x.shape[0]} items but the windows hold {batch}; pass one per "
                             f"window")
    if size is not None and x.shape[-1] != size:
        raise GeneratorError(f"paint: {name} is {x.shape[-1]}×{x.shape[-1]} but must be {size}×{size}; resize it "
                             f"with to_tensor(..., size={size})")


@torch.inference_mode()
def paint(model: PaintModel, masked_or_scene: Tensor, mask: Tensor, reference: Tensor, ref_mask: Tensor, *,
          steps: int, guidance: float, scheduler: str, generator: torch.Generator | None = None,
          eta: float = 0.0, strength: float = 1.0, init: Tensor | None = None, hint: Tensor | None = None) -> Tensor:
    """Paint the ``mask`` region of each window with the reference's object, with ``steps`` of the sampler
    ``scheduler`` at classifier-free ``guidance`` (a run's :class:`~paintseg.config.PaintConfig` says which).

    ``masked_or_scene``: windows ``B×3×R×R`` in [-1, 1] (pixels under the mask are ignored); ``mask``: ``B×1×R×R``
    (> 0.5 = paint); ``reference``/``ref_mask``: ``B×3×r×r`` in [-1, 1] / ``B×1×r×r``. ``guidance`` 1 turns
    classifier-free guidance off, 0 paints unconditionally. ``eta`` > 0 adds DDIM noise. ``strength`` < 1 starts
    from ``init`` (``B×3×R×R`` in [-1, 1]; see the module docstring). ``hint`` (``B×4×R×R``) is the spatial
    reference of a generator trained with ``spatial_hint`` (the unconditional branch of guidance gets none).
    Returns ``B×3×R×R`` in [-1, 1], equal to ``masked_or_scene`` outside the mask.

    A latent painter (``model.spec.latent``) paints standardised latents the same way: ``masked_or_scene``,
    ``init`` and the result are ``B×C×S×S`` (``model.normalise`` of the autoencoder's latents), ``mask`` is at
    latent resolution and ``hint`` is ``B×(C+1)×S×S``; :func:`paint_windows` does the encoding and decoding.
    """
    batch, c = masked_or_scene.shape[0], model.spec.channels_out
    _check("masked_or_scene", masked_or_scene, c)
    _check("mask", mask, 1, batch, masked_or_scene.shape[-1])
    _check("reference", reference, 3, batch)
    _check("ref_mask", ref_mask, 1, batch, reference.shape[-1])
    if steps < 1:
        raise GeneratorError(f"paint: steps={steps}; pass at least 1 sampling step (25-50 is usual)")
    if not 0.0 <= strength <= 1.0:
        raise GeneratorError(f"paint: strength={strength}; use 0 (the start image as it is) to 1 (from pure noise)")
    if strength < 1.0:
        if init is None:
            raise GeneratorError("paint: strength < 1 paints from a start image; pass init= (e.g. the copy-paste "
                                 "composite)")
        _check("init", init, c, batch, masked_or_scene.shape[-1])
    device = next(model.parameters()).device
    known = masked_or_scene.to(device, torch.float32)
    mask = (mask.to(device) > 0.5).to(torch.float32)
    masked = known * (1 - mask)
    cond = model.encode_reference(reference.to(device, torch.float32), ref_mask.to(device, torch.float32))
    guided = guidance != 1.0
    if guidance == 0.0:
        tokens = model.null(batch)
    elif guided:
        tokens = torch.cat([cond, model.null(batch).to(cond.dtype)])
    else:
        tokens = cond
    both = guided and guidance != 0.0
    if model.spec.hint:
        if hint is None:
            raise GeneratorError("paint: this generator takes a spatial hint (spatial_hint: true); pass hint= (the "
                                 "reference warped into the box, B×4×R×R)")
        _check("hint", hint, c + 1, batch, masked_or_scene.shape[-1])
        hint = hint.to(device, torch.float32) if guidance != 0.0 else torch.zeros_like(hint, device=device)

    sampler = make_scheduler(model, scheduler)
    sampler.set_timesteps(steps, device=device)
    x = randn_tensor(tuple(known.shape), generator=generator, device=device, dtype=torch.float32)
    timesteps = sampler.timesteps
    if strength < 1.0:
        run = min(int(round(steps * strength)), steps)
        start = init.to(device, torch.float32)
        if run == 0:
            return mask * start + (1 - mask) * known
        timesteps = timesteps[steps - run :]
        if hasattr(sampler, "set_begin_index"):
            sampler.set_begin_index(steps - run)
        x = sampler.add_noise(start, x, timesteps[:1].expand(batch))
    else:
        x = x * sampler.init_noise_sigma
    step_kwargs = {"eta": eta, "generator": generator} if scheduler == "ddim" else {"generator": generator}
    for t in timesteps:
        inp = sampler.scale_model_input(x, t)
        if both:
            pred = model(torch.cat([inp, inp]), torch.cat([masked, masked]), torch.cat([mask, mask]), tokens,
                         t.expand(2 * batch), None if hint is None else torch.cat([hint, torch.zeros_like(hint)]))
            cond_pred, uncond_pred = pred.chunk(2)
            pred = uncond_pred + guidance * (cond_pred - uncond_pred)
        else:
            pred = model(inp, masked, mask, tokens, t.expand(batch), hint)
        x = sampler.step(pred, t, x, **step_kwargs).prev_sample
    if not model.spec.latent:
        x = x.clamp(-1, 1)
    return mask * x + (1 - mask) * known


# --------------------------------------------------------------------------------------------- conversions
def resize_square(array: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """``array`` (H×W or H×W×C) resized to ``size``×``size``: nearest for masks, area to shrink, linear to enlarge."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    shrink = array.shape[0] > size or array.shape[1] > size
    interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.resize(array, (size, size), interpolation=interpolation)


def to_tensor(array: np.ndarray, size: int | None = None) -> Tensor:
    """uint8 image(s) ``[B×]H×W×3`` → ``B×3×S×S`` float32 in [-1, 1]; bool mask(s) ``[B×]H×W`` → ``B×1×S×S`` in
    {0, 1}. ``size`` resizes to ``S×S`` (area/linear for images, nearest for masks); default: keep the size."""
    array = np.asarray(array)
    is_mask = array.dtype == bool
    if is_mask:
        items = array[None] if array.ndim == 2 else array
        if items.ndim != 3:
            raise GeneratorError(f"to_tensor: a mask must be H×W or B×H×W, got shape {array.shape}")
    else:
        if array.dtype != np.uint8:
            raise GeneratorError(f"to_tensor: an image must be uint8 (got {array.dtype}); convert it with "
                                 f"paintseg.data.raster.to_uint8, and pass masks as bool arrays")
        items = array[None] if array.ndim == 3 else array
        if items.ndim != 4 or items.shape[-1] != 3:
            raise GeneratorError(f"to_tensor: an image must be H×W×3 or B×H×W×3 uint8, got shape {array.shape}")
    if size is not None:
        items = np.stack([resize_square(np.ascontiguousarray(a, np.uint8), size, is_mask) for a in items])
    if is_mask:
        return torch.from_numpy(items.astype(np.float32) > 0.5).float()[:, None].contiguous()
    return (torch.from_numpy(items.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1).contiguous()


def to_uint8(tensor: Tensor, size: int | None = None) -> np.ndarray:
    """``[B×]3×H×W`` in [-1, 1] → uint8 ``B×H×W×3`` (``size``: resized to ``S×S``; from ``B×1×H×W`` masks: bool
    ``B×H×W``)."""
    x = tensor.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise GeneratorError(f"to_uint8: expected B×3×H×W images or B×1×H×W masks, got {tuple(tensor.shape)}")
    if x.shape[1] == 1:
        masks = (x[:, 0] > 0.5).numpy().astype(np.uint8)
        if size is not None:
            masks = np.stack([resize_square(m, size, True) for m in masks])
        return masks.astype(bool)
    images = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if size is not None:
        images = np.stack([resize_square(im, size, False) for im in images])
    return np.ascontiguousarray(images)
