"""Pretrained generators: diffusers pipeline folders (or hub ids) painting through the same path as ours.

A generator given as a folder holding ``model_index.json`` (or a hub id such as ``Fantasy-Studio/Paint-by-Example``)
is a diffusers pipeline, told apart by the ``_class_name`` its index names:

    PaintByExamplePipeline           exemplar inpainting: the reference crop conditions the painting (Paint-by-Example,
                                     Yang et al. 2023; a converted RS-Paint checkpoint, `paintseg convert rs-paint`)
    StableDiffusionInpaintPipeline   text-prompted inpainting, one prompt per novel class
                                     (default ``"a top-down satellite image of a {class}"``)

Each placement's context window is resized to ``size`` (512 for the released models), painted K times by the
pipeline's own scheduler and sampling loop (seeded per placement and candidate, so batching and resuming paint the
same pixels), resized back to the window's native size and pasted over the window inside the inpaint mask only.
The object mask is the inpaint mask until curation refines it, as for our own generator.

Loading pitfall (diffusers 0.42): the hub's Paint-by-Example ``model_index.json`` names its image encoder
``["paint_by_example", "PaintByExampleImageEncoder"]``, a library diffusers refuses to import, so plain
``PaintByExamplePipeline.from_pretrained`` fails; :func:`load_pipeline` loads the encoder from
``diffusers.pipelines.deprecated.paint_by_example.image_encoder`` itself and passes it in.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from paintseg.config import HUB_ID, PaintConfig
from paintseg.errors import PaintsegError
from paintseg.extras import require

from .candidates import BackendOptions, Candidate, WindowJob
from .diffusion.backend import square_reference
from .diffusion.model import GeneratorError

INDEX = "model_index.json"
PIPELINES = {"PaintByExamplePipeline": "paint-by-example", "StableDiffusionInpaintPipeline": "sd-inpaint"}
DEFAULT_PROMPT = "a top-down satellite image of a {class}"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SCHEDULERS = ("default", "ddim", "pndm", "dpm++", "dpm++sde")  # default: the scheduler saved with the pipeline


def read_index(source: str | Path) -> dict | None:
    """The ``model_index.json`` of a pipeline folder or hub id; None when ``source`` is a local path without one
    (a paintseg GEN or HARM folder). A hub id is asked for its index (this needs the network)."""
    path = Path(source)
    if path.exists():
        file = path / INDEX if path.is_dir() else None
        if file is None or not file.is_file():
            return None
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise GeneratorError(f"{file}: not a readable diffusers model index ({e}); re-download the pipeline "
                                 f"folder") from None
    if not HUB_ID.fullmatch(str(source)):
        return None
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.load_config(str(source))
    except Exception as e:  # noqa: BLE001 - hub errors come in many classes; all mean the same to the user
        raise GeneratorError(f"{source}: not a local folder and the hub cannot be asked for it ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); download the pipeline (e.g. `huggingface-cli "
                             f"download {source} --local-dir DIR`) and pass --generator DIR") from None


def pipeline_kind(source: str | Path) -> str | None:
    """'paint-by-example' or 'sd-inpaint' when ``source`` is such a diffusers pipeline, else None."""
    return _kind(read_index(source), source)


def _kind(index: dict | None, source: str | Path) -> str | None:
    if index is None:
        return None
    name = index.get("_class_name")
    if name in PIPELINES:
        return PIPELINES[name]
    if name == "PaintsegGenerator":
        return None  # our own generator in the diffusers folder layout: generate.diffusion loads it
    raise GeneratorError(f"{source}: a {name} pipeline cannot paint placements; give a PaintByExamplePipeline, a "
                         f"StableDiffusionInpaintPipeline or a paintseg generator folder")


def resolve_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: fp16 on a GPU, fp32 elsewhere. Half precision on a CPU is refused (slow or unsupported there)."""
    if dtype == "auto":
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise GeneratorError(f"dtype {dtype!r}: use auto, {', '.join(DTYPES)}")
    if dtype != "fp32" and not str(device).startswith(("cuda", "mps")):
        raise GeneratorError(f"dtype {dtype} on {device}: half precision is for GPUs (bf16 runs ~25x slower than fp32 "
                             f"on a CPU); use --dtype fp32 or auto")
    return DTYPES[dtype]


