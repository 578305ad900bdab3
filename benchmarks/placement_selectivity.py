"""How sharply placement should follow its prior, and on what cells the appearance prior should describe surroundings:
fit rates without any training, on the demo and on Dubai, against two oracles that bound them.

For seeds 0..2 each variant plans 30 placements per novel class with `paintseg place` settings (``PlaceConfig``:
``prior``, ``selectivity`` - each placement is drawn among 64 random free spots with probability proportional to
score ** selectivity - and ``appearance_cell``) and measures them (paintseg.evaluate.placement_fit): the share of
(placement, random spot) pairs where the placement's surroundings are nearer to a real query instance's than the
random spot's, by colour/texture and by base-class shares, and by colour/texture against the support instances'
surroundings. 0.5 is no better than random.

Two oracles use the measure's own colour/texture descriptor and pick, for each placement, the best of 64 random spots
of a support instance's size: nearest to a real *query* ring (the ceiling of the fit rate: what knowing the query
would buy) and nearest to a *support* ring (what the support set's surroundings can buy at best, with no prior's
descriptor in between).

    OMP_NUM_THREADS=1 python benchmarks/placement_selectivity.py     # about 20 minutes (Dubai: ~90 s a variant)

Writes benchmarks/results/placement_selectivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SEEDS = (0, 1, 2)
# name -> PlaceConfig fields; the first of each prior is the placement before selectivity and appearance_cell
VARIANTS = {
    "appearance, cell 8, selectivity 8 (before)": {"prior": "appearance", "appearance_cell": 8, "selectivity": 8.0},
    "appearance, cell 8, selectivity 16": {"prior": "appearance", "appearance_cell": 8, "selectivity": 16.0},
    "appearance, cell 4, selectivity 8": {"prior": "appearance", "appearance_cell": 4, "selectivity": 8.0},
    "appearance, cell 4, selectivity 16 (default)": {"prior": "appearance", "appearance_cell": 4, "selectivity": 16.0},
    "appearance, cell 4, selectivity 32": {"prior": "appearance", "appearance_cell": 4, "selectivity": 32.0},
    "context, selectivity 8 (before)": {"prior": "context", "selectivity": 8.0},
    "context, selectivity 16 (default)": {"prior": "context", "selectivity": 16.0},
    "auto, cell 8, selectivity 8 (before)": {"prior": "auto", "appearance_cell": 8, "selectivity": 8.0},
    "auto, cell 4, selectivity 16 (default)": {"prior": "auto", "appearance_cell": 4, "selectivity": 16.0},
}


def episodes() -> dict[str, Path]:
    """The demo episode of configs/demo.yaml and Dubai's as configs/dubai.yaml splits it (built in the work folder,
    once: the folder is named by the run's stage key)."""
    from paintseg.config import recipe
    from paintseg.data.datasets import split_recipe
    from paintseg.data.demo import make_demo_episode
    from paintseg.experiment.spec import load_experiment
    from paintseg.experiment.stages import settings_hash

    work = REPO / "benchmarks" / "work" / "placement_selectivity"
    demo = load_experiment(REPO / "configs" / "demo.yaml").episode.demo
    roots = {"demo": make_demo_episode(work / f"demo-{settings_hash('demo', demo.model_dump(mode='json'))}",
                                       **demo.model_dump(), progress=False)}
    split = load_experiment(REPO / "configs" / "dubai.yaml").episode.split.normalised()
    roots["dubai"] = work / f"dubai-{settings_hash('split', recipe(split))}"
    if not (roots["dubai"] / "classes.json").is_file():
        split_recipe(split, roots["dubai"], progress=False)
    return roots


def fit_rates(episode, config, seed: int) -> dict:
    from paintseg.evaluate.placement_fit import placement_quality
    from paintseg.place.plan import place

    with tempfile.TemporaryDirectory() as tmp:
        done = place(episode, Path(tmp), config, seed, progress=False)
        quality = placement_quality(episode, done["plan"], done["references"], seed=seed)
    return next(iter(quality.values()))


