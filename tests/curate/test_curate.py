"""The curation stage end to end: score → best of K → keep per class → refine → compose, on constructed paintings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintseg.config import ConfigError, CurateConfig, PaintConfig, PlaceConfig
from paintseg.curate.pipeline import CurationModels, KeepRule, curate, format_summary
from paintseg.curate.score import HandcraftedEncoder
from paintseg.data.episode import Episode
from paintseg.data.raster import read_label
from paintseg.errors import PaintsegError
from paintseg.paint.candidates import Candidate, WindowJob
from paintseg.paint.generate import generate

POOL = 4


class RightOneBackend:
    """Paints K candidates per placement: candidate ``placement % K`` copies the reference's colour into an ellipse
    inside the box, the others paint a wrong colour there. The inpaint mask is the (larger) rectangle."""

    name = "constructed"

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        out = []
        for job in jobs:
            ref = job.reference
            colour = ref.image[ref.mask].mean(0)
            b = job.box
            yy, xx = np.mgrid[: job.mask.shape[0], : job.mask.shape[1]]
            cy, cx = (b.y0 + b.y1 - 1) / 2, (b.x0 + b.x1 - 1) / 2
            ellipse = ((yy - cy) / max(b.height / 2, 1)) ** 2 + ((xx - cx) / max(b.width / 2, 1)) ** 2 <= 1
            ellipse &= job.mask
            cands = []
            for k in range(candidates):
                image = job.window_image.copy()
                rng = np.random.default_rng([job.index, k])
                fill = colour if k == job.index % candidates else np.array([200, 40, 40]) * (1 - 0.2 * (k % 2))
                image[ellipse] = np.clip(fill + rng.normal(0, 4, (int(ellipse.sum()), 3)), 0, 255).astype(np.uint8)
                cands.append(Candidate(image, job.mask.copy(), job.mask.copy()))
            out.append(cands)
        return out


@pytest.fixture
def painted(tiny_episode: Path, tmp_path: Path) -> tuple[Episode, Path]:
    ep = Episode(tiny_episode)
    syn = tmp_path / "painted"
    generate(ep, RightOneBackend(), syn, PlaceConfig(per_class=6, mask_kinds=["rectangle"], prior="context"), PaintConfig(candidates=3),
             seed=1, progress=False)
    return ep, syn


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_keep_rule_parsing() -> None:
    assert KeepRule.parse("all") == KeepRule()
    assert KeepRule.parse("0.6") == KeepRule(threshold=0.6)
    assert KeepRule.parse("0.6,top:0.5") == KeepRule(threshold=0.6, top_fraction=0.5)
    with pytest.raises(PaintsegError, match="keep 'top:2'"):
        KeepRule.parse("top:2")


def test_selection_picks_the_candidate_that_matches_the_reference(painted, tmp_path: Path) -> None:
    ep, syn = painted
    out = tmp_path / "curated"
    summary = curate(ep, syn, out, progress=False)
    assert summary["kept"] == 6 and summary["rejected"] == {}
    lines = _lines(out / "manifest.jsonl")
    assert sorted(line["candidate"] for line in lines) == sorted(p % 3 for p in range(6))
    assert all(line["candidate"] == line["placement"] % 3 and line["kept"] for line in lines)
    scores = json.loads((out / "scores.json").read_text())["scores"]
    assert all(np.argmax(s) == int(p) % 3 for p, s in scores.items())
    # without a filter, candidate 0 is taken whatever it shows
    plain = curate(ep, syn, tmp_path / "plain", CurateConfig(filter="none"), progress=False)
    assert plain["kept"] == 6
    assert {line["candidate"] for line in _lines(tmp_path / "plain" / "manifest.jsonl")} == {0}


def test_keep_top_fraction_writes_why_the_rest_was_rejected(painted, tmp_path: Path) -> None:
    ep, syn = painted
    out = tmp_path / "top"
    summary = curate(ep, syn, out, CurateConfig(keep="top:0.5"), progress=False)
    assert summary["kept"] == 3 and summary["rejected"] == {"outside top fraction": 3}
    lines = _lines(out / "manifest.jsonl")
    assert len(lines) == 6
    assert sum(not line["kept"] for line in lines) == 3
    assert all(line["why"] == "outside top fraction" and line["image"] is None for line in lines if not line["kept"])
    table = format_summary(summary)
    assert any(line.startswith("rejected: outside top fraction") and line.endswith(" 3")
               for line in table.splitlines())


def test_refined_masks_become_the_labels(painted, tmp_path: Path) -> None:
    ep, syn = painted
    out = tmp_path / "grabcut"
    summary = curate(ep, syn, out, CurateConfig(refine="grabcut"), progress=False)
    assert summary["kept"] + sum(summary["rejected"].values()) == 6
    kept = [line for line in _lines(out / "manifest.jsonl") if line["kept"]]
    assert kept and all(line["refine"] == "grabcut" for line in kept)
    for line in kept:
        w = line["window"]
        inpaint = np.asarray(Image.open(syn / "candidates" / f"p{line['placement']:06d}_inpaint.png")) > 127
        assert line["mask_pixels"] < inpaint.sum()  # the painted ellipse, not the whole rectangle
        assert (w[2] - w[0]) * (w[3] - w[1]) > line["mask_pixels"] > 0
    for image in {line["image"] for line in kept}:
        label = read_label(out / "labels" / image).array
        assert int((label == POOL).sum()) == sum(line["mask_pixels"] for line in kept if line["image"] == image)
    # refined masks are cached in the curated set, so a resumed curation does not refine again
    assert len(list((out / "refined").glob("*_grabcut.png"))) == 6


def test_curation_settings_are_guarded(painted, tmp_path: Path) -> None:
    ep, syn = painted
    out = tmp_path / "guarded"
    curate(ep, syn, out, progress=False)
    again = curate(ep, syn, out, progress=False)  # same settings: resumes, no-op
    assert again["kept"] == 6 and len(_lines(out / "manifest.jsonl")) == 6
    with pytest.raises(ConfigError, match="refine: was 'none', now 'grabcut'"):
        curate(ep, syn, out, CurateConfig(refine="grabcut"), progress=False)


class _NoOutline:
    """A refiner that never finds an outline (like GrabCut on a flat painting): it falls back to the inpaint mask."""

    name = "flat"

    def __init__(self):
        self.last_fallback = None

    def refine(self, image, inpaint_mask, box=None):
        self.last_fallback = "no foreground found"
        return inpaint_mask.copy()


def test_refiner_fallbacks_are_rejected_not_labelled(painted, tmp_path: Path) -> None:
    ep, syn = painted
    summary = curate(ep, syn, tmp_path / "flat", progress=False,
                     models=CurationModels(HandcraftedEncoder(), _NoOutline()))
    assert summary["kept"] == 0 and summary["rejected"] == {"refine: no outline": 6}
    lines = _lines(tmp_path / "flat" / "manifest.jsonl")
    assert all(line["why"] == "refine: no outline (no foreground found)" for line in lines)


def test_keep_rule_without_scores_is_an_error(painted, tmp_path: Path) -> None:
    ep, syn = painted
    with pytest.raises(PaintsegError, match="keep needs scores"):
        curate(ep, syn, tmp_path / "x", CurateConfig(filter="none", keep="top:0.5"), progress=False)


def test_overlapping_blend_regions_drop_the_later_insertion(tmp_path: Path) -> None:
    from paintseg.curate.compose import OVERLAP, drop_overlaps

    def entry(placement: int, scene: str, window: tuple, paint: np.ndarray) -> dict:
        file = f"p{placement}_paint.png"
        Image.fromarray(paint.astype(np.uint8) * 255).save(tmp_path / file)
        return {"placement": placement, "scene": scene, "window": list(window), "paint_file": file}

    full = np.ones((20, 20), bool)
    corner = np.zeros((20, 20), bool)
    corner[10:, 10:] = True  # scene pixels 20..30: clear of placement 0's window
    chosen = [entry(1, "a", (10, 10, 30, 30), full), entry(0, "a", (0, 0, 20, 20), full),
              entry(2, "a", (10, 10, 30, 30), corner), entry(3, "b", (0, 0, 20, 20), full)]
    kept, dropped = drop_overlaps(chosen, tmp_path)
    assert [e["placement"] for e in kept] == [0, 2, 3] and dropped == {1: OVERLAP}


class WholeWindowBackend(RightOneBackend):
    """Changes every pixel of its window (a blend region far larger than the box), so nearby placements clash."""

    def paint(self, jobs: list[WindowJob], candidates: int) -> list[list[Candidate]]:
        return [[Candidate(c.image, np.ones_like(c.paint_mask), c.object_mask) for c in cands]
                for cands in super().paint(jobs, candidates)]


def test_curation_rejects_clashing_insertions_instead_of_failing(tiny_episode: Path, tmp_path: Path) -> None:
    from paintseg.curate.compose import OVERLAP

    ep = Episode(tiny_episode)
    syn = tmp_path / "painted"
    generate(ep, WholeWindowBackend(), syn, PlaceConfig(per_class=12, mask_kinds=["rectangle"]),
             PaintConfig(candidates=1), seed=1, progress=False)
    summary = curate(ep, syn, tmp_path / "cur", progress=False)
    lines = _lines(tmp_path / "cur" / "manifest.jsonl")
    clashes = sum(line.get("why") == OVERLAP for line in lines)
    assert clashes > 0 and summary["rejected"] == {OVERLAP: clashes}  # 12 placements in 6 scenes of 64 px
    assert summary["kept"] + clashes == summary["placements"] == len(lines) == 12
