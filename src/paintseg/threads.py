"""How many CPU threads torch uses: chosen from the cores and how busy they are, unless the user says.

torch's default is one intra-op thread per core. That is the fastest choice on an idle machine, and a bad one on a
busy one: when other processes already keep cores busy, the threads of one operation wait for each other.
``benchmarks/threads.py`` measured a Unet-resnet18 training step (batch 8, crop 128) on 2 cores: idle, 2 threads
0.45 s and 1 thread 0.82 s; beside one busy process 1 thread 1.11 s and 2 threads 1.48 s; beside two, 1.43 s and
1.93 s (benchmarks/results/threads.json). So paintseg's heavy commands call
:func:`configure_threads` before they start, which

- keeps what the user set: ``PAINTSEG_THREADS``, else ``OMP_NUM_THREADS`` (torch reads it itself);
- otherwise measures how many cores other processes keep busy (system CPU use over a quarter second, before
  paintseg starts its own work) and uses the cores left, at least one: ``max(1, cores - round(busy cores))``.

The choice is printed with the command's other set-up lines and recorded in results.json (``environment``).
"""

from __future__ import annotations

import os

import psutil

SAMPLE_SECONDS = 0.25
chosen: dict | None = None  # what the last configure_threads() call chose, for results.json


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores' worth of CPU the machine spent over the next ``seconds`` (all processes)."""
    return psutil.cpu_percent(interval=seconds) / 100 * (psutil.cpu_count() or 1)


def choose_threads(cores: int, busy: float) -> int:
    """Intra-op threads for ``cores`` cores of which ``busy`` are kept busy by other work: the free cores, >= 1."""
    return max(1, min(cores, cores - int(round(busy))))


def configure_threads() -> dict:
    """Set torch's intra-op threads (see the module docstring); returns what was chosen and why."""
    global chosen
    import torch

    cores = os.cpu_count() or 1
    for variable in ("PAINTSEG_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "").strip()
        if value:
            try:
                threads = max(1, int(value))
            except ValueError:
                from paintseg.errors import PaintsegError

                raise PaintsegError(f"{variable}={value!r} is not a number of threads; set it to e.g. 1 or "
                                    f"{cores}, or unset it to let paintseg choose") from None
            torch.set_num_threads(threads)
            chosen = {"threads": threads, "cores": cores, "reason": f"{variable}={value}"}
            return chosen
    busy = busy_cores()
    threads = choose_threads(cores, busy)
    torch.set_num_threads(threads)
    chosen = {"threads": threads, "cores": cores, "busy_cores": round(busy, 2),
              "reason": f"{busy:.1f} of {cores} cores busy with other work"}
    return chosen
