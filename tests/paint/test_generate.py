"""Candidates, the copy-paste backend, composition and the generate pipeline (resume included) on tiny episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from rasterio.crs import CRS

from conftest import make_tiny_episode
from paintseg.config import CurateConfig, PaintConfig, PlaceConfig, TrainConfig
from paintseg.curate.compose import Insertion, compose
from paintseg.curate.pipeline import curate
from paintseg.data.episode import Episode
from paintseg.data.raster import read_image, read_label
from paintseg.errors import PaintsegError
from paintseg.paint.candidates import SceneCache, make_job, read_manifest
from paintseg.paint.copy_paste import CopyPasteBackend
from paintseg.place.masks import Box, feather
from paintseg.paint.generate import generate
from paintseg.place.placement import Placement
from paintseg.place.references import extract_references
from paintseg.segment.data import TrainingSampler

POOL = 4


def _job(episode: Episode, box=Box(20, 20, 30, 30), window=Box(10, 10, 42, 42), kind="rectangle"):
    refs = extract_references(episode)
    placement = Placement(episode.train_names[0], POOL, 0, box, window, kind, 7)
    return make_job(0, placement, refs, SceneCache(episode)), refs


def test_job_cuts_the_window_and_draws_the_mask_inside_it(tiny_episode: Path) -> None:
    ep = Episode(tiny_episode)
    job, _ = _job(ep)
    scene = read_image(ep.train[0].image).array
    assert np.array_equal(job.window_image, scene[10:42, 10:42])
    assert job.box == Box(10, 10, 20, 20)
    ys, xs = np.nonzero(job.mask)
    assert ys.min() <= 10 and ys.max() >= 19 and xs.min() <= 10 and xs.max() >= 19  # covers the box
    again, _ = _job(ep)
    assert np.array_equal(again.mask, job.mask)  # seeded by the placement


def test_copy_paste_pastes_the_reference_through_its_mask(tiny_episode: Path) -> None:
    ep = Episode(tiny_episode)
    job, refs = _job(ep)
    cands = CopyPasteBackend(feather_radius=0).paint([job], 3)[0]
    assert len(cands) == 3
    first = cands[0]
    assert first.object_mask[job.box.y0 : job.box.y1, job.box.x0 : job.box.x1].all()  # a square pool fills its box
    assert not first.object_mask[: job.box.y0].any()
    assert np.array_equal(first.image[~first.object_mask], job.window_image[~first.object_mask])
    pool_colour = refs[0].image[refs[0].mask].mean(0)
    assert np.abs(first.image[first.object_mask].mean(0) - pool_colour).max() < 15


def test_poisson_paste_keeps_the_silhouette_and_moves_its_colours_to_the_new_surroundings(tiny_episode: Path) -> None:
    """colour='poisson' (the copy-paste-poisson arm): the same object mask and untouched surroundings as a plain
    paste, the pool's pixels pulled towards the field it is pasted into; at the window's edge it falls back."""
    from paintseg.paint.generate import make_backend

    ep = Episode(tiny_episode)
    job, _ = _job(ep)
    plain = CopyPasteBackend().paint([job], 1)[0][0]
    blended = CopyPasteBackend(colour="poisson").paint([job], 1)[0][0]
    assert np.array_equal(blended.object_mask, plain.object_mask)
    outside = ~blended.object_mask
    assert np.array_equal(blended.image[outside], job.window_image[outside])
    field = job.window_image[outside].astype(float).mean(0)
    gap = lambda c: np.abs(c.image[c.object_mask].astype(float).mean(0) - field).sum()  # noqa: E731
    assert gap(blended) < 0.8 * gap(plain), (gap(blended), gap(plain))
    backend, settings = make_backend("copy-paste", paste_colour="poisson")
    assert settings == {"paste_colour": "poisson"} and backend.colour == "poisson"
    with pytest.raises(PaintsegError, match="use one of none, match, poisson"):
        CopyPasteBackend(colour="blur")


def test_feather_stays_inside_the_mask() -> None:
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    alpha = feather(mask, 3)
    assert alpha[~mask].max() == 0 and alpha[10, 10] == 1 and 0 < alpha[5, 10] < 1


def test_compose_label_is_the_object_mask_and_the_rest_is_untouched() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    label = np.ones((40, 50), np.uint8)
    painted = np.full((20, 20, 3), 200, np.uint8)
    paint = np.zeros((20, 20), bool)
    paint[4:16, 4:16] = True
    obj = np.zeros((20, 20), bool)
    obj[6:14, 6:14] = True
    out_img, out_lab = compose(image, label, [Insertion(Box(10, 5, 30, 25), painted, paint, obj, 9)])
    expected = np.zeros((40, 50), bool)
    expected[11:19, 16:24] = True
    assert np.array_equal(out_lab == 9, expected)
    assert (out_lab[~expected] == 1).all()
    outside = np.ones((40, 50), bool)
    outside[9:21, 14:26] = False
    assert np.array_equal(out_img[outside], image[outside])
    assert (out_img[15, 20] == 200).all()
    with pytest.raises(PaintsegError, match="overlaps"):
        compose(image, label, [Insertion(Box(10, 5, 30, 25), painted, paint, obj, 9)] * 2)
    with pytest.raises(PaintsegError, match="resize the candidate back"):
        compose(image, label, [Insertion(Box(10, 5, 31, 25), painted, paint, obj, 9)])


def test_generate_copy_paste_writes_a_synthetic_set_the_trainer_reads(tiny_episode: Path, tmp_path: Path) -> None:
    ep = Episode(tiny_episode)
    syn = tmp_path / "syn"
    summary = generate(ep, CopyPasteBackend(), syn, PlaceConfig(per_class=5), PaintConfig(candidates=2), seed=3, progress=False)
    curate(ep, syn, syn, CurateConfig(filter="none"), progress=False)  # the next stage: candidate 0 of each placement, composed
    assert summary["placements"] == {"pool": 5} and summary["candidates"] == 10
    cands = read_manifest(syn / "candidates" / "manifest.jsonl")
    assert sorted((e["placement"], e["candidate"]) for e in cands) == [(p, k) for p in range(5) for k in range(2)]
    assert all((syn / "candidates" / e["file"]).is_file() for e in cands)
    instances = [json.loads(line) for line in (syn / "manifest.jsonl").read_text().splitlines()]
    assert len(instances) == 5
    for image_name in {i["image"] for i in instances}:
        lab = read_label(syn / "labels" / image_name).array
        pixels = sum(i["mask_pixels"] for i in instances if i["image"] == image_name)
        assert int((lab == POOL).sum()) == pixels
    sampler = TrainingSampler(ep, TrainConfig(crop=32, batch=4), synthetic=[syn])
    assert len(sampler.pools["synthetic"]) == len({i["image"] for i in instances})


class _Interrupted(RuntimeError):
    pass


class _FlakyBackend(CopyPasteBackend):
    """Paints one batch, then dies - like a killed run."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def paint(self, jobs, candidates):
        self.calls += 1
        if self.calls > 1:
            raise _Interrupted()
        return super().paint(jobs, candidates)


