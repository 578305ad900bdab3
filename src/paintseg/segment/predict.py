"""Sliding-window prediction with a trained RUN on images of any size.

Windows (the training crop by default) overlap by ``overlap``; each window's class probabilities are weighted by a
smooth bump that favours its centre (window borders see the least context) and summed, and the arg-max is the label.
Images smaller than a window are padded. Only the classes the model was trained on can be predicted: base and novel
ids, plus background 0 when the run learnt it.

For every input ``<stem>.<ext>`` it writes ``OUT/<stem>.tif`` (GeoTIFF input: same CRS and transform) or
``OUT/<stem>.png`` (PNG or JPEG input; JPEG is lossy, so labels are PNG), a single band of class ids, and a colour
preview ``OUT/color/<stem>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from paintseg.errors import PaintsegError
from ..data.classes import BACKGROUND, ClassMap
from ..data.raster import FORMATS, LABEL_SUFFIX, is_raster, read_image, to_float, write_image, write_label
from .models import Segmenter
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
def predict_array(model: Segmenter, image: np.ndarray, window: int, overlap: float = 0.25, batch: int = 4,
                  allowed: Sequence[int] | None = None) -> np.ndarray:
    """Class ids (H×W uint8) for one H×W×3 float image in [0, 1], by overlapping windows.

    Rows of windows are processed top to bottom and the rows of the label that no later window covers are finished
    at once, so memory grows with ``num_classes × window × width``, not with the image area.
    """
    device = next(model.parameters()).device
    height, width = image.shape[:2]
    ph, pw = max(height, window), max(width, window)
    padded = np.zeros((ph, pw, 3), np.float32)
    padded[:height, :width] = image[..., :3]
    pixels = torch.from_numpy(padded).permute(2, 0, 1)
    stride = max(1, int(round(window * (1 - overlap))))
    ys, xs = _starts(ph, window, stride), _starts(pw, window, stride)
    weight = window_weight(window).to(device)
    num_classes = model.num_classes
    mask = torch.full((num_classes,), float("-inf"), device=device)
    mask[list(allowed) if allowed else slice(None)] = 0.0

    label = np.empty((ph, pw), np.uint8)
    acc = torch.zeros(num_classes, window, pw, device=device)  # covers label rows y .. y + window
    for i, y in enumerate(ys):
        for j in range(0, len(xs), batch):
            chunk = xs[j : j + batch]
            tiles = torch.stack([pixels[:, y : y + window, x : x + window] for x in chunk]).to(device)
            probs = torch.softmax(model(tiles) + mask.view(1, -1, 1, 1), dim=1) * weight
            for x, p in zip(chunk, probs):
                acc[:, :, x : x + window] += p
        done = (ys[i + 1] if i + 1 < len(ys) else y + window) - y  # rows no later window touches
        label[y : y + done] = acc[:, :done].argmax(0).to(torch.uint8).cpu().numpy()
        rest = torch.zeros_like(acc)
        rest[:, : window - done] = acc[:, done:]
        acc = rest
    return label[:height, :width]


def predict(run: str | Path, images: Sequence[str | Path], out: str | Path, window: int | None = None,
            overlap: float = 0.25, batch: int = 4, progress: bool = True, device: str | None = None) -> list[Path]:
    """Predict every image (files or folders of images) with the model of ``run``; returns the label paths."""
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
        raster = read_image(path, meta.get("rgb_bands"))
        label = predict_array(model, to_float(raster.array), window, overlap, batch, allowed)
        write_label(target, label, like=raster, classes=classes)
        write_image(out / "color" / f"{path.stem}.png", classes.colorize(label))
        written.append(target)
    return written
