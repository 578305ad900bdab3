"""Read and write images and labels in the formats the field uses, keeping georeferencing.

GeoTIFF goes through rasterio (CRS, transform, band-interleaved or pixel-interleaved, uint8/uint16, any band count);
PNG and JPEG through Pillow. Images are ``H×W×C`` arrays in their stored dtype; labels are ``H×W`` uint8 class ids.
A single-band label holds class ids; a 3-band label is colour-coded and is decoded through the ClassMap colours. A
palette-mode PNG label holds class ids as palette indices, unless its palette shows it is colour-coded (every used
colour is a class colour, but not the colour of the class with that index): then its colours are decoded.

Every write goes to a temporary name in the target folder and is renamed when complete, so an interrupted run never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from paintseg.errors import PaintsegError
from .classes import ClassMap, parse_color

FORMATS = {".tif": "GTiff", ".tiff": "GTiff", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
LABEL_SUFFIX = {"GTiff": ".tif", "PNG": ".png", "JPEG": ".png"}  # JPEG is lossy: its labels are written as PNG
IMAGE_SUFFIX = {"GTiff": ".tif", "PNG": ".png", "JPEG": ".jpg"}

Image.MAX_IMAGE_PIXELS = None  # aerial tiles are large by nature


class RasterError(PaintsegError):
    """A raster that cannot be read or written as asked; the message names the file and the fix."""


@dataclass
class Raster:
    """Pixels plus where they came from: file format and, for GeoTIFF, the georeferencing."""

    array: np.ndarray
    format: str = "PNG"
    path: Path | None = None
    crs: Any = None
    transform: Any = None
    tags: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None or (self.transform is not None and not self.transform.is_identity)

    def window(self, row: int, col: int, height: int, width: int) -> "Raster":
        """The pixels [row:row+height, col:col+width], with the transform moved to the window's corner.

        A raster without georeferencing keeps its (identity) transform, so a crop does not gain a made-up one."""
        transform = self.transform
        if transform is not None and self.georeferenced:
            from rasterio.windows import Window, transform as window_transform

            transform = window_transform(Window(col, row, width, height), transform)
        return replace(self, array=self.array[row : row + height, col : col + width].copy(), transform=transform)

    def like(self, array: np.ndarray) -> "Raster":
        """Another raster on the same grid (same format and georeferencing) holding ``array``."""
        if array.shape[:2] != self.array.shape[:2]:
            raise RasterError(
                f"{self.path}: new array {array.shape[:2]} does not match the raster's size {self.array.shape[:2]}"
            )
        return replace(self, array=array, tags={})


def raster_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise RasterError(
            f"{path}: unsupported file type {suffix!r}; paintseg reads and writes {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def is_raster(path: str | Path) -> bool:
    return Path(path).suffix.lower() in FORMATS


# --------------------------------------------------------------------------------------------- reading
def _gdal_reason(error: BaseException) -> str:
    """What GDAL said, from rasterio's chain of exceptions ("Read failed. See previous exception" alone says
    nothing): the outermost and innermost messages, and "truncated or corrupt" when a read came up short."""
    chain, seen = [error], {id(error)}
    while (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None and id(nxt) not in seen:
        chain.append(nxt)
        seen.add(id(nxt))
    messages = [str(e) for e in chain if str(e) and "See previous exception" not in str(e)]
    if not messages:
        return str(error)
    detail = messages[0] if len(messages) == 1 else f"{messages[0]}; {messages[-1]}"
    short = "got" in messages[-1] and "expected" in messages[-1] or "Read error" in messages[-1]
    return f"the file is truncated or corrupt: {detail}" if short else detail


Box = tuple[int, int, int, int]  # (row, col, height, width) of a window, in pixels


def _read_any(path: Path, window: Box | None = None) -> Raster:
    """The raster at ``path``; with ``window``, only those pixels (GeoTIFF: read from disk alone, in bounded
    memory; PNG/JPEG: cropped after reading) and the transform moved to the window's corner."""
    if not path.is_file():
        raise RasterError(f"{path}: no such file; check the path (and the name listed in the episode)")
    fmt = raster_format(path)
    if fmt == "GTiff":
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as src:
                    if window is None:
                        data, transform = src.read(), src.transform  # (bands, H, W), whatever the interleave
                    else:
                        from rasterio.windows import Window

                        box = Window(window[1], window[0], window[3], window[2])
                        data, transform = src.read(window=box), src.window_transform(box)
                    return Raster(np.moveaxis(data, 0, -1), fmt, path, src.crs, transform, dict(src.tags()))
        except RasterioIOError as e:
            raise RasterError(f"{path}: unreadable GeoTIFF ({_gdal_reason(e)}); re-export or re-download the file"
                              ) from None
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L", "RGB", "RGBA", "I;16", "I;16B", "I", "LA"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise RasterError(f"{path}: unreadable {fmt} ({e}); re-export or replace the file") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    raster = Raster(arr, fmt, path)
    return raster if window is None else raster.window(*window)


