"""References: the novel-class instances cut from an episode's support set (image crop + instance mask).

Every support image of a novel class is split into instances: the 8-connected components of that class's pixels.
Fragments smaller than ``min_area`` pixels are merged into the nearest large component when they lie within
``merge_distance`` pixels of it (they are part of the same object, cut by a thin occluder or a labelling slip), and
dropped otherwise. When every component of an image is small, the largest one is kept as the instance (and the rule
above merges the fragments around it), so a support image with any pixel of its class yields at least one reference.

Each reference keeps its crop of the support image: the instance's tight box grown by ``pad`` of its size on every
side (clipped to the image), the instance's own pixels as a mask inside the crop, and where both came from::

    refs = extract_references(Episode("episode"))
    save_references(refs, "run/references", classes=episode.classes)   # PNGs + references.jsonl, to look at
    refs = load_references("run/references")
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from paintseg.data.classes import ClassMap
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, to_uint8, write_image
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .masks import Box, mask_box

MANIFEST = "references.jsonl"


class ReferencesError(PaintsegError):
    """Support data that yields no usable reference; the message names the class, the files and the fix."""


@dataclass
class Reference:
    """One novel-class instance: a padded crop of a support image and the instance's pixels inside it."""

    image: np.ndarray  # uint8 H×W×3 crop, with padding around the instance
    mask: np.ndarray  # bool H×W, the instance's pixels inside the crop
    class_id: int
    source: str  # the support image's name in the episode
    box: Box  # the crop's box in the source image (x0, y0, x1, y1)
    instance_box: Box  # the instance's tight box in the source image

    @property
    def area(self) -> int:
        """Number of instance pixels."""
        return int(np.count_nonzero(self.mask))


