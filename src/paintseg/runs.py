"""What every training run folder shares: the training loop, the step batches, atomic writes, the step log, the
resume check, the LR schedule.

The trainers (segmentation RUN folders, generator GEN folders, the harmoniser) open their folder with
:func:`open_run` (refusing to resume with settings that would change the weights), draw each step's batch with
:func:`step_batches` and train in one :class:`TrainingLoop` - step, budget, checkpoint, log - filling in only their
loss (and, for the generator, what happens after a step: EMA, a minutes budget, sample grids, snapshots); the
fine-tuning of a pretrained pipeline runs in the same loop with accelerate's backward, clipping, gathered loss and
state saving in place of the plain ones. Every file
is written to a temporary name and renamed, ``log.jsonl`` is kept in step with the last checkpoint, and the learning
rate warms up linearly before a cosine decay.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm

from paintseg.files import write_text


def save_torch(obj: Any, path: Path) -> None:
    """torch.save to a temporary name in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def keep_log(path: Path, upto: int) -> None:
    """Drop log lines past ``upto`` (steps a killed run did after its last checkpoint; they are redone)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= upto:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):  # a line cut short by the kill
            continue
    write_text(path, "".join(line + "\n" for line in keep))


def config_differences(saved: dict[str, Any], new: dict[str, Any], keys: Sequence[str], section: str,
                       resumable: Sequence[str], model: type | None = None) -> list[str]:
    """What differs between a run's recorded settings and a new request: the top-level ``keys`` and every field of
    ``section`` (the fields of the config class ``model``) except the ``resumable`` ones (those that do not change the
    weights of the steps already done). A field added later (:func:`paintseg.config.later`) that the run did not
    record counts as its default."""
    from paintseg.config import added_later

    out = [f"{key}: run has {saved.get(key)!r}, now {new[key]!r}" for key in keys if saved.get(key) != new[key]]
    neutral = added_later(model) if model is not None else {}
    old_cfg, new_cfg = {**neutral, **saved.get(section, {})}, {**neutral, **new[section]}
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if key not in resumable and old_cfg.get(key) != new_cfg.get(key):
            out.append(f"{key}: run has {old_cfg.get(key)!r}, now {new_cfg.get(key)!r}")
    return out


def lr_factor(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak learning rate, then cosine decay to zero at ``total`` steps."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / max(1, total - warmup), 1.0)))

    return factor


def lay_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, warmup: int, total: int) -> None:
    """Lay the warm-up + cosine schedule over ``total`` steps from the scheduler's current step on, and set the
    learning rate of the next step accordingly (a resumed run, or a budget fixed part-way through a run)."""
    factor = lr_factor(warmup, total)
    scheduler.lr_lambdas = [factor] * len(scheduler.optimizer.param_groups)
    for group, base_lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base_lr * factor(scheduler.last_epoch)


def checkpoint_state(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, **extra: Any) -> dict[str, Any]:
    """What ``checkpoints/last.pt`` holds: weights, optimizer, LR schedule, step and RNG states (plus ``extra``, e.g.
    the generator's EMA weights)."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None, **extra}


def restore_checkpoint(checkpoint: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: torch.optim.lr_scheduler.LambdaLR, warmup: int, steps: int) -> None:
    """Load what :func:`checkpoint_state` saved; the learning rate continues on the schedule for ``steps`` (which
    may have changed since the checkpoint)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    lay_schedule(scheduler, warmup, steps)
    torch.set_rng_state(checkpoint["torch_rng"])
    if torch.cuda.is_available() and checkpoint.get("cuda_rng") is not None:
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])


def log_step(log_file, bar, step: int, loss: float, lr: float, since: float, shown: str) -> float:
    """Append training step ``step``'s line to ``log.jsonl`` ({"step", "loss", "lr", "seconds"}) and advance the
    progress bar (``shown``: the loss as the bar prints it); returns the time now, the next step's ``since``."""
    now = time.perf_counter()
    if log_file is not None:  # None: a process other than the first of a multi-process run
        log_file.write(json.dumps({"step": step, "loss": round(loss, 6), "lr": lr,
                                   "seconds": round(now - since, 4)}) + "\n")
        log_file.flush()
    bar.update(1)
    bar.set_postfix(loss=shown)
    return now


def write_summary(out: Path, steps: int, start: int, wall: float, losses: Sequence[float], device: Any,
                  processes: int, seconds: float | None = None, **extra: Any) -> dict[str, Any]:
    """Write ``out/train_summary.json`` of a finished training and return it: the fields every trainer records
    (steps reached, where this call resumed from, wall and per-step seconds - of ``seconds`` when only part of the
    wall time was training - the mean of the last 10 losses, device, processes, threads, peak memory), then the
    trainer's own ``extra`` fields."""
    ran = steps - start
    summary = {"steps": steps, "resumed_from": start, "steps_this_run": ran, "wall_seconds": round(wall, 3),
               "seconds_per_step": round((wall if seconds is None else seconds) / ran, 4) if ran else None,
               "final_loss": round(sum(losses[-10:]) / len(losses[-10:]), 6) if losses else None,
               "last_loss": losses[-1] if losses else None, "device": str(device), "processes": processes, "torch_threads": torch.get_num_threads(),
               "peak_rss_mb": round(peak_rss_mb(), 1), **extra}
    write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def say(log: logging.Logger, message: str, progress: bool) -> None:
    """Log a message, and show it above the progress bar when there is one."""
    log.info(message)
    if progress:
        tqdm.write(message, file=sys.stderr)


def open_run(out: Path, record: dict[str, Any], steps: int, resume: bool, keys: Sequence[str], section: str,
             resumable: Sequence[str], error: type[Exception], what: str,
             model_file: str = "model.pt", model: type | None = None) -> tuple[int, dict | None] | None:
    """Open a run folder for training: refuse to start over a run without ``resume``, refuse to resume with settings
    that would change the weights, load ``checkpoints/last.pt``, record ``config.yaml`` and cut ``log.jsonl`` back to
    the checkpoint. Returns ``(start step, checkpoint or None)``, or None when ``model.pt`` already holds ``steps``.
    ``error`` is the trainer's error class, ``what`` names what the folder holds ("model", "generator") and
    ``model_file`` the finished weights' file name, ``model`` the config class of ``record[section]``. In a
    multi-process run (:mod:`paintseg.distributed`) every process
    checks and loads, the first alone writes, and none returns before all have checked."""
    from paintseg.distributed import processes

    rank, _, barrier = processes()
    opened = _open_run(out, record, steps, resume, keys, section, resumable, error, what, model_file, rank == 0,
                       model)
    barrier()  # every process has checked the folder before the first one writes into it
    return opened


def _open_run(out: Path, record: dict[str, Any], steps: int, resume: bool, keys: Sequence[str], section: str,
              resumable: Sequence[str], error: type[Exception], what: str, model_file: str,
              write: bool, model: type | None) -> tuple[int, dict | None] | None:
    from paintseg.config import dump_yaml

    ckpt_path, model_path = out / "checkpoints" / "last.pt", out / model_file
    log_path, config_path = out / "log.jsonl", out / "config.yaml"
    if not resume and (ckpt_path.exists() or model_path.exists()):
        raise error(f"{out}: this folder already holds a trained or partly trained {what}; pass --resume "
                    f"to continue it, or a new --out folder to start another run")
    if resume and config_path.exists():
        import yaml

        diffs = config_differences(yaml.safe_load(config_path.read_text()) or {}, record, keys, section, resumable,
                                   model)
        if diffs:
            raise error(f"{out}: cannot resume, the config differs from the run's config.yaml (only "
                        f"{', '.join(resumable)} may change): " + "; ".join(diffs)
                        + ". Pass the run's settings or a new --out folder")
    start, checkpoint = 0, None
    if resume and ckpt_path.exists():
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        start = int(checkpoint["step"])
        if start > steps:
            raise error(f"{ckpt_path}: the run is already at step {start}, past steps={steps}; pass steps >= "
                        f"{start} to continue it, or a new --out folder")
        if start == steps and model_path.exists():
            return None
    elif resume and model_path.exists():  # a finished run whose resume checkpoint was dropped (keep_checkpoint off)
        done = trained_steps(model_path)
        if done == steps:
            return None
        raise error(f"{model_path}: the run finished at step {done} and its resume checkpoint was dropped "
                    f"(keep_checkpoint is off), so it cannot continue to steps={steps}; pass steps={done}, or a new "
                    f"--out folder (train with --keep-checkpoint to be able to continue a finished run)")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(record, config_path)
        if checkpoint is None and log_path.exists():
            log_path.unlink()  # a run killed before its first checkpoint starts over
        keep_log(log_path, start)
    return start, checkpoint


def trained_steps(model_path: Path) -> int | None:
    """The step count a finished run's ``model.pt`` (or a GEN folder's ``model_index.json``) records (None when it
    records none)."""
    if model_path.suffix == ".json":
        step = json.loads(model_path.read_text()).get("paintseg", {}).get("step")
        return None if step is None else int(step)
    step = torch.load(model_path, map_location="cpu", weights_only=True, mmap=True).get("step")
    return None if step is None else int(step)


def unfinished_hint(file: Path, command: str, out: str) -> str:
    """What to say when a trained model's file is missing: finish the run (a checkpoint is there) or train one."""
    if (file.parent / "checkpoints" / "last.pt").exists():
        return (f" Training stopped before the end: run `paintseg {command}` again with --resume and the same --out "
                f"to finish it.")
    return f" Train one with `paintseg {command} EPISODE --out {out}`."


def finish_run(out: Path, keep_checkpoint: bool) -> None:
    """After ``model.pt`` is written: drop ``checkpoints/`` (the resume state, about three times the size of the
    model with its optimizer moments) unless ``keep_checkpoint``."""
    if not keep_checkpoint:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)


