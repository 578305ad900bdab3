"""Painting quality on held-out query scenes: do painted instances look like this scene's real ones?

For each novel class, query images that hold instances of it are the test scenes (never seen by a generator or
harmoniser, which train on the trainset and support scenes). In each, a box of a reference's size is placed at a
random spot whose window holds no pixel of the class (so no real instance leaks into what a backend sees), and
every backend paints the same reference into the same window. The painted object is compared with the real
instances of the class *in the same image* - same sensor, light and season:

- ``delta_e``: CIE76 distance between the mean Lab colour of the painted object and of the real instances;
- ``delta_l_std``: the difference of their lightness spreads (texture contrast), absolute;
- ``hist``: 1 - the Bhattacharyya coefficient of their Lab histograms (8 bins per channel; 0 = same colours).

Lower is better for all three; copy-paste (the reference's own pixels, from a support image) is the reference
point. ``painting_quality`` returns per class and overall means with the per-test records, so two backends are
compared on identical tests (paired).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, to_uint8
from paintseg.files import save_png
from paintseg.generate.candidates import Backend, WindowJob
from paintseg.generate.masks import Box, make_mask
from paintseg.generate.placement import Placement
from paintseg.generate.references import Reference

METRICS = ("delta_e", "delta_l_std", "hist")
CONTEXT = 2.5  # window side = this × the box's longer side
TRIES = 64  # random spots tried per test for a window free of the class


def _lab(pixels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)


def _outlined(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the outside edge of ``mask`` drawn in yellow (so the object itself stays visible)."""
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
    out = image.copy()
    out[ring] = (255, 215, 0)
    return out


