"""Candidates: K painted context windows per placement, from any backend (diffusion, copy-paste, pretrained).

A backend sees :class:`WindowJob` s - the scene's context window at its native resolution, the inpaint mask and the
reference - and returns K :class:`Candidate` s per job, each the whole window after painting (same size) with the
pixels it changed and the pixels that are the new object. Everything about files lives here, so backends stay pure.

On disk (``SYN/candidates/``; file names in the manifest are relative to it)::

    p000012_k1.png           candidate window k of placement 12
    p000012_k1_mask.png      its object mask (255 = object)
    p000012_k1_paint.png     the pixels it changed, where that is neither its object mask nor the inpaint mask
    p000012_inpaint.png      the inpaint mask the backend was given
    manifest.jsonl           one line per candidate, appended when a placement is complete
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from paintseg.config import PaintConfig
from paintseg.data.episode import SceneCache  # noqa: F401 (painting jobs are cut from its scenes; re-exported)
from paintseg.errors import PaintsegError
from paintseg.files import append_jsonl, read_jsonl, save_png

from paintseg.place.masks import Box, make_mask
from paintseg.place.placement import Placement
from paintseg.place.references import Reference


@dataclass
class WindowJob:
    """One placement, ready to paint: the native-resolution window, the inpaint mask and the reference."""

    index: int
    placement: Placement
    reference: Reference
    window_image: np.ndarray  # uint8 h×w×3
    mask: np.ndarray  # bool h×w, True = paint here
    box: Box  # the placement box in window coordinates


@dataclass
class Candidate:
    """A painted window (same size as the job's window)."""

    image: np.ndarray  # uint8 h×w×3
    paint_mask: np.ndarray  # bool h×w: pixels the backend changed (the blend region when composing)
    object_mask: np.ndarray  # bool h×w: pixels of the new object (the label, until curation refines it)


@dataclass(frozen=True)
class BackendOptions:
    """What a run gives a backend beside its :class:`~paintseg.config.PaintConfig`: the sampling seed, the paste's
    colour handling (copy-paste, harmonise) and smooth colour noise on each paste (``noise`` arms), and the novel
    class names (SD inpainting's prompts)."""

    seed: int = 0
    paste_colour: str = "none"
    paste_noise: float = 0.0
    class_names: dict = field(default_factory=dict)


class Backend(Protocol):
    """A way of painting (:data:`paintseg.paint.painters.PAINTERS` lists them): built from a source, the painting
    settings and the run's options, it paints K candidates per window job and says what decides its pixels."""

    name: str

    @classmethod
    def from_config(cls, source: str, paint: PaintConfig, options: BackendOptions) -> "Backend": ...

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]: ...

    def settings(self) -> dict:
        """What a synthetic set records about this backend (a change makes `generate` refuse to resume); only
        settings that differ from the defaults of options added later, so sets written before them resume."""


def make_job(index: int, placement: Placement, references: Sequence[Reference], scenes: SceneCache) -> WindowJob:
    """Cut the placement's window out of its scene and draw its inpaint mask (seeded by the placement)."""
    image = scenes.image(placement.scene)
    w = placement.window
    window = np.ascontiguousarray(image[w.y0 : w.y1, w.x0 : w.x1])
    box = Box(*placement.box).shift(-w.x0, -w.y0)
    reference = references[placement.reference]
    if placement.angle:
        from paintseg.place.orientation import rotate_reference

        reference = rotate_reference(reference, placement.angle)
    rng = np.random.default_rng(placement.seed)
    mask = make_mask(placement.mask_kind, window.shape[:2], box, rng, ref_mask=reference.mask)
    return WindowJob(index, placement, reference, window, mask, box)


def candidate_file(index: int, k: int) -> str:
    return f"p{index:06d}_k{k}.png"


def done_placements(manifest: Path) -> set[int]:
    """Placement indices whose candidates are all written (their manifest lines exist)."""
    return {int(entry["placement"]) for entry in read_jsonl(manifest)}


def write_candidates(jobs: Iterator[WindowJob] | list[WindowJob], backend: Backend, out: Path, candidates: int,
                     batch: int, total: int, progress: bool = True, manifest_name: str = "manifest.jsonl") -> int:
    """Paint every job with the backend in batches; write each candidate into ``out`` (the candidates folder) and
    append its manifest lines.

    A placement's manifest lines are appended only after all its files are written, so a killed run resumes by
    skipping the placements already in the manifest. Returns the number of placements painted now."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / manifest_name  # one per process when several paint (paint.generate.merge_manifests)
    painted = 0
    bar = tqdm(total=total, desc=f"paint ({backend.name})", unit="placement", disable=not progress)
    pending: list[WindowJob] = []

    def flush() -> None:
        nonlocal painted
        if not pending:
            return
        results = backend.paint(pending, candidates)
        lines = []
        for job, cands in zip(pending, results):
            inpaint_file = f"p{job.index:06d}_inpaint.png"
            save_png(out / inpaint_file, job.mask.astype(np.uint8) * 255)
            for k, cand in enumerate(cands):
                image_file = candidate_file(job.index, k)
                mask_file = image_file.replace(".png", "_mask.png")
                save_png(out / image_file, cand.image)
                save_png(out / mask_file, cand.object_mask.astype(np.uint8) * 255)
                if np.array_equal(cand.paint_mask, cand.object_mask):
                    paint_file = mask_file
                elif np.array_equal(cand.paint_mask, job.mask):
                    paint_file = inpaint_file
                else:
                    paint_file = image_file.replace(".png", "_paint.png")
                    save_png(out / paint_file, cand.paint_mask.astype(np.uint8) * 255)
                lines.append({
                    "placement": job.index, "candidate": k, "backend": backend.name,
                    "class_id": job.placement.class_id, "reference": job.placement.reference,
                    "reference_source": job.reference.source, "scene": job.placement.scene,
                    "box": list(job.placement.box), "window": list(job.placement.window),
                    "mask_kind": job.placement.mask_kind, "seed": job.placement.seed,
                    "file": image_file, "mask_file": mask_file, "paint_file": paint_file,
                    "inpaint_file": inpaint_file,
                    "object_pixels": int(cand.object_mask.sum()),
                })
        append_jsonl(manifest, lines)  # after every file of the batch is written: the placements' completion mark
        painted += len(pending)
        bar.update(len(pending))
        pending.clear()

    for job in jobs:
        pending.append(job)
        if len(pending) >= batch:
            flush()
    flush()
    bar.close()
    return painted


def read_manifest(path: Path) -> list[dict]:
    if not Path(path).is_file():
        raise PaintsegError(f"{path}: no manifest; run `paintseg generate` to write candidates first")
    return read_jsonl(path)


def load_candidate(out: Path, entry: dict) -> tuple[Candidate, Box]:
    """A written candidate back from disk (``out`` is the candidates folder) with its window box."""
    out = Path(out)
    image = np.asarray(Image.open(out / entry["file"]).convert("RGB"))
    obj = np.asarray(Image.open(out / entry["mask_file"])) > 127
    paint = np.asarray(Image.open(out / entry["paint_file"])) > 127
    return Candidate(image, paint, obj), Box(*entry["window"])