# --------------------------------------------------------------------------------------------- instances
def instance_masks(binary: np.ndarray, min_area: int = 16, merge_distance: int = 3) -> list[np.ndarray]:
    """The instances of a binary mask as full-size boolean masks, in raster order of their first pixel.

    Components are 8-connected. A component below ``min_area`` pixels joins the large component nearest to it if
    that one is within ``merge_distance`` pixels (chessboard distance, i.e. a square dilation by ``merge_distance``
    touches it), else it is dropped. If no component reaches ``min_area``, the largest one counts as large.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if count <= 1:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    large = [i + 1 for i in np.flatnonzero(areas >= min_area)]
    if not large:
        large = [int(np.argmax(areas)) + 1]
    small = sorted(set(range(1, count)) - set(large))
    owner = np.zeros(count, np.int32)  # component -> the large component it belongs to (0: dropped)
    owner[large] = large
    if small and merge_distance > 0:
        is_large = np.isin(labels, large)
        # for every pixel: chessboard distance to, and position of, the nearest large-component pixel
        dist, (iy, ix) = ndimage.distance_transform_cdt(~is_large, metric="chessboard", return_indices=True)
        for comp in small:
            x, y, w, h = stats[comp, :4]  # search the fragment's own box only
            ys, xs = np.nonzero(labels[y : y + h, x : x + w] == comp)
            ys, xs = ys + y, xs + x
            k = int(np.argmin(dist[ys, xs]))
            if dist[ys[k], xs[k]] <= merge_distance:
                owner[comp] = labels[iy[ys[k], xs[k]], ix[ys[k], xs[k]]]
    merged = owner[labels]
    return [merged == comp for comp in large]


def padded_box(box: Box, pad: float, height: int, width: int) -> Box:
    """``box`` grown by ``pad`` of its width (height) on the left and right (top and bottom), clipped to the image."""
    px, py = math.ceil(pad * box.width), math.ceil(pad * box.height)
    return Box(box.x0 - px, box.y0 - py, box.x1 + px, box.y1 + py).clip(height, width)


# --------------------------------------------------------------------------------------------- extraction
def extract_references(episode: Episode, min_area: int = 16, pad: float = 0.15,
                       merge_distance: int = 3) -> list[Reference]:
    """Every novel-class instance of every support image, ordered by class, support image and position.

    Raises :class:`ReferencesError` when a novel class of the support set yields no reference at all.
    """
    if min_area < 1 or pad < 0 or merge_distance < 0:
        raise ReferencesError(f"need min_area >= 1, pad >= 0 and merge_distance >= 0; got min_area={min_area}, "
                              f"pad={pad}, merge_distance={merge_distance}")
    refs: list[Reference] = []
    for class_id in sorted(episode.support):
        samples = [s for s in episode.support_samples if s.class_id == class_id]
        found = 0
        for sample in samples:
            label = episode.read_label(sample).array
            image = to_uint8(episode.read_image(sample).array)
            if label.shape != image.shape[:2]:
                raise ReferencesError(f"{sample.label}: label is {label.shape[1]}x{label.shape[0]} but its image "
                                      f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}; image and label "
                                      f"must have the same size")
            height, width = label.shape
            for instance in instance_masks(label == class_id, min_area, merge_distance):
                tight = mask_box(instance)
                crop = padded_box(tight, pad, height, width)
                rows, cols = slice(crop.y0, crop.y1), slice(crop.x0, crop.x1)
                refs.append(Reference(image[rows, cols].copy(), instance[rows, cols].copy(), class_id, sample.name,
                                      crop, tight))
                found += 1
        if not found:
            files = ", ".join(str(s.label or s.image) for s in samples) or "(none listed)"
            raise ReferencesError(
                f"novel class {class_id} ({episode.classes.name(class_id)}) has no pixels in its support labels "
                f"({files}); pick support images that contain the class, or check that their label value is "
                f"{class_id}")
    return refs


# --------------------------------------------------------------------------------------------- summary and storage
def references_summary(refs: list[Reference], classes: ClassMap | None = None) -> dict:
    """Per class (by name when ``classes`` is given, else by id): count, support images used, area quantiles."""
    out: dict = {}
    for class_id in sorted({r.class_id for r in refs}):
        mine = [r for r in refs if r.class_id == class_id]
        areas = np.array([r.area for r in mine], np.float64)
        q = np.quantile(areas, [0.0, 0.25, 0.5, 0.75, 1.0])
        key = classes.name(class_id) if classes is not None else class_id
        out[key] = {"count": len(mine), "images": len({r.source for r in mine}),
                    "area": dict(zip(("min", "q25", "median", "q75", "max"), (float(v) for v in q)))}
    return out


def _file_stem(class_id: int, classes: ClassMap | None) -> str:
    name = classes.name(class_id) if classes is not None else str(class_id)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or str(class_id)


def save_references(refs: list[Reference], folder: str | Path, classes: ClassMap | None = None) -> Path:
    """Write ``<class>_<i>.png`` (crop), ``<class>_<i>_mask.png`` (0/255) and ``references.jsonl``; return the folder.

    ``<class>`` is the class name when ``classes`` is given, else the class id; ``<i>`` counts within the class. The
    manifest is written last (to a temporary name, then renamed), so a folder with a manifest is complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    counters: dict[int, int] = {}
    lines = []
    for ref in refs:
        i = counters.get(ref.class_id, 0)
        counters[ref.class_id] = i + 1
        stem = f"{_file_stem(ref.class_id, classes)}_{i}"
        write_image(folder / f"{stem}.png", ref.image)
        write_image(folder / f"{stem}_mask.png", ref.mask.astype(np.uint8) * 255)
        lines.append(json.dumps({"file": f"{stem}.png", "mask": f"{stem}_mask.png", "source": ref.source,
                                 "class_id": ref.class_id, "box": list(ref.box),
                                 "instance_box": list(ref.instance_box), "area": ref.area}))
    write_text(folder / MANIFEST, "".join(line + "\n" for line in lines))
    return folder


def load_references(folder: str | Path) -> list[Reference]:
    """Read back what :func:`save_references` wrote, in the same order."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ReferencesError(f"{manifest}: missing; write the folder with save_references (or the references "
                              f"stage) first")
    refs = []
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            image = to_uint8(read_image(folder / d["file"]).array)
            mask = read_image(folder / d["mask"]).array[..., 0] > 127
            refs.append(Reference(image, mask, int(d["class_id"]), str(d["source"]), Box(*d["box"]),
                                  Box(*d["instance_box"])))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ReferencesError(f"{manifest}: line {n} is not a reference record ({e!r}); rewrite the folder "
                                  f"with save_references") from None
    return refs
