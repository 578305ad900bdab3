"""Train the exemplar-conditioned inpainting model on an episode's own scenes (self-supervised).

``train_generator(episode, out, config)`` fills the GEN folder ``out``::

    GEN/
      config.yaml              {"generator": GeneratorConfig, "episode": path, "split": ..., "seed": ...}
      log.jsonl                one line per step: {"step", "loss", "lr", "seconds"}
      checkpoints/last.pt      weights, EMA weights, optimizer, LR schedule, step, RNG; every checkpoint_every steps
      samples/step_NNNNNN.png  every sample_every steps: one row per validation pair, reference | masked window |
                               painted (EMA weights) | target
      model_index.json, unet/, scheduler/, reference_encoder/
                               the EMA weights, model spec, noise schedule and config in the diffusers layout
                               (save_generator / load_generator; folders from before hold model.pt instead)
      train_summary.json       steps, wall seconds, training seconds, seconds/step, final loss, peak RSS, parameters
      budget.json              with ``minutes``: the measured seconds/step and the steps the budget buys (fixed once)
      snapshots/step_NNNNNN/   with ``snapshots``: the EMA weights after half, a quarter, ... of the steps, each a GEN
                               folder that paints, with snapshot.json {"step", "train_seconds", "torch_threads"}

The recipe: DDPM noise (1000 steps, squaredcos_cap_v2), MSE on ε or v (optionally min-SNR-γ weighted across noise
levels), the reference replaced by the null embedding for ``cond_drop`` of the pairs, AdamW with linear warm-up and
cosine decay, gradient clipping, an EMA of the weights.

A budget in ``minutes`` instead of ``steps``: the first steps run on the schedule of ``steps`` (warm-up) while their
seconds are measured (:data:`MEASURE` steps after :data:`WARM`), then the run fixes how many steps its budget buys,
writes ``budget.json`` and lays the cosine decay over them; a resumed run reads ``budget.json`` and continues to the
same step, so the budget is spent once and the schedule does not move.
Every file is written to a temporary name and renamed; pairs and noise depend only on ``(seed, step)``, so a killed
run resumed from ``checkpoints/last.pt`` ends with the weights of an uninterrupted one.

Under ``accelerate launch`` (N processes) it trains with DDP (:mod:`paintseg.distributed`): every process trains on
its ``batch / N`` rows of the step's global batch and noise, so N processes follow one step for step (the model has
no BatchNorm); process 0 alone writes the folder.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from paintseg import __version__
from paintseg.config import GeneratorConfig
from paintseg.data.episode import Episode
from paintseg import distributed
from paintseg.errors import PaintsegError
from paintseg.files import save_png, write_text
from paintseg.runs import (TrainingLoop, finish_run, lay_schedule, lr_factor, open_run, restore_checkpoint, say,
                           step_batches, write_summary)

from .data import PairBatch, PairSampler
from .latent import POOL_FILE, LatentPairSampler
from .model import AUTOENCODER, INDEX, PaintModel, build_generator, save_generator
from .sample import paint, to_uint8

log = logging.getLogger(__name__)

# Settings that may change when a run is resumed: they do not change the weights of the steps done so far.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "sample_every", "sample_count", "sample_steps",
                     "sample_guidance", "num_workers", "keep_checkpoint", "snapshots")
WARM, MEASURE = 3, 20  # a budget's seconds/step: the mean of MEASURE steps after the first WARM of a process
BUDGET = "budget.json"
SNAPSHOTS = "snapshots"
NOISE_TAG = 9_999_991  # second seed word of the per-step noise / timesteps / reference drops


class GeneratorTrainError(PaintsegError):
    """A generator run that cannot be started or resumed as asked; the message says what to pass instead."""


class EMA:
    """Exponential moving average of a model's floating-point weights, with the usual warm-up
    (decay ``min(ema_decay, (1 + n) / (10 + n))`` at update ``n``) so that short runs are not stuck near the
    initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value.detach(), 1 - decay)
            else:
                self.shadow[key].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
        self.updates = int(state["updates"])


# --------------------------------------------------------------------------------------------- helpers
def _record(episode: Episode, config: GeneratorConfig) -> dict[str, Any]:
    return {"generator": config.model_dump(mode="json"), "episode": str(episode.root.resolve()),
            "split": episode.split, "seed": config.seed, "paintseg_version": __version__}


