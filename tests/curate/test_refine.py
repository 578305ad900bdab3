"""Refinement: none / GrabCut / SAM (a tiny randomly initialised SAM saved and loaded as a real checkpoint)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from paintseg.config import CurateConfig
from paintseg.curate.refine import (
    SAM_MODEL_TYPES,
    GrabCutRefiner,
    NoneRefiner,
    SamRefiner,
    build_refiner,
    build_sam_vit_tiny,
    sam_builder,
    dilate,
    mask_centroid_point,
    mask_coverage_check,
    refine_iou,
)
from paintseg.errors import PaintsegError
from paintseg.extras import MissingExtraError
from paintseg.place.masks import Box


def disc_scene(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A striped orange roof-like ellipse (the object) on blotchy green-brown ground with pixel noise;
    (image, true object mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    obj = (xx - 50) ** 2 + ((yy - 44) / 0.8) ** 2 < 22**2
    field = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 4)
    field /= np.abs(field).max()
    image = np.empty((size, size, 3), np.float32)
    image[:] = np.array([70, 100, 50], np.float32) + field[..., None] * np.array([50, 40, 30], np.float32)
    stripes = ((xx + yy) // 4 % 2).astype(np.float32)[..., None]
    roof = np.array([220, 140, 70], np.float32) * (1 - stripes) + np.array([170, 100, 60], np.float32) * stripes
    image[obj] = roof[obj]
    image += rng.normal(0, 15, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), obj


def box_mask(shape: tuple[int, int], box: Box) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[box.y0 : box.y1, box.x0 : box.x1] = True
    return m


def test_none_refiner_returns_the_inpaint_mask() -> None:
    image, obj = disc_scene()
    inpaint = dilate(obj, 5)
    out = NoneRefiner().refine(image, inpaint)
    assert out.dtype == bool and np.array_equal(out, inpaint)
    assert out is not inpaint
    from_box = NoneRefiner().refine(image, None, Box(10, 20, 30, 25))
    assert from_box.sum() == 20 * 5 and from_box[20:25, 10:30].all()


def test_grabcut_finds_a_known_object() -> None:
    image, obj = disc_scene()
    inpaint = box_mask(obj.shape, Box(18, 12, 84, 80))  # a generous box around the disc
    refiner = GrabCutRefiner()
    out = refiner.refine(image, inpaint)
    assert refiner.last_fallback is None
    assert refine_iou(out, obj) > 0.8
    assert refine_iou(inpaint, obj) < 0.3  # the inpaint mask alone is a poor label
    assert not (out & ~dilate(inpaint, refiner.margin)).any()
    # the same from a box with no mask, and reproducible
    again = GrabCutRefiner().refine(image, None, Box(18, 12, 84, 80))
    assert np.array_equal(out, again)


def test_grabcut_falls_back_when_there_is_no_background() -> None:
    image, _ = disc_scene(size=32)
    everything = np.ones((32, 32), bool)
    refiner = GrabCutRefiner()
    out = refiner.refine(image, everything)
    assert np.array_equal(out, everything)
    assert "no background" in refiner.last_fallback and refiner.fallbacks == 1


def test_coverage_check_reasons() -> None:
    inpaint = box_mask((20, 20), Box(0, 0, 10, 10))  # 100 pixels
    cover = {"min_cover": 0.2, "max_cover": 0.98}
    assert mask_coverage_check(box_mask((20, 20), Box(0, 0, 10, 5)), inpaint, **cover) is None  # 50 %
    assert mask_coverage_check(np.zeros((20, 20), bool), inpaint, **cover) == "empty: the refined mask has no pixels"
    small = box_mask((20, 20), Box(0, 0, 5, 1))  # 5 %
    assert mask_coverage_check(small, inpaint, **cover) == \
        "too little: refined mask covers 5 % of the inpaint mask (< 20 %)"
    assert mask_coverage_check(small, inpaint, min_cover=0.05, max_cover=0.98) is None
    assert mask_coverage_check(inpaint, inpaint, **cover) == \
        "too much: refined mask covers 100 % of the inpaint mask (> 98 %)"
    assert mask_coverage_check(inpaint, inpaint, min_cover=0.2, max_cover=1.0) is None
    with pytest.raises(PaintsegError, match="differ"):
        mask_coverage_check(np.ones((4, 4), bool), inpaint, **cover)
    with pytest.raises(PaintsegError, match="min"):
        mask_coverage_check(inpaint, inpaint, min_cover=0.9, max_cover=0.5)


def test_refine_iou_and_centroid_point() -> None:
    a = box_mask((10, 10), Box(0, 0, 4, 5))  # 20 px
    b = box_mask((10, 10), Box(2, 0, 6, 5))  # 20 px, 10 shared
    assert refine_iou(a, b) == pytest.approx(10 / 30)
    assert refine_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    ring = dilate(box_mask((41, 41), Box(20, 20, 21, 21)), 15) & ~dilate(box_mask((41, 41), Box(20, 20, 21, 21)), 10)
    x, y = mask_centroid_point(ring)  # the centroid (20, 20) lies in the hole
    assert ring[y, x] and 10 < np.hypot(x - 20, y - 20) <= 16


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    sam = build_sam_vit_tiny()
    assert sum(p.numel() for p in sam.parameters()) < 300_000
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path


@pytest.mark.parametrize("prompt", ["point", "box", "both"])
def test_sam_refiner_loads_a_checkpoint_and_stays_inside_the_dilated_mask(tiny_checkpoint: Path, prompt: str) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    inpaint = box_mask((64, 64), Box(14, 10, 44, 40))
    refiner = SamRefiner(tiny_checkpoint, "vit_tiny", prompt=prompt, dilate=4, device="cpu")
    out = refiner.refine(image, inpaint)
    assert out.shape == (64, 64) and out.dtype == bool and out.any()
    assert not (out & ~dilate(inpaint, 4)).any()
    assert np.array_equal(out, refiner.refine(image, inpaint))
    again = SamRefiner(tiny_checkpoint, "vit_tiny", prompt=prompt, dilate=4, device="cpu")
    assert np.array_equal(out, again.refine(image, inpaint))  # the weights came from the file, not a fresh init
    assert refiner.refine(image, None, Box(14, 10, 44, 40)).shape == (64, 64)


def test_sam_checkpoint_errors_name_the_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(PaintsegError) as err:
        SamRefiner(tiny_checkpoint, "vit_b")
    msg = str(err.value)
    assert str(tiny_checkpoint) in msg and "looks like a vit_tiny checkpoint" in msg and "vit_l" in msg
    missing = tmp_path / "nope.pth"
    with pytest.raises(PaintsegError, match="nope.pth: SAM checkpoint not found"):
        SamRefiner(missing, "vit_tiny")
    with pytest.raises(PaintsegError, match="unknown SAM model type 'vit_x'.*vit_tiny"):
        SamRefiner(tiny_checkpoint, "vit_x")
    with pytest.raises(PaintsegError, match="unknown SAM prompt 'mask'; use one of point, box, both"):
        SamRefiner(tiny_checkpoint, "vit_tiny", prompt="mask")
    # same encoder, different decoder: the keys and shapes that differ are named
    state = torch.load(tiny_checkpoint)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    del state["mask_decoder.mask_tokens.weight"]
    odd = tmp_path / "odd.pth"
    torch.save(state, odd)
    expected = (r"odd.pth: does not fit SAM model type 'vit_tiny': 1 missing keys: mask_decoder.mask_tokens.weight; "
                r"1 shape mismatches.*\(1, 8\) vs \(1, 32\)")
    with pytest.raises(PaintsegError, match=expected):
        SamRefiner(odd, "vit_tiny")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(PaintsegError, match="junk.pth: not a readable PyTorch checkpoint"):
        SamRefiner(junk, "vit_tiny")


def _sam(checkpoint, model_type: str, prompt: str = "point") -> CurateConfig:
    return CurateConfig(refine="sam", sam_checkpoint=str(checkpoint), sam_model_type=model_type, sam_prompt=prompt)


def test_build_refiner(tiny_checkpoint: Path) -> None:
    assert build_refiner(CurateConfig(refine="none")).name == "none"
    assert isinstance(build_refiner(CurateConfig(refine="grabcut")), GrabCutRefiner)
    sam = build_refiner(_sam(tiny_checkpoint, "vit_tiny", "box"))
    assert isinstance(sam, SamRefiner) and sam.prompt == "box"
    with pytest.raises(ValidationError, match="refine: sam needs sam_checkpoint"):
        CurateConfig(refine="sam")
    with pytest.raises(ValidationError, match="refine\n  Input should be 'none', 'grabcut' or 'sam'"):
        CurateConfig(refine="magic")
    assert {"vit_h", "vit_l", "vit_b", "vit_tiny"} <= set(SAM_MODEL_TYPES)
    assert sam_builder("vit_tiny") is build_sam_vit_tiny and callable(sam_builder("vit_b"))
    with pytest.raises(PaintsegError, match="unknown SAM model type 'vit_x'"):
        sam_builder("vit_x")


def test_sam_without_its_extra_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With segment_anything missing, asking for SAM is one line naming the extra; the other refiners still work."""
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # makes `import segment_anything` fail
    with pytest.raises(MissingExtraError, match=r'--refine sam needs the package segment-anything.*'
                                                r'pip install "paintseg\[sam\]"'):
        build_refiner(_sam(tmp_path / "sam.pth", "vit_b"))
    image, obj = disc_scene(size=48)
    assert build_refiner(CurateConfig(refine="grabcut")).refine(image, obj).shape == obj.shape


