"""Built-in procedural demo: aerial-like scenes written as a few-shot episode, so paintseg runs with no download.

::

    root = make_demo_episode("demo-episode")      # about 1.5 s with the defaults (one CPU core)
    Episode(root).problems()                      # -> []

Every scene is textured fields split into parcels, a water body (pond or river), 1-3 roads, buildings with shaded
roofs and shadows, and clumps of trees, seen at 0.5 m/pixel under a per-scene illumination and colour jitter with
pixel noise. Support and query scenes also hold 1-3 arrays of solar panels (the novel class); trainset scenes hold
base classes only: they are the scenes new instances get painted into. The layout and label conventions are those of
:func:`paintseg.data.split.split_dataset`: trainset labels carry base classes only, a support label only its novel
class (the rest 0), query labels everything. Images are 3-band uint8 GeoTIFFs in EPSG:32640, each scene at its own
origin, labels single-band GeoTIFFs of class ids.

The same arguments give the same arrays (scene ``i`` of a part draws from ``default_rng([seed, part, i])``). The
episode is written to a temporary sibling folder renamed when complete; ``out/demo.json`` records the arguments, so
a second call with the same arguments returns at once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .classes import BACKGROUND, IGNORE, ClassInfo, ClassMap
from .raster import Raster, write_image, write_label

FIELD, ROAD, BUILDING, WATER, TREE, SOLAR = 1, 2, 3, 4, 5, 6
DEMO_CLASSES = ClassMap([
    ClassInfo(BACKGROUND, "background", "background", ("#000000",)),
    ClassInfo(FIELD, "field", "base", ("#C8B45A",)),
    ClassInfo(ROAD, "road", "base", ("#FFFFFF",)),
    ClassInfo(BUILDING, "building", "base", ("#DE1F07",)),
    ClassInfo(WATER, "water", "base", ("#0045FF",)),
    ClassInfo(TREE, "tree", "base", ("#226126",)),
    ClassInfo(SOLAR, "solar panel", "novel", ("#F0A000",)),
    ClassInfo(IGNORE, "unlabeled", "ignore", ("#9B9B9B",)),
], "paintseg demo")
VERSION = 1  # bump when the scenes change: a folder made by another version is not reused
CRS_EPSG = 32640  # WGS 84 / UTM zone 40N
GSD = 0.5  # metres per pixel
PARTS = {"train": 0, "support": 1, "query": 2}

FIELD_TINTS = np.array([(118, 138, 72), (152, 136, 98), (108, 120, 66), (168, 152, 116), (136, 112, 82),
                        (128, 146, 88)], np.float32)
ROOF_TINTS = np.array([(164, 88, 66), (148, 148, 152), (202, 192, 172), (92, 92, 98), (214, 214, 208),
                       (176, 120, 90)], np.float32)


class DemoError(PaintsegError):
    """Demo arguments or an output folder that cannot be used; the message says what to pass instead."""


# --------------------------------------------------------------------------------------------- drawing helpers
def _noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Smooth value noise, about unit variance, with features ``cell`` pixels across."""
    n = max(2, int(size / max(cell, 1.0)) + 2)
    small = Image.fromarray(rng.standard_normal((n, n)).astype(np.float32), mode="F")
    return np.asarray(small.resize((size, size), Image.BICUBIC), np.float32)