def load_pipeline(source: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                  scheduler: str | None = None):
    """The diffusers pipeline at ``source`` on ``device`` in ``dtype``, progress bars off, with ``scheduler``
    swapped in from the saved scheduler's config (None or ``default`` keeps it)."""
    require("transformers", package="transformers", extra="generators", feature="pretrained diffusers generators")
    import diffusers

    index = read_index(source)
    kind = _kind(index, source)
    if kind is None:
        raise GeneratorError(f"{source}: no {INDEX} of a Paint-by-Example or SD inpainting pipeline here")
    scheduler = scheduler or "default"
    if scheduler not in SCHEDULERS:
        raise GeneratorError(f"scheduler {scheduler!r} for a pretrained pipeline: use one of {', '.join(SCHEDULERS)}")
    try:
        if kind == "paint-by-example":
            from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

            from transformers import CLIPImageProcessor

            # every component by its own class, as diffusers refuses the index's "paint_by_example" library
            src = str(source)
            pipe = diffusers.PaintByExamplePipeline(
                vae=diffusers.AutoencoderKL.from_pretrained(src, subfolder="vae", dtype=dtype),
                unet=diffusers.UNet2DConditionModel.from_pretrained(src, subfolder="unet", dtype=dtype),
                image_encoder=PaintByExampleImageEncoder.from_pretrained(src, subfolder="image_encoder", dtype=dtype),
                scheduler=getattr(diffusers, index["scheduler"][1]).from_pretrained(src, subfolder="scheduler"),
                feature_extractor=CLIPImageProcessor.from_pretrained(src, subfolder="feature_extractor"),
                safety_checker=None, requires_safety_checker=False)
        else:
            pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(
                str(source), safety_checker=None, requires_safety_checker=False, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        raise GeneratorError(f"{source}: the {kind} pipeline does not load ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}); check that every sub-folder of {INDEX} is complete"
                             ) from None
    if scheduler != "default":
        cls, kwargs = {"ddim": (diffusers.DDIMScheduler, {}), "pndm": (diffusers.PNDMScheduler, {}),
                       "dpm++": (diffusers.DPMSolverMultistepScheduler, {}),
                       "dpm++sde": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}),
                       }[scheduler]
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def candidate_seed(placement_seed: int, k: int, seed: int) -> int:
    """The sampling seed of candidate ``k`` of a placement: independent of the batch it is painted in."""
    return (int(placement_seed) * 1_000_003 + k * 7919 + (seed << 20)) % (2**63)


