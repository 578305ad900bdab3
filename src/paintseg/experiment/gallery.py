"""The report's picture sections: sample grids of the painted sets (reference, scene window, candidates with scores,
the chosen one and its label mask) and prediction overlays on query images."""

from __future__ import annotations

import json
from pathlib import Path

from paintseg.data.classes import ClassMap
from paintseg.data.episode import Episode

from .figures import overlay_lut, placement_figure, prediction_grid, sample_grid
from .page import SOFT_ERRORS, esc, img, missing, path_in, read_json
from .results import Results

# --------------------------------------------------------------------------------------------- section 5: samples
def _summary_line(summary: dict) -> str:
    rejected = ", ".join(f"{why} {n}" for why, n in sorted((summary.get("rejected") or {}).items())) or "none"
    return (f"placements {summary.get('placements', '?')} · candidates {summary.get('candidates', '?')} · kept "
            f"{summary.get('kept', '?')} · rejected: {rejected} · filter: {summary.get('encoder') or 'none'} · "
            f"refine: {summary.get('refine', '?')}")


def _paint_key(arm: str, paint: dict) -> str | None:
    """The paint folder an arm's curated set was made from: its own, else the longest backend name it starts with."""
    if arm in paint:
        return arm
    keys = sorted((k for k in paint if arm.startswith(k)), key=len, reverse=True)
    return keys[0] if keys else (next(iter(paint)) if len(paint) == 1 else None)


def samples_section(exp: Path, results: Results, episode: Episode | None, episode_note: str | None, n: int) -> str:
    title = "<h2>4. Painted samples</h2>"
    synthetic = results.synthetic
    if not synthetic:
        return title + missing("no synthetic arm in this experiment (baseline only): nothing was painted")
    if n < 1:
        return title + missing("samples=0: no sample grids asked for")
    first = synthetic[0]
    curated, paint = first.curated, first.paint
    order = results.arms
    arms = sorted(curated, key=lambda a: (a != "diffusion", order.index(a) if a in order else len(order)))
    intro = (f"<p class=\"meta\">Seed {first.seed}; one row per placement: the reference "
             f"(instance outlined), the scene window before painting (box in yellow), every candidate with its "
             f"similarity score (✓ = chosen), the chosen candidate, and the mask that becomes its label.</p>")
    out = [title, intro]
    quality = [(e.seed, e.placement_quality) for e in synthetic if e.placement_quality]
    if quality:
        def rate(name: str, q: dict) -> str:
            labels = f" / {q['fit_rate_labels']:.2f}" if "fit_rate_labels" in q else ""
            support = f" / {q['fit_rate_support']:.2f}" if "fit_rate_support" in q else ""
            return f"{esc(name)} {q['fit_rate']:.2f}{labels}{support}"

        rates = "; ".join(f"seed {seed}: " + ", ".join(rate(name, q) for name, q in qs.items()) for seed, qs in quality)
        out.append(f"<p class=\"meta\">Placement fit rate (share of placements whose surroundings look more like a "
                   f"real query instance's than a random spot's, by colour/texture / by base-class shares / and by "
                   f"colour/texture against the support instances' own surroundings; 0.5 = no better than random): "
                   f"{rates}.</p>")
    placed = next((f for f in (path_in(exp, v) for v in paint.values()) if f is not None
                   and (f / "placements.jsonl").is_file()), None)
    mix = read_json(placed / "prior.json").get("mix") if placed is not None else None
    if isinstance(mix, dict) and mix:
        def choice(name: str, m: dict) -> str:
            text = f"{esc(name)}: appearance weight {m.get('alpha', '?')}"
            if "label_agreement" in m:
                text += f", label agreement {m['label_agreement']:.2f}"
            return text + (f" ({esc(m['why'])})" if m.get("why") else "")

        out.append(f"<p class=\"meta\">How the placement prior weighed labels against appearance (seed "
                   f"{first.seed}; label agreement: the mean appearance percentile of the spots the "
                   f"label prior likes best, below 0.6 the labels are refused): "
                   f"{'; '.join(choice(n, m) for n, m in mix.items() if isinstance(m, dict))}.</p>")
    if episode is not None and placed is not None:
        try:
            out.append(f"<p class=\"meta\">Where seed {first.seed}'s instances went: the scenes "
                       f"with most placements, then per novel class the support instances in their surroundings "
                       f"beside the surroundings the placements chose.</p>")
            out.append(img(placement_figure(episode, placed), "placements"))
        except SOFT_ERRORS as e:
            out.append(missing(f"could not draw the placements of {placed}: {e}"))
    for arm in arms:
        out.append(f"<h3>{esc(arm)}</h3>")
        summary = first.summaries.get(arm)
        cur, key = path_in(exp, curated[arm]), _paint_key(arm, paint)
        if summary is None and cur is not None and (cur / "curate_summary.json").is_file():
            try:
                summary = json.loads((cur / "curate_summary.json").read_text())
            except (json.JSONDecodeError, OSError):
                summary = None
        if isinstance(summary, dict):
            out.append(f"<p class=\"meta\">{esc(_summary_line(summary))}</p>")
        src = path_in(exp, paint.get(key)) if key else None
        if episode is None:
            out.append(missing(f"missing: {episode_note}"))
        elif src is None or not src.is_dir():
            out.append(missing(f"missing: paint folder {src or '(not recorded)'} for {arm}"))
        elif cur is None or not cur.is_dir():
            out.append(missing(f"missing: curated folder {cur or '(not recorded)'} for {arm}"))
        else:
            try:
                out.append(img(sample_grid(episode, src, cur, n), f"{arm} samples"))
            except SOFT_ERRORS as e:
                out.append(missing(f"could not draw the {arm} samples from {src} and {cur}: {e}"))
    return "".join(out)


