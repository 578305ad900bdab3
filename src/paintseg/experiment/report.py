"""The experiment report: one self-contained HTML page (figures embedded as PNG, inline CSS, no scripts) from
``EXP/results.json`` and the stage folders it names, and an optional screenshot of it with headless Chromium::

    write_report("runs/dubai")                               # -> runs/dubai/report.html
    screenshot("runs/dubai/report.html", "runs/dubai/report.png")

Sections: headline table (mean ± std over seeds, gain over the baseline), novel-IoU chart, per-class IoU, sample grids
of the painted sets (reference, scene window, candidates with scores, chosen one, its label mask), prediction overlays
on query images, stage timings, and how to read it. Missing pieces (no synthetic arm, a deleted folder) are named in
their section instead of failing the report.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from paintseg.data.classes import ClassMap
from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .figures import (curve_chart, data_uri, novel_chart, overlay_lut, painting_samples_figure, placement_figure,
                      prediction_grid, sample_grid, stage_chart)
from .results import Gain, PaintingQuality, Results, ResultsError, Stat, SummaryRow
from .arms import legend
from .summary import verdict_line

FIX = "run `paintseg run CONFIG --out EXP` first"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# what one section may meet in a half-written or hand-edited experiment folder; drawn as a note, never fatal
SOFT_ERRORS = (PaintsegError, OSError, KeyError, IndexError, TypeError, ValueError)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1360px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
.meta { color: #555; font-size: 14px; line-height: 1.6; } code { background: #f4f4f4; padding: 1px 4px; }
table { border-collapse: collapse; font-size: 14px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.up { color: #1a7f37; } .down { color: #cf222e; } .novel { color: #8250df; }
.verdict { font-size: 17px; margin: 6px 0 10px; }
.missing { color: #9a6700; background: #fff8c5; padding: 4px 8px; display: inline-block; }
img { max-width: 100%; display: block; margin: 8px 0; }
.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #888; margin: 0 4px 0 12px; }
"""


class ReportError(PaintsegError):
    """No report can be written: results.json is missing or malformed, or no browser renders the screenshot."""


# --------------------------------------------------------------------------------------------- loading
def load_results(exp: str | Path) -> Results:
    """``EXP/results.json`` through its schema (:class:`paintseg.experiment.results.Results`)."""
    try:
        return Results.load(Path(exp) / "results.json")
    except ResultsError as e:
        raise ReportError(str(e)) from None


