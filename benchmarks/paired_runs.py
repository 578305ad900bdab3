"""Arms of two experiment runs side by side, paired per seed: a new painter against a committed run's arms.

A run that changes only the painter (e.g. benchmarks/configs/demo_latent.yaml: the latent painter, placement as the
committed run placed) repeats some of the committed run's arms (copy-paste-noise, the baseline); where those
reproduce seed for seed, the committed run's other arms (copy-paste, today's pixel painter) are the same
experiment and can be paired with the new arms per seed. This script checks the repeat, then writes every arm's
mean ± std and each new arm's paired difference against the strongest control (copy-paste-noise) and its
counterpart in the committed run (the same arm with the pixel painter): mean, std, 95 % t-interval over seeds
(paintseg.evaluate.significance.paired_seeds). Where a repeated arm did not reproduce seed for seed (other thread
counts, for example, change floating-point sums), it is listed as "(this run)" too and the new arms are paired with that repeat;
their pairing with the committed run's other arms then carries that run-to-run difference as well.

    python benchmarks/paired_runs.py --before benchmarks/results/experiment_demo_5seeds.json \\
        --after benchmarks/results/experiment_demo_latent.json --rename diffusion=latent diffusion-noise=latent-noise \\
        --name latent_downstream_demo

The committed run's painter arms are renamed pixel / pixel-noise (--rename-before).

Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def per_seed(results: dict, metric: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for run in results["runs"]:
        out.setdefault(run["arm"], {})[int(run["seed"])] = float(run["metrics"][metric])
    return out


def main() -> None:
    from paintseg.evaluate.significance import paired_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the committed run's experiment_*.json")
    ap.add_argument("--after", type=Path, required=True, help="the new run's experiment_*.json")
    ap.add_argument("--rename", nargs="*", default=[], help="ARM=NEW for the new run's arms (e.g. diffusion=latent)")
    ap.add_argument("--rename-before", nargs="*", default=["diffusion=pixel", "diffusion-noise=pixel-noise"],
                    help="ARM=NEW for the committed run's arms (default: its painter's arms as pixel, pixel-noise)")
    ap.add_argument("--against", nargs="+", default=["copy-paste-noise"],
                    help="arms each new arm is paired with (besides its counterpart: the committed run's arm of the "
                         "same name, as renamed)")
    ap.add_argument("--metric", default="novel_miou")
    ap.add_argument("--tolerance", type=float, default=0.05, help="IoU points within which a repeated arm counts as "
                    "reproduced")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    rename = dict(r.split("=", 1) for r in args.rename)
    rename_before = dict(r.split("=", 1) for r in args.rename_before)
    old, new = per_seed(before, args.metric), per_seed(after, args.metric)

    repeated = {}
    for arm, values in new.items():
        if arm in rename or arm not in old:
            continue
        seeds = sorted(set(values) & set(old[arm]))
        diffs = {s: round(values[s] - old[arm][s], 3) for s in seeds}
        repeated[arm] = {"seeds": seeds, "differences": diffs,
                         "reproduced": all(abs(d) <= args.tolerance for d in diffs.values())}
    arms = {rename_before.get(arm, arm): values for arm, values in old.items()}
    arms.update({rename.get(arm, arm): values for arm, values in new.items() if arm in rename})
    # a repeated arm that did not reproduce (other thread counts change the floating-point sums) is shown as this
    # run's too, and the new arms are paired with this run's: the same run, the same machine state
    this_run = {arm: f"{arm} (this run)" for arm, r in repeated.items() if not r["reproduced"]}
    arms.update({this_run[arm]: new[arm] for arm in this_run})
    seeds = sorted(set.intersection(*(set(v) for v in arms.values())))
    table = {arm: {"mean": round(statistics.fmean(v[s] for s in seeds), 3),
                   "std": round(statistics.stdev([v[s] for s in seeds]), 3) if len(seeds) > 1 else None,
                   "per_seed": {s: round(v[s], 3) for s in seeds}} for arm, v in arms.items()}
    paired = {}
    for original, arm in rename.items():
        for against in [*(this_run.get(a, a) for a in args.against), rename_before.get(original)]:
            if arm in arms and against in arms:
                paired[f"{arm} vs {against}"] = paired_seeds({s: arms[arm][s] for s in seeds},
                                                            {s: arms[against][s] for s in seeds})
    result = {"name": args.name, "date": str(date.today()), "metric": args.metric, "seeds": seeds,
              "before": str(args.before.relative_to(REPO)) if args.before.is_absolute() else str(args.before),
              "after": str(args.after.relative_to(REPO)) if args.after.is_absolute() else str(args.after),
              "rename": rename, "rename_before": rename_before, "repeated": repeated, "arms": table, "paired": paired,
              "all_reproduced": all(r["reproduced"] for r in repeated.values()),
              "command": shlex.join(["python", *sys.argv])}
    target = REPO / "benchmarks" / "results" / f"{args.name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    for arm, r in repeated.items():
        print(f"repeated {arm}: per-seed differences {r['differences']} -> "
              f"{'reproduced' if r['reproduced'] else 'NOT reproduced'}")
    for arm, row in table.items():
        std = f" ± {row['std']:.2f}" if row["std"] is not None else ""
        print(f"{arm:>20}: {args.metric} {row['mean']:.2f}{std}  {row['per_seed']}")
    for key, p in paired.items():
        print(f"{key}: {p['mean']:+.2f} ± {p['std']:.2f} (95 % [{p['low']:+.2f}, {p['high']:+.2f}], "
              f"{'beyond' if p['beyond'] else 'within'} seed noise)")
    print(f"written {target}\n$ {result['command']}")


if __name__ == "__main__":
    main()