def _curve(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance to a random straight or gently curved line across the scene, and the coordinate along it."""
    u, v = (yy, xx) if rng.random() < 0.5 else (xx, yy)
    a, slope = rng.uniform(0.15, 0.85) * size, rng.uniform(-0.5, 0.5)
    amp = rng.uniform(0.02, 0.08) * size if rng.random() < 0.5 else 0.0
    period, phase = rng.uniform(0.8, 2.0) * size, rng.uniform(0, 2 * np.pi)
    w = 2 * np.pi / period
    f = a + slope * (u - size / 2) + amp * np.sin(w * u + phase)
    fp = slope + amp * w * np.cos(w * u + phase)
    return np.abs(v - f) / np.sqrt(1 + fp**2), u


def _free(mask: np.ndarray, y: int, x: int, h: int, w: int, margin: int) -> bool:
    """Whether ``mask`` is all True over the box grown by ``margin`` (clipped at the scene edge)."""
    return bool(mask[max(0, y - margin): y + h + margin, max(0, x - margin): x + w + margin].all())


def _shade(img: np.ndarray, label: np.ndarray, obj: np.ndarray, sun: tuple[int, int], keep: tuple[int, ...],
           factor: float) -> None:
    """Darken the ground next to ``obj`` (the object shifted away from the sun), where the ground is ``keep``."""
    dy, dx = sun
    shifted = np.zeros_like(obj)
    h, w = obj.shape
    shifted[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
        obj[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    img[shifted & ~obj & np.isin(label, keep)] *= factor


# --------------------------------------------------------------------------------------------- one scene
def make_scene(rng: np.random.Generator, size: int, solar: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One scene: an H×W×3 uint8 image and its H×W label of class ids, with ``solar`` arrays of solar panels."""
    f = size / 256
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    label = np.full((size, size), FIELD, np.uint8)
    s = max(1, round(2 * f))
    sun = (s if rng.random() < 0.5 else -s, s if rng.random() < 0.5 else -s)

    # fields: Voronoi parcels of different tints, some with crop rows, and two scales of texture
    k = int(rng.integers(3, 8))
    seeds = rng.uniform(0, size, (k, 2)).astype(np.float32)
    cell = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
    tints = FIELD_TINTS[rng.integers(0, len(FIELD_TINTS), k)] + rng.normal(0, 7, (k, 3)).astype(np.float32)
    angle, period = rng.uniform(0, np.pi, k), rng.uniform(4, 9, k) * max(f, 0.5)
    amp = np.where(rng.random(k) < 0.5, rng.uniform(4, 10, k), 0.0)
    rows = amp[cell] * np.sin((xx * np.cos(angle)[cell] + yy * np.sin(angle)[cell]) * 2 * np.pi / period[cell])
    tex = 9 * _noise(rng, size, 40 * f) + 5 * _noise(rng, size, 6 * f) + rows
    img = tints[cell] + tex[..., None].astype(np.float32)

    # water: a pond (noisy ellipse) or a river (wide curved band), darker and greener away from the shore
    if rng.random() < 0.55:
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        ry, rx = rng.uniform(16, 45, 2) * f
        r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) + 0.18 * _noise(rng, size, 24 * f)
    else:
        d, _ = _curve(rng, yy, xx, size)
        r = d / (rng.uniform(6, 14) * f) + 0.12 * _noise(rng, size, 24 * f)
    water = r < 1
    depth = np.clip(1 - r, 0, 1)[..., None]
    blue = np.array([62, 96, 112], np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    wtex = blue - depth * np.array([24, 30, 22], np.float32) + 5 * _noise(rng, size, 8 * f)[..., None]
    img[water], label[water] = wtex[water], WATER

    # roads: grey asphalt with a dashed lighter centre line
    for _ in range(int(rng.integers(1, 4))):
        d, along = _curve(rng, yy, xx, size)
        half = max(1.0, rng.uniform(2.5, 5.0) * f)
        road = d < half
        grey = rng.uniform(100, 135) + np.array([0, 1, 5], np.float32)
        rtex = grey + 4 * _noise(rng, size, 3 * f)[..., None]
        line = road & (d < max(0.5, 0.6 * f)) & (np.sin(along / (5 * max(f, 0.4))) > -0.3)
        rtex[line] += 70
        img[road], label[road] = rtex[road], ROAD

    # buildings: rectangles on free field, gable roofs (two shaded halves), dark eaves and a shadow
    for _ in range(int(rng.integers(2, 9))):
        h, w = (max(4, int(v)) for v in rng.uniform(10, 32, 2) * f)
        field = label == FIELD
        for _try in range(30):
            y, x = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
            if _free(field, y, x, h, w, max(1, round(2 * f))):
                break
        else:
            continue
        box = np.zeros_like(water)
        box[y: y + h, x: x + w] = True
        _shade(img, label, box, (2 * sun[0], 2 * sun[1]), (FIELD,), 0.6)  # buildings are taller than trees
        roof = ROOF_TINTS[rng.integers(0, len(ROOF_TINTS))] * rng.uniform(0.9, 1.1)
        along = np.arange(h)[:, None] - (h - 1) / 2 if h >= w else np.arange(w)[None, :] - (w - 1) / 2
        shade = np.where(along < 0, 1.1, 0.84)[..., None] * roof + 3 * rng.standard_normal((h, w, 1))
        shade[np.broadcast_to(np.abs(along) < 0.6, (h, w))] *= 1.2  # lighter ridge
        shade[[0, -1]] *= 0.75  # dark eaves
        shade[:, [0, -1]] *= 0.75
        img[y: y + h, x: x + w], label[y: y + h, x: x + w] = shade, BUILDING

    # solar panel arrays: dark blue-grey panels with thin lighter grid lines, on free field
    for _ in range(solar):
        h, w = (max(4, int(v)) for v in rng.uniform(12, 40, 2) * f)
        integral = np.pad((label == FIELD).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        ys, xs = rng.integers(0, size - h, 200), rng.integers(0, size - w, 200)
        score = integral[ys + h, xs + w] - integral[ys, xs + w] - integral[ys + h, xs] + integral[ys, xs]
        y, x = int(ys[score.argmax()]), int(xs[score.argmax()])  # the most free of 200 random spots
        box = np.zeros_like(water)
        box[y: y + h, x: x + w] = True
        _shade(img, label, box, sun, (FIELD, ROAD), 0.7)
        panel = np.array([44, 54, 78], np.float32) + rng.normal(0, 5, 3).astype(np.float32)
        pitch_y, pitch_x = (max(2, round(v)) for v in rng.uniform(3, 6, 2) * max(f, 0.5))
        grid = (np.arange(h) % pitch_y == 0)[:, None] | (np.arange(w) % pitch_x == 0)[None, :]
        ptex = panel + 6 * (np.arange(w) / w - 0.5)[None, :, None] + 3 * rng.standard_normal((h, w, 1))
        ptex[grid] += 38
        img[y: y + h, x: x + w], label[y: y + h, x: x + w] = ptex, SOLAR

    # trees: clumps of round crowns, lit on the sun side, on what is still field
    crowns = np.zeros_like(water)
    ttex = np.zeros_like(img)
    for _ in range(int(rng.integers(3, 10))):
        cy, cx = rng.uniform(0, size, 2)
        for _b in range(int(rng.integers(3, 12))):
            by, bx = np.array([cy, cx]) + rng.normal(0, 10 * f, 2)
            rad = rng.uniform(3, 8) * max(f, 0.4)
            y0, y1 = max(0, int(by - rad)), min(size, int(by + rad) + 2)
            x0, x1 = max(0, int(bx - rad)), min(size, int(bx + rad) + 2)
            colour = np.array([44, 74, 38], np.float32) * rng.uniform(0.85, 1.2)
            if y0 >= y1 or x0 >= x1:
                continue
            dy, dx = yy[y0:y1, x0:x1] - by, xx[y0:y1, x0:x1] - bx
            blob = dy**2 + dx**2 < rad**2
            lit = 1 - 0.25 * (dy * np.sign(sun[0]) + dx * np.sign(sun[1])) / rad
            ttex[y0:y1, x0:x1][blob] = (colour * lit[..., None])[blob]
            crowns[y0:y1, x0:x1] |= blob
    crowns &= label == FIELD
    _shade(img, label, crowns, sun, (FIELD, ROAD), 0.7)
    ttex += 9 * _noise(rng, size, 2 * f)[..., None]
    img[crowns], label[crowns] = ttex[crowns], TREE

    # the sensor: per-scene illumination and colour jitter, haze, a little blur and pixel noise
    gain = rng.uniform(0.85, 1.15) * (1 + rng.normal(0, 0.04, 3))
    img = img * gain + rng.normal(0, 6, 3)
    haze = rng.uniform(0, 0.15)
    img = (1 - haze) * img + haze * np.array([170, 175, 185])
    img = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6)))
    img = img + rng.normal(0, 4, img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), label


