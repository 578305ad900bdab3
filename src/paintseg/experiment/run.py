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

The stage graph is declared once (:class:`StageGraph`): rounds of stages that do not depend on each other. The
sequential run walks it in order; under ``accelerate launch`` (N processes, one machine or several sharing EXP's file
system) each round's stages are dealt out to the processes (:func:`_spread`), each run whole in one process, and the
first process then gathers results.json and the report from the finished stages: the results are those of a run in
one process; the planner (:func:`planned_stages`, the progress estimate) counts the same declaration's stages.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from paintseg import distributed
from paintseg.config import HUB_ID, CurateConfig, PaintConfig, PlaceConfig, dump_yaml, recipe, stage_part
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .spec import DIFFUSION_ARMS, ExperimentConfig, ModelSpec
from .results import Results, migrate_painting_quality
from .stages import Stages, _rel, settings_hash
from .summary import comparisons, summarize_runs

# curation of each painted arm: (painting backend, use the filter, use the refiner)
ARM_CURATION = {
    "copy-paste": ("copy-paste", False, False),
    "copy-paste-match": ("copy-paste-match", False, False),
    "copy-paste-poisson": ("copy-paste-poisson", False, False),
    "copy-paste-noise": ("copy-paste-noise", False, False),
    "harmonise": ("harmonise", False, False),
    "diffusion": ("diffusion", True, True),
    "diffusion-noise": ("diffusion-noise", True, True),
    "diffusion-no-filter": ("diffusion", False, True),
    "diffusion-no-refine": ("diffusion", True, False),
}


DIFFUSION_BACKENDS = ("diffusion", "diffusion-noise")  # the ARM_CURATION backends that paint with the generator


class ExperimentError(PaintsegError):
    """An experiment that cannot run as configured (bad episode, missing generator, ...)."""


def _episode(config: ExperimentConfig, stages: Stages, progress: bool) -> tuple[Path, str]:
    spec = config.episode
    if spec.path is not None:
        root = Path(spec.path)
        return root, settings_hash("path", str(root.resolve()))
    if spec.split is not None:  # key rule 2: the data paths normalised, so another checkout finds the same stage
        kind, key = "split", stages.keyed("episode", {
            1: settings_hash("split", recipe(spec.split)),  # rule 1: the paths as the config's folder spelled them
            2: settings_hash("split", recipe(spec.split.normalised()))})
    else:
        kind, key = "demo", settings_hash("demo", spec.demo.model_dump(mode="json"))
    folder = stages.folder("episode", key)
    root = folder / "episode"

    def work() -> None:
        partial = folder / "episode.partial"
        shutil.rmtree(partial, ignore_errors=True)  # a split killed half-way starts over (it takes seconds)
        if kind == "split":
            from paintseg.data.datasets import split_recipe

            split_recipe(spec.split, partial, progress=progress)
            shutil.rmtree(root, ignore_errors=True)
            os.replace(partial, root)
        else:
            from paintseg.data.demo import make_demo_episode

            make_demo_episode(root, **spec.demo.model_dump(), progress=progress)

    stages.run("episode", folder, work)
    return root, key


def _trained(name: str, spec, train_fn, command: str, episode, episode_key: str, stages: Stages,
             progress: bool) -> tuple[Path, str]:
    """A model stage: ``spec.path`` (a trained folder, used as is) or ``spec.train`` settings, trained once into
    stages/NAME-H by ``train_fn(episode, folder, settings, resume=True, progress=...)``."""
    if spec.path is not None:
        path = Path(spec.path)
        if name == "generator" and not path.exists() and HUB_ID.fullmatch(spec.path):
            return path, settings_hash("hub", spec.path)  # a pipeline's hub id: diffusers fetches it
        if not path.exists():
            raise ExperimentError(f"{path}: {name}.path does not exist; train one with `paintseg {command}` or "
                                  f"give {name}.train settings instead")
        return path, settings_hash("path", str(path.resolve()))
    key = settings_hash(episode_key, recipe(spec.train))
    folder = stages.folder(name, key)
    stages.run(name, folder, lambda: train_fn(episode, folder, spec.train, resume=True, progress=progress))
    return folder, key


