"""Placement priors downstream: copy-paste placed by each prior, against the baseline, over the same seeds.

For each prior (uniform, context, appearance, auto) the experiment config runs with only the baseline and copy-paste
arms and ``generation.prior`` set to it (`paintseg run`, one work folder, so the baseline and the episode are shared
and trained once; placements, pastes and the copy-paste models are per prior). ``--from EXP`` first links the
finished stages of an earlier run of the same config into the work folder (hard links, no copies) and takes the
config as EXP echoed it (EXP/config.yaml, paths spelled as that run resolved them, so the stage hashes match): the
baseline and a prior that run already used are not trained again. Per prior and seed it records the copy-paste arm's novel IoU, the paired
difference to the baseline and the placements' fit rates (colour/texture and base-class shares against the query's
real instances, and against the held-out support surroundings).

Writes benchmarks/results/priors_NAME.json (NAME: the config's name).

    OMP_NUM_THREADS=2 python benchmarks/priors.py --config configs/demo.yaml --from benchmarks/work/experiment_demo_5seeds
    OMP_NUM_THREADS=2 python benchmarks/priors.py --config configs/dubai.yaml --from benchmarks/work/experiment_dubai
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PRIORS = ("uniform", "context", "appearance", "auto")


def link_stages(source: Path, target: Path) -> int:
    """Hard-link every complete stage folder of ``source`` into ``target`` (kept where it exists)."""
    count = 0
    for stage in sorted((source / "stages").glob("*")):
        if not (stage / "stage.json").is_file() or (target / "stages" / stage.name).exists():
            continue
        subprocess.run(["cp", "-al", str(stage), str(target / "stages" / stage.name)], check=True)
        count += 1
    return count


def mix(prior_json: Path) -> dict:
    """How ``auto`` weighed the label prior per class (alpha: the appearance share; why the labels were refused)."""
    if not prior_json.is_file():
        return {}
    found = json.loads(prior_json.read_text()).get("mix") or {}
    return {c: {k: v for k, v in m.items() if k == "alpha" or "agree" in k or "refus" in k or "reason" in k}
            for c, m in found.items() if isinstance(m, dict)}


def main() -> None:
    from paintseg.experiment.spec import load_experiment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--from", dest="source", type=Path, default=None, help="an earlier run's folder of this config")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--priors", nargs="+", default=list(PRIORS), choices=PRIORS)
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="generation fields to set for every prior (e.g. selectivity=8 appearance_cell=8: the "
                         "placement before those fields existed)")
    ap.add_argument("--name", default=None, help="results file benchmarks/results/priors_NAME.json (default: the "
                                                  "config's name)")
    args = ap.parse_args()
    base = load_experiment(args.source / "config.yaml" if args.source is not None else args.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = REPO / "benchmarks" / "work" / f"priors_{base.name}"
    exp = work / "exp"
    (exp / "stages").mkdir(parents=True, exist_ok=True)
    if args.source is not None:
        print(f"linked {link_stages(args.source, exp)} finished stages of {args.source}", flush=True)

    found, commands, novel = {}, [], None
    start = time.time()
    for prior in args.priors:
        data = base.model_dump(mode="json")
        data.update(name=f"{base.name}-prior-{prior}", arms=["baseline", "copy-paste"], generator=None, seeds=seeds)
        data["generation"]["prior"] = prior
        data["generation"].update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)})
        cfg = work / f"prior_{prior}.yaml"
        cfg.write_text(yaml.safe_dump(data, sort_keys=False))
        cmd = [sys.executable, "-m", "paintseg", "run", str(cfg), "--out", str(exp), "--no-progress"]
        print("$ " + shlex.join(cmd), flush=True)
        commands.append(shlex.join(["paintseg", *cmd[3:]]))
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results = json.loads((exp / "results.json").read_text())
        novel = results["novel"]
        iou = {(r["arm"], r["seed"]): r["metrics"]["novel_miou"] for r in results["runs"]}
        per_seed = []
        for syn in results["synthetic"]:
            q = syn["placement_quality"] or {}
            rates = {name: {k: v.get(k) for k in ("fit_rate", "fit_rate_labels", "fit_rate_support",
                                                  "fit_rate_support_labels") if k in v} for name, v in q.items()}
            seed = syn["seed"]
            per_seed.append({"seed": seed, "copy_paste": iou[("copy-paste", seed)],
                             "baseline": iou[("baseline", seed)],
                             "gain": round(iou[("copy-paste", seed)] - iou[("baseline", seed)], 2),
                             "fit": rates, "mix": mix(exp / syn["paint"]["copy-paste"] / "prior.json")})
        gains = [s["gain"] for s in per_seed]
        found[prior] = {"seeds": per_seed,
                        "copy_paste_mean": round(statistics.fmean(s["copy_paste"] for s in per_seed), 2),
                        "gain_mean": round(statistics.fmean(gains), 2),
                        "gain_std": round(statistics.stdev(gains), 2) if len(gains) > 1 else 0.0}
        g = found[prior]
        print(f"{prior}: copy-paste {g['copy_paste_mean']:.1f} novel IoU, {g['gain_mean']:+.1f} ± {g['gain_std']:.1f} "
              f"over the baseline; fit rates " + "; ".join(
                  f"s{s['seed']} " + ", ".join(f"{k} {v}" for r in s["fit"].values() for k, v in r.items())
                  for s in per_seed), flush=True)
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    placement = {k: v for k, v in load_experiment(work / f"prior_{args.priors[-1]}.yaml").generation.model_dump(
        mode="json").items() if k in ("selectivity", "appearance_cell", "appearance", "per_class")}
    out = {"config": str(args.config), "name": base.name, "file": args.name or base.name, "date": str(date.today()),
           "seeds": seeds,
           "novel": novel, "placement": placement, "priors": found,
           "wall_seconds": round(time.time() - start, 1), "paintseg_commands": commands,
           "command": " ".join([f"{k}={v}" for k, v in threads.items()] + ["python", "benchmarks/priors.py",
                                                                           *sys.argv[1:]])}
    target = REPO / "benchmarks" / "results" / f"priors_{args.name or base.name}.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {target}\n$ {out['command']}")


if __name__ == "__main__":
    main()
