"""Baseline on real aerial data: Dubai (novel = building, 5 shots, split by tile), Unet-resnet18 from scratch.

Runs the whole user path through the `paintseg` CLI - split, data check, train, predict, evaluate - and writes
benchmarks/results/baseline_dubai.json with the metrics, the budget, the wall time of every stage and the exact
command. Re-running resumes: a finished stage is skipped, an interrupted training continues from its checkpoint.

    python benchmarks/baseline_dubai.py                 # the recorded budget (about 30 minutes on 2 CPU cores)
    python benchmarks/baseline_dubai.py --steps 20      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"


def _repo_relative(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else path


def run(cmd: list[str], timings: dict, stage: str) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    timings[stage] = round(time.time() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DUBAI, help="dubai_aerial folder (default: ../shared/data/...)")
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "baseline_dubai")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "baseline_dubai.json")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--class-weights", default="inverse-sqrt", choices=("inverse-sqrt", "none"))
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: Dubai data not found; pass --data PATH/TO/dubai_aerial")

    paintseg = [sys.executable, "-m", "paintseg"]
    tag = f"s{args.steps}_{args.class_weights}"
    episode, run_dir, pred = args.work / "episode", args.work / f"run_{tag}", args.work / f"pred_{tag}"
    timings: dict[str, float] = {}
    t0 = time.time()
    if not (episode / "val.json").is_file():
        run(paintseg + ["split", "--images", str(args.data / "*" / "images" / "*.jpg"),
                        "--labels", str(args.data / "*" / "masks" / "*.png"),
                        "--classes", str(args.data / "classes-paintseg.json"), "--novel", "building",
                        "--group", r"Tile \d+", "--tile", "512", "--shots", "5", "--seed", str(args.seed),
                        "--out", str(episode)], timings, "split")
    run(paintseg + ["data", "check", str(episode)], timings, "data_check")
    train_cmd = paintseg + ["train", str(episode), "--out", str(run_dir), "--arch", "unet", "--encoder", "resnet18",
                            "--steps", str(args.steps), "--batch", str(args.batch), "--crop", str(args.crop),
                            "--seed", str(args.seed), "--class-weights", args.class_weights]
    if (run_dir / "checkpoints").is_dir():
        train_cmd.append("--resume")
    run(train_cmd, timings, "train")
    run(paintseg + ["predict", str(run_dir), "--episode", str(episode), "--out", str(pred)], timings, "predict")
    metrics_path = args.work / f"metrics_{tag}.json"
    run(paintseg + ["evaluate", "--pred", str(pred), "--episode", str(episode), "--out", str(metrics_path)],
        timings, "evaluate")

    metrics = json.loads(metrics_path.read_text())
    train_summary = json.loads((run_dir / "train_summary.json").read_text())
    result = {
        "benchmark": "baseline_dubai",
        "command": (f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else "")
                   + "python " + shlex.join([_repo_relative(sys.argv[0])] + sys.argv[1:]),
        "model": {"arch": "unet", "encoder": "resnet18", "encoder_weights": None},
        "budget": {"steps": args.steps, "batch": args.batch, "crop": args.crop, "seed": args.seed,
                   "class_weights": args.class_weights},
        "metrics": {k: metrics[k] for k in ("per_class_iou", "base_miou", "novel_miou", "score")},
        "query_images": metrics.get("images"),
        "train": train_summary,
        "stage_seconds": timings,
        "wall_seconds": round(time.time() - t0, 1),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["metrics"], indent=1))
    print(f"results written to {args.out}")
    print("command: " + result["command"])


if __name__ == "__main__":
    main()
