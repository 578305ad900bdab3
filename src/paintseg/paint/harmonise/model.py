"""The harmoniser: re-colours a pasted object with one colour transform chosen from the object and its scene.

Input: the composite window (RGB in [0, 1]) and the pasted object's mask, stacked as 4 channels, through an
ImageNet encoder (segmentation_models_pytorch / timm; EfficientNet-Lite0 by default, offline weights). The mean
features over the object and over its surroundings, at the encoder's last two stages, go through a small MLP to
the 12 numbers of an affine colour transform ``x -> (I + A)·x + b`` (``A`` 3×3, ``b`` 3; tanh-bounded), applied to
the object mask (grown by ``border`` pixels, 0 by default) and nowhere else - a learnt counterpart of colour transfer (as the
Harmonizer of Ke et al. 2022 regresses filter arguments instead of pixels). One transform per object keeps the
pasted object's own texture exactly and is a 12-number regression, which a small model learns within a CPU
budget. The last layer starts at zero, so an untrained harmoniser returns the copy-paste composite exactly.

The encoder's stem takes the 4th (mask) channel with zero-initialised weights, so ImageNet weights
(``encoder_weights: imagenet``) load unchanged. A HARM folder holds ``harmoniser.pt`` (weights + config; only
tensors and plain values) and ``config.yaml``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from paintseg import __version__
from paintseg.config import HarmoniserConfig, dump_yaml, validate
from paintseg.errors import PaintsegError
from paintseg.runs import save_torch

MODEL_FILE = "harmoniser.pt"
MAX_CHANGE = 0.5  # every entry of A and b is at most this (tanh-bounded)
STRIDE = 32  # the UNet's input sides must be multiples of this


class HarmoniserError(PaintsegError):
    """A harmoniser folder or input that cannot be used as given; the message says what to pass instead."""


def _widen_stem(net: nn.Module, extra: int) -> None:
    """Give the first 3-channel convolution ``extra`` more input channels with zero weights."""
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                wide = nn.Conv2d(3 + extra, child.out_channels, child.kernel_size, child.stride, child.padding,
                                 child.dilation, child.groups, child.bias is not None, child.padding_mode)
                with torch.no_grad():
                    wide.weight.zero_()
                    wide.weight[:, :3] = child.weight
                    if child.bias is not None:
                        wide.bias.copy_(child.bias)
                setattr(parent, name, wide)
                return
    raise HarmoniserError("the encoder has no 3-channel input convolution to widen")


class Harmoniser(nn.Module):
    """``forward(composite, mask)`` → the harmonised window (same size; sides multiples of 32)."""

    def __init__(self, config: HarmoniserConfig, pretrained: bool = True):
        super().__init__()
        from paintseg.networks import build_model

        weights = config.encoder_weights if pretrained else None
        segmenter = build_model("unet", config.encoder, 1, encoder_weights=weights)
        self.encoder = segmenter.net.encoder  # the decoder is not needed: the output is one transform per object
        self.register_buffer("mean", segmenter.mean.clone(), persistent=False)
        self.register_buffer("std", segmenter.std.clone(), persistent=False)
        _widen_stem(self.encoder, 1)
        width = 2 * sum(self.encoder.out_channels[-2:])
        self.head = nn.Sequential(nn.Linear(width, 256), nn.SiLU(), nn.Linear(256, 12))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.border = config.border

    def transform(self, composite: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The colour transform of each window: ``A`` (B×3×3, added to the identity) and ``b`` (B×3)."""
        x = torch.cat([(composite - self.mean) / self.std, mask * 2 - 1], 1)
        pooled = []
        for feats in self.encoder(x)[-2:]:
            m = F.interpolate(mask, size=feats.shape[-2:], mode="area")
            inside = (feats * m).sum((2, 3)) / m.sum((2, 3)).clamp(min=1e-3)
            outside = (feats * (1 - m)).sum((2, 3)) / (1 - m).sum((2, 3)).clamp(min=1e-3)
            pooled += [inside, outside]
        out = MAX_CHANGE * torch.tanh(self.head(torch.cat(pooled, 1)))
        return out[:, :9].view(-1, 3, 3), out[:, 9:]

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def region(self, mask: Tensor) -> Tensor:
        """Where the harmoniser may change pixels: the object mask grown by ``border`` pixels."""
        if self.border <= 0:
            return mask
        k = 2 * self.border + 1
        return F.max_pool2d(mask, k, 1, self.border)

    def forward(self, composite: Tensor, mask: Tensor) -> Tensor:
        a, b = self.transform(composite, mask)
        out = composite + torch.einsum("bij,bjhw->bihw", a, composite) + b[:, :, None, None]
        region = self.region(mask)
        return (region * out + (1 - region) * composite).clamp(0, 1)

    @torch.no_grad()
    def harmonise(self, window: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One composite window (uint8 h×w×3) and its object mask (bool h×w) → the harmonised window and the
        region it may have changed (bool). Any size: the window is reflect-padded to multiples of 32."""
        device = self.mean.device
        h, w = mask.shape
        ph, pw = -h % STRIDE, -w % STRIDE
        image = cv2.copyMakeBorder(window, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        m = np.pad(mask, ((0, ph), (0, pw)))
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
        mt = torch.from_numpy(m.astype(np.float32))[None, None].to(device)
        out = self(x, mt)[0, :, :h, :w].permute(1, 2, 0).cpu().numpy()
        region = self.region(mt)[0, 0, :h, :w].cpu().numpy() > 0.5
        return np.clip(np.round(out * 255), 0, 255).astype(np.uint8), region


def save_harmoniser(model: Harmoniser, config: HarmoniserConfig, folder: str | Path,
                    record: dict[str, Any] | None = None, step: int | None = None,
                    scores: dict[str, Any] | None = None) -> Path:
    """Write a HARM folder: ``harmoniser.pt`` and ``config.yaml``; returns the path of the weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "config": config.model_dump(mode="json"), "step": step, "parameters": model.num_parameters,
               "scores": scores or {}, "paintseg_version": __version__}
    target = folder / MODEL_FILE
    save_torch(payload, target)
    dump_yaml(record if record is not None else {"harmoniser": config.model_dump(mode="json")},
              folder / "config.yaml")
    return target


def is_harmoniser(path: str | Path) -> bool:
    path = Path(path)
    return (path / MODEL_FILE).is_file() or (path.is_file() and path.name == MODEL_FILE)


def load_harmoniser(path: str | Path, device: str | torch.device = "cpu") -> tuple[Harmoniser, HarmoniserConfig]:
    """The harmoniser of a HARM folder (or of its ``harmoniser.pt``), in eval mode, and its config."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        from paintseg.runs import unfinished_hint

        raise HarmoniserError(f"{path}: no {MODEL_FILE} here.{unfinished_hint(file, 'harmoniser train', 'HARM')}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
        config = validate(payload["config"], HarmoniserConfig, str(file))
        model = Harmoniser(config, pretrained=False)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise HarmoniserError(f"{file}: not a paintseg harmoniser ({type(e).__name__}: {e}); pass the folder "
                              f"written by `paintseg harmoniser train`") from None
    return model.to(device).eval(), config
