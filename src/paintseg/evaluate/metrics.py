"""The OpenEarthMap few-shot challenge evaluation: per-class IoU, base mIoU, novel mIoU and the weighted score.

One confusion matrix is accumulated over the whole query set, and IoUs are computed from it once (intersection and
union summed over all images, never an average of per-image IoUs). The semantics follow the challenge's own
evaluation (``fast_intersection_and_union`` and ``validate`` in the organisers' baseline):

- pixels whose target is ignore (255) are not counted at all;
- background (0) is never scored, but its pixels count: a background pixel predicted as class ``c`` is a false
  positive of ``c`` and enlarges ``c``'s union;
- every base and every novel class of the class map enters its mean; a class whose union is empty (absent from both
  the targets and the predictions) scores 0 — or, with ``skip_absent=True``, is left out of the means;
- ``score = 0.4 * base mIoU + 0.6 * novel mIoU``.

Percentages are ``100 * IoU`` rounded to 4 decimals.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paintseg.data.classes import IGNORE, ClassMap
from paintseg.data.episode import Episode, Sample
from paintseg.data.raster import FORMATS, read_label
from paintseg.errors import PaintsegError

BASE_WEIGHT = 0.4
NOVEL_WEIGHT = 0.6
PREDICTION_SUFFIXES = tuple(s for s, fmt in FORMATS.items() if fmt != "JPEG")
_DECIMALS = 4


class EvaluationError(PaintsegError):
    """Predictions that cannot be evaluated against an episode; the message names the files and the fix."""


class ConfusionMatrix:
    """A ``K × K`` confusion matrix accumulated over many images (rows = target class, columns = predicted class).

    Args:
        num_classes: ``K``, the number of label values scored (ids ``0 .. K-1``); ``ClassMap.num_classes``.
        ignore_index: target value whose pixels are skipped.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE):
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.matrix: np.ndarray = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one image: ``pred`` and ``target`` are ``H×W`` integer arrays of class ids of the same shape.

        Raises:
            ValueError: shapes differ, arrays are not integer, a prediction value is outside ``0 .. K-1``, or a
                target value other than ``ignore_index`` is outside ``0 .. K-1``.
        """
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}; "
                             f"predict at the label's full size")
        for what, arr in (("prediction", pred), ("target", target)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{what} must hold integer class ids, got dtype {arr.dtype}")
        k = self.num_classes
        p = pred.ravel().astype(np.int64, copy=False)
        t = target.ravel().astype(np.int64, copy=False)
        if p.size and (p.min() < 0 or p.max() >= k):
            bad = np.unique(p[(p < 0) | (p >= k)])
            raise ValueError(f"prediction holds value(s) {bad[:10].tolist()} outside the class ids 0..{k - 1}; "
                             f"predictions must be class ids of the episode's class map")
        valid = t != self.ignore_index
        p, t = p[valid], t[valid]
        if t.size and (t.min() < 0 or t.max() >= k):
            bad = np.unique(t[(t < 0) | (t >= k)])
            raise ValueError(f"target holds value(s) {bad[:10].tolist()} outside the class ids 0..{k - 1} "
                             f"(and not ignore {self.ignore_index}); add the class to classes.json or fix the label")
        self.matrix += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.matrix[:] = 0


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU of every class of a confusion matrix: ``diag / (row sum + column sum - diag)``; ``nan`` where the union is
    empty (the class is neither in the targets nor in the predictions)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {m.shape}")
    inter = np.diag(m)
    union = m.sum(axis=1) + m.sum(axis=0) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def _percent(value: float) -> float:
    return float("nan") if math.isnan(value) else round(100.0 * value, _DECIMALS)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarize(matrix: np.ndarray, classes: ClassMap, skip_absent: bool = False) -> dict:
    """Challenge metrics of a confusion matrix, in percent.

    Returns ``{"per_class_iou": {name: %}, "roles": {name: "base" | "novel"}, "base_miou": %, "novel_miou": %,
    "score": %}`` plus ``"skipped": [names]`` when ``skip_absent`` left classes out. Background is never scored. A
    class with an empty union scores 0 (as in the challenge), or is left out of the means (and of ``per_class_iou``)
    with ``skip_absent=True``. A mean over no class (no class of that role, or all skipped) is ``nan``, and so is the
    score then.
    """
    matrix = np.asarray(matrix)
    k = matrix.shape[0] if matrix.ndim == 2 else 0
    needed = classes.num_classes
    if k < needed:
        raise ValueError(f"the confusion matrix is {k}x{k} but the class map ({classes.source}) has ids up to "
                         f"{needed - 1}; build it with ConfusionMatrix(classes.num_classes)")
    ious = iou_per_class(matrix)
    per_class: dict[str, float] = {}
    roles: dict[str, str] = {}
    groups: dict[str, list[float]] = {"base": [], "novel": []}
    skipped: list[str] = []
    for cid in classes.scored_ids:
        info = classes[cid]
        roles[info.name] = info.role
        iou = float(ious[cid])
        if math.isnan(iou):
            if skip_absent:
                skipped.append(info.name)
                continue
            iou = 0.0
        per_class[info.name] = _percent(iou)
        groups[info.role].append(iou)
    base, novel = _mean(groups["base"]), _mean(groups["novel"])
    out: dict = {
        "per_class_iou": per_class,
        "roles": roles,
        "base_miou": _percent(base),
        "novel_miou": _percent(novel),
        "score": _percent(BASE_WEIGHT * base + NOVEL_WEIGHT * novel),
    }
    if skipped:
        out["skipped"] = skipped
    return out


def _find_prediction(pred_dir: Path, stem: str) -> Path | None:
    """The one non-JPEG raster named ``stem`` in ``pred_dir``; an error if there are several or only a JPEG."""
    found = [pred_dir / f"{stem}{s}" for s in PREDICTION_SUFFIXES if (pred_dir / f"{stem}{s}").is_file()]
    if len(found) > 1:
        raise EvaluationError(f"{pred_dir}: several predictions for {stem!r} ({', '.join(p.name for p in found)}); "
                              f"keep exactly one per query image")
    if found:
        return found[0]
    jpegs = [pred_dir / f"{stem}{s}" for s, fmt in FORMATS.items() if fmt == "JPEG"]
    jpeg = next((p for p in jpegs if p.is_file()), None)
    if jpeg is not None:
        raise EvaluationError(f"{jpeg}: JPEG is lossy and cannot hold exact class ids; write predictions as "
                              f"PNG or GeoTIFF ({', '.join(PREDICTION_SUFFIXES)})")
    return None


def evaluate_predictions(pred_dir: str | Path, episode: Episode, skip_absent: bool = False,
                         progress: bool = True) -> dict:
    """Score the predictions in ``pred_dir`` against the query labels of ``episode``.

    Each query image's prediction is the single-band label file in ``pred_dir`` with the image's stem and a
    PNG or GeoTIFF suffix. Returns :func:`summarize` of the confusion matrix accumulated over the whole query set,
    plus ``"images"`` (how many were scored), ``"confusion_matrix"`` (nested lists, rows = target) and
    ``"class_ids"`` (the ids of its rows and columns, ``0 .. K-1``) and ``"per_image_confusion"`` (each query image's
    own matrix by stem, for bootstrap intervals over query tiles: paintseg.evaluate.significance).

    Raises:
        EvaluationError: the folder is missing, predictions are missing (all missing stems are checked before any
            is read), a prediction's size differs from its label's, or a prediction holds an unknown class id.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise EvaluationError(f"{pred_dir}: no such prediction folder; run `paintseg predict` on the query images "
                              f"of {episode.root} and pass the folder it wrote")
    samples: list[Sample] = episode.query
    if not samples:
        raise EvaluationError(f"{episode.root}: the {episode.split} query set is empty; list query images in "
                              f"its query_set")
    pairs: list[tuple[Sample, Path]] = []
    missing: list[str] = []
    for sample in samples:
        path = _find_prediction(pred_dir, sample.stem)
        if path is None:
            missing.append(sample.stem)
        else:
            pairs.append((sample, path))
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise EvaluationError(
            f"{pred_dir}: no prediction for {len(missing)} of {len(samples)} query images ({shown}); run "
            f"`paintseg predict` on the query images ({episode.root / episode.split / 'images'}) so that each has a "
            f"label named by its stem ({' or '.join(PREDICTION_SUFFIXES)}) in this folder"
        )

    classes = episode.classes
    cm = ConfusionMatrix(classes.num_classes, IGNORE)
    per_image: dict[str, list] = {}
    for sample, path in tqdm(pairs, desc="evaluate", unit="img", disable=not progress):
        target = episode.read_label(sample).array
        pred = read_label(path, classes).array
        if pred.shape != target.shape:
            raise EvaluationError(f"{path}: prediction is {pred.shape[1]}x{pred.shape[0]} but the query label "
                                  f"{sample.label} is {target.shape[1]}x{target.shape[0]}; predict at the label's "
                                  f"full size")
        before = cm.matrix.copy()
        try:
            cm.update(pred, target)
        except ValueError as e:
            raise EvaluationError(f"{path} (label {sample.label}): {e}") from None
        per_image[sample.stem] = (cm.matrix - before).tolist()

    out = summarize(cm.matrix, classes, skip_absent)
    out["images"] = len(pairs)
    out["confusion_matrix"] = cm.matrix.tolist()
    out["class_ids"] = list(range(cm.num_classes))
    out["per_image_confusion"] = per_image  # stem -> that image's matrix; they add up to confusion_matrix
    return out