class PretrainedBackend:
    """Paint with a diffusers Paint-by-Example or SD inpainting pipeline (see the module docstring): ``source`` is
    a pipeline folder, a hub id, or a pipeline object already built."""

    def __init__(self, source, paint: PaintConfig | None = None, *, seed: int = 0,
                 prompts: dict[int, str] | None = None, class_names: dict[int, str] | None = None):
        paint = paint or PaintConfig()
        steps, guidance, scheduler, device, dtype, size = (paint.steps, paint.guidance, paint.scheduler, paint.device,
                                                           paint.dtype, paint.window)
        if size % 64:
            raise GeneratorError(f"window size {size}: use a multiple of 64 (512 for the released models)")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if isinstance(source, (str, Path)):
            self.pipe = load_pipeline(source, self.device, self.dtype, scheduler)
        elif type(source).__name__ in PIPELINES:  # a pipeline built in Python (benchmarks/pretrained_speed.py)
            self.pipe = source.to(self.device, self.dtype)
            self.pipe.set_progress_bar_config(disable=True)
            source = type(source).__name__
        else:
            raise GeneratorError(f"a {type(source).__name__} cannot paint placements; give a "
                                 f"PaintByExamplePipeline or a StableDiffusionInpaintPipeline")
        self.kind = self.name = PIPELINES[type(self.pipe).__name__]
        self.source, self.steps, self.guidance, self.seed, self.size = str(source), steps, guidance, seed, size
        self.scheduler = scheduler
        self.prompts, self.class_names = dict(prompts or {}), dict(class_names or {})

    @classmethod
    def from_config(cls, source: str, paint: PaintConfig, options: BackendOptions) -> "PretrainedBackend":
        """A pipeline paints from noise only (``paint.strength`` 1); ``paint.prompts`` are keyed by novel class
        name (``options.class_names``)."""
        if paint.strength != 1.0:
            raise PaintsegError(f"strength {paint.strength}: a pretrained pipeline paints from noise only; pass "
                                f"--strength 1 (generation.strength: 1.0 in a run config). Painting from the "
                                f"copy-paste composite (the default, 0.3) is for paintseg's generators")
        names = options.class_names
        unknown = sorted(set(paint.prompts) - set(names.values()))
        if unknown:
            raise PaintsegError(f"prompts for {', '.join(map(repr, unknown))}: not a novel class of this episode "
                                f"({', '.join(names.values()) or 'none given'}); key prompts by novel class name")
        prompts = {cid: paint.prompts[name] for cid, name in names.items() if name in paint.prompts}
        return cls(source, paint, seed=options.seed, prompts=prompts, class_names=names)

    def prompt(self, class_id: int) -> str:
        """The text prompt of a class (sd-inpaint): its own from ``prompts``, else the default with its name."""
        if class_id in self.prompts:
            return self.prompts[class_id]
        return DEFAULT_PROMPT.replace("{class}", self.class_names.get(class_id, f"class {class_id}"))

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        if not jobs:
            return []
        s = self.size
        windows, masks, refs, gens, prompts = [], [], [], [], []
        for job in jobs:  # every candidate is its own batch row (diffusers mis-pairs lists × num_images_per_prompt)
            window = Image.fromarray(cv2.resize(job.window_image[..., :3], (s, s), interpolation=cv2.INTER_AREA
                                                if job.window_image.shape[0] > s else cv2.INTER_CUBIC))
            area = cv2.resize(job.mask.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA)
            mask = Image.fromarray(((area > 0) * 255).astype(np.uint8))
            ref = Image.fromarray(square_reference(job.reference.image, job.reference.mask)[0])
            for k in range(candidates):
                windows.append(window)
                masks.append(mask)
                refs.append(ref)
                prompts.append(self.prompt(job.placement.class_id))
                gens.append(torch.Generator(device=self.device).manual_seed(
                    candidate_seed(job.placement.seed, k, self.seed)))
        common = dict(image=windows, mask_image=masks, height=s, width=s, num_inference_steps=self.steps,
                      guidance_scale=self.guidance, generator=gens, output_type="np")
        with torch.inference_mode():
            if self.kind == "paint-by-example":
                painted = self.pipe(example_image=refs, **common).images
            else:
                painted = self.pipe(prompt=prompts, **common).images
        out = []
        for i, job in enumerate(jobs):
            h, w = job.mask.shape
            cands = []
            for k in range(candidates):
                image = np.clip(np.round(np.asarray(painted[i * candidates + k]) * 255), 0, 255).astype(np.uint8)
                native = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC if h > s else cv2.INTER_AREA)
                result = job.window_image[..., :3].copy()
                result[job.mask] = native[job.mask]
                cands.append(Candidate(image=result, paint_mask=job.mask.copy(), object_mask=job.mask.copy()))
            out.append(cands)
        return out

    def settings(self) -> dict:
        """What a synthetic set records about this backend (a change makes `generate` refuse to resume)."""
        out = {"generator": self.source, "pipeline": self.kind, "steps": self.steps, "guidance": self.guidance,
               "scheduler": self.scheduler,
               "size": self.size, "dtype": str(self.dtype).removeprefix("torch.")}
        if self.kind == "sd-inpaint":
            out["prompts"] = {str(c): self.prompt(c) for c in sorted(set(self.prompts) | set(self.class_names))}
        return out
