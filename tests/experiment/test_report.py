"""The experiment report: a hand-made experiment folder (real paint and curated sets, fake predictions)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_episode
from PIL import Image

from paintseg.config import CurateConfig, PaintConfig, PlaceConfig
from paintseg.curate.pipeline import curate
from paintseg.data.episode import Episode
from paintseg.data.raster import write_label
from paintseg.errors import PaintsegError
from paintseg.experiment.figures import sample_grid
from paintseg.experiment.spec import ExperimentConfig
from paintseg.experiment.page import hms
from paintseg.experiment.report import ReportError, load_results, write_report
from paintseg.experiment.screenshot import find_browser, screenshot
from paintseg.paint.copy_paste import CopyPasteBackend
from paintseg.paint.generate import generate

CLASSES = ("field", "water", "road", "pool")
BASE = ("field", "water", "road")
STAGES = ("generator", "paint", "curate", "train", "predict")


def _metrics(base: float, novel: float) -> dict:
    return {"per_class_iou": {"field": base + 10, "water": base, "road": base - 10, "pool": novel},
            "roles": {"field": "base", "water": "base", "road": "base", "pool": "novel"},
            "base_miou": base, "novel_miou": novel, "score": 0.4 * base + 0.6 * novel}


def _stat(mean: float, std: float) -> dict:
    return {"mean": mean, "std": std}


def _summary(arm: str, base: tuple, novel: tuple, gain: dict | None) -> dict:
    score = (0.4 * base[0] + 0.6 * novel[0], 0.3)
    return {"arm": arm, "model": "unet-resnet18", "n": 2, "base_miou": _stat(*base), "novel_miou": _stat(*novel),
            "score": _stat(*score), "per_class_iou": {c: _stat(base[0], 1.0) for c in BASE} | {"pool": _stat(*novel)},
            "gain": gain}


def _predictions(episode: Episode, folder: Path, shift: int) -> None:
    """The query labels themselves (shift 0) or shifted sideways: a perfect and a worse 'model'."""
    for q in episode.query:
        write_label(folder / f"{q.stem}.png", np.roll(episode.read_label(q).array, shift, axis=1),
                    classes=episode.classes)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """EXP with 2 arms (baseline, copy-paste) × 1 model × 2 seeds, a real painted set and a curated one."""
    root = tmp_path_factory.mktemp("report")
    episode = Episode(make_tiny_episode(root / "episode"))
    exp = root / "exp"
    paint, cur = exp / "stages/paint-copy-paste-s0-aa11", exp / "stages/curate-copy-paste-s0-bb22"
    generate(episode, CopyPasteBackend(), paint, PlaceConfig(per_class=4), PaintConfig(candidates=2), seed=0, progress=False)
    summary = curate(episode, paint, cur, CurateConfig(refine="grabcut", keep="top:0.5"), progress=False)
    from paintseg.evaluate.assess import Assessment, assess_painting

    pq = exp / "stages/painting-quality-cc33"
    quality = assess_painting(episode, {"copy-paste": CopyPasteBackend(), "copy-paste-match":
                                        CopyPasteBackend(colour="match")},
                              Assessment(tests=3, against="copy-paste", samples_dir=pq / "samples", samples=2))
    quality.pop("records")
    quality["folder"] = str(pq.relative_to(exp))
    runs = []
    for arm, shift, metrics in (("baseline", 3, (_metrics(40.0, 2.0), _metrics(40.6, 2.8))),
                                ("copy-paste", 0, (_metrics(41.0, 5.0), _metrics(41.4, 6.0)))):
        for seed in (0, 1):
            run = f"stages/train-{arm}-unet-resnet18-s{seed}"
            _predictions(episode, exp / run / "pred", shift + seed)
            runs.append({"arm": arm, "model": "unet-resnet18", "seed": seed, "run": run, "predictions": f"{run}/pred",
                         "metrics": metrics[seed]})
    results = {
        "version": 2, "name": "tiny", "config": ExperimentConfig(
            name="tiny", episode={"path": str(episode.root)}, arms=["baseline", "copy-paste"]).model_dump(mode="json"),
        "episode": str(episode.root), "novel": ["pool"], "complete": True,
        "arms": ["baseline", "copy-paste"], "models": ["unet-resnet18"], "seeds": [0, 1], "runs": runs,
        "summary": [_summary("baseline", (40.3, 0.5), (2.4, 0.57), {"novel_miou": 0.0, "score": 0.0}),
                    _summary("copy-paste", (41.2, 0.28), (5.5, 0.71), {"novel_miou": 3.1, "score": -1.25})],
        "synthetic": [{"seed": 0, "paint": {"copy-paste": str(paint.relative_to(exp))},
                       "curated": {"copy-paste": str(cur.relative_to(exp))}, "summaries": {"copy-paste": summary}}],
        "painting_quality": quality,
        "stages": [{"stage": s, "folder": f"stages/{s}-x{i}", "seconds": 3725.4 if s == "train" else 12.0 * i,
                    "peak_rss_mb": 900.0 + i, "cached": s == "paint"} for i, s in enumerate(STAGES)],
        "wall_seconds": 3800.0, "environment": {"python": "3.11.7", "torch": "2.14.1", "threads": 1, "device": "cpu"},
        "command": "paintseg run configs/tiny.yaml --out runs/tiny",
    }
    (exp / "results.json").write_text(json.dumps(results, indent=1))
    return exp


def _copy(experiment: Path, tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    shutil.copytree(experiment, exp)
    return exp


def _images(page: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_is_one_self_contained_page_with_every_section(experiment: Path) -> None:
    out = write_report(experiment, samples=4, overlays=2)
    assert out == experiment / "report.html" and not list(experiment.glob(".*partial"))
    page = out.read_text()
    # novel chart, placement map + surroundings, copy-paste sample grid, prediction overlays, stage chart
    images = _images(page)
    assert page.count("data:image/png;base64,") == len(images) == 6
    assert 'alt="painting quality samples"' in page
    assert "Where seed 0's instances went" in page and 'alt="placements"' in page
    assert all(im.width > 300 and im.height > 150 for im in images)
    assert "<script" not in page and 'src="http' not in page and "<link" not in page
    assert "40.30 ± 0.50" in page and "5.50 ± 0.71" in page and "<b>5.50 ± 0.71</b>" in page  # best novel: bold
    assert '<span class="up">+3.10</span>' in page and '<span class="down">-1.25</span>' in page
    assert all(name in page for name in CLASSES) and "pool (novel)" in page
    assert all(f"<td>{stage}</td>" in page for stage in STAGES)
    assert "1:02:05" in page and "paintseg run configs/tiny.yaml" in page and "0.4 · base" in page
    assert "kept 2" in page and "outside top fraction 2" in page  # the curation summary of the painted arm
    quality = load_results(experiment).painting_quality.backends["copy-paste"]
    assert "3b. Painting quality" in page and f'<td class="num">{quality["delta_e"]:.2f}</td>' in page and quality["tests"] == 3
    assert 'class="missing"' not in page


def test_missing_folders_are_named_not_fatal(experiment: Path, tmp_path: Path) -> None:
    exp = _copy(experiment, tmp_path)
    shutil.rmtree(exp / "stages/curate-copy-paste-s0-bb22")
    shutil.rmtree(exp / "stages/train-copy-paste-unet-resnet18-s0/pred")
    page = write_report(exp).read_text()
    assert "missing: curated folder" in page and "curate-copy-paste-s0-bb22" in page
    assert "missing: prediction folder" in page and "train-copy-paste-unet-resnet18-s0" in page
    assert page.count("data:image/png;base64,") == 5  # the sample grid is gone; overlays show 'missing' tiles


def test_baseline_only_experiment_says_nothing_was_painted(experiment: Path, tmp_path: Path) -> None:
    exp = _copy(experiment, tmp_path)
    results = json.loads((exp / "results.json").read_text())
    results.update(arms=["baseline"], synthetic=[], painting_quality=None, runs=[r for r in results["runs"] if r["arm"] == "baseline"],
                   summary=[dict(results["summary"][0], gain=None)])
    results.update(episode=str(tmp_path / "gone"), complete=False)
    (exp / "results.json").write_text(json.dumps(results))
    page = write_report(exp).read_text()
    assert "no synthetic arm in this experiment" in page and "partial results" in page
    assert f"missing: episode {tmp_path / 'gone'}" in page
    assert "<b>2.40 ± 0.57</b>" in page and "<td>copy-paste</td>" not in page


def test_bad_results_json_raises_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"results\.json: missing; run `paintseg run CONFIG --out EXP` first"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text('{"runs": [')
    with pytest.raises(PaintsegError, match=r"results\.json: not valid JSON"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"arms": [], "models": [], "runs": {}, "summary": []}))
    with pytest.raises(ReportError, match=r"results\.json: 'runs' is missing or not a list"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_results_of_version_1_are_read_as_version_2_and_a_newer_version_is_refused(experiment: Path,
                                                                                   tmp_path: Path) -> None:
    exp = _copy(experiment, tmp_path)
    current = json.loads((exp / "results.json").read_text())
    page = write_report(exp).read_text()
    old = json.loads(json.dumps(current))  # as run wrote it before results had a version
    del old["version"]
    quality = old["painting_quality"]
    quality["paired_vs_copy_paste"] = quality.pop("paired")
    del quality["against"], quality["conditioning"]
    quality["filter_quality"] = {"tests": 5, "candidates": 4, "candidate_class_rate": 0.4, "filters": {}}
    (exp / "results.json").write_text(json.dumps(old))
    migrated = load_results(exp)
    assert migrated.version == 2 and migrated.painting_quality.against == "copy-paste"
    assert migrated.painting_quality.paired == current["painting_quality"]["paired"]
    assert set(migrated.painting_quality.filter_quality) == {"diffusion"}  # the one painter it judged
    strip = re.compile(r"report written [0-9: -]+")
    assert strip.sub("", write_report(exp).read_text()) == strip.sub("", page)
    (exp / "results.json").write_text(json.dumps({**current, "version": 3}))
    with pytest.raises(ReportError, match=r"results version 3 is newer than this paintseg reads \(2\); upgrade"):
        write_report(exp)
    broken = json.loads(json.dumps(current))
    broken["summary"][1]["novel_miou"] = {"std": 1.0}
    (exp / "results.json").write_text(json.dumps(broken))
    with pytest.raises(ReportError, match=r"results\.json: summary\.1\.novel_miou\.mean: Field required .*run the "
                                          r"experiment again"):
        write_report(exp)


def _captions(fig) -> list[str]:
    return [ax.get_xlabel().replace("\n", " ") for ax in fig.axes]


def test_sample_grid_shows_scores_choice_rejections_and_label_masks(experiment: Path, tmp_path: Path) -> None:
    episode = Episode(json.loads((experiment / "results.json").read_text())["episode"])
    paint, cur = experiment / "stages/paint-copy-paste-s0-aa11", experiment / "stages/curate-copy-paste-s0-bb22"
    fig = sample_grid(episode, paint, cur, 3)
    captions = _captions(fig)
    assert len(fig.axes) == 3 * 6  # reference, scene, 2 candidates, chosen, mask
    assert sum(c.endswith("✓") for c in captions) == 3 and sum(c.startswith("score 0.") for c in captions) == 6
    assert "rejected: outside top fraction" in captions and "grabcut mask" in captions
    assert any(c.startswith("support_") for c in captions) and any(c.startswith("train_") for c in captions)
    # no filter, no refiner: candidate 0 unscored, labelled by its own object mask
    curate(episode, paint, tmp_path / "plain", CurateConfig(filter="none"), progress=False)
    captions = _captions(sample_grid(episode, paint, tmp_path / "plain", 2))
    assert captions.count("no score ✓") == 2 and captions.count("no score") == 2
    assert captions.count("object mask (no refiner)") == 2 and "k0 kept" in captions


def test_hms() -> None:
    assert (hms(0.4), hms(59.6), hms(3725.4), hms(None)) == ("0:00:00", "0:01:00", "1:02:05", "n/a")


def test_screenshot_without_a_browser_says_what_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr("paintseg.experiment.screenshot.shutil.which", lambda name: None)
    assert find_browser() is None
    with pytest.raises(ReportError, match="apt-get install chromium"):
        screenshot(tmp_path / "report.html", tmp_path / "report.png")


def test_screenshot_that_writes_nothing_is_an_error(experiment: Path, tmp_path: Path) -> None:
    true = shutil.which("true")
    if true is None:
        pytest.skip("no `true` program")
    (tmp_path / "page.html").write_text("<p>hi</p>")
    with pytest.raises(ReportError, match="wrote no screenshot"):
        screenshot(tmp_path / "page.html", tmp_path / "page.png", browser=true, height=800)
    with pytest.raises(ReportError, match="could not measure the height"):
        screenshot(tmp_path / "page.html", tmp_path / "page.png", browser=true)


@pytest.mark.skipif(find_browser() is None, reason="no chromium on PATH (apt-get install chromium)")
def test_screenshot_renders_the_report(experiment: Path, tmp_path: Path) -> None:
    page = write_report(experiment, samples=3, overlays=1)
    png = screenshot(page, tmp_path / "shot.png", width=900, height=1200)
    image = np.asarray(Image.open(png).convert("RGB"))
    assert png.is_file() and image.shape[1] == 900
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10


@pytest.mark.skipif(find_browser() is None, reason="no chromium on PATH (apt-get install chromium)")
def test_screenshot_captures_the_whole_page_in_stitched_parts(tmp_path: Path) -> None:
    blocks = "".join(f'<div style="height:400px;background:rgb({40 * i},{255 - 40 * i},128)">{i}</div>'
                     for i in range(6))
    page = tmp_path / "tall.html"
    page.write_text(f"<!DOCTYPE html><html><head></head><body style='margin:0'>{blocks}</body></html>")
    image = np.asarray(Image.open(screenshot(page, tmp_path / "tall.png", width=300, part=700)).convert("RGB"))
    assert image.shape[:2] == (2400, 300)  # 6 blocks of 400 px, rendered in 4 parts of <= 700 px
    for i in range(6):  # every block where it belongs, the last one included
        assert tuple(image[400 * i + 200, 150]) == (40 * i, 255 - 40 * i, 128), i


def test_painting_quality_section_reads_the_probe_ceiling_and_the_filter(experiment: Path, tmp_path: Path) -> None:
    exp = _copy(experiment, tmp_path)
    results = json.loads((exp / "results.json").read_text())
    quality = results["painting_quality"]
    quality["filter_quality"] = {"diffusion": {"tests": 5, "candidates": 4, "candidate_class_rate": 0.4, "filters": {
        "handcrafted": {"tests": 5, "p_class_gain": 0.012, "delta_e_gain": -3.1, "spearman_p_class": 0.2,
                        "auc_probe": 0.61}}}}
    for rate, low in ((0.9, False), (0.1, True)):
        quality["probe"]["real_novel_rate"] = rate
        (exp / "results.json").write_text(json.dumps(results))
        page = write_report(exp).read_text()
        assert ("(a low ceiling: the support shots do not look like the query's instances)" in page) == low
        assert f"it calls {rate:.0%} of" in page
    assert ("Filter handcrafted on diffusion's paintings, 5 held-out tests of 4 candidates each (40% of candidates "
            "called the class by the probe): its pick changes the probe's probability by +0.012 and the ΔE to the real instances by -3.1") in page
    assert "ROC-AUC for the probe's label 0.61" in page


def test_the_report_says_how_the_placement_prior_weighed_labels(experiment: Path, tmp_path: Path) -> None:
    exp = _copy(experiment, tmp_path)
    prior = exp / "stages/paint-copy-paste-s0-aa11/prior.json"
    prior.write_text(json.dumps({"labels": {}, "mix": {"pool": {
        "alpha": 1.0, "label_agreement": 0.29, "why": "label prior refused: the random spots it scores highest have "
        "a mean appearance percentile of 0.29 (< 0.6): the labels point away from surroundings like the support's"}}}))
    page = write_report(exp).read_text()
    assert "pool: appearance weight 1.0, label agreement 0.29 (label prior refused:" in page
    prior.write_text("not json")
    assert "How the placement prior weighed" not in write_report(exp).read_text()  # unreadable: left out, no error


def test_a_curve_with_no_held_out_tests_is_said_not_crashed_on() -> None:
    """A painting-quality stage that found no held-out test (e.g. 128-px tiles whose query holds no fitting instance)
    records class_rate null at every point: the report says so (regression: a TypeError ended the run before
    report.html was written)."""
    from paintseg.experiment.report import _curve

    points = [{"step": s, "strength": 0.3, "minutes": m, "class_rate": None, "p_class": None, "delta_e": None,
               "novelty": None, "diversity": None, "tests": 0} for s, m in ((2, 0.1), (4, 0.2))]
    html = _curve({"points": points, "controls": {"copy-paste": {"class_rate": None, "tests": 0}}})
    assert "Not measured" in html and "no held-out test" in html


def test_the_verdicts_figure_is_in_the_table_one_seed_has_no_spread_and_the_reading_guide_comes_first(
        experiment: Path, tmp_path: Path) -> None:
    """Issue 32's report items: the headline's "... over copy-paste-noise" figure has its column; a one-seed arm
    shows its mean without "± 0.00"; "How to read this" precedes the results."""
    exp = _copy(experiment, tmp_path)
    data = json.loads((exp / "results.json").read_text())
    data["arms"] = data["config"]["arms"] = ["baseline", "copy-paste-noise", "diffusion-noise"]
    data["config"]["generator"] = {"train": {"size": "tiny"}}
    data["seeds"], data["synthetic"] = [0], []
    data["summary"] = [dict(_summary(arm, (40.0, 0.0), (novel, 0.0), None), n=1)
                       for arm, novel in (("baseline", 2.0), ("copy-paste-noise", 9.0), ("diffusion-noise", 6.0))]
    seeds = {"mean": -3.0, "beyond": None, "differences": {"0": -3.0}}
    data["comparisons"] = [{"arm": "diffusion-noise", "against": "copy-paste-noise", "model": "unet-resnet18",
                            "novel_miou": {"metric": "novel_miou", "seeds": seeds, "tiles": None,
                                           "beyond": False, "verdict": "within noise"}}]
    (exp / "results.json").write_text(json.dumps(data))
    page = write_report(exp).read_text()
    verdict = re.search(r'<p class="verdict"><b>(.*?)</b>', page).group(1)
    assert "3.0" in verdict and "copy-paste-noise" in verdict
    assert "<th>novel vs copy-paste-noise</th>" in page and '<span class="down">-3.00</span> ≈' in page
    assert "± 0.00" not in page and '<b>9.00</b>' in page  # one seed: the mean alone
    data["environment"]["threads_choice"] = {"threads": 1, "reason": "1.0 of 2 cores busy"}
    (exp / "results.json").write_text(json.dumps(data))
    page = write_report(exp).read_text()
    assert "threads choice threads 1, reason 1.0 of 2 cores busy" in page and "{&#x27;" not in page
    assert page.index("How to read this") < page.index("1. Results")


def test_placement_boxes_are_drawn_outside_so_a_small_object_stays_visible() -> None:
    from paintseg.experiment.figures import boxes_overlay

    image = np.zeros((64, 64, 3), np.uint8)
    image[30:34, 30:34] = 200  # a 4-pixel painted object filling its box
    drawn = boxes_overlay(image, [(30, 30, 34, 34)])
    s = drawn.shape[0] / 64
    inside = drawn[int(30 * s) : int(np.ceil(34 * s)), int(30 * s) : int(np.ceil(34 * s))]
    assert (inside == 200).all()  # the object is untouched
    assert (drawn[int(30 * s) - 1, int(30 * s) : int(34 * s)] == (255, 215, 0)).all()  # the box just outside
