"""Why does synthetic data cost the novel class? A one-seed sweep on Dubai with the pretrained encoder.

Every variant trains the same Unet with ImageNet EfficientNet-Lite0 (400 steps, batch 8, crop 128, lr 1e-3, seed 0)
on the Dubai episode (novel = building, 5 shots, split by tile) and is scored on the 135 query tiles; the copy-paste
variants add a copy-paste synthetic set (context-prior placements) and change one thing at a time:

    baseline-200 / baseline-400     no synthetic data, 200 / 400 steps
    encoder-lr-0.1                  encoder at a tenth of the learning rate (lr 2e-3)
    cp30-f50                        30 placements, synthetic share 0.5 (the old default)
    cp30-f20 / cp120-f20            share 0.2; with 30 or 120 placements
    cp30-f50-c24                    loss on synthetic images only within 24 px of the pasted objects
    cp30-f50-real                   class weights from the real pools only (class_weights_from: real)
    cp30area-f50                    references drawn in proportion to their pixels (reference_weights: area)

Every step is a `paintseg` command (printed); a finished variant (its metrics.json) is reused, so re-running only
collects. Writes benchmarks/results/synthetic_dubai.json and synthetic_dubai_predictions.png (the query tiles with the
most building: ground truth and four variants' predictions, building in magenta).

    python benchmarks/synthetic_dubai.py         # ~5 min per variant on 2 cores
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DUBAI = REPO.parent / "shared" / "data" / "dubai_aerial"
MODEL = ["--arch", "unet", "--encoder", "tu-tf_efficientnet_lite0", "--encoder-weights", "imagenet", "--batch", "8",
         "--crop", "128"]
VARIANTS = {  # name: (synthetic set or None, extra train options)
    "baseline-200": (None, ["--steps", "200", "--lr", "0.001"]),
    "baseline-400": (None, ["--steps", "400", "--lr", "0.001"]),
    "encoder-lr-0.1": (None, ["--steps", "400", "--lr", "0.002", "--encoder-lr-scale", "0.1"]),
    "cp30-f50": ("cp30", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.5"]),
    "cp30-f20": ("cp30", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.2"]),
    "cp120-f20": ("cp120", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.2"]),
    "cp30-f50-c24": ("cp30", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.5",
                              "--synthetic-context", "24"]),
    "cp30-f50-real": ("cp30", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.5",
                               "--class-weights-from", "real"]),
    "cp30area-f50": ("cp30area", ["--steps", "400", "--lr", "0.001", "--synthetic-fraction", "0.5"]),
}
SETS = {"cp30": ["--per-class", "30"], "cp120": ["--per-class", "120"],
        "cp30area": ["--per-class", "30", "--reference-weights", "area"]}


def run(cmd: list[str]) -> None:
    print("$ " + shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "synthetic_dubai")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "synthetic_dubai.json")
    args = ap.parse_args()
    ps = [sys.executable, "-m", "paintseg"]
    episode = args.work / "episode"
    if not (episode / "val.json").is_file():
        run(ps + ["split", "--images", str(DUBAI / "*" / "images" / "*.jpg"), "--labels",
                  str(DUBAI / "*" / "masks" / "*.png"), "--classes", str(DUBAI / "classes-paintseg.json"),
                  "--novel", "building", "--group", r"Tile \d+", "--tile", "512", "--shots", "5", "--seed", "0",
                  "--out", str(episode)])
    rows, commands = {}, {}
    start = time.time()
    for name, (syn, extra) in VARIANTS.items():
        folder = args.work / name
        cmds = []
        if syn is not None and not (args.work / syn / "manifest.jsonl").is_file():
            cmds.append(ps + ["generate", str(episode), "--generator", "copy-paste", "--out", str(args.work / syn),
                              "--candidates", "1", "--select", "first",  # the defaults when it was measured:
                              "--prior", "context", "--refine", "grabcut"] + SETS[syn])
        train = ps + ["train", str(episode), "--out", str(folder)] + MODEL + extra
        train += ["--synthetic", str(args.work / syn)] if syn else []
        cmds += [train, ps + ["predict", str(folder), "--episode", str(episode), "--out", str(folder / "pred"),
                              "--window", "512"],
                 ps + ["evaluate", "--pred", str(folder / "pred"), "--episode", str(episode), "--out",
                       str(folder / "metrics.json")]]
        if not (folder / "metrics.json").is_file():
            for cmd in cmds:
                run(cmd)
        commands[name] = [shlex.join(c).replace(str(REPO) + "/", "") for c in cmds]
        m = json.loads((folder / "metrics.json").read_text())
        cm = m["confusion_matrix"]
        b = 1 + list(m["per_class_iou"]).index("building")  # per_class_iou lists ids 1.. in order (0 unscored)
        predicted = sum(row[b] for row in cm)
        summary = json.loads((folder / "train_summary.json").read_text())
        rows[name] = {"per_class_iou": m["per_class_iou"], "base_miou": m["base_miou"], "novel_miou": m["novel_miou"],
                      "score": m["score"], "building_recall": round(100 * cm[b][b] / max(1, sum(cm[b])), 2),
                      "building_precision": round(100 * cm[b][b] / max(1, predicted), 2),
                      "seconds_per_step": summary["seconds_per_step"], "torch_threads": summary["torch_threads"]}
        r = rows[name]
        print(f"{name:16s} building {r['novel_miou']:5.1f} (recall {r['building_recall']:5.1f}, precision "
              f"{r['building_precision']:5.1f})  base mIoU {r['base_miou']:5.1f}  score {r['score']:5.1f}", flush=True)
    result = {"benchmark": "synthetic_dubai", "command": "python benchmarks/synthetic_dubai.py",
              "date": str(date.today()), "seed": 0, "variants": rows, "commands": commands,
              "wall_seconds_this_call": round(time.time() - start, 1),
              "note": "one seed per variant: differences of a few points may be seed noise"}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    figure = args.out.with_name("synthetic_dubai_predictions.png")
    overlays(episode, args.work, ["baseline-400", "cp30-f50", "cp30-f50-c24", "cp30area-f50"], figure)
    print(f"written {args.out} and {figure}")


def overlays(episode_dir: Path, work: Path, variants: list[str], out: Path, rows: int = 3) -> None:
    """Query tiles with the most building: image | ground truth | each variant's prediction (novel in magenta)."""
    import numpy as np

    from paintseg.data.episode import Episode
    from paintseg.data.raster import read_label
    from paintseg.experiment.figures import Tile, find_prediction, fit, label_overlay, overlay_lut, rgb, tile_grid

    episode = Episode(episode_dir)
    lut, novel = overlay_lut(episode.classes), tuple(episode.classes.novel_ids)
    share = {q.stem: float(np.isin(episode.read_label(q).array, novel).mean()) for q in episode.query}
    queries = sorted(episode.query, key=lambda q: -share[q.stem])[:rows]
    grid = []
    for q in queries:
        image = rgb(episode.read_image(q).array)
        row = [Tile(fit(image)), Tile(label_overlay(image, episode.read_label(q).array, lut, strong=novel))]
        for v in variants:
            pred = find_prediction(work / v / "pred", q.stem)
            row.append(Tile(None if pred is None else label_overlay(image, read_label(pred, episode.classes).array,
                                                                      lut, strong=novel)))
        grid.append(row)
    fig = tile_grid(grid, [q.stem for q in queries], ["image", "ground truth"] + variants, inches=2.6)
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
