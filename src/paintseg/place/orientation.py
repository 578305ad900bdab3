"""Orientation: elongated instances lie along (or across) the structure around them - a boat along its quay, a
bridge across its river, a house along its street. This module measures both angles and turns references so that
a placement keeps the relation its support instance had.

- :func:`structure_angle`: the dominant direction of the edges around a box (structure tensor of the grey image in
  the frame around it) and how coherent it is (0: no direction, 1: all edges parallel);
- :func:`instance_axis`: the principal axis of an instance mask and its elongation (ratio of the axes' lengths);
- :func:`placement_angle`: the rotation that carries the reference's own surroundings' direction onto the new
  spot's, used by :func:`paintseg.place.placement.plan_placements` with ``orient=True`` when the instance is
  elongated and both directions are coherent (otherwise 0: the reference keeps its orientation);
- :func:`rotate_reference`: the reference crop and mask turned by that angle (the canvas grows to hold it);
- :func:`alignment`: ``cos 2Δ`` of the angle Δ between an instance's axis and its surroundings' direction: 1 along
  the structure, -1 across it, 0 on average for random angles - the measure of whether placements keep the
  relation the real instances show.

Angles are degrees, counter-clockwise in the image as displayed (x right, y down), modulo 180.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .masks import Box, mask_box
from .references import Reference

MIN_COHERENCE = 0.25  # below it, the surroundings have no direction worth following
MIN_ELONGATION = 1.5  # below it, an instance has no axis worth turning


def _wrap(angle: float) -> float:
    """``angle`` modulo 180, in (-90, 90]."""
    a = (angle + 90.0) % 180.0 - 90.0
    return 90.0 if a == -90.0 else a


def structure_angle(image: np.ndarray, box: Box, ring: int = 16) -> tuple[float, float]:
    """(direction of the edges, coherence) in the frame ``ring`` pixels wide around ``box``; (0, 0) when empty."""
    h, w = image.shape[:2]
    outer = Box(box.x0 - ring, box.y0 - ring, box.x1 + ring, box.y1 + ring).clip(h, w)
    crop = image[outer.y0 : outer.y1, outer.x0 : outer.x1]
    if crop.size == 0:
        return 0.0, 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(crop[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    frame = np.ones(grey.shape, bool)
    frame[max(box.y0 - outer.y0, 0) : box.y1 - outer.y0, max(box.x0 - outer.x0, 0) : box.x1 - outer.x0] = False
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = float((gx * gx)[frame].sum()), float((gy * gy)[frame].sum()), float((gx * gy)[frame].sum())
    if jxx + jyy <= 1e-9:
        return 0.0, 0.0
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / (jxx + jyy)
    gradient = 0.5 * math.degrees(math.atan2(2 * jxy, jxx - jyy))  # direction across the edges, image y down
    return _wrap(-(gradient + 90.0)), coherence  # along the edges, counter-clockwise as displayed


def instance_axis(mask: np.ndarray) -> tuple[float, float]:
    """(principal axis, elongation >= 1) of a boolean mask; (0, 1) for an empty or round one."""
    m = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    if m["m00"] == 0:
        return 0.0, 1.0
    mu20, mu02, mu11 = m["mu20"] / m["m00"], m["mu02"] / m["m00"], m["mu11"] / m["m00"]
    spread = math.sqrt(((mu20 - mu02) / 2) ** 2 + mu11 ** 2)
    major, minor = (mu20 + mu02) / 2 + spread, (mu20 + mu02) / 2 - spread
    elongation = math.sqrt(major / minor) if minor > 1e-9 else float("inf")
    return _wrap(-0.5 * math.degrees(math.atan2(2 * mu11, mu20 - mu02))), elongation


def placement_angle(ref_structure: tuple[float, float], spot_structure: tuple[float, float],
                    elongation: float) -> float:
    """The rotation (degrees) that turns the reference's surroundings' direction onto the spot's; 0 when the
    instance is not elongated or either direction is not coherent."""
    (ref_angle, ref_coherence), (spot_angle, spot_coherence) = ref_structure, spot_structure
    if elongation < MIN_ELONGATION or min(ref_coherence, spot_coherence) < MIN_COHERENCE:
        return 0.0
    return round(_wrap(spot_angle - ref_angle), 2)


def alignment(axis: float, structure: float) -> float:
    """``cos 2Δ`` of the angle between an instance axis and its surroundings' direction: 1 along, -1 across."""
    return math.cos(math.radians(2 * (axis - structure)))


def rotated_size(mask: np.ndarray, angle: float) -> tuple[int, int]:
    """(width, height) of the tight box of ``mask``'s instance turned by ``angle`` degrees."""
    b = mask_box(mask)
    w, h = b.width, b.height
    c, s = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    if angle == 0:
        return w, h
    turned = _turn(mask[b.y0 : b.y1, b.x0 : b.x1].astype(np.uint8) * 255, angle, cv2.INTER_NEAREST, 0) > 127
    if not turned.any():
        return max(1, round(w * c + h * s)), max(1, round(w * s + h * c))
    t = mask_box(turned)
    return t.width, t.height


def _turn(array: np.ndarray, angle: float, interpolation: int, border: int) -> np.ndarray:
    h, w = array.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(math.ceil(w * c + h * s - 1e-6)), int(math.ceil(w * s + h * c - 1e-6))
    matrix[0, 2] += nw / 2 - w / 2
    matrix[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(np.ascontiguousarray(array), matrix, (nw, nh), flags=interpolation,
                          borderMode=cv2.BORDER_REFLECT_101 if border < 0 else cv2.BORDER_CONSTANT,
                          borderValue=0 if border < 0 else border)


def rotate_reference(ref: Reference, angle: float) -> Reference:
    """``ref`` turned by ``angle`` degrees counter-clockwise (as displayed): the crop (edges reflected into the new
    corners) and the mask on a canvas large enough for both; source and boxes stay those of the original."""
    if angle == 0:
        return ref
    image = _turn(ref.image, angle, cv2.INTER_LINEAR, -1)
    mask = _turn(ref.mask.astype(np.uint8) * 255, angle, cv2.INTER_NEAREST, 0) > 127
    if not mask.any():
        return ref
    return Reference(image, mask, ref.class_id, ref.source, ref.box, ref.instance_box)