def test_generate_resumes_after_interruption_without_duplicates(tiny_episode: Path, tmp_path: Path) -> None:
    ep = Episode(tiny_episode)
    syn = tmp_path / "syn"
    with pytest.raises(_Interrupted):
        generate(ep, _FlakyBackend(), syn, PlaceConfig(per_class=6), PaintConfig(candidates=2, batch=2), progress=False)
    assert len(read_manifest(syn / "candidates" / "manifest.jsonl")) == 4  # one batch of 2 placements x 2
    summary = generate(ep, CopyPasteBackend(), syn, PlaceConfig(per_class=6), PaintConfig(candidates=2, batch=2),
                       progress=False)
    assert summary["painted_now"] == 4
    cands = read_manifest(syn / "candidates" / "manifest.jsonl")
    assert sorted((e["placement"], e["candidate"]) for e in cands) == [(p, k) for p in range(6) for k in range(2)]
    with pytest.raises(PaintsegError, match="per_class: was 6, now 7"):
        generate(ep, CopyPasteBackend(), syn, PlaceConfig(per_class=7), PaintConfig(candidates=2, batch=2), progress=False)


def test_a_plan_is_painted_only_under_its_own_settings_and_place_reads_a_run_config(tiny_episode: Path,
                                                                                     tmp_path: Path) -> None:
    """`paintseg place --per-class 5` then `generate` on that folder with another per_class: refused before anything
    is written (the plan's place.yaml), not painted as 5 and recorded as 4."""
    from typer.testing import CliRunner

    from paintseg.cli import app
    from paintseg.place.plan import place

    ep = Episode(tiny_episode)
    syn = tmp_path / "syn"
    place(ep, syn, PlaceConfig(per_class=5, mask_kinds=["rectangle"]), seed=2, progress=False)
    with pytest.raises(PaintsegError, match=r"this plan was written with other settings \(per_class: was 5, now 4\)"):
        generate(ep, CopyPasteBackend(), syn, PlaceConfig(per_class=4, mask_kinds=["rectangle"]), seed=2,
                 progress=False)
    assert not (syn / "generate.yaml").exists() and not (syn / "candidates").exists()
    summary = generate(ep, CopyPasteBackend(), syn, PlaceConfig(per_class=5, mask_kinds=["rectangle"]),
                       PaintConfig(candidates=1), seed=2, progress=False)
    assert summary["candidates"] == sum(summary["placements"].values()) == 5 * len(ep.classes.novel_ids)
    run_config = tmp_path / "run.yaml"  # a run config: `place --config` reads its generation section
    run_config.write_text(f"episode: {{path: {tiny_episode}}}\ngeneration: {{per_class: 3, prior: uniform, "
                          f"paste_noise: 9, keep: top:0.5}}\n")
    result = CliRunner().invoke(app, ["place", str(tiny_episode), "--out", str(tmp_path / "plan"), "--config",
                                      str(run_config), "--mask-kind", "rectangle"])
    assert result.exit_code == 0, result.output
    planned = yaml.safe_load((tmp_path / "plan" / "place.yaml").read_text())
    assert planned == {"per_class": 3, "seed": 0, "prior": "uniform", "mask_kinds": ["rectangle"]}


