"""Placement: where to paint each new instance — scene, box, context window, mask shape and seed.

:func:`plan_placements` takes, for each placement, a reference (cycling through the class's references in random
order), a box of the reference's size (± :data:`SIZE_JITTER`), :data:`CANDIDATES` random positions in random
trainset scenes, scores each with the priors of its :class:`~paintseg.config.PlaceConfig` (:func:`fit_priors`: the
label prior of :mod:`.context`, the appearance prior of :mod:`.appearance`, or both) and draws one with probability
∝ score ** ``selectivity`` — mostly fitting surroundings, sometimes not. ``prior: uniform`` draws scenes and positions
uniformly. Boxes never cover mostly ignore pixels and never overlap another box in the same scene. Boxes are
``(x0, y0, x1, y1)``, half-open, in scene pixels. Everything is deterministic for the seed::

    refs = extract_references(episode)
    plan = plan_placements(episode, refs, PlaceConfig(per_class=200), seed=0)
    save_placements(plan, "run/placements.jsonl")
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paintseg.config import PlaceConfig
from paintseg.data.episode import Episode
from paintseg.data.raster import to_uint8
from paintseg.files import write_text

from .appearance import SpotScorer, fit_scorer
from .context import RING, BasePredictor, ContextPrior, PlacementError, box_counts, grow_box, label_codes, share_of
from .masks import Box
from .references import Reference

log = logging.getLogger(__name__)

SIZE_JITTER = 0.2  # a placed box is its reference's size x U(1 - j, 1 + j)
COVERAGE = (0.10, 0.25)  # the share of its square context window that a box covers, drawn uniformly
CANDIDATES = 64  # random free spots scored per draw
ROUNDS = 8  # draws before a placement is skipped
MAX_IGNORE = 0.5  # the largest share of ignore pixels a box may cover


@dataclass
class Placement:
    """One instance to paint: into which trainset scene, from which reference, where, and with which mask shape."""

    scene: str  # trainset image name (an episode.train_names entry)
    class_id: int
    reference: int  # index into the references list
    box: Box  # where the instance goes, scene pixel coordinates
    window: Box  # square context window (scene coordinates) holding the box; painted, then pasted back
    mask_kind: str  # one of MASK_KINDS
    seed: int  # drives mask shape and sampling noise downstream
    angle: float = 0.0  # degrees (counter-clockwise) the reference is turned by (paintseg.place.orientation)
    score: float | None = None  # the prior's score of the chosen spot (None: uniform placement)

    def to_dict(self) -> dict:
        return {**asdict(self), "box": list(self.box), "window": list(self.window)}

    @classmethod
    def from_dict(cls, data: dict) -> "Placement":
        score = data.get("score")
        return cls(str(data["scene"]), int(data["class_id"]), int(data["reference"]), Box(*map(int, data["box"])),
                   Box(*map(int, data["window"])), str(data["mask_kind"]), int(data["seed"]),
                   float(data.get("angle", 0.0)), None if score is None else float(score))


# --------------------------------------------------------------------------------------------- windows
def window_for(box: Box, scene_hw: tuple[int, int], rng: np.random.Generator,
               coverage: tuple[float, float] = COVERAGE) -> Box:
    """A square window holding ``box`` so that the box covers a share of it drawn uniformly from ``coverage``.

    The box sits at a random offset inside; the window is then shifted (never shrunk) into the scene. It is never
    smaller than the box's longer side (so a very elongated box covers less than ``coverage[0]``) and never larger
    than the scene's shorter side (a scene too small for the ideal window gets the largest square that fits).
    """
    lo, hi = coverage
    if not 0 < lo <= hi <= 1:
        raise PlacementError(f"coverage {coverage} must satisfy 0 < low <= high <= 1 (for example (0.10, 0.25))")
    height, width = scene_hw
    area = max(box.area, 1)
    side = int(round(np.sqrt(area / rng.uniform(lo, hi))))
    smallest, largest = int(np.ceil(np.sqrt(area / hi))), int(np.floor(np.sqrt(area / lo)))
    if smallest <= largest:  # keep the rounded side inside the coverage range when integers allow
        side = min(max(side, smallest), largest)
    side = min(max(side, box.width, box.height, 1), height, width)
    x0 = int(rng.integers(box.x1 - side, box.x0 + 1)) if side >= box.width else box.x0
    y0 = int(rng.integers(box.y1 - side, box.y0 + 1)) if side >= box.height else box.y0
    x0, y0 = min(max(x0, 0), width - side), min(max(y0, 0), height - side)
    return Box(x0, y0, x0 + side, y0 + side)


# --------------------------------------------------------------------------------------------- planning
def _draw(rng: np.random.Generator, scenes: list[np.ndarray], size: tuple[int, int], taken: dict[int, list[Box]],
          count: int, ring: int, bins: int, max_ignore: float) -> tuple[list[tuple[int, Box]], list[np.ndarray]]:
    """``count`` random boxes of ``size`` (clipped to the scene) in random scenes; the free ones (at most
    ``max_ignore`` ignore, no overlap with ``taken``) as (scene, box), and the base-class ring histogram of each."""
    spots, hists = [], []
    for s in rng.integers(0, len(scenes), count).tolist():
        height, width = scenes[s].shape
        w, h = min(size[0], width), min(size[1], height)
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = Box(x0, y0, x0 + w, y0 + h)
        inside = box_counts(scenes[s], box, bins + 2)
        if inside[bins] <= max_ignore * box.area and not any(box.overlaps(b) for b in taken.get(s, [])):
            spots.append((s, box))
            hists.append(share_of((box_counts(scenes[s], grow_box(box, ring, height, width), bins + 2) - inside)[:bins]))
    return spots, hists


@dataclass
class Priors:
    """What weighs candidate spots under a :class:`~paintseg.config.PlaceConfig`: the label prior (``context``), the
    appearance scorer, the prior actually used and, for ``auto`` without base-class labels, why the labels were not
    used (appearance alone then)."""

    context: ContextPrior | None
    scorer: SpotScorer | None
    prior: str
    fallback: str | None = None


def fit_priors(episode: Episode, references: list[Reference], config: PlaceConfig, seed: int = 0,
               progress: bool = False, base_predictor: BasePredictor | None = None) -> Priors:
    """The priors ``config.prior`` asks for: the label prior fitted on the support (or ``config.near``'s named
    surroundings), the appearance scorer (:func:`~paintseg.place.appearance.fit_scorer`) for ``appearance`` and
    ``auto``; ``auto`` falls back to appearance alone when no base predictor can be fitted."""
    context, fallback = None, None
    if config.prior == "context":
        context = (ContextPrior.from_classes(episode, config.near) if config.near
                   else ContextPrior.fit(episode, references, base_predictor))
    elif config.prior == "auto":
        try:
            context = ContextPrior.fit(episode, references, base_predictor)
        except PlacementError as e:  # e.g. no base-class pixel in the trainset labels: appearance alone
            fallback = str(e)
    prior = "appearance" if fallback else config.prior
    scorer = None
    if prior in ("appearance", "auto"):
        scorer = fit_scorer(episode, references, config.model_copy(update={"prior": prior}), context=context,
                            base_predictor=base_predictor, seed=seed, progress=progress)
    return Priors(context, scorer, prior, fallback)


def plan_placements(episode: Episode, references: list[Reference], config: PlaceConfig | None = None,
                    seed: int = 0, progress: bool = True, *, priors: Priors | None = None,
                    base_predictor: BasePredictor | None = None) -> list[Placement]:
    """``config.per_class`` placements for every class of ``references``, ordered by class (see the module
    docstring), under ``priors`` (:func:`fit_priors` of ``config``, fitted here when None).

    Spots are weighed by the label prior (``context``: Bhattacharyya coefficient of the ring histogram) or the
    appearance scorer (``appearance``, ``auto``: how the surroundings look, alone or mixed with the label prior by
    held-out measurement); one of :data:`CANDIDATES` free spots is drawn with probability ∝ score **
    ``config.selectivity``. ``config.orient`` turns elongated references so that they keep the relation to the
    structure around them that they had in their support image (:mod:`.orientation`). ``config.reference_weights``
    picks each placement's reference: ``uniform`` cycles through the class's references in random order (every
    instance equally often); ``area`` draws them with probability ∝ their pixel count, so the pasted pixels follow
    the support set's own mix of large and small instances. A box may cover at most :data:`MAX_IGNORE` ignore pixels.
    When :data:`ROUNDS` draws give no free, valid spot, that placement is skipped with a warning.
    """
    config = config or PlaceConfig()
    if not references:
        raise PlacementError("no references to place; extract them from the support set first (extract_references)")
    if not episode.train_names:
        raise PlacementError(f"{episode.root / 'train.txt'}: lists no trainset scenes to paint into")
    priors = priors or fit_priors(episode, references, config, seed, progress, base_predictor)
    context, scorer = priors.context, priors.scorer
    per_class, mask_kinds, temperature = config.per_class, config.mask_kinds, config.selectivity
    base_ids, ring = (context.base_ids, context.ring) if context is not None else (episode.classes.base_ids, RING)
    n, names = len(base_ids), episode.train_names
    scenes = [label_codes(episode.read_label(s).array, base_ids)
              for s in tqdm(episode.train, desc="read scenes", unit="label", disable=not progress)]
    taken: dict[int, list[Box]] = {}  # scene index -> boxes placed in it
    turn = _Orienter(episode, references, ring) if config.orient else None
    plan: list[Placement] = []
    classes = sorted({r.class_id for r in references})
    bar = tqdm(total=per_class * len(classes), desc="plan placements", unit="placement", disable=not progress)
    for cid in classes:
        rng = np.random.default_rng([seed, cid])
        mine = [i for i, r in enumerate(references) if r.class_id == cid]
        queue: list[int] = []
        areas = np.array([float(np.count_nonzero(references[i].mask)) for i in mine])
        for _ in range(per_class):
            if config.reference_weights == "area":
                ref_index = mine[int(rng.choice(len(mine), p=areas / areas.sum()))]
            else:
                if not queue:
                    queue = [mine[i] for i in rng.permutation(len(mine))]
                ref_index = queue.pop(0)
            inst = references[ref_index].instance_box
            factor = rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
            size = (max(1, int(round(inst.width * factor))), max(1, int(round(inst.height * factor))))
            found = None
            for _ in range(ROUNDS):
                spots, hists = _draw(rng, scenes, size, taken, CANDIDATES, ring, n, MAX_IGNORE)
                if not spots:
                    continue
                scores = None
                if scorer is not None:  # appearance (and label) prior
                    scores = np.asarray(scorer.score(cid, spots, hists), np.float64)
                elif context is not None:
                    scores = np.asarray(context.score(cid, np.stack(hists)), np.float64)
                weights = np.ones(len(spots)) if scores is None else scores ** temperature  # p ∝ score ** T
                weights = weights if weights.sum() > 0 else np.ones(len(spots))  # nothing fits at all: any spot
                pick = int(rng.choice(len(spots), p=weights / weights.sum()))
                found = (*spots[pick], None if scores is None else round(float(scores[pick]), 4))
                break
            bar.update(1)
            if found is None:
                log.warning("class %s: no free spot for a %dx%d box after %d x %d candidates; placement skipped "
                            "(lower per_class or add trainset scenes)", cid, size[0], size[1], ROUNDS, CANDIDATES)
                continue
            s, box, score = found
            angle = 0.0
            if turn is not None:
                angle, box = turn(ref_index, names[s], box, factor, scenes[s], taken.get(s, []), MAX_IGNORE, n)
            taken.setdefault(s, []).append(box)
            window = window_for(box, scenes[s].shape, rng, COVERAGE)
            kind = mask_kinds[int(rng.integers(len(mask_kinds)))]
            plan.append(Placement(names[s], cid, ref_index, box, window, kind, int(rng.integers(2**31 - 1)), angle,
                                  score))
    bar.close()
    return plan


class _Orienter:
    """For ``orient=True``: the structure direction around every reference (in its support image) and, per chosen
    spot, the turn that keeps it (:func:`paintseg.place.orientation.placement_angle`) with the turned box."""

    def __init__(self, episode: Episode, references: list[Reference], ring: int):
        from paintseg.data.episode import SceneCache
        from .orientation import instance_axis, structure_angle

        self.references, self.ring = references, max(ring, 16)
        support = {s.name: s for s in episode.support_samples}
        images: dict[str, np.ndarray] = {}
        self.structure, self.elongation = [], []
        for ref in references:
            if ref.source not in images:
                images[ref.source] = to_uint8(episode.read_image(support[ref.source]).array)
            self.structure.append(structure_angle(images[ref.source], ref.instance_box, self.ring))
            self.elongation.append(instance_axis(ref.mask)[1])
        self.scenes = SceneCache(episode)

    def __call__(self, ref_index: int, scene: str, box: Box, factor: float, codes: np.ndarray, taken: list[Box],
                 max_ignore: float, bins: int) -> tuple[float, Box]:
        from .orientation import placement_angle, rotated_size, structure_angle

        spot = structure_angle(self.scenes.image(scene), box, self.ring)
        angle = placement_angle(self.structure[ref_index], spot, self.elongation[ref_index])
        if angle == 0:
            return 0.0, box
        w, h = rotated_size(self.references[ref_index].mask, angle)
        height, width = codes.shape
        w, h = min(max(1, int(round(w * factor))), width), min(max(1, int(round(h * factor))), height)
        cx, cy = (box.x0 + box.x1) // 2, (box.y0 + box.y1) // 2
        x0, y0 = min(max(cx - w // 2, 0), width - w), min(max(cy - h // 2, 0), height - h)
        turned = Box(x0, y0, x0 + w, y0 + h)
        if box_counts(codes, turned, bins + 2)[bins] > max_ignore * turned.area or any(turned.overlaps(b)
                                                                                      for b in taken):
            return 0.0, box  # the turned box does not fit where the upright one did: keep it upright
        return angle, turned


# --------------------------------------------------------------------------------------------- storage
def save_placements(placements: list[Placement], path: str | Path) -> Path:
    """One JSON object per line (:meth:`Placement.to_dict`), written to a temporary name and renamed."""
    path = Path(path)
    write_text(path, "".join(json.dumps(p.to_dict()) + "\n" for p in placements))
    log.info("wrote %d placements to %s", len(placements), path)
    return path


def load_placements(path: str | Path) -> list[Placement]:
    """Read what :func:`save_placements` wrote."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"{path}: no such placements file; write it with save_placements (or the plan stage)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Placement.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise PlacementError(f"{path}: line {n} is not a placement ({e!r}); rewrite the file with "
                                 f"save_placements") from None
    return out
