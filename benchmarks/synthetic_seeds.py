"""Changes to the synthetic data, measured over the seeds of a finished experiment (default: the Dubai one).

Each variant re-trains the experiment's copy-paste arm (same model, budget and seeds) with one change, and is
compared per seed with the experiment's own baseline and copy-paste runs: paired differences, their mean ± std
and a t interval (paintseg.evaluate.significance), so a gain is told from seed noise.

    cp-auto        new copy-paste sets whose placements use the 'auto' prior (appearance + labels)
    cp-border2     the experiment's copy-paste sets, loss ignores 2 px on both sides of every pasted outline
    hint-0.3       sdedit-0.3 with a generator that also sees the pasted reference warped into the box as 4 more
                   input channels (`generator train --spatial-hint`; benchmarks/work/synthetic_seeds_NAME/gen_hint_s03)
    sdedit-S       (S = 0.3, 0.5, 0.7, 1.0) the experiment's copy-paste placements, painted from the copy-paste
                   composite at strength S (SDEdit: 1 candidate, no filter, the pasted silhouette as label; at 1.0
                   the inpaint mask) by a generator trained like the experiment's but on the timesteps below S·T
                   only (max_strength S; benchmarks/work/synthetic_seeds_NAME/gen_sSS, trained first when
                   missing; the experiment's own generator where its max_strength is S)
    cp-share25     the experiment's sets at synthetic share 0.25 (the trainset keeps half of each batch)
    cp-match       the experiment's copy-paste placements pasted with `--paste-colour match` (colour moved from
                   the reference's surroundings to the new ones, random flips)
    cp-noise       the experiment's copy-paste placements pasted with `--paste-noise 17.5` (smooth colour noise of
                   the size SDEdit at strength 0.3 adds: per-channel std 17.5 measured on its Dubai paintings), the
                   control that tells a painting gain from a noisy-paste gain
    harmonise      the experiment's copy-paste placements pasted, then re-coloured by a harmoniser trained on the
                   episode (`paintseg harmoniser train`, default settings; benchmarks/work/synthetic_seeds_NAME/harm,
                   trained first when missing)

Every step is a `paintseg` command (printed); finished runs (their metrics.json) are reused.
Writes benchmarks/results/synthetic_seeds_NAME.json (NAME: the experiment's name).

    OMP_NUM_THREADS=1 python benchmarks/synthetic_seeds.py       # ~6 min per variant and seed (1 thread)
    OMP_NUM_THREADS=1 python benchmarks/synthetic_seeds.py --variants cp-auto
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

from paintseg.paint.diffusion.model import is_generator

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name: (synthetic set: "experiment", a placement prior for new copy-paste sets, or "strength:S"
    #               for the experiment's placements painted from the composite; train options)
    "cp-auto": ("auto", []),
    "cp-border2": ("experiment", ["--synthetic-border", "2"]),
    "sdedit-0.3": ("strength:0.3", []),
    "sdedit-0.5": ("strength:0.5", []),
    "sdedit-0.7": ("strength:0.7", []),
    "sdedit-1.0": ("strength:1.0", []),
    "hint-0.3": ("strength:0.3:hint", []),
    "cp-share25": ("experiment", ["--synthetic-fraction", "0.25"]),
    "cp-match": ("paste:match", []),
    "harmonise": ("harmonise", []),
    "cp-noise": ("paste:noise", []),
}


def run(cmd: list[str]) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def train_flags(cfg: dict) -> list[str]:
    """`paintseg train` options that reproduce a TrainConfig dict (as a run's config.yaml holds it)."""
    flags = []
    for key in ("arch", "encoder", "encoder_weights", "steps", "batch", "crop", "lr", "warmup_steps", "weight_decay",
                "seed",
                "support_fraction", "synthetic_fraction", "synthetic_context", "class_weights",
                "class_weights_from", "encoder_lr_scale", "dice_weight"):
        if cfg.get(key) is not None:
            flags += [f"--{key.replace('_', '-')}", str(cfg[key])]
    return flags


def main() -> None:
    import yaml

    from paintseg.evaluate.significance import paired_seeds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", type=Path, default=REPO / "benchmarks" / "work" / "experiment_dubai")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS)[:3])
    args = ap.parse_args()
    exp = args.experiment
    config_path = exp / "config.yaml"  # the experiment's own copy of its config
    from paintseg.experiment.spec import load_experiment

    config = load_experiment(config_path)
    name = config.name
    work = REPO / "benchmarks" / "work" / f"synthetic_seeds_{name}"
    ps = [sys.executable, "-m", "paintseg"]

    def stage(prefix: str) -> Path:  # the experiment's finished stage folder (one per settings hash)
        found = sorted(p for p in (exp / "stages").glob(f"{prefix}-*") if (p / "stage.json").is_file())
        if len(found) != 1:
            raise SystemExit(f"{exp / 'stages'}: expected one finished {prefix}-* stage, found {len(found)}; run "
                             f"the experiment first (python benchmarks/experiment.py)")
        return found[0]

    episode = stage("episode") / "episode"
    generator = stage("generator")
    novel = list(config.episode.split.novel) if config.episode.split else None
    per_class = config.generation.per_class
    model = config.models[0]
    seeds = list(config.seeds)
    synthetic = {seed: stage(f"curate-copy-paste-s{seed}") for seed in seeds}
    paint_cp = {seed: stage(f"paint-copy-paste-s{seed}") for seed in seeds}
    t0 = time.time()
    rows, commands = {}, {}
    for variant in args.variants:
        kind, extra = VARIANTS[variant]
        per_seed = {}
        for seed in seeds:
            cfg = config.train_config(model, seed).model_dump()
            out = work / f"{variant}-s{seed}"
            if kind == "experiment":
                syn = synthetic[seed]
            elif kind.startswith(("strength:", "paste:", "harmonise")):
                syn = work / "sets" / (f"sdedit-{kind.split(':')[1]}-s{seed}" if kind.startswith("strength:")
                                       and not kind.endswith(":hint") else f"{variant}-s{seed}")
                if not (syn / "manifest.jsonl").is_file():
                    syn.mkdir(parents=True, exist_ok=True)
                    source = paint_cp[seed]
                    for file in ("placements.jsonl", "prior.json"):  # the very placements the arms painted
                        (syn / file).write_bytes((source / file).read_bytes())
                    common = ["--per-class", str(per_class), "--candidates", "1", "--seed", str(seed), "--select",
                              "first", "--refine", "none"]
                    if kind == "paste:noise":
                        run(ps + ["generate", str(episode), "--generator", "copy-paste", "--out", str(syn),
                                  "--paste-noise", "17.5", *common])
                    elif kind.startswith("paste:"):
                        run(ps + ["generate", str(episode), "--generator", "copy-paste", "--out", str(syn),
                                  "--paste-colour", kind.split(":")[1], *common])
                    elif kind == "harmonise":
                        harm = work / "harm"
                        if not (harm / "harmoniser.pt").is_file():
                            run(ps + ["harmoniser", "train", str(episode), "--out", str(harm)])
                        run(ps + ["generate", str(episode), "--generator", str(harm), "--out", str(syn), *common])
                    else:
                        g = config.generation.model_dump()
                        strength, hint = kind.split(":")[1], kind.endswith(":hint")
                        gen_cfg = yaml.safe_load((generator / "config.yaml").read_text())["generator"]
                        own = float(gen_cfg.get("max_strength", 1.0)) == float(strength) and not hint
                        gen = generator if own else work / (f"gen_{'hint_' if hint else ''}s"
                                                            f"{strength.replace('.', '')}")
                        if not is_generator(gen):  # the experiment's generator settings, low noise only
                            gen_cfg["max_strength"] = float(strength)
                            gen_cfg["spatial_hint"] = hint
                            work.mkdir(parents=True, exist_ok=True)
                            (work / f"{gen.name}.yaml").write_text(yaml.safe_dump(gen_cfg))
                            run(ps + ["generator", "train", str(episode), "--out", str(gen), "--config",
                                      str(work / f"{gen.name}.yaml")])
                        run(ps + ["generate", str(episode), "--generator", str(gen), "--out", str(syn),
                                  "--steps", str(g["steps"]), "--guidance", str(g["guidance"]), "--strength",
                                  strength, *common])
            else:
                syn = work / "sets" / f"cp-{kind}-s{seed}"
                if not (syn / "manifest.jsonl").is_file():
                    run(ps + ["generate", str(episode), "--generator", "copy-paste", "--out", str(syn),
                              "--per-class", str(per_class), "--candidates", "1", "--prior", kind, "--seed",
                              str(seed), "--select", "first", "--refine", "none"])
            train = ps + ["train", str(episode), "--out", str(out), *train_flags(cfg), "--synthetic", str(syn), *extra]
            pred = ps + ["predict", str(out), "--episode", str(episode), "--out", str(out / "pred"), "--window",
                         str(config.predict_window or cfg["crop"])]  # as the experiment predicts its query set
            evaluate = ps + ["evaluate", "--pred", str(out / "pred"), "--episode", str(episode), "--out",
                             str(out / "metrics.json")]
            commands[f"{variant}-s{seed}"] = [shlex.join(c) for c in (train, pred, evaluate)]
            if not (out / "metrics.json").is_file():
                for cmd in ([] if (out / "model.pt").is_file() else [train]) + [pred, evaluate]:
                    run(cmd)
            per_seed[seed] = json.loads((out / "metrics.json").read_text())
        novel = novel or [c for c in per_seed[seeds[0]]["roles"] if per_seed[seeds[0]]["roles"][c] == "novel"]
        novel_iou = [statistics.fmean(per_seed[s]["per_class_iou"][c] for c in novel) for s in seeds]
        base = [per_seed[s]["base_miou"] for s in seeds]
        row = {"novel_iou": [round(v, 2) for v in novel_iou], "base_miou": [round(v, 2) for v in base],
               "novel_mean": round(statistics.fmean(novel_iou), 2), "base_mean": round(statistics.fmean(base), 2)}
        rows[variant] = row
        print(f"{variant:12s} novel {row['novel_mean']:.1f} (seeds {row['novel_iou']}), base {row['base_mean']:.1f}",
              flush=True)
    results_path = exp / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if not results.get("complete"):
        raise SystemExit(f"{results_path}: the experiment is not complete; its baseline and copy-paste runs are the "
                         f"reference - finish it and run this again (the variants above are kept)")
    runs = {(r["arm"], r["seed"]): r for r in results["runs"]}
    reference = {arm: {"novel_iou": [round(statistics.fmean(runs[(arm, s)]["metrics"]["per_class_iou"][c]
                                                              for c in novel), 2) for s in seeds],
                       "base_miou": [round(runs[(arm, s)]["metrics"]["base_miou"], 2) for s in seeds]}
                 for arm in ("baseline", "copy-paste")}
    for variant, row in rows.items():
        row["novel_vs"] = {arm: paired_seeds(dict(zip(seeds, row["novel_iou"])), dict(zip(seeds, ref["novel_iou"])))
                           for arm, ref in reference.items()}
        row["base_vs"] = {arm: paired_seeds(dict(zip(seeds, row["base_miou"])), dict(zip(seeds, ref["base_miou"])))
                          for arm, ref in reference.items()}
        print(f"{variant:12s} " + "; ".join(
            f"vs {arm}: novel {d['mean']:+.1f} ± {d['std']:.1f}, base {row['base_vs'][arm]['mean']:+.1f}"
            for arm, d in row["novel_vs"].items()), flush=True)
    threads = os.environ.get("OMP_NUM_THREADS")
    command = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python benchmarks/synthetic_seeds.py"
    result = {"benchmark": f"synthetic_seeds_{name}", "command": command
              + ("" if exp == REPO / "benchmarks" / "work" / "experiment_dubai" else f" --experiment {exp}")
              + ("" if args.variants == list(VARIANTS)[:3] else f" --variants {' '.join(args.variants)}"),
              "date": str(date.today()), "experiment": str(exp.relative_to(REPO) if exp.is_relative_to(REPO) else exp),
              "seeds": seeds, "reference": reference, "variants": rows, "commands": commands,
              "wall_seconds_this_call": round(time.time() - t0, 1)}
    out = REPO / "benchmarks" / "results" / f"synthetic_seeds_{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {out}")
    painted = [folder for pattern in ("sdedit-*-s0", "hint-*-s0", "cp-match-s0", "harmonise-s0", "cp-noise-s0")
               for folder in sorted((work / "sets").glob(pattern)) if (folder / "candidates").is_dir()]
    if painted:
        figure = REPO / "benchmarks" / "results" / f"synthetic_seeds_{name}_samples.png"
        samples(paint_cp[0], painted, figure)
        print(f"written {figure}")


def samples(copy_paste: Path, painted: list[Path], out: Path, n: int = 8, side: int = 128) -> None:
    """The first ``n`` placements of seed 0: the copy-paste candidate, then each painted set's, side by side."""
    import numpy as np
    from PIL import Image, ImageDraw

    def tile(path: Path) -> np.ndarray:
        return np.array(Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC))

    rows = [np.concatenate([tile(folder / "candidates" / f"p{i:06d}_k0.png") for folder in [copy_paste, *painted]], 1)
            for i in range(n) if (copy_paste / "candidates" / f"p{i:06d}_k0.png").is_file()]
    grid = Image.fromarray(np.concatenate(rows, 0))
    canvas = Image.new("RGB", (grid.width, grid.height + 16), "white")
    canvas.paste(grid, (0, 16))
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(["copy-paste", *(p.name.removesuffix("-s0") for p in painted)]):
        draw.text((j * side + 4, 2), title, fill="black")
    canvas.save(out)


if __name__ == "__main__":
    main()