def read_image(path: str | Path, rgb_bands: Sequence[int] | None = None, window: Box | None = None) -> Raster:
    """Read an image as H×W×C in its stored dtype.

    ``rgb_bands`` picks bands (1-based, as GDAL counts them) in the order red, green, blue, e.g. ``(4, 3, 2)`` for
    Sentinel-2; by default a 1- or 3-band image is returned whole and a 4+-band image gives its first three bands.
    ``window`` = (row, col, height, width) reads only those pixels (a GeoTIFF from disk alone).
    """
    raster = _read_any(Path(path), window)
    arr = raster.array
    if raster.format == "PNG" and arr.shape[2] in (2, 4):  # drop alpha
        arr = arr[..., : arr.shape[2] - 1]
    arr = arr[..., [b - 1 for b in image_bands(path, arr.shape[2], rgb_bands)]]
    if arr.dtype not in (np.uint8, np.uint16):
        check_image_dtype(path, arr.dtype, np.issubdtype(arr.dtype, np.floating) and bool(np.isnan(arr).any()))
    return replace(raster, array=np.ascontiguousarray(arr))


def image_bands(path: str | Path, bands: int, rgb_bands: Sequence[int] | None) -> list[int]:
    """The 1-based bands of an image of ``bands`` bands read as red, green, blue (``rgb_bands``, default the first
    three, or the only one); a band the image does not have is an error that says what to pass."""
    chosen = list(rgb_bands) if rgb_bands is not None else [1] if bands == 1 else [1, 2, 3]
    for b in chosen:
        if not 1 <= b <= bands:
            raise RasterError(
                f"{path}: has {bands} band(s) but band {b} was asked for; say which bands to read as red, green, "
                f"blue with rgb_bands (1 or 3 band numbers within 1..{bands}, e.g. "
                f"[{', '.join(str(min(i, bands)) for i in (1, 2, 3))}]) in the --config YAML or the run config's "
                f"train section"
            )
    return chosen


def check_image_dtype(path: str | Path, dtype: np.dtype, nan: bool = False) -> None:
    """Images are uint8 or uint16; anything else is an error that says how to convert it."""
    if np.dtype(dtype) not in (np.uint8, np.uint16):
        raise RasterError(f"{path}: images must be uint8 or uint16, this one is {np.dtype(dtype)}"
                          f"{' with NaN pixels' if nan else ''}; rescale it to uint8 or uint16 first (no-data as 0), "
                          f"e.g. gdal_translate -ot UInt16 -scale -a_nodata 0 IN.tif OUT.tif")


def read_label(path: str | Path, classes: ClassMap | None = None, window: Box | None = None) -> Raster:
    """Read a label as H×W uint8 class ids (colour-coded labels decoded through ``classes``); ``window`` as in
    :func:`read_image`."""
    path = Path(path)
    if raster_format(path) == "JPEG":
        raise RasterError(f"{path}: JPEG is lossy and cannot hold exact labels; store labels as PNG or GeoTIFF")
    raster = _read_any(path, window)
    arr = raster.array
    if arr.shape[2] in (1, 2):
        ids = arr[..., 0]
        if ids.dtype != np.uint8:
            if ids.size and int(ids.max()) > 255:
                raise RasterError(f"{path}: label value {int(ids.max())} is above 255; class ids must be 0..255")
            ids = ids.astype(np.uint8)
        palette = _png_palette(path) if raster.format == "PNG" else None
        if palette is not None and classes is not None and _palette_is_colour_code(palette, ids, classes):
            ids = classes.decode_colors(palette[ids], path)
        elif classes is not None:
            ids = classes.decode_values(ids, path)
    elif arr.shape[2] >= 3:
        if classes is None:
            raise RasterError(f"{path}: a colour-coded (3-band) label needs a class map with colours (--classes)")
        if arr.dtype != np.uint8:
            raise RasterError(f"{path}: colour-coded labels must be uint8, this one is {arr.dtype}")
        ids = classes.decode_colors(arr, path)
    else:  # pragma: no cover - shapes above are exhaustive
        raise RasterError(f"{path}: unexpected label shape {arr.shape}")
    return replace(raster, array=np.ascontiguousarray(ids))


def _png_palette(path: Path) -> np.ndarray | None:
    """The 256×3 palette of a palette-mode PNG (missing entries black), or None for any other PNG."""
    with Image.open(path) as im:
        if im.mode != "P":
            return None
        flat = np.asarray(im.getpalette("RGB") or [], np.uint8)[: 256 * 3]
    palette = np.zeros((256, 3), np.uint8)
    palette.reshape(-1)[: flat.size] = flat
    return palette


