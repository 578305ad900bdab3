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
point. Colour alone rewards a backend that paints a blob of the scene's average building colour, so a fourth
measure asks whether the painted object *is* the class:

- ``p_class``: a linear probe on frozen ImageNet EfficientNet-Lite0 features (mean over the object mask, 64-px
  crop), trained on the support instances of the novel classes (flips and rotations) against base-class instances
  of trainset scenes, gives the probability that the painted object is its novel class. The probe's own
  accuracy on the real query instances (novel and base) is reported beside it, as the ceiling a faithful painting
  could reach.

Faithfulness alone rewards a paste. Two more measures, in the probe's (standardised) feature space, say how *new*
the painted instances are:

- ``novelty``: 1 - the cosine similarity of the painted object and its reference (the support instance it was
  painted from); a paste scores its context's share of it, a new instance more;
- ``novelty_support``: 1 - the highest cosine similarity of the painted object to any support instance of its
  class (the nearest of the k shots): a painter that copies *some* exemplar, not only its own, scores low here;
- ``diversity`` (with ``candidates`` >= 2): 1 - the cosine similarity of two candidates painted for the same test
  with different noise. Copy-paste's candidates are seeded flips / quarter turns of one reference (0.08 on the demo),
  the floor a painter's diversity is read against.

``painting_quality`` returns per class and overall means with the per-test records, so two backends are compared
on identical tests (paired).
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
from paintseg.errors import PaintsegError
from paintseg.files import save_png
from paintseg.paint.candidates import Backend, WindowJob
from paintseg.place.masks import Box, make_mask
from paintseg.place.placement import Placement
from paintseg.place.references import Reference

METRICS = ("delta_e", "delta_l_std", "hist", "p_class")
PROBE_SIDE = 64  # crop side the probe sees
PROBE_PAD = 0.25  # the crop is the object's box grown by this share of its longer side on every side
PROBE_NEGATIVES = 400  # base-class instances the probe is trained against
PROBE_SCENES = 60  # trainset scenes they are drawn from
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


