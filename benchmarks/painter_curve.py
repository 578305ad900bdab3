"""The painter's learning curve: painting quality on held-out query windows against training compute, per recipe.

Each recipe trains paintseg's generator - the experiment config's generator.train settings with one change - for a
budget in minutes with snapshots (EMA weights after half, a quarter, ... of the run), then `paintseg generator
curve` paints the same held-out query tests with every snapshot at each strength, beside copy-paste and
copy-paste-noise (the probe's class rate, ΔE to the real instances, novelty against the reference, diversity
between two candidates). One long run gives every point of its curve.

    equal      the config's generator.train with equal loss weights across noise levels (the recipe before min-SNR)
    min-snr    with min-SNR-gamma loss weighting, gamma 5 (Hang et al. 2023; configs/demo.yaml's recipe)
    batch16    min-snr with batch 16 (twice the pairs per step)
    lr3e-3     min-snr with peak learning rate 3e-3
    tiny       min-snr at size tiny (32 px, about 12x fewer seconds per step than small: more steps per minute)
    novel      min-snr adapted to the novel class: half the pairs drawn from the support's novel instances
               (novel_share 0.5; otherwise they get the support's share of the scenes)
    novel-all  novel trained on every noise level (max_strength 1), so painting from noise is in its training
    novel-64   novel-all at twice the window resolution (64 px: the tiny UNet at 4x the pixels), so that a solar
               panel's cell grid is above the painter's resolution
    latent     the latent painter (space: latent, size small: 7.4 M parameters on 16 x 16 x 32 latents of 128-px
               windows) on the TAEF2 autoencoder in ../shared/models/taef2, adapted to the novel class (novel_share
               0.5) on every noise level (max_strength 1), min-SNR 5, peak LR 5e-4; the first encoding of its
               training windows counts in its minutes
    latent-hint  latent with the spatial hint: the pasted reference's latents x its mask as input channels
    latent-focus  latent-hint with the loss inside the inpaint mask weighted 10x (latent-hint's in-mask error at
               t = 0.3 T was above its input's: the easy cells outside the mask held the loss), a truer training
               hint (hint_jitter 0.3: re-coloured and warped at 0.3 of the default) and peak LR 1e-3
    latent-cross  latent-focus with half its instance pairs crossed (cross_reference 0.5): reference and hint another
               instance of the class pasted into the hidden one's box, as painting pastes an exemplar where another
               object would belong (latent-focus at strengths 0.3/0.6 returned the paste: it had learnt to render
               its hint)
    latent-jitter  latent-focus with training hints twice as far from the hidden instance as the default
               (hint_jitter 2: re-coloured at strength 1, warped by up to 20 degrees, 20 % scale, 8 % shift), so
               that the hint stops showing the answer and the painter must fit it into the scene (latent-focus's
               0.3 taught it to render the hint as given)

Recipes train side by side, one process and one thread each (--parallel, the default), so they get the same
compute; a finished GEN folder is reused. Every step is a `paintseg` command (printed).
Writes benchmarks/results/painter_curve_NAME.json (recipes measured before and not run again are kept, each with
its date and budget) and painter_curve_NAME_RECIPE.png (+ _samples.png). Commands run in the repository root.

    python benchmarks/painter_curve.py --config configs/demo.yaml --minutes 45 --snapshots 8 --recipes equal min-snr
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from datetime import date
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"equal": {"snr_gamma": None}, "min-snr": {"snr_gamma": 5.0}, "batch16": {"snr_gamma": 5.0, "batch": 16},
           "lr3e-3": {"snr_gamma": 5.0, "lr": 3e-3}, "tiny": {"snr_gamma": 5.0, "size": "tiny"},
           "novel": {"snr_gamma": 5.0, "novel_share": 0.5},
           "novel-all": {"snr_gamma": 5.0, "novel_share": 0.5, "max_strength": 1.0},
           "novel-64": {"snr_gamma": 5.0, "novel_share": 0.5, "max_strength": 1.0, "resolution": 64}}
LATENT = {"space": "latent", "autoencoder": "../shared/models/taef2", "size": "small", "resolution": None,
          "snr_gamma": 5.0, "novel_share": 0.5, "max_strength": 1.0, "lr": 5e-4}
RECIPES |= {"latent": LATENT, "latent-hint": {**LATENT, "spatial_hint": True},
            "latent-focus": {**LATENT, "spatial_hint": True, "hint_jitter": 0.3, "mask_weight": 10.0, "lr": 1e-3}}
RECIPES["latent-cross"] = {**RECIPES["latent-focus"], "cross_reference": 0.5}
RECIPES["latent-jitter"] = {**RECIPES["latent-focus"], "hint_jitter": 2.0}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PAINTSEG_THREADS": "1"}


def main() -> None:
    from paintseg.experiment.spec import load_experiment
    from paintseg.experiment.graph import _episode
    from paintseg.experiment.stages import Stages
    from paintseg.paint.diffusion import SCHEDULERS
    from paintseg.paint.diffusion.model import is_generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    ap.add_argument("--recipes", nargs="+", default=["equal", "min-snr"], choices=list(RECIPES))
    ap.add_argument("--minutes", type=float, default=45.0, help="training budget of each recipe (one thread)")
    ap.add_argument("--snapshots", type=int, default=8)
    ap.add_argument("--strengths", nargs="+", type=float, default=[0.3, 0.6, 1.0])
    ap.add_argument("--per-class", type=int, default=24)
    ap.add_argument("--sequential", action="store_true", help="train the recipes one after the other")
    ap.add_argument("--scheduler", choices=SCHEDULERS, default=None, help="sampler of the curve's paintings "
                    "(default: the config's generation.scheduler)")
    ap.add_argument("--guidance", type=float, default=None, help="guidance of the curve's paintings (default: the "
                    "config's generation.guidance)")
    ap.add_argument("--suffix", default="", help="measure the recipes again under their name + _SUFFIX (their own GEN "
                    "folders and rows), e.g. at a longer --minutes beside the shorter run kept")
    ap.add_argument("--row-suffix", default="", help="write the curve under the row (and figure) name + "
                    "_ROW_SUFFIX, keeping the row measured before: the same GEN folders painted another way (e.g. "
                    "--evaluate-only --scheduler dpm++sde --row-suffix sde)")
    ap.add_argument("--evaluate-only", action="store_true", help="train nothing: measure the snapshots each GEN "
                    "folder holds (a run stopped early gives the part of its curve it reached)")
    args = ap.parse_args()
    config = load_experiment(args.config)
    name = config.name
    work = REPO / "benchmarks" / "work" / f"painter_curve_{name}"
    episode, _ = _episode(config, Stages(work, progress=False), progress=False)
    ps = [sys.executable, "-m", "paintseg"]

    key = {recipe: f"{recipe}_{args.suffix}" if args.suffix else recipe for recipe in args.recipes}
    jobs = []
    for recipe in args.recipes:
        gen = work / f"gen_{key[recipe]}"
        settings = {**config.generator.train.model_dump(mode="json"), **RECIPES[recipe], "minutes": args.minutes,
                    "snapshots": args.snapshots, "steps": 1_000_000, "checkpoint_every": 1000,
                    "sample_every": 5000, "keep_checkpoint": True}
        cfg = work / f"gen_{key[recipe]}.yaml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(yaml.safe_dump(settings))
        if not is_generator(gen) and not args.evaluate_only:
            cmd = ps + ["generator", "train", str(episode), "--out", str(gen), "--config", str(cfg), "--resume"]
            print("$ OMP_NUM_THREADS=1 " + shlex.join(cmd), flush=True)
            jobs.append(subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if args.sequential:
                jobs.pop().wait()
    for job in jobs:
        if job.wait():
            sys.exit(f"a generator run failed: {shlex.join(job.args)}")

    sampler = {"scheduler": args.scheduler or config.generation.scheduler,
               "guidance": config.generation.guidance if args.guidance is None else args.guidance}
    tag = "" if sampler == {"scheduler": config.generation.scheduler, "guidance": config.generation.guidance} \
        else f"_{sampler['scheduler']}_g{sampler['guidance']:g}"
    row = {recipe: f"{key[recipe]}_{args.row_suffix}" if args.row_suffix else key[recipe] for recipe in args.recipes}
    curves = {recipe: work / f"curve_{key[recipe]}{tag}.json" for recipe in args.recipes}
    figures = {recipe: REPO / "benchmarks" / "results" / f"painter_curve_{name}_{row[recipe]}.png"
               for recipe in args.recipes}
    for recipe in args.recipes:  # the curves are measured side by side too (one thread each), unless --sequential
        gen, out, figure = work / f"gen_{key[recipe]}", curves[recipe], figures[recipe]
        if not out.is_file():
            cmd = ps + ["generator", "curve", str(gen), str(episode), "--out", str(out), "--figure", str(figure),
                        "--per-class", str(args.per_class), "--paste-noise", str(config.generation.paste_noise),
                        "--steps", str(config.generation.steps)]
            if tag:
                paint_yaml = work / f"curve_{key[recipe]}{tag}.yaml"
                paint_yaml.write_text(yaml.safe_dump(sampler))
                cmd += ["--config", str(paint_yaml)]
            for strength in args.strengths:
                cmd += ["--strength", str(strength)]
            print("$ OMP_NUM_THREADS=1 " + shlex.join(cmd), flush=True)
            jobs.append(subprocess.Popen(cmd, env=ENV, cwd=REPO, stdout=subprocess.DEVNULL))
            if args.sequential:
                jobs.pop().wait()
    for job in jobs:
        if job.wait():
            sys.exit(f"a curve failed: {shlex.join(job.args)}")

    found = {}
    for recipe in args.recipes:
        gen, out, figure = work / f"gen_{key[recipe]}", curves[recipe], figures[recipe]
        curve = json.loads(out.read_text())
        curve.pop("quality", None)
        summary = gen / "train_summary.json"
        found[row[recipe]] = {"changes": RECIPES[recipe], "date": str(date.today()), "minutes": args.minutes, **sampler,
                         "budget": json.loads((gen / "budget.json").read_text()),
                         "finished": is_generator(gen),
                         "summary": json.loads(summary.read_text()) if summary.is_file() else None, **curve,
                         "figure": str(figure.relative_to(REPO))}

    result = {"config": str(args.config), "name": name, "date": str(date.today()), "minutes": args.minutes,
              "snapshots": args.snapshots, "strengths": args.strengths, "per_class": args.per_class,
              "recipes": found, "command": shlex.join(["python", *sys.argv])}
    target = REPO / "benchmarks" / "results" / f"painter_curve_{name}.json"
    if target.is_file():  # keep the recipes measured before (with their own date, minutes and command)
        before = json.loads(target.read_text())
        kept = {r: {"date": before["date"], "minutes": before["minutes"], "command": before.get("command"), **row}
                for r, row in before["recipes"].items() if r not in found}
        result["recipes"] = {**kept, **found}
    target.write_text(json.dumps(result, indent=1, default=str) + "\n")
    for recipe, row in result["recipes"].items():
        reached = "" if row["finished"] else f", stopped at step {row['points'][-1]['step']}"
        print(f"== {recipe} ({row['changes']}; {row['date']}): budget {row['budget']['steps']} steps in "
              f"{row['minutes']:g} min of one thread{reached}")
        for p in row["points"]:
            print(f"  step {p['step']:>6} ({p['minutes']:6.2f} min) @ {p['strength']:g}: class rate "
                  f"{p['class_rate']:.0%}, p {p['p_class']:.2f}, ΔE {p['delta_e']:.1f}, novelty {p['novelty']:.2f}, "
                  f"diversity {p['diversity']:.2f}")
        for control, c in row["controls"].items():
            print(f"  {control}: class rate {c['class_rate']:.0%}, ΔE {c['delta_e']:.1f}, novelty "
                  f"{c['novelty']:.2f}, diversity {c['diversity']:.2f}")
    print(f"written {target}\n$ {result['command']}")


if __name__ == "__main__":
    main()
