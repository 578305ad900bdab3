"""Refine: find the painted object's own pixels inside the inpaint mask.

The inpaint mask says where the generator was *allowed* to paint, not the outline of what it painted. A refiner
looks at the painted window and returns the object's pixels:

- ``none``: the inpaint mask itself (no refinement; the baseline).
- ``grabcut``: OpenCV GrabCut initialised from the inpaint mask - inside it *probable foreground*, a thin band of
  ``margin`` pixels just outside it *probable background*, the rest *sure background*. When GrabCut fails (it
  throws, or finds no foreground) the refiner returns the inpaint mask and records why in ``last_fallback``.
- ``sam``: segment_anything from a checkpoint; prompts are a positive point at the inpaint mask's centroid (as in
  the paper), the mask's box, or both; of SAM's three masks the one with the highest predicted IoU is kept, and
  only inside the inpaint mask dilated by ``dilate`` pixels.

Every refiner also takes a ``box`` (half-open ``x0, y0, x1, y1`` pixels); with no inpaint mask the box is the
mask. :func:`mask_coverage_check` then rejects candidates whose refined mask covers too little or too much of
the inpaint mask.
"""

from __future__ import annotations

import pickle

import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import cv2
import numpy as np
import torch

from paintseg.config import SAM_MODEL_TYPES, CurateConfig
from paintseg.errors import PaintsegError
from paintseg.extras import require
from paintseg.place.masks import Box, mask_box

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

log = logging.getLogger(__name__)

SAM_PROMPTS = ("point", "box", "both")


class Refiner(Protocol):
    """Anything with a ``name`` and a ``refine`` that turns (painted window, inpaint mask) into the object mask."""

    name: str

    def refine(self, image: np.ndarray, inpaint_mask: np.ndarray | None,
               box: Box | None = None) -> np.ndarray: ...


def _inputs(image: np.ndarray, inpaint_mask: np.ndarray | None, box: Box | None) -> tuple[np.ndarray, Box]:
    """Validate a refine call; return the inpaint mask (the box filled in when no mask is given) and the box."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise PaintsegError(f"refine: the image must be 8-bit RGB H×W×3 (got {image.dtype}, shape {image.shape})")
    h, w = image.shape[:2]
    if box is not None:
        box = Box(*map(int, box)).clip(h, w)
        if box.width <= 0 or box.height <= 0:
            raise PaintsegError(f"refine: box {tuple(box)} is empty or outside the {w}x{h} image")
    if inpaint_mask is None:
        if box is None:
            raise PaintsegError("refine: give an inpaint mask or a box (neither was given)")
        mask = np.zeros((h, w), bool)
        mask[box.y0 : box.y1, box.x0 : box.x1] = True
        return mask, box
    mask = np.asarray(inpaint_mask).astype(bool)
    if mask.shape != (h, w):
        raise PaintsegError(f"refine: inpaint mask {mask.shape} and image {(h, w)} differ in size")
    if not mask.any():
        raise PaintsegError("refine: the inpaint mask is empty; there is nothing to refine")
    return mask, mask_box(mask) if box is None else box


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask grown by ``pixels`` (a disc), same shape; ``pixels <= 0`` returns a copy."""
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


class NoneRefiner:
    """No refinement: the object is the whole inpaint mask (or the box, when only a box is given)."""

    name = "none"

    def refine(self, image: np.ndarray, inpaint_mask: np.ndarray | None, box: Box | None = None) -> np.ndarray:
        return _inputs(image, inpaint_mask, box)[0].copy()