def _fmt(value: float) -> str:
    return "    n/a" if math.isnan(value) else f"{value:7.2f}"


def format_table(metrics: dict) -> str:
    """Plain-text table of :func:`summarize` / :func:`evaluate_predictions` output: one row per class (IoU %, role),
    then base mIoU, novel mIoU and the score."""
    per_class: dict[str, float] = metrics.get("per_class_iou", {})
    roles: dict[str, str] = metrics.get("roles", {})
    skipped: list[str] = metrics.get("skipped", [])
    names = list(roles) or list(per_class)
    width = max([len(n) for n in names] + [len("score (0.4 base + 0.6 novel)")])
    rule = "-" * (width + 18)
    lines = [f"{'class':<{width}}  {'role':<6}  {'IoU %':>7}", rule]
    for name in names:
        role = roles.get(name, "")
        if name in skipped:
            lines.append(f"{name:<{width}}  {role:<6}  {'skipped':>7}  (absent from targets and predictions)")
        else:
            lines.append(f"{name:<{width}}  {role:<6}  {_fmt(per_class.get(name, float('nan')))}")
    lines.append(rule)
    lines.append(f"{'base mIoU':<{width}}  {'':<6}  {_fmt(metrics.get('base_miou', float('nan')))}")
    lines.append(f"{'novel mIoU':<{width}}  {'':<6}  {_fmt(metrics.get('novel_miou', float('nan')))}")
    lines.append(f"{'score (0.4 base + 0.6 novel)':<{width}}  {'':<6}  {_fmt(metrics.get('score', float('nan')))}")
    if "images" in metrics:
        lines.append(f"{metrics['images']} query image(s)")
    return "\n".join(lines)


def to_json(metrics: dict) -> str:
    """The metrics as strict JSON: a mean over no class (``nan``) is written as ``null``."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(metrics), indent=1, allow_nan=False) + "\n"
