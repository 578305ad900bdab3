"""What several processes buy on this machine, and whether they change the results.

Two measurements, each once with one process (all cores as torch threads) and once under
``accelerate launch --multi_gpu --num_processes N`` (torchrun; over gloo on a machine without GPUs; the cores shared
out, ``OMP_NUM_THREADS = cores / N``):

- ``paintseg demo --quick``: ``run``'s stages dealt out to the processes; wall time, and whether results.json is the
  same (:func:`paintseg.experiment.run.outcome`: everything but times, machine and command line) as that of one
  process with the threads each of the N processes had (the same computation) and as that of one process on every
  core (torch's CPU kernels sum in an order that depends on the thread count, so this one may differ in the last
  digits);
- ``paintseg train`` on the demo episode (Unet-resnet18, batch 8, crop 128): DDP, each process on 8 / N crops of
  every batch; seconds per step and the mean loss of the last 10 steps.

    python benchmarks/processes.py              # ~7 min on 2 CPU cores -> benchmarks/results/processes.json

On a GPU machine the same script measures N GPUs (one per process).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int, cores: int) -> float:
    """Run ``paintseg ARGS`` in ``processes`` processes sharing ``cores`` cores; returns the wall seconds."""
    threads = str(max(1, cores // processes))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "PAINTSEG_THREADS": threads}
    head = [sys.executable, "-m", "paintseg"] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
        str(_port()), "-m", "paintseg"]
    start = time.perf_counter()
    done = subprocess.run(head + args, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(args)} with {processes} process(es) failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    from paintseg.experiment.summary import outcome

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "processes.json")
    a = parser.parse_args()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="paintseg-processes-"))
    result = {"benchmark": "processes", "date": date.today().isoformat(), "cores": cores,
              "processes": a.processes, "command": "python benchmarks/processes.py" + (
                  f" --processes {a.processes}" if a.processes != 2 else "") + (
                  f" --train-steps {a.train_steps}" if a.train_steps != 30 else "")}
    try:
        import torch

        result["device"] = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "cpu"
        # (1, cores): one process, every core; (N, cores): N processes sharing them; (1, cores / N): one process
        # with the threads each of the N has, i.e. the very computation of every stage of the N-process run
        demo = {}
        for n, c in ((1, cores), (a.processes, cores), (1, max(1, cores // a.processes))):
            exp = work / f"demo-{n}-{c}"
            seconds = launch(["demo", "--quick", "--out", str(exp), "--no-progress"], n, c)
            demo[n, c] = (seconds, json.loads((exp / "results.json").read_text()))
            print(f"demo --quick, {n} process(es), {max(1, c // n)} thread(s) each: {seconds:.1f} s", flush=True)
        one, many, alike = (demo[k][1] for k in ((1, cores), (a.processes, cores), (1, max(1, cores // a.processes))))

        def novel(results: dict) -> list[float]:
            return [r["metrics"]["novel_miou"] for r in results["runs"]]

        result["demo_quick"] = {
            "seconds_1": round(demo[1, cores][0], 1), f"seconds_{a.processes}": round(demo[a.processes, cores][0], 1),
            "speedup": round(demo[1, cores][0] / demo[a.processes, cores][0], 2),
            "same_results_as_1_process_same_threads": outcome(many) == outcome(alike),
            "same_results_as_1_process_all_cores": outcome(many) == outcome(one),
            "max_novel_miou_difference_all_cores": round(max(abs(x - y) for x, y in zip(novel(one), novel(many))), 3),
            "runs": len(one["runs"]), "stages": len(one["stages"])}

        episode = next((work / f"demo-1-{cores}" / "stages").glob("episode-*")) / "episode"
        train = {}
        for n in (1, a.processes):
            run = work / f"train-{n}"
            launch(["train", str(episode), "--out", str(run), "--steps", str(a.train_steps), "--batch", "8",
                    "--crop", "128"], n, cores)
            summary = json.loads((run / "train_summary.json").read_text())
            train[n] = {"seconds_per_step": summary["seconds_per_step"], "final_loss": summary["final_loss"],
                        "threads_per_process": summary["torch_threads"]}
            print(f"train unet-resnet18 batch 8 crop 128, {n} process(es): {summary['seconds_per_step']} s/step, "
                  f"final loss {summary['final_loss']}", flush=True)
        result["train"] = {"steps": a.train_steps, **{str(n): v for n, v in train.items()},
                           "speedup": round(train[1]["seconds_per_step"] / train[a.processes]["seconds_per_step"], 2)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    d, t = result["demo_quick"], result["train"]
    print(f"demo --quick: {d['seconds_1']} s in 1 process, {d[f'seconds_{a.processes}']} s in {a.processes} "
          f"(x{d['speedup']}); same results.json as 1 process with the same threads: "
          f"{d['same_results_as_1_process_same_threads']}; as 1 process on all cores: "
          f"{d['same_results_as_1_process_all_cores']} (novel mIoU differs by up to "
          f"{d['max_novel_miou_difference_all_cores']})")
    print(f"train: x{t['speedup']} per step with {a.processes} processes")
    print(f"produced by: {result['command']}  ->  {shlex.quote(str(a.out.relative_to(REPO)))}")


if __name__ == "__main__":
    main()
