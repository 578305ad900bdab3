"""Built-in datasets (paintseg.data.datasets): LoveDA, ISPRS Potsdam / Vaihingen and OpenEarthMap in their release
and mmsegmentation layouts, built small in tmp_path with each release's real file names, label encodings and no-data
values; every preset and layout splits into an episode that `paintseg data check` accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from typer.testing import CliRunner

from paintseg.cli import app
from paintseg.data.classes import ClassMap, ClassMapError
from paintseg.data.datasets import PRESETS, preset
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label
from paintseg.data.split import SplitError, split_dataset

SIZE = 96
ISPRS_COLOURS = {1: (255, 255, 255), 2: (0, 0, 255), 3: (0, 255, 255), 4: (0, 255, 0), 5: (255, 255, 0),
                 6: (255, 0, 0), 0: (0, 0, 0)}


def raw_label(rng: np.random.Generator, values: list[int], novel: int, nodata: int | None, size: int = SIZE):
    """Bands of the base values, two squares of the novel value and (if given) a strip of no-data."""
    lab = np.zeros((size, size), np.uint8)
    for i, v in enumerate(values):
        lab[:, i * size // len(values):] = v
    for _ in range(2):
        r, c = rng.integers(0, size - 24, 2)
        lab[r : r + 20, c : c + 20] = novel
    if nodata is not None:
        lab[:3] = nodata
    return lab


def rgb(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def tif(path: Path, arr: np.ndarray, x0: float = 500000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bands = arr[..., None] if arr.ndim == 2 else arr
    with rasterio.open(path, "w", driver="GTiff", height=bands.shape[0], width=bands.shape[1], count=bands.shape[2],
                       dtype="uint8", crs="EPSG:32632", transform=from_origin(x0, 5800000.0, 0.05, 0.05)) as dst:
        dst.write(np.moveaxis(bands, 2, 0))


def loveda(root: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    n = 0
    for part in ("Train", "Val"):
        for domain in ("Urban", "Rural"):
            for _ in range(3):
                lab = raw_label(rng, [1, 3, 6], 2, 0)  # background, road, forest; building 2; no-data 0
                if layout == "release":
                    png(root / part / domain / "images_png" / f"{n}.png", rgb(rng))
                    png(root / part / domain / "masks_png" / f"{n}.png", lab)
                else:
                    png(root / "img_dir" / part.lower() / f"{n}.png", rgb(rng))
                    png(root / "ann_dir" / part.lower() / f"{n}.png", lab)
                n += 1
    if layout == "release":  # the test split ships without masks
        png(root / "Test" / "Urban" / "images_png" / f"{n}.png", rgb(rng))


def isprs(root: Path, layout: str, name: str) -> None:
    rng = np.random.default_rng(1)
    scenes = ["2_10", "2_11", "3_10", "3_11", "4_10", "4_11"] if name == "potsdam" else ["1", "3", "5", "7", "11", "13"]
    for s in scenes:
        ids = raw_label(rng, [1, 3, 4], 5, 0)  # impervious, low vegetation, tree; car 5; boundary 0
        colour = np.zeros((*ids.shape, 3), np.uint8)
        for v, c in ISPRS_COLOURS.items():
            colour[ids == v] = c
        if layout == "release" and name == "potsdam":
            tif(root / "2_Ortho_RGB" / f"top_potsdam_{s}_RGB.tif", rgb(rng))
            tif(root / "5_Labels_all_noBoundary" / f"top_potsdam_{s}_label_noBoundary.tif", colour)
        elif layout == "release":
            tif(root / "top" / f"top_mosaic_09cm_area{s}.tif", rgb(rng))
            tif(root / "gts_eroded_for_participants" / f"top_mosaic_09cm_area{s}_noBoundary.tif", colour)
        else:
            stem = f"{s}_0_0_512_512" if name == "potsdam" else f"area{s}_0_0_512_512"
            for patch in (stem, stem.replace("_0_0_", "_0_512_")):
                png(root / "img_dir" / "train" / f"{patch}.png", rgb(rng))
                png(root / "ann_dir" / "train" / f"{patch}.png", ids)
    if layout == "release" and name == "potsdam":  # RGB scenes whose labels are withheld
        tif(root / "2_Ortho_RGB" / "top_potsdam_7_13_RGB.tif", rgb(rng))


def openearthmap(root: Path, layout: str) -> None:
    rng = np.random.default_rng(2)
    for region in ("aachen", "kyoto", "santa_cruz", "tonga", "zanzibar", "lima"):
        for i in (1, 2):
            lab = raw_label(rng, [2, 4, 5], 8, 0)  # rangeland, road, tree; building 8; unknown 0
            if layout == "release":
                tif(root / region / "images" / f"{region}_{i}.tif", rgb(rng))
                tif(root / region / "labels" / f"{region}_{i}.tif", lab)
            else:
                tif(root / "img_dir" / "train" / f"{region}_{i}.tif", rgb(rng))
                tif(root / "ann_dir" / "train" / f"{region}_{i}.tif", lab)
    if layout == "release":
        tif(root / "lima" / "images" / "lima_9.tif", rgb(rng))  # a test image: no label


BUILDERS = {"loveda": (loveda, "building"), "potsdam": (lambda r, lay: isprs(r, lay, "potsdam"), "car"),
            "vaihingen": (lambda r, lay: isprs(r, lay, "vaihingen"), "car"),
            "openearthmap": (openearthmap, "building")}
CASES = [(name, layout) for name in PRESETS for layout in ("release", "mmseg")]


def preset_split(root: Path, out: Path, name: str, **kw) -> dict:
    found = preset(name)
    lay = found.layout(root)
    images, labels = found.patterns(root, lay)
    args = dict(shots=2, tile=None, min_pixels=64, progress=False, group=lay.group, key=lay.key,
                skip_unlabelled=True) | kw
    return split_dataset(images, labels, found.classes, [BUILDERS[name][1]], out, **args)


@pytest.mark.parametrize("name,layout", CASES)
def test_every_preset_and_layout_splits_into_an_episode_data_check_accepts(tmp_path: Path, name: str, layout: str):
    build, novel = BUILDERS[name]
    root = tmp_path / name
    build(root, layout)
    assert preset(name).layout(root).name == layout
    summary = preset_split(root, tmp_path / "ep", name)
    ep = Episode(tmp_path / "ep")
    assert ep.problems(expected_shots=2) == []
    novel_id = ep.classes.by_name(novel).id
    assert ep.classes.novel_ids == [novel_id] and len(ep.support[novel_id]) == 2
    assert not ep.classes.has_values  # the episode's labels hold ids
    # the source's no-data / boundary value 0 is ignore 255 everywhere (OpenEarthMap's unknown 0 is the episode's
    # background 0, as in the OpenEarthMap few-shot challenge)
    nodata = 0 if name == "openearthmap" else 255
    for s in ep.train + ep.support_samples + ep.query:
        lab = read_label(s.label, ep.classes).array
        assert (lab[:3] == nodata).all(), s.label
    support = read_label(ep.support_samples[0].label, ep.classes).array
    assert set(np.unique(support).tolist()) <= {0, novel_id, 255}
    # groups follow the dataset's structure: train, support and query never share one
    groups = [set(summary[role]["groups"]) for role in ("train", "support", "query")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    if layout == "release" and name in ("loveda", "potsdam", "openearthmap"):
        assert summary["unlabelled_images"] == 1  # the release's unlabelled test image is skipped
    if name == "loveda" and layout == "release":
        assert sorted(g for gs in groups for g in gs) == ["Train/Rural", "Train/Urban", "Val/Rural", "Val/Urban"]


def test_loveda_background_is_a_scored_base_class_and_no_data_is_ignore(tmp_path: Path):
    loveda(tmp_path / "loveda", "release")
    preset_split(tmp_path / "loveda", tmp_path / "ep", "loveda")
    classes = ClassMap.load(tmp_path / "ep" / "classes.json")
    assert classes.by_name("background").role == "base" and classes.by_name("background").id == 1
    assert classes.by_name("no-data").id == 255 and "values" not in json.dumps(classes.to_dict())
    assert classes.name(0) == "unlabelled"


def test_isprs_release_pairs_rgb_scenes_with_their_label_by_scene_key(tmp_path: Path):
    isprs(tmp_path / "p", "release", "potsdam")
    found = preset("ISPRS-Potsdam")
    images, labels = found.patterns(tmp_path / "p", found.layout(tmp_path / "p"))
    assert labels.endswith("top_potsdam_*_label_noBoundary.tif")  # the full labels are absent here


def test_unknown_preset_and_missing_layout_name_the_fix(tmp_path: Path):
    with pytest.raises(SplitError, match="'deepglobe' is not built in; choose one of loveda, potsdam"):
        preset("deepglobe")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitError, match="no LoveDA images found .*release: \\*\\*/images_png/\\*.png"):
        preset("loveda").layout(tmp_path / "empty")


def test_the_split_options_name_exactly_the_built_in_datasets(tmp_path: Path):
    """The config checks a dataset name without reading the data code: its list is the presets'."""
    from pydantic import ValidationError

    from paintseg.config import DATASETS, SplitRecipe

    assert set(DATASETS) == set(PRESETS)
    with pytest.raises(ValidationError, match="dataset\n  Input should be 'loveda', 'potsdam', 'vaihingen' or"):
        SplitRecipe(dataset="deepglobe", root=str(tmp_path), novel=["building"])
    result = CliRunner().invoke(app, ["split", "--dataset", "deepglobe", "--root", str(tmp_path), "--novel", "x",
                                      "--out", str(tmp_path / "ep")])
    assert result.exit_code == 2 and "dataset: Input should be 'loveda'" in result.output, result.output
    assert not (tmp_path / "ep").exists()


