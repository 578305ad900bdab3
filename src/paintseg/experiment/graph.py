"""The stages of ``paintseg run``, declared once: how each stage is keyed and run (:class:`StageGraph`, rounds of
:class:`Job`), read by the sequential run, the multi-process run and the planner (:mod:`paintseg.experiment.run`).

Each stage function computes its cache key from the settings that decide its output and the keys of the stages it
reads (:func:`paintseg.experiment.stages.settings_hash` of :func:`paintseg.config.recipe`'s fields), runs into
``EXP/stages/<stage>-<key>/`` unless that folder is complete, and returns the folder and key for the stages after
it. The stages, in order: the episode; the generator and the harmoniser; painting quality, and each seed's
placements, paintings and curation; each training and its evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from paintseg.config import HUB_ID, CurateConfig, PaintConfig, PlaceConfig, recipe, stage_part
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .results import migrate_painting_quality
from .arms import ARM_CURATION, BACKENDS, DIFFUSION_ARMS, DIFFUSION_BACKENDS
from .spec import ExperimentConfig, ModelSpec
from .stages import Stages, _rel, settings_hash



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
    backend = BACKENDS[name]
    paste_noise = g.paste_noise if backend.noise else 0.0
    if backend.source == "generator":
        novel = {c: episode.classes.name(c) for c in episode.classes.novel_ids}
        return make_backend(generator[0], stage_part(g, PaintConfig), seed=seed, class_names=novel,
                            paste_noise=paste_noise)
    if backend.source == "harmoniser":
        return make_backend(harmoniser[0])
    return make_backend("copy-paste", paste_colour=backend.paste_colour, paste_noise=paste_noise)


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
                          paint=stage_part(g, PaintConfig), curation=stage_part(g, CurateConfig))
        if g.refine != "none" and any(ARM_CURATION[a][2] for a in config.arms if a in ARM_CURATION):
            from paintseg.curate.refine import build_refiner

            curation = stage_part(g, CurateConfig)
            what.refiners = {"none": build_refiner(curation.model_copy(update={"refine": "none"})),
                             g.refine: build_refiner(curation)}
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
    from paintseg.curate.pipeline import curate

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
        key = settings_hash(source_key, arm_config.curation_key())
        folder = stages.folder(f"curate-{arm}-s{seed}", key)

        def work(folder=folder, source=source, c=arm_config) -> None:
            curate(episode, source, folder, c, progress=progress)

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


@dataclass(frozen=True)
class Job:
    """One unit of work of the stage graph: the stages it passes through (``kinds``, for the planner) and ``run``,
    which runs them with a :class:`Stages` (cached ones are read, not run) and records what they produced."""

    kinds: tuple[str, ...]
    run: Callable[[Stages, bool], Any]


class StageGraph:
    """The experiment's stages, declared once (:meth:`rounds`): the sequential run, the multi-process run and the
    planner (:mod:`paintseg.experiment.run`) all read this one declaration. A round holds stages
    that do not depend on each other; a job reads only what the rounds before it recorded on the graph."""

    def __init__(self, config: ExperimentConfig, episode=None):
        """``episode``: the episode of ``config.episode.path``, already opened and checked (:func:`_open_episode`),
        so that a run which checked it before writing anything does not read every label again."""
        self.config = config
        self.root = self.episode_key = None
        self.episode = self.checked = episode
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
        self.episode = self.checked or _open_episode(self.config, self.root)

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


def _open_episode(config: ExperimentConfig, root: Path):
    """The episode at ``root``, checked as `paintseg data check` checks it (an ExperimentError names its problems)."""
    from paintseg.data.episode import Episode

    episode = Episode(root, config.episode.set)
    problems = episode.problems(expected_shots=max(episode.shots, 1))  # any k-shot episode, k >= 1
    if problems:
        raise ExperimentError(f"{root}: the episode has problems ({'; '.join(problems[:3])}); fix them (see "
                              f"`paintseg data check {root}`) and run again")
    if not episode.classes.novel_ids:
        raise ExperimentError(f"{root}: the episode has no novel class; name one in its classes.json")
    return episode


def needs_generator(config: ExperimentConfig) -> bool:
    """Whether the experiment uses its generator: to paint (a diffusion arm) or to filter (``filter: generator``)."""
    return any(a in DIFFUSION_ARMS for a in config.arms) or config.generation.filter == "generator"
