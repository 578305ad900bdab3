"""From an episode to painted candidates, resumable: references → placements → candidates.

Reads the episode, cuts the references, plans the placements (:mod:`paintseg.place.plan`,
:class:`~paintseg.config.PlaceConfig`) and paints K candidates per placement with a backend
(:class:`~paintseg.config.PaintConfig`, :func:`make_backend`); curation (:mod:`paintseg.curate`) chooses among them
and composes the synthetic set. Every step writes into SYN and is skipped when its output is
already complete there.
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from pathlib import Path

from paintseg.config import PaintConfig, PlaceConfig, guard_settings
from paintseg.data.episode import Episode
from paintseg.distributed import main_first, processes
from paintseg.files import read_jsonl, write_text
from paintseg.place.plan import PLAN_SETTINGS, plan, plan_settings
from paintseg.place.references import extract_references, references_summary, save_references

from .candidates import Backend, BackendOptions, SceneCache, done_placements, make_job, read_manifest, write_candidates
from .painters import PAINTERS


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
        guard_settings(out / PLAN_SETTINGS, plan_settings(place, seed), "this plan", PlaceConfig)  # before the set's
        guard_settings(out / "generate.yaml", settings, "this synthetic set", PlaceConfig)
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


def make_backend(generator: str | Path, paint: PaintConfig | None = None, *, seed: int = 0,
                 paste_colour: str = "none", paste_noise: float = 0.0,
                 class_names: dict[int, str] | None = None) -> tuple[Backend, dict]:
    """The painting backend that ``generator`` names - 'copy-paste', a diffusers pipeline folder / hub id
    (Paint-by-Example, SD inpainting), a harmoniser folder (HARM) or a generator folder (GEN): the first of
    :data:`PAINTERS` that claims it - painting as ``paint`` says, and the settings a synthetic set records for it."""
    source = str(generator)
    painter = next(p for p in PAINTERS if p.claims(source))
    module, _, name = painter.backend.partition(":")
    options = BackendOptions(seed, paste_colour, paste_noise, dict(class_names or {}))
    backend = getattr(importlib.import_module(module), name).from_config(source, paint or PaintConfig(), options)
    return backend, backend.settings()
