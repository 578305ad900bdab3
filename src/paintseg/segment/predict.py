"""Sliding-window prediction with a trained RUN on images of any size.

Windows (the training crop by default) overlap by ``overlap``; each window's class probabilities are weighted by a
smooth bump that favours its centre (window borders see the least context) and summed, and the arg-max is the label.
Images smaller than a window are padded. Only the classes the model was trained on can be predicted: base and novel
ids, plus background 0 when the run learnt it.

For every input ``<stem>.<ext>`` it writes ``OUT/<stem>.tif`` (GeoTIFF input: same CRS and transform) or
``OUT/<stem>.png`` (PNG or JPEG input; JPEG is lossy, so labels are PNG), a single band of class ids, and a colour
preview ``OUT/color/<stem>.png``. GeoTIFFs of more than :data:`LARGE_PIXELS` pixels are read and written window by
window (:func:`predict_geotiff`): memory stays flat however large the image, and the labels are the same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from paintseg.errors import PaintsegError
from ..data.classes import BACKGROUND, ClassMap
from ..data.raster import FORMATS, LABEL_SUFFIX, is_raster, read_image, to_float, write_image, write_label
from paintseg.networks import Segmenter
from .train import load_model


class PredictError(PaintsegError):
    """Inputs or options that prediction cannot use; the message says what to pass instead."""


def expand_images(images: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the rasters directly inside them (sorted); duplicate stems are an error."""
    paths: list[Path] = []
    for entry in map(Path, images):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.is_file() and is_raster(p) and not p.name.startswith("."))
            if not found:
                raise PredictError(f"{entry}: folder holds no images ({', '.join(sorted(FORMATS))})")
            paths.extend(found)
        elif entry.is_file():
            if not is_raster(entry):
                raise PredictError(f"{entry}: not an image paintseg reads ({', '.join(sorted(FORMATS))})")
            paths.append(entry)
        else:
            raise PredictError(f"{entry}: no such file or folder; check the path")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise PredictError(f"{seen[p.stem]} and {p} have the same stem {p.stem!r}, so their labels would have the "
                               f"same name; predict them into different --out folders")
        seen[p.stem] = p
    return paths


def window_weight(size: int) -> torch.Tensor:
    """``size×size`` weights: a sine bump, 1 at the centre, falling to a small positive floor at the border."""
    ramp = np.sin(np.pi * (np.arange(size) + 0.5) / size)
    ramp = np.maximum(ramp, 0.05)
    return torch.from_numpy(np.outer(ramp, ramp).astype(np.float32))


