"""What every training run folder shares: atomic writes, the step log, the resume check, the LR schedule.

Both trainers (segmentation RUN folders and generator GEN folders) write every file to a temporary name and rename it,
keep ``log.jsonl`` in step with the last checkpoint, refuse to resume with settings that would change the weights,
and warm up linearly before a cosine decay.
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
from pathlib import Path
from typing import Any, Callable, Sequence

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