def _palette_is_colour_code(palette: np.ndarray, ids: np.ndarray, classes: ClassMap) -> bool:
    """Whether a palette-mode label encodes classes by colour rather than by index.

    Some datasets (the Dubai aerial masks, for one) save colour-coded masks as palette PNGs whose palette order
    differs from file to file, so the index of a pixel means nothing and its palette colour names the class. That is
    the case when every used palette colour is a class colour but some used index is a class id drawn in another
    colour. Otherwise (paintseg's own labels, whose palette is the class colours; arbitrary palettes) the indices are
    the class ids.
    """
    used = np.flatnonzero(np.bincount(ids.reshape(-1), minlength=256))
    colours: dict[tuple[int, int, int], int] = {}
    for c in classes:
        for col in c.colors:
            colours[parse_color(col, classes.source)] = c.id
    if not all(tuple(int(v) for v in palette[i]) in colours for i in used):
        return False
    for i in used:
        own = {parse_color(col, classes.source) for c in classes if c.id == i for col in c.colors}
        if own and tuple(int(v) for v in palette[i]) not in own:
            return True
    return False


# --------------------------------------------------------------------------------------------- writing
def _partial(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _write_gtiff(path: Path, arr: np.ndarray, like: Raster | None, colormap: dict | None) -> None:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    data = arr if arr.ndim == 3 else arr[..., None]
    profile = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": data.shape[2],
        "dtype": data.dtype.name,
        "compress": "deflate",
    }
    if like is not None and like.crs is not None:
        profile["crs"] = like.crs
    if like is not None and like.transform is not None and not like.transform.is_identity:
        profile["transform"] = like.transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(data, -1, 0))
            if colormap is not None and data.shape[2] == 1 and data.dtype == np.uint8:
                dst.write_colormap(1, colormap)


def _finish(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def write_image(path: str | Path, array: np.ndarray, like: Raster | None = None) -> Path:
    """Write an H×W×C (or H×W) image; a GeoTIFF gets ``like``'s CRS and transform."""
    path = Path(path)
    fmt = raster_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    if fmt == "GTiff":
        _write_gtiff(tmp, array, like, None)
    else:
        arr = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
        if arr.dtype != np.uint8:
            raise RasterError(f"{path}: {fmt} holds 8-bit images only; write {arr.dtype} imagery as .tif")
        im = Image.fromarray(arr)
        im.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return _finish(tmp, path)


def write_label(path: str | Path, label: np.ndarray, like: Raster | None = None,
                classes: ClassMap | None = None) -> Path:
    """Write H×W class ids as one band (PNG: palette mode, so viewers show the class colours)."""
    path = Path(path)
    fmt = raster_format(path)
    if fmt == "JPEG":
        raise RasterError(f"{path}: JPEG is lossy and cannot hold exact labels; write labels as .png or .tif")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise RasterError(f"{path}: a label must be an H×W uint8 array, got {label.shape} {label.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    lut = (classes.lut() if classes is not None else _default_lut())
    if fmt == "GTiff":
        _write_gtiff(tmp, label, like, {i: (*map(int, lut[i]), 255) for i in range(256)})
    else:
        im = Image.frombytes("P", (label.shape[1], label.shape[0]), np.ascontiguousarray(label).tobytes())
        im.putpalette(lut.reshape(-1).tolist())
        im.save(tmp, format="PNG")
    return _finish(tmp, path)


def _default_lut() -> np.ndarray:
    rng = np.random.default_rng(0)
    lut = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    lut[0] = 0
    lut[255] = 128
    return lut


# --------------------------------------------------------------------------------------------- conversions
def stretch_bounds(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-band 2nd and 98th percentiles (1×1×C each) that :func:`to_float` stretches uint16 imagery between."""
    img = image.astype(np.float32) if image.ndim == 3 else image.astype(np.float32)[..., None]
    return (np.percentile(img, 2, axis=(0, 1), keepdims=True), np.percentile(img, 98, axis=(0, 1), keepdims=True))


def to_float(image: np.ndarray, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """H×W×C uint8/uint16 → H×W×3 float32 in [0, 1] for models.

    uint8 is divided by 255; uint16 is stretched per band between its 2nd and 98th percentiles (``bounds``: given
    ones, e.g. of the whole image when this is one window of it). A 1-band image is repeated to 3 bands.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255.0
    else:
        img = image.astype(np.float32)
        lo, hi = bounds if bounds is not None else stretch_bounds(img)
        out = np.clip((img - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out[..., :3])


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Display version of any image: uint8 H×W×3."""
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    return (to_float(image) * 255 + 0.5).astype(np.uint8)