def _path(exp: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else exp / p


def _episode(exp: Path, results: Results) -> tuple[Episode | None, str | None]:
    path = _path(exp, results.episode)
    if path is None:
        return None, "results.json names no episode"
    try:  # the support/query lists the runs were scored on
        return Episode(path, split=results.config.episode.set), None
    except PaintsegError as e:
        return None, f"episode {path} is missing or unreadable ({e})"


# --------------------------------------------------------------------------------------------- formatting
def _esc(value) -> str:
    return html.escape(str(value))


def _ok(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _pm(stat: Stat | None, n: int | None = None) -> str:
    """``Stat(mean=40.3, std=0.5)`` → ``40.30 ± 0.50``; the mean alone from one seed (``n`` 1: no spread known)."""
    if stat is None or not _ok(stat.mean):
        return "n/a"
    return f"{stat.mean:.2f} ± {stat.std:.2f}" if _ok(stat.std) and (n is None or n > 1) else f"{stat.mean:.2f}"


def _gain(value) -> str:
    if not _ok(value):
        return "—"
    css = "up" if value > 0 else "down" if value < 0 else ""
    return f'<span class="{css}">{value:+.2f}</span>'


def hms(seconds) -> str:
    """Seconds as h:mm:ss."""
    if not _ok(seconds):
        return "n/a"
    s = round(float(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _missing(text: str) -> str:
    return f'<p class="missing">{_esc(text)}</p>'


def _img(fig, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="{data_uri(fig)}">'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(text: str, num: bool = True, bold: bool = False) -> str:
    inner = f"<b>{text}</b>" if bold else text
    return f'<td class="num">{inner}</td>' if num else f"<td>{inner}</td>"


# --------------------------------------------------------------------------------------------- sections 1-4
def _setup(results: Results, episode: Episode | None) -> str:
    """Shots, query size and the budgets, from the config that ran."""
    config = results.config
    parts = []
    if episode is not None:
        parts.append(f"{episode.shots} shots · {len(episode.train)} trainset / {len(episode.query)} query images")
    train = config.train
    models = ", ".join(f"{m.arch}-{m.encoder} ({m.encoder_weights or 'from scratch'})" for m in config.models)
    parts.append(f"segmentation: {models}; {train.steps} steps × batch {train.batch} at crop {train.crop}, lr "
                 f"{train.lr}, synthetic share {train.synthetic_fraction}"
                 + (f", synthetic context {train.synthetic_context} px" if train.synthetic_context else "")
                 + (f", synthetic border ignored {train.synthetic_border} px" if train.synthetic_border else ""))
    spec = config.generator
    if spec is not None and spec.train is not None:
        gen, trained = spec.train, results.generator or {}
        budget = f"budget {gen.minutes:g} min: " if gen.minutes else ""
        took = (f" in {trained['train_seconds'] / 60:.1f} min on {trained['torch_threads']} thread(s)"
                if trained.get("train_seconds") else "")
        space = (f"latent painter on the autoencoder in {gen.autoencoder}" if gen.space == "latent" else
                 "pixel painter")
        parts.append(f"generator: {gen.size} {space} ({gen.reference_encoder} reference encoder), "
                     f"{budget}{trained.get('steps') or gen.steps} steps{took}, batch {gen.batch}")
    elif spec is not None and spec.path:
        parts.append(f"generator: {spec.path}")
    g = config.generation
    if results.synthetic:
        parts.append(f"painting: {g.per_class} placements × {g.candidates} candidates per class and "
                     f"seed, {g.steps} sampler steps"
                     + (f" from the copy-paste composite at strength {g.strength}" if g.strength != 1.0 else "")
                     + f"; placement prior {g.prior}" + (", oriented" if g.orient else "")
                     + f"; filter {g.filter} (keep {g.keep}), refine {g.refine}")
    return "set-up: " + _esc(" · ".join(parts)) + "<br>" if parts else ""


def _head(results: Results, episode: Episode | None = None) -> str:
    def shown(value) -> str:  # a mapping (the threads choice) as words, not a Python dict
        return ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)

    env_line = " · ".join(f"{_esc(k.replace('_', ' '))} {_esc(shown(v))}" for k, v in results.environment.items())
    stage_seconds = sum(s.seconds for s in results.stages if _ok(s.seconds))
    verdict = verdict_line(results.comparisons)
    disk = f" · folder {results.disk_mb:.0f} MB" if _ok(results.disk_mb) else ""
    return (f"<h1>paintseg experiment: {_esc(results.name)}</h1>"
            + (f"<p class=\"verdict\"><b>{_esc(verdict)}</b></p>" if verdict else "")
            + f"<div class=\"meta\">"
            f"command: <code>{_esc(results.command or 'n/a')}</code><br>" + _setup(results, episode) +
            f"report written {datetime.now().strftime('%Y-%m-%d %H:%M')} · time in stages {hms(stage_seconds)} "
            f"(every call, resumed runs included; {hms(results.wall_seconds)} in the last call){disk} · arms: "
            f"{_esc(', '.join(results.arms))} · models: "
            f"{_esc(', '.join(results.models))} · seeds: {_esc(', '.join(map(str, results.seeds)))}<br>"
            f"environment: {env_line or 'n/a'}</div>"
            + (_missing("partial results: the experiment has not finished (results.json says complete: false)")
               if not results.complete else ""))


def _headline(results: Results) -> str:
    rows = results.summary
    if not rows:
        return "<h2>1. Results</h2>" + _missing("no summary rows in results.json: no run has finished")
    best: dict[str, float] = {}
    for r in rows:
        v = r.novel_miou.mean
        if _ok(v) and v > best.get(r.model, -math.inf):
            best[r.model] = v
    # a column per control the run has, so the verdict's figure (against the strongest control) is in the table
    controls = [c for c in ("copy-paste", "copy-paste-noise") if c in results.arms] or ["copy-paste"]
    out = []
    for r in rows:
        gain = r.gain or Gain()
        baseline = r.arm == "baseline"
        is_best = _ok(r.novel_miou.mean) and r.novel_miou.mean == best.get(r.model)
        out.append([_td(_esc(r.arm), False), _td(_esc(r.model), False), _td(_esc(r.n)),
                    _td(_pm(r.base_miou, r.n)), _td(_pm(r.novel_miou, r.n), bold=is_best), _td(_pm(r.score, r.n)),
                    _td("—" if baseline else _gain(gain.novel_miou) + _noise(results, r, "baseline")),
                    _td("—" if baseline else _gain(gain.base_miou) + _noise(results, r, "baseline", "base_miou")),
                    _td("—" if baseline else _gain(gain.score)),
                    *[_td(_versus(results, r, control)) for control in controls]])
    note = "" if any(r.arm == "baseline" for r in rows) else _missing("no baseline arm: gains are not available")
    return ("<h2>1. Results (IoU %, mean ± std over seeds)</h2>" + note
            + _table(["arm", "model", "n", "base mIoU", "novel mIoU", "score", "gain novel", "gain base",
                      "gain score", *[f"novel vs {control}" for control in controls]], out)
            + "<p class=\"meta\">Bold: best novel mIoU per model. Gain: arm mean minus the baseline mean for the "
              "same model. ▲ / ▼ beyond noise, up / down: the 95 % t-interval of the per-seed paired differences and the 95 % "
              "bootstrap interval over query tiles both exclude 0; ≈ within noise: one of them does not (with one "
              "seed only the tile interval exists).</p>")


def _noise(results: Results, row: SummaryRow, against: str, metric: str = "novel_miou") -> str:
    c = results.comparison(row.arm, against, row.model)
    if c is None or not isinstance(getattr(c, metric), dict):
        return ""
    if not c.beyond(metric):
        return " ≈"
    return " ▲" if (c.seed_mean(metric) or 0) > 0 else " ▼"


def _versus(results: Results, row: SummaryRow, control: str) -> str:
    """The arm's paired novel-IoU difference to ``control`` (mean over seeds), or — where it was not compared."""
    c = results.comparison(row.arm, control, row.model)
    if c is None or not _ok(c.seed_mean()):
        return "—"
    return _gain(c.seed_mean()) + _noise(results, row, control)


def _chart(results: Results) -> str:
    means, stds, seeds = {}, {}, defaultdict(list)
    for r in results.summary:
        if _ok(r.novel_miou.mean):
            means[(r.arm, r.model)] = r.novel_miou.mean
            stds[(r.arm, r.model)] = r.novel_miou.std if _ok(r.novel_miou.std) else 0.0
    for run in results.runs:
        seeds[(run.arm, run.model)].append(run.metrics.novel_miou)
    title = "<h2>2. Novel-class IoU per arm</h2>"
    if not means:
        return title + _missing("no novel mIoU in the summary: nothing to chart")
    arms = [a for a in results.arms if any(k[0] == a for k in means)]
    models = [m for m in results.models if any(k[1] == m for k in means)]
    return title + _img(novel_chart(arms, models, means, stds, dict(seeds)), "novel mIoU per arm") + (
        "<p class=\"meta\">Bar: mean over seeds; error bar: std; dots: individual seeds.</p>")


def _per_class(results: Results) -> str:
    title = "<h2>3. Per-class IoU (%, mean ± std over seeds)</h2>"
    names: list[str] = []
    roles: dict[str, str] = {}
    for run in results.runs:
        roles.update(run.metrics.roles)
    for r in results.summary:
        names += [n for n in r.per_class_iou if n not in names]
    if not names:
        return title + _missing("no per-class IoU in the summary")
    novel = set(results.novel) | {n for n, role in roles.items() if role == "novel"}
    header = ["arm", "model"] + [f'<span class="novel">{_esc(n)} (novel)</span>' if n in novel else _esc(n)
                                 for n in names]
    body = [[_td(_esc(r.arm), False), _td(_esc(r.model), False)]
            + [_td(_pm(r.per_class_iou.get(n), r.n)) for n in names]
            for r in results.summary]
    return title + _table(header, body)


def _painting_quality(exp: Path, results: Results) -> str:
    title = "<h2>3b. Painting quality on held-out query scenes</h2>"
    quality = results.painting_quality
    if quality is None:
        return title + _missing("not measured (no painting arm, or generation.quality_tests: 0)")
    novelty = [m for m in ("novelty", "novelty_support", "diversity")
               if any(m in row for row in quality.backends.values())]
    header = ["backend", "tests", "ΔE of mean colour", "Δ lightness spread", "histogram distance",
              f"closer than {_esc(quality.against or 'copy-paste')} (ΔE)", "probe: is the class", *novelty,
              "s per test"]
    body = []
    for name, row in quality.backends.items():
        wins = quality.paired.get(name)
        versus = (f"{wins['wins']}/{wins['tests'] - wins['ties']} (p {wins['p']:.3f})" if wins and wins.get("p")
                  is not None else "")
        body.append([_td(_esc(name), False), _td(str(row.get("tests", 0)))]
                    + [_td(f"{row[m]:.2f}" if m in row else "") for m in ("delta_e", "delta_l_std", "hist")]
                    + [_td(versus), _td(f"{row['class_rate']:.0%} (p {row['p_class']:.2f})" if "class_rate" in row
                                        else "")]
                    + [_td(f"{row[m]:.2f}" if m in row else "") for m in novelty]
                    + [_td(f"{row['seconds_per_test']:.2f}" if "seconds_per_test" in row else "")])
    note = ("<p class=\"meta\">Every painting backend paints the same support reference into the same window of a "
            "held-out query image (a window free of the class); the painted object is compared with the real "
            "instances of its class in that image: CIE76 distance of the mean Lab colours, difference of the "
            "lightness spreads, 1 − Bhattacharyya coefficient of the Lab histograms. Lower is closer; the fourth "
            f"column counts the tests where a backend's ΔE is below {_esc(quality.against or 'copy-paste')}'s "
            "(sign test)."
            + (" Novelty: 1 − cosine similarity between the painted object and its reference in the probe's "
               "feature space (how far a painting is from a paste of its reference); novelty_support: the same to "
               "the nearest support instance of its class; diversity: the same between two candidates painted for "
               "the same test." if novelty else "") + "</p>")
    probe = quality.probe
    if probe and probe.get("real_novel_rate") is not None:
        note += (f"<p class=\"meta\">Probe: a linear classifier on frozen EfficientNet-Lite0 features, trained on "
                 f"{probe['positives']} support-instance views against {probe['negatives']} base-class instances; "
                 f"it calls {probe['real_novel_rate']:.0%} of {probe['real_novel']} real query instances of the novel "
                 f"class(es) the class and {probe['real_base_rate']:.0%} of {probe['real_base']} base-class "
                 f"instances - the ceiling and the false-alarm rate to read the column against"
                 + (" (a low ceiling: the support shots do not look like the query's instances)"
                    if probe["real_novel_rate"] < 0.5 else "") + ".</p>")
    masks = (quality.mask_quality or {}).get("per_class") or {}
    if masks:
        parts = "; ".join(f"{_esc(c)}: " + ", ".join(f"{_esc(n)} {v['iou']:.1f} % ({v['instances']} instances, "
                                                     f"{v['seconds_per_instance']:.2f} s each)" for n, v in r.items())
                          for c, r in masks.items())
        note += (f"<p class=\"meta\">Mask refinement on real held-out query instances (IoU with the true instance, "
                 f"recovered from the rectangle inpaint mask around it; 'none' is the rectangle): {parts}.</p>")
    for painter, filtering in quality.filter_quality.items():
        for name, row in (filtering.get("filters") or {}).items():
            if row.get("p_class_gain") is None:
                continue
            auc = f", ROC-AUC for the probe's label {row['auc_probe']:.2f}" if row.get("auc_probe") is not None else ""
            note += (f"<p class=\"meta\">Filter {_esc(name)} on {_esc(painter)}'s paintings, {row['tests']} held-out "
                     f"tests of {filtering['candidates']} candidates each ({filtering['candidate_class_rate']:.0%} of "
                     f"candidates called the class by the probe): its pick changes the probe's probability by "
                     f"{row['p_class_gain']:+.3f} and the ΔE to the real instances by {row['delta_e_gain']:+.1f} "
                     f"against a random pick (a gain is + and −){auc}.</p>")
    return title + note + _table(header, body) + _painting_samples(exp, quality) + _curve(quality.curve)


def _curve(curve: dict | None) -> str:
    """The painter's learning curve (generator.train.snapshots): painting quality against training minutes."""
    if not curve or not curve.get("points"):
        return ""
    last = curve["points"][-1]
    if last.get("class_rate") is None:  # no held-out test could be painted (e.g. no query instance of the class)
        return ("<h3>The painter's learning curve</h3><p class=\"meta\">Not measured: the snapshots had no held-out "
                "test to paint (the query set holds no instance of a novel class that fits a test window).</p>")
    controls = "; ".join(f"{_esc(n)} {r['class_rate']:.0%}" for n, r in curve["controls"].items()
                         if r.get("class_rate") is not None)
    minutes = f"{last['minutes']:.1f} min" if last.get("minutes") is not None else f"{last['step']} steps"
    text = (f"<h3>The painter's learning curve</h3><p class=\"meta\">The same held-out tests painted by the "
            f"generator's snapshots (EMA weights after half, a quarter, … of its training; a snapshot's learning rate "
            f"had not decayed yet, so each point is a lower bound of what that budget buys). After {minutes} of "
            f"training the probe calls {last['class_rate']:.0%} of its paintings the class (controls: {controls}); "
            f"novelty is the distance of a painting to its reference and diversity the distance between two "
            f"candidates, in the probe's feature space.</p>")
    return text + _img(curve_chart(curve), "painter learning curve")


def _painting_samples(exp: Path, quality: PaintingQuality) -> str:
    """The first held-out tests as painted by every backend (object outlined in yellow)."""
    folder = _path(exp, quality.folder)
    if not quality.samples or folder is None:
        return ""
    return _img(painting_samples_figure(quality.model_dump(), folder / "samples"), "painting quality samples")


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


def _samples(exp: Path, results: Results, episode: Episode | None, episode_note: str | None, n: int) -> str:
    title = "<h2>4. Painted samples</h2>"
    synthetic = results.synthetic
    if not synthetic:
        return title + _missing("no synthetic arm in this experiment (baseline only): nothing was painted")
    if n < 1:
        return title + _missing("samples=0: no sample grids asked for")
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
            return f"{_esc(name)} {q['fit_rate']:.2f}{labels}{support}"

        rates = "; ".join(f"seed {seed}: " + ", ".join(rate(name, q) for name, q in qs.items()) for seed, qs in quality)
        out.append(f"<p class=\"meta\">Placement fit rate (share of placements whose surroundings look more like a "
                   f"real query instance's than a random spot's, by colour/texture / by base-class shares / and by "
                   f"colour/texture against the support instances' own surroundings; 0.5 = no better than random): "
                   f"{rates}.</p>")
    placed = next((f for f in (_path(exp, v) for v in paint.values()) if f is not None
                   and (f / "placements.jsonl").is_file()), None)
    mix = _read_json(placed / "prior.json").get("mix") if placed is not None else None
    if isinstance(mix, dict) and mix:
        def choice(name: str, m: dict) -> str:
            text = f"{_esc(name)}: appearance weight {m.get('alpha', '?')}"
            if "label_agreement" in m:
                text += f", label agreement {m['label_agreement']:.2f}"
            return text + (f" ({_esc(m['why'])})" if m.get("why") else "")

        out.append(f"<p class=\"meta\">How the placement prior weighed labels against appearance (seed "
                   f"{first.seed}; label agreement: the mean appearance percentile of the spots the "
                   f"label prior likes best, below 0.6 the labels are refused): "
                   f"{'; '.join(choice(n, m) for n, m in mix.items() if isinstance(m, dict))}.</p>")
    if episode is not None and placed is not None:
        try:
            out.append(f"<p class=\"meta\">Where seed {first.seed}'s instances went: the scenes "
                       f"with most placements, then per novel class the support instances in their surroundings "
                       f"beside the surroundings the placements chose.</p>")
            out.append(_img(placement_figure(episode, placed), "placements"))
        except SOFT_ERRORS as e:
            out.append(_missing(f"could not draw the placements of {placed}: {e}"))
    for arm in arms:
        out.append(f"<h3>{_esc(arm)}</h3>")
        summary = first.summaries.get(arm)
        cur, key = _path(exp, curated[arm]), _paint_key(arm, paint)
        if summary is None and cur is not None and (cur / "curate_summary.json").is_file():
            try:
                summary = json.loads((cur / "curate_summary.json").read_text())
            except (json.JSONDecodeError, OSError):
                summary = None
        if isinstance(summary, dict):
            out.append(f"<p class=\"meta\">{_esc(_summary_line(summary))}</p>")
        src = _path(exp, paint.get(key)) if key else None
        if episode is None:
            out.append(_missing(f"missing: {episode_note}"))
        elif src is None or not src.is_dir():
            out.append(_missing(f"missing: paint folder {src or '(not recorded)'} for {arm}"))
        elif cur is None or not cur.is_dir():
            out.append(_missing(f"missing: curated folder {cur or '(not recorded)'} for {arm}"))
        else:
            try:
                out.append(_img(sample_grid(episode, src, cur, n), f"{arm} samples"))
            except SOFT_ERRORS as e:
                out.append(_missing(f"could not draw the {arm} samples from {src} and {cur}: {e}"))
    return "".join(out)


# --------------------------------------------------------------------------------------------- section 6: predictions
def _legend(classes: ClassMap) -> str:
    lut = overlay_lut(classes)
    items = "".join(f'<span class="swatch" style="background:rgb{tuple(int(v) for v in lut[c.id])}"></span>'
                    f"{_esc(c.name)}{' (novel)' if c.role == 'novel' else ''}" for c in classes
                    if c.role in ("background", "base", "novel"))
    return f'<p class="meta">{items}</p>'


def _overlays(exp: Path, results: Results, episode: Episode | None, episode_note: str | None, n: int) -> str:
    title = "<h2>5. Predictions on query images</h2>"
    if episode is None:
        return title + _missing(f"missing: {episode_note}")
    if n < 1:
        return title + _missing("overlays=0: no prediction overlays asked for")
    model, seeds = results.models[0] if results.models else None, results.seeds
    columns, notes = [], []
    for arm in results.arms:
        runs = [r for r in results.runs if r.arm == arm and r.model == model]
        runs.sort(key=lambda r: (seeds.index(r.seed) if r.seed in seeds else len(seeds), r.seed))
        if not runs:
            notes.append(f"missing: no {arm} run of {model}")
            continue
        folder = _path(exp, runs[0].predictions)
        if folder is None or not folder.is_dir():
            notes.append(f"missing: prediction folder {folder or '(not recorded)'} of {arm}")
        columns.append((f"{arm} (seed {runs[0].seed})", folder))
    queries = sorted(episode.query, key=lambda s: s.stem)[:n]
    if not queries:
        return title + "".join(map(_missing, notes)) + _missing(f"missing: the episode {episode.root} has no query "
                                                                f"images")
    try:
        fig = prediction_grid(episode, queries, columns)
    except SOFT_ERRORS as e:
        return title + "".join(map(_missing, notes)) + _missing(f"could not draw the prediction overlays: {e}")
    return (title + f"<p class=\"meta\">Model {_esc(model)}, first seed of each arm; label colours blended over the "
                    f"image.</p>" + "".join(map(_missing, notes)) + _legend(episode.classes)
            + _img(fig, "prediction overlays"))


# --------------------------------------------------------------------------------------------- sections 7-8
def _stages(results: Results) -> str:
    title = "<h2>6. Stages</h2>"
    stages = results.stages
    if not stages:
        return title + _missing("no stages recorded in results.json")
    rows = [[_td(_esc(s.stage), False), _td(_esc(s.folder or ""), False), _td(hms(s.seconds)),
             _td(f"{s.peak_rss_mb:.0f}" if _ok(s.peak_rss_mb) else "n/a"),
             _td("yes" if s.cached else "no", False)] for s in stages]
    seconds = [float(s.seconds) if _ok(s.seconds) else 0.0 for s in stages]
    labels = [Path(s.folder).name if s.folder else s.stage for s in stages]
    texts = [hms(v) + (" (cached)" if s.cached else "") for v, s in zip(seconds, stages)]
    chart = _img(stage_chart(labels, seconds, [s.cached for s in stages], texts), "seconds per stage")
    return (title + _table(["stage", "folder", "time (h:mm:ss)", "peak RSS MB", "cached"], rows)
            + f"<p class=\"meta\">{len(stages)} stages, {hms(sum(seconds))} in stages, {hms(results.wall_seconds)} "
              f"wall time of the last call. Time and memory are those recorded when a stage ran (a cached stage keeps "
              f"them). Peak RSS is the resident memory of the paintseg process while the stage ran, so it includes "
              f"what earlier stages of the same process still hold.</p>" + chart)


HOW_TO_READ = """<h2>How to read this</h2><ul class="meta">
<li>IoU is in percent, accumulated over all query images of the episode (one confusion matrix, not a mean of
per-image IoUs). Base mIoU averages the base classes, novel mIoU the novel classes.</li>
<li>score = 0.4 · base mIoU + 0.6 · novel mIoU, as in the OpenEarthMap few-shot protocol.</li>
<li>mean ± std is over the seeds of an arm (sample std, ddof = 1; the mean alone with one seed); n is the number of
seeds. "novel vs copy-paste(-noise)": the arm's novel mIoU minus the control's, paired seed by seed.</li>
<li>Arms: """ + _esc(legend()) + """.</li></ul>"""


# --------------------------------------------------------------------------------------------- API
def write_report(exp: str | Path, samples: int = 6, overlays: int = 3) -> Path:
    """Write ``EXP/report.html`` from ``EXP/results.json`` (see the module docstring) and return its path."""
    exp = Path(exp)
    results = load_results(exp)
    episode, note = _episode(exp, results)
    body = [_head(results, episode), HOW_TO_READ, _headline(results), _chart(results), _per_class(results),
            _painting_quality(exp, results), _samples(exp, results, episode, note, samples),
            _overlays(exp, results, episode, note, overlays), _stages(results)]
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>paintseg: "
            f"{_esc(results.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    return write_text(exp / "report.html", page)


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``, or {} when it is missing or unreadable (the report shows what there is)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_browser() -> str | None:
    """The path of a Chromium-family browser on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def screenshot(html_file: str | Path, png: str | Path, width: int = 1400, height: int | None = None,
               browser: str | None = None, part: int = 6000) -> Path:
    """Render ``html_file`` with headless Chromium into ``png``, ``width`` pixels wide and as high as the whole page
    (or ``height`` pixels); return its path. A page higher than ``part`` pixels is rendered in parts, each with the
    page shifted up, and stitched into one PNG (one headless window cannot be arbitrarily tall)."""
    from PIL import Image

    html_file, png = Path(html_file), Path(png)
    browser = browser or find_browser()
    if browser is None:
        raise ReportError(f"no Chromium-family browser ({', '.join(BROWSERS)}) on PATH to render {html_file}; "
                          f"install Debian's chromium: apt-get install chromium")
    if not html_file.is_file():
        raise ReportError(f"{html_file}: no such page; write it with write_report first")
    png.parent.mkdir(parents=True, exist_ok=True)
    png = png.resolve()
    png.unlink(missing_ok=True)
    page = html_file.read_text()
    total = height or _page_height(browser, page, width, html_file)
    with tempfile.TemporaryDirectory() as tmp:
        shots = []
        for i, top in enumerate(range(0, total, part)):
            # beside the page, so that its relative links (a site's stylesheets and images) resolve
            shifted = html_file.with_name(f".screenshot-{os.getpid()}-part{i}.html")
            shifted.write_text(page.replace("</head>", f"<style>html{{margin-top:-{top}px}}</style></head>", 1))
            shot = Path(tmp) / f"part{i}.png"
            try:
                _chromium(browser, [f"--window-size={width},{min(part, total - top)}", f"--screenshot={shot}",
                                    shifted.resolve().as_uri()], html_file)
            finally:
                shifted.unlink(missing_ok=True)
            if not shot.is_file() or shot.stat().st_size == 0:
                raise ReportError(f"{browser} wrote no screenshot of {html_file} (part {i + 1})")
            shots.append(Image.open(shot).convert("RGB"))
        whole = Image.new("RGB", (width, sum(s.height for s in shots)), "white")
        y = 0
        for s in shots:
            whole.paste(s, (0, y))
            y += s.height
        whole.save(png)
    return png


def _chromium(browser: str, args: list[str], html_file: Path) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--hide-scrollbars", "--virtual-time-budget=5000", *args]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        raise ReportError(f"{browser} did not render {html_file} within 180 s") from None
    except OSError as e:
        raise ReportError(f"{browser}: cannot run it ({e}); install Debian's chromium: apt-get install chromium") \
            from None
    return proc.stdout


def _page_height(browser: str, page: str, width: int, html_file: Path) -> int:
    """The rendered height of the page in pixels at ``width``: Chromium dumps the DOM after a script has written
    the height into it."""
    probe = page.replace("</body>", "<script>document.body.setAttribute('data-height', "
                         "document.documentElement.scrollHeight)</script></body>", 1)
    path = html_file.with_name(f".screenshot-{os.getpid()}-probe.html")  # beside the page: its links resolve
    path.write_text(probe)
    try:
        dom = _chromium(browser, [f"--window-size={width},1000", "--dump-dom", path.resolve().as_uri()], html_file)
    finally:
        path.unlink(missing_ok=True)
    m = re.search(r'data-height="(\d+)"', dom)
    if m is None:
        raise ReportError(f"{browser} could not measure the height of {html_file}; pass a height")
    return max(1, int(m.group(1)))
