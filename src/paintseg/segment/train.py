"""Train a segmentation model on base + novel classes together (generalised few-shot).

``train(episode, out, config)`` fills the RUN folder ``out``::

    RUN/
      config.yaml             {"train": TrainConfig, "episode": path, "split": ..., "synthetic": [paths], "seed": ...}
      classes.json            the episode's ClassMap (channel i predicts label value i)
      log.jsonl               one line per step: {"step", "loss", "lr", "seconds"}
      checkpoints/last.pt     model, optimizer, scheduler, step, RNG state; every checkpoint_every steps and at the end
      model.pt                {"state_dict", "arch", "encoder", "num_classes", "crop", "rgb_bands", ...} at the end
      train_summary.json      steps, wall seconds, seconds/step, final loss, peak RSS

Every file is written to a temporary name and renamed, so a killed run leaves only complete files and resumes from
``checkpoints/last.pt`` (``resume=True``) with exactly the batches and weights an uninterrupted run would have had.

Under ``accelerate launch`` (N processes) the model trains with DDP (:mod:`paintseg.distributed`): ``batch`` is the
global batch, each process trains on its ``batch / N`` rows of it, BatchNorm is synchronised across GPUs (on CPUs
each process normalises its own rows), and process 0 alone writes the folder; the model loads in one process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from paintseg import distributed
from paintseg.errors import PaintsegError
from paintseg.runs import (TrainingLoop, finish_run, lr_factor, open_run, restore_checkpoint, save_torch, say,
                           step_batches, write_summary)

from .. import __version__
from ..config import TrainConfig, encoder_problem
from ..data.classes import IGNORE, ClassMap
from ..data.episode import Episode
from .data import TrainingSampler
from paintseg.networks import Segmenter, build_model

log = logging.getLogger(__name__)

# Settings that may change when a run is resumed: they do not change the trained weights of the steps done so far.
RESUMABLE_CHANGES = ("steps", "num_workers", "checkpoint_every", "keep_checkpoint")


class TrainError(PaintsegError):
    """A run that cannot be started or resumed as asked; the message says what to pass instead."""


def _record(episode: Episode, config: TrainConfig, synthetic: Sequence[Path]) -> dict[str, Any]:
    return {"train": config.model_dump(mode="json"), "episode": str(episode.root.resolve()),
            "split": episode.split, "synthetic": [str(Path(s).resolve()) for s in synthetic],
            "seed": config.seed, "paintseg_version": __version__}


def train(episode: Episode, out: str | Path, config: TrainConfig, synthetic: Sequence[str | Path] = (),
          resume: bool = False, progress: bool = True, device: str | None = None) -> Path:
    """Train ``config.arch``/``config.encoder`` on the episode's trainset + support set (+ synthetic sets).

    Writes the RUN folder ``out`` (see the module docstring) and returns the path of ``model.pt``. ``resume=True``
    continues from ``checkpoints/last.pt`` (and returns at once when ``model.pt`` already holds ``config.steps``);
    the config must match the saved one except for ``steps``, ``num_workers`` and ``checkpoint_every``.
    ``device`` defaults to CUDA when available.
    """
    out = Path(out)
    synthetic = [Path(s) for s in synthetic]
    model_path = out / "model.pt"
    record = _record(episode, config, synthetic)
    rank, world, barrier = distributed.processes()
    rows = distributed.share(config.batch, rank, world)  # this process's slice of every global batch
    main = rank == 0

    problem = encoder_problem(config.encoder, config.encoder_weights)
    if problem is not None:  # checked, like the images and synthetic sets below, before anything is written
        raise TrainError(problem)
    # the sampler reads every image, and checks them before anything is written; only a folder that may hold a
    # finished run (model.pt) is opened first, so that resuming it does not read the images for nothing
    finished = resume and model_path.is_file()
    sampler = None if finished else TrainingSampler(episode, config, synthetic, progress=progress and main)
    opened = open_run(out, record, config.steps, resume, ("episode", "split", "synthetic"), "train",
                      RESUMABLE_CHANGES, TrainError, "model", model=TrainConfig)
    if opened is None:
        say(log, f"{model_path}: already trained for {config.steps} steps; nothing to do", progress and main)
        return model_path
    sampler = sampler or TrainingSampler(episode, config, synthetic, progress=progress and main)
    start, checkpoint = opened
    device = device or distributed.device()
    if main:
        episode.classes.save(out / "classes.json")

    num_classes = episode.classes.num_classes
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.encoder, num_classes,
                        encoder_weights=None if checkpoint else config.encoder_weights)
    # channels_last: faster steps for the Lite0 Unet on a CPU (benchmarks/train_speed.py: x1.19, losses equal to
    # 2e-3 relative after 4 steps; benchmarks/results/train_speed.json)
    model = distributed.sync_batchnorm(model).to(device, memory_format=torch.channels_last)
    encoder = list(model.net.encoder.parameters())
    ids = {id(p) for p in encoder}
    groups = [{"params": encoder, "lr": config.lr * config.encoder_lr_scale},
              {"params": [p for p in model.parameters() if id(p) not in ids], "lr": config.lr}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.steps))
    if checkpoint is not None:
        restore_checkpoint(checkpoint, model, optimizer, scheduler, config.warmup_steps, config.steps)
    net = distributed.data_parallel(model)  # DDP with several processes; `model` stays the unwrapped one

    weight = None
    if config.class_weights == "inverse-sqrt":
        weight = torch.from_numpy(sampler.class_weights()).to(device)
    cross_entropy = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    dice = DiceLoss("multiclass", ignore_index=IGNORE) if config.dice_weight > 0 else None

    shared = f"; {world} processes, {config.batch // world} of each batch of {config.batch} each" if world > 1 else ""
    say(log, f"training {config.arch}/{config.encoder} ({num_classes} channels) on {device} for steps "
         f"{start}..{config.steps} into {out}; {sampler.describe()}{shared}", progress and main)
    def loss_of(step: int, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        images = batch[0][rows].to(device).contiguous(memory_format=torch.channels_last)
        labels = batch[1][rows].to(device)
        logits = net(images)
        if not (labels != IGNORE).any():  # every pixel of the batch is ignore: nothing to learn from it
            return logits.sum() * 0.0
        loss = cross_entropy(logits, labels)
        return loss + config.dice_weight * dice(logits, labels) if dice is not None else loss

    net.train()
    loop = TrainingLoop(out, model, optimizer, scheduler, start, config.steps, config.checkpoint_every, "train",
                        progress, main)
    losses = loop.run(step_batches(sampler, start), loss_of)
    wall = loop.wall

    if main:
        save_torch({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "arch": config.arch,
                    "encoder": config.encoder, "num_classes": num_classes, "crop": config.crop,
                    "rgb_bands": config.rgb_bands, "learn_background": config.learn_background,
                    "step": config.steps, "classes": episode.classes.to_dict(), "paintseg_version": __version__},
                   model_path)
        summary = write_summary(out, config.steps, start, wall, losses, device, world)
        finish_run(out, config.keep_checkpoint)
        say(log, f"model written to {model_path} ({summary['seconds_per_step']} s/step)", progress)
    barrier()  # the model is written before any process returns
    return model_path


def load_model(run: str | Path, device: str | None = None) -> tuple[Segmenter, ClassMap, dict[str, Any]]:
    """The trained model of a RUN folder (in eval mode), its ClassMap and the rest of ``model.pt`` as ``meta``."""
    run = Path(run)
    model_path = run / "model.pt"
    if not model_path.is_file():
        hint = (" Training stopped before the end: run `paintseg train` again with --resume and the same --out to "
                "finish it." if (run / "checkpoints" / "last.pt").exists() else
                " Train one with `paintseg train EPISODE --out RUN`.")
        raise TrainError(f"{run}: no model.pt in this run folder.{hint}")
    meta = torch.load(model_path, map_location="cpu", weights_only=True)
    state = meta.pop("state_dict")
    model = build_model(meta["arch"], meta["encoder"], int(meta["num_classes"]), encoder_weights=None)
    model.load_state_dict(state)
    classes_path = run / "classes.json"
    classes = ClassMap.load(classes_path) if classes_path.is_file() else ClassMap.from_dict(meta["classes"])
    return model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval(), classes, meta
