"""Painting quality on held-out query scenes (paintseg.evaluate.painting) and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from paintseg.config import CurateConfig, PaintConfig
from paintseg.cli import app
from paintseg.data.episode import Episode
from paintseg.evaluate.painting import colour_distances, paired_wins, painting_quality
from paintseg.paint.candidates import Candidate
from paintseg.paint.copy_paste import CopyPasteBackend
from paintseg.place.references import extract_references


class GreyBackend:
    """Paints every object mid-grey: far from any real cyan pool."""

    name = "grey"

    def paint(self, jobs, candidates):
        out = []
        for job in jobs:
            image = job.window_image.copy()
            image[job.mask] = 128
            out.append([Candidate(image, job.mask.copy(), job.mask.copy()) for _ in range(candidates)])
        return out


def test_colour_distances_are_zero_for_the_same_pixels_and_grow_with_a_shift():
    rng = np.random.default_rng(0)
    real = rng.normal((120, 100, 80), 15, (400, 3)).clip(0, 255).astype(np.uint8)
    same = colour_distances(real, real)
    assert same == {"delta_e": 0.0, "delta_l_std": 0.0, "hist": same["hist"]} and abs(same["hist"]) < 1e-9
    brighter = colour_distances(np.clip(real.astype(int) + 40, 0, 255).astype(np.uint8), real)
    assert 10 < brighter["delta_e"] < 25 and brighter["hist"] > 0.3


def test_painting_quality_ranks_a_faithful_backend_above_a_grey_one(tiny_episode: Path):
    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    q = painting_quality(ep, {"copy-paste": CopyPasteBackend(), "grey": GreyBackend()}, refs, tests=6)
    cp, grey = q["backends"]["copy-paste"], q["backends"]["grey"]
    assert cp["tests"] == grey["tests"] == 6 and cp["per_class"]["pool"]["tests"] == 6
    assert cp["delta_e"] < 10 < 30 < grey["delta_e"]  # support pools are the query pools' cyan; grey is not
    probe = q["probe"]  # cyan pools against fields, water and roads: the probe separates them
    assert probe["real_novel_rate"] >= 0.8 and probe["real_base_rate"] <= 0.2, probe
    assert cp["class_rate"] >= 0.8 and cp["p_class"] > grey["p_class"] + 0.2  # grey keeps a pool's shape only
    wins = paired_wins(q, "copy-paste", "grey")
    assert wins == {"tests": 6, "wins": 6, "ties": 0, "p": 0.0312}
    # the nearest support instance is at most as far as the painting's own reference (one of them), for every test
    for rows in q["records"].values():
        assert all(0 <= r["novelty_support"] <= r["novelty"] + 1e-6 for r in rows)
    assert cp["novelty_support"] < grey["novelty_support"]  # a paste is near some shot; a grey blob is near none


def test_painting_quality_cli_writes_the_comparison(tiny_episode: Path, tmp_path: Path):
    out = tmp_path / "q.json"
    r = CliRunner().invoke(app, ["painting-quality", str(tiny_episode), "--generator", "copy-paste", "--generator",
                                 "copy-paste:match", "--out", str(out), "--per-class", "4", "--figure",
                                 str(tmp_path / "q.png"), "--samples", "3"])
    assert r.exit_code == 0, r.output
    figure = Image.open(tmp_path / "q.png")
    assert figure.width > 400 and figure.height > 3 * 150  # 3 rows of query window + 2 paintings
    q = json.loads(out.read_text())
    assert set(q["backends"]) == {"copy-paste", "copy-paste:match"}
    assert q["against"] == "copy-paste" and q["paired"]["copy-paste:match"]["tests"] == 4
    assert "copy-paste: 4 tests, delta_e" in r.output
    r = CliRunner().invoke(app, ["painting-quality", str(tiny_episode), "--generator", str(tmp_path / "nothing"),
                                 "--out", str(out)])
    assert r.exit_code == 2 and "no generator here" in r.output


def test_mask_quality_scores_refiners_on_real_query_instances(tiny_episode: Path):
    from paintseg.curate.refine import build_refiner
    from paintseg.evaluate.curation import mask_quality

    q = mask_quality(Episode(tiny_episode), {"none": build_refiner(CurateConfig(refine="none")),
                                            "grabcut": build_refiner(CurateConfig(refine="grabcut"))},
                     count=4)
    pool = q["per_class"]["pool"]
    assert pool["none"]["instances"] == pool["grabcut"]["instances"] == 4
    # the cyan squares stand out: GrabCut recovers them far better than the rectangle around them
    assert pool["grabcut"]["iou"] > 70 and pool["grabcut"]["iou"] > pool["none"]["iou"] + 15


def test_masked_psnr_and_ssim():
    from paintseg.evaluate.conditioning import masked_psnr, masked_ssim

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    assert masked_ssim(image, image, mask) == 1.0 and masked_psnr(image, image, mask) > 140  # the 1e-10 floor
    shifted = np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 27 < masked_psnr(shifted, image, mask) < 29  # ~10 grey levels off: 20 log10(255 / ~9.5)
    noisy = np.clip(image + rng.normal(0, 40, image.shape), 0, 255).astype(np.uint8)
    assert masked_ssim(noisy, image, mask) < 0.9


def test_conditioning_quality_paints_held_out_instances_three_ways(tiny_episode: Path):
    import torch

    from paintseg.config import GeneratorConfig
    from paintseg.evaluate.conditioning import conditioning_quality
    from paintseg.paint.diffusion import build_generator

    torch.manual_seed(0)
    config = GeneratorConfig(size="tiny", box_fraction=(0.02, 0.5))
    model = build_generator(config).eval()
    q = conditioning_quality(Episode(tiny_episode), (model, config), PaintConfig(steps=2), count=2)
    s = q["summary"]
    assert s["instances"] == len(q["records"]) > 0 and {r["mask_kind"] for r in q["records"]} == {"rectangle",
                                                                                                  "silhouette"}
    assert all(0 < s[f"psnr_{v}"] < 60 for v in ("true", "wrong", "null"))
    assert s["psnr_true_beats_wrong"]["of"] == s["instances"] and 0 <= s["psnr_true_beats_wrong"]["p"] <= 1


class MixedBackend:
    """Candidates 0..K-2: the silhouette painted grey; the last: copy-paste (the reference's cyan pool)."""

    name = "mixed"

    def paint(self, jobs, candidates):
        grey, pasted = GreyBackend().paint(jobs, candidates - 1), CopyPasteBackend().paint(jobs, 1)
        return [g + p for g, p in zip(grey, pasted)]


class ColourEncoder:
    """Embeds an image by its mean colour (``blind``: the same vector for every image, so all scores tie)."""

    name = "colour"

    def __init__(self, blind: bool = False):
        self.blind = blind

    def embed(self, images, masks=None):
        v = np.stack([np.ones(3) if self.blind else im.reshape(-1, 3).mean(0) - 100 for im in images])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_filter_quality_rewards_a_filter_that_picks_the_faithful_candidate(tiny_episode: Path):
    from paintseg.evaluate.curation import filter_quality

    ep = Episode(tiny_episode)
    q = filter_quality(ep, MixedBackend(), {"colour": ColourEncoder(), "blind": ColourEncoder(blind=True)},
                       extract_references(ep), candidates=3, tests=4)
    good, blind = q["filters"]["colour"], q["filters"]["blind"]
    assert q["tests"] == good["tests"] == 4 and all(len(r["p_class"]) == 3 for r in q["records"])
    # the colour filter picks the pasted pool: the probe's probability up, the colour distance down; the blind one
    # (all scores tied) takes the first candidate, a grey one: the reverse
    assert good["p_class_gain"] > 0.1 > 0 > -0.05 > blind["p_class_gain"]  # grey keeps the pool's shape: p > 0
    assert good["delta_e_gain"] < -5 < 5 < blind["delta_e_gain"]
    assert good["spearman_p_class"] > 0.5 and blind["spearman_p_class"] is None  # no ranking to correlate
    assert blind["auc_probe"] == 0.5 and 0 <= good["auc_probe"] <= 1  # pooled over tests: scores of unlike windows
    both = filter_quality(ep, MixedBackend(), {"colour": ColourEncoder()}, extract_references(ep), candidates=3,
                          tests=2, modes=("window", "region"))
    assert set(both["filters"]) == {"colour/window", "colour/region"} and both["modes"] == ["window", "region"]
    with pytest.raises(ValueError, match="at least 2 candidates"):
        filter_quality(ep, MixedBackend(), {}, extract_references(ep), candidates=1)


def test_painting_quality_cli_measures_conditioning_and_filters_of_a_generator(tiny_episode: Path, tmp_path: Path):
    import torch

    from paintseg.config import GeneratorConfig
    from paintseg.paint.diffusion import build_generator, save_generator

    torch.manual_seed(0)
    config = GeneratorConfig(size="tiny", box_fraction=(0.02, 0.5))
    save_generator(build_generator(config), None, config, tmp_path / "gen")
    out = tmp_path / "q.json"
    r = CliRunner().invoke(app, ["painting-quality", str(tiny_episode), "--generator", "copy-paste", "--generator",
                                 str(tmp_path / "gen"), "--out", str(out), "--per-class", "2", "--steps", "2",
                                 "--conditioning", "1", "--filter-quality", "2", "--filter", "handcrafted",
                                 "--figure", str(tmp_path / "q.png")])
    assert r.exit_code == 0, r.output
    q = json.loads(out.read_text())
    gen = str(tmp_path / "gen")
    assert set(q["conditioning"]) == set(q["filter_quality"]) == {gen}  # GEN backends only, not copy-paste
    cond = q["conditioning"][gen]
    assert cond["instances"] > 0 and sum(c["instances"] for c in cond["per_class"].values()) == cond["instances"]
    assert q["filter_quality"][gen]["tests"] == 1 and "conditioning of " in r.output
    figure = Image.open(tmp_path / "q_conditioning.png")  # one row per class, 7 columns
    assert cond["figure"] == str(tmp_path / "q_conditioning.png") and figure.width > 7 * 150
    assert f"filter handcrafted on {gen}: pick vs random p_class" in r.output
    r = CliRunner().invoke(app, ["painting-quality", str(tiny_episode), "--generator", "copy-paste", "--out",
                                 str(out), "--filter-quality", "1"])
    assert r.exit_code == 2 and "at least 2 candidates to choose from" in r.output


def test_an_assessment_that_cannot_be_measured_is_refused_before_painting(tiny_episode: Path) -> None:
    from paintseg.curate.score import build_encoder
    from paintseg.errors import PaintsegError
    from paintseg.evaluate.assess import Assessment, assess_painting

    ep, backends = Episode(tiny_episode), {"copy-paste": CopyPasteBackend()}
    what = Assessment(tests=2)
    what.filters, what.filter_candidates = {"handcrafted": build_encoder("handcrafted")}, 1  # set as run sets them
    with pytest.raises(PaintsegError, match="filter quality with 1 candidate\\(s\\): a filter needs at least 2"):
        assess_painting(ep, backends, what)
    with pytest.raises(PaintsegError, match="paired against 'gen', which is not among the backends \\(copy-paste\\)"):
        assess_painting(ep, backends, Assessment(tests=2, against="gen"))