def _generator(config: ExperimentConfig, episode, episode_key: str, stages: Stages, progress: bool
               ) -> tuple[Path, str]:
    from paintseg.paint.diffusion.train import train_generator

    return _trained("generator", config.generator, train_generator, "generator train", episode, episode_key, stages,
                    progress)


def _harmoniser(config: ExperimentConfig, episode, episode_key: str, stages: Stages, progress: bool
                ) -> tuple[Path, str]:
    from paintseg.paint.harmonise.train import train_harmoniser

    return _trained("harmoniser", config.harmoniser, train_harmoniser, "harmoniser train", episode, episode_key,
                    stages, progress)


def _backend(name: str, generator: tuple[Path, str] | None, harmoniser: tuple[Path, str] | None, seed: int,
             config: ExperimentConfig, episode):
    """The painting backend of ``name`` (an ARM_CURATION backend) and the settings its synthetic set records."""
    from paintseg.paint.generate import make_backend

    g = config.generation
    paste_noise = g.paste_noise
    if name in DIFFUSION_BACKENDS:
        novel = {c: episode.classes.name(c) for c in episode.classes.novel_ids}
        return make_backend(generator[0], stage_part(g, PaintConfig), seed=seed, class_names=novel,
                            paste_noise=paste_noise if name == "diffusion-noise" else 0.0)
    if name == "harmonise":
        return make_backend(harmoniser[0])
    if name == "copy-paste-noise":
        return make_backend("copy-paste", paste_noise=paste_noise)
    return make_backend("copy-paste", paste_colour=name.removeprefix("copy-paste-") if name in (
        "copy-paste-match", "copy-paste-poisson") else "none")


def _paint_recipe(config: ExperimentConfig, episode, generator: tuple[Path, str] | None, strength: bool) -> dict:
    """The painting settings that decide a generator's pixels, for the stage hashes (not the device). A pretrained
    pipeline's own (dtype, window, prompts) are added only for one, so the stages of paintseg generators keep their
    hashes; ``strength``: the strength even at 1 (the painting-quality stage always recorded it)."""
    from paintseg.paint.pipelines import pipeline_kind

    g = config.generation
    settings = {"steps": g.steps, "guidance": g.guidance, "scheduler": g.scheduler}
    if strength or g.strength != 1.0:
        settings["strength"] = g.strength
    if generator is not None and pipeline_kind(generator[0]) is not None:
        novel = {c: episode.classes.name(c) for c in episode.classes.novel_ids}
        settings.update(dtype=g.dtype, size=g.window, class_names=novel,
                        prompts={episode.classes.by_name(n).id: text for n, text in g.prompts.items()})
    return settings


