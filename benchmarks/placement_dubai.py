"""Placement quality on Dubai without training: the fit rate of the context (label) prior vs uniform placement.

For seeds 0..2 and each prior, `paintseg place` plans 30 building placements on the Dubai episode (the same split as
configs/dubai.yaml) and measures their fit rate (paintseg.evaluate.placement): the share of (placement, random spot)
pairs where the placement's surroundings look more like a real query building's than the random spot's do; 0.5 is no
better than random. Writes benchmarks/results/placement_dubai.json.

    python benchmarks/placement_dubai.py          # about a minute
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"
WORK = REPO / "benchmarks" / "work" / "placement_dubai"


def main() -> None:
    ps = [sys.executable, "-m", "paintseg"]
    episode = WORK / "episode"
    if not (episode / "val.json").is_file():
        subprocess.run(ps + ["split", "--images", str(DUBAI / "*" / "images" / "*.jpg"), "--labels",
                             str(DUBAI / "*" / "masks" / "*.png"), "--classes", str(DUBAI / "classes-paintseg.json"),
                             "--novel", "building", "--group", r"Tile \d+", "--tile", "512", "--shots", "5",
                             "--seed", "0", "--out", str(episode)], check=True, stdout=subprocess.DEVNULL)
    rows = {}
    for prior in ("context", "uniform"):
        rates = []
        for seed in (0, 1, 2):
            out = WORK / f"{prior}-s{seed}"
            cmd = ps + ["place", str(episode), "--out", str(out), "--per-class", "30", "--prior", prior, "--seed",
                        str(seed)]
            if not (out / "placement_quality.json").is_file():
                print("$ " + shlex.join(cmd), flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rates.append(json.loads((out / "placement_quality.json").read_text())["building"]["fit_rate"])
        rows[prior] = {"fit_rates": rates, "mean": round(statistics.fmean(rates), 3),
                       "std": round(statistics.stdev(rates), 3)}
        print(f"{prior:8s} fit rate {rows[prior]['mean']:.2f} ± {rows[prior]['std']:.2f} (seeds {rates})")
    result = {"benchmark": "placement_dubai", "command": "python benchmarks/placement_dubai.py",
              "date": str(date.today()), "placements_per_seed": 30, "priors": rows}
    out = REPO / "benchmarks" / "results" / "placement_dubai.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
