"""Colour augmentation shared by the training pairs of the painters (the hint's re-colouring) and of the harmoniser
(the re-coloured instance it learns to put back)."""

from __future__ import annotations

import numpy as np


def recolour(pixels: np.ndarray, rng: np.random.Generator, shift: float) -> np.ndarray:
    """A random colour transform of float RGB in [0, 1] (any shape ending in 3)."""
    gain = 1 + shift * rng.uniform(-0.25, 0.25, 3)
    offset = shift * rng.uniform(-0.1, 0.1, 3)
    gamma = float(np.exp(shift * rng.uniform(np.log(0.7), np.log(1.4))))
    saturation = 1 + shift * rng.uniform(-0.4, 0.4)
    x = np.clip(pixels, 0, 1) ** gamma
    grey = x.mean(-1, keepdims=True)
    x = grey + (x - grey) * saturation
    return np.clip(x * gain + offset, 0, 1).astype(np.float32)
