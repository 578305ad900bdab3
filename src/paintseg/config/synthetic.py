"""What decides the synthetic data: where instances go (:class:`PlaceConfig`), how they are painted
(:class:`PaintConfig`) and how the paintings are curated (:class:`CurateConfig`), and the vocabularies they share
with the code that reads them (priors, score modes, refiners, SAM model types, encoder specs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .core import later, recipe
from .training import GENERATOR_MASK_KINDS, GeneratorConfig

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


PRIORS = ("context", "uniform", "appearance", "auto")
SCORE_MODES = ("window", "region")  # what the filter compares: the whole window or the painted region
REFINERS = ("none", "grabcut", "sam")  # how a kept painting's object mask is found
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
    scheduler: Literal["ddim", "dpm++", "dpm++sde", "pndm", "default"] = Field(
        "ddim", description="Sampler: ddim, dpm++ or dpm++sde (DPM-Solver++ with fresh noise at every "
        "step) for any generator; pndm (PLMS, RS-Paint's) or default (the one saved with it): "
        "pretrained pipelines only.")
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
