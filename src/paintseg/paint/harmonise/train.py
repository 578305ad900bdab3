"""Train the harmoniser on an episode's own scenes (``paintseg harmoniser train``).

``train_harmoniser(episode, out, config)`` fills the HARM folder ``out``::

    HARM/
      config.yaml           {"harmoniser": HarmoniserConfig, "episode": path, "split": ..., "seed": ...}
      log.jsonl             one line per step: {"step", "loss", "lr", "seconds"}
      checkpoints/last.pt   weights, optimizer, LR schedule, step; every checkpoint_every steps
      harmoniser.pt         the weights + config + the held-out scores below
      samples.png           held-out pairs, one row each: composite | harmonised | real
      train_summary.json    steps, seconds/step, parameters, peak RSS, and the held-out scores:
                            L1 error (0-255 scale) on the object (+ border) of the composite (= copy-paste) and of
                            the harmonised window, and the share of the composite's error removed

The loss is the L1 error on the pixels the harmoniser may change (the object mask, grown by the border if one is
set). AdamW, linear warm-up, cosine decay; pairs depend only on ``(seed, step)``, so a resumed run ends with an
uninterrupted run's weights. Under ``accelerate launch`` it trains with DDP as the other trainers do
(:mod:`paintseg.distributed`: each process on its rows of the global batch, process 0 alone writes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paintseg import __version__
from paintseg.config import HarmoniserConfig
from paintseg.data.episode import Episode
from paintseg import distributed
from paintseg.errors import PaintsegError
from paintseg.files import save_png
from paintseg.runs import (TrainingLoop, finish_run, lr_factor, open_run, restore_checkpoint, say, step_batches,
                           write_summary)

from .data import HarmonyBatch, HarmonyPairs
from .model import MODEL_FILE, Harmoniser, save_harmoniser

log = logging.getLogger(__name__)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "validation_pairs", "keep_checkpoint")


class HarmoniserTrainError(PaintsegError):
    """A harmoniser run that cannot be started or resumed as asked."""


def region_l1(pred: torch.Tensor, target: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the pixels of ``region`` (B×1×H×W), per image (B)."""
    err = (pred - target).abs().mean(1, keepdim=True) * region
    return err.flatten(1).sum(1) / region.flatten(1).sum(1).clamp(min=1)


@torch.no_grad()
def held_out_scores(model: Harmoniser, pairs: HarmonyBatch, chunk: int = 16) -> dict[str, Any]:
    """The composite's and the harmonised window's L1 error on the changeable region (0-255 scale)."""
    device = model.mean.device
    before, after = [], []
    for i in range(0, pairs.mask.shape[0], chunk):
        c, m, t = (x[i : i + chunk].to(device) for x in (pairs.composite, pairs.mask, pairs.target))
        region = model.region(m)
        before.append(region_l1(c, t, region))
        after.append(region_l1(model(c, m), t, region))
    b, a = torch.cat(before).cpu().numpy() * 255, torch.cat(after).cpu().numpy() * 255
    return {"pairs": int(b.size), "l1_composite": round(float(b.mean()), 3), "l1_harmonised": round(float(a.mean()), 3),
            "error_removed": round(float(1 - a.mean() / max(b.mean(), 1e-9)), 4),
            "pairs_improved": round(float((a < b).mean()), 4)}


@torch.no_grad()
def write_samples(model: Harmoniser, pairs: HarmonyBatch, path: Path, rows: int = 8) -> Path:
    device = model.mean.device
    c, m, t = (x[:rows].to(device) for x in (pairs.composite, pairs.mask, pairs.target))
    panels = [c, model(c, m), t]
    side, gap = c.shape[-1], 2
    grid = np.full((len(c) * (side + gap) + gap, len(panels) * (side + gap) + gap, 3), 255, np.uint8)
    for j, panel in enumerate(panels):
        images = (panel.permute(0, 2, 3, 1).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
        for i, image in enumerate(images):
            y, x = gap + i * (side + gap), gap + j * (side + gap)
            grid[y : y + side, x : x + side] = image
    return save_png(path, grid)


def train_harmoniser(episode: Episode, out: str | Path, config: HarmoniserConfig, resume: bool = False,
                     progress: bool = True, device: str | None = None) -> Path:
    """Train a :class:`Harmoniser`; returns the path of ``harmoniser.pt`` (see the module doc for the folder)."""
    out = Path(out)
    record = {"harmoniser": config.model_dump(mode="json"), "episode": str(episode.root.resolve()),
              "split": episode.split, "seed": config.seed, "paintseg_version": __version__}
    rank, world, barrier = distributed.processes()
    rows = distributed.share(config.batch, rank, world)  # this process's slice of every global batch
    main = rank == 0
    opened = open_run(out, record, config.steps, resume, ("episode", "split"), "harmoniser", RESUMABLE_CHANGES,
                      HarmoniserTrainError, "harmoniser", model_file=MODEL_FILE, model=HarmoniserConfig)
    model_path = out / MODEL_FILE
    if opened is None:
        say(log, f"{model_path}: already trained for {config.steps} steps; nothing to do", progress and main)
        return model_path
    start, checkpoint = opened
    device = device or distributed.device()
    pairs = HarmonyPairs.from_episode(episode, config, progress=progress and main)
    torch.manual_seed(config.seed)
    model = distributed.sync_batchnorm(Harmoniser(config)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.steps))
    if checkpoint is not None:
        restore_checkpoint(checkpoint, model, optimizer, scheduler, config.warmup_steps, config.steps)
    net = distributed.data_parallel(model)  # DDP with several processes; `model` stays the unwrapped one
    say(log, f"training harmoniser ({config.encoder}, {model.num_parameters / 1e6:.2f} M parameters, "
         f"{config.crop} px) on {device} for steps {start}..{config.steps} into {out}; {pairs.describe()}",
        progress and main)
    def loss_of(step: int, batch: HarmonyBatch) -> torch.Tensor:
        batch = batch[rows].to(device)
        return region_l1(net(batch.composite, batch.mask), batch.target, model.region(batch.mask)).mean()

    net.train()
    loop = TrainingLoop(out, model, optimizer, scheduler, start, config.steps, config.checkpoint_every,
                        "train harmoniser", progress, main, grad_clip=1.0, shown=lambda value: f"{value * 255:.2f}")
    losses = loop.run(step_batches(pairs, start), loss_of)
    if not main:
        barrier()  # the first process scores and writes the harmoniser
        return model_path
    wall = loop.wall
    model.eval()
    validation = pairs.validation(config.validation_pairs)
    scores = held_out_scores(model, validation)
    write_samples(model, validation, out / "samples.png")
    save_harmoniser(model, config, out, record=record, step=config.steps, scores=scores)
    summary = write_summary(out, config.steps, start, wall, losses, device, world,
                            final_loss_l1_255=round(255 * sum(losses[-20:]) / len(losses[-20:]), 3) if losses else None,
                            held_out=scores, parameters=model.num_parameters, encoder=config.encoder)
    finish_run(out, config.keep_checkpoint)
    say(log, f"harmoniser written to {model_path} ({summary['seconds_per_step']} s/step); held-out L1 "
         f"{scores['l1_composite']:.2f} (copy-paste) -> {scores['l1_harmonised']:.2f}", progress)
    barrier()
    return model_path
