"""The experiment report: one self-contained HTML page (figures embedded as PNG, inline CSS, no scripts) from
``EXP/results.json`` and the stage folders it names, and an optional screenshot of it with headless Chromium::

    write_report("runs/dubai")                               # -> runs/dubai/report.html
    screenshot("runs/dubai/report.html", "runs/dubai/report.png")  # paintseg.experiment.screenshot

Sections: headline table (mean ± std over seeds, gain over the baseline), novel-IoU chart, per-class IoU, sample grids
of the painted sets (reference, scene window, candidates with scores, chosen one, its label mask), prediction overlays
on query images, stage timings, and how to read it. Missing pieces (no synthetic arm, a deleted folder) are named in
their section instead of failing the report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.files import write_text

from .figures import curve_chart, novel_chart, painting_samples_figure, stage_chart
from .gallery import overlays_section, samples_section
from .page import CSS, ReportError, esc, gain, hms, img, missing, ok, path_in, pm, table, td
from .results import Gain, PaintingQuality, Results, ResultsError, SummaryRow
from .arms import legend
from .summary import verdict_line


# --------------------------------------------------------------------------------------------- loading
def load_results(exp: str | Path) -> Results:
    """``EXP/results.json`` through its schema (:class:`paintseg.experiment.results.Results`)."""
    try:
        return Results.load(Path(exp) / "results.json")
    except ResultsError as e:
        raise ReportError(str(e)) from None


def _episode(exp: Path, results: Results) -> tuple[Episode | None, str | None]:
    path = path_in(exp, results.episode)
    if path is None:
        return None, "results.json names no episode"
    try:  # the support/query lists the runs were scored on
        return Episode(path, split=results.config.episode.set), None
    except PaintsegError as e:
        return None, f"episode {path} is missing or unreadable ({e})"


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
    return "set-up: " + esc(" · ".join(parts)) + "<br>" if parts else ""


def _head(results: Results, episode: Episode | None = None) -> str:
    def shown(value) -> str:  # a mapping (the threads choice) as words, not a Python dict
        return ", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)

    env_line = " · ".join(f"{esc(k.replace('_', ' '))} {esc(shown(v))}" for k, v in results.environment.items())
    stage_seconds = sum(s.seconds for s in results.stages if ok(s.seconds))
    verdict = verdict_line(results.comparisons)
    disk = f" · folder {results.disk_mb:.0f} MB" if ok(results.disk_mb) else ""
    return (f"<h1>paintseg experiment: {esc(results.name)}</h1>"
            + (f"<p class=\"verdict\"><b>{esc(verdict)}</b></p>" if verdict else "")
            + f"<div class=\"meta\">"
            f"command: <code>{esc(results.command or 'n/a')}</code><br>" + _setup(results, episode) +
            f"report written {datetime.now().strftime('%Y-%m-%d %H:%M')} · time in stages {hms(stage_seconds)} "
            f"(every call, resumed runs included; {hms(results.wall_seconds)} in the last call){disk} · arms: "
            f"{esc(', '.join(results.arms))} · models: "
            f"{esc(', '.join(results.models))} · seeds: {esc(', '.join(map(str, results.seeds)))}<br>"
            f"environment: {env_line or 'n/a'}</div>"
            + (missing("partial results: the experiment has not finished (results.json says complete: false)")
               if not results.complete else ""))


def _headline(results: Results) -> str:
    rows = results.summary
    if not rows:
        return "<h2>1. Results</h2>" + missing("no summary rows in results.json: no run has finished")
    best: dict[str, float] = {}
    for r in rows:
        v = r.novel_miou.mean
        if ok(v) and v > best.get(r.model, -math.inf):
            best[r.model] = v
    # a column per control the run has, so the verdict's figure (against the strongest control) is in the table
    controls = [c for c in ("copy-paste", "copy-paste-noise") if c in results.arms] or ["copy-paste"]
    out = []
    for r in rows:
        gains = r.gain or Gain()
        baseline = r.arm == "baseline"
        is_best = ok(r.novel_miou.mean) and r.novel_miou.mean == best.get(r.model)
        out.append([td(esc(r.arm), False), td(esc(r.model), False), td(esc(r.n)),
                    td(pm(r.base_miou, r.n)), td(pm(r.novel_miou, r.n), bold=is_best), td(pm(r.score, r.n)),
                    td("—" if baseline else gain(gains.novel_miou) + _noise(results, r, "baseline")),
                    td("—" if baseline else gain(gains.base_miou) + _noise(results, r, "baseline", "base_miou")),
                    td("—" if baseline else gain(gains.score)),
                    *[td(_versus(results, r, control)) for control in controls]])
    note = "" if any(r.arm == "baseline" for r in rows) else missing("no baseline arm: gains are not available")
    return ("<h2>1. Results (IoU %, mean ± std over seeds)</h2>" + note
            + table(["arm", "model", "n", "base mIoU", "novel mIoU", "score", "gain novel", "gain base",
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
    if c is None or not ok(c.seed_mean()):
        return "—"
    return gain(c.seed_mean()) + _noise(results, row, control)


def _chart(results: Results) -> str:
    means, stds, seeds = {}, {}, defaultdict(list)
    for r in results.summary:
        if ok(r.novel_miou.mean):
            means[(r.arm, r.model)] = r.novel_miou.mean
            stds[(r.arm, r.model)] = r.novel_miou.std if ok(r.novel_miou.std) else 0.0
    for run in results.runs:
        seeds[(run.arm, run.model)].append(run.metrics.novel_miou)
    title = "<h2>2. Novel-class IoU per arm</h2>"
    if not means:
        return title + missing("no novel mIoU in the summary: nothing to chart")
    arms = [a for a in results.arms if any(k[0] == a for k in means)]
    models = [m for m in results.models if any(k[1] == m for k in means)]
    return title + img(novel_chart(arms, models, means, stds, dict(seeds)), "novel mIoU per arm") + (
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
        return title + missing("no per-class IoU in the summary")
    novel = set(results.novel) | {n for n, role in roles.items() if role == "novel"}
    header = ["arm", "model"] + [f'<span class="novel">{esc(n)} (novel)</span>' if n in novel else esc(n)
                                 for n in names]
    body = [[td(esc(r.arm), False), td(esc(r.model), False)]
            + [td(pm(r.per_class_iou.get(n), r.n)) for n in names]
            for r in results.summary]
    return title + table(header, body)


def _painting_quality(exp: Path, results: Results) -> str:
    title = "<h2>3b. Painting quality on held-out query scenes</h2>"
    quality = results.painting_quality
    if quality is None:
        return title + missing("not measured (no painting arm, or generation.quality_tests: 0)")
    novelty = [m for m in ("novelty", "novelty_support", "diversity")
               if any(m in row for row in quality.backends.values())]
    header = ["backend", "tests", "ΔE of mean colour", "Δ lightness spread", "histogram distance",
              f"closer than {esc(quality.against or 'copy-paste')} (ΔE)", "probe: is the class", *novelty,
              "s per test"]
    body = []
    for name, row in quality.backends.items():
        wins = quality.paired.get(name)
        versus = (f"{wins['wins']}/{wins['tests'] - wins['ties']} (p {wins['p']:.3f})" if wins and wins.get("p")
                  is not None else "")
        body.append([td(esc(name), False), td(str(row.get("tests", 0)))]
                    + [td(f"{row[m]:.2f}" if m in row else "") for m in ("delta_e", "delta_l_std", "hist")]
                    + [td(versus), td(f"{row['class_rate']:.0%} (p {row['p_class']:.2f})" if "class_rate" in row
                                        else "")]
                    + [td(f"{row[m]:.2f}" if m in row else "") for m in novelty]
                    + [td(f"{row['seconds_per_test']:.2f}" if "seconds_per_test" in row else "")])
    note = ("<p class=\"meta\">Every painting backend paints the same support reference into the same window of a "
            "held-out query image (a window free of the class); the painted object is compared with the real "
            "instances of its class in that image: CIE76 distance of the mean Lab colours, difference of the "
            "lightness spreads, 1 − Bhattacharyya coefficient of the Lab histograms. Lower is closer; the fourth "
            f"column counts the tests where a backend's ΔE is below {esc(quality.against or 'copy-paste')}'s "
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
        parts = "; ".join(f"{esc(c)}: " + ", ".join(f"{esc(n)} {v['iou']:.1f} % ({v['instances']} instances, "
                                                     f"{v['seconds_per_instance']:.2f} s each)" for n, v in r.items())
                          for c, r in masks.items())
        note += (f"<p class=\"meta\">Mask refinement on real held-out query instances (IoU with the true instance, "
                 f"recovered from the rectangle inpaint mask around it; 'none' is the rectangle): {parts}.</p>")
    for painter, filtering in quality.filter_quality.items():
        for name, row in (filtering.get("filters") or {}).items():
            if row.get("p_class_gain") is None:
                continue
            auc = f", ROC-AUC for the probe's label {row['auc_probe']:.2f}" if row.get("auc_probe") is not None else ""
            note += (f"<p class=\"meta\">Filter {esc(name)} on {esc(painter)}'s paintings, {row['tests']} held-out "
                     f"tests of {filtering['candidates']} candidates each ({filtering['candidate_class_rate']:.0%} of "
                     f"candidates called the class by the probe): its pick changes the probe's probability by "
                     f"{row['p_class_gain']:+.3f} and the ΔE to the real instances by {row['delta_e_gain']:+.1f} "
                     f"against a random pick (a gain is + and −){auc}.</p>")
    return title + note + table(header, body) + _painting_samples(exp, quality) + _curve(quality.curve)


def _curve(curve: dict | None) -> str:
    """The painter's learning curve (generator.train.snapshots): painting quality against training minutes."""
    if not curve or not curve.get("points"):
        return ""
    last = curve["points"][-1]
    if last.get("class_rate") is None:  # no held-out test could be painted (e.g. no query instance of the class)
        return ("<h3>The painter's learning curve</h3><p class=\"meta\">Not measured: the snapshots had no held-out "
                "test to paint (the query set holds no instance of a novel class that fits a test window).</p>")
    controls = "; ".join(f"{esc(n)} {r['class_rate']:.0%}" for n, r in curve["controls"].items()
                         if r.get("class_rate") is not None)
    minutes = f"{last['minutes']:.1f} min" if last.get("minutes") is not None else f"{last['step']} steps"
    text = (f"<h3>The painter's learning curve</h3><p class=\"meta\">The same held-out tests painted by the "
            f"generator's snapshots (EMA weights after half, a quarter, … of its training; a snapshot's learning rate "
            f"had not decayed yet, so each point is a lower bound of what that budget buys). After {minutes} of "
            f"training the probe calls {last['class_rate']:.0%} of its paintings the class (controls: {controls}); "
            f"novelty is the distance of a painting to its reference and diversity the distance between two "
            f"candidates, in the probe's feature space.</p>")
    return text + img(curve_chart(curve), "painter learning curve")


