"""The arms of a run in one table, and the painting backends they use in another.

An arm is what one row of the results compares: a segmentation model trained on real data, plus (for every arm but
the baseline) a synthetic set painted by one backend and curated its way. The run config's validation and defaults
(``spec``), the stage graph (``graph``), the comparisons and the verdict (``summary``), the report's reading guide
and the configuration reference all read these two tables: a new arm is one :data:`TABLE` row, a new way of
painting one :data:`BACKENDS` entry (and, for a new kind of painter, its module under ``paint/`` and its line in
:data:`paintseg.paint.painters.PAINTERS`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """How the stage graph builds a painting backend: from ``source`` ('copy-paste', the run's ``generator`` or its
    ``harmoniser``), with the pasted object's colour handling and, with ``noise``, the run's
    ``generation.paste_noise`` of smooth colour noise on each paste."""

    source: str
    paste_colour: str = "none"
    noise: bool = False


BACKENDS = {
    "copy-paste": Backend("copy-paste"),
    "copy-paste-match": Backend("copy-paste", paste_colour="match"),
    "copy-paste-poisson": Backend("copy-paste", paste_colour="poisson"),
    "copy-paste-noise": Backend("copy-paste", noise=True),
    "harmonise": Backend("harmoniser"),
    "diffusion": Backend("generator"),
    "diffusion-noise": Backend("generator", noise=True),
}


@dataclass(frozen=True)
class Arm:
    """One arm: its painting ``backend`` (None: no synthetic data), whether the curation scores its candidates and
    keeps the best (``filter``) and refines their masks (``refine``), whether a run without ``arms`` has it
    (``default``), whether the verdict judges it (``judged``: the method as the paper runs it) and what the report
    says it is (``text``)."""

    name: str
    backend: str | None
    text: str
    filter: bool = False
    refine: bool = False
    default: bool = False
    judged: bool = False


TABLE = (
    Arm("baseline", None, "real data only", default=True),
    Arm("copy-paste", "copy-paste", "references pasted into scenes", default=True),
    Arm("copy-paste-match", "copy-paste-match", "pasted with colours moved to the new surroundings and random flips"),
    Arm("copy-paste-poisson", "copy-paste-poisson", "pasted by Poisson blending (gradients kept, colours solved from "
        "the new surroundings)"),
    Arm("copy-paste-noise", "copy-paste-noise", "pasted with smooth colour noise on the object "
        "(generation.paste_noise): the strongest control", default=True),
    Arm("harmonise", "harmonise", "pasted, then re-coloured by the harmoniser trained on the episode's scenes"),
    Arm("diffusion", "diffusion", "painted by the exemplar-conditioned inpainting model, filtered by similarity and "
        "with refined masks", filter=True, refine=True, default=True, judged=True),
    Arm("diffusion-noise", "diffusion-noise", "the same, painted over the copy-paste-noise composite "
        "(generation.strength < 1)", filter=True, refine=True, default=True, judged=True),
    Arm("diffusion-no-filter", "diffusion", "diffusion without the filter (candidate 0, unscored)", refine=True),
    Arm("diffusion-no-refine", "diffusion", "diffusion without mask refinement (the inpaint mask as the label)",
        filter=True),
)

ARMS = tuple(a.name for a in TABLE)
DEFAULT_ARMS = tuple(a.name for a in TABLE if a.default)
DIFFUSION_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.source == "generator")
DIFFUSION_ARMS = tuple(a.name for a in TABLE if a.backend in DIFFUSION_BACKENDS)  # the arms that need a generator
PAINTING_ARMS = tuple(a.name for a in TABLE if a.judged)  # the arms the verdict judges
# each painted arm's curation: (painting backend, use the filter, use the refiner)
ARM_CURATION = {a.name: (a.backend, a.filter, a.refine) for a in TABLE if a.backend is not None}


def legend() -> str:
    """Every arm and what it is, in one sentence (the report's reading guide)."""
    return "; ".join(f"{a.name} = {a.text}" for a in TABLE)