def _painting_quality(config: ExperimentConfig, episode, episode_key: str, generator: tuple[Path, str] | None,
                      harmoniser: tuple[Path, str] | None, stages: Stages, progress: bool) -> dict | None:
    """Every painting backend of the arms on the same held-out query windows (once per experiment)."""
    g = config.generation
    names = sorted({ARM_CURATION[a][0] for a in config.arms if a in ARM_CURATION})
    if not names or g.quality_tests == 0:
        return None
    painters = [n for n in names if n in DIFFUSION_BACKENDS]
    settings = _paint_recipe(config, episode, generator if painters else None, strength=True)
    keys = {n: (generator[1] if n == "diffusion" else harmoniser[1] if n == "harmonise" else
                f"{n}:{g.paste_noise}" if n == "copy-paste-noise" else
                f"{generator[1]}:noise:{g.paste_noise}" if n == "diffusion-noise" else n) for n in names}
    filtering = (g.filter != "none" and g.candidates > 1
                 and any(ARM_CURATION[a][1] for a in config.arms if a in ARM_CURATION))
    extra = [(g.filter, g.candidates, g.score_mode)] if filtering else []  # older stages keep their hash
    key = settings_hash(episode_key, keys, settings, g.quality_tests, config.seeds[0], *extra)
    folder = stages.folder("painting-quality", key)
    out = folder / "painting_quality.json"

    def work() -> None:
        from paintseg.evaluate.assess import Assessment, assess_painting

        backends = {n: _backend(n, generator, harmoniser, config.seeds[0], config, episode)[0] for n in names}
        what = Assessment(tests=g.quality_tests, seed=config.seeds[0], candidates=2,  # 2: diversity too
                          against="copy-paste" if "copy-paste" in backends else None,
                          samples_dir=folder / "samples", samples=config.report.samples,
                          steps=g.steps, guidance=g.guidance)
        if g.refine != "none" and any(ARM_CURATION[a][2] for a in config.arms if a in ARM_CURATION):
            from paintseg.curate.refine import build_refiner

            what.refiners = {"none": build_refiner("none"),
                             g.refine: build_refiner(g.refine, g.sam_checkpoint, g.sam_model_type, g.sam_prompt)}
        if filtering:
            from paintseg.curate.score import build_encoder

            what.filters, what.filter_candidates = {g.filter: build_encoder(g.filter)}, g.candidates
            what.filter_backends, what.score_mode = painters[:1], g.score_mode
        if painters and (generator[0] / "snapshots").is_dir():  # the painter's learning curve
            what.curve, what.curve_strength, what.curve_paste_noise = generator[0], g.strength, g.paste_noise
        quality = assess_painting(episode, backends, what)
        if "curve" in quality:
            quality["curve"]["generator"] = _rel(generator[0], stages.exp)
        write_text(out, json.dumps(quality, indent=1) + "\n")

    stages.run("painting quality", folder, work)
    quality = migrate_painting_quality(json.loads(out.read_text()))  # a stage of results version 1 is read as 2
    quality.pop("records", None)
    for found in quality.get("filter_quality", {}).values():
        found.pop("records", None)
    quality["folder"] = _rel(folder, stages.exp)
    return quality


def _painting(config: ExperimentConfig, episode, episode_key: str, generator: tuple[Path, str] | None,
              seed: int, stages: Stages, progress: bool, harmoniser: tuple[Path, str] | None = None
              ) -> tuple[dict[str, tuple[Path, str]], Path]:
    """Plan the seed's placements once, then paint them with every backend an arm needs; returns the paintings
    and the placements folder."""
    from paintseg.place.plan import PLAN_SETTINGS, place, plan_settings
    from paintseg.paint.generate import generate

    g = config.generation
    place_config = stage_part(g, PlaceConfig)
    place_key = settings_hash(episode_key, plan_settings(place_config, seed))
    place_dir = stages.folder(f"placements-s{seed}", place_key)

    def placements() -> None:
        from paintseg.evaluate.placement_fit import placement_quality

        done = place(episode, place_dir, place_config, seed, progress)
        placement_quality(episode, done["plan"], done["references"], place_dir, seed=seed)

    stages.run(f"placements s{seed}", place_dir, placements)

    backends = {ARM_CURATION[a][0] for a in config.arms if a in ARM_CURATION}
    painted: dict[str, tuple[Path, str]] = {}
    for name in sorted(backends, key=lambda n: n not in DIFFUSION_BACKENDS):  # diffusion first: the long one
        if name in DIFFUSION_BACKENDS:
            gen_path, gen_key = generator
            settings = _paint_recipe(config, episode, generator, strength=False)
            extra = [("paste_noise", g.paste_noise)] if name == "diffusion-noise" else []
            key = settings_hash(place_key, gen_key, settings, g.candidates, *extra)
            candidates = g.candidates
        else:  # the copy-paste arms paste (and harmonise) candidate 0 as it is
            candidates = 1
            key = settings_hash(place_key, "copy-paste") if name == "copy-paste" else \
                settings_hash(place_key, name, harmoniser[1] if name == "harmonise" else
                              g.paste_noise if name == "copy-paste-noise" else None)
        folder = stages.folder(f"paint-{name}-s{seed}", key)

        def work(name=name, folder=folder, candidates=candidates) -> None:
            for file in ("placements.jsonl", "prior.json", "placement_quality.json", PLAN_SETTINGS):
                if not (folder / file).is_file() and (place_dir / file).is_file():
                    shutil.copyfile(place_dir / file, folder / file)
            backend, backend_settings = _backend(name, generator, harmoniser, seed, config, episode)
            paint = stage_part(g, PaintConfig).model_copy(update={"candidates": candidates})
            generate(episode, backend, folder, place_config, paint, seed=seed, backend_settings=backend_settings,
                     progress=progress)

        stages.run(f"paint {name} s{seed}", folder, work)
        painted[name] = (folder, key)
    return painted, place_dir


