"""From an episode to painted candidates (and, with ``select="first"``, a ready synthetic set), resumable.

Reads the episode, cuts the references, plans the placements, paints K candidates per placement with a backend and,
until curation chooses better, composes the first candidate of each placement into its scene with the inpaint mask
as the label. Every step writes into SYN and is skipped when its output is already complete there.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from paintseg.config import guard_settings
from paintseg.data.episode import Episode
from paintseg.distributed import main_first, processes
from paintseg.errors import PaintsegError
from paintseg.files import read_jsonl, write_text

from .candidates import Backend, SceneCache, done_placements, make_job, read_manifest, write_candidates
from .masks import MASK_KINDS
from .placement import load_placements, plan_placements, prior_summary, save_placements
from .references import extract_references, references_summary, save_references



def generate(episode: Episode, backend: Backend, out: Path, per_class: int = 50, candidates: int = 4,
             seed: int = 0, prior: str = "context", mask_kinds: tuple[str, ...] = MASK_KINDS, batch: int = 8,
             backend_settings: dict | None = None, progress: bool = True, reference_weights: str = "uniform", appearance: str = "colour",
             orient: bool = False) -> dict:
    """Run references → placements → candidates into ``out``; returns a summary dict. Choosing among the candidates
    and composing the synthetic set is the next stage's (:func:`paintseg.curate.pipeline.curate` on ``out``)."""
    if per_class < 1 or candidates < 1:
        raise PaintsegError(f"--per-class ({per_class}) and --candidates ({candidates}) must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"episode": str(episode.root.resolve()), "split": episode.split, "backend": backend.name,
                "per_class": per_class, "candidates": candidates, "seed": seed, "prior": prior,
                "mask_kinds": list(mask_kinds), **(backend_settings or {})}
    if reference_weights != "uniform":  # recorded only when set, so sets written before the option still resume
        settings["reference_weights"] = reference_weights
    if prior in ("appearance", "auto"):
        settings["appearance"] = appearance
    if orient:
        settings["orient"] = True
    rank, world, barrier = processes()
    timings: dict[str, float] = {}
    t = time.time()
    references = extract_references(episode)
    timings["references"] = time.time() - t
    t = time.time()
    with main_first():  # the first process records the settings, the references and the plan; the others read them
        guard_settings(out / "generate.yaml", settings, "this synthetic set")
        if rank == 0 and not (out / "references" / "references.jsonl").is_file():
            save_references(references, out / "references", episode.classes)
        placements, prior_info = plan(episode, references, out, per_class, seed, prior, mask_kinds,
                                      progress and rank == 0, reference_weights, appearance, orient)
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
    write_candidates(jobs, backend, cand_dir, candidates, batch, total=len(todo), progress=progress and rank == 0,
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
        "seconds_per_candidate": round(timings["paint"] / max(all_todo * candidates, 1), 4) if all_todo else None,
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


def place(episode: Episode, out: Path, per_class: int, seed: int = 0, prior: str = "context",
          mask_kinds: tuple[str, ...] = MASK_KINDS, progress: bool = True, reference_weights: str = "uniform",
          appearance: str = "colour", orient: bool = False) -> dict:
    """The placement stage on its own (``paintseg place``): plan into ``out`` (:func:`plan`; an existing plan is
    kept). Returns ``{"placements", "prior", "plan"}`` (the plan: the placements themselves, for measuring it with
    :func:`paintseg.evaluate.placement.placement_quality`)."""
    references = extract_references(episode)
    placements, info = plan(episode, references, Path(out), per_class, seed, prior, mask_kinds, progress,
                            reference_weights, appearance, orient)
    return {"placements": len(placements), "prior": info, "plan": placements, "references": references}


def plan(episode: Episode, references: list, out: Path, per_class: int, seed: int = 0, prior: str = "context",
         mask_kinds: tuple[str, ...] = MASK_KINDS, progress: bool = True, reference_weights: str = "uniform",
         appearance: str = "colour", orient: bool = False) -> tuple[list, dict]:
    """The placements of ``out/placements.jsonl`` (and the context prior's summary, ``out/prior.json``), planned
    and written there unless already present - so several backends can paint the very same placements: plan once,
    copy both files into each backend's folder. ``appearance`` names the appearance prior's features (``colour``
    or ``colour+lite0``) for ``prior`` ``appearance`` and ``auto``; ``orient`` turns elongated references along the
    structure of their new surroundings."""
    out = Path(out)
    path = out / "placements.jsonl"
    if path.is_file():
        info = json.loads((out / "prior.json").read_text()) if (out / "prior.json").is_file() else {}
        return load_placements(path), info
    from .placement import ContextPrior

    from .placement import PlacementError

    context, fallback = None, None
    if prior == "context":
        context = ContextPrior.fit(episode, references)
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
    placements = plan_placements(episode, references, per_class, seed=seed, prior=effective, mask_kinds=mask_kinds,
                                 progress=progress, context=context, reference_weights=reference_weights,
                                 scorer=scorer, orient=orient)
    info = prior_summary(context, episode.classes) if context is not None else {}
    if scorer is not None:  # the label prior's shares (auto) under "labels", then how appearance was weighed
        info = {"labels": info, **scorer.summary(episode.classes)}
        if fallback:
            info["labels"] = f"not used: {fallback}"
    write_text(out / "prior.json", json.dumps(info, indent=1) + "\n")
    save_placements(placements, path)
    return placements, info


def make_backend(generator: str | Path, *, seed: int = 0, steps: int = 50, guidance: float = 3.0,
                 scheduler: str = "ddim", strength: float = 1.0, paste_colour: str = "none",
                 paste_noise: float = 0.0, device: str | None = None, dtype: str = "auto", size: int = 512,
                 prompts: dict[int, str] | None = None,
                 class_names: dict[int, str] | None = None) -> tuple[Backend, dict]:
    """The painting backend that ``generator`` names - 'copy-paste', a harmoniser folder (HARM), a generator
    folder (GEN) or a diffusers pipeline folder / hub id (Paint-by-Example, SD inpainting; ``device``, ``dtype``,
    ``size``, ``prompts`` and ``class_names`` apply to these) - and the settings a synthetic set records for it
    (only those that differ from the defaults of options added later, so sets written before them still resume)."""
    from .pretrained import pipeline_kind

    if str(generator) != "copy-paste" and pipeline_kind(generator) is not None:
        from .pretrained import PretrainedBackend

        if strength != 1.0:
            raise PaintsegError(f"--strength {strength}: a pretrained pipeline paints from noise (strength 1); "
                                f"painting from the copy-paste composite is for paintseg generators")
        backend = PretrainedBackend(generator, steps=steps, guidance=guidance,
                                    scheduler=scheduler, seed=seed,
                                    device=device, dtype=dtype, size=size, prompts=prompts, class_names=class_names)
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
