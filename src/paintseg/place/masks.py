"""Inpaint mask shapes: where, inside a box, the generator is asked to paint.

Three shapes, as the literature trains inpainting models:

- ``rectangle``: the box enlarged by up to ``enlarge`` (20 %) of the free space on each side (RS-Paint);
- ``bezier``: a smooth random blob filling most of the box (Paint-by-Example);
- ``silhouette``: a reference's own mask, randomly scaled, rotated and flipped, fitted into the box.

Boxes are ``(x0, y0, x1, y1)`` in pixels, half-open (``x1``/``y1`` excluded). Masks are boolean ``H×W`` arrays,
True where to paint.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from paintseg.config import GENERATOR_MASK_KINDS as MASK_KINDS  # the inpaint mask shapes, named once
from paintseg.errors import PaintsegError


class Box(NamedTuple):
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def overlaps(self, other: "Box") -> bool:
        """Whether the two (half-open) boxes share a pixel."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def clip(self, height: int, width: int) -> "Box":
        return Box(max(self.x0, 0), max(self.y0, 0), min(self.x1, width), min(self.y1, height))

    def shift(self, dx: int, dy: int) -> "Box":
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def scale(self, sx: float, sy: float | None = None) -> "Box":
        """The box in a resized frame (pixel coordinates multiplied by sx, sy), at least 1 pixel."""
        sy = sx if sy is None else sy
        x0, y0 = int(round(self.x0 * sx)), int(round(self.y0 * sy))
        return Box(x0, y0, max(int(round(self.x1 * sx)), x0 + 1), max(int(round(self.y1 * sy)), y0 + 1))


def mask_box(mask: np.ndarray) -> Box:
    """The tight box around the True pixels of a mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise PaintsegError("mask_box: the mask is empty")
    return Box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _check(shape: tuple[int, int], box: Box) -> Box:
    box = Box(*map(int, box))
    if box.width <= 0 or box.height <= 0:
        raise PaintsegError(f"mask box {tuple(box)} is empty; x1 > x0 and y1 > y0 are needed")
    clipped = box.clip(*shape)
    if clipped.width <= 0 or clipped.height <= 0:
        raise PaintsegError(f"mask box {tuple(box)} lies outside the {shape[1]}x{shape[0]} frame")
    return clipped


def rectangle_mask(shape: tuple[int, int], box: Box, rng: np.random.Generator, enlarge: float = 0.2) -> np.ndarray:
    """The box, each side pushed out by a random share (up to ``enlarge``) of the free space on that side."""
    h, w = shape
    box = _check(shape, box)
    grow = rng.uniform(0, enlarge, 4)
    x0 = int(round(box.x0 - grow[0] * box.x0))
    y0 = int(round(box.y0 - grow[1] * box.y0))
    x1 = int(round(box.x1 + grow[2] * (w - box.x1)))
    y1 = int(round(box.y1 + grow[3] * (h - box.y1)))
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def bezier_mask(shape: tuple[int, int], box: Box, rng: np.random.Generator, points: int = 8,
                roughness: float = 0.25) -> np.ndarray:
    """A closed blob of quadratic Bézier segments through ``points`` radii jittered around an ellipse in the box."""
    box = _check(shape, box)
    cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    rx, ry = box.width / 2, box.height / 2
    points = max(points, 3)
    step = 2 * np.pi / points
    angles = rng.uniform(0, 2 * np.pi) + step * (np.arange(points) + rng.uniform(-0.3, 0.3, points))
    radius = np.clip(1 - rng.uniform(0, roughness, len(angles)), 0.35, 1.0)
    anchors = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], 1)
    curve = []
    for i in range(len(anchors)):
        a, b = anchors[i], anchors[(i + 1) % len(anchors)]
        mid = (a + b) / 2
        ctrl = mid + (mid - np.array([cx, cy])) * rng.uniform(0.1, 0.5)  # bulge outwards: convex-ish blob
        curve.append(_bezier(a, ctrl, b))
    poly = np.concatenate(curve)
    poly[:, 0] = np.clip(poly[:, 0], box.x0, box.x1 - 1)
    poly[:, 1] = np.clip(poly[:, 1], box.y0, box.y1 - 1)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    if not mask.any():
        mask[box.y0 : box.y1, box.x0 : box.x1] = 1
    return mask.astype(bool)


def silhouette_mask(shape: tuple[int, int], box: Box, ref_mask: np.ndarray, rng: np.random.Generator,
                    scale_jitter: float = 0.15, rotate: bool = True, flip: bool = True) -> np.ndarray:
    """The reference's own mask, flipped and rotated at random, scaled (± ``scale_jitter``) to fit the box."""
    box = _check(shape, box)
    if ref_mask is None or not np.asarray(ref_mask).any():
        raise PaintsegError("silhouette mask: the reference mask is empty; pass the reference's object mask")
    m = np.asarray(ref_mask, bool)
    b = mask_box(m)
    m = m[b.y0 : b.y1, b.x0 : b.x1]
    if flip and rng.random() < 0.5:
        m = m[:, ::-1]
    if flip and rng.random() < 0.5:
        m = m[::-1, :]
    if rotate:
        m = np.rot90(m, int(rng.integers(0, 4)))
        angle = float(rng.uniform(-30, 30))
        ph, pw = m.shape
        diag = int(np.ceil(np.hypot(ph, pw))) + 2
        canvas = np.zeros((diag, diag), np.uint8)
        oy, ox = (diag - ph) // 2, (diag - pw) // 2
        canvas[oy : oy + ph, ox : ox + pw] = m
        rot = cv2.getRotationMatrix2D((diag / 2, diag / 2), angle, 1.0)
        canvas = cv2.warpAffine(canvas, rot, (diag, diag), flags=cv2.INTER_NEAREST)
        if canvas.any():
            cb = mask_box(canvas > 0)
            m = canvas[cb.y0 : cb.y1, cb.x0 : cb.x1] > 0
    s = 1 - rng.uniform(0, scale_jitter)
    tw = max(1, int(round(box.width * s)))
    th = max(1, int(round(box.height * s)))
    resized = cv2.resize(np.ascontiguousarray(m, np.uint8), (tw, th), interpolation=cv2.INTER_NEAREST) > 0
    mask = np.zeros(shape, bool)
    ox = box.x0 + int(rng.integers(0, box.width - tw + 1))
    oy = box.y0 + int(rng.integers(0, box.height - th + 1))
    mask[oy : oy + th, ox : ox + tw] = resized
    if not mask.any():
        mask[box.y0 : box.y1, box.x0 : box.x1] = True
    return mask


def make_mask(kind: str, shape: tuple[int, int], box: Box, rng: np.random.Generator,
              ref_mask: np.ndarray | None = None) -> np.ndarray:
    """Dispatch on ``kind`` (one of MASK_KINDS)."""
    if kind == "rectangle":
        return rectangle_mask(shape, box, rng)
    if kind == "bezier":
        return bezier_mask(shape, box, rng)
    if kind == "silhouette":
        return silhouette_mask(shape, box, ref_mask, rng)
    raise PaintsegError(f"unknown mask kind {kind!r}; use one of {', '.join(MASK_KINDS)}")


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soft alpha from a boolean mask: 1 deep inside, falling to 0 at the mask's edge over about ``radius`` pixels.

    The alpha never leaves the mask, so pixels outside it keep their original values exactly."""
    m = mask.astype(np.float32)
    if radius <= 0 or not mask.any():
        return m
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(dist / float(radius), 0.0, 1.0) * m
