"""Atomic file writes (no torch import, so configs and episodes can use them): write to a temporary name in the same
folder, then rename, so a killed process never leaves half a file under the real name."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` (parent folders created) through ``.NAME.partial``."""
    return write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (parent folders created) through ``.NAME.partial``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Save an image array as PNG at ``path`` (parent folders created) through ``.NAME.partial``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
