"""One orchestration of painting quality, for ``paintseg painting-quality`` and for ``paintseg run``'s
painting-quality stage: every backend on the same held-out query windows, and what else a run of it asks for.

    quality = assess_painting(episode, {"copy-paste": paste, "gen": painter}, Assessment(tests=24, against="copy-paste"))

What it measures, in order (each later part only when :class:`Assessment` asks for it):

1. :func:`paintseg.evaluate.painting.painting_quality`: ΔE / lightness spread / histogram distance of every
   backend's painted object to the real instances of its class, the class probe, novelty and diversity;
2. ``paired``: per backend, on how many shared tests it is closer than ``against`` (sign test);
3. ``mask_quality``: every refiner's IoU on real held-out query instances;
4. ``filter_quality``: per generator, what each filter's pick among K candidates gains over a random pick;
5. ``conditioning``: per generator, held-out instances painted back from their true, a wrong and no reference;
6. ``curve``: the painter's learning curve over its snapshots.

The result is one dict of the shape :class:`paintseg.experiment.results.PaintingQuality` reads; the per-test
``records`` stay in it (the run's stage file keeps them, results.json does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from paintseg.config import CurateConfig, PaintConfig
from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.place.references import extract_references


@dataclass
class Assessment:
    """What to measure beyond the colour distances and the probe (those are always measured).

    ``against``: the backend every other one is paired with (None: no pairing). ``refiners``: name → Refiner for the
    mask quality. ``filters``: name → Encoder judged on ``filter_candidates`` candidates per test (half the tests)
    for the generators named in ``filter_backends`` (None: every generator). ``conditioning``: held-out instances
    per class painted back by every generator (0: off). ``curve``: a GEN folder with snapshots, painted at
    ``curve_strength`` with ``curve_paste_noise`` for its control. ``paint``: the sampler (steps, guidance,
    scheduler) of the conditioning check and the curve (the backends carry their own); ``curation``: the filter's
    score mode."""

    tests: int = 24
    seed: int = 0
    against: str | None = None
    candidates: int = 1
    samples_dir: Path | None = None
    samples: int = 6
    refiners: dict = field(default_factory=dict)
    filters: dict = field(default_factory=dict)
    filter_candidates: int = 0
    filter_backends: list[str] | None = None
    conditioning: int = 0
    conditioning_dirs: Callable[[str], Path | None] | None = None
    paint: PaintConfig = field(default_factory=PaintConfig)
    curation: CurateConfig = field(default_factory=CurateConfig)
    curve: Path | None = None
    curve_strength: float = 1.0
    curve_paste_noise: float | None = None


def generators(backends: dict) -> list[str]:
    """The names of the backends that paint with a diffusion generator (conditioning and filters judge those)."""
    from paintseg.paint.diffusion.backend import DiffusionBackend

    return [name for name, backend in backends.items() if isinstance(backend, DiffusionBackend)]


def assess_painting(episode: Episode, backends: dict, what: Assessment, references=None,
                    on_conditioning: Callable[[str, dict], None] | None = None) -> dict:
    """Paint and measure as ``what`` says (see the module doc). ``on_conditioning(name, found)`` receives each
    generator's full conditioning result (its samples too) before only the summary is kept."""
    from paintseg.evaluate.painting import paired_wins, painting_quality

    if what.filters and what.filter_candidates < 2:  # checked here: callers fill an Assessment field by field
        raise PaintsegError(f"filter quality with {what.filter_candidates} candidate(s): a filter needs at least 2 "
                            f"candidates to choose from")
    if what.against is not None and what.against not in backends:
        raise PaintsegError(f"painting quality paired against {what.against!r}, which is not among the backends "
                            f"({', '.join(backends)})")
    references = extract_references(episode) if references is None else references
    # 1 colour distances, probe, novelty, diversity
    quality = painting_quality(episode, backends, references, tests=what.tests, seed=what.seed,
                               samples_dir=what.samples_dir, samples=what.samples, candidates=what.candidates)
    # 2 paired against one backend
    quality["against"] = what.against
    quality["paired"] = {n: paired_wins(quality, n, what.against) for n in backends if n != what.against} \
        if what.against is not None else {}
    # 3 mask refinement on real instances
    if what.refiners:
        from paintseg.evaluate.curation import mask_quality

        quality["mask_quality"] = mask_quality(episode, what.refiners, count=what.tests, seed=what.seed)
    painters = generators(backends)
    # 4 the filters' picks
    quality["filter_quality"] = {}
    if what.filters:
        from paintseg.evaluate.curation import filter_quality

        for name in what.filter_backends if what.filter_backends is not None else painters:
            quality["filter_quality"][name] = filter_quality(
                episode, backends[name], what.filters, references, candidates=what.filter_candidates,
                tests=max(1, what.tests // 2), seed=what.seed, mode=what.curation.score_mode)
    # 5 conditioning
    quality["conditioning"] = {}
    if what.conditioning:
        from paintseg.evaluate.conditioning import conditioning_quality

        for name in painters:
            folder = what.conditioning_dirs(name) if what.conditioning_dirs is not None else None
            found = conditioning_quality(episode, (backends[name].model, backends[name].config),
                                         what.paint, count=what.conditioning, seed=what.seed, samples_dir=folder,
                                         samples=what.samples,
                                         autoencoder=getattr(backends[name], "autoencoder", None))
            if on_conditioning is not None:
                on_conditioning(name, found)
            quality["conditioning"][name] = found["summary"]
    # 6 the painter's learning curve
    if what.curve is not None:
        from paintseg.evaluate.curve import painting_curve

        curve = painting_curve(episode, what.curve, references, strengths=[what.curve_strength],
                               paint=what.paint, tests=what.tests, seed=what.seed,
                               paste_noise=what.curve_paste_noise)
        curve.pop("quality")
        quality["curve"] = curve
    return quality
