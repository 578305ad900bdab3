"""Configs as pydantic models: YAML in, validated with messages that say what to pass, echoed into run folders.

``load_yaml(path, TrainConfig)`` reads and validates a YAML file; ``dump_yaml(config, path)`` writes one (to a
temporary name, then renamed, so a killed process never leaves half a file). The rules every config follows live in
:mod:`.core`; the configs of training in :mod:`.training`, of placement, painting and curation in :mod:`.synthetic`,
of ``paintseg split`` in :mod:`.splitting`; files are read by :mod:`.loading`.
"""

from .core import (TITLES, ConfigError, added_later, dump_yaml, guard_settings, later, recipe, stage_part, title,
                   validate)
from .training import (GENERATOR_MASK_KINDS, GENERATOR_SIZES, HUB_ID, MIN_CROP, SEGMENTATION_ARCHS, GeneratorConfig,
                       HarmoniserConfig, RgbBands, TrainConfig, encoder_problem)
from .synthetic import (APPEARANCE_FEATURES, ENCODER_KINDS, ENCODER_SPECS, PRIORS, REFINERS, SAM_MODEL_TYPES,
                       SCORE_MODES, CurateConfig, GenerateConfig, PaintConfig, PlaceConfig, check_encoder_spec,
                       parse_keep)
from .splitting import DATASETS, SplitRecipe
from .loading import RUN_RECORD, RUN_SECTIONS, load_yaml, run_settings

__all__ = ["TITLES", "ConfigError", "added_later", "dump_yaml", "guard_settings", "later", "recipe", "stage_part",
           "title", "validate", "GENERATOR_MASK_KINDS", "GENERATOR_SIZES", "HUB_ID", "MIN_CROP", "SEGMENTATION_ARCHS",
           "GeneratorConfig", "HarmoniserConfig", "RgbBands", "TrainConfig", "encoder_problem", "APPEARANCE_FEATURES",
           "ENCODER_KINDS", "ENCODER_SPECS", "PRIORS", "REFINERS", "SAM_MODEL_TYPES", "SCORE_MODES", "CurateConfig",
           "GenerateConfig", "PaintConfig", "PlaceConfig", "check_encoder_spec", "parse_keep", "DATASETS", "SplitRecipe",
           "RUN_RECORD", "RUN_SECTIONS", "load_yaml", "run_settings"]
