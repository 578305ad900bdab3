"""The experiment config of ``paintseg run``: one YAML file, validated with pydantic, echoed into EXP/config.yaml.

It names the episode (an existing folder, a split recipe over any labelled dataset, or the built-in demo scenes),
the generator (a trained one, or its training settings), how candidates are painted and curated, the arms to
compare, the segmentation models, their shared training budget and the seeds. Relative paths in the file are read
relative to the file's own folder, so a config means the same thing from any working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from paintseg.config import (HUB_ID, ConfigError, GenerateConfig, GeneratorConfig, HarmoniserConfig, SplitRecipe,
                             TrainConfig, encoder_problem, load_yaml)

from .arms import ARMS, DEFAULT_ARMS, DIFFUSION_ARMS, legend  # the one table of arms (ARMS... re-exported)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoScenes(_Strict):
    """Procedural aerial-like scenes with a novel class (``paintseg.data.demo``)."""

    scenes: int = Field(24, ge=1, description="Trainset scenes (base classes only).")
    size: int = Field(256, ge=64, description="Scene side in pixels (a multiple of 32).")
    shots: int = Field(5, ge=1, description="Support scenes of the novel class.")
    query: int = Field(6, ge=1, description="Query scenes.")
    seed: int = Field(0, description="Seed of the procedural scenes.")


class EpisodeSpec(_Strict):
    """Exactly one of ``path``, ``split`` or ``demo``."""

    path: str | None = Field(None, description="An episode folder in the OpenEarthMap few-shot layout.")
    split: SplitRecipe | None = Field(None, description="Or how `paintseg split` builds it from a labelled "
                                      "dataset (its stage is cached like the others).")
    demo: DemoScenes | None = Field(None, description="Or the built-in procedural demo scenes.")
    set: Literal["valset", "testset"] = Field("valset", description="Whose support and query sets are used.")

    @model_validator(mode="after")
    def _one(self) -> "EpisodeSpec":
        given = [k for k in ("path", "split", "demo") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of episode.path, episode.split or episode.demo (got "
                             f"{', '.join(given) or 'none'})")
        return self


class GeneratorSpec(_Strict):
    """A trained generator (``path``: a folder written by ``paintseg generator train``) or how to train one."""

    path: str | None = Field(None, description="A trained generator: a folder written by `paintseg generator "
                             "train`, a diffusers pipeline folder or hub id (relative to the config file).")
    train: GeneratorConfig | None = Field(None, description="Or how to train one (the generator settings); it is "
                                          "trained once and shared by every seed and arm.")

    @model_validator(mode="after")
    def _one(self) -> "GeneratorSpec":
        if (self.path is None) == (self.train is None):
            raise ValueError("give exactly one of generator.path (a trained generator) or generator.train "
                             "(its training settings)")
        return self


class HarmoniserSpec(_Strict):
    """The harmoniser of the ``harmonise`` arm: a trained one (``path``: a folder written by ``paintseg harmoniser
    train``) or how to train one (``train``, default settings when neither is given)."""

    path: str | None = Field(None, description="A trained harmoniser: a folder written by `paintseg harmoniser "
                             "train`.")
    train: HarmoniserConfig = Field(HarmoniserConfig(), description="Or how to train one (the harmoniser settings).")


class GenerationSpec(GenerateConfig):
    """Placement, painting and curation (:class:`~paintseg.config.GenerateConfig`: the stage configs of ``paintseg
    place``, ``generate`` and ``curate``, flat) plus the settings of the arms and the painting-quality stage.
    Placement and painting are shared by every arm of a seed; curation differs between the diffusion arms."""

    model_config = ConfigDict(extra="forbid")

    paste_noise: float = Field(17.5, gt=0, description="The copy-paste-noise arm: std (grey levels) of the smooth "
                               "colour noise added to each pasted object and 2 px around it (`generate "
                               "--paste-noise`; 17.5 = what SDEdit at strength 0.3 adds on Dubai).")
    quality_tests: int = Field(24, ge=0, description="Painting-quality tests per novel class on held-out query "
                               "scenes (paintseg.evaluate.painting), the same for every painting arm; 0: off.")


class ModelSpec(_Strict):
    """One segmentation model every arm trains (the train section's other settings are shared)."""

    arch: str = Field("unet", description=TrainConfig.model_fields["arch"].description)
    encoder: str = Field("resnet18", description=TrainConfig.model_fields["encoder"].description)
    encoder_weights: str | None = Field(None, description=TrainConfig.model_fields["encoder_weights"].description)

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.encoder}"


class ReportSpec(_Strict):
    """What report.html shows."""

    samples: int = Field(6, ge=1, description="Placements shown in each sample grid.")
    overlays: int = Field(3, ge=1, description="Query images shown with every arm's prediction.")