# --------------------------------------------------------------------------------------------- section 6: predictions
def _legend(classes: ClassMap) -> str:
    lut = overlay_lut(classes)
    items = "".join(f'<span class="swatch" style="background:rgb{tuple(int(v) for v in lut[c.id])}"></span>'
                    f"{esc(c.name)}{' (novel)' if c.role == 'novel' else ''}" for c in classes
                    if c.role in ("background", "base", "novel"))
    return f'<p class="meta">{items}</p>'


def overlays_section(exp: Path, results: Results, episode: Episode | None, episode_note: str | None, n: int) -> str:
    title = "<h2>5. Predictions on query images</h2>"
    if episode is None:
        return title + missing(f"missing: {episode_note}")
    if n < 1:
        return title + missing("overlays=0: no prediction overlays asked for")
    model, seeds = results.models[0] if results.models else None, results.seeds
    columns, notes = [], []
    for arm in results.arms:
        runs = [r for r in results.runs if r.arm == arm and r.model == model]
        runs.sort(key=lambda r: (seeds.index(r.seed) if r.seed in seeds else len(seeds), r.seed))
        if not runs:
            notes.append(f"missing: no {arm} run of {model}")
            continue
        folder = path_in(exp, runs[0].predictions)
        if folder is None or not folder.is_dir():
            notes.append(f"missing: prediction folder {folder or '(not recorded)'} of {arm}")
        columns.append((f"{arm} (seed {runs[0].seed})", folder))
    queries = sorted(episode.query, key=lambda s: s.stem)[:n]
    if not queries:
        return title + "".join(map(missing, notes)) + missing(f"missing: the episode {episode.root} has no query "
                                                                f"images")
    try:
        fig = prediction_grid(episode, queries, columns)
    except SOFT_ERRORS as e:
        return title + "".join(map(missing, notes)) + missing(f"could not draw the prediction overlays: {e}")
    return (title + f"<p class=\"meta\">Model {esc(model)}, first seed of each arm; label colours blended over the "
                    f"image.</p>" + "".join(map(missing, notes)) + _legend(episode.classes)
            + img(fig, "prediction overlays"))