def _starts(length: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``0..length`` (``length >= window``), the last one flush with the end."""
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def allowed_classes(classes: ClassMap, meta: dict) -> list[int]:
    """Channels the model was trained on: base and novel ids, plus background when the run learnt it."""
    ids = classes.scored_ids + ([BACKGROUND] if meta.get("learn_background") else [])
    return sorted(i for i in set(ids) if i < int(meta["num_classes"]))


@torch.inference_mode()
def predict_windows(model: Segmenter, read, height: int, width: int, window: int, overlap: float, batch: int,
                    allowed: Sequence[int] | None, write, columns: int | None = None) -> None:
    """The engine of sliding-window prediction, in bounded memory.

    ``read(y0, y1, x0, x1)`` gives float32 pixels (H×W×3 in [0, 1], zeros beyond the image) and ``write(y0, x0,
    labels)`` takes finished label rows of a column range. Windows sit on one grid over the whole image (padded to
    at least one window); the image is done in column blocks of ``columns`` output pixels (None: all at once), each
    block running every window that touches it, and within a block row by row of windows, so memory grows with
    ``num_classes × window × (columns + window)`` - not with the image. Every pixel sums the same windows in the
    same order whatever ``columns`` is, so blocking does not change the labels.
    """
    device = next(model.parameters()).device
    ph, pw = max(height, window), max(width, window)
    stride = max(1, int(round(window * (1 - overlap))))
    ys, xs_all = _starts(ph, window, stride), _starts(pw, window, stride)
    weight = window_weight(window).to(device)
    mask = torch.full((model.num_classes,), float("-inf"), device=device)
    mask[list(allowed) if allowed else slice(None)] = 0.0
    step = columns or pw
    for c0 in range(0, width, step):
        c1 = min(width, c0 + step)
        xs = [x for x in xs_all if x < c1 and x + window > c0]
        a0, a1 = xs[0], xs[-1] + window  # the columns these windows cover
        acc = torch.zeros(model.num_classes, window, a1 - a0, device=device)  # label rows y .. y + window
        for i, y in enumerate(ys):
            strip = torch.from_numpy(read(y, y + window, a0, a1)).permute(2, 0, 1)
            for j in range(0, len(xs), batch):
                chunk = xs[j : j + batch]
                tiles = torch.stack([strip[:, :, x - a0 : x - a0 + window] for x in chunk]).to(device)
                probs = torch.softmax(model(tiles) + mask.view(1, -1, 1, 1), dim=1) * weight
                for x, p in zip(chunk, probs):
                    acc[:, :, x - a0 : x - a0 + window] += p
            done = (ys[i + 1] if i + 1 < len(ys) else y + window) - y  # rows no later window touches
            rows = min(done, height - y)
            if rows > 0:
                write(y, c0, acc[:, :rows, c0 - a0 : c1 - a0].argmax(0).to(torch.uint8).cpu().numpy())
            rest = torch.zeros_like(acc)
            rest[:, : window - done] = acc[:, done:]
            acc = rest


def predict_array(model: Segmenter, image: np.ndarray, window: int, overlap: float = 0.25, batch: int = 4,
                  allowed: Sequence[int] | None = None) -> np.ndarray:
    """Class ids (H×W uint8) for one H×W×3 float image in [0, 1], by overlapping windows (:func:`predict_windows`)."""
    height, width = image.shape[:2]
    padded = np.zeros((max(height, window), max(width, window), 3), np.float32)
    padded[:height, :width] = image[..., :3]
    label = np.empty((height, width), np.uint8)

    def write(y0: int, x0: int, rows: np.ndarray) -> None:
        label[y0 : y0 + rows.shape[0], x0 : x0 + rows.shape[1]] = rows

    predict_windows(model, lambda y0, y1, x0, x1: padded[y0:y1, x0:x1], height, width, window, overlap, batch,
                    allowed, write)
    return label


LARGE_PIXELS = 4096 * 4096  # GeoTIFFs above this are predicted window by window from disk (predict_geotiff)
BLOCK = 2048  # output columns per block of the windowed path
GDAL_CACHE_MB = 64  # GDAL's block cache while doing so (its default, 5 % of RAM, grows with the image)


def predict_geotiff(model: Segmenter, path: Path, target: Path, window: int, overlap: float, batch: int,
                    allowed: Sequence[int] | None, classes: ClassMap, rgb_bands: Sequence[int] | None = None,
                    columns: int = BLOCK) -> Path:
    """Predict a GeoTIFF of any size into ``target`` (a tiled, compressed GeoTIFF with the input's CRS, transform
    and size) by windowed reads and writes: memory stays flat as the image grows. uint16 imagery is stretched
    between percentiles of a decimated overview of the whole image (at most 1024 px a side)."""
    import rasterio
    from rasterio.windows import Window

    from ..data.raster import check_image_dtype, image_bands, stretch_bounds, to_float

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), rasterio.open(path) as src:
        bands = image_bands(path, src.count, rgb_bands)  # what read_image would read
        dtype = np.dtype(src.dtypes[bands[0] - 1])
        check_image_dtype(path, dtype)
        bounds = None
        if dtype == np.uint16:
            scale = max(1, int(np.ceil(max(src.height, src.width) / 1024)))
            overview = src.read(bands, out_shape=(len(bands), src.height // scale, src.width // scale))
            bounds = stretch_bounds(np.moveaxis(overview, 0, -1))

        def read(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            data = src.read(bands, window=Window(x0, y0, x1 - x0, y1 - y0), boundless=True, fill_value=0)
            pixels = to_float(np.moveaxis(data, 0, -1), bounds)
            inside = np.zeros(pixels.shape[:2], bool)  # zeros beyond the image, as the in-memory path pads
            inside[: max(0, src.height - y0), : max(0, src.width - x0)] = True
            return np.where(inside[..., None], pixels, 0).astype(np.float32)

        profile = {"driver": "GTiff", "height": src.height, "width": src.width, "count": 1, "dtype": "uint8",
                   "crs": src.crs, "transform": src.transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
                   "compress": "deflate"}
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        lut = classes.lut()
        with rasterio.open(partial, "w", **profile) as dst:
            dst.write_colormap(1, {i: (*map(int, lut[i]), 255) for i in range(256)})
            predict_windows(model, read, src.height, src.width, window, overlap, batch, allowed,
                            lambda y0, x0, rows: dst.write(rows[None], window=Window(x0, y0, rows.shape[1],
                                                                                      rows.shape[0])),
                            columns=columns)
    os.replace(partial, target)
    return target


def _preview(label_path: Path, out: Path, classes: ClassMap, side: int = 2048) -> None:
    """A colour preview of a (large) label file, decimated to at most ``side`` pixels, read without loading it all."""
    import rasterio

    with rasterio.open(label_path) as src:
        scale = max(1, int(np.ceil(max(src.height, src.width) / side)))
        small = src.read(1, out_shape=(max(1, src.height // scale), max(1, src.width // scale)),
                         resampling=rasterio.enums.Resampling.nearest)
    write_image(out, classes.colorize(small))


def predict(run: str | Path, images: Sequence[str | Path], out: str | Path, window: int | None = None,
            overlap: float = 0.25, batch: int = 4, progress: bool = True, device: str | None = None,
            large_pixels: int = LARGE_PIXELS) -> list[Path]:
    """Predict every image (files or folders of images) with the model of ``run``; returns the label paths.
    GeoTIFFs of more than ``large_pixels`` pixels go window by window from disk (:func:`predict_geotiff`), with a
    decimated colour preview."""
    model, classes, meta = load_model(run, device)
    window = int(window or meta["crop"])
    if window < 32 or window % 32:
        raise PredictError(f"window {window} must be a multiple of 32 (at least 32); the run was trained on "
                           f"{meta['crop']}-pixel crops")
    if not 0 <= overlap <= 0.9:
        raise PredictError(f"overlap {overlap} must be within 0..0.9 (0.25: a quarter of each window is shared)")
    if batch < 1:
        raise PredictError(f"batch {batch} must be at least 1")
    paths = expand_images(images)
    out = Path(out)
    targets = [out / f"{p.stem}{LABEL_SUFFIX[FORMATS[p.suffix.lower()]]}" for p in paths]
    inputs = {p.resolve() for p in paths}
    for target in targets:
        if target.resolve() in inputs:
            raise PredictError(f"{target}: writing the label would overwrite an input image; pass another --out")
    allowed = allowed_classes(classes, meta)
    written: list[Path] = []
    for path, target in tqdm(list(zip(paths, targets)), desc="predict", unit="img", disable=not progress):
        if FORMATS[path.suffix.lower()] == "GTiff" and _pixels(path) > large_pixels:
            predict_geotiff(model, path, target, window, overlap, batch, allowed, classes, meta.get("rgb_bands"))
            _preview(target, out / "color" / f"{path.stem}.png", classes)
        else:
            raster = read_image(path, meta.get("rgb_bands"))
            label = predict_array(model, to_float(raster.array), window, overlap, batch, allowed)
            write_label(target, label, like=raster, classes=classes)
            write_image(out / "color" / f"{path.stem}.png", classes.colorize(label))
        written.append(target)
    return written


def _pixels(path: Path) -> int:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.width * src.height
    except rasterio.errors.RasterioIOError:
        return 0  # read_image then says what is wrong with the file
