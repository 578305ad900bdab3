"""The generator on Dubai's held-out query tiles (novel = building): a thin driver over the package's measures.

Every step is a `paintseg` command (printed and timed):

1. the generator: the Dubai experiment's (benchmarks/experiment.py; the default), a GEN folder given with
   --generator, or one trained here with `paintseg generator train --steps N` (--train N; resumes);
2. `paintseg painting-quality` on the experiment's episode with copy-paste and the generator (at --strength):
   colour distances and the class probe against copy-paste on the same held-out windows
   (paintseg.evaluate.painting); held-out instances of every class painted back from the true, a wrong and no
   reference, PSNR/SSIM per class (paintseg.evaluate.conditioning); what the handcrafted and EfficientNet-Lite0
   filters' picks among K candidates gain over a random pick (paintseg.evaluate.curation.filter_quality);
3. `paintseg generate` with the generator and with copy-paste at the experiment's placements budget: seconds per
   candidate, and the painted set's sample grid (reference | scene | K candidates | chosen | label).

Writes benchmarks/results/generator_dubai.json, generator_dubai_heldout.png (painting-quality samples),
generator_dubai_heldout_conditioning.png and generator_dubai_grid.png.

    OMP_NUM_THREADS=2 python benchmarks/generator_dubai.py                 # ~15 min with the experiment's generator
    OMP_NUM_THREADS=2 python benchmarks/generator_dubai.py --train 700     # train a `small` generator here first
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

from paintseg.paint.diffusion.model import is_generator

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "work"
RESULTS = REPO / "benchmarks" / "results"


def short(path: str | Path) -> str:
    return str(path).replace(str(REPO) + "/", "")


def finished(stages: Path, prefix: str, marker: str) -> Path:
    found = [p for p in sorted(stages.glob(f"{prefix}-*")) if (p / marker).exists()]
    if not found:
        raise SystemExit(f"{stages}: no finished {prefix} stage; run the Dubai experiment first "
                         f"(python benchmarks/experiment.py) or pass --episode/--generator")
    return found[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episode", type=Path, help="episode folder (default: the Dubai experiment's)")
    ap.add_argument("--generator", type=Path, help="GEN folder (default: the Dubai experiment's)")
    ap.add_argument("--train", type=int, default=0, help="train a `small` generator for N steps here instead")
    ap.add_argument("--strength", type=float, default=1.0, help="painting strength (1: from noise)")
    ap.add_argument("--tests", type=int, default=24, help="painting-quality tests per novel class")
    ap.add_argument("--conditioning", type=int, default=6, help="held-out instances per class, true/wrong/none")
    ap.add_argument("--candidates", type=int, default=4, help="candidates per test (filter quality) and placement")
    ap.add_argument("--per-class", type=int, default=16, help="placements of `paintseg generate`")
    ap.add_argument("--steps", type=int, default=20, help="DDIM steps")
    args = ap.parse_args()
    ps = [sys.executable, "-m", "paintseg"]
    work = WORK / "generator_dubai"
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def run(name: str, cmd: list[str]) -> None:
        print("$ " + shlex.join(cmd), flush=True)
        start = time.time()
        subprocess.run(cmd, check=True)
        seconds[name] = round(time.time() - start, 1)

    stages = WORK / "experiment_dubai" / "stages"
    episode = args.episode or finished(stages, "episode", "stage.json") / "episode"
    if args.train:
        gen = work / f"gen_small_s{args.train}"
        if not is_generator(gen):
            run("train", ps + ["generator", "train", str(episode), "--out", str(gen), "--size", "small", "--steps",
                               str(args.train)] + (["--resume"] if (gen / "checkpoints").is_dir() else []))
    else:
        gen = args.generator or finished(stages, "generator", "stage.json")
    spec = f"{gen}@{args.strength}" if args.strength != 1.0 else str(gen)
    quality_json = work / "painting_quality.json"
    figure = RESULTS / "generator_dubai_heldout.png"
    run("painting-quality", ps + [
        "painting-quality", str(episode), "--generator", "copy-paste", "--generator", spec, "--out", str(quality_json),
        "--per-class", str(args.tests), "--figure", str(figure), "--conditioning", str(args.conditioning),
        "--filter-quality", str(args.candidates), "--filter", "handcrafted", "--filter", "efficientnet-lite0",
        "--steps", str(args.steps)])
    quality = json.loads(quality_json.read_text())
    quality.pop("records")

    generate = {}
    for name, backend in (("generator", spec), ("copy-paste", "copy-paste")):
        syn = work / f"syn_{name}"
        options = ["--per-class", str(args.per_class), "--candidates", str(args.candidates), "--steps",
                   str(args.steps), "--filter", "handcrafted", "--keep", "all", "--refine", "none"]
        if name == "generator":
            options += ["--strength", str(args.strength)]
        if not (syn / "generate_summary.json").is_file():
            run(f"generate {name}", ps + ["generate", str(episode), "--generator", str(gen) if name == "generator"
                                          else backend, "--out", str(syn), *options])
        summary = json.loads((syn / "generate_summary.json").read_text())
        generate[name] = {k: summary.get(k) for k in ("placements", "candidates", "seconds", "seconds_per_candidate")}
    from paintseg.data.episode import Episode
    from paintseg.experiment.figures import png_bytes, sample_grid

    grid = RESULTS / "generator_dubai_grid.png"
    grid.write_bytes(png_bytes(sample_grid(Episode(episode), work / "syn_generator", work / "syn_generator", 6)))

    training = json.loads((gen / "train_summary.json").read_text()) if (gen / "train_summary.json").is_file() else {}
    threads = os.environ.get("OMP_NUM_THREADS")
    result = {
        "benchmark": "generator_dubai", "date": str(date.today()),
        "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python "
                   + shlex.join(["benchmarks/generator_dubai.py", *sys.argv[1:]]),
        "episode": short(episode), "generator": short(gen), "strength": args.strength, "ddim_steps": args.steps,
        "training": {k: training.get(k) for k in ("steps", "seconds_per_step", "parameters", "size", "resolution",
                                                  "torch_threads", "peak_rss_mb")},
        "painting_quality": {k: v for k, v in quality.items() if k != "conditioning" and k != "filter_quality"},
        "conditioning": next(iter((quality.get("conditioning") or {}).values()), None),
        "filter_quality": next(iter((quality.get("filter_quality") or {}).values()), None),
        "generate": generate, "stage_seconds": seconds,
        "figures": {"heldout": short(figure), "conditioning": short(figure.with_name(figure.stem
                                                                                     + "_conditioning.png")),
                    "grid": short(grid)},
    }
    result["painting_quality"]["backends"] = {short(k): v for k, v in quality["backends"].items()}
    result["painting_quality"]["against"] = short(quality["against"])
    result["painting_quality"]["paired"] = {short(k): v for k, v in quality["paired"].items()}
    out = RESULTS / "generator_dubai.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    c = result["conditioning"]
    print(f"conditioning: PSNR true {c['psnr_true']:.2f} / wrong {c['psnr_wrong']:.2f} / none {c['psnr_null']:.2f} dB,"
          f" true beats wrong {c['psnr_true_beats_wrong']['wins']}/{c['instances']}")
    for name, row in result["painting_quality"]["backends"].items():
        print(f"{name}: ΔE {row['delta_e']:.2f}, probe class rate {row.get('class_rate')}, "
              f"{row['seconds_per_test']:.2f} s/test")
    for name, row in (result["filter_quality"] or {}).get("filters", {}).items():
        print(f"filter {name}: p_class {row['p_class_gain']:+.3f}, ΔE {row['delta_e_gain']:+.2f} vs a random pick")
    print(f"generate: {generate['generator']['seconds_per_candidate']} s/candidate vs copy-paste "
          f"{generate['copy-paste']['seconds_per_candidate']} s")
    print(f"written {out}\ncommand: {result['command']}")


if __name__ == "__main__":
    main()
