"""``paintseg run``: arms × models × seeds from one config, every stage cached by the hash of what produced it.

    EXP/
      config.yaml                     the validated config, echoed (relative paths already resolved)
      results.json                    every run's metrics, mean ± std per arm and model, stage times; rewritten after
                                      each finished run ("complete": false until the last one)
      report.html                     written by paintseg.experiment.report at the end
      stages/<stage>-<hash>/          one folder per stage; stage.json (seconds, peak memory) marks it complete

Stages, in the order they run (a stage reads only what the stages before it wrote):

    episode-H                         the split recipe or the demo scenes, as an episode (absent for episode.path)
    generator-H                       the inpainting generator, trained once and shared by every seed and arm
    harmoniser-H                      the harmoniser of the harmonise arm, trained once
    placements-sS-H                   where to paint, planned once per seed and shared by every painting backend
    paint-diffusion-sS-H              K diffusion candidates per placement
    paint-copy-paste-sS-H             the reference pasted at the same placements (-match: colour-matched;
                                      paint-harmonise: pasted, then harmonised)
    painting-quality-H                every painting backend on the same held-out query windows (colour distance
                                      of the painted objects to the real instances of their image, the class
                                      probe), the refiner's mask quality on real query instances and, when an arm
                                      filters K > 1 candidates, what the filter's pick gains over a random one
    curate-ARM-sS-H                   a synthetic set per arm: filter / refine settings differ, paintings are shared
    train-ARM-MODEL-sS-H              a segmentation model on real (+ synthetic) data; eval/ holds its predictions
                                      on the query set and metrics.json

H is a hash of the settings that decide the stage's output and of the hashes of the stages it reads, so changing
only the training budget re-trains without re-painting, and a stage is never reused for other settings. A killed run
resumes: complete stages are skipped, and an interrupted stage continues where its own resume logic allows (the
trainers from their last checkpoint, painting from the last finished placement, curation from the last composed
scene).

The stage graph is declared once (:class:`paintseg.experiment.graph.StageGraph`): rounds of stages that do not depend
on each other. The sequential run walks it in order; under ``accelerate launch`` (N processes, one machine or several sharing EXP's file
system) each round's stages are dealt out to the processes (:func:`_spread`), each run whole in one process, and the
first process then gathers results.json and the report from the finished stages: the results are those of a run in
one process; the planner (:func:`planned_stages`, the progress estimate) counts the same declaration's stages.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

from paintseg import distributed
from paintseg.config import dump_yaml

from .graph import StageGraph, _open_episode
from .results import Results
from .spec import ExperimentConfig
from .stages import Stages, _rel
from .summary import comparisons, summarize_runs


def _environment() -> dict:
    import torch

    from paintseg import threads

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "threads_choice": threads.chosen,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "cpus": os.cpu_count(),
            "platform": platform.platform()}


def run_experiment(config: ExperimentConfig, exp: str | Path, progress: bool = True, command: str | None = None,
                   report: bool = True, lines: bool | None = None) -> Results | dict:
    """Run every stage of ``config`` into ``exp`` (resuming what is there) and return the :class:`Results` that are
    also written to ``exp/results.json``; ``report=True`` writes ``exp/report.html`` at the end. ``progress``:
    progress bars; ``lines`` (default: as ``progress``): a line on stderr per stage. Under a
    multi-process launch every process runs its share of the stages; the first returns the results (written once
    every stage is done), the others ``{"rank": r}``."""
    exp = Path(exp)
    rank, world, barrier = distributed.processes()
    # a given episode is checked before anything is written (and the stages use it as checked)
    checked = _open_episode(config, Path(config.episode.path)) if config.episode.path is not None else None
    if rank == 0:
        exp.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, exp / "config.yaml")
    wall = time.perf_counter()
    if world > 1:  # every stage is run by one of the processes; then the first one gathers them (all cached)
        with distributed.local():
            _spread(config, exp, progress, rank, world, barrier, progress if lines is None else lines, checked)
        if rank != 0:
            return {"rank": rank}
        if progress:
            print(f"[process 1/{world}] every stage is done; writing results.json and the report", file=sys.stderr,
                  flush=True)
        progress = lines = False  # the stages are all cached: no line for each
    with distributed.local():
        return _gather(config, exp, progress, command, report, wall, world, progress if lines is None else lines,
                       checked)


def _gather(config: ExperimentConfig, exp: Path, progress: bool, command: str | None, report: bool, wall: float,
            world: int, lines: bool, episode=None) -> Results:
    """The stages in order (running those not complete yet) and the results of every run."""
    graph = StageGraph(config, episode)
    stages = Stages(exp, progress, graph.kinds(), priors=stage_priors(config), lines=lines)
    *before, runs = graph.rounds()
    for jobs in before:
        for job in jobs:
            job.run(stages, progress)
    episode = graph.episode
    synthetic = []
    for seed, curated in graph.curated.items():
        painted, place_dir = graph.painted[seed]
        quality = place_dir / "placement_quality.json"
        synthetic.append({
            "seed": seed, "paint": {k: _rel(v[0], exp) for k, v in painted.items()},
            "placement_quality": json.loads(quality.read_text()) if quality.is_file() else None,
            "curated": {k: _rel(v[0], exp) for k, v in curated.items()},
            "summaries": {k: json.loads((v[0] / "curate_summary.json").read_text()) for k, v in curated.items()},
        })

    results = Results(
        name=config.name, config=config, episode=_rel(graph.root, exp),
        generator=generator_record(graph.generator[0]) if graph.generator is not None else None,
        novel=[episode.classes.name(i) for i in episode.classes.novel_ids], arms=list(config.arms),
        models=[m.name for m in config.models], seeds=list(config.seeds), synthetic=synthetic,
        painting_quality=graph.painting_quality, stages=stages.records,
        environment=dict(_environment(), processes=world), command=command)
    full: dict[tuple[str, str, int], dict] = {}  # every run's metrics.json, per-image matrices included
    runs_so_far: list[dict] = []
    for job in runs:
        run = job.run(stages, progress)
        metrics, folder = run["metrics"], run["folder"]
        full[(run["arm"], run["model"], run["seed"])] = metrics
        runs_so_far.append({"arm": run["arm"], "model": run["model"], "seed": run["seed"],
                            "run": _rel(folder, exp), "predictions": _rel(folder / "eval" / "pred", exp),
                            "metrics": {k: metrics[k] for k in ("per_class_iou", "roles", "base_miou",
                                                                "novel_miou", "score")}})
        results.runs = runs_so_far  # validated on assignment, as every field of the model
        results.summary = summarize_runs(runs_so_far, config.arms, results.models)
        results.comparisons = comparisons(full, config.arms, results.models, episode.classes)
        results.wall_seconds = round(time.perf_counter() - wall, 1)
        results.stages = stages.records  # the model holds a validated copy: every stage recorded so far
        results.write(exp)
    results.complete = True
    results.stages = stages.records
    results.wall_seconds = round(time.perf_counter() - wall, 1)
    results.write(exp)
    if report:
        from .report import write_report

        write_report(exp, samples=config.report.samples, overlays=config.report.overlays)
    results.disk_mb = round(folder_bytes(exp) / 2**20, 1)  # the whole folder, report included
    results.write(exp)
    return results


def generator_record(folder: Path) -> dict | None:
    """What a GEN folder records of its training: steps reached, training and wall seconds, threads, processes and,
    for a budget in minutes, what it was measured to buy (None for a pretrained pipeline or a folder without it)."""
    summary = Path(folder) / "train_summary.json"
    if not summary.is_file():
        return None
    found = json.loads(summary.read_text())
    keep = ("steps", "minutes", "train_seconds", "wall_seconds", "seconds_per_step", "torch_threads", "processes",
            "device", "size", "parameters", "final_loss")
    budget = Path(folder) / "budget.json"
    return {k: found.get(k) for k in keep} | ({"budget": json.loads(budget.read_text())} if budget.is_file() else {})


def _spread(config: ExperimentConfig, exp: Path, progress: bool, rank: int, world: int,
            barrier: Callable[[], None], lines: bool = True, episode=None) -> None:
    """Every stage of the experiment, each run whole by one of ``world`` processes (this one is ``rank``): the jobs
    of each round of the :class:`StageGraph` are dealt out in turn, with a barrier after each round. A stage is the
    same computation in any process, so the results are those of one process. Between rounds every process reads
    what the others recorded (``quiet``: those stages are all complete by then)."""
    mine = Stages(exp, progress, tag=f"[process {rank + 1}/{world}] ", lines=lines)
    quiet = Stages(exp, progress=False)
    graph = StageGraph(config, episode)
    rounds = graph.rounds()
    for n, jobs in enumerate(rounds):
        for i, job in enumerate(jobs):
            if i % world == rank:
                job.run(mine, progress)
        barrier()
        if n < len(rounds) - 1:  # what the other processes did, for the next round (the first gathers the last)
            for job in jobs:
                job.run(quiet, False)


def stage_priors(config: ExperimentConfig) -> dict[str, float]:
    """Seconds a stage kind will take, known before it runs: the painter's budget when it has one in minutes."""
    train = config.generator.train if config.generator is not None else None
    return {"generator": train.minutes * 60} if train is not None and train.minutes else {}


def planned_stages(config: ExperimentConfig) -> list[str]:
    """The kinds of the stages ``run_experiment`` passes through, in order (cached or not)."""
    return StageGraph(config).kinds()


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


