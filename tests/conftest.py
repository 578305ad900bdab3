"""Shared fixtures: tiny real episodes built in tmp_path, and the path to ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintseg.data.classes import ClassInfo, ClassMap
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
