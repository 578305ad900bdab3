"""Curate: painted candidates → a clean synthetic training set.

Reads what `paintseg generate` wrote (``SRC/references``, ``SRC/candidates``) and writes a synthetic set (``OUT``, which
may be SRC itself): score every candidate against its reference, keep the best of K per placement, keep per class the
placements above a threshold or in the top fraction, refine each kept object's mask (SAM, GrabCut or the inpaint
mask), reject refined masks that cover too little or too much of the inpaint mask, and compose the rest into their
scenes. Candidates are never repainted, so ablations (no filter, no refinement) share one set of paintings.

``OUT/manifest.jsonl`` has one line per placement: kept, or why it was rejected.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from paintseg.config import CurateConfig, guard_settings, parse_keep
from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.files import save_png, write_text
from paintseg.paint.candidates import load_candidate, read_manifest
from paintseg.place.masks import Box
from paintseg.place.references import load_references

from .compose import FEATHER_RADIUS, compose_set, drop_overlaps
from .refine import Refiner, mask_coverage_check
from .score import Encoder, keep, score_manifest, select_best


@dataclass
class KeepRule:
    """Which best-of-K placements survive, per class: score ≥ threshold and/or within the top fraction."""

    threshold: float | None = None
    top_fraction: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> "KeepRule":
        """``"all"``/None, ``"0.6"`` (threshold), ``"top:0.5"`` (fraction) or ``"0.6,top:0.5"`` (both)."""
        try:
            return cls(*parse_keep(text))
        except ValueError as e:
            raise PaintsegError(str(e)) from None


@dataclass
class CurationModels:
    """The models a :class:`~paintseg.config.CurateConfig` names, built: the filter's similarity encoder (None for
    ``filter: none``, which keeps candidate 0 of every placement unscored) and the mask refiner. Built once, before
    painting, so a bad filter or SAM checkpoint stops a command before any work."""

    encoder: Encoder | None
    refiner: Refiner

    @classmethod
    def build(cls, config: CurateConfig) -> "CurationModels":
        from .refine import build_refiner
        from .score import build_encoder

        return cls(build_encoder(config.filter) if config.filter != "none" else None,
                   build_refiner(config))


def refiner_settings(refiner: Refiner) -> dict:
    """The refiner's name and plain settings (checkpoint, model type, prompt, iterations, ...): what decides its
    masks, so cached masks are reused only for the same settings."""
    plain = {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(refiner).items())
             if not k.startswith("_") and k not in ("last_fallback", "fallbacks")
             and isinstance(v, (str, int, float, bool, Path, type(None)))}
    return {"name": refiner.name, **plain}


def curate(episode: Episode, source: Path, out: Path | None = None, config: CurateConfig | None = None,
           progress: bool = True, *, models: CurationModels | None = None) -> dict:
    """Score → select → keep → refine → compose (see the module docstring) as ``config`` says, with its ``models``
    (:meth:`CurationModels.build` of ``config`` when None; give them to curate with models of your own). Without an
    encoder (``filter: none``) candidate 0 of every placement is kept unscored; the ``none`` refiner labels the
    inpaint mask. Returns a summary."""
    config = config or CurateConfig()
    models = models or CurationModels.build(config)
    encoder, refiner, mode = models.encoder, models.refiner, config.score_mode
    keep_rule, min_cover, max_cover = KeepRule.parse(config.keep), config.min_cover, config.max_cover
    source = Path(source)
    out = Path(out) if out is not None else source
    candidates_dir = source / "candidates"
    entries = read_manifest(candidates_dir / "manifest.jsonl")
    references = load_references(source / "references")
    out.mkdir(parents=True, exist_ok=True)
    if encoder is None and (keep_rule.threshold is not None or keep_rule.top_fraction is not None):
        raise PaintsegError("keep needs scores: give a filter encoder (e.g. handcrafted), or keep all with "
                            "filter none")
    guard_settings(out / "curate.yaml", {
        "source": str(source.resolve()), "encoder": encoder.name if encoder is not None else None, "mode": mode,
        "refine": refiner.name, "refiner": refiner_settings(refiner), "threshold": keep_rule.threshold, "top_fraction": keep_rule.top_fraction,
        "min_cover": min_cover, "max_cover": max_cover, "feather_radius": FEATHER_RADIUS,
    }, "this synthetic set's curation")
    seconds: dict[str, float] = {}
    by_key = {(int(e["placement"]), int(e["candidate"])): e for e in entries}
    placements = sorted({int(e["placement"]) for e in entries})

    t = time.time()
    if encoder is not None:
        scores = score_manifest(encoder, candidates_dir, entries, references, mode)
        best = select_best(scores)
        scores_file = out / "scores.json"
        write_text(scores_file, json.dumps({"encoder": encoder.name, "mode": mode, "scores": {
            str(p): [round(float(v), 6) for v in s] for p, s in scores.items()}}))
    else:
        best = {p: (0, None) for p in placements}
    seconds["score"] = time.time() - t

    rejected: dict[int, str] = {}
    if encoder is not None and (keep_rule.threshold is not None or keep_rule.top_fraction is not None):
        _, rejected = keep([(p, int(by_key[(p, 0)]["class_id"]), s) for p, (_, s) in best.items()],
                           keep_rule.threshold, keep_rule.top_fraction)

    t = time.time()
    chosen: list[dict] = []
    for p in tqdm([p for p in placements if p not in rejected], desc=f"refine ({refiner.name})", unit="placement",
                  disable=not progress):
        k, s = best[p]
        entry = dict(by_key[(p, k)], score=s, refine=refiner.name)
        if refiner.name == "none":
            chosen.append(entry)
            continue
        path = out / "refined" / entry["file"].replace(".png", f"_{refiner.name}.png")
        fallback_file = path.with_suffix(".fallback.txt")
        cand, window = load_candidate(candidates_dir, entry)
        if path.is_file():
            refined = np.asarray(Image.open(path)) > 127
        else:
            box = Box(*entry["box"]).shift(-window.x0, -window.y0)
            refined = refiner.refine(cand.image, cand.paint_mask, box)
            fallback = getattr(refiner, "last_fallback", None)
            path.parent.mkdir(parents=True, exist_ok=True)
            if fallback:
                write_text(fallback_file, fallback + "\n")
            save_png(path, refined.astype(np.uint8) * 255)
        if fallback_file.is_file():  # the refiner found no outline and returned the inpaint mask
            rejected[p] = f"refine: no outline ({fallback_file.read_text().strip()})"
            continue
        reason = mask_coverage_check(refined, cand.paint_mask, min_cover, max_cover)
        if reason is not None:
            rejected[p] = f"refine: {reason}"
            continue
        entry["refined_mask"] = refined & cand.paint_mask
        chosen.append(entry)
    seconds["refine"] = time.time() - t

    t = time.time()
    chosen, overlapping = drop_overlaps(chosen, candidates_dir)
    rejected.update(overlapping)
    compose_set(episode, out, chosen, candidates_dir=candidates_dir, feather_radius=FEATHER_RADIUS,
                rejected=[dict(by_key[(p, best[p][0])], score=best[p][1], refine=refiner.name, why=why)
                          for p, why in sorted(rejected.items())], progress=progress)
    seconds["compose"] = time.time() - t

    reasons = Counter(_reason_key(why) for why in rejected.values())
    summary = {
        "placements": len(placements), "candidates": len(entries), "kept": len(chosen),
        "rejected": dict(reasons), "encoder": encoder.name if encoder is not None else None, "mode": mode,
        "refine": refiner.name, "keep": {"threshold": keep_rule.threshold, "top_fraction": keep_rule.top_fraction},
        "kept_per_class": dict(Counter(episode.classes.name(int(e["class_id"])) for e in chosen)),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    write_text(out / "curate_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _reason_key(why: str) -> str:
    """Group rejection reasons for the summary: 'below threshold', 'refine: too little', 'refine: no outline', ..."""
    if why.startswith("refine: "):
        return "refine: " + why[len("refine: "):].split(":")[0].split(" (")[0]
    return why


def format_summary(summary: dict) -> str:
    """The summary as a small table: placements, candidates, kept, rejected by reason."""
    rows = [("placements", summary["placements"]), ("candidates", summary["candidates"]),
            ("kept", summary["kept"])]
    rows += [(f"rejected: {why}", n) for why, n in sorted(summary["rejected"].items())]
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value:>6}" for name, value in rows]
    lines.append(f"(filter: {summary['encoder'] or 'none'}, {summary['mode']} mode; refine: {summary['refine']})")
    return "\n".join(lines)