def test_a_plan_recorded_before_a_field_existed_reads_it_as_its_old_value(tiny_episode: Path, tmp_path: Path) -> None:
    """A plan whose place.yaml predates selectivity (placed at 8, the old behaviour) resumes under selectivity 8 and
    is refused under the new default 16 with what it really was."""
    from paintseg.place.plan import place

    ep = Episode(tiny_episode)
    old = PlaceConfig(per_class=2, mask_kinds=["rectangle"], selectivity=8.0)
    place(ep, tmp_path / "plan", old, seed=0, progress=False)
    assert "selectivity" not in yaml.safe_load((tmp_path / "plan" / "place.yaml").read_text())  # as before the field
    assert place(ep, tmp_path / "plan", old, seed=0, progress=False)["placements"] == 2 * len(ep.classes.novel_ids)
    with pytest.raises(PaintsegError, match=r"this plan was written with other settings \(selectivity: was 8.0, now "
                                            r"16.0\)"):
        place(ep, tmp_path / "plan", old.model_copy(update={"selectivity": 16.0}), seed=0, progress=False)


def test_generate_keeps_geotiff_georeference(tmp_path: Path) -> None:
    root = make_tiny_episode(tmp_path / "ep", fmt=".tif")
    # give the trainset scenes a CRS and transform, as real GeoTIFF scenes have
    from paintseg.data.raster import write_image

    transform = Affine(0.5, 0, 300000, 0, -0.5, 5000000)
    for p in (root / "trainset" / "images").glob("*.tif"):
        r = read_image(p)
        r.crs, r.transform = CRS.from_epsg(32633), transform
        write_image(p, r.array, like=r)
    syn = tmp_path / "syn"
    generate(Episode(root), CopyPasteBackend(), syn, PlaceConfig(per_class=3), PaintConfig(candidates=1), progress=False)
    curate(Episode(root), syn, syn, CurateConfig(filter="none"), progress=False)
    out = sorted((syn / "images").glob("*.tif"))
    assert out
    r = read_image(out[0])
    assert r.crs == CRS.from_epsg(32633) and r.transform == transform
    assert read_label(sorted((syn / "labels").glob("*.tif"))[0]).crs == CRS.from_epsg(32633)