def test_cli_split_dataset_one_command(tmp_path: Path):
    openearthmap(tmp_path / "oem", "release")
    result = CliRunner().invoke(app, ["split", "--dataset", "openearthmap", "--root", str(tmp_path / "oem"),
                                      "--novel", "building", "--out", str(tmp_path / "ep"), "--shots", "2",
                                      "--tile", "0"])
    assert result.exit_code == 0, result.output
    assert "OpenEarthMap, release layout" in result.output and "data check" in result.output
    # the check split prints passes as printed: data check reads the shots the episode was split for (2, not 5)
    assert f"`paintseg data check {tmp_path / 'ep'}` passes" in result.output
    check = CliRunner().invoke(app, ["data", "check", str(tmp_path / "ep")])
    assert check.exit_code == 0 and check.output.splitlines()[-1].startswith("ok:"), check.output
    # the tiny release lacks some base classes in its training tiles: both commands say which, in the same words
    absent = [line.split("base class ")[1].split(" has")[0] for line in check.output.splitlines()
              if line.startswith("warning:")]
    assert absent and all(f"base class {name.split(' (')[1].rstrip(')')!r}" in result.output for name in absent)


# --------------------------------------------------------------------------------------------- values
def test_values_read_source_labels_and_an_unknown_value_names_the_file(tmp_path: Path):
    classes = ClassMap.from_dict({"classes": [
        {"id": 0, "name": "other", "role": "background"}, {"id": 1, "name": "grass", "values": [1, 7]},
        {"id": 255, "name": "no-data", "role": "ignore", "values": [0]}]})
    png(tmp_path / "a.png", np.array([[0, 1, 7, 255]], np.uint8))
    assert read_label(tmp_path / "a.png", classes).array.tolist() == [[255, 1, 1, 255]]
    png(tmp_path / "b.png", np.array([[0, 3]], np.uint8))
    with pytest.raises(ClassMapError, match=r"b.png: label value\(s\) \[3\] mean no class"):
        read_label(tmp_path / "b.png", classes)


