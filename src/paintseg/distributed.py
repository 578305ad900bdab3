"""Several processes (GPUs, machines) through accelerate: who am I, wait for the others, my share of a batch.

paintseg never starts processes itself: ``accelerate launch`` (or torchrun, or ``srun`` running either) starts N
copies of a command and sets ``WORLD_SIZE``/``RANK``; accelerate's :class:`~accelerate.PartialState` joins them
(NCCL on GPUs, gloo on CPUs). What each command does with them:

- ``generate`` shards its placements (every placement has its own seed, so the pixels do not depend on N);
- ``train`` and ``generator train`` train one model with DDP. ``batch`` stays the global batch: every process
  draws the step's whole batch (it depends only on seed and step) and trains on its ``batch / N`` slice, so N
  processes train on the very samples and noise one process would, and the learning-rate schedule is the same.
  Process 0 alone writes the log, checkpoints and the model; a resumed run loads the same checkpoint everywhere;
- ``run`` hands whole stages to processes (:func:`paintseg.experiment.run.run_experiment`); inside it every stage
  runs in one process (:func:`local`), so the results are those of a run in one process.

With one process every helper here is a no-op.
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Callable, ContextManager, Iterator, TypeVar

from paintseg.errors import PaintsegError

T = TypeVar("T")
_local = 0  # > 0 while inside local(): this process works alone


def world_size() -> int:
    """How many processes the launcher started (1 inside :func:`local`)."""
    return 1 if _local else max(1, int(os.environ.get("WORLD_SIZE", "1")))


def timeout() -> timedelta:
    """How long a process waits for the others at a barrier: ``PAINTSEG_DIST_TIMEOUT`` seconds, default 24 hours
    (torch's default, 10 or 30 minutes, is shorter than a stage of `paintseg run` that another process may be
    running meanwhile; a process that fails stops the others at once through the launcher anyway)."""
    value = os.environ.get("PAINTSEG_DIST_TIMEOUT", "").strip()
    try:
        return timedelta(seconds=float(value)) if value else timedelta(hours=24)
    except ValueError:
        raise PaintsegError(f"PAINTSEG_DIST_TIMEOUT={value!r} is not a number of seconds; set it to e.g. 86400, "
                            f"or unset it for 24 hours") from None


def process_state():
    """accelerate's PartialState of this process: gloo on CPUs (``cpu=True``; accelerate would otherwise see one
    process on a machine without GPUs), NCCL on GPUs (and the process's own GPU made the current one); barriers
    wait :func:`timeout`."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timeout())


def processes() -> tuple[int, int, Callable[[], None]]:
    """(this process's rank, the number of processes, a barrier) under `accelerate launch` or torchrun
    (WORLD_SIZE > 1), else — or inside :func:`local` — (0, 1, a no-op)."""
    if world_size() == 1:
        return 0, 1, lambda: None
    state = process_state()
    return state.process_index, state.num_processes, state.wait_for_everyone


def main_first() -> ContextManager:
    """A block the first process runs before the others (it writes what they then read)."""
    if world_size() == 1:
        return nullcontext()
    return process_state().main_process_first()


@contextmanager
def local() -> Iterator[None]:
    """Inside this block the commands of this process work alone (no sharding, no DDP), whatever the launcher
    started: ``paintseg run`` gives each process whole stages."""
    global _local
    _local += 1
    try:
        yield
    finally:
        _local -= 1


def device() -> str:
    """This process's device: its own GPU under a multi-GPU launch, else ``cuda`` when there is one, else ``cpu``."""
    import torch

    if world_size() > 1:
        return str(process_state().device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def share(batch: int, rank: int, world: int, what: str = "batch") -> slice:
    """The rows of a global batch of ``batch`` that process ``rank`` of ``world`` trains on."""
    if batch % world:
        raise PaintsegError(f"{what} {batch} cannot be split evenly over {world} processes; pass a {what} that "
                            f"is a multiple of {world} (it is the global batch, shared by all processes)")
    size = batch // world
    return slice(rank * size, (rank + 1) * size)


def mean(value: float) -> float:
    """The mean of ``value`` over all processes (the value itself with one process)."""
    if world_size() == 1:
        return value
    import torch
    import torch.distributed as dist

    state = process_state()
    t = torch.tensor([value], dtype=torch.float64, device=state.device)
    dist.all_reduce(t)
    return float(t.item()) / state.num_processes


def sync_batchnorm(model: T) -> T:
    """``model`` with BatchNorm statistics shared across the processes' GPUs (the weights and buffers are the
    same tensors). On CPUs (gloo) torch has no synchronised BatchNorm: each process normalises its own slice."""
    import torch

    if world_size() == 1 or not torch.cuda.is_available():
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def data_parallel(model: T) -> T:
    """``model`` wrapped for DDP by accelerate (its gradients averaged over the processes at every step); the model
    itself with one process. Build the optimizer on, and checkpoint, the unwrapped model."""
    if world_size() == 1:
        return model
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available()).prepare_model(model)
