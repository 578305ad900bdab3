"""Torch intra-op threads vs cores and load: the measurement behind paintseg.threads' default.

For every (other load, threads) pair, a fresh process trains smp Unet-resnet18 (batch 8, crop 128, from scratch,
the demo's kind of step) and reports the median seconds per step; "other load" is N busy-looping processes started
beside it (0 = idle). Then it checks that paintseg.threads.choose_threads picks the fastest thread count at every
load, and writes benchmarks/results/threads.json.

    python benchmarks/threads.py                 # ~3 min on 2 cores; run it on an otherwise idle machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEP = r"""
import sys, time, torch, segmentation_models_pytorch as smp
torch.set_num_threads(int(sys.argv[1])); torch.manual_seed(0)
steps, batch, crop = int(sys.argv[2]), 8, 128
model = smp.Unet("resnet18", encoder_weights=None, classes=6)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(batch, 3, crop, crop), torch.randint(0, 6, (batch, crop, crop))
times = []
for _ in range(steps):
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t)
print(" ".join(f"{s:.4f}" for s in times[2:]))
"""
SPIN = "import time\nend = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < end: pass\n"


def measure(threads: int, load: int, steps: int) -> dict:
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN, "600"]) for _ in range(load)]
    try:
        time.sleep(0.5 if load else 0)
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        out = subprocess.run([sys.executable, "-c", STEP, str(threads), str(steps)], env=env, check=True,
                             capture_output=True, text=True).stdout
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    times = [float(s) for s in out.split()]
    return {"threads": threads, "other_load": load, "steps_timed": len(times),
            "median_s_per_step": round(statistics.median(times), 4), "min_s_per_step": round(min(times), 4),
            "max_s_per_step": round(max(times), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="Steps per measurement (the first 2 are not timed).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "threads.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from paintseg.threads import choose_threads

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, max(1, cores // 2), cores})
    loads = sorted({0, max(1, cores // 2), cores})
    start = time.time()
    rows = []
    for load in loads:
        for threads in thread_counts:
            row = measure(threads, load, args.steps)
            rows.append(row)
            print(f"other load {load}  threads {threads}:  {row['median_s_per_step']:.3f} s/step "
                  f"(min {row['min_s_per_step']:.3f}, max {row['max_s_per_step']:.3f})", flush=True)
    verdict = []
    for load in loads:
        at = {r["threads"]: r["median_s_per_step"] for r in rows if r["other_load"] == load}
        best = min(at, key=at.get)
        chosen = choose_threads(cores, load)
        verdict.append({"other_load": load, "fastest_threads": best, "policy_threads": chosen,
                        "policy_s_per_step": at[chosen], "fastest_s_per_step": at[best],
                        "torch_default_s_per_step": at[cores],
                        "policy_vs_default_speedup": round(at[cores] / at[chosen], 2)})
        print(f"load {load}: fastest {best} thread(s); paintseg picks {chosen} "
              f"({at[cores] / at[chosen]:.2f}x the torch default of {cores})")
    result = {"benchmark": "threads", "command": "python benchmarks/threads.py", "date": str(date.today()),
              "machine": {"cpu_count": cores, "platform": platform.platform(), "python": platform.python_version()},
              "workload": "smp Unet-resnet18 training step, batch 8, crop 128, fp32", "rows": rows,
              "policy": verdict, "policy_matches_fastest": all(v["fastest_threads"] == v["policy_threads"]
                                                               for v in verdict),
              "wall_seconds": round(time.time() - start, 1)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"policy matches the fastest at every load: {result['policy_matches_fastest']}; written {args.out}")


if __name__ == "__main__":
    main()
