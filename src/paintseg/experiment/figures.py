"""Figures for the experiment report: matplotlib figures (Agg canvas, no pyplot state) and PNG data URIs.

Drawing primitives (tiles, overlays, charts) take arrays and numbers; :func:`sample_grid` and
:func:`prediction_grid` read what they show from a paint/curated folder pair and from prediction folders. What to
show (which arms, which runs) is decided in :mod:`.report`.
"""

from __future__ import annotations

import base64
import io
import json
import math
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from scipy import ndimage

from paintseg.data.episode import Episode, Sample
from paintseg.data.raster import read_image, read_label, to_uint8
from paintseg.evaluate.metrics import PREDICTION_SUFFIXES
from paintseg.files import read_jsonl
from paintseg.paint.candidates import read_manifest
from paintseg.place.references import load_references

TILE = 256  # the largest side of an image tile, in pixels
MIN_TILE = 128  # smaller images are enlarged (by a whole factor, nearest neighbour) to at least this side
PALETTE = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000"]


# --------------------------------------------------------------------------------------------- encoding
def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def data_uri(fig: Figure, dpi: int = 100) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for an ``<img src>`` that needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


# --------------------------------------------------------------------------------------------- image tiles
def rgb(image: np.ndarray) -> np.ndarray:
    """Any image (uint8/uint16, 1 or 3+ bands, or H×W) as display uint8 H×W×3."""
    return to_uint8(image[..., None] if image.ndim == 2 else image)


