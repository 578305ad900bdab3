"""Our own exemplar-conditioned inpainting diffusion model (Paint-by-Example style, pixel space, no pretrained weights).

- :mod:`.model`: :class:`PaintModel` (diffusers UNet2DConditionModel + :class:`ReferenceEncoder` + null embedding),
  size presets :data:`SIZES`, :func:`save_generator` / :func:`load_generator` (GEN folders);
- :mod:`.data`: :class:`PairSampler`, self-supervised training pairs cut from an episode's labelled scenes;
- :mod:`.train`: :func:`train_generator`, the training loop (EMA, checkpoints, resume, sample grids);
- :mod:`.sample`: :func:`paint` (DDIM / DPM-Solver++ with classifier-free guidance), :func:`to_tensor`,
  :func:`to_uint8`.
"""

from .data import PairBatch, PairSampler, augment_reference
from .model import (SIZES, GeneratorError, ModelSpec, PaintModel, ReferenceEncoder, build_generator, load_generator,
                    save_generator, spec_for)
from .sample import SCHEDULERS, make_scheduler, paint, to_tensor, to_uint8
from .train import GeneratorTrainError, train_generator

__all__ = ["SIZES", "SCHEDULERS", "GeneratorError", "GeneratorTrainError", "ModelSpec", "PairBatch", "PairSampler",
           "PaintModel", "ReferenceEncoder", "augment_reference", "build_generator", "load_generator",
           "make_scheduler", "paint", "save_generator", "spec_for", "to_tensor", "to_uint8", "train_generator"]