class ExperimentConfig(_Strict):
    """Everything ``paintseg run`` needs; see configs/*.yaml for annotated examples."""

    name: str = Field("experiment", description="The run's name, shown in the report and results.json.")
    episode: EpisodeSpec = Field(description="The few-shot episode: a folder, a split recipe or the demo scenes.")
    generator: GeneratorSpec | None = Field(None, description="The painter of the diffusion arms.")
    harmoniser: HarmoniserSpec = Field(HarmoniserSpec(), description="The harmoniser of the harmonise arm.")
    generation: GenerationSpec = Field(GenerationSpec(), description="Placement, painting and curation, shared by "
                                       "the arms that paint.")
    arms: list[str] = Field(list(DEFAULT_ARMS), description="What is compared (each arm trains every model on every "
                            "seed): " + legend() + ".")
    models: list[ModelSpec] = Field([ModelSpec()], min_length=1, description="The segmentation models.")
    train: TrainConfig = Field(TrainConfig(), description="Shared segmentation training settings; arch, encoder, "
                               "encoder_weights and seed come from models and seeds.")
    seeds: list[int] = Field([0], min_length=1, description="Seeds: each arm and model is trained once per seed "
                             "(paired comparisons tell a gain from seed noise with 3 or more).")
    predict_window: int | None = Field(None, description="Sliding-window side for the query predictions (a multiple "
                                       "of 32); default: the training crop.")
    predict_overlap: float = Field(0.25, ge=0, le=0.9, description="Overlap of neighbouring prediction windows.")
    report: ReportSpec = Field(ReportSpec(), description="What the report shows.")

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: list[str]) -> list[str]:
        return _once(_among(value, ARMS, "arms"), "arms", "an arm")

    @field_validator("predict_window")
    @classmethod
    def _window(cls, value: int | None) -> int | None:
        if value is not None and (value < 32 or value % 32):
            raise ValueError(f"predict_window {value} must be a multiple of 32 (at least 32), e.g. 512")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        return _once(value, "seeds", "a seed")

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        _once([m.name for m in value], "models", "a model")
        for m in value:  # the training config checks arch/encoder/crop together
            TrainConfig(arch=m.arch, encoder=m.encoder)
        return value

    @model_validator(mode="after")
    def _generator(self) -> "ExperimentConfig":
        if any(a in DIFFUSION_ARMS for a in self.arms) and self.generator is None:
            raise ValueError("the diffusion arms need a generator: give generator.train (settings) or "
                             "generator.path (a trained generator)")
        arms, g = set(self.arms), self.generation
        if g.refine == "none" and {"diffusion", "diffusion-no-refine"} <= arms:
            raise ValueError("generation.refine: none would make the diffusion arm equal to diffusion-no-refine; use "
                             "grabcut or sam, or drop the diffusion-no-refine arm")
        if g.filter == "none" and {"diffusion", "diffusion-no-filter"} <= arms:
            raise ValueError("generation.filter: none would make the diffusion arm equal to diffusion-no-filter; "
                             "name an encoder (handcrafted, efficientnet-lite0, generator, "
                             "open_clip:MODEL:CHECKPOINT), or drop the diffusion-no-filter arm")
        if "diffusion-noise" in arms and g.strength >= 1:
            raise ValueError("the diffusion-noise arm paints over the copy-paste-noise composite, which painting from "
                             "noise (generation.strength 1) never sees; set generation.strength below 1 (e.g. 0.3) "
                             "or drop the arm")
        return self

    def train_config(self, model: ModelSpec, seed: int) -> TrainConfig:
        return self.train.model_copy(update={"arch": model.arch, "encoder": model.encoder,
                                             "encoder_weights": model.encoder_weights, "seed": seed})


def _among(values: list[str], allowed: tuple[str, ...], field: str) -> list[str]:
    if not values or any(v not in allowed for v in values):
        raise ValueError(f"{field} {values}: choose one or more of {', '.join(allowed)}")
    return values


def _once(values: list, field: str, what: str) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"{field} {values} lists {what} twice")
    return values


def _resolve(value: str | None, base: Path) -> str | None:
    if value is None or Path(value).is_absolute():
        return value
    return str(base / value)


def load_experiment(path: str | Path, check: bool = True) -> ExperimentConfig:
    """Read and validate an experiment YAML (e.g. configs/demo.yaml); relative paths inside are made relative to
    the file's folder. Beyond the fields' own checks, the files it names must exist and the segmentation encoders
    must be known to smp/timm (:func:`check_experiment`; ``check=False`` skips that, to read a config whose files are
    elsewhere), so no value fails later than the load."""
    config = resolve_paths(load_yaml(path, ExperimentConfig), Path(path).resolve().parent)
    problems = check_experiment(config) if check else []
    if problems:
        raise ConfigError(f"{path}: invalid run config:\n" + "\n".join(f"  {p}" for p in problems))
    return config


