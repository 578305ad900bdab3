"""Reading and writing rasters: GeoTIFF georeferencing, interleaving, band picking, PNG/JPEG, label decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin
from rasterio.windows import Window, transform as window_transform

from conftest import tiny_classes
from paintseg.data.classes import ClassMapError
from paintseg.data.raster import (Raster, RasterError, read_image, read_label, to_float, to_uint8, write_image,
                                  write_label)

CRS = rasterio.crs.CRS.from_epsg(32754)
TRANSFORM = from_origin(280000.0, 6130000.0, 0.25, 0.25)


def write_tif(path: Path, data: np.ndarray, **extra) -> Path:
    """Write (bands, H, W) ``data`` as a georeferenced GeoTIFF with rasterio directly."""
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": CRS, "transform": TRANSFORM} | extra
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


# --------------------------------------------------------------------------------------------- GeoTIFF
@pytest.mark.realdata
def test_openearthmap_geotiff_window_round_trip(shared_data: Path, tmp_path: Path):
    path = shared_data / "oem_geotiff_sample" / "adelaide_2.tif"
    with rasterio.open(path) as src:
        assert src.interleaving.value == "BAND"
        original = src.read()
        crs, transform = src.crs, src.transform
    image = read_image(path)
    assert image.array.shape == (1024, 1024, 3) and image.array.dtype == np.uint8
    assert np.array_equal(image.array, np.moveaxis(original, 0, -1))
    assert image.crs == crs and image.transform == transform and image.georeferenced

    window = image.window(100, 200, 256, 128)  # rows 100.., columns 200..: 128 wide, 256 high
    expected = window_transform(Window(200, 100, 128, 256), transform)
    assert window.transform == expected
    write_image(tmp_path / "crop.tif", window.array, like=window)
    back = read_image(tmp_path / "crop.tif")
    assert back.array.shape == (256, 128, 3) and back.array.dtype == np.uint8
    assert np.array_equal(back.array, image.array[100:356, 200:328])
    assert back.crs == crs and back.transform.almost_equals(expected)

    label = np.zeros((256, 128), np.uint8)
    label[10:20, 30:40] = 7
    write_label(tmp_path / "crop_label.tif", label, like=window)
    with rasterio.open(tmp_path / "crop_label.tif") as src:
        assert src.count == 1 and src.crs == crs and src.transform.almost_equals(expected)
    assert np.array_equal(read_label(tmp_path / "crop_label.tif").array, label)


@pytest.mark.parametrize("interleave", ["BAND", "PIXEL"])
def test_band_and_pixel_interleaved_tifs_read_the_same(tmp_path: Path, interleave: str):
    data = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    path = write_tif(tmp_path / "x.tif", data, interleave=interleave)
    with rasterio.open(path) as src:
        assert src.interleaving.value == interleave
    image = read_image(path)
    assert np.array_equal(image.array, np.moveaxis(data, 0, -1))
    assert image.crs == CRS and image.transform == TRANSFORM


def test_uint16_multiband_picks_rgb_bands(tmp_path: Path):
    data = np.random.default_rng(1).integers(0, 10000, (5, 20, 30), dtype=np.uint16)
    path = write_tif(tmp_path / "s2.tif", data)
    image = read_image(path, rgb_bands=(4, 3, 2))
    assert image.array.dtype == np.uint16
    assert np.array_equal(image.array, np.moveaxis(data[[3, 2, 1]], 0, -1))
    assert np.array_equal(read_image(path).array, np.moveaxis(data[:3], 0, -1))  # default: first three bands
    with pytest.raises(RasterError, match=rf"{tmp_path / 's2.tif'}: has 5 band\(s\) but band 6 was asked for"):
        read_image(path, rgb_bands=(6, 3, 2))
    write_image(tmp_path / "copy.tif", image.array, like=image)
    assert np.array_equal(read_image(tmp_path / "copy.tif").array, image.array)


def test_float_tif_image_is_refused(tmp_path: Path):
    path = write_tif(tmp_path / "f.tif", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(RasterError, match=rf"{path}: images must be uint8 or uint16"):
        read_image(path)


def test_window_of_plain_raster_stays_without_georeference(tmp_path: Path):
    data = np.arange(3 * 20 * 30, dtype=np.uint16).reshape(3, 20, 30)
    with rasterio.open(tmp_path / "plain.tif", "w", driver="GTiff", count=3, height=20, width=30,
                       dtype="uint16") as dst:
        dst.write(data)
    image = read_image(tmp_path / "plain.tif")
    assert not image.georeferenced
    crop = image.window(5, 10, 8, 8)
    assert not crop.georeferenced
    write_image(tmp_path / "crop.tif", crop.array, like=crop)
    assert not read_image(tmp_path / "crop.tif").georeferenced
    assert np.array_equal(crop.array, np.moveaxis(data, 0, -1)[5:13, 10:18])


# --------------------------------------------------------------------------------------------- PNG / JPEG
def test_png_rgb_rgba_and_gray(tmp_path: Path):
    rgb = np.random.default_rng(2).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((12, 16), 200, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png").array, rgb)
    assert np.array_equal(read_image(tmp_path / "rgba.png").array, rgb)  # alpha dropped
    gray = read_image(tmp_path / "gray.png")
    assert gray.array.shape == (12, 16, 1) and gray.format == "PNG" and not gray.georeferenced


def test_jpeg_read_and_write(tmp_path: Path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = (200, 40, 40)
    rgb[:, 24:] = (30, 160, 60)
    path = write_image(tmp_path / "x.jpg", rgb)
    image = read_image(path)
    assert image.format == "JPEG" and image.array.shape == (32, 48, 3)
    assert np.abs(image.array.astype(int) - rgb).mean() < 3  # lossy, but close


def test_png_refuses_uint16_and_writes_leave_no_partial_files(tmp_path: Path):
    with pytest.raises(RasterError, match=rf"{tmp_path / 'x.png'}: PNG holds 8-bit images only"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint16))
    write_image(tmp_path / "ok.png", np.zeros((4, 4, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]


def test_unreadable_and_missing_files_name_the_file(tmp_path: Path):
    for name in ("bad.png", "bad.tif", "bad.jpg"):
        (tmp_path / name).write_bytes(b"not an image at all")
        with pytest.raises(RasterError, match=rf"{tmp_path / name}: unreadable"):
            read_image(tmp_path / name)
    with pytest.raises(RasterError, match=rf"{tmp_path / 'none.png'}: no such file"):
        read_image(tmp_path / "none.png")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(RasterError, match=rf"{tmp_path / 'x.bmp'}: unsupported file type '\.bmp'"):
        read_image(tmp_path / "x.bmp")


# --------------------------------------------------------------------------------------------- labels
def test_palette_png_label_reads_indices(tmp_path: Path):
    ids = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    im = Image.frombytes("P", (3, 2), ids.tobytes())
    im.putpalette([v for i in range(256) for v in (i, i, i)])  # a grey palette unrelated to the classes
    im.save(tmp_path / "p.png")
    assert np.array_equal(read_label(tmp_path / "p.png").array, ids)
    assert np.array_equal(read_label(tmp_path / "p.png", tiny_classes()).array, ids)


def test_label_written_by_paintseg_reads_back_its_ids(tmp_path: Path):
    ids = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    for suffix in (".png", ".tif"):
        path = write_label(tmp_path / f"l{suffix}", ids, classes=tiny_classes())
        assert np.array_equal(read_label(path, tiny_classes()).array, ids)
        assert np.array_equal(read_label(path).array, ids)
    assert Image.open(tmp_path / "l.png").mode == "P"
    assert Image.open(tmp_path / "l.png").getpalette()[3:6] == [0x28, 0xA0, 0x28]  # class 1 drawn in its colour


def test_palette_png_whose_palette_is_a_colour_code_decodes_colours(tmp_path: Path):
    """Like the Dubai masks: palette order differs per file, so only the palette colour names the class."""
    classes = tiny_classes()
    index = np.array([[0, 0, 1], [2, 1, 0]], np.uint8)
    im = Image.frombytes("P", (3, 2), index.tobytes())
    im.putpalette([0x00, 0xE6, 0xE6, 0x1E, 0x3C, 0xA0, 0x28, 0xA0, 0x28])  # pool, water, field
    im.save(tmp_path / "mask.png")
    assert np.array_equal(read_label(tmp_path / "mask.png", classes).array, [[4, 4, 2], [1, 2, 4]])
    assert np.array_equal(read_label(tmp_path / "mask.png").array, index)  # no classes: indices


def test_colour_label_decodes_and_unknown_colour_names_file_and_colour(tmp_path: Path):
    classes = tiny_classes()
    ids = np.array([[1, 2, 3, 4], [0, 255, 4, 1]], np.uint8)
    rgb = classes.lut()[ids]
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(read_label(tmp_path / "c.png", classes).array, ids)
    with pytest.raises(RasterError, match="needs a class map with colours"):
        read_label(tmp_path / "c.png")
    rgb[0, :2] = (0x12, 0x34, 0x56)
    Image.fromarray(rgb).save(tmp_path / "odd.png")
    with pytest.raises(ClassMapError) as err:
        read_label(tmp_path / "odd.png", classes)
    assert str(err.value).startswith(f"{tmp_path / 'odd.png'}: colour #123456 (2 pixels) is not in the class map")


def test_jpeg_label_is_refused(tmp_path: Path):
    write_image(tmp_path / "l.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(RasterError, match=rf"{tmp_path / 'l.jpg'}: JPEG is lossy"):
        read_label(tmp_path / "l.jpg")
    with pytest.raises(RasterError, match=rf"{tmp_path / 'm.jpg'}: JPEG is lossy"):
        write_label(tmp_path / "m.jpg", np.zeros((4, 4), np.uint8))


def test_label_must_be_uint8_2d(tmp_path: Path):
    with pytest.raises(RasterError, match=r"must be an H×W uint8 array"):
        write_label(tmp_path / "l.png", np.zeros((4, 4), np.int32))
    write_tif(tmp_path / "big.tif", np.full((1, 4, 4), 300, np.uint16))
    with pytest.raises(RasterError, match=rf"{tmp_path / 'big.tif'}: label value 300 is above 255"):
        read_label(tmp_path / "big.tif")


# --------------------------------------------------------------------------------------------- conversions
def test_to_float_and_to_uint8():
    u8 = np.array([[[0, 255, 51]]], np.uint8)
    assert np.allclose(to_float(u8), [[[0.0, 1.0, 0.2]]])
    u16 = np.random.default_rng(3).integers(0, 4000, (10, 10, 1), dtype=np.uint16)
    f = to_float(u16)
    assert f.shape == (10, 10, 3) and f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1
    assert to_uint8(u16).dtype == np.uint8 and to_uint8(u16).shape == (10, 10, 3)


def test_like_keeps_grid_and_checks_size():
    r = Raster(np.zeros((4, 5, 3), np.uint8), "GTiff", None, CRS, TRANSFORM, {"a": "b"})
    lab = r.like(np.ones((4, 5), np.uint8))
    assert lab.crs == CRS and lab.transform == TRANSFORM and lab.tags == {}
    with pytest.raises(RasterError, match="does not match the raster's size"):
        r.like(np.ones((5, 5), np.uint8))
