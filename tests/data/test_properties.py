"""Property-based tests (hypothesis): raster round trips and the invariants of `paintseg split`."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import make_dataset, tiny_classes  # noqa: E402
from paintseg.data.raster import Raster, read_image, read_label, write_image, write_label  # noqa: E402
from paintseg.data.split import _offsets, split_dataset  # noqa: E402

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FEW
@given(h=st.integers(1, 70), w=st.integers(1, 70), bands=st.sampled_from([1, 3, 4]),
       dtype=st.sampled_from(["uint8", "uint16"]), fmt=st.sampled_from([".tif", ".png"]), seed=st.integers(0, 99),
       res=st.floats(0.1, 30), x0=st.floats(-1e6, 1e6))
def test_images_round_trip_with_their_georeference(h, w, bands, dtype, fmt, seed, res, x0) -> None:
    from affine import Affine
    from rasterio.crs import CRS

    if fmt == ".png" and (dtype == "uint16" or bands == 4):
        return  # PNG holds 8-bit images; a 4th PNG band is read as alpha (dropped)
    rng = np.random.default_rng(seed)
    array = rng.integers(0, np.iinfo(dtype).max, (h, w, bands), dtype=dtype, endpoint=True)
    with tempfile.TemporaryDirectory() as tmp:
        like = Raster(array, "GTiff", crs=CRS.from_epsg(32633), transform=Affine(res, 0, x0, 0, -res, 4e6)) \
            if fmt == ".tif" else None
        path = write_image(Path(tmp) / f"im{fmt}", array, like=like)
        back = read_image(path, tuple(range(1, bands + 1)) if fmt == ".tif" else None)
        assert back.array.dtype == array.dtype and np.array_equal(back.array, array)
        if like is not None:
            assert back.crs == like.crs and back.transform == like.transform
        row, col = int(rng.integers(0, h)), int(rng.integers(0, w))
        window = read_image(path, tuple(range(1, bands + 1)) if fmt == ".tif" else None,
                            (row, col, h - row, w - col))
        assert np.array_equal(window.array, array[row:, col:])  # a window read from disk is the same pixels


@FEW
@given(h=st.integers(1, 60), w=st.integers(1, 60), fmt=st.sampled_from([".tif", ".png"]), seed=st.integers(0, 99))
def test_labels_round_trip(h, w, fmt, seed) -> None:
    classes = tiny_classes()
    ids = np.array(sorted(classes.valid_values), np.uint8)
    label = np.random.default_rng(seed).choice(ids, (h, w))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_label(Path(tmp) / f"lab{fmt}", label, classes=classes)
        assert np.array_equal(read_label(path, classes).array, label)


@FEW
@given(size=st.integers(1, 500), tile=st.one_of(st.none(), st.integers(1, 200)))
def test_tiles_cover_every_pixel_and_stay_inside(size, tile) -> None:
    starts = _offsets(size, tile)
    side = size if tile is None else min(size, tile)
    covered = np.zeros(size, bool)
    for s in starts:
        assert 0 <= s and s + side <= size
        covered[s : s + side] = True
    assert covered.all() and starts == sorted(set(starts))


@settings(max_examples=6, deadline=None)
@given(groups=st.integers(5, 8), per_group=st.integers(1, 2), seed=st.integers(0, 5), tile=st.sampled_from([48, 64]))
def test_split_never_shares_a_group_is_deterministic_and_cuts_true_pixels(groups, per_group, seed, tile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", groups=groups, per_group=per_group, seed=seed)
        classes = tiny_classes()
        kw = dict(images=str(data / "*/images/*.png"), labels=str(data / "*/labels/*.png"), classes=classes,
                  novel=["pool"], shots=1, seed=seed, group=r"area_\d+", tile=tile, progress=False)
        try:
            summary = split_dataset(out=tmp / "a", **kw)
        except Exception as e:  # a draw with too few pools for support and query is refused, with a message
            assert "pool" in str(e) or "group" in str(e)
            return
        roles = {r: set(summary[r]["groups"]) for r in ("train", "support", "query")}
        assert not (roles["train"] & roles["support"]) and not (roles["train"] & roles["query"])
        assert not (roles["support"] & roles["query"])
        split_dataset(out=tmp / "b", **kw)
        files = lambda root: {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}  # noqa
        assert files(tmp / "a") == files(tmp / "b")  # the same seed, the same episode, byte for byte
        val = json.loads((tmp / "a" / "val.json").read_text())
        # every query tile's label is the source label's pixels at that tile (query labels keep every class)
        import re

        for name in val["query_set"]:
            m = re.fullmatch(r"(area_\d+)_(img_\d+)_r(\d+)_c(\d+)\.png", name)
            source = read_label(data / m[1] / "labels" / f"{m[2]}.png", classes).array
            h, w = source.shape
            row, col = _offsets(h, tile)[int(m[3])], _offsets(w, tile)[int(m[4])]
            tile_label = read_label(tmp / "a/valset/labels" / name, classes).array
            assert np.array_equal(tile_label, source[row : row + min(tile, h), col : col + min(tile, w)]), name
        shutil.rmtree(tmp / "b")


@settings(max_examples=10, deadline=None)
@given(size=st.sampled_from([256, 384, 512, 700]), pools=st.integers(2, 30), shots=st.integers(1, 3),
       tile=st.sampled_from([64, 128, 512]), seed=st.integers(0, 9))
def test_one_scene_is_led_to_a_block_size_that_works(size, pools, shots, tile, seed) -> None:
    """One labelled scene, split without --block: split refuses it; when it advises a --block (and --tile), that
    command succeeds as printed, and what split writes always passes `data check` (query pixels of the novel class
    included) with the shots it recorded."""
    import re

    from PIL import Image

    from conftest import tiny_scene
    from paintseg.data.episode import Episode
    from paintseg.data.split import SplitError

    image, label = tiny_scene(np.random.default_rng(seed), size=size, pools=pools)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for part, array in (("images", image), ("labels", label)):
            (tmp / part).mkdir()
            Image.fromarray(array).save(tmp / part / "scene.png")
        kw = dict(images=str(tmp / "images/*.png"), labels=str(tmp / "labels/*.png"), classes=tiny_classes(),
                  novel=["pool"], shots=shots, seed=seed, progress=False, min_pixels=16)
        with pytest.raises(SplitError, match=r"found 1 group") as failed:
            split_dataset(out=tmp / "none", tile=tile, **kw)
        assert not (tmp / "none").exists()  # nothing written before the split is known to work
        advice = re.search(r"--block (\d+)(?: --tile (\d+))? \(checked", str(failed.value))
        if advice is None:
            assert "add images, or lower --shots" in str(failed.value)
            return
        block, advised_tile = int(advice[1]), int(advice[2] or tile)
        split_dataset(out=tmp / "ep", tile=advised_tile, block=block, **kw)
        problems, _ = Episode(tmp / "ep").check()
        assert problems == [] and Episode(tmp / "ep").recorded_shots == shots
