"""Compose: paste painted windows back into their full scenes and write the synthetic training set.

A synthetic set has the same layout as an episode's trainset, so `paintseg train --synthetic SYN` reads it::

    SYN/images/<name>   SYN/labels/<stem>.<png|tif>   SYN/manifest.jsonl

The image keeps the scene's format and georeference; the label is the scene's label with the object mask set to
the novel class id. The window is blended into the scene only inside the mask, with a feathered edge, so the rest
of the scene keeps its original pixels exactly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from paintseg.data.episode import Episode
from paintseg.data.raster import IMAGE_SUFFIX, LABEL_SUFFIX, read_image, write_image, write_label
from paintseg.errors import PaintsegError
from paintseg.files import append_jsonl, write_text
from paintseg.files import read_jsonl
from paintseg.paint.candidates import load_candidate
from paintseg.place.masks import Box, feather

FEATHER_RADIUS = 2.0  # pixels of the feathered edge a painted object is composed into its scene with


@dataclass
class Insertion:
    """One painted object to put into a scene: the painted window, where it goes, and its exact object mask."""

    window: Box  # scene coordinates
    painted: np.ndarray  # uint8 h×w×3, the window after painting (same size as the window)
    paint_mask: np.ndarray  # bool h×w, the pixels the generator was allowed to change (blend region)
    object_mask: np.ndarray  # bool h×w, the pixels labelled as the novel class
    class_id: int


def compose(image: np.ndarray, label: np.ndarray, insertions: list[Insertion],
            feather_radius: float = FEATHER_RADIUS) -> tuple[np.ndarray, np.ndarray]:
    """Paste every insertion into a copy of (image, label); insertions must not overlap."""
    if image.shape[:2] != label.shape:
        raise PaintsegError(f"compose: image {image.shape[:2]} and label {label.shape} differ in size")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PaintsegError(f"compose: scenes must be 8-bit RGB (got {image.dtype}, shape {image.shape}); painting "
                            f"16-bit or multi-band imagery is not supported yet - export 8-bit RGB scenes first")
    out_image = image.copy()
    out_label = label.copy()
    taken = np.zeros(label.shape, bool)
    for ins in insertions:
        w = ins.window
        h_, w_ = w.height, w.width
        if ins.painted.shape[:2] != (h_, w_) or ins.paint_mask.shape != (h_, w_) or ins.object_mask.shape != (h_, w_):
            raise PaintsegError(
                f"compose: window {tuple(w)} is {w_}x{h_} but the painted window is "
                f"{ins.painted.shape[1]}x{ins.painted.shape[0]}; resize the candidate back to the window first"
            )
        if w.x0 < 0 or w.y0 < 0 or w.x1 > label.shape[1] or w.y1 > label.shape[0]:
            raise PaintsegError(f"compose: window {tuple(w)} lies outside the {label.shape[1]}x{label.shape[0]} scene")
        region = (slice(w.y0, w.y1), slice(w.x0, w.x1))
        if (taken[region] & ins.paint_mask).any():
            raise PaintsegError(f"compose: insertion at {tuple(w)} overlaps an earlier one in the same scene")
        taken[region] |= ins.paint_mask
        alpha = feather(ins.paint_mask, feather_radius)[..., None]
        base = out_image[region].astype(np.float32)
        painted = ins.painted[..., : base.shape[2]].astype(np.float32)
        blended = alpha * painted + (1 - alpha) * base
        out_image[region] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        lab = out_label[region]
        lab[ins.object_mask] = ins.class_id
    return out_image, out_label


OVERLAP = "overlaps an earlier insertion in the scene"


def drop_overlaps(chosen: list[dict], candidates_dir: Path) -> tuple[list[dict], dict[int, str]]:
    """The chosen candidates whose blend regions (paint masks) do not overlap an earlier chosen one's in the same
    scene (earlier = lower placement id), and ``{placement: why}`` for the rest. Placement boxes never overlap, but
    a backend may change pixels beyond the box (a rectangle inpaint mask, a harmoniser's border), so two nearby
    insertions can; the later one is dropped rather than blended over the first."""
    kept, dropped = [], {}
    placed: dict[str, list[tuple[Box, np.ndarray]]] = defaultdict(list)
    for entry in sorted(chosen, key=lambda e: int(e["placement"])):
        window = Box(*entry["window"])
        paint = np.asarray(Image.open(Path(candidates_dir) / entry["paint_file"])) > 127

        def clash(w: Box, theirs: np.ndarray) -> bool:
            x0, y0, x1, y1 = max(w.x0, window.x0), max(w.y0, window.y0), min(w.x1, window.x1), min(w.y1, window.y1)
            return bool((paint[y0 - window.y0 : y1 - window.y0, x0 - window.x0 : x1 - window.x0]
                         & theirs[y0 - w.y0 : y1 - w.y0, x0 - w.x0 : x1 - w.x0]).any())

        if any(w.overlaps(window) and clash(w, m) for w, m in placed[entry["scene"]]):
            dropped[int(entry["placement"])] = OVERLAP
            continue
        placed[entry["scene"]].append((window, paint))
        kept.append(entry)
    return kept, dropped


def _instance_record(entry: dict, image: str | None, mask_pixels: int | None, why: str | None) -> dict:
    return {
        "image": image, "scene": entry["scene"], "placement": entry["placement"], "candidate": entry["candidate"],
        "backend": entry["backend"], "class_id": entry["class_id"], "reference": entry["reference"],
        "reference_source": entry["reference_source"], "box": entry["box"], "window": entry["window"],
        "seed": entry["seed"], "score": entry.get("score"), "refine": entry.get("refine", "none"),
        "mask_pixels": mask_pixels, "kept": why is None, **({"why": why} if why is not None else {}),
    }


def compose_set(episode: Episode, out: Path, chosen: list[dict], candidates_dir: Path | None = None,
                rejected: list[dict] = (), feather_radius: float = FEATHER_RADIUS, progress: bool = True) -> int:
    """Write the synthetic set ``out``: every chosen candidate (a candidates-manifest entry, one per placement; its
    ``refined_mask``, when present, replaces the candidate's object mask as the label) pasted into its scene.

    Scenes are written whole (several placements per scene), in the scene's own format and georeference, with one
    ``out/manifest.jsonl`` line per instance; ``rejected`` entries (with their ``why``) get a line with
    ``"kept": false``. Scenes already in the manifest are skipped, so a killed run resumes. Returns the number of
    scenes written now."""
    out = Path(out)
    candidates_dir = Path(candidates_dir) if candidates_dir is not None else out / "candidates"
    manifest = out / "manifest.jsonl"
    previous = [e for e in read_jsonl(manifest) if e.get("kept", True)]
    done = {e["scene"] for e in previous}
    by_scene: dict[str, list[dict]] = defaultdict(list)
    for entry in chosen:
        by_scene[entry["scene"]].append(entry)
    samples = {s.name: s for s in episode.train}
    written = 0
    todo = [name for name in sorted(by_scene) if name not in done]
    if previous and not todo and not rejected:
        return 0
    # rewrite the manifest with the kept lines only; rejected lines are appended once, at the end
    write_text(manifest, "".join(json.dumps(e) + "\n" for e in previous))
    for scene in tqdm(todo, desc="compose", unit="scene", disable=not progress):
        sample = samples[scene]
        raster = read_image(sample.image)
        label = episode.read_label(sample).array
        insertions = []
        for entry in by_scene[scene]:
            cand, window = load_candidate(candidates_dir, entry)
            obj = entry.get("refined_mask")
            insertions.append(Insertion(window, cand.image, cand.paint_mask,
                                        cand.object_mask if obj is None else obj, int(entry["class_id"])))
        image, new_label = compose(raster.array, label, insertions, feather_radius)
        stem = f"{sample.stem}_syn"
        image_name = stem + IMAGE_SUFFIX[raster.format]
        write_image(out / "images" / image_name, image, like=raster)
        write_label(out / "labels" / (stem + LABEL_SUFFIX[raster.format]), new_label, like=raster,
                    classes=episode.classes)
        append_jsonl(manifest, [_instance_record(e, image_name, int(ins.object_mask.sum()), None)
                                for e, ins in zip(by_scene[scene], insertions)])
        written += 1
    if rejected:
        append_jsonl(manifest, [_instance_record(e, None, None, e["why"]) for e in rejected])
    return written
