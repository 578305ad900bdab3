"""From an episode to painted candidates, resumable: references → placements → candidates.

Reads the episode, cuts the references, plans the placements (:class:`~paintseg.config.PlaceConfig`) and paints K
candidates per placement with a backend (:class:`~paintseg.config.PaintConfig`); curation (:mod:`paintseg.curate`)
chooses among them and composes the synthetic set. Every step writes into SYN and is skipped when its output is
already complete there.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from paintseg.config import PaintConfig, PlaceConfig, guard_settings
from paintseg.data.episode import Episode
from paintseg.distributed import main_first, processes
from paintseg.errors import PaintsegError
from paintseg.files import read_jsonl, write_text

from .candidates import Backend, SceneCache, done_placements, make_job, read_manifest, write_candidates
from .placement import load_placements, plan_placements, prior_summary, save_placements
from .references import extract_references, references_summary, save_references

PLAN_SETTINGS = "place.yaml"  # what planned a folder's placements.jsonl


def generate(episode: Episode, backend: Backend, out: Path, place: PlaceConfig | None = None,
             paint: PaintConfig | None = None, seed: int = 0, backend_settings: dict | None = None,
             progress: bool = True) -> dict:
    """Run references → placements (``place``) → ``paint.candidates`` candidates per placement, ``paint.batch``
    placements at a time, into ``out``; returns a summary dict. Choosing among the candidates and composing the
    synthetic set is the next stage's (:func:`paintseg.curate.pipeline.curate` on ``out``)."""
    place, paint = place or PlaceConfig(), paint or PaintConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"episode": str(episode.root.resolve()), "split": episode.split, "backend": backend.name,
                "candidates": paint.candidates, **plan_settings(place, seed), **(backend_settings or {})}
    rank, world, barrier = processes()
    timings: dict[str, float] = {}
    t = time.time()
    references = extract_references(episode)
    timings["references"] = time.time() - t
    t = time.time()
    with main_first():  # the first process records the settings, the references and the plan; the others read them
        guard_settings(out / PLAN_SETTINGS, plan_settings(place, seed), "this plan")  # before recording the set's
        guard_settings(out / "generate.yaml", settings, "this synthetic set")
        if rank == 0 and not (out / "references" / "references.jsonl").is_file():
            save_references(references, out / "references", episode.classes)
        placements, prior_info = plan(episode, references, out, place, seed, progress and rank == 0)
    timings["placement"] = time.time() - t

    t = time.time()
    cand_dir = out / "candidates"
    done = done_placements(cand_dir / "manifest.jsonl")
    for shard in cand_dir.glob("manifest.rank*.jsonl"):  # a multi-process run killed before it merged
        done |= done_placements(shard)
    todo = sorted((i for i in range(len(placements)) if i not in done), key=lambda i: (placements[i].scene, i))
    all_todo = len(todo)
    todo = todo[rank::world]  # each process paints its share; the seeds are per placement, so the pixels are too
    barrier()  # every process has its share before any writes a manifest line the others would count as done
    scenes = SceneCache(episode)
    jobs = (make_job(i, placements[i], references, scenes) for i in todo)
    write_candidates(jobs, backend, cand_dir, paint.candidates, paint.batch, total=len(todo),
                     progress=progress and rank == 0,
                     manifest_name="manifest.jsonl" if world == 1 else f"manifest.rank{rank}.jsonl")
    barrier()
    timings["paint"] = time.time() - t
    if rank != 0:
        return {"rank": rank, "painted_now": len(todo)}
    merge_manifests(cand_dir)
    manifest = read_manifest(cand_dir / "manifest.jsonl")

    per_class_counts = Counter(episode.classes.name(p.class_id) for p in placements)
    summary = {
        "references": references_summary(references, episode.classes),
        "placements": dict(per_class_counts),
        "candidates": len(manifest),
        "painted_now": all_todo,
        "prior": prior_info,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "seconds_per_candidate": round(timings["paint"] / max(all_todo * paint.candidates, 1), 4) if all_todo else None,
        "processes": world,
    }
    write_text(out / "generate_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def merge_manifests(cand_dir: Path) -> None:
    """One ``manifest.jsonl`` in (placement, candidate) order from it and the shards of several processes, so
    the same seed gives the same file with any number of processes."""
    shards = sorted(cand_dir.glob("manifest.rank*.jsonl"))
    entries = read_jsonl(cand_dir / "manifest.jsonl") + [e for s in shards for e in read_jsonl(s)]
    entries.sort(key=lambda e: (int(e["placement"]), int(e["candidate"])))
    write_text(cand_dir / "manifest.jsonl", "".join(json.dumps(e) + "\n" for e in entries))
    for shard in shards:
        shard.unlink()


def plan_settings(config: PlaceConfig, seed: int) -> dict:
    """What decides a plan, as its folder records it (``place.yaml``, and inside ``generate.yaml``): every
    :class:`PlaceConfig` field, those added after the first plans (reference_weights, orient) only when set and the
    appearance features only for the priors that use them, so folders written before them still resume; ``near``
    only when given."""
    settings = {"per_class": config.per_class, "seed": seed, "prior": config.prior,
                "mask_kinds": list(config.mask_kinds)}
    if config.reference_weights != "uniform":
        settings["reference_weights"] = config.reference_weights
    if config.prior in ("appearance", "auto"):
        settings["appearance"] = config.appearance
    if config.orient:
        settings["orient"] = True
    if config.near:
        settings["near"] = list(config.near)
    return settings


def place(episode: Episode, out: Path, config: PlaceConfig | None = None, seed: int = 0,
          progress: bool = True) -> dict:
    """The placement stage on its own (``paintseg place``): plan into ``out`` (:func:`plan`; an existing plan is
    kept). Returns ``{"placements", "prior", "plan"}`` (the plan: the placements themselves, for measuring it with
    :func:`paintseg.evaluate.placement.placement_quality`)."""
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
    guard_settings(out / PLAN_SETTINGS, plan_settings(config, seed), "this plan")
    prior, appearance = config.prior, config.appearance
    path = out / "placements.jsonl"
    if path.is_file():
        info = json.loads((out / "prior.json").read_text()) if (out / "prior.json").is_file() else {}
        return load_placements(path), info
    from .placement import ContextPrior

    from .placement import PlacementError

    context, fallback = None, None
    if prior == "context":
        context = (ContextPrior.from_classes(episode, config.near) if config.near
                   else ContextPrior.fit(episode, references))
    elif prior == "auto":
        try:
            context = ContextPrior.fit(episode, references)
        except PlacementError as e:  # e.g. no base-class pixel in the trainset labels: appearance alone
            fallback = str(e)
    effective = "appearance" if fallback else prior
    scorer = None
    if effective in ("appearance", "auto"):
        from .appearance import fit_scorer

        scorer = fit_scorer(episode, references, effective, context=context, features=tuple(appearance.split("+")),
                            seed=seed, progress=progress)
    placements = plan_placements(episode, references, config.per_class, seed=seed, prior=effective,
                                 mask_kinds=tuple(config.mask_kinds), progress=progress, context=context,
                                 reference_weights=config.reference_weights, scorer=scorer, orient=config.orient)
    info = prior_summary(context, episode.classes) if context is not None else {}
    if scorer is not None:  # the label prior's shares (auto) under "labels", then how appearance was weighed
        info = {"labels": info, **scorer.summary(episode.classes)}
        if fallback:
            info["labels"] = f"not used: {fallback}"
    write_text(out / "prior.json", json.dumps(info, indent=1) + "\n")
    save_placements(placements, path)
    return placements, info


def make_backend(generator: str | Path, paint: PaintConfig | None = None, *, seed: int = 0,
                 paste_colour: str = "none", paste_noise: float = 0.0,
                 class_names: dict[int, str] | None = None) -> tuple[Backend, dict]:
    """The painting backend that ``generator`` names - 'copy-paste', a harmoniser folder (HARM), a generator
    folder (GEN) or a diffusers pipeline folder / hub id (Paint-by-Example, SD inpainting; ``paint.device``,
    ``dtype``, ``window``, ``prompts`` and ``class_names`` apply to these) - painting as ``paint`` says, and the
    settings a synthetic set records for it (only those that differ from the defaults of options added later, so
    sets written before them still resume)."""
    paint = paint or PaintConfig()
    steps, guidance, scheduler, strength, device = (paint.steps, paint.guidance, paint.scheduler, paint.strength,
                                                    paint.device)
    from .pretrained import pipeline_kind

    if str(generator) != "copy-paste" and pipeline_kind(generator) is not None:
        from .pretrained import PretrainedBackend

        if strength != 1.0:
            raise PaintsegError(f"strength {strength}: a pretrained pipeline paints from noise (strength 1); "
                                f"painting from the copy-paste composite is for paintseg generators")
        names = class_names or {}
        unknown = sorted(set(paint.prompts) - set(names.values()))
        if unknown:
            raise PaintsegError(f"prompts for {', '.join(map(repr, unknown))}: not a novel class of this episode "
                                f"({', '.join(names.values()) or 'none given'}); key prompts by novel class name")
        prompts = {cid: paint.prompts[name] for cid, name in names.items() if name in paint.prompts}
        backend = PretrainedBackend(generator, steps=steps, guidance=guidance, scheduler=scheduler, seed=seed,
                                    device=device, dtype=paint.dtype, size=paint.window, prompts=prompts,
                                    class_names=class_names)
        return backend, backend.settings()
    if str(generator) == "copy-paste":
        from .copy_paste import CopyPasteBackend

        backend, settings = CopyPasteBackend(colour=paste_colour, noise=paste_noise), {}
        if paste_noise:
            settings["paste_noise"] = paste_noise
    else:
        from .harmonise.model import is_harmoniser

        if is_harmoniser(generator):
            from .harmonise.backend import HarmoniseBackend

            backend = HarmoniseBackend(Path(generator), colour=paste_colour)
            settings = {"harmoniser": str(Path(generator).resolve())}
        else:
            from .diffusion.backend import DiffusionBackend

            backend = DiffusionBackend(Path(generator), steps=steps, guidance=guidance, scheduler=scheduler,
                                       seed=seed, strength=strength, device=device, paste_noise=paste_noise)
            settings = {"generator": str(Path(generator).resolve()), "steps": steps, "guidance": guidance,
                        "scheduler": scheduler}
            if strength != 1.0:
                settings["strength"] = strength
            if paste_noise:
                settings["paste_noise"] = paste_noise
    if paste_colour != "none":
        settings["paste_colour"] = paste_colour
    return backend, settings