def _painting_samples(exp: Path, quality: PaintingQuality) -> str:
    """The first held-out tests as painted by every backend (object outlined in yellow)."""
    folder = path_in(exp, quality.folder)
    if not quality.samples or folder is None:
        return ""
    return img(painting_samples_figure(quality.model_dump(), folder / "samples"), "painting quality samples")


# --------------------------------------------------------------------------------------------- sections 7-8
def _stages(results: Results) -> str:
    title = "<h2>6. Stages</h2>"
    stages = results.stages
    if not stages:
        return title + missing("no stages recorded in results.json")
    rows = [[td(esc(s.stage), False), td(esc(s.folder or ""), False), td(hms(s.seconds)),
             td(f"{s.peak_rss_mb:.0f}" if ok(s.peak_rss_mb) else "n/a"),
             td("yes" if s.cached else "no", False)] for s in stages]
    seconds = [float(s.seconds) if ok(s.seconds) else 0.0 for s in stages]
    labels = [Path(s.folder).name if s.folder else s.stage for s in stages]
    texts = [hms(v) + (" (cached)" if s.cached else "") for v, s in zip(seconds, stages)]
    chart = img(stage_chart(labels, seconds, [s.cached for s in stages], texts), "seconds per stage")
    return (title + table(["stage", "folder", "time (h:mm:ss)", "peak RSS MB", "cached"], rows)
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
<li>Arms: """ + esc(legend()) + """.</li></ul>"""


# --------------------------------------------------------------------------------------------- API
def write_report(exp: str | Path, samples: int = 6, overlays: int = 3) -> Path:
    """Write ``EXP/report.html`` from ``EXP/results.json`` (see the module docstring) and return its path."""
    exp = Path(exp)
    results = load_results(exp)
    episode, note = _episode(exp, results)
    body = [_head(results, episode), HOW_TO_READ, _headline(results), _chart(results), _per_class(results),
            _painting_quality(exp, results), samples_section(exp, results, episode, note, samples),
            overlays_section(exp, results, episode, note, overlays), _stages(results)]
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>paintseg: "
            f"{esc(results.name)}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    return write_text(exp / "report.html", page)