def check_experiment(config: ExperimentConfig) -> list[str]:
    """``field: problem`` for every path that does not exist and every unknown encoder or weight name."""
    import glob

    out: list[str] = []

    def exists(field: str, value: str | None, what: str) -> None:
        if value is not None and not Path(value).exists():
            out.append(f"{field}: {value} does not exist; {what}")

    ep = config.episode
    exists("episode.path", ep.path, "build an episode with `paintseg split` or give episode.split")
    if ep.split is not None:
        r = ep.split
        exists("episode.split.root", r.root, "the folder that holds the dataset")
        exists("episode.split.classes", r.classes, "a classes.json (schema in the README)")
        for key in ("images", "labels"):
            pattern = getattr(r, key)
            if pattern and not glob.glob(pattern, recursive=True):
                out.append(f"episode.split.{key}: no file matches {pattern!r}; fix the pattern (relative to the "
                           f"config file's folder)")
    if config.generator is not None and config.generator.path is not None:
        path = config.generator.path
        hub = HUB_ID.fullmatch(path) and not Path(path).is_absolute() and not Path(path).is_dir()
        if not hub:
            exists("generator.path", path, "a folder written by `paintseg generator train`, or give generator.train")
        strength = config.generation.strength
        if strength < 1 and any(a in DIFFUSION_ARMS for a in config.arms) and (hub or Path(path).is_dir()):
            from paintseg.paint.pipelines import pipeline_kind

            if hub or pipeline_kind(Path(path)) is not None:  # a hub id is always a pipeline; a GEN folder is not
                out.append(f"generation.strength: {strength:g}, but generator.path is a pretrained pipeline, which "
                           f"paints from noise only; set generation.strength: 1.0 (0.3, the default, is for "
                           f"paintseg's own generators)")
    if config.generator is not None and config.generator.train is not None and config.generator.train.autoencoder:
        from paintseg.paint.autoencoder import AutoencoderError, find_files

        try:
            find_files(Path(config.generator.train.autoencoder))
        except AutoencoderError as e:
            out.append(f"generator.train.autoencoder: {e}")
    exists("harmoniser.path", config.harmoniser.path, "a folder written by `paintseg harmoniser train`")
    exists("generation.sam_checkpoint", config.generation.sam_checkpoint, "a SAM .pth checkpoint")
    spec = config.generation.filter
    if spec.startswith("generator:"):
        exists("generation.filter", spec.removeprefix("generator:"), "a trained generator folder")
    elif spec.startswith("open_clip:") and spec.count(":") >= 2:
        exists("generation.filter", spec.split(":", 2)[2], "an open_clip checkpoint file")
    for i, m in enumerate(config.models):
        problem = encoder_problem(m.encoder, m.encoder_weights)
        if problem:
            out.append(f"models.{i}: {problem}")
    h = config.harmoniser
    if "harmonise" in config.arms and h.path is None:
        problem = encoder_problem(h.train.encoder, h.train.encoder_weights)
        if problem:
            out.append(f"harmoniser.train: {problem}")
    return out


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """A copy of ``config`` whose relative file paths are joined to ``base``."""
    config = config.model_copy(deep=True)
    ep = config.episode
    ep.path = _resolve(ep.path, base)
    if ep.split is not None:
        for key in ("images", "labels", "classes", "root"):
            setattr(ep.split, key, _resolve(getattr(ep.split, key), base))
    if config.generator is not None:
        path = config.generator.path
        hub_id = path is not None and HUB_ID.fullmatch(path) and not (base / path).exists()
        config.generator.path = path if hub_id else _resolve(path, base)  # a hub id stays as it is
    if config.generator is not None and config.generator.train is not None:
        config.generator.train.autoencoder = _resolve(config.generator.train.autoencoder, base)
    config.harmoniser.path = _resolve(config.harmoniser.path, base)
    config.generation.sam_checkpoint = _resolve(config.generation.sam_checkpoint, base)
    spec = config.generation.filter
    if spec.startswith("generator:"):
        config.generation.filter = "generator:" + _resolve(spec.removeprefix("generator:"), base)
    if spec.startswith("open_clip:"):
        kind, model, ckpt = spec.split(":", 2) if spec.count(":") >= 2 else (spec, "", "")
        if ckpt:
            config.generation.filter = f"{kind}:{model}:{_resolve(ckpt, base)}"
    return config