def step_noise(config: GeneratorConfig, step: int, batch: PairBatch, num_timesteps: int,
               device: str | torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Noise, timesteps and reference drops of training step ``step`` (they depend only on seed and step)."""
    generator = torch.Generator().manual_seed(int(np.random.default_rng([config.seed, NOISE_TAG, step])
                                                  .integers(2**62)))
    size = batch.target.shape[0]
    noise = torch.randn(tuple(batch.target.shape), generator=generator)
    high = max(1, int(round(num_timesteps * config.max_strength)))  # painting at strength s starts below s*T
    t = torch.randint(0, high, (size,), generator=generator)
    drop = torch.rand(size, generator=generator) < config.cond_drop
    return noise.to(device), t.to(device), drop.to(device)


class TrainingStep(torch.nn.Module):
    """The reference encoding and the denoising pass of one training step as one module, so that DDP sees every
    trained weight used inside its forward."""

    def __init__(self, model: PaintModel):
        super().__init__()
        self.model = model

    def forward(self, noisy: Tensor, masked: Tensor, mask: Tensor, reference: Tensor, ref_mask: Tensor,
                drop: Tensor, t: Tensor, hint: Tensor | None) -> Tensor:
        tokens = self.model.encode_reference(reference, ref_mask, drop)
        if hint is not None:
            hint = hint * (~drop).view(-1, 1, 1, 1)  # dropped with the tokens
        return self.model(noisy, masked, mask, tokens, t, hint)


def weighted_mse(pred: Tensor, wanted: Tensor, mask: Tensor, mask_weight: float,
                 pair_weight: Tensor | None = None) -> Tensor:
    """MSE with the pixels under the inpaint mask weighted ``mask_weight`` (1: the plain MSE); with ``pair_weight``
    (one per pair, e.g. :func:`snr_weights`) each pair's mean error is scaled by it before the batch mean."""
    if mask_weight == 1 and pair_weight is None:
        return torch.nn.functional.mse_loss(pred, wanted)
    weight = 1 + (mask_weight - 1) * mask
    if pair_weight is None:
        return ((pred - wanted).square() * weight).sum() / (weight.sum() * pred.shape[1])
    weight = weight.expand_as(pred)
    per_pair = ((pred - wanted).square() * weight).flatten(1).sum(1) / weight.flatten(1).sum(1)
    return (per_pair * pair_weight).mean()


def snr_weights(alphas_cumprod: Tensor, t: Tensor, gamma: float, prediction_type: str) -> Tensor:
    """Min-SNR-γ weights (Hang et al., ICCV 2023) of timesteps ``t``: min(SNR, γ) / (SNR + 1) for a v target,
    min(SNR, γ) / SNR for ε; SNR = ᾱ / (1 - ᾱ). Low-noise steps, whose target is nearly the noise itself, count
    less."""
    ac = alphas_cumprod.to(t.device)[t].float()
    snr = ac / (1 - ac)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


def snapshot_steps(total: int, count: int) -> list[int]:
    """The steps before ``total`` whose EMA weights ``count`` snapshots keep: total/2, total/4, ... (the last of the
    ``count`` points is the finished generator itself)."""
    return sorted({max(1, total >> k) for k in range(1, count)} - {total})


def read_budget(out: Path) -> dict | None:
    """``GEN/budget.json`` (what a ``minutes`` budget was measured to buy), or None before it is written."""
    path = Path(out) / BUDGET
    return json.loads(path.read_text()) if path.is_file() else None


def write_sample_grid(model: PaintModel, pairs: PairBatch, config: GeneratorConfig, path: Path,
                      autoencoder=None) -> Path:
    """Paint ``pairs`` with ``model`` and write one row per pair: reference | masked | painted | target (a latent
    painter's latents decoded by ``autoencoder``: the target as the autoencoder renders it, the masked cells grey)."""
    generator = torch.Generator().manual_seed(config.seed)
    device = next(model.parameters()).device
    pairs = pairs.to(device)
    painted = paint(model, pairs.masked, pairs.mask, pairs.reference, pairs.ref_mask, steps=config.sample_steps,
                    guidance=config.sample_guidance, scheduler="ddim", generator=generator, hint=pairs.hint if model.spec.hint else None)
    masked, target = pairs.masked, pairs.target
    if model.spec.latent:
        with torch.inference_mode():
            decode = lambda z: autoencoder.decode(model.denormalise(z))  # noqa: E731
            painted, target = decode(painted), decode(target)
        pixel_mask = torch.nn.functional.interpolate(pairs.mask, scale_factor=target.shape[-1] // pairs.mask.shape[-1])
        masked = target * (1 - pixel_mask)
    size = target.shape[-1]
    shown_ref = pairs.reference * (0.6 + 0.4 * pairs.ref_mask)  # darken what lies outside the object mask
    panels = [to_uint8(shown_ref, size), to_uint8(masked), to_uint8(painted), to_uint8(target)]
    gap = 2
    rows, cols = pairs.target.shape[0], len(panels)
    grid = np.full((rows * (size + gap) + gap, cols * (size + gap) + gap, 3), 255, np.uint8)
    for i in range(rows):
        for j, panel in enumerate(panels):
            y, x = gap + i * (size + gap), gap + j * (size + gap)
            grid[y : y + size, x : x + size] = panel[i]
    return save_png(path, grid)


def _fix_budget(config: GeneratorConfig, done: int, train_seconds: float, measured: list[float],
                world: int) -> dict[str, Any]:
    """How many steps ``config.minutes`` buy, from the mean seconds of the measured steps (after the first WARM; the
    same figure in every process, so all stop at the same step)."""
    timed = measured[WARM:] or measured
    per_step = distributed.mean(sum(timed) / len(timed))
    left = max(0.0, config.minutes * 60 - distributed.mean(train_seconds))
    steps = min(config.steps, done + int(left / per_step))
    return {"minutes": config.minutes, "steps": steps, "seconds_per_step": round(per_step, 5),
            "measured_steps": len(timed), "fixed_at_step": done, "capped": steps == config.steps,
            "torch_threads": torch.get_num_threads(), "processes": world}


def _snapshot(model: PaintModel, ema: EMA, config: GeneratorConfig, record: dict[str, Any], out: Path, step: int,
              train_seconds: float) -> Path:
    """Write the EMA weights at ``step`` as the GEN folder ``out/snapshots/step_NNNNNN`` (with snapshot.json)."""
    folder = out / SNAPSHOTS / f"step_{step:06d}"
    write_text(folder / "snapshot.json", json.dumps({"step": step, "train_seconds": round(train_seconds, 3),
                                                     "torch_threads": torch.get_num_threads()}) + "\n")
    return save_generator(model, ema.shadow, config, folder, record=record, step=step, autoencoder=out / AUTOENCODER)


def _latent_sampler(pixels: PairSampler, config: GeneratorConfig, out: Path, device: str, progress: bool,
                    main: bool, barrier) -> tuple[LatentPairSampler, Any]:
    """Copy the autoencoder into ``GEN/autoencoder/``, load it and encode the pool of training windows (process 0
    encodes and writes ``GEN/latents.pt``; the others read it)."""
    from paintseg.files import sha256

    from ..autoencoder import copy_autoencoder, load_autoencoder

    copied = all((out / AUTOENCODER / name).is_file() for name in ("encoder.pth", "decoder.pth"))
    if main and not copied:  # a resumed run keeps the copy it started with
        copy_autoencoder(Path(config.autoencoder), out / AUTOENCODER)
    barrier()
    autoencoder = load_autoencoder(out / AUTOENCODER, device)
    ident = sha256(out / AUTOENCODER / "encoder.pth")[:16]
    if main:
        sampler = LatentPairSampler(pixels, autoencoder, out / POOL_FILE, progress, ident)
    barrier()
    if not main:
        sampler = LatentPairSampler(pixels, autoencoder, out / POOL_FILE, False, ident)
    return sampler, autoencoder


# --------------------------------------------------------------------------------------------- training
def train_generator(episode: Episode, out: str | Path, config: GeneratorConfig, resume: bool = False,
                    progress: bool = True, device: str | None = None) -> Path:
    """Train a :class:`PaintModel` on the episode's trainset + support scenes; returns the path of
    ``model_index.json``.

    ``resume=True`` continues from ``checkpoints/last.pt`` (and returns at once when the finished folder holds
    ``config.steps``); the config must match the run's ``config.yaml`` except for ``RESUMABLE_CHANGES``.
    ``device`` defaults to CUDA when available.
    """
    out = Path(out)
    if config.space == "latent" and not (out / AUTOENCODER / "encoder.pth").is_file():
        from ..autoencoder import load_autoencoder

        load_autoencoder(Path(config.autoencoder))  # a missing or wrong file is named before anything is written
    # a GEN folder finished before the diffusers layout holds model.pt only: it stays finished
    model_file = "model.pt" if (out / "model.pt").is_file() and not (out / INDEX).is_file() else INDEX
    model_path = out / model_file
    record = _record(episode, config)

    rank, world, barrier = distributed.processes()
    rows = distributed.share(config.batch, rank, world)  # this process's slice of every global batch
    main = rank == 0
    budget = read_budget(out) if config.minutes and resume else None
    total = budget["steps"] if budget else config.steps  # with minutes: the cap until the budget is measured
    opened = open_run(out, record, total, resume, ("episode", "split"), "generator", RESUMABLE_CHANGES,
                      GeneratorTrainError, "generator", model_file=model_file, model=GeneratorConfig)
    if opened is None:
        say(log, f"{model_path}: already trained for {total} steps; nothing to do", progress and main)
        return model_path
    start, checkpoint = opened
    if budget is not None and checkpoint is None:
        budget = None  # killed before its first checkpoint: the run starts over and measures again
        total = config.steps
    device = device or distributed.device()

    sampler = PairSampler.from_episode(episode, config, progress=progress and main)
    autoencoder, latent_channels, cache_seconds = None, None, 0.0
    if config.space == "latent":  # encode the training windows once (GEN/latents.pt), read the latent scale
        sampler, autoencoder = _latent_sampler(sampler, config, out, device, progress and main, main, barrier)
        latent_channels, cache_seconds = sampler.latent_channels, sampler.seconds
    torch.manual_seed(config.seed)
    model = build_generator(config, latent_channels).to(device)
    ema_model = build_generator(config, latent_channels).to(device).eval()  # the EMA weights for sample grids
    if autoencoder is not None:
        mean, std = sampler.scale()
        model.set_latent_scale(mean.to(device), std.to(device))
        sampler.bind(model)
    validation = sampler.validation(config.sample_count)
    ema = EMA(model, config.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, total))
    # training time so far (sample grids and snapshots excluded), over resumes; a latent painter's first encoding of
    # its training windows counts (it is compute the painter needs, as much as its steps)
    train_seconds = 0.0 if autoencoder is None or sampler.reused else cache_seconds
    if checkpoint is not None:
        restore_checkpoint(checkpoint, model, optimizer, scheduler, config.warmup_steps, total)
        ema.load_state_dict(checkpoint["ema"])
        train_seconds = float(checkpoint.get("train_seconds", 0.0))
    snapshots = snapshot_steps(total, config.snapshots) if budget or not config.minutes else []
    noise_scheduler = model.noise_scheduler()
    num_timesteps = noise_scheduler.config.num_train_timesteps
    net = distributed.data_parallel(TrainingStep(model))  # DDP with several processes

    shared = f"; {world} processes, {config.batch // world} of each batch of {config.batch} each" if world > 1 else ""
    until = f"{total}" if budget or not config.minutes else f"as many as {config.minutes:g} min buy (<= {total})"
    say(log, f"training generator {config.size!r} ({model.num_parameters / 1e6:.2f} M parameters, "
         f"{model.spec.resolution} px, {config.prediction_type}) on {device} for steps {start}..{until} "
         f"into {out}; {sampler.describe()}{shared}", progress and main)
    if autoencoder is not None:
        say(log, f"latent painter: diffusion on {model.spec.channels_out}x{model.spec.sample_size}x"
                 f"{model.spec.sample_size} latents of {model.spec.resolution}-px windows; pixels from the "
                 f"autoencoder in {out / AUTOENCODER}", progress and main)
    alphas_cumprod = noise_scheduler.alphas_cumprod
    measured: list[float] = []  # seconds of this process's steps, until the budget is fixed
    loop = TrainingLoop(out, model, optimizer, scheduler, start, total, config.checkpoint_every, "train generator",
                        progress, main, grad_clip=config.grad_clip, train_seconds=train_seconds,
                        checkpoint_extra=lambda: {"ema": ema.state_dict(), "train_seconds": loop.train_seconds})
    grid_seconds = snapshot_seconds = 0.0

    def loss_of(step: int, batch: PairBatch) -> torch.Tensor:
        noise, t, drop = step_noise(config, step, batch, num_timesteps, "cpu")  # of the whole global batch
        batch, noise, t, drop = (x[rows].to(device) for x in (batch, noise, t, drop))
        noisy = noise_scheduler.add_noise(batch.target, noise, t)
        wanted = noise if config.prediction_type == "epsilon" else \
            noise_scheduler.get_velocity(batch.target, noise, t)
        pred = net(noisy, batch.masked, batch.mask, batch.reference, batch.ref_mask, drop, t,
                   batch.hint if model.spec.hint else None)
        weights = None if config.snr_gamma is None else \
            snr_weights(alphas_cumprod, t, config.snr_gamma, config.prediction_type)
        return weighted_mse(pred, wanted, batch.mask, config.mask_weight, weights)

    def fix_budget(done: int, seconds: float) -> None:
        """A minutes budget: after its first measured steps, fix the steps it buys and lay the schedule over them."""
        nonlocal budget, snapshots
        if not config.minutes or budget is not None:
            return
        measured.append(seconds)
        spent = loop.train_seconds >= config.minutes * 60
        if len(measured) >= WARM + MEASURE or spent or done == loop.total:
            budget = _fix_budget(config, done, loop.train_seconds, measured, world)
            loop.total = loop.bar.total = budget["steps"]
            lay_schedule(scheduler, config.warmup_steps, loop.total)
            snapshots = [s for s in snapshot_steps(loop.total, config.snapshots) if s > done]
            if main:
                write_text(out / BUDGET, json.dumps(budget, indent=1) + "\n")

    def grids_and_snapshots(done: int) -> bool:
        """Sample grids and snapshots (process 0; not training time): True when either was written."""
        nonlocal grid_seconds, snapshot_seconds
        worked = False
        if main and (done % config.sample_every == 0 or done == loop.total):
            grid_start = time.perf_counter()
            ema_model.load_state_dict(ema.shadow)
            write_sample_grid(ema_model, validation, config, out / "samples" / f"step_{done:06d}.png", autoencoder)
            grid_seconds += time.perf_counter() - grid_start
            worked = True
        if main and done in snapshots:
            snapshot_start = time.perf_counter()
            _snapshot(model, ema, config, record, out, done, loop.train_seconds)
            snapshot_seconds += time.perf_counter() - snapshot_start
            worked = True
        return worked

    model.train()
    losses = loop.run(step_batches(sampler, start), loss_of, after_update=lambda: ema.update(model),
                      after_log=fix_budget, extra_work=grids_and_snapshots)
    total, train_seconds, wall = loop.total, loop.train_seconds, loop.wall

    if not main:
        barrier()  # the first process writes the generator
        return model_path
    model_path = save_generator(model, ema.shadow, config, out, record=record, step=total,
                                autoencoder=out / AUTOENCODER if autoencoder is not None else None)
    summary = write_summary(out, total, start, wall, losses, device, world,
                            seconds=wall - grid_seconds - snapshot_seconds, train_seconds=round(train_seconds, 3),
                            minutes=config.minutes, sample_grid_seconds=round(grid_seconds, 3),
                            snapshot_seconds=round(snapshot_seconds, 3), parameters=model.num_parameters,
                            size=config.size, resolution=model.spec.resolution, space=config.space,
                            latent_cache_seconds=round(cache_seconds, 3) if autoencoder is not None else None)
    finish_run(out, config.keep_checkpoint)
    if not config.keep_checkpoint:
        (out / POOL_FILE).unlink(missing_ok=True)  # the encoded training windows go with the resume state
    say(log, f"generator written to {model_path} ({summary['seconds_per_step']} s/step)", progress)
    barrier()
    return model_path