def _curation(config: ExperimentConfig, episode, painted: dict[str, tuple[Path, str]],
              generator: tuple[Path, str] | None, seed: int, stages: Stages, progress: bool
              ) -> dict[str, tuple[Path, str]]:
    from paintseg.curate.pipeline import curate, curation_options

    g = config.generation
    filter_spec = g.filter
    if filter_spec == "generator":
        if generator is None:
            raise ExperimentError("generation.filter 'generator' needs the experiment's generator; add "
                                  "generator.train or generator.path")
        filter_spec = f"generator:{generator[0]}"
    curated: dict[str, tuple[Path, str]] = {}
    for arm in config.arms:
        if arm not in ARM_CURATION:
            continue
        backend, use_filter, use_refiner = ARM_CURATION[arm]
        use_filter, use_refiner = use_filter and g.filter != "none", use_refiner and g.refine != "none"
        source, source_key = painted[backend]
        arm_config = stage_part(g, CurateConfig).model_copy(update={
            "filter": filter_spec if use_filter else "none", "keep": g.keep if use_filter else "all",
            "refine": g.refine if use_refiner else "none"})
        c = arm_config  # the stage hash: these keys, as the first runs recorded them (no filter: None)
        key = settings_hash(source_key, {"filter": None if c.filter == "none" else c.filter, "mode": c.score_mode,
                                         "keep": c.keep, "refine": c.refine, "sam_checkpoint": c.sam_checkpoint,
                                         "sam_model_type": c.sam_model_type, "sam_prompt": c.sam_prompt,
                                         "min_cover": c.min_cover, "max_cover": c.max_cover})
        folder = stages.folder(f"curate-{arm}-s{seed}", key)

        def work(folder=folder, source=source, c=arm_config) -> None:
            curate(episode, source, folder, **curation_options(c), progress=progress)

        stages.run(f"curate {arm} s{seed}", folder, work)
        curated[arm] = (folder, key)
    return curated


def _train_and_evaluate(config: ExperimentConfig, episode, episode_key: str, arm: str, model: ModelSpec,
                        seed: int, synthetic: tuple[Path, str] | None, stages: Stages, progress: bool
                        ) -> tuple[Path, dict]:
    from paintseg.evaluate.metrics import evaluate_predictions
    from paintseg.segment.predict import predict
    from paintseg.segment.train import train

    train_config = config.train_config(model, seed)
    key = settings_hash(episode_key, synthetic[1] if synthetic else None, recipe(train_config))
    folder = stages.folder(f"train-{arm}-{model.name}-s{seed}", key)
    syn = [synthetic[0]] if synthetic else []
    stages.run(f"train {arm} {model.name} s{seed}", folder,
               lambda: train(episode, folder, train_config, syn, resume=True, progress=progress))
    eval_dir = folder / "eval"

    def work() -> None:
        shutil.rmtree(eval_dir / "pred", ignore_errors=True)
        predict(folder, [s.image for s in episode.query], eval_dir / "pred", window=config.predict_window,
                overlap=config.predict_overlap, progress=progress)
        metrics = evaluate_predictions(eval_dir / "pred", episode, progress=progress)
        write_text(eval_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")

    stages.run(f"evaluate {arm} {model.name} s{seed}", eval_dir, work)
    return folder, json.loads((eval_dir / "metrics.json").read_text())


# --------------------------------------------------------------------------------------------------- results
def _environment() -> dict:
    import torch

    from paintseg import threads

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "threads_choice": threads.chosen,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "cpus": os.cpu_count(),
            "platform": platform.platform()}


