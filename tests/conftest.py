"""Shared fixtures and builders: tiny real episodes built in tmp_path (pools in fields, pools on water, texture
scenes for the generator), the generator's quick test config, and the path to ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paintseg.config import GeneratorConfig
from paintseg.data.classes import ClassInfo, ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import write_image, write_label

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Colour of each class in the tiny scenes (mean RGB); the novel class "pool" is a bright cyan square.
TINY_COLORS = {1: (40, 140, 40), 2: (30, 60, 160), 3: (150, 150, 150), 4: (0, 230, 230)}


def tiny_classes() -> ClassMap:
    return ClassMap([
        ClassInfo(0, "background", "background", ("#000000",)),
        ClassInfo(1, "field", "base", ("#28A028",)),
        ClassInfo(2, "water", "base", ("#1E3CA0",)),
        ClassInfo(3, "road", "base", ("#969696",)),
        ClassInfo(4, "pool", "novel", ("#00E6E6",)),
        ClassInfo(255, "ignore", "ignore", ("#FF00FF",)),
    ])


def tiny_scene(rng: np.random.Generator, size: int = 64, pools: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A field with a water body, a road and ``pools`` novel squares; returns (image uint8 HxWx3, label HxW)."""
    label = np.full((size, size), 1, np.uint8)
    w0 = int(rng.integers(0, size // 2))
    label[:, w0 : w0 + size // 4] = 2
    r0 = int(rng.integers(0, size - 6))
    label[r0 : r0 + 5, :] = 3
    for _ in range(pools):
        s = int(rng.integers(7, 12))
        y, x = (int(v) for v in rng.integers(0, size - s, 2))
        label[y : y + s, x : x + s] = 4
    image = np.zeros((size, size, 3), np.float32)
    for cid, col in TINY_COLORS.items():
        image[label == cid] = col
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_tiny_episode(root: Path, n_train: int = 6, shots: int = 2, n_query: int = 3, size: int = 64,
                      seed: int = 0, fmt: str = ".png") -> Path:
    """Write a complete challenge-layout episode (classes.json, train.txt, val.json, images, labels) to ``root``."""
    rng = np.random.default_rng(seed)
    classes = tiny_classes()
    root.mkdir(parents=True, exist_ok=True)
    classes.save(root / "classes.json")
    label_suffix = ".tif" if fmt == ".tif" else ".png"
    train_names, support, query = [], [], []
    for i in range(n_train):
        img, lab = tiny_scene(rng, size, pools=int(rng.integers(0, 2)))
        lab[lab == 4] = 0  # trainset labels carry base classes only
        name = f"train_{i}{fmt}"
        write_image(root / "trainset/images" / name, img)
        write_label(root / "trainset/labels" / f"train_{i}{label_suffix}", lab, classes=classes)
        train_names.append(name)
    for i in range(shots):
        img, lab = tiny_scene(rng, size, pools=1)
        lab = np.where(lab == 4, 4, 0).astype(np.uint8)  # support labels carry only the novel class
        name = f"support_{i}{fmt}"
        write_image(root / "valset/images" / name, img)
        write_label(root / "valset/labels" / f"support_{i}{label_suffix}", lab, classes=classes)
        support.append(name)
    for i in range(n_query):
        img, lab = tiny_scene(rng, size, pools=2)
        name = f"query_{i}{fmt}"
        write_image(root / "valset/images" / name, img)
        write_label(root / "valset/labels" / f"query_{i}{label_suffix}", lab, classes=classes)
        query.append(name)
    (root / "train.txt").write_text("\n".join(train_names) + "\n")
    (root / "val.json").write_text(json.dumps({"support_set": {"4": support}, "query_set": query}, indent=1))
    return root


@pytest.fixture
def tiny_episode(tmp_path: Path) -> Path:
    return make_tiny_episode(tmp_path / "episode")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (it lives beside the repository as ../shared/data)")
    return SHARED_DATA


# A labelled dataset (groups of images + colour-coded labels) for `paintseg split`.
H, W = 80, 96  # every tiny image; with tile 64: rows start at 0 and 16, columns at 0 and 32 -> 4 tiles
POOL = 4  # the novel class of tiny_classes()


def scene(rng: np.random.Generator, pools: int) -> tuple[np.ndarray, np.ndarray]:
    """A field with water, a road, ``pools`` 10x10 novel squares and an ignore border; (image, label)."""
    label = np.full((H, W), 1, np.uint8)
    label[:, int(rng.integers(0, 40)) :][:, :20] = 2
    label[int(rng.integers(0, H - 6)) :][:5] = 3
    for _ in range(pools):
        y, x = int(rng.integers(0, H - 10)), int(rng.integers(0, W - 10))
        label[y : y + 10, x : x + 10] = POOL
    label[[0, -1], :] = label[:, [0, -1]] = 255  # every tile touches the image edge
    image = np.zeros((H, W, 3), np.float32)
    for cid, col in TINY_COLORS.items():
        image[label == cid] = col
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_dataset(root: Path, groups: int = 6, per_group: int = 2, pools: int = 1, seed: int = 0) -> Path:
    """A fully labelled dataset in the form many ship (not yet an episode):
    ``root/area_<g>/{images,labels}/img_<k>.png``: RGB images and colour-coded RGB labels (as many datasets ship).

    The last group has no novel class, so the split has to look for it."""
    rng = np.random.default_rng(seed)
    lut = tiny_classes().lut()
    for g in range(1, groups + 1):
        for k in range(per_group):
            image, label = scene(rng, pools if g < groups else 0)
            for sub, arr in (("images", image), ("labels", lut[label])):
                (root / f"area_{g}" / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / f"area_{g}" / sub / f"img_{k}.png")
    return root


# ------------------------------------------------------------------- pools on water (placement tests)
def paint_label(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    image = np.zeros((*label.shape, 3), np.float32)
    for cid, col in TINY_COLORS.items():
        image[label == cid] = col
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def pool_scene(rng: np.random.Generator, road: bool) -> np.ndarray:
    """A 64x64 field label with a 40-px water band holding an 8x8 pool (class 4), and a road when asked."""
    lab = np.full((64, 64), 1, np.uint8)
    w0 = int(rng.integers(0, 24))
    lab[:, w0 : w0 + 40] = 2
    if road:
        lab[56:62, :] = 3
    y0 = int(rng.integers(10, 40))
    lab[y0 : y0 + 8, w0 + 16 : w0 + 24] = 4
    return lab


def make_water_episode(root: Path, n_train: int = 6, shots: int = 3, seed: int = 0, queries: int = 0) -> Path:
    """An episode whose pools always lie in the middle of a water band; trainset scenes are 96x96 fields with a
    32-px vertical water band and a road; ``queries`` query scenes like the support ones, labelled in full."""
    rng = np.random.default_rng(seed)
    classes = tiny_classes()
    root.mkdir(parents=True)
    classes.save(root / "classes.json")
    train = []
    for i in range(n_train):
        lab = np.full((96, 96), 1, np.uint8)
        w0 = int(rng.integers(0, 64))
        lab[:, w0 : w0 + 32] = 2
        r0 = int(rng.integers(0, 90))
        lab[r0 : r0 + 6, :] = 3
        write_image(root / f"trainset/images/train_{i}.png", paint_label(lab, rng))
        write_label(root / f"trainset/labels/train_{i}.png", lab, classes=classes)
        train.append(f"train_{i}.png")
    support = []
    for i in range(shots):
        lab = pool_scene(rng, road=True)
        write_image(root / f"valset/images/support_{i}.png", paint_label(lab, rng))
        write_label(root / f"valset/labels/support_{i}.png", np.where(lab == 4, 4, 0).astype(np.uint8),
                    classes=classes)
        support.append(f"support_{i}.png")
    query = []
    for i in range(queries):
        lab = pool_scene(rng, road=False)
        write_image(root / f"valset/images/query_{i}.png", paint_label(lab, rng))
        write_label(root / f"valset/labels/query_{i}.png", lab, classes=classes)
        query.append(f"query_{i}.png")
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.json").write_text(json.dumps({"support_set": {"4": support}, "query_set": query}))
    return root

# ------------------------------------------- generator tests: texture scenes (test_diffusion, test_painter_budget)
GREY = 128
STRIPES, CHECKS = 1, 2  # class ids of texture A (red horizontal stripes) and texture B (green checkerboard)


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and steadiest on a shared CPU) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def texture(class_id: int, h: int, w: int) -> np.ndarray:
    """Texture A: red stripes 2 px high; texture B: a green checkerboard of 3 px cells (float RGB)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((h, w, 3), np.float32)
    if class_id == STRIPES:
        on = (yy // 2) % 2 == 0
        out[on], out[~on] = (230, 40, 40), (110, 10, 10)
    else:
        on = ((yy // 3) + (xx // 3)) % 2 == 0
        out[on], out[~on] = (40, 210, 40), (10, 90, 10)
    return out


def texture_scene(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A grey scene with up to two patches of each texture, so the scene alone never tells which one is hidden."""
    image = np.full((size, size, 3), GREY, np.float32)
    label = np.zeros((size, size), np.uint8)
    for cid in (STRIPES, CHECKS, STRIPES, CHECKS):
        for _ in range(20):
            h, w = (int(v) for v in rng.integers(10, 19, 2))
            y, x = (int(v) for v in rng.integers(0, size - 18, 2))
            if not label[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2].any():
                image[y : y + h, x : x + w] = texture(cid, h, w)
                label[y : y + h, x : x + w] = cid
                break
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_texture_episode(root: Path, scenes: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    classes = ClassMap([ClassInfo(0, "background", "background", ("#000000",)),
                        ClassInfo(STRIPES, "stripes", "base", ("#E62828",)),
                        ClassInfo(CHECKS, "checks", "base", ("#28D228",)),
                        ClassInfo(255, "ignore", "ignore", ())])
    root.mkdir(parents=True, exist_ok=True)
    classes.save(root / "classes.json")
    names = []
    for i in range(scenes):
        image, label = texture_scene(rng)
        names.append(f"scene_{i}.png")
        write_image(root / "trainset/images" / names[-1], image)
        write_label(root / "trainset/labels" / names[-1], label, classes=classes)
    (root / "train.txt").write_text("\n".join(names) + "\n")
    (root / "val.json").write_text(json.dumps({"support_set": {}, "query_set": []}))
    return root


@pytest.fixture(scope="module")
def texture_episode(tmp_path_factory) -> Episode:
    return Episode(make_texture_episode(tmp_path_factory.mktemp("textures")))


def quick_config(**changes) -> GeneratorConfig:
    base = dict(size="tiny", steps=4, batch=4, lr=1e-3, warmup_steps=2, seed=0, ema_decay=0.9, checkpoint_every=2,
                sample_every=2, sample_count=2, sample_steps=2, random_region_prob=0.2)
    return GeneratorConfig(**{**base, **changes})


def crash_at(index: int, monkeypatch) -> None:
    """Make generator training raise KeyboardInterrupt (a kill) when it reaches step ``index`` (0-based);
    ``monkeypatch.undo()`` lifts it."""
    from paintseg.paint.diffusion import train as train_module

    real_noise = train_module.step_noise

    def crash(config, step, *args):
        if step == index:
            raise KeyboardInterrupt("killed")
        return real_noise(config, step, *args)

    monkeypatch.setattr(train_module, "step_noise", crash)