def test_refine_input_errors() -> None:
    image, obj = disc_scene(size=32)
    with pytest.raises(PaintsegError, match="inpaint mask is empty"):
        NoneRefiner().refine(image, np.zeros((32, 32), bool))
    with pytest.raises(PaintsegError, match="differ in size"):
        GrabCutRefiner().refine(image, np.ones((16, 16), bool))
    with pytest.raises(PaintsegError, match="8-bit RGB"):
        NoneRefiner().refine(image[..., 0], obj)
    with pytest.raises(PaintsegError, match="neither"):
        NoneRefiner().refine(image, None)


def test_mobile_sam_vit_t_loads_its_real_architecture_and_refines(tmp_path: Path,
                                                                  tiny_checkpoint: Path) -> None:
    """MobileSAM (vit_t: TinyViT encoder, 1024 px input) with random weights saved as its checkpoint file."""
    mobile_sam = pytest.importorskip("mobile_sam")
    torch.manual_seed(0)
    sam = mobile_sam.sam_model_registry["vit_t"](checkpoint=None)
    path = tmp_path / "mobile_sam.pt"
    torch.save(sam.state_dict(), path)
    refiner = build_refiner(_sam(path, "vit_t", "point"))
    assert type(refiner.predictor).__module__.startswith("mobile_sam")
    image, obj = disc_scene()
    inpaint = box_mask(obj.shape, Box(24, 18, 76, 70))
    out = refiner.refine(image, inpaint)
    assert out.shape == obj.shape and out.dtype == bool and not (out & ~dilate(inpaint, 8)).any()
    with pytest.raises(PaintsegError, match="looks like a MobileSAM .*--sam-model-type vit_t"):
        build_refiner(_sam(path, "vit_b"))
    with pytest.raises(PaintsegError, match="not MobileSAM.*--sam-model-type vit_b, vit_l or vit_h"):
        build_refiner(_sam(tiny_checkpoint, "vit_t"))


def test_sam2_loads_a_released_style_checkpoint_and_refines(tmp_path: Path) -> None:
    """SAM 2.1 hiera-tiny with random weights, saved as the released files are ({"model": state_dict})."""
    pytest.importorskip("sam2")
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    refiner = build_refiner(_sam(path, "sam2.1_hiera_t", "both"))
    image, obj = disc_scene()
    inpaint = box_mask(obj.shape, Box(24, 18, 76, 70))
    out = refiner.refine(image, inpaint)
    assert out.shape == obj.shape and out.dtype == bool and not (out & ~dilate(inpaint, 8)).any()
    with pytest.raises(PaintsegError, match="not a sam2.1_hiera_s checkpoint.*sam2.1_hiera_t"):
        build_refiner(_sam(path, "sam2.1_hiera_s"))
