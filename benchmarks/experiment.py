"""A whole experiment as a benchmark: `paintseg run CONFIG` (default configs/dubai.yaml: Dubai, novel = building).

Runs every arm × model × seed of the config through the CLI, renders the report in headless Chromium and writes into
benchmarks/results (NAME = the config's file stem):

    experiment_NAME.json           the run's results.json + the exact command, wall time and thread settings
    experiment_NAME_report.png     the whole report.html at half size (the report itself, several MB of embedded
                                   figures, stays in the work folder)

Re-running resumes: every finished stage in the work folder (benchmarks/work/experiment_NAME) is reused, and the
stage times recorded when each stage ran are kept.

    OMP_NUM_THREADS=2 python benchmarks/experiment.py                               # configs/dubai.yaml, ~1 h
    OMP_NUM_THREADS=2 python benchmarks/experiment.py --config configs/demo.yaml    # the demo's budgets
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "dubai.yaml")
    ap.add_argument("--work", type=Path, default=None, help="Experiment folder (default: "
                    "benchmarks/work/experiment_NAME)")
    ap.add_argument("--seeds", default=None, help="`paintseg run --seeds`: other seeds than the config's (e.g. "
                    "0,1,2,3,4 in the folder of a 3-seed run adds seeds 3 and 4)")
    ap.add_argument("--name", default=None, help="NAME of the result files (default: the config's file stem)")
    args = ap.parse_args()
    args.name = args.name or args.config.stem
    exp = args.work or REPO / "benchmarks" / "work" / f"experiment_{args.name}"
    results_dir = REPO / "benchmarks" / "results"
    seeds = ["--seeds", args.seeds] if args.seeds else []
    cmd = [sys.executable, "-m", "paintseg", "run", str(args.config), "--out", str(exp), *seeds]
    print("$ " + shlex.join(cmd), flush=True)
    t = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t

    results = json.loads((exp / "results.json").read_text())
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    given = args.config.absolute()  # not resolve(): configs/demo.yaml is a link into the package, name the link
    rel = Path(os.path.relpath(given, REPO)) if given.is_relative_to(REPO) else args.config
    results["benchmark"] = {
        "command": " ".join([f"{k}={v}" for k, v in threads.items()] + ["python", "benchmarks/experiment.py"]
                            + ([] if args.name == "dubai" else ["--config", str(rel)])
                            + (["--work", str(exp.relative_to(REPO) if exp.is_relative_to(REPO) else exp)]
                               if args.work else []) + seeds + (["--name", args.name] if args.name !=
                                                                 args.config.stem else [])),
        "paintseg_command": f"paintseg run {rel} --out {exp.relative_to(REPO) if exp.is_relative_to(REPO) else exp}"
                            + (f" --seeds {args.seeds}" if args.seeds else ""),
        "wall_seconds_this_call": round(wall, 1),
        "wall_seconds_all_stages": round(sum(s["seconds"] for s in results["stages"]), 1),
        "note": "wall_seconds_all_stages adds up every stage's own time, also of stages finished by earlier "
                "(interrupted) calls; wall_seconds_this_call is only this call's time",
    }
    out = results_dir / f"experiment_{args.name}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    png = results_dir / f"experiment_{args.name}_report.png"
    subprocess.run([sys.executable, "-m", "paintseg", "report", str(exp), "--screenshot", str(png)], check=True)
    from PIL import Image

    with Image.open(png) as im:  # the whole report, at half size (a full-size page is ~6 MB of PNG)
        small = im.convert("RGB").resize((im.width // 2, im.height // 2), Image.LANCZOS)
    small.quantize(colors=256).save(png, optimize=True)
    from paintseg.experiment.results import Results
    from paintseg.experiment.summary import format_headline

    print(format_headline(Results.load(exp)))
    print(f"stages took {results['benchmark']['wall_seconds_all_stages'] / 60:.1f} min in all; results in {out}")


if __name__ == "__main__":
    main()
