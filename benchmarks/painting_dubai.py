"""Painting quality on Dubai's held-out query tiles: every painting backend on the same tests (a thin driver).

Runs `paintseg painting-quality` (paintseg.evaluate.painting) on the Dubai experiment's episode with copy-paste,
colour-matched copy-paste, the harmoniser (plain and on the colour-matched paste) and the SDEdit
generators of the strength sweep and the spatial-hint generator (benchmarks/synthetic_seeds.py; those not trained
yet are skipped) - and, for
every generator, 4 held-out query instances per class painted back from the true, a wrong and no reference
(paintseg.evaluate.conditioning) - and writes
benchmarks/results/painting_dubai.json and painting_dubai.png (the first held-out tests as each backend paints them).

    OMP_NUM_THREADS=1 python benchmarks/painting_dubai.py                  # a few minutes per generator
    OMP_NUM_THREADS=1 python benchmarks/painting_dubai.py --conditioning 0 # without the conditioning test
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

from paintseg.paint.diffusion.model import is_generator

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work"
RESULTS = REPO / "benchmarks" / "results"


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conditioning", type=int, default=4, help="held-out instances per class for the "
                    "conditioning test of every generator (0: off)")
    args = ap.parse_args()
    exp = WORK / "experiment_dubai" / "stages"
    episode = next(p for p in sorted(exp.glob("episode-*")) if (p / "stage.json").is_file()) / "episode"
    sweep = WORK / "synthetic_seeds_dubai"
    generator = next(p for p in sorted(exp.glob("generator-*")) if is_generator(p))
    specs = ["copy-paste", "copy-paste:match"]
    if (sweep / "harm" / "harmoniser.pt").is_file():
        specs += [str(sweep / "harm"), str(sweep / "harm") + ":match"]
    for name, strength in (("gen_s03", "0.3"), ("gen_hint_s03", "0.3"), ("gen_s05", "0.5"), ("gen_s07", "0.7")):
        if is_generator(sweep / name):
            specs.append(f"{sweep / name}@{strength}")
    specs.append(f"{generator}@1.0")
    out = RESULTS / "painting_dubai.json"
    cmd = [sys.executable, "-m", "paintseg", "painting-quality", str(episode), "--out", str(out), "--per-class", "48",
           "--figure", str(RESULTS / "painting_dubai.png"), "--samples", "6", "--conditioning", str(args.conditioning)]
    for spec in specs:
        cmd += ["--generator", spec]
    print("$ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    quality = json.loads(out.read_text())

    def short(spec: str) -> str:
        return spec.replace(str(REPO) + "/", "")

    threads = os.environ.get("OMP_NUM_THREADS")
    quality = {"benchmark": "painting_dubai", "date": str(date.today()),
               "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python benchmarks/painting_dubai.py"
               + ("" if args.conditioning == 4 else f" --conditioning {args.conditioning}"),
               "paintseg_command": short(shlex.join(cmd[2:])), **quality}
    quality["backends"] = {short(k): v for k, v in quality["backends"].items()}
    quality["records"] = {short(k): v for k, v in quality["records"].items()}
    quality["against"] = short(quality["against"])
    quality["paired"] = {short(k): v for k, v in quality["paired"].items()}
    quality["conditioning"] = {short(k): v for k, v in (quality.get("conditioning") or {}).items()}
    training = {}  # how each backend's model trained: seconds per step (its own train_summary.json), steps, size
    for spec in specs:
        folder = Path(spec.split("@")[0].removesuffix(":match"))
        summary = folder / "train_summary.json"
        if summary.is_file():
            t = json.loads(summary.read_text())
            training[short(str(folder))] = {k: t.get(k) for k in ("steps", "seconds_per_step", "parameters",
                                                                 "torch_threads", "resolution", "encoder")}
    quality["training"] = training
    out.write_text(json.dumps(quality, indent=1) + "\n")
    for name, row in quality["backends"].items():
        wins = quality["paired"].get(name)
        print(f"{name:70s} ΔE {row['delta_e']:6.2f}  Δspread {row['delta_l_std']:6.2f}  hist {row['hist']:.3f}  "
              f"{row['seconds_per_test']:.2f} s/test" + (f"  closer than copy-paste {wins['wins']}/{wins['tests']}"
                                                         f" (p {wins['p']})" if wins else ""))
    print(f"written {out}")


if __name__ == "__main__":
    main()