def run_experiment(config: ExperimentConfig, exp: str | Path, progress: bool = True, command: str | None = None,
                   report: bool = True) -> Results | dict:
    """Run every stage of ``config`` into ``exp`` (resuming what is there) and return the :class:`Results` that are
    also written to ``exp/results.json``; ``report=True`` writes ``exp/report.html`` at the end. Under a
    multi-process launch every process runs its share of the stages; the first returns the results (written once
    every stage is done), the others ``{"rank": r}``."""
    exp = Path(exp)
    rank, world, barrier = distributed.processes()
    if rank == 0:
        exp.mkdir(parents=True, exist_ok=True)
        dump_yaml(config, exp / "config.yaml")
    wall = time.perf_counter()
    if world > 1:  # every stage is run by one of the processes; then the first one gathers them (all cached)
        with distributed.local():
            _spread(config, exp, progress, rank, world, barrier)
        if rank != 0:
            return {"rank": rank}
        if progress:
            print(f"[process 1/{world}] every stage is done; writing results.json and the report", file=sys.stderr,
                  flush=True)
        progress = False  # the stages are all cached: no line for each
    with distributed.local():
        return _gather(config, exp, progress, command, report, wall, world)


@dataclass(frozen=True)
class Job:
    """One unit of work of the stage graph: the stages it passes through (``kinds``, for the planner) and ``run``,
    which runs them with a :class:`Stages` (cached ones are read, not run) and records what they produced."""

    kinds: tuple[str, ...]
    run: Callable[[Stages, bool], Any]