def _crop(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The square crop around ``mask``'s box (grown by PROBE_PAD), resized to PROBE_SIDE; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(max(y1 - y0, x1 - x0) * (1 + 2 * PROBE_PAD)) + 1
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    top, left = cy - side // 2, cx - side // 2
    pad = ((max(0, -top), max(0, top + side - mask.shape[0])), (max(0, -left), max(0, left + side - mask.shape[1])))
    img = np.pad(image, pad + ((0, 0),), mode="reflect")
    m = np.pad(mask, pad)
    top, left = top + pad[0][0], left + pad[1][0]
    img, m = img[top : top + side, left : left + side], m[top : top + side, left : left + side]
    return (cv2.resize(img, (PROBE_SIDE, PROBE_SIDE), interpolation=cv2.INTER_AREA),
            cv2.resize(m.astype(np.uint8), (PROBE_SIDE, PROBE_SIDE), interpolation=cv2.INTER_NEAREST) > 0)


class ClassProbe:
    """Is an object its novel class? A linear probe on frozen EfficientNet-Lite0 features (see the module doc)."""

    def __init__(self, episode: Episode, references: Sequence[Reference], seed: int = 0):
        import torch
        from scipy import ndimage

        from paintseg.pretrained import LiteFeatures

        self.features = LiteFeatures("lite0", size=PROBE_SIDE)
        rng = np.random.default_rng([seed, 515151])
        positives, negatives = [], []
        for ref in references:
            for turns in range(4):
                for flip in (False, True):
                    image, mask = np.rot90(ref.image, turns), np.rot90(ref.mask, turns)
                    if flip:
                        image, mask = image[:, ::-1], mask[:, ::-1]
                    crop = _crop(np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(mask))
                    if crop is not None:
                        positives.append(crop)
        novel = set(episode.classes.novel_ids)
        scenes = [episode.train[i] for i in rng.permutation(len(episode.train))[:PROBE_SCENES]]
        per_scene = max(1, PROBE_NEGATIVES // max(len(scenes), 1))
        for sample in scenes:
            if sample.label is None:
                continue
            label = episode.read_label(sample).array
            image = to_uint8(read_image(sample.image).array)
            found = []  # (component map, component number) of every base-class instance of >= 64 pixels
            for cid in np.unique(label):
                if cid in novel or cid in (0, 255):
                    continue
                comps, _ = ndimage.label(label == cid, structure=np.ones((3, 3)))
                sizes = np.bincount(comps.ravel())[1:]
                found += [(comps, int(k) + 1) for k in np.flatnonzero(sizes >= 64)]
            for j in rng.permutation(len(found))[:per_scene]:
                comps, k = found[j]
                crop = _crop(image, comps == k)
                if crop is not None:
                    negatives.append(crop)
        if not positives or not negatives:
            raise PaintsegError(f"{episode.root}: the class probe needs support references and base-class instances "
                                f"of >= 64 pixels in the trainset labels; run without it (probe=False)")
        x = self._embed(positives + negatives)
        y = torch.tensor([1.0] * len(positives) + [0.0] * len(negatives))
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-4
        x = (x - self.mu) / self.sd
        weight = torch.where(y > 0, len(negatives) / len(positives), 1.0)  # balanced classes
        self.w = torch.zeros(x.shape[1], requires_grad=True)
        self.b = torch.zeros(1, requires_grad=True)
        optimizer = torch.optim.LBFGS([self.w, self.b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ self.w + self.b, y, weight=weight)
            loss = loss + 1e-2 * self.w.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.trained_on = {"positives": len(positives), "negatives": len(negatives)}

    def _embed(self, crops: list[tuple[np.ndarray, np.ndarray]]):
        import torch

        from paintseg.pretrained import masked_mean

        out = []
        for i in range(0, len(crops), 64):
            chunk = crops[i : i + 64]
            x = torch.from_numpy(np.stack([c[0] for c in chunk])).permute(0, 3, 1, 2).float() / 255
            m = torch.from_numpy(np.stack([c[1] for c in chunk]).astype(np.float32))[:, None]
            mid, last = self.features(x)
            out.append(torch.cat([masked_mean(mid, m), masked_mean(last, m)], 1))
        return torch.cat(out)

    def score(self, crops: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """The probability that each (image crop, mask) is the novel class."""
        import torch

        if not crops:
            return np.zeros(0)
        with torch.no_grad():
            x = (self._embed(crops) - self.mu) / self.sd
            return torch.sigmoid(x @ self.w + self.b).numpy()

    def score_object(self, image: np.ndarray, mask: np.ndarray) -> float:
        crop = _crop(image, mask)
        return float(self.score([crop])[0]) if crop is not None else 0.0

    def feature(self, image: np.ndarray, mask: np.ndarray):
        """The object's standardised probe features (the space ``novelty`` and ``diversity`` are measured in)."""
        import torch

        crop = _crop(np.ascontiguousarray(image[..., :3]), np.ascontiguousarray(mask))
        if crop is None:
            return None
        with torch.no_grad():
            return ((self._embed([crop]) - self.mu) / self.sd)[0]


def feature_distance(a, b) -> float:
    """1 - cosine similarity of two feature vectors (0: the same direction)."""
    import torch

    return float(1 - torch.nn.functional.cosine_similarity(a, b, dim=0))


def _tests(episode: Episode, references: Sequence[Reference], count: int, seed: int,
           min_pixels: int) -> list[tuple[WindowJob, np.ndarray]]:
    """(job, real instance pixels of its image) for up to ``count`` tests per novel class."""
    rng = np.random.default_rng([seed, 424242])
    tests = []
    for cid in episode.classes.novel_ids:
        refs = [i for i, r in enumerate(references) if r.class_id == cid]
        images = []  # (sample, label, summed-area table of the class's pixels), each computed once
        for sample in episode.query:
            if sample.label is None:
                continue
            label = episode.read_label(sample).array
            if (label == cid).sum() >= min_pixels:
                images.append((sample, label, cv2.integral((label == cid).astype(np.uint8))))
        if not refs or not images:
            continue
        pixels: dict[str, np.ndarray] = {}  # test images read once
        for t in range(count):
            sample, label, free = images[t % len(images)]
            ref_index = refs[int(rng.integers(len(refs)))]
            ref = references[ref_index]
            h, w = label.shape
            rb = ref.mask.nonzero()
            bh, bw = int(np.ptp(rb[0])) + 1, int(np.ptp(rb[1])) + 1
            side = min(int(np.ceil(max(bh, bw) * CONTEXT)), h, w)
            if bh > side or bw > side:
                continue
            for _ in range(TRIES):
                x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
                y1, x1 = y0 + side, x0 + side
                if free[y1, x1] - free[y0, x1] - free[y1, x0] + free[y0, x0] == 0:
                    break
            else:
                continue
            if sample.name not in pixels:
                pixels[sample.name] = to_uint8(read_image(sample.image).array)
            image = pixels[sample.name]
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
                     tests: int = 24, seed: int = 0, min_pixels: int = 64, samples_dir: Path | None = None,
                     samples: int = 6, probe: bool = True, candidates: int = 1) -> dict:
    """Paint the same held-out tests with every backend; the distances of each to the real instances, and the
    seconds each backend took per test. With ``samples_dir``, the first ``samples`` tests are written there as
    PNGs (the window before painting and every backend's painted window; listed under "samples"). ``probe``
    adds ``p_class`` (the class probe, EfficientNet-Lite0 features) with ``novelty``, and the probe's accuracy on
    real query instances; ``candidates`` >= 2 paints that
    many per test and adds ``diversity`` (the first candidate is the one measured)."""
    tests = _tests(episode, references, tests, seed, min_pixels)
    metrics = list(METRICS if probe else METRICS[:3])
    if probe:
        metrics += ["novelty", "novelty_support"] + (["diversity"] if candidates > 1 else [])
    class_probe = ClassProbe(episode, references, seed) if probe and tests else None
    ref_features: dict[int, object] = {}
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
            cands = backend.paint([job], candidates)[0]
            cand = cands[0]
            if job.index < len(shown):
                file = f"t{job.index:03d}_b{b}.png"
                save_png(Path(samples_dir) / file, _outlined(cand.image, cand.object_mask))
                shown[job.index]["painted"][name] = file
            painted = cand.image[cand.object_mask]
            if len(painted) < 8:
                continue
            row = {"test": job.index, "class_id": job.placement.class_id, "image": job.placement.scene,
                   **{k: round(v, 4) for k, v in colour_distances(painted, real).items()}}
            if class_probe is not None:
                row["p_class"] = round(class_probe.score_object(cand.image, cand.object_mask), 4)
                ref = job.reference
                if job.placement.reference not in ref_features:
                    ref_features[job.placement.reference] = class_probe.feature(ref.image, ref.mask)
                painted_f = class_probe.feature(cand.image, cand.object_mask)
                row["novelty"] = round(feature_distance(painted_f, ref_features[job.placement.reference]), 4)
                same = [i for i, r in enumerate(references) if r.class_id == job.placement.class_id]
                for i in same:
                    if i not in ref_features:
                        ref_features[i] = class_probe.feature(references[i].image, references[i].mask)
                row["novelty_support"] = round(min(feature_distance(painted_f, ref_features[i]) for i in same), 4)
                if candidates > 1:
                    other = class_probe.feature(cands[1].image, cands[1].object_mask)
                    row["diversity"] = round(feature_distance(painted_f, other), 4)
            rows.append(row)
        seconds[name] = round((time.perf_counter() - start) / max(len(tests), 1), 4)
        records[name] = rows
    summary = {}
    for name, rows in records.items():
        per_class = {}
        for cid in sorted({r["class_id"] for r in rows}):
            sub = [r for r in rows if r["class_id"] == cid]
            per_class[episode.classes.name(cid)] = {m: round(statistics.fmean(r[m] for r in sub), 3)
                                                    for m in metrics} | {"tests": len(sub)}
        summary[name] = {"tests": len(rows), "per_class": per_class, "seconds_per_test": seconds[name],
                         **({m: round(statistics.fmean(r[m] for r in rows), 3) for m in metrics} if rows else {})}
        if class_probe is not None and rows:
            summary[name]["class_rate"] = round(statistics.fmean(r["p_class"] > 0.5 for r in rows), 3)
    checked = _probe_check(episode, class_probe, {job.placement.scene for job, _ in tests}) if class_probe else None
    return {"metrics": metrics, "backends": summary, "records": records, "samples": shown, "probe": checked,
            "note": "distances between painted objects and the real instances of their class in the same held-out "
                    "query image (lower is better); every backend paints the same reference into the same window"}


def _probe_check(episode: Episode, probe: ClassProbe, images: set[str], limit: int = 200) -> dict:
    """The probe on the real instances of the test images: novel ones (should score > 0.5) and base ones (< 0.5)."""
    from scipy import ndimage

    novel = set(episode.classes.novel_ids)
    crops: dict[bool, list] = {True: [], False: []}
    for sample in episode.query:
        if sample.name not in images or sample.label is None:
            continue
        label = episode.read_label(sample).array
        image = to_uint8(read_image(sample.image).array)
        for cid in np.unique(label):
            if cid in (0, 255):
                continue
            comps, _ = ndimage.label(label == cid, structure=np.ones((3, 3)))
            sizes = np.bincount(comps.ravel())[1:]
            for k in np.flatnonzero(sizes >= 64):
                kind = int(cid) in novel
                if len(crops[kind]) < limit:
                    crop = _crop(image, comps == k + 1)
                    if crop is not None:
                        crops[kind].append(crop)
    novel_p, base_p = probe.score(crops[True]), probe.score(crops[False])
    return {**probe.trained_on, "real_novel": len(novel_p), "real_base": len(base_p),
            "real_novel_p": round(float(novel_p.mean()), 3) if len(novel_p) else None,
            "real_novel_rate": round(float((novel_p > 0.5).mean()), 3) if len(novel_p) else None,
            "real_base_rate": round(float((base_p > 0.5).mean()), 3) if len(base_p) else None}


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