def fit(array: np.ndarray, side: int = TILE, nearest: bool = False) -> np.ndarray:
    """``array`` scaled so its longer side is at most ``side`` (labels and masks: ``nearest``); an image smaller
    than MIN_TILE is enlarged by a whole factor with nearest neighbour, so outlines drawn on it stay thin."""
    h, w = array.shape[:2]
    if max(h, w) < MIN_TILE:
        f = math.ceil(MIN_TILE / max(h, w, 1))
        return np.repeat(np.repeat(array, f, axis=0), f, axis=1)
    if max(h, w) <= side:
        return array
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    return np.asarray(Image.fromarray(array).resize(size, Image.NEAREST if nearest else Image.BILINEAR))


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` of its edge."""
    return mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], np.float32)


def mask_overlay(image: np.ndarray, mask: np.ndarray, color: str = "#FF2D2D", alpha: float = 0.35) -> np.ndarray:
    """``image`` (display size) with ``mask`` tinted in and outlined in ``color``."""
    image = fit(rgb(image))
    mask = fit(mask.astype(bool), nearest=True)
    if mask.shape != image.shape[:2]:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(image.shape[1::-1], Image.NEAREST)) > 127
    out = image.astype(np.float32)
    c = hex_rgb(color)
    out[mask] = (1 - alpha) * out[mask] + alpha * c
    out[outline(mask, 1 + max(image.shape[:2]) // 128)] = c
    return out.astype(np.uint8)


def box_overlay(image: np.ndarray, box: tuple[int, int, int, int], color: str = "#FFD700") -> np.ndarray:
    """``image`` (display size) with the rectangle ``box`` (x0, y0, x1, y1 in ``image``'s own pixels) drawn on it."""
    return boxes_overlay(image, [box], color)


def boxes_overlay(image: np.ndarray, boxes: list[tuple[int, int, int, int]], color: str = "#FFD700") -> np.ndarray:
    """``image`` (display size) with every rectangle of ``boxes`` (in ``image``'s own pixels) drawn on it."""
    full = rgb(image)
    small = fit(full).copy()
    s = small.shape[1] / full.shape[1]
    h, w = small.shape[:2]
    c = hex_rgb(color).astype(np.uint8)
    for box in boxes:
        x0, y0 = min(max(int(box[0] * s), 0), w - 1), min(max(int(box[1] * s), 0), h - 1)
        x1 = min(max(int(np.ceil(box[2] * s)) - 1, x0), w - 1)
        y1 = min(max(int(np.ceil(box[3] * s)) - 1, y0), h - 1)
        for t in (1, 2):  # two pixels wide, outside the box: a small painted object inside stays visible
            xa, xb, ya, yb = max(x0 - t, 0), min(x1 + t, w - 1), max(y0 - t, 0), min(y1 + t, h - 1)
            small[ya : yb + 1, [xa, xb]] = c
            small[[ya, yb], xa : xb + 1] = c
    return small


# Novel classes are drawn in colours no land-cover palette uses for a base class, and more opaquely, so the class
# the experiment is about stands out in every overlay (a novel class's own colour may be close to a base class's).
NOVEL_OVERLAY = ((255, 0, 255), (0, 255, 255), (255, 255, 0), (255, 64, 64))
NOVEL_ALPHA = 0.85


def overlay_lut(classes) -> np.ndarray:
    """The class map's display colours with the novel classes replaced by :data:`NOVEL_OVERLAY` colours."""
    lut = classes.lut().copy()
    for i, cid in enumerate(classes.novel_ids):
        lut[cid] = NOVEL_OVERLAY[i % len(NOVEL_OVERLAY)]
    return lut


def label_overlay(image: np.ndarray, label: np.ndarray, lut: np.ndarray, alpha: float = 0.55,
                  strong: tuple[int, ...] = ()) -> np.ndarray:
    """Label colours (``lut``: 256×3, class id → RGB) blended over the image, the ``strong`` class ids at
    :data:`NOVEL_ALPHA`; both scaled to at most TILE px."""
    image = fit(rgb(image))
    label = fit(label, nearest=True)
    if label.shape != image.shape[:2]:
        label = np.asarray(Image.fromarray(label).resize(image.shape[1::-1], Image.NEAREST))
    a = np.where(np.isin(label, strong), NOVEL_ALPHA, alpha)[..., None] if strong else alpha
    out = (1 - a) * image.astype(np.float32) + a * lut[label].astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- grids
@dataclass
class Tile:
    """One cell of an image grid: an image (None: nothing there, shown as ``missing``) and its caption."""

    image: np.ndarray | None
    caption: str = ""
    color: str = "black"
    bold: bool = False


def tile_grid(rows: list[list[Tile | None]], row_labels: list[str], col_titles: list[str] | None = None,
              inches: float = 1.9, wrap: int = 30) -> Figure:
    """A grid of image tiles with a caption under each, a label left of each row and a title over each column."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig = Figure(figsize=(nc * inches + 0.5, nr * (inches + 0.55) + (0.3 if col_titles else 0)), layout="constrained")
    axes = fig.subplots(nr, nc, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            tile = row[j] if j < len(row) else None
            if tile is None:
                ax.axis("off")
                continue
            if tile.image is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", color="#999999", fontsize=9,
                        transform=ax.transAxes)
            else:
                ax.imshow(tile.image, interpolation="nearest")
            ax.set_xlabel(textwrap.fill(tile.caption, wrap), fontsize=7, color=tile.color,
                          fontweight="bold" if tile.bold else "normal")
        axes[i][0].set_ylabel(textwrap.fill(row_labels[i], 22), fontsize=8)
    for j, title in enumerate(col_titles or []):
        if j < nc:
            axes[0][j].set_title(title, fontsize=8)
    return fig


def painting_samples_figure(quality: dict, folder: Path) -> Figure:
    """Rows of held-out painting-quality tests (``quality["samples"]``, files in ``folder``): the query window
    before painting, then each backend's painted window with the object outlined."""
    names = list(quality["backends"])

    def tile(file: str | None, caption: str) -> Tile:
        path = Path(folder) / file if file else None
        image = fit(np.asarray(Image.open(path).convert("RGB"))) if path and path.is_file() else None
        return Tile(image, caption)

    shown = quality["samples"]
    rows = [[tile(s["window"], "before")] + [tile(s["painted"].get(n), Path(n).name) for n in names] for s in shown]
    return tile_grid(rows, [f"{s['class']} · {s['image']}" for s in shown],
                     ["query window"] + [Path(n).name for n in names])


def conditioning_figure(conditioning: dict, folder: Path) -> Figure:
    """Rows of held-out conditioning tests (``conditioning["samples"]``, files in ``folder``): both references,
    the masked real window, the paintings from the true, the wrong and no reference, and the real window."""
    columns = [("ref_true", "true reference"), ("ref_wrong", "wrong reference"), ("masked", "masked window"),
               ("true", "painted: true"), ("wrong", "painted: wrong"), ("null", "painted: none"), ("real", "real")]

    def tile(file: str | None) -> Tile:
        path = Path(folder) / file if file else None
        image = fit(np.asarray(Image.open(path).convert("RGB"))) if path and path.is_file() else None
        return Tile(image, "")

    shown = conditioning["samples"]
    rows = [[tile(s["files"].get(key)) for key, _ in columns] for s in shown]
    return tile_grid(rows, [f"{s['class']} (wrong: {s['wrong_class']})" for s in shown], [t for _, t in columns])


# --------------------------------------------------------------------------------------------- charts
def novel_chart(arms: list[str], models: list[str], means: dict[tuple[str, str], float],
                stds: dict[tuple[str, str], float], seeds: dict[tuple[str, str], list[float]],
                ylabel: str = "novel mIoU (%)", ax=None) -> Figure:
    """Bars of mean (error bar: std) per arm, grouped by model when there are several; each seed as a dot. With
    ``ax``, drawn into that panel of another figure (which is returned)."""
    grouped = len(models) > 1
    width = 0.8 / len(arms) if grouped else 0.7
    if ax is None:
        fig = Figure(figsize=(max(5.0, 1.1 * len(arms) * len(models) + 1.5), 3.6), layout="constrained")
        ax = fig.subplots()
    fig = ax.figure
    for a, arm in enumerate(arms):
        color = PALETTE[a % len(PALETTE)]
        for m, model in enumerate(models):
            key = (arm, model)
            if key not in means or means[key] is None:
                continue
            x = m + (a - (len(arms) - 1) / 2) * width if grouped else a
            ax.bar(x, means[key], width * 0.9, yerr=stds.get(key) or 0.0, color=color, alpha=0.85, capsize=4,
                   label=arm if m == 0 else None, edgecolor="black", linewidth=0.5)
            values = [v for v in seeds.get(key, []) if v is not None]
            if values:
                jitter = np.linspace(-width * 0.2, width * 0.2, len(values)) if len(values) > 1 else [0.0]
                ax.scatter(np.asarray(jitter) + x, values, s=14, color="black", zorder=3)
    if grouped:
        ax.set_xticks(range(len(models)), models)
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.set_xticks(range(len(arms)), arms, rotation=15 if len(arms) > 3 else 0)
        ax.set_title(models[0] if models else "", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


def curve_chart(curve: dict) -> Figure:
    """The painter's learning curve (:func:`paintseg.evaluate.curve.painting_curve`): the probe's class rate,
    ΔE to the real instances, and novelty / diversity against training minutes (steps where minutes are unknown),
    one line per painting strength; the copy-paste controls as horizontal lines."""
    panels = [("class_rate", "probe: called the class", True), ("delta_e", "ΔE to real instances (lower: closer)",
                                                                   False),
              ("novelty", "novelty (solid) · diversity (dashed)", False)]
    fig = Figure(figsize=(12, 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels))
    timed = all(p["minutes"] is not None for p in curve["points"])
    for ax, (metric, title, percent) in zip(axes, panels):
        for s, strength in enumerate(curve["strengths"]):
            color = PALETTE[s % len(PALETTE)]
            rows = [p for p in curve["points"] if p["strength"] == strength and p.get(metric) is not None]
            x = [p["minutes"] if timed else p["step"] for p in rows]
            ax.plot(x, [p[metric] for p in rows], "o-", color=color, label=f"painted @ {strength:g}")
            if metric == "novelty":
                div = [(xx, p["diversity"]) for xx, p in zip(x, rows) if p.get("diversity") is not None]
                if div:
                    ax.plot(*zip(*div), "s--", color=color, alpha=0.7)
        for c, (name, row) in enumerate(curve["controls"].items()):
            if row.get(metric) is not None:
                ax.axhline(row[metric], color=["#444444", "#AA3377", "#228833"][c % 3], ls=":", label=name)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_minor_formatter(lambda v, _: "")
        ax.set_xlabel("training minutes" if timed else "training steps")
        ax.set_title(title, fontsize=9)
        if percent:
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def stage_chart(labels: list[str], seconds: list[float], cached: list[bool], texts: list[str] | None = None) -> Figure:
    """Horizontal bars: seconds per stage, in run order from the top, each labelled with ``texts``; cached: grey."""
    fig = Figure(figsize=(8, 0.28 * len(labels) + 1.0), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(labels))
    bars = ax.barh(y, seconds, color=["#BBBBBB" if c else "#4477AA" for c in cached])
    if texts:
        ax.bar_label(bars, texts, padding=3, fontsize=7)
        ax.set_xlim(0, max(max(seconds, default=0.0), 1e-6) * 1.15)
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (grey: cached)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return fig


# --------------------------------------------------------------------------------------------- grids from stage folders
def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pick_placements(placements: list[int], curated: dict[int, dict], n: int) -> list[int]:
    """``n`` placements in index order, up to a third of them rejected ones (when any were rejected)."""
    rejected = [p for p in placements if p in curated and not curated[p].get("kept", True)]
    take = rejected[: max(1, n // 3)] if rejected else []
    rest = [p for p in placements if p not in take]
    return sorted(take + rest[: max(n - len(take), 0)])


class _Scenes:
    """Trainset scenes by name, each read once, as display RGB."""

    def __init__(self, episode: Episode):
        self.samples = {s.name: s for s in episode.train}
        self.images: dict[str, np.ndarray] = {}

    def window(self, name: str, window: tuple[int, int, int, int]) -> np.ndarray | None:
        if name not in self.samples:
            return None
        if name not in self.images:
            self.images[name] = rgb(read_image(self.samples[name].image).array)
        x0, y0, x1, y1 = window
        return self.images[name][y0:y1, x0:x1]


def _mask_tile(cand_dir: Path, cur: Path, entry: dict, line: dict, image: np.ndarray | None) -> Tile:
    """The chosen candidate with the mask that labels it: the refined mask, else the candidate's object mask."""
    refine = line.get("refine") or "none"
    path, caption = cand_dir / entry["mask_file"], "object mask (no refiner)"
    if refine != "none":
        refined = cur / "refined" / f"{Path(entry['file']).stem}_{refine}.png"
        path, caption = (refined, f"{refine} mask") if refined.is_file() else (
            path, f"object mask (not refined by {refine})")
    if image is None or not path.is_file():
        return Tile(None, caption)
    return Tile(mask_overlay(image, read_label(path).array > 127), caption)


def sample_grid(episode: Episode, paint: Path, cur: Path, n: int) -> Figure:
    """``n`` placements of one painted arm (``paint``: the generate folder, ``cur``: the curated set), one per row:
    reference crop | scene window before painting | every candidate with its score | the chosen one | its label."""
    cand_dir = paint / "candidates"
    by_placement: dict[int, list[dict]] = defaultdict(list)
    for e in read_manifest(cand_dir / "manifest.jsonl"):
        by_placement[int(e["placement"])].append(e)
    refs = load_references(paint / "references")
    curated = {int(e["placement"]): e for e in read_jsonl(cur / "manifest.jsonl")}
    scores = json.loads((cur / "scores.json").read_text())["scores"] if (cur / "scores.json").is_file() else {}
    k_max = max(len(v) for v in by_placement.values())
    scenes = _Scenes(episode)
    rows, labels = [], []
    for p in pick_placements(sorted(by_placement), curated, n):
        entries = sorted(by_placement[p], key=lambda e: int(e["candidate"]))
        first, line = entries[0], curated.get(p)
        chosen = int(line["candidate"]) if line else None
        r = int(first["reference"])
        ref = (Tile(mask_overlay(refs[r].image, refs[r].mask, "#FFD700", 0.0), refs[r].source) if 0 <= r < len(refs)
               else Tile(None, f"reference {r} not found"))
        x0, y0, x1, y1 = (int(v) for v in first["window"])
        bx0, by0, bx1, by1 = (int(v) for v in first["box"])
        window = scenes.window(first["scene"], (x0, y0, x1, y1))
        scene = (Tile(box_overlay(window, (bx0 - x0, by0 - y0, bx1 - x0, by1 - y0)), f"{first['scene']} @{x0},{y0}")
                 if window is not None else Tile(None, f"{first['scene']} is not in the trainset"))
        row: list[Tile | None] = [ref, scene]
        images: dict[int, np.ndarray | None] = {}
        s = scores.get(str(p), [])
        for e in entries:
            k = int(e["candidate"])
            path = cand_dir / e["file"]
            images[k] = rgb(read_image(path).array) if path.is_file() else None
            text = f"score {s[k]:.3f}" if k < len(s) and _finite(s[k]) else "no score"
            row.append(Tile(None if images[k] is None else fit(images[k]), text + (" ✓" if k == chosen else ""),
                            "#1a7f37" if k == chosen else "black", k == chosen))
        row += [None] * (k_max - len(entries))
        if line is None:
            row += [Tile(None, "not in the curated manifest"), None]
        else:
            kept, image = line.get("kept", True), images.get(chosen)
            row.append(Tile(None if image is None else fit(image),
                            f"k{chosen} kept" if kept else f"rejected: {line.get('why', '?')}",
                            "#1a7f37" if kept else "#cf222e", True))
            entry = next((e for e in entries if int(e["candidate"]) == chosen), first)
            row.append(_mask_tile(cand_dir, cur, entry, line, image))
        rows.append(row)
        rejected = line is not None and not line.get("kept", True)
        labels.append(f"p{p} {episode.classes.name(int(first['class_id']))}" + (" (rejected)" if rejected else ""))
    titles = ["reference", "scene before"] + [f"candidate k{k}" for k in range(k_max)] + ["chosen", "label mask"]
    return tile_grid(rows, labels, titles)


def _surroundings(image: np.ndarray, box: tuple[int, int, int, int], context: float = 1.0,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """A crop of ``image`` around ``box`` grown by ``context`` times its size on every side (at least 24 px), the
    instance outlined (``mask``, full-image boolean) or, without one, the box drawn."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    gx, gy = max(int(context * (x1 - x0)), 24), max(int(context * (y1 - y0)), 24)
    cx0, cy0, cx1, cy1 = max(x0 - gx, 0), max(y0 - gy, 0), min(x1 + gx, w), min(y1 + gy, h)
    crop = rgb(image)[cy0:cy1, cx0:cx1]
    if mask is not None:
        return fit(mask_overlay(crop, mask[cy0:cy1, cx0:cx1], "#FF00FF", 0.0))
    return boxes_overlay(crop, [(x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0)])


def placement_figure(episode: Episode, folder: Path, scenes: int = 3, per_class: int = 6) -> Figure:
    """Where instances were placed (``folder``: a generate or place folder with placements.jsonl and references/):
    the trainset scenes holding most placements with every box drawn, then per novel class its support instances in
    their surroundings (instance outlined in magenta) beside the surroundings that placements chose (box in
    yellow), so a user sees at a glance whether boats went on water."""
    from paintseg.place.placement import load_placements
    from paintseg.place.references import extract_references

    plan = load_placements(folder / "placements.jsonl")
    refs = (load_references(folder / "references") if (folder / "references" / "references.jsonl").is_file()
            else extract_references(episode))
    by_scene: dict[str, list] = defaultdict(list)
    for p in plan:
        by_scene[p.scene].append(p)
    train = {s.name: s for s in episode.train}
    support = {s.name: s for s in episode.support_samples}
    busiest = sorted(by_scene, key=lambda n: (-len(by_scene[n]), n))[:scenes]
    rows: list[list[Tile | None]] = [[Tile(boxes_overlay(read_image(train[n].image).array,
                                                         [tuple(p.box) for p in by_scene[n]]),
                                           f"{n}: {len(by_scene[n])} placements") for n in busiest if n in train]]
    labels = ["placement map"]
    cache: dict[str, np.ndarray] = {}

    def image_of(sample: Sample) -> np.ndarray:
        if sample.name not in cache:
            cache[sample.name] = read_image(sample.image).array
        return cache[sample.name]

    for cid in episode.classes.novel_ids:
        name = episode.classes.name(cid)
        mine = [r for r in refs if r.class_id == cid and r.source in support]
        step = max(len(mine) // per_class, 1)
        row = []
        for r in mine[::step][:per_class]:
            img = image_of(support[r.source])
            full = np.zeros(img.shape[:2], bool)
            full[r.box.y0 : r.box.y1, r.box.x0 : r.box.x1] = r.mask
            row.append(Tile(_surroundings(img, tuple(r.instance_box), mask=full), r.source))
        rows.append(row or [Tile(None, "no support instance")])
        labels.append(f"{name}: support")
        chosen = [p for p in plan if p.class_id == cid and p.scene in train]
        step = max(len(chosen) // per_class, 1)
        rows.append([Tile(_surroundings(image_of(train[p.scene]), tuple(p.box)), p.scene)
                     for p in chosen[::step][:per_class]] or [Tile(None, "no placement")])
        labels.append(f"{name}: placed")
    return tile_grid(rows, labels)


def find_prediction(folder: Path, stem: str) -> Path | None:
    """The prediction file of query image ``stem`` in ``folder`` (``<stem>.tif`` or ``.png``), or None."""
    return next((folder / f"{stem}{s}" for s in PREDICTION_SUFFIXES if (folder / f"{stem}{s}").is_file()), None)


def prediction_grid(episode: Episode, queries: list[Sample], columns: list[tuple[str, Path | None]]) -> Figure:
    """One row per query image: the image | its ground truth | each (title, prediction folder) of ``columns``, as
    label colours blended over the image; a missing folder or file is a ``missing`` tile."""
    lut, novel = overlay_lut(episode.classes), tuple(episode.classes.novel_ids)
    rows = []
    for q in queries:
        image = rgb(episode.read_image(q).array)
        row = [Tile(fit(image)), Tile(label_overlay(image, episode.read_label(q).array, lut, strong=novel)
                                      if q.label else None)]
        for _, folder in columns:
            pred = find_prediction(folder, q.stem) if folder is not None and folder.is_dir() else None
            row.append(Tile(None if pred is None else label_overlay(image, read_label(pred, episode.classes).array,
                                                                      lut, strong=novel)))
        rows.append(row)
    return tile_grid(rows, [q.stem for q in queries], ["image", "ground truth"] + [c[0] for c in columns],
                     inches=2.6)
