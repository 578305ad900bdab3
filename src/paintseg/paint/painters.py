"""Every way paintseg paints, in one table: which ``--generator`` values each kind of backend claims, its class
(``module:Class``, imported when used: this module imports nothing heavy, so the command line reads it for its help)
and what a user passes to get it. :func:`paintseg.paint.generate.make_backend` builds the first that claims a value
with its ``from_config``; a new backend is its module and one line of :data:`PAINTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Painter:
    """One kind of painting backend: the sources it paints with (``claims``), its class (``backend``,
    ``module:Class``) and how a user names it (``text``, for the help)."""

    kind: str
    backend: str
    claims: Callable[[str], bool]
    text: str


def _is_pipeline(source: str) -> bool:
    from .pipelines import pipeline_kind

    return pipeline_kind(source) is not None


def _is_harmoniser(source: str) -> bool:
    from .harmonise.model import is_harmoniser

    return is_harmoniser(source)


# first claim wins
PAINTERS = (
    Painter("copy-paste", "paintseg.paint.copy_paste:CopyPasteBackend", lambda source: source == "copy-paste",
            "'copy-paste' for the copy-paste baseline"),
    Painter("pipeline", "paintseg.paint.pipelines:PretrainedBackend", _is_pipeline,
            "a diffusers pipeline folder or hub id (Paint-by-Example, SD inpainting, a converted RS-Paint: `paintseg "
            "convert rs-paint`)"),
    Painter("harmoniser", "paintseg.paint.harmonise.backend:HarmoniseBackend", _is_harmoniser,
            "a harmoniser folder written by `paintseg harmoniser train` (copy-paste, then re-coloured to fit the "
            "scene)"),
    Painter("generator", "paintseg.paint.diffusion.backend:DiffusionBackend", lambda source: True,
            "a generator folder written by `paintseg generator train`"),
)


def generator_help() -> str:
    """What ``--generator`` takes, one clause per painter."""
    return "What paints: " + "; ".join(p.text for p in PAINTERS) + "."
