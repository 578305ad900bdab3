"""Placement as a stage: plan where new instances go into a folder, once, and record what planned them.

:func:`place` (``paintseg place``) and :func:`plan` write ``placements.jsonl``, ``prior.json`` and ``place.yaml``
(:func:`plan_settings`); every painting backend then paints that very plan (:mod:`paintseg.paint.generate`), and a
plan is never painted under other placement settings than its own.
"""

from __future__ import annotations

import json
from pathlib import Path

from paintseg.config import PlaceConfig, guard_settings, recipe
from paintseg.data.episode import Episode
from paintseg.files import write_text

from .context import prior_summary
from .placement import fit_priors, load_placements, plan_placements, save_placements
from .references import extract_references

PLAN_SETTINGS = "place.yaml"  # what planned a folder's placements.jsonl


def plan_settings(config: PlaceConfig, seed: int) -> dict:
    """What decides a plan, as its folder records it (``place.yaml``, and inside ``generate.yaml``): the seed and
    the config's cache-key fields (:func:`paintseg.config.recipe`'s rule: fields added after the first plans only
    when set, the appearance features only for the priors that use them), so folders written before them still
    resume."""
    return {"seed": seed, **recipe(config)}


def place(episode: Episode, out: Path, config: PlaceConfig | None = None, seed: int = 0,
          progress: bool = True) -> dict:
    """The placement stage on its own (``paintseg place``): plan into ``out`` (:func:`plan`; an existing plan is
    kept). Returns ``{"placements", "prior", "plan"}`` (the plan: the placements themselves, for measuring it with
    :func:`paintseg.evaluate.placement_fit.placement_quality`)."""
    references = extract_references(episode)
    placements, info = plan(episode, references, Path(out), config or PlaceConfig(), seed, progress)
    return {"placements": len(placements), "prior": info, "plan": placements, "references": references}


def plan(episode: Episode, references: list, out: Path, config: PlaceConfig, seed: int = 0,
         progress: bool = True) -> tuple[list, dict]:
    """The placements of ``out/placements.jsonl`` (and the context prior's summary, ``out/prior.json``), planned
    and written there unless already present - so several backends can paint the very same placements: plan once,
    copy the files into each backend's folder. ``out/place.yaml`` records what planned them (:func:`plan_settings`),
    so a plan is never painted under other settings than its own."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    guard_settings(out / PLAN_SETTINGS, plan_settings(config, seed), "this plan", PlaceConfig)
    path = out / "placements.jsonl"
    if path.is_file():
        info = json.loads((out / "prior.json").read_text()) if (out / "prior.json").is_file() else {}
        return load_placements(path), info
    priors = fit_priors(episode, references, config, seed, progress)
    placements = plan_placements(episode, references, config, seed, progress, priors=priors)
    context, scorer, fallback = priors.context, priors.scorer, priors.fallback
    info = prior_summary(context, episode.classes) if context is not None else {}
    if scorer is not None:  # the label prior's shares (auto) under "labels", then how appearance was weighed
        info = {"labels": info, **scorer.summary(episode.classes)}
        if fallback:
            info["labels"] = f"not used: {fallback}"
    write_text(out / "prior.json", json.dumps(info, indent=1) + "\n")
    save_placements(placements, path)
    return placements, info