def oracle(episode, against: str, seed: int, candidates: int = 64, per_class: int = 30) -> float:
    """Fit rate against the query of placements picked by nearness to the real rings of ``against``."""
    from paintseg.data.raster import to_uint8
    from paintseg.evaluate.placement_fit import fit_rate, query_instances, ring_descriptor
    from paintseg.place.masks import Box
    from paintseg.place.references import extract_references

    cid = episode.classes.novel_ids[0]
    pool = episode.query if against == "query" else [s for s in episode.support_samples if s.class_id == cid]
    real = [ring_descriptor(to_uint8(episode.read_image(pool[i]).array), b)
            for i, b in query_instances(episode, cid, 16, None if against == "query" else pool)]
    real = np.array([r for r in real if r is not None])
    refs = [r for r in extract_references(episode) if r.class_id == cid]
    rng = np.random.default_rng(seed)
    images: dict[str, np.ndarray] = {}
    plan = []
    for p in range(per_class):
        ref = refs[p % len(refs)]
        spots, descs = [], []
        for _ in range(candidates):
            sample = episode.train[int(rng.integers(len(episode.train)))]
            if sample.name not in images:
                images[sample.name] = to_uint8(episode.read_image(sample).array)
            h, w = images[sample.name].shape[:2]
            bw, bh = min(ref.instance_box.width, w - 1), min(ref.instance_box.height, h - 1)
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            box = Box(x, y, x + bw, y + bh)
            d = ring_descriptor(images[sample.name], box)
            if d is not None:
                spots.append((sample.name, box))
                descs.append(d)
        every = np.concatenate([real, descs])
        centre, scale = every.mean(0), every.std(0) + 1e-9
        a, q = (np.asarray(descs) - centre) / scale, (real - centre) / scale
        best = int(np.argmin(np.sqrt(((a[:, None] - q[None]) ** 2).sum(-1)).min(1)))
        plan.append(SimpleNamespace(class_id=cid, scene=spots[best][0], box=spots[best][1]))
    return next(iter(fit_rate(episode, plan, seed=seed).values()))["fit_rate"]


def mean(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 3), "std": round(statistics.stdev(values), 3),
            "seeds": [round(v, 3) for v in values]}


def main() -> None:
    from paintseg.config import PlaceConfig
    from paintseg.data.episode import Episode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", nargs="+", default=["demo", "dubai"])
    args = ap.parse_args()
    found = {}
    start = time.time()
    for name, root in episodes().items():
        if name not in args.episodes:
            continue
        episode = Episode(root)
        rows = {}
        for variant, fields in VARIANTS.items():
            t = time.time()
            runs = [fit_rates(episode, PlaceConfig(**fields), seed) for seed in SEEDS]
            rows[variant] = {"settings": fields, **{k: mean([r[k] for r in runs]) for k in (
                "fit_rate", "fit_rate_labels", "fit_rate_support")}, "seconds": round(time.time() - t, 1)}
            print(f"{name:6s} {variant:46s} vs query {rows[variant]['fit_rate']['mean']:.3f} "
                  f"{rows[variant]['fit_rate']['seeds']}, labels {rows[variant]['fit_rate_labels']['mean']:.3f}, "
                  f"vs support {rows[variant]['fit_rate_support']['mean']:.3f}", flush=True)
        for against in ("query", "support"):
            rows[f"oracle: nearest {against} ring, best of 64"] = {
                "fit_rate": mean([oracle(episode, against, seed) for seed in SEEDS])}
            print(f"{name:6s} oracle nearest {against}: {rows[f'oracle: nearest {against} ring, best of 64']}",
                  flush=True)
        found[name] = rows
    threads = os.environ.get("OMP_NUM_THREADS")
    out = {"benchmark": "placement_selectivity", "date": str(date.today()), "seeds": list(SEEDS),
           "placements_per_class": 30, "episodes": found, "wall_seconds": round(time.time() - start, 1),
           "command": (f"OMP_NUM_THREADS={threads} " if threads else "") + "python benchmarks/placement_selectivity.py"
           + (f" --episodes {' '.join(args.episodes)}" if args.episodes != ["demo", "dubai"] else "")}
    target = REPO / "benchmarks" / "results" / "placement_selectivity.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {target}\n$ {out['command']}")


if __name__ == "__main__":
    main()