class GrabCutRefiner:
    """OpenCV GrabCut seeded by the inpaint mask.

    Inside the mask is probable foreground, a band of ``margin`` pixels just outside it probable background (so
    the object may reach a little past the mask, and the background model sees the surroundings first), the rest
    sure background; a given box is used only when there is no mask. The result never leaves mask + band.
    ``last_fallback`` is None after a successful call, else the reason the inpaint mask was returned instead;
    ``fallbacks`` counts such calls. OpenCV's RNG is seeded with ``seed`` before each call, so results are
    reproducible."""

    name = "grabcut"

    def __init__(self, iterations: int = 5, margin: int = 6, seed: int = 0):
        if iterations < 1:
            raise PaintsegError(f"grabcut: iterations must be at least 1 (got {iterations})")
        self.iterations = iterations
        self.margin = max(int(margin), 1)
        self.seed = seed
        self.last_fallback: str | None = None
        self.fallbacks = 0

    def _fallback(self, mask: np.ndarray, reason: str) -> np.ndarray:
        self.last_fallback = reason
        self.fallbacks += 1
        log.info("grabcut fell back to the inpaint mask: %s", reason)
        return mask.copy()

    def refine(self, image: np.ndarray, inpaint_mask: np.ndarray | None, box: Box | None = None) -> np.ndarray:
        mask, _ = _inputs(image, inpaint_mask, box)
        self.last_fallback = None
        band = dilate(mask, self.margin)
        if band.all():
            return self._fallback(mask, "the inpaint mask and its margin cover the whole image; "
                                        "GrabCut has no background to learn from")
        seeds = np.full(mask.shape, cv2.GC_BGD, np.uint8)
        seeds[band] = cv2.GC_PR_BGD
        seeds[mask] = cv2.GC_PR_FGD
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(np.ascontiguousarray(image[..., ::-1]), seeds, None, bgd, fgd, self.iterations,
                        cv2.GC_INIT_WITH_MASK)
        except cv2.error as e:
            return self._fallback(mask, f"cv2.grabCut failed: {str(e).strip().splitlines()[-1]}")
        out = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        if not out.any():
            return self._fallback(mask, "GrabCut found no foreground")
        return out


# --- SAM ----------------------------------------------------------------------------------------------------


def _segment_anything(feature: str = "--refine sam"):
    """segment_anything, imported only when SAM is used (it is the ``sam`` extra, not a core dependency)."""
    return require("segment_anything", package="segment-anything", extra="sam", feature=feature)


def build_sam_vit_tiny(checkpoint: str | Path | None = None) -> Sam:
    """A tiny SAM (about 0.2 M parameters, 256 px input) built from segment_anything's own classes.

    It exists for tests and smoke runs (a checkpoint can be made in a second without network), never for quality:
    randomly initialised or briefly trained, its masks mean nothing. Mirrors ``segment_anything.build_sam._build_sam``
    with small numbers, and loads a checkpoint the same way (``torch.load`` + ``load_state_dict``)."""
    _segment_anything()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    prompt_embed_dim, image_size, patch_size = 32, 256, 16
    embedding_size = image_size // patch_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=2, embed_dim=64, img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2, patch_size=patch_size,
            qkv_bias=True, use_rel_pos=True, global_attn_indexes=(1,), window_size=4, out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim, image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=64, num_heads=2),
            transformer_dim=prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    if checkpoint is not None:
        with open(checkpoint, "rb") as f:
            state_dict = torch.load(f, map_location="cpu")
        sam.load_state_dict(state_dict)
    return sam


# segment_anything's model types ("default" = "vit_h"), MobileSAM's vit_t, SAM 2.1's and our tiny test model.
SAM2_MODEL_TYPES = tuple(t for t in SAM_MODEL_TYPES if t.startswith("sam2"))


def sam2_predictor(checkpoint: str | Path, model_type: str, device: torch.device):
    """SAM 2.1's image predictor (the ``sam2`` package) with ``checkpoint`` (a ``{"model": state_dict}`` file as
    released, e.g. sam2.1_hiera_large.pt); errors name the file and the fix."""
    require("sam2", package="sam2", extra=None, feature=f"--sam-model-type {model_type} (install it with "
            f"SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2)")
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    path = Path(checkpoint)
    if not path.is_file():
        raise PaintsegError(f"{path}: SAM 2 checkpoint not found; download the {model_type} weights from "
                            f"https://github.com/facebookresearch/sam2#model-description")
    try:
        model = build_sam2(f"configs/sam2.1/{model_type}.yaml", str(path), device=str(device))
    except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise PaintsegError(f"{path}: not a {model_type} checkpoint ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]}); pass the matching --sam-model-type (one of "
                            f"{', '.join(SAM2_MODEL_TYPES)})") from None
    return SAM2ImagePredictor(model)


def _mobile_sam():
    """MobileSAM (TinyViT image encoder + SAM's decoder; the ``mobilesam-mirror`` package, Apache-2.0)."""
    import warnings

    with warnings.catch_warnings():  # its timm imports and registrations warn on every import
        warnings.simplefilter("ignore")
        return require("mobile_sam", package="mobilesam-mirror", extra="sam", feature="--sam-model-type vit_t")


def sam_library(model_type: str):
    """The package whose predictor and model classes serve ``model_type``: mobile_sam for vit_t, else
    segment_anything."""
    return _mobile_sam() if model_type == "vit_t" else _segment_anything()


