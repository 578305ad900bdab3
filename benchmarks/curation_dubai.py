"""Curation on Dubai's held-out query tiles (novel = building): a thin driver over paintseg.evaluate.curation.

1. mask quality (``mask_quality``): every refiner (none, grabcut; sam with --sam-checkpoint) recovers real query
   buildings from the pipeline's rectangle inpaint mask around them; IoU with the true instance, s/instance;
2. filter quality (``filter_quality``): the generator paints K candidates into each held-out test window; every
   encoder (handcrafted, efficientnet-lite0, generator:GEN) in both score modes (window, region) picks one, and is
   judged by what its pick gains over a random one: the class probe's probability (``painting.ClassProbe``) and
   the colour distance to the image's real buildings;
3. curation through the CLI on the generator benchmark's painted set (benchmarks/generator_dubai.py; run it first):
   `paintseg curate` with a few settings - kept placements, rejection reasons and seconds per stage.

Writes benchmarks/results/curation_dubai.json (with the exact command).

    OMP_NUM_THREADS=2 python benchmarks/curation_dubai.py             # ~15 min with the experiment's generator
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generator_dubai import finished, short  # noqa: E402

CURATIONS = {  # name: `paintseg curate` options
    "none": ["--filter", "none", "--keep", "all", "--refine", "none"],
    "handcrafted-top50-grabcut": ["--filter", "handcrafted", "--keep", "top:0.5", "--refine", "grabcut"],
    "lite0-top50-grabcut": ["--filter", "efficientnet-lite0", "--keep", "top:0.5", "--refine", "grabcut"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episode", type=Path, help="episode folder (default: the Dubai experiment's)")
    ap.add_argument("--generator", type=Path, help="GEN folder (default: the Dubai experiment's)")
    ap.add_argument("--instances", type=int, default=200, help="query buildings for mask quality")
    ap.add_argument("--tests", type=int, default=24, help="held-out test windows for filter quality")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps")
    ap.add_argument("--sam-checkpoint", type=Path, help="also measure the SAM refiner with this checkpoint")
    args = ap.parse_args()

    from paintseg.curate.refine import build_refiner
    from paintseg.curate.score import build_encoder
    from paintseg.data.episode import Episode
    from paintseg.evaluate.curation import filter_quality, mask_quality
    from paintseg.config import CurateConfig, PaintConfig
    from paintseg.paint.diffusion.backend import DiffusionBackend
    from paintseg.place.references import extract_references

    stages = WORK / "experiment_dubai" / "stages"
    episode_dir = args.episode or finished(stages, "episode", "stage.json") / "episode"
    gen = args.generator or finished(stages, "generator", "stage.json")
    episode = Episode(episode_dir)
    seconds: dict[str, float] = {}

    start = time.time()
    refiners = {name: build_refiner(CurateConfig(refine=name)) for name in ("none", "grabcut")}
    if args.sam_checkpoint:
        refiners["sam"] = build_refiner(CurateConfig(refine="sam", sam_checkpoint=str(args.sam_checkpoint)))
    masks = mask_quality(episode, refiners, count=args.instances)
    seconds["mask_quality"] = round(time.time() - start, 1)
    print(json.dumps(masks["per_class"]), flush=True)

    start = time.time()
    encoders = {"handcrafted": build_encoder("handcrafted"), "efficientnet-lite0": build_encoder("efficientnet-lite0"),
                "generator": build_encoder(f"generator:{gen}")}
    backend = DiffusionBackend(gen, PaintConfig(steps=args.steps, strength=1.0), seed=0)
    filters = filter_quality(episode, backend, encoders, extract_references(episode), candidates=args.candidates,
                             tests=args.tests, modes=("window", "region"))
    filters.pop("records")
    seconds["filter_quality"] = round(time.time() - start, 1)

    painted = WORK / "generator_dubai" / "syn_generator"
    curation = {}
    if (painted / "candidates" / "manifest.jsonl").is_file():
        for name, options in CURATIONS.items():
            out = WORK / "curation_dubai" / name
            cmd = [sys.executable, "-m", "paintseg", "curate", str(painted), "--episode", str(episode_dir), "--out",
                   str(out), *options]
            if not (out / "curate_summary.json").is_file():
                print("$ " + shlex.join(cmd), flush=True)
                subprocess.run(cmd, check=True)
            summary = json.loads((out / "curate_summary.json").read_text())
            curation[name] = {"options": options, "placements": summary["placements"], "kept": summary["kept"],
                              "rejected": summary["rejected"], "seconds": summary.get("seconds")}
    else:
        print(f"{painted}: not painted yet; run benchmarks/generator_dubai.py first for the curation runs")

    threads = os.environ.get("OMP_NUM_THREADS")
    result = {"benchmark": "curation_dubai", "date": str(date.today()),
              "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python "
              + shlex.join(["benchmarks/curation_dubai.py", *sys.argv[1:]]),
              "episode": short(episode_dir), "generator": short(gen), "mask_quality": masks,
              "filter_quality": filters, "curation": curation, "stage_seconds": seconds}
    out = REPO / "benchmarks" / "results" / "curation_dubai.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    for cls, row in masks["per_class"].items():
        print(f"mask quality {cls}: " + ", ".join(f"{n} {v['iou']:.1f} %" for n, v in row.items()))
    for name, row in filters["filters"].items():
        print(f"filter {name:28s} p_class {row['p_class_gain']:+.3f}  ΔE {row['delta_e_gain']:+.2f}  "
              f"spearman {row['spearman_p_class']}  AUC {row['auc_probe']}")
    for name, row in curation.items():
        print(f"curate {name}: kept {row['kept']}/{row['placements']}")
    print(f"written {out}\ncommand: {result['command']}")


if __name__ == "__main__":
    main()