def demo_scene(part: str, index: int, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` of a part ("train", "support" or "query") as written, with its full label (before the
    episode's relabelling). Train scenes hold no solar panels, support and query scenes 1-3 arrays."""
    rng = np.random.default_rng([seed, PARTS[part], index])
    return make_scene(rng, size, 0 if part == "train" else int(rng.integers(1, 4)))


def _relabel(label: np.ndarray, part: str) -> np.ndarray:
    """The conventions of paintseg.data.split: train drops the novel class, a support label keeps only it."""
    if part == "train":
        return np.where(label == SOLAR, BACKGROUND, label).astype(np.uint8)
    if part == "support":
        return np.where((label == SOLAR) | (label == IGNORE), label, BACKGROUND).astype(np.uint8)
    return label


# --------------------------------------------------------------------------------------------- the episode
def _config(scenes: int, size: int, shots: int, query: int, seed: int) -> dict:
    return {"generator": "paintseg.data.demo", "version": VERSION,
            "args": {"scenes": scenes, "size": size, "shots": shots, "query": query, "seed": seed}}


def _check_args(scenes: int, size: int, shots: int, query: int, seed: int) -> None:
    for name, value, low in (("scenes", scenes, 1), ("shots", shots, 1), ("query", query, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise DemoError(f"{name}={value!r}: must be an integer >= {low}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 64 or size % 32:
        raise DemoError(f"size={size!r}: must be a multiple of 32 and at least 64 (for example 256)")


def _existing(out: Path, config: dict) -> bool:
    """True if ``out`` already holds this demo; False if it is free to use (absent or an empty folder)."""
    if not out.exists():
        return False
    if out.is_dir() and not any(out.iterdir()):
        return False
    fix = "pass another folder or delete this one"
    record = out / "demo.json"
    try:
        found = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        raise DemoError(f"{out}: exists and is not a paintseg demo episode (no readable demo.json); {fix}") from None
    if found != config:
        raise DemoError(f"{out}: holds a demo episode made with {found.get('args')} (version "
                        f"{found.get('version')}), not {config['args']} (version {VERSION}); {fix}")
    missing = [n for n in ("classes.json", "train.txt", "val.json") if not (out / n).is_file()]
    if missing:
        raise DemoError(f"{out}: demo episode is incomplete ({', '.join(missing)} missing); {fix}")
    return True


def make_demo_episode(out: str | Path, scenes: int = 24, size: int = 256, shots: int = 5, query: int = 6,
                      seed: int = 0, progress: bool = True) -> Path:
    """Write a demo few-shot episode (novel class: solar panel) to ``out`` and return ``out``.

    ``scenes`` trainset scenes with base classes only, ``shots`` support and ``query`` query scenes with 1-3 solar
    panel arrays each, all ``size``×``size`` pixels. An ``out`` that already holds the demo made with the same
    arguments is returned untouched; any other existing, non-empty ``out`` is a :class:`DemoError`.
    """
    _check_args(scenes, size, shots, query, seed)
    out = Path(out)
    config = _config(int(scenes), int(size), int(shots), int(query), int(seed))
    if _existing(out, config):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if tmp.exists():  # left by a killed run of a process with the same id
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        _write(tmp, config["args"], progress)
        try:
            os.rename(tmp, out)  # atomic; succeeds over an empty folder, fails over a full one
        except OSError:
            if _existing(out, config):  # another process made the same demo meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise DemoError(f"{out}: appeared while the demo was written; pass another folder or delete it") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(root: Path, args: dict, progress: bool) -> None:
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    size, seed = args["size"], args["seed"]
    crs = CRS.from_epsg(CRS_EPSG)
    DEMO_CLASSES.save(root / "classes.json")
    jobs = [(part, i) for part, n in (("train", args["scenes"]), ("support", args["shots"]), ("query", args["query"]))
            for i in range(n)]
    names: dict[str, list[str]] = {part: [] for part in PARTS}
    for part, i in tqdm(jobs, desc="demo scenes", unit="scene", disable=not progress):
        image, label = demo_scene(part, i, size, seed)
        # scenes on a grid, one row per part, 64 m apart; UTM 40N near Dubai
        x0 = 300_000.0 + i * (size * GSD + 64)
        y0 = 2_780_000.0 - PARTS[part] * (size * GSD + 64)
        like = Raster(image, "GTiff", crs=crs, transform=Affine(GSD, 0.0, x0, 0.0, -GSD, y0))
        folder = root / ("trainset" if part == "train" else "valset")
        name = f"demo_{part}_{i:03d}"
        write_image(folder / "images" / f"{name}.tif", image, like=like)
        write_label(folder / "labels" / f"{name}.tif", _relabel(label, part), like=like, classes=DEMO_CLASSES)
        names[part].append(f"{name}.tif")
    val = {"support_set": {str(SOLAR): names["support"]}, "query_set": names["query"]}
    write_text(root / "val.json", json.dumps(val, indent=1) + "\n")
    write_text(root / "train.txt", "".join(n + "\n" for n in names["train"]))
    write_text(root / "demo.json", json.dumps(_config(**args), indent=1) + "\n")