def sam_builder(model_type: str) -> Callable[..., Sam]:
    """The function that builds a SAM of ``model_type`` (segment_anything's or MobileSAM's registry, or our tiny
    test model)."""
    if model_type not in SAM_MODEL_TYPES:
        raise PaintsegError(f"unknown SAM model type {model_type!r}; use one of {', '.join(SAM_MODEL_TYPES)}")
    if model_type == "vit_tiny":
        return build_sam_vit_tiny
    if model_type in SAM2_MODEL_TYPES:
        raise PaintsegError(f"{model_type} is a SAM 2 model: sam2_predictor builds it (the sam2 package's build_sam2)")
    return sam_library(model_type).sam_model_registry[model_type]

# What each model type's image encoder looks like in a state dict: (patch-embedding width, number of blocks).
_SAM_SHAPES = {"vit_h": (1280, 32), "vit_l": (1024, 24), "vit_b": (768, 12), "vit_tiny": (64, 2), "vit_t": None}


def _encoder_shape(state: dict[str, Any]) -> tuple[int, int] | None:
    weight = state.get("image_encoder.patch_embed.proj.weight")
    blocks = {k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")}
    if not isinstance(weight, torch.Tensor) or not blocks:
        return None
    return int(weight.shape[0]), len(blocks)


def _mismatch(model_state: dict[str, torch.Tensor], state: dict[str, Any], limit: int = 3) -> str:
    """The keys and shapes that differ between a model and a checkpoint, briefly."""
    missing = [k for k in model_state if k not in state]
    extra = [k for k in state if k not in model_state]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in model_state.items()
              if isinstance(state.get(k), torch.Tensor) and state[k].shape != v.shape]
    parts = []
    for what, items in (("missing keys", missing), ("unexpected keys", extra), ("shape mismatches (file vs model)",
                                                                               shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {what}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or "the state dict does not fit the model"


def load_sam(checkpoint: str | Path, model_type: str = "vit_b") -> Sam:
    """Build a SAM of ``model_type`` and load ``checkpoint`` into it, with errors that name the file and the fix."""
    build = sam_builder(model_type)
    path = Path(checkpoint)
    if not path.is_file():
        raise PaintsegError(f"{path}: SAM checkpoint not found; download one (e.g. sam_vit_b_01ec64.pth) from "
                            f"https://github.com/facebookresearch/segment-anything#model-checkpoints and pass its path")
    try:
        with open(path, "rb") as f:
            state = torch.load(f, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        raise PaintsegError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and not any(str(k).startswith("image_encoder.") for k in state):
        state = state.get("model", state.get("state_dict", state))  # checkpoints that wrap the state dict
    if not isinstance(state, dict):
        raise PaintsegError(f"{path}: holds a {type(state).__name__}, not a SAM state dict")
    want = "vit_h" if model_type == "default" else model_type
    tiny_vit = any(str(k).startswith("image_encoder.patch_embed.seq.") for k in state)  # MobileSAM's TinyViT
    if tiny_vit != (want == "vit_t"):
        looks = "a MobileSAM (TinyViT) checkpoint" if tiny_vit else "a ViT SAM checkpoint, not MobileSAM"
        raise PaintsegError(f"{path}: this looks like {looks}, but the model type is {model_type!r}; pass "
                            f"--sam-model-type {'vit_t' if tiny_vit else 'vit_b, vit_l or vit_h'}")
    found = _encoder_shape(state)
    if found is not None and _SAM_SHAPES[want] is not None and found != _SAM_SHAPES[want]:
        guess = [t for t, shape in _SAM_SHAPES.items() if shape == found]
        looks = f"this looks like a {guess[0]} checkpoint" if guess else "this is no SAM model type we know"
        raise PaintsegError(f"{path}: {looks} (image encoder width {found[0]}, {found[1]} blocks), but model type "
                            f"{model_type!r} expects width {_SAM_SHAPES[want][0]}, {_SAM_SHAPES[want][1]} blocks; "
                            f"pass the matching model type (one of {', '.join(SAM_MODEL_TYPES)})")
    sam = build(checkpoint=None)
    try:
        sam.load_state_dict(state)
    except RuntimeError as e:
        raise PaintsegError(f"{path}: does not fit SAM model type {model_type!r}: {_mismatch(sam.state_dict(), state)}"
                            f"; pass the matching model type (one of {', '.join(SAM_MODEL_TYPES)})") from e
    return sam.eval()


def mask_centroid_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask's centroid, or of the mask pixel nearest to it when the centroid is outside the mask."""
    ys, xs = np.nonzero(mask)
    cx, cy = int(round(xs.mean())), int(round(ys.mean()))
    if mask[cy, cx]:
        return cx, cy
    i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return int(xs[i]), int(ys[i])


class SamRefiner:
    """segment_anything's predictor prompted from the inpaint mask; the result kept inside the mask + ``dilate`` px.

    ``prompt`` is ``point`` (a positive point at the mask's centroid), ``box`` (the given box, else the mask's
    box) or ``both``. The checkpoint is loaded when the refiner is made, so a bad path or model type fails fast."""

    name = "sam"

    def __init__(self, checkpoint: str | Path, model_type: str = "vit_b", prompt: str = "point", dilate: int = 8,
                 device: str | torch.device | None = None):
        if prompt not in SAM_PROMPTS:
            raise PaintsegError(f"unknown SAM prompt {prompt!r}; use one of {', '.join(SAM_PROMPTS)}")
        self.checkpoint = Path(checkpoint)
        self.model_type = model_type
        self.prompt = prompt
        self.dilate = int(dilate)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if model_type in SAM2_MODEL_TYPES:
            self.predictor = sam2_predictor(checkpoint, model_type, self.device)
        else:
            self.predictor = sam_library(model_type).SamPredictor(load_sam(checkpoint, model_type).to(self.device))

    def refine(self, image: np.ndarray, inpaint_mask: np.ndarray | None, box: Box | None = None) -> np.ndarray:
        mask, box = _inputs(image, inpaint_mask, box)
        points = labels = box_xyxy = None
        if self.prompt in ("point", "both"):
            x, y = mask_centroid_point(mask)
            points, labels = np.array([[x + 0.5, y + 0.5]], np.float32), np.array([1])  # pixel centres
        if self.prompt in ("box", "both"):
            box_xyxy = np.array(box, np.float32)  # half-open pixel box = continuous xyxy
        if self.model_type in SAM2_MODEL_TYPES:
            self.predictor.set_image(image)  # SAM 2 takes RGB as it is
        else:
            self.predictor.set_image(image, image_format="RGB")
        masks, scores, _ = self.predictor.predict(point_coords=points, point_labels=labels, box=box_xyxy,
                                                  multimask_output=True)
        best = np.asarray(masks[int(np.argmax(scores))], bool)
        return best & dilate(mask, self.dilate)


# --- checks and the factory ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}".rstrip("0").rstrip(".")


def mask_coverage_check(refined: np.ndarray, inpaint: np.ndarray, min_cover: float,
                        max_cover: float) -> str | None:
    """None when the refined mask is plausible, else why not.

    Coverage = |refined ∧ inpaint| / |inpaint| (the bounds: :class:`~paintseg.config.CurateConfig`'s ``min_cover``
    and ``max_cover``). Below ``min_cover`` the refiner found only a fragment, or the generator painted next to
    nothing; above ``max_cover`` (e.g. 98 %) the refiner found no outline at all (a
    GrabCut fallback, or SAM taking the whole region) - painted objects rarely fill a rectangle or blob mask
    exactly, while a silhouette-shaped object that does still loses a few edge pixels to refinement. An empty
    refined mask is always rejected. The ``none`` refiner returns the inpaint mask (coverage 100 %), so callers
    skip this check for it. Reasons start with "empty", "too little" or "too much", for counting."""
    if not 0 <= min_cover <= max_cover <= 1:
        raise PaintsegError(f"coverage thresholds must satisfy 0 <= min ({min_cover}) <= max ({max_cover}) <= 1")
    refined, inpaint = np.asarray(refined, bool), np.asarray(inpaint, bool)
    if refined.shape != inpaint.shape:
        raise PaintsegError(f"coverage check: refined mask {refined.shape} and inpaint mask {inpaint.shape} differ")
    if not refined.any():
        return "empty: the refined mask has no pixels"
    if not inpaint.any():
        return "empty: the inpaint mask has no pixels"
    cover = float((refined & inpaint).sum()) / float(inpaint.sum())
    if cover < min_cover:
        return f"too little: refined mask covers {_pct(cover)} % of the inpaint mask (< {_pct(min_cover)} %)"
    if cover > max_cover:
        return f"too much: refined mask covers {_pct(cover)} % of the inpaint mask (> {_pct(max_cover)} %)"
    return None


def refine_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise PaintsegError(f"refine_iou: masks differ in size ({pred.shape} vs {gt.shape})")
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def build_refiner(config: CurateConfig) -> Refiner:
    """The refiner ``config.refine`` names (none, grabcut or sam), with its SAM checkpoint, model type and prompt."""
    if config.refine == "none":
        return NoneRefiner()
    if config.refine == "grabcut":
        return GrabCutRefiner()
    return SamRefiner(config.sam_checkpoint, config.sam_model_type, config.sam_prompt)