# --------------------------------------------------------------------------------------------- the loop
class _StepBatches(torch.utils.data.Dataset):
    def __init__(self, sampler: Any, start: int, steps: int):
        self.sampler, self.start, self.steps = sampler, start, steps

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return self.start + index, self.sampler.batch(self.start + index)


def _as_is(item: Any) -> Any:
    return item


def step_batches(sampler: Any, start: int = 0, steps: int | None = None,
                 workers: int | None = None) -> Iterator[tuple[int, Any]]:
    """``(step, sampler.batch(step))`` for steps ``start .. steps - 1`` (default: ``sampler.config.steps``),
    prepared by ``workers`` processes (default: ``sampler.config.num_workers``). A batch depends on its step alone,
    so a resumed run draws exactly the batches an uninterrupted one would have."""
    config = sampler.config
    workers = getattr(config, "num_workers", 0) if workers is None else workers
    loader = torch.utils.data.DataLoader(_StepBatches(sampler, start, config.steps if steps is None else steps),
                                         batch_size=None, shuffle=False, num_workers=workers, collate_fn=_as_is,
                                         prefetch_factor=2 if workers else None)
    for step, batch in loader:
        yield int(step), batch


class TrainingLoop:
    """The loop every trainer runs, from step ``start`` to ``total``: per step the trainer's loss, backward, gradient
    clipping (``grad_clip`` > 0), the optimizer and LR-schedule steps, the loss averaged over processes, a line of
    ``log.jsonl`` and the progress bar, and ``checkpoints/last.pt`` every ``checkpoint_every`` steps and at the end
    (process 0 writes; ``checkpoint_extra()`` adds the trainer's own state). ``train_seconds`` counts the time of the
    steps (carried over from a checkpoint by the trainer), not the extra work a trainer reports having done after a
    step; ``total`` may be changed by the trainer during the run (a minutes budget fixed after its first steps).

    A trainer whose framework owns part of the step (accelerate: its backward, its gradient clipping, its gathered
    loss, its collective state saving) gives those as ``backward``, ``clip``, ``reduce`` and ``save`` (called on every
    process after each step, in place of the built-in checkpoint)."""

    def __init__(self, out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, start: int, total: int, checkpoint_every: int,
                 desc: str, progress: bool, main: bool, grad_clip: float = 0.0,
                 shown: Callable[[float], str] = lambda value: f"{value:.4f}",
                 checkpoint_extra: Callable[[], dict[str, Any]] = dict, train_seconds: float = 0.0,
                 backward: Callable[[torch.Tensor], None] | None = None, clip: Callable[[], None] | None = None,
                 reduce: Callable[[torch.Tensor], float] | None = None, save: Callable[[int], None] | None = None):
        self.out, self.model, self.optimizer, self.scheduler = Path(out), model, optimizer, scheduler
        self.start, self.total, self.checkpoint_every, self.grad_clip = start, total, checkpoint_every, grad_clip
        self.desc, self.progress, self.main, self.shown = desc, progress, main, shown
        self.checkpoint_extra, self.train_seconds = checkpoint_extra, train_seconds
        self.backward, self.clip, self.reduce, self.save = backward, clip, reduce, save
        self.losses: list[float] = []
        self.wall = 0.0
        self.bar: tqdm | None = None

    def run(self, batches: Iterable[tuple[int, Any]], loss_of: Callable[[int, Any], torch.Tensor],
            after_update: Callable[[], None] | None = None,
            after_log: Callable[[int, float], None] | None = None,
            extra_work: Callable[[int], bool] | None = None) -> list[float]:
        """Train on ``batches`` (``(step, batch)``, e.g. :func:`step_batches`) with ``loss_of(step, batch)``.
        ``after_update()`` runs after the optimizer step (an EMA), ``after_log(done, seconds)`` after the step is
        logged (it may set ``total``), ``extra_work(done)`` after the checkpoint (returns True when it did work that
        is not training time: sample grids, snapshots). Returns the losses of the steps run."""
        from paintseg import distributed

        wall_start = last = time.perf_counter()
        self.bar = bar = tqdm(total=self.total, initial=self.start, desc=self.desc, unit="step",
                              disable=not (self.progress and self.main))
        checkpoint = self.out / "checkpoints" / "last.pt"
        with (open(self.out / "log.jsonl", "a") if self.main else nullcontext()) as log_file, bar:
            for step, batch in batches:
                if step >= self.total:
                    break
                loss = loss_of(step, batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.backward(loss) if self.backward is not None else loss.backward()
                if self.clip is not None:
                    self.clip()
                elif self.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                self.optimizer.step()
                lr = self.optimizer.param_groups[-1]["lr"]
                self.scheduler.step()
                if after_update is not None:
                    after_update()
                done = step + 1
                value = self.reduce(loss) if self.reduce is not None else distributed.mean(float(loss.detach()))
                self.losses.append(value)
                previous, last = last, log_step(log_file, bar, done, value, lr, last, self.shown(value))
                self.train_seconds += last - previous
                if after_log is not None:
                    after_log(done, last - previous)
                if self.save is not None:
                    self.save(done)
                elif self.main and (done % self.checkpoint_every == 0 or done == self.total):
                    save_torch(checkpoint_state(done, self.model, self.optimizer, self.scheduler,
                                                **self.checkpoint_extra()), checkpoint)
                if extra_work is not None and extra_work(done):
                    last = time.perf_counter()  # that work is not training time
                if done >= self.total:
                    break
        self.wall = time.perf_counter() - wall_start
        return self.losses