def test_background_role_must_be_value_0_and_the_error_says_how(tmp_path: Path):
    with pytest.raises(ClassMapError, match='role \'background\' but id 1; .*"id": 0, "values": \\[1\\]'):
        ClassMap.from_dict({"classes": [{"id": 1, "name": "background", "role": "background"},
                                        {"id": 2, "name": "building"}]}, "mine.json")


# --------------------------------------------------------------------------------------------- blocks
def test_one_large_scene_becomes_an_episode_with_blocks_apart_and_georeferenced(tmp_path: Path):
    rng = np.random.default_rng(3)
    root = tmp_path / "potsdam"
    size = 1024
    ids = np.ones((size, size), np.uint8)
    ids[:, size // 2 :] = 4
    for r in range(40, size, 128):
        for c in range(40, size, 128):
            ids[r : r + 24, c : c + 24] = 5  # cars everywhere
    colour = np.zeros((size, size, 3), np.uint8)
    for v, col in ISPRS_COLOURS.items():
        colour[ids == v] = col
    tif(root / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif", rgb(rng, size))
    tif(root / "5_Labels_all" / "top_potsdam_2_10_label.tif", colour)
    with pytest.raises(SplitError, match=r"found 1 group\(s\).*--block \d+ \(checked") as failed:
        preset_split(root, tmp_path / "no", "potsdam", tile=128)
    advised = int(re.search(r"--block (\d+)", str(failed.value)).group(1))  # the advice works as printed
    preset_split(root, tmp_path / "advised", "potsdam", tile=128, block=advised)
    assert Episode(tmp_path / "advised").problems() == []
    preset_split(root, tmp_path / "ep", "potsdam", tile=128, block=256, gap=32)
    ep = Episode(tmp_path / "ep")
    assert ep.problems(expected_shots=2) == []

    def box(sample) -> tuple[int, int, int, int]:
        im = read_image(sample.image)
        col, row = ~from_origin(500000.0, 5800000.0, 0.05, 0.05) * (im.transform.c, im.transform.f)
        assert str(im.crs) == "EPSG:32632"
        return round(row), round(col), im.height, im.width

    def apart(a, b) -> int:  # pixels between two boxes (0: they touch or overlap)
        dr = max(b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]), 0)
        dc = max(b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]), 0)
        return max(dr, dc)

    train = [box(s) for s in ep.train]
    held = [box(s) for s in ep.support_samples + ep.query]
    assert train and held
    assert min(apart(a, b) for a in train for b in held) >= 32
