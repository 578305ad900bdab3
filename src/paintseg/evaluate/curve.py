"""The painter's learning curve: how painting quality grows with the generator's training compute.

A generator trained with ``snapshots`` (:mod:`paintseg.paint.diffusion.train`) keeps its EMA weights after half,
a quarter, ... of its steps in ``GEN/snapshots/step_NNNNNN/``, each a GEN folder that paints. :func:`painting_curve`
paints the same held-out query tests (:func:`paintseg.evaluate.painting.painting_quality`) with every snapshot and
the finished generator, at each painting strength asked for, next to the copy-paste controls, and returns one
point per (snapshot, strength): training minutes and steps, the probe's class rate, ΔE to the real instances,
novelty (distance to the reference) and diversity (between two candidates). ``trained_on`` is False for a strength
above the generator's ``max_strength``: it starts from noise levels the painter never trained on.

One long run gives every point, but a snapshot is not the same as a run trained for its steps: its learning rate had
not decayed yet (the EMA smooths that), so the curve is a lower bound of what a budget of that size buys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from paintseg.config import PaintConfig
from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.place.references import Reference

CURVE_METRICS = ("class_rate", "p_class", "delta_e", "novelty", "novelty_support", "diversity")


def snapshots(gen: str | Path) -> list[dict]:
    """The paintable points of a GEN folder, in training order: each snapshot and the finished generator, as
    ``{"step", "train_seconds", "path"}`` (``train_seconds`` None where the run did not record it)."""
    from paintseg.paint.diffusion.model import INDEX

    gen = Path(gen)
    points = []
    for folder in sorted((gen / "snapshots").glob("step_*")):
        if (folder / INDEX).is_file():
            info = json.loads((folder / "snapshot.json").read_text()) if (folder / "snapshot.json").is_file() else {}
            points.append({"step": int(info.get("step", folder.name.removeprefix("step_"))),
                           "train_seconds": info.get("train_seconds"), "path": folder})
    if (gen / INDEX).is_file():
        summary = gen / "train_summary.json"
        info = json.loads(summary.read_text()) if summary.is_file() else {}
        step = json.loads((gen / INDEX).read_text()).get("paintseg", {}).get("step", info.get("steps"))
        points.append({"step": int(step) if step is not None else None, "train_seconds": info.get("train_seconds"),
                       "path": gen})
    if not points:
        raise PaintsegError(f"{gen}: no generator here (no model_index.json, no snapshots/); train one with "
                            f"`paintseg generator train EPISODE --out {gen} --snapshots 6`")
    return sorted(points, key=lambda p: (p["step"] is None, p["step"] or 0))


def painting_curve(episode: Episode, gen: str | Path, references: Sequence[Reference],
                   strengths: Sequence[float] = (0.3,), paint: PaintConfig | None = None, tests: int = 24,
                   seed: int = 0, candidates: int = 2, paste_noise: float | None = 17.5,
                   samples_dir: Path | None = None, samples: int = 4) -> dict:
    """Painting quality of every snapshot of ``gen`` at every strength, on identical held-out tests, beside
    copy-paste (and copy-paste-noise with ``paste_noise``), painted as ``paint`` says (its sampler: steps,
    guidance, scheduler; its strength is each of ``strengths``). Returns ``{"points":
    [...], "controls": {...}, "probe": ..., "quality": painting_quality's result}``; ``samples_dir`` keeps the first ``samples`` tests of
    every backend as PNGs (listed in ``quality["samples"]``)."""
    from paintseg.paint.generate import make_backend

    from .painting import painting_quality

    points = snapshots(gen)
    backends = {"copy-paste": make_backend("copy-paste")[0]}
    if paste_noise:
        backends["copy-paste-noise"] = make_backend("copy-paste", paste_noise=paste_noise)[0]
    names: dict[str, tuple[dict, float]] = {}
    for point in points:
        for strength in strengths:
            name = f"step {point['step']}@{strength:g}"
            at = (paint or PaintConfig()).model_copy(update={"strength": strength})
            backends[name] = make_backend(point["path"], at, seed=seed)[0]
            names[name] = (point, strength)
    quality = painting_quality(episode, backends, references, tests=tests, seed=seed,
                               candidates=candidates, samples_dir=samples_dir, samples=samples)
    rows = quality["backends"]

    def measures(row: dict) -> dict:
        return {m: row.get(m) for m in CURVE_METRICS} | {"tests": row.get("tests", 0)}

    curve = [{"step": point["step"], "strength": strength,
              "minutes": None if point["train_seconds"] is None else round(point["train_seconds"] / 60, 3),
              "backend": name, "trained_on": strength <= backends[name].config.max_strength + 1e-9,
              **measures(rows[name])} for name, (point, strength) in names.items()]
    return {"generator": str(Path(gen)), "points": curve,
            "controls": {name: measures(rows[name]) for name in backends if name not in names},
            "probe": quality.get("probe"), "strengths": list(strengths), "tests_per_class": tests,
            "candidates": candidates, "quality": quality}


def curve_lines(curve: dict) -> list[str]:
    """The curve as text, one line per point then one per control (what the CLI prints)."""
    def fmt(row: dict) -> str:
        return ", ".join(f"{m} {row[m]:.3f}" for m in CURVE_METRICS if row.get(m) is not None)

    lines = [f"step {p['step']:>7} ({p['minutes'] if p['minutes'] is not None else '?'} min) @ {p['strength']:g}: "
             f"{fmt(p)}" + ("" if p.get("trained_on", True) else "  (beyond the noise levels it was trained on)")
             for p in curve["points"]]
    return lines + [f"{name}: {fmt(row)}" for name, row in curve["controls"].items()]