def colour_distances(painted: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """The three distances between two sets of RGB pixels (N×3 uint8)."""
    a, b = _lab(painted), _lab(real)
    # OpenCV's 8-bit Lab: L scaled to 0..255, a/b offset by 128; L back to 0..100 for a CIE76 distance
    scale = np.array([100 / 255, 1, 1], np.float32)
    delta_e = float(np.linalg.norm((a.mean(0) - b.mean(0)) * scale))
    delta_l = float(abs(a[:, 0].std() - b[:, 0].std()) * scale[0])
    ha, _ = np.histogramdd(a, bins=8, range=[(0, 256)] * 3)
    hb, _ = np.histogramdd(b, bins=8, range=[(0, 256)] * 3)
    bc = float(np.sqrt(ha / ha.sum() * hb / hb.sum()).sum())
    return {"delta_e": delta_e, "delta_l_std": delta_l, "hist": 1 - bc}


def _tests(episode: Episode, references: Sequence[Reference], per_class: int, seed: int,
           min_pixels: int) -> list[tuple[WindowJob, np.ndarray]]:
    """(job, real instance pixels of its image) for up to ``per_class`` tests per novel class."""
    rng = np.random.default_rng([seed, 424242])
    tests = []
    for cid in episode.classes.novel_ids:
        refs = [i for i, r in enumerate(references) if r.class_id == cid]
        images = []
        for sample in episode.query:
            if sample.label is None:
                continue
            label = episode.read_label(sample).array
            if (label == cid).sum() >= min_pixels:
                images.append((sample, label))
        if not refs or not images:
            continue
        for t in range(per_class):
            sample, label = images[t % len(images)]
            ref_index = refs[int(rng.integers(len(refs)))]
            ref = references[ref_index]
            h, w = label.shape
            rb = ref.mask.nonzero()
            bh, bw = int(np.ptp(rb[0])) + 1, int(np.ptp(rb[1])) + 1
            side = min(int(np.ceil(max(bh, bw) * CONTEXT)), h, w)
            if bh > side or bw > side:
                continue
            free = (label == cid).astype(np.int32).cumsum(0).cumsum(1)
            for _ in range(TRIES):
                x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
                total = free[y0 + side - 1, x0 + side - 1] - (free[y0 - 1, x0 + side - 1] if y0 else 0) \
                    - (free[y0 + side - 1, x0 - 1] if x0 else 0) + (free[y0 - 1, x0 - 1] if x0 and y0 else 0)
                if total == 0:
                    break
            else:
                continue
            image = to_uint8(read_image(sample.image).array)
            bx, by = x0 + (side - bw) // 2, y0 + (side - bh) // 2
            window = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
            box = Box(bx - x0, by - y0, bx - x0 + bw, by - y0 + bh)
            place_seed = int(rng.integers(2**31))
            placement = Placement(sample.name, cid, ref_index, Box(bx, by, bx + bw, by + bh),
                                  Box(x0, y0, x0 + side, y0 + side), "silhouette", place_seed)
            mask = make_mask("silhouette", window.shape[:2], box, np.random.default_rng(place_seed),
                             ref_mask=ref.mask)
            real = image[label == cid]
            tests.append((WindowJob(len(tests), placement, ref, window, mask, box), real))
    return tests


def painting_quality(episode: Episode, backends: dict[str, Backend], references: Sequence[Reference],
                     per_class: int = 24, seed: int = 0, min_pixels: int = 64, samples_dir: Path | None = None,
                     samples: int = 6) -> dict:
    """Paint the same held-out tests with every backend; the distances of each to the real instances, and the
    seconds each backend took per test. With ``samples_dir``, the first ``samples`` tests are written there as
    PNGs (the window before painting and every backend's painted window; listed under "samples")."""
    tests = _tests(episode, references, per_class, seed, min_pixels)
    records: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    shown: list[dict] = []
    if samples_dir is not None:
        for job, _ in tests[:samples]:
            file = f"t{job.index:03d}_window.png"
            save_png(Path(samples_dir) / file, job.window_image)
            shown.append({"test": job.index, "image": job.placement.scene,
                          "class": episode.classes.name(job.placement.class_id), "window": file, "painted": {}})
    for b, (name, backend) in enumerate(backends.items()):
        rows = []
        start = time.perf_counter()
        for job, real in tests:
            cand = backend.paint([job], 1)[0][0]
            if job.index < len(shown):
                file = f"t{job.index:03d}_b{b}.png"
                save_png(Path(samples_dir) / file, _outlined(cand.image, cand.object_mask))
                shown[job.index]["painted"][name] = file
            painted = cand.image[cand.object_mask]
            if len(painted) < 8:
                continue
            rows.append({"test": job.index, "class_id": job.placement.class_id, "image": job.placement.scene,
                         **{k: round(v, 4) for k, v in colour_distances(painted, real).items()}})
        seconds[name] = round((time.perf_counter() - start) / max(len(tests), 1), 4)
        records[name] = rows
    summary = {}
    for name, rows in records.items():
        per_class = {}
        for cid in sorted({r["class_id"] for r in rows}):
            sub = [r for r in rows if r["class_id"] == cid]
            per_class[episode.classes.name(cid)] = {m: round(statistics.fmean(r[m] for r in sub), 3)
                                                    for m in METRICS} | {"tests": len(sub)}
        summary[name] = {"tests": len(rows), "per_class": per_class, "seconds_per_test": seconds[name],
                         **({m: round(statistics.fmean(r[m] for r in rows), 3) for m in METRICS} if rows else {})}
    return {"metrics": list(METRICS), "backends": summary, "records": records, "samples": shown,
            "note": "distances between painted objects and the real instances of their class in the same held-out "
                    "query image (lower is better); every backend paints the same reference into the same window"}


def paired_wins(quality: dict, backend: str, against: str, metric: str = "delta_e") -> dict:
    """On how many shared tests ``backend`` is closer to the real instances than ``against`` (sign test p)."""
    from paintseg.evaluate.significance import sign_test

    a = {r["test"]: r[metric] for r in quality["records"][backend]}
    b = {r["test"]: r[metric] for r in quality["records"][against]}
    shared = sorted(set(a) & set(b))
    wins = sum(a[t] < b[t] for t in shared)
    ties = sum(a[t] == b[t] for t in shared)
    n = len(shared) - ties
    return {"tests": len(shared), "wins": wins, "ties": ties, "p": round(sign_test(wins, n), 4) if n else None}