class StageGraph:
    """The experiment's stages, declared once (:meth:`rounds`): the sequential run, the multi-process run
    (:func:`_spread`) and the planner (:func:`planned_stages`) all read this one declaration. A round holds stages
    that do not depend on each other; a job reads only what the rounds before it recorded on the graph."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self.root = self.episode_key = self.episode = None
        self.generator: tuple[Path, str] | None = None
        self.harmoniser: tuple[Path, str] | None = None
        self.painting_quality: dict | None = None
        self.painted: dict[int, tuple[dict[str, tuple[Path, str]], Path]] = {}
        self.curated: dict[int, dict[str, tuple[Path, str]]] = {}

    def rounds(self) -> list[list[Job]]:
        """1 the episode; 2 the generator and harmoniser; 3 painting quality and each seed's placements, paintings
        and curation; 4 each training and its evaluation (in seed, arm, model order)."""
        c = self.config
        curated = [a for a in c.arms if a in ARM_CURATION]
        backends = {ARM_CURATION[a][0] for a in curated}
        models = []
        if needs_generator(c):
            models.append(Job(("generator",) if c.generator is not None and c.generator.path is None else (),
                              self._generator))
        if "harmonise" in c.arms:
            models.append(Job(("harmoniser",) if c.harmoniser.path is None else (), self._harmoniser))
        painting = [Job(("painting",), self._painting_quality)] if curated and c.generation.quality_tests else []
        painting += [Job(("placements",) + ("paint",) * len(backends) + ("curate",) * len(curated),
                         lambda stages, progress, seed=seed: self._synthetic(seed, stages, progress))
                     for seed in c.seeds] if curated else []
        runs = [Job(("train", "evaluate"), lambda stages, progress, seed=seed, arm=arm, model=model:
                    self._run(arm, model, seed, stages, progress))
                for seed in c.seeds for arm in c.arms for model in c.models]
        return [[Job(() if c.episode.path is not None else ("episode",), self._episode)], models, painting, runs]

    def kinds(self) -> list[str]:
        return [kind for jobs in self.rounds() for job in jobs for kind in job.kinds]

    # the jobs
    def _episode(self, stages: Stages, progress: bool) -> None:
        self.root, self.episode_key = _episode(self.config, stages, progress)
        self.episode = _open_episode(self.config, self.root)

    def _generator(self, stages: Stages, progress: bool) -> None:
        self.generator = _generator(self.config, self.episode, self.episode_key, stages, progress)

    def _harmoniser(self, stages: Stages, progress: bool) -> None:
        self.harmoniser = _harmoniser(self.config, self.episode, self.episode_key, stages, progress)

    def _painting_quality(self, stages: Stages, progress: bool) -> None:
        self.painting_quality = _painting_quality(self.config, self.episode, self.episode_key, self.generator,
                                                  self.harmoniser, stages, progress)

    def _synthetic(self, seed: int, stages: Stages, progress: bool) -> None:
        self.painted[seed] = _painting(self.config, self.episode, self.episode_key, self.generator, seed, stages,
                                       progress, self.harmoniser)
        self.curated[seed] = _curation(self.config, self.episode, self.painted[seed][0], self.generator, seed,
                                       stages, progress)

    def _run(self, arm: str, model: ModelSpec, seed: int, stages: Stages, progress: bool) -> dict:
        syn = self.curated.get(seed, {}).get(arm)
        folder, metrics = _train_and_evaluate(self.config, self.episode, self.episode_key, arm, model, seed, syn,
                                              stages, progress)
        return {"arm": arm, "model": model.name, "seed": seed, "folder": folder, "metrics": metrics}


def _gather(config: ExperimentConfig, exp: Path, progress: bool, command: str | None, report: bool, wall: float,
            world: int) -> Results:
    """The stages in order (running those not complete yet) and the results of every run."""
    graph = StageGraph(config)
    stages = Stages(exp, progress, graph.kinds(), priors=stage_priors(config))
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


def _open_episode(config: ExperimentConfig, root: Path):
    from paintseg.data.episode import Episode

    episode = Episode(root, config.episode.set)
    problems = episode.problems(expected_shots=max(episode.shots, 1))  # any k-shot episode, k >= 1
    if problems:
        raise ExperimentError(f"{root}: the episode has problems ({'; '.join(problems[:3])}); fix them (see "
                              f"`paintseg data check {root}`) and run again")
    if not episode.classes.novel_ids:
        raise ExperimentError(f"{root}: the episode has no novel class; name one in its classes.json")
    return episode


def _spread(config: ExperimentConfig, exp: Path, progress: bool, rank: int, world: int,
            barrier: Callable[[], None]) -> None:
    """Every stage of the experiment, each run whole by one of ``world`` processes (this one is ``rank``): the jobs
    of each round of the :class:`StageGraph` are dealt out in turn, with a barrier after each round. A stage is the
    same computation in any process, so the results are those of one process. Between rounds every process reads
    what the others recorded (``quiet``: those stages are all complete by then)."""
    mine = Stages(exp, progress, tag=f"[process {rank + 1}/{world}] ")
    quiet = Stages(exp, progress=False)
    graph = StageGraph(config)
    rounds = graph.rounds()
    for n, jobs in enumerate(rounds):
        for i, job in enumerate(jobs):
            if i % world == rank:
                job.run(mine, progress)
        barrier()
        if n < len(rounds) - 1:  # what the other processes did, for the next round (the first gathers the last)
            for job in jobs:
                job.run(quiet, False)


# what results.json records of the clock, the machine and the command line rather than of the experiment
def needs_generator(config: ExperimentConfig) -> bool:
    """Whether the experiment uses its generator: to paint (a diffusion arm) or to filter (``filter: generator``)."""
    return any(a in DIFFUSION_ARMS for a in config.arms) or config.generation.filter == "generator"


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


