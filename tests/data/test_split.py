"""split_dataset: any labelled dataset → a challenge-layout episode, checked on tiny datasets built in tmp_path."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import H, POOL, W, make_dataset, scene, tiny_classes
from paintseg.data.classes import ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label
from paintseg.data.pairing import Pair, SplitError, find_pairs
from paintseg.data.split import format_summary, split_dataset

def split(data: Path, out: Path, **kw) -> dict:
    args = {"shots": 2, "seed": 0, "group": r"area_\d+", "tile": 64, "min_pixels": 16, "progress": False} | kw
    return split_dataset(str(data / "*/images/*.png"), str(data / "*/labels/*.png"), tiny_classes(), ["pool"],
                         out, **args)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


@pytest.fixture
def episode(dataset: Path, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "episode"
    return out, split(dataset, out)


# --------------------------------------------------------------------------------------------- pairing
def test_find_pairs_by_stem_within_group(dataset: Path):
    pairs = find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), r"area_\d+")
    assert len(pairs) == 12
    assert pairs[0] == Pair(dataset / "area_1/images/img_0.png", dataset / "area_1/labels/img_0.png", "area_1", "img_0")
    assert len({p.group for p in pairs}) == 6


def test_find_pairs_capture_group_names_the_group(dataset: Path):
    pairs = find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), r"area_(\d+)")
    assert sorted({p.group for p in pairs}) == ["1", "2", "3", "4", "5", "6"]


def test_find_pairs_recursive_pattern_without_group(tmp_path: Path):
    data = make_dataset(tmp_path / "data", groups=1, per_group=3)
    pairs = find_pairs(str(tmp_path / "**/images/*.png"), str(tmp_path / "**/labels/*.png"))
    assert [p.group for p in pairs] == ["img_0", "img_1", "img_2"]  # each pair is its own group
    assert all(p.label.parent == data / "area_1/labels" for p in pairs)


def test_no_image_match_names_the_pattern(dataset: Path):
    with pytest.raises(SplitError, match=r"no images match .*\*/pics/\*\.png"):
        find_pairs(str(dataset / "*/pics/*.png"), str(dataset / "*/labels/*.png"))
    with pytest.raises(SplitError, match=r"no labels match .*\*/masks/\*\.png"):
        find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/masks/*.png"), r"area_\d+")


def test_missing_label_is_listed(dataset: Path):
    (dataset / "area_3/labels/img_1.png").unlink()
    with pytest.raises(SplitError) as err:
        find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), r"area_\d+")
    assert "1 image(s) have no label" in str(err.value)
    assert str(dataset / "area_3/images/img_1.png") in str(err.value)


def test_duplicate_stems_without_group_name_both_files(dataset: Path):
    with pytest.raises(SplitError) as err:
        find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"))
    msg = str(err.value)
    assert str(dataset / "area_1/images/img_0.png") in msg and str(dataset / "area_2/images/img_0.png") in msg
    assert "--group" in msg


def test_group_regex_must_match_every_path(dataset: Path):
    with pytest.raises(SplitError) as err:
        find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), r"zone_\d+")
    assert str(err.value).startswith(f"{dataset / 'area_1/images/img_0.png'}: --group \"zone_\\d+\" does not match")
    with pytest.raises(SplitError, match="not a valid regular expression"):
        find_pairs(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), r"area_(\d+")


# --------------------------------------------------------------------------------------------- the episode
def test_layout_and_episode_is_valid(episode: tuple[Path, dict]):
    out, summary = episode
    for name in ("classes.json", "train.txt", "val.json", "split.json"):
        assert (out / name).is_file()
    ep = Episode(out)
    assert ep.problems(expected_shots=2) == []
    assert ep.classes.novel_ids == [POOL] and ep.shots == 2
    assert len(list((out / "trainset/images").iterdir())) == len(ep.train_names) == summary["train"]["images"]
    assert len(ep.query_names) == summary["query"]["images"] and summary["support"]["images"] == 2
    assert sum(len(summary[r]["groups"]) for r in ("train", "support", "query")) == 6
    assert summary["query"]["groups"] and summary["train"]["groups"] and summary["support"]["groups"]
    # 12 pairs x 4 tiles; support groups' tiles beyond the 2 shots are left out
    assert summary["train"]["images"] + summary["query"]["images"] + 2 + summary["unused_tiles"] == 48
    assert json.loads((out / "split.json").read_text())["config"]["seed"] == 0


def test_groups_are_disjoint_between_parts(episode: tuple[Path, dict]):
    out, summary = episode
    ep = Episode(out)
    group = lambda name: name.split("_img_")[0]  # noqa: E731  (tile names are <group>_<stem>_r<i>_c<j>)
    parts = {"train": {group(n) for n in ep.train_names}, "query": {group(n) for n in ep.query_names},
             "support": {group(n) for names in ep.support.values() for n in names}}
    assert not parts["train"] & parts["query"] and not parts["train"] & parts["support"]
    assert not parts["query"] & parts["support"]
    assert parts["train"] == set(summary["train"]["groups"])


def test_support_labels_hold_only_their_class(episode: tuple[Path, dict]):
    out, summary = episode
    ep = Episode(out)
    for s in ep.support_samples:
        lab = ep.read_label(s).array
        assert set(np.unique(lab).tolist()) <= {0, POOL, 255}
        assert (lab == POOL).sum() >= 16
        assert (lab == 255).any()  # ignore survives
    assert len({s.name for s in ep.support_samples}) == 2  # a tile serves one shot only
    assert set(summary["support"]["pixels"]) == {"background", "pool", "ignore"}


def test_train_labels_have_no_novel_pixels_and_query_keeps_them(episode: tuple[Path, dict]):
    out, summary = episode
    ep = Episode(out)
    assert all(not (ep.read_label(s).array == POOL).any() for s in ep.train)
    query_pool = sum(int((ep.read_label(s).array == POOL).sum()) for s in ep.query)
    assert query_pool == summary["query"]["pixels"]["pool"] > 0
    assert "pool" not in summary["train"]["pixels"]
    assert summary["warnings"] == []


def test_query_label_is_the_source_crop(dataset: Path, episode: tuple[Path, dict]):
    out, _ = episode
    name = Episode(out).query_names[-1]  # <group>_<stem>_r<row>_c<col>: area_6_img_1_r1_c1.png
    m = re.fullmatch(r"area_(\d)_(img_\d)_r(\d)_c(\d)\.png", name)
    assert m is not None
    src = dataset / f"area_{m[1]}"
    row, col = (0, 16)[int(m[3])], (0, 32)[int(m[4])]
    expected = read_image(src / "images" / f"{m[2]}.png").array[row : row + 64, col : col + 64]
    assert np.array_equal(read_image(out / "valset/images" / name).array, expected)
    src_label = read_label(src / "labels" / f"{m[2]}.png", tiny_classes()).array
    got = read_label(out / "valset/labels" / name, tiny_classes()).array
    assert np.array_equal(got, src_label[row : row + 64, col : col + 64])


def test_tiling_counts_and_names(tmp_path: Path, capsys: pytest.CaptureFixture):
    data = make_dataset(tmp_path / "data", groups=3, per_group=1)
    summary = split(data, tmp_path / "ep", shots=1, progress=True)
    assert "scan labels" in capsys.readouterr().err
    assert summary["train"]["images"] + summary["query"]["images"] + 1 + summary["unused_tiles"] == 3 * 4
    names = sorted(p.name for p in (tmp_path / "ep").rglob("images/area_*"))
    assert {n.split("_img_0_")[1] for n in names} <= {"r0_c0.png", "r0_c1.png", "r1_c0.png", "r1_c1.png"}
    assert all(read_image(p).array.shape == (64, 64, 3) for p in (tmp_path / "ep").rglob("images/*.png"))


@pytest.mark.parametrize("tile", [None, 100])
def test_images_smaller_than_tile_stay_whole(tmp_path: Path, tile: int | None):
    data = make_dataset(tmp_path / "data", groups=4, per_group=1)
    summary = split(data, tmp_path / "ep", shots=1, tile=tile)
    assert summary["train"]["images"] + summary["query"]["images"] + summary["support"]["images"] == 4
    assert all(read_image(p).array.shape == (H, W, 3) for p in (tmp_path / "ep").rglob("images/*.png"))


def test_same_seed_same_bytes_other_seed_differs(dataset: Path, tmp_path: Path):
    split(dataset, tmp_path / "a", seed=3)
    split(dataset, tmp_path / "b", seed=3)
    split(dataset, tmp_path / "c", seed=4)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert a == b
    assert (tmp_path / "a/val.json").read_text() != (tmp_path / "c/val.json").read_text()
    assert a != c


def test_refuses_to_overwrite_an_episode(episode: tuple[Path, dict], dataset: Path):
    out, _ = episode
    before = files(out)
    with pytest.raises(SplitError, match="exists.*pass a new --out or delete it"):
        split(dataset, out)
    assert files(out) == before


def test_format_summary_table(episode: tuple[Path, dict]):
    _, summary = episode
    text = format_summary(summary)
    lines = text.splitlines()
    assert lines[0].split() == ["train", "support", "query"]
    assert lines[1].split() == ["images", *(f"{summary[r]['images']:,}" for r in ("train", "support", "query"))]
    assert any(line.split()[0] == "pool" for line in lines)


# --------------------------------------------------------------------------------------------- GeoTIFF
def test_geotiff_tiles_keep_crs_transform_and_all_bands(tmp_path: Path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin
    from rasterio.windows import Window, transform as window_transform

    rng = np.random.default_rng(1)
    crs = rasterio.crs.CRS.from_epsg(32633)
    transforms = {}
    for g in range(1, 5):
        folder = tmp_path / "data" / f"site{g}"
        folder.mkdir(parents=True)
        _, label = scene(rng, 2)
        image = rng.integers(0, 4000, (4, H, W), dtype=np.uint16)  # 4-band uint16, like a multispectral product
        transforms[g] = from_origin(500000 + 1000 * g, 4000000, 0.5, 0.5)
        profile = {"driver": "GTiff", "height": H, "width": W, "crs": crs, "transform": transforms[g]}
        with rasterio.open(folder / "scene.tif", "w", count=4, dtype="uint16", **profile) as dst:
            dst.write(image)
        (folder / "labels").mkdir()
        with rasterio.open(folder / "labels/scene.tif", "w", count=1, dtype="uint8", **profile) as dst:
            dst.write(label[None])
    out = tmp_path / "ep"
    for folder in (out, tmp_path / "again"):
        split_dataset(str(tmp_path / "data/*/scene.tif"), str(tmp_path / "data/*/labels/*.tif"), tiny_classes(),
                      ["pool"], folder, shots=1, group=r"site(\d+)", tile=64, min_pixels=16, progress=False)
    assert files(out) == files(tmp_path / "again")
    assert Episode(out).problems(expected_shots=1) == []
    tiles = sorted(out.rglob("images/*_r1_c1.tif"))
    assert tiles
    for path in tiles:
        g = int(path.name.split("_")[0])
        expected = window_transform(Window(32, 16, 64, 64), transforms[g])
        for p in (path, path.parent.parent / "labels" / path.name):
            with rasterio.open(p) as src:
                assert src.crs == crs
                assert src.transform.almost_equals(expected)
        img = read_image(path, rgb_bands=(1, 2, 3, 4))
        assert img.array.shape == (64, 64, 4) and img.array.dtype == np.uint16


def test_support_shots_come_from_distinct_images_and_never_overlap(tmp_path: Path):
    """Tiles of 128x160 images at tile 64 start at rows 0, 64 and columns 0, 64, 96 (the last two overlap). With 3
    images per group and 4 shots, the shots come from all 3 images, and the two of one image do not overlap."""
    rng = np.random.default_rng(1)
    lut = tiny_classes().lut()
    for g in range(1, 5):
        for k in range(3):
            label = np.full((128, 160), 1, np.uint8)
            label[:, 60:70] = 2
            for y in range(4, 128, 32):
                for x in range(4, 160, 32):
                    label[y : y + 12, x : x + 12] = POOL
            image = (lut[label] * 0.8 + rng.normal(0, 8, (128, 160, 3))).clip(0, 255).astype(np.uint8)
            for sub, arr in (("images", image), ("labels", lut[label])):
                (tmp_path / "data" / f"area_{g}" / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(tmp_path / "data" / f"area_{g}" / sub / f"img_{k}.png")
    for seed in range(4):
        out = tmp_path / f"ep{seed}"
        split(tmp_path / "data", out, shots=4, seed=seed)
        names = json.loads((out / "val.json").read_text())["support_set"]["4"]
        parsed = [re.fullmatch(r"(area_\d+_img_\d+)_r(\d)_c(\d)\.png", n).groups() for n in names]
        assert len({image for image, _, _ in parsed}) == 3, names
        boxes = [(image, (0, 64)[int(r)], (0, 64, 96)[int(c)]) for image, r, c in parsed]
        for i, (img_a, ya, xa) in enumerate(boxes):
            for img_b, yb, xb in boxes[i + 1 :]:
                assert img_a != img_b or abs(ya - yb) >= 64 or abs(xa - xb) >= 64, names


# --------------------------------------------------------------------------------------------- errors
def test_too_few_support_images_says_which_class_and_what_to_change(tmp_path: Path):
    data = make_dataset(tmp_path / "data", groups=3, per_group=1)  # pools in 2 groups, one of them must be query
    with pytest.raises(SplitError) as err:
        split(data, tmp_path / "ep", shots=5)
    msg = str(err.value)
    assert "novel class 'pool' (id 4)" in msg and "needs 5" in msg
    assert "--shots" in msg and "--min-pixels" in msg
    assert not (tmp_path / "ep").exists()  # failed before writing anything


def test_min_pixels_excludes_small_support_tiles(dataset: Path, tmp_path: Path):
    with pytest.raises(SplitError, match=r"with >= 101 pixels of it \(0 such tiles"):
        split(dataset, tmp_path / "ep", min_pixels=101)  # a pool is 100 pixels


def test_too_few_groups(tmp_path: Path):
    data = make_dataset(tmp_path / "data", groups=2)
    with pytest.raises(SplitError, match=r"found 2 group\(s\) \(area_1, area_2\).*at least 3"):
        split(data, tmp_path / "ep")


def test_unknown_colour_and_size_mismatch_name_the_file(dataset: Path, tmp_path: Path):
    bad = dataset / "area_2/labels/img_0.png"
    rgb = np.asarray(Image.open(bad))
    odd = rgb.copy()
    odd[0, 0] = (0x12, 0x34, 0x56)
    Image.fromarray(odd).save(bad)
    with pytest.raises(SplitError, match=rf"{bad}: colour #123456 \(1 pixels\)"):
        split(dataset, tmp_path / "ep1")
    Image.fromarray(rgb[:40]).save(bad)
    with pytest.raises(SplitError, match=rf"{bad}: label is 96x40 but its image .* is 96x80"):
        split(dataset, tmp_path / "ep2")


def test_unknown_novel_name(dataset: Path, tmp_path: Path):
    with pytest.raises(SplitError, match="no class named 'boat'"):
        split_dataset(str(dataset / "*/images/*.png"), str(dataset / "*/labels/*.png"), tiny_classes(), ["boat"],
                      tmp_path / "ep", group=r"area_\d+", progress=False)


# --------------------------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.realdata
def test_split_dubai_by_tile(shared_data: Path, tmp_path: Path):
    dubai = shared_data / "dubai_aerial"
    out = tmp_path / "dubai"
    summary = split_dataset(str(dubai / "*/images/*.jpg"), str(dubai / "*/masks/*.png"),
                            ClassMap.load(dubai / "classes-paintseg.json"), ["building"], out, shots=5,
                            group=r"Tile \d+", tile=512, progress=False)
    ep = Episode(out)
    assert ep.problems(expected_shots=5) == []
    assert ep.classes.novel_ids == [5] and len(ep.support[5]) == 5
    assert [len(summary[r]["groups"]) for r in ("train", "support", "query")] == [5, 1, 2]
    total = sum(summary[r]["images"] for r in ("train", "support", "query")) + summary["unused_tiles"]
    assert total == 576  # every image cut into 512-px tiles (ceil(h/512) * ceil(w/512) each)
    assert summary["query"]["pixels"]["building"] > 0 and "building" not in summary["train"]["pixels"]
    assert (out / "trainset/images" / ep.train_names[0]).suffix == ".jpg"
    assert (out / "trainset/labels" / (Path(ep.train_names[0]).stem + ".png")).is_file()
