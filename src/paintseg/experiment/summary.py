"""The statistics and text of an experiment's results: mean ± std per arm and model, paired comparisons between arms,
the outcome that must not change between equivalent runs, and the headline table as plain text."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from .results import Comparison, Results
from .arms import DIFFUSION_ARMS, PAINTING_ARMS



def _mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 3),
            "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0}


def summarize_runs(runs: list[dict], arms: list[str], models: list[str]) -> list[dict]:
    """Mean and sample standard deviation over seeds per arm × model, and the gain over the baseline arm."""
    rows = []
    for model in models:
        base = [r for r in runs if r["arm"] == "baseline" and r["model"] == model]
        for arm in arms:
            group = [r for r in runs if r["arm"] == arm and r["model"] == model]
            if not group:
                continue
            row = {"arm": arm, "model": model, "n": len(group)}
            for metric in ("base_miou", "novel_miou", "score"):
                row[metric] = _mean_std([r["metrics"][metric] for r in group])
            names = list(group[0]["metrics"]["per_class_iou"])
            row["per_class_iou"] = {n: _mean_std([r["metrics"]["per_class_iou"][n] for r in group]) for n in names}
            row["gain"] = None
            if base:
                row["gain"] = {m: round(row[m]["mean"] - statistics.fmean(r["metrics"][m] for r in base), 3)
                               for m in ("base_miou", "novel_miou", "score")}
            rows.append(row)
    return rows


def comparisons(full: dict[tuple[str, str, int], dict], arms: list[str], models: list[str], classes) -> list[dict]:
    """Every arm against the baseline, every painted arm against copy-paste, and every diffusion arm against
    copy-paste-noise (the strongest control: it tells a painting gain from an appearance-noise gain), per model:
    novel and base mIoU differences with their seed and query-tile statistics
    (paintseg.evaluate.significance.compare)."""
    from paintseg.evaluate.significance import compare

    pairs = [(arm, "baseline") for arm in arms if arm != "baseline" and "baseline" in arms]
    pairs += [(arm, "copy-paste") for arm in arms if arm not in ("baseline", "copy-paste") and "copy-paste" in arms]
    pairs += [(arm, "copy-paste-noise") for arm in arms if arm in DIFFUSION_ARMS and "copy-paste-noise" in arms]
    out = []
    for model in models:
        for arm, other in pairs:
            a = {s: m for (ar, mo, s), m in full.items() if ar == arm and mo == model}
            b = {s: m for (ar, mo, s), m in full.items() if ar == other and mo == model}
            if not set(a) & set(b):
                continue
            out.append({"arm": arm, "against": other, "model": model,
                        **{metric: compare(a, b, classes, metric) for metric in ("novel_miou", "base_miou")}})
    return out


CIRCUMSTANCES = ("stages", "wall_seconds", "environment", "command", "disk_mb")


def outcome(results: dict) -> dict:
    """``results`` without :data:`CIRCUMSTANCES` and without any field of seconds or memory (``*seconds*``,
    ``*rss*``): what two runs of the same config must agree on, whatever the machine or number of processes."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "seconds" not in k and "rss" not in k}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip({k: v for k, v in results.items() if k not in CIRCUMSTANCES})


def format_headline(results: Results) -> str:
    """The headline table as plain text: base mIoU, novel mIoU and score per arm and model, mean ± std."""
    lines = [f"{'arm':<22}{'model':<20}{'n':>3}  {'base mIoU':>14}  {'novel mIoU':>14}  {'score':>14}  "
             f"{'novel gain':>10}"]
    for row in results.summary:
        cells = [f"{s.mean:6.2f} ± {s.std:5.2f}" if row.n > 1 else f"{s.mean:6.2f}{'':8}"  # one seed: no spread
                 for s in (row.base_miou, row.novel_miou, row.score)]
        gain = f"{row.gain.novel_miou:+10.2f}" if row.gain and row.arm != "baseline" else f"{'':>10}"
        lines.append(f"{row.arm:<22}{row.model:<20}{row.n:>3}  " + "  ".join(cells) + f"  {gain}")
    verdict = verdict_line(results.comparisons)
    return "\n".join(lines + ([verdict] if verdict else []))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def verdict_line(comparisons: Sequence[Comparison | dict]) -> str | None:
    """One sentence: does painting (the better of the diffusion arms) beat the strongest control it was run against
    (copy-paste-noise, else copy-paste; else: the best synthetic arm vs the baseline), by how much, and is that
    beyond noise. None when there is nothing to compare."""
    found = [Comparison.model_validate(c) for c in comparisons]
    found = [c for c in found if isinstance(c.novel_miou, dict)]
    if not found:
        return None
    pick = None
    for against in ("copy-paste-noise", "copy-paste"):  # the strongest control run; the better painting arm
        painted = [c for c in found if c.arm in PAINTING_ARMS and c.against == against
                   and _finite(c.seed_mean())]
        if painted:
            pick = max(painted, key=lambda c: c.seed_mean())
            break
    if pick is None:
        vs_base = [c for c in found if c.against == "baseline"]
        if not vs_base:
            return None
        pick = max(vs_base, key=lambda c: c.seed_mean() if _finite(c.seed_mean()) else -math.inf)
    n = pick.novel_miou
    seeds = n["seeds"]
    mean = seeds["mean"]
    if not _finite(mean):
        return None
    from paintseg.evaluate.significance import explain

    who = f"painting ({pick.arm})" if pick.arm.startswith("diffusion") else pick.arm
    spread = f" ± {seeds['std']:.1f} (std of {seeds['n']} paired seeds)" if _finite(seeds.get("std")) else " (1 seed)"
    return (f"{who} {'raised' if mean >= 0 else 'lowered'} novel IoU by {abs(mean):.1f}{spread} over "
            f"{pick.against} ({pick.model}) - {explain(n)}.")
