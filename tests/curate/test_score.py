"""Candidate scoring: encoders, views, selection and ranking, on constructed candidates with a known right answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from paintseg.config import GeneratorConfig
from paintseg.curate.score import (EfficientNetEncoder, GeneratorEncoder, HandcraftedEncoder, OpenClipEncoder, ScoreError, build_encoder,
                                   keep, ranking_auc, region, score, score_manifest, score_many, select_best)
from paintseg.errors import PaintsegError
from paintseg.paint.candidates import Candidate, WindowJob, read_manifest, write_candidates
from paintseg.paint.diffusion.model import build_generator, save_generator
from paintseg.place.masks import Box
from paintseg.place.placement import Placement

BOX = Box(16, 16, 32, 32)  # placement box in a 48×48 window
RIGHT = 2  # the candidate that paints the reference's red stripes


def stripes(rng: np.random.Generator, h: int, w: int, period: int = 4) -> np.ndarray:
    """Horizontal stripes, bright red and dark red, with a little noise."""
    rows = (np.arange(h) // (period // 2)) % 2 == 0
    img = np.where(rows[:, None, None], np.array([220, 30, 30]), np.array([110, 10, 15])) * np.ones((h, w, 1))
    return np.clip(img + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def noise(rng: np.random.Generator, h: int, w: int, colour: tuple[int, int, int], sd: float = 30) -> np.ndarray:
    return np.clip(np.array(colour) + rng.normal(0, sd, (h, w, 3)), 0, 255).astype(np.uint8)


def reference(seed: int = 1):
    """A 24×24 crop: a 16×16 red-striped object on sand."""
    from paintseg.place.references import Reference

    rng = np.random.default_rng(seed)
    image = noise(rng, 24, 24, (190, 170, 130), 10)
    image[4:20, 4:20] = stripes(rng, 16, 16)
    mask = np.zeros((24, 24), bool)
    mask[4:20, 4:20] = True
    return Reference(image, mask, 4, "support_0.png", Box(0, 0, 24, 24), Box(4, 4, 20, 20))


def candidates(seed: int = 2, red_outside: int | None = None) -> list[Candidate]:
    """K=4 painted windows; inside BOX: green noise, grey noise, red stripes (RIGHT), blue noise. ``red_outside``:
    that candidate's window is red-striped everywhere outside the box as well."""
    rng = np.random.default_rng(seed)
    background = noise(rng, 48, 48, (120, 110, 90), 15)
    paint = np.zeros((48, 48), bool)
    paint[BOX.y0 : BOX.y1, BOX.x0 : BOX.x1] = True
    fills = [noise(rng, 16, 16, (40, 150, 40)), noise(rng, 16, 16, (128, 128, 128)), stripes(rng, 16, 16),
             noise(rng, 16, 16, (40, 60, 180))]
    out = []
    for k, fill in enumerate(fills):
        image = stripes(rng, 48, 48) if k == red_outside else background.copy()
        image[BOX.y0 : BOX.y1, BOX.x0 : BOX.x1] = fill
        out.append(Candidate(image, paint.copy(), paint.copy()))
    return out


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = GeneratorConfig(size="tiny")
    folder = tmp_path_factory.mktemp("gen")
    save_generator(build_generator(config), None, config, folder)
    return folder


def register_tiny_clip(folder: Path, name: str, width: int = 64) -> str:
    """Write a tiny open_clip model config into ``folder`` and register it; returns its name."""
    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": width, "patch_size": 8,
                                           "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return name


# --------------------------------------------------------------------------------------------- views
def test_region_crops_the_padded_box_and_greys_outside_the_paint_mask():
    cand = candidates()[RIGHT]
    crop, mask = region(cand.image, cand.paint_mask, BOX, "region", pad=0.25)
    assert crop.shape == (24, 24, 3) and mask.shape == (24, 24) and mask.sum() == 256  # 16 + 2·4 px
    assert np.array_equal(crop[4:20, 4:20], cand.image[16:32, 16:32])  # painted pixels untouched
    raw = cand.image[12:36, 12:36].astype(np.float32)
    expected = np.round(0.5 * raw[0, 0] + 0.5 * raw.reshape(-1, 3).mean(0))
    assert np.array_equal(crop[0, 0], expected.astype(np.uint8))
    window, wmask = region(cand.image, cand.paint_mask, BOX, "window")
    assert window.shape == (48, 48, 3) and wmask.all() and np.array_equal(window, cand.image)
    with pytest.raises(ScoreError, match="unknown score mode 'crop'"):
        region(cand.image, cand.paint_mask, BOX, "crop")


# --------------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("mode, margin", [("region", 0.3), ("window", 0.1)])
def test_handcrafted_picks_the_red_candidate(mode: str, margin: float):
    s = score(HandcraftedEncoder(), reference(), candidates(), BOX, mode)
    assert s.shape == (4,) and int(np.argmax(s)) == RIGHT
    assert s[RIGHT] - np.delete(s, RIGHT).max() > margin  # the whole window dilutes the painted region
    assert select_best({7: s}) == {7: (RIGHT, float(s[RIGHT]))}


def test_region_mode_beats_window_mode_when_a_wrong_window_is_red_outside_the_box():
    wrong = 3  # blue noise in the box, red stripes all around it
    cands = candidates(red_outside=wrong)
    enc = HandcraftedEncoder()
    window = score(enc, reference(), cands, BOX, "window")
    regional = score(enc, reference(), cands, BOX, "region")
    assert int(np.argmax(window)) == wrong  # the paper's whole-crop score is fooled
    assert int(np.argmax(regional)) == RIGHT
    assert regional[RIGHT] - regional[wrong] > 0.5


def test_handcrafted_embeddings_are_normalised_deterministic_and_mask_aware():
    ref = reference()
    enc = HandcraftedEncoder()
    a = enc.embed([ref.image, ref.image], [ref.mask, np.ones_like(ref.mask)])
    assert a.dtype == np.float32 and a.shape[0] == 2
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a, enc.embed([ref.image, ref.image], [ref.mask, np.ones_like(ref.mask)]))
    assert float(a[0] @ a[1]) < 0.99  # the mask changes what is described


@pytest.mark.parametrize("mode", ["region", "window"])
def test_efficientnet_encoder_picks_the_candidate_that_shows_the_reference(mode: str):
    """Frozen ImageNet features (offline packaged weights) with no training rank the faithful candidate first."""
    enc = build_encoder("efficientnet-lite0", device="cpu")
    assert isinstance(enc, EfficientNetEncoder) and enc.name == "efficientnet-lite0"
    s = score(enc, reference(), candidates(), BOX, mode)
    assert s.shape == (4,) and int(np.argmax(s)) == RIGHT
    ref = reference()
    a = enc.embed([ref.image, ref.image], [ref.mask, np.ones_like(ref.mask)])
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(a[0] @ a[1]) < 0.999  # pooled over the mask: the mask changes what is described


def test_generator_encoder_embeds_with_random_weights(tiny_generator: Path):
    enc = build_encoder(f"generator:{tiny_generator}", device="cpu")
    assert isinstance(enc, GeneratorEncoder) and enc.ref_size == 32
    ref, cands = reference(), candidates()
    views = [region(c.image, c.paint_mask, BOX, "window") for c in cands]
    e = enc.embed([v[0] for v in views], [v[1] for v in views])
    assert e.shape == (4, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, enc.embed([v[0] for v in views], [v[1] for v in views]))
    assert enc.embed([ref.image]).shape == (1, 32)  # no masks: the whole image
    s = score_many(enc, [(ref, cands, BOX), (ref, cands[:2], BOX)], "window")
    assert [x.shape for x in s] == [(4,), (2,)] and np.all(np.abs(s[0]) <= 1 + 1e-6)
    np.testing.assert_allclose(s[1], s[0][:2], atol=1e-5)


def test_open_clip_checkpoint_round_trip(tmp_path: Path):
    name = register_tiny_clip(tmp_path, "paintseg-test-clip-a")
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    checkpoint = tmp_path / "RemoteCLIP-tiny.pt"
    torch.save(model.state_dict(), checkpoint)  # the on-disk format RemoteCLIP ships

    enc = build_encoder(f"open_clip:{name}:{checkpoint}", device="cpu")
    assert isinstance(enc, OpenClipEncoder) and enc.name == f"open_clip:{name}"
    cands = candidates()
    images = [c.image for c in cands]
    e = enc.embed(images)
    assert e.shape == (4, 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, enc.embed(images))
    from PIL import Image

    with torch.no_grad():
        direct = model.encode_image(torch.stack([preprocess(Image.fromarray(im)) for im in images]))
    direct = torch.nn.functional.normalize(direct, dim=-1).numpy()
    np.testing.assert_allclose(e, direct, atol=1e-5)
    assert score(enc, reference(), cands, BOX, "window").shape == (4,)

    # a DataParallel-style checkpoint ({"state_dict": {"module.…": …}}) loads too
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    np.testing.assert_allclose(OpenClipEncoder(name, wrapped, device="cpu").embed(images), e, atol=1e-6)

    other = register_tiny_clip(tmp_path, "paintseg-test-clip-b", width=32)
    foreign = tmp_path / "other.pt"
    torch.save(open_clip.create_model(other, pretrained=None).state_dict(), foreign)
    with pytest.raises(ScoreError, match=f"other.pt: cannot load .*is this a checkpoint of {name}\\?"):
        OpenClipEncoder(name, foreign, device="cpu")


class FixedBackend:
    """Returns the constructed candidates, rotated by the job index so the right one moves."""

    name = "fixed"

    def paint(self, jobs: list[WindowJob], candidates_per_job: int) -> list[list[Candidate]]:
        cands = candidates()
        return [[cands[(k + job.index) % 4] for k in range(candidates_per_job)] for job in jobs]


def test_score_manifest_reads_written_candidates(tmp_path: Path):
    ref = reference()
    jobs = []
    for i in range(3):  # window at scene (100, 50): the box lands on BOX in window coordinates
        window = Box(100, 50, 148, 98)
        placement = Placement("train_0.png", 4, 0, BOX.shift(100, 50), window, "rectangle", i)
        jobs.append(WindowJob(i, placement, ref, np.zeros((48, 48, 3), np.uint8), candidates()[0].paint_mask, BOX))
    out = tmp_path / "candidates"
    write_candidates(jobs, FixedBackend(), out, candidates=4, batch=2, total=3, progress=False)
    entries = read_manifest(out / "manifest.jsonl")
    scores = score_manifest(HandcraftedEncoder(), out, entries, [ref], "window", chunk=2)
    assert sorted(scores) == [0, 1, 2]
    assert {p: k for p, (k, _) in select_best(scores).items()} == {0: RIGHT, 1: (RIGHT - 1) % 4, 2: (RIGHT - 2) % 4}
    np.testing.assert_allclose(scores[0], score(HandcraftedEncoder(), ref, candidates(), BOX, "window"), atol=1e-6)
    with pytest.raises(ScoreError, match="placement 0 uses reference 0 but 0 references were given"):
        score_manifest(HandcraftedEncoder(), out, entries, [], "window")


# --------------------------------------------------------------------------------------------- specs
def test_build_encoder_errors_name_the_file_and_the_fix(tmp_path: Path):
    assert isinstance(build_encoder("handcrafted"), HandcraftedEncoder)
    with pytest.raises(ScoreError, match="unknown encoder 'efficientnet-lite3'; use 'handcrafted', 'efficientnet-lite0'"):
        build_encoder("efficientnet-lite3")
    with pytest.raises(ScoreError, match="unknown encoder 'clip'; use 'handcrafted', 'efficientnet-lite0'"):
        build_encoder("clip")
    with pytest.raises(ScoreError, match="nogen: no such generator folder; train one with `paintseg generator train"):
        build_encoder(f"generator:{tmp_path / 'nogen'}")
    with pytest.raises(PaintsegError, match="no generator here"):
        build_encoder(f"generator:{tmp_path}")
    with pytest.raises(ScoreError, match="open_clip needs a model and a checkpoint"):
        build_encoder("open_clip:ViT-B-32")
    with pytest.raises(ScoreError, match="missing.pt: no such checkpoint file; download the weights"):
        build_encoder(f"open_clip:ViT-B-32:{tmp_path / 'missing.pt'}")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(ScoreError, match="unknown open_clip model 'no-such-net'"):
        build_encoder(f"open_clip:no-such-net:{tmp_path / 'w.pt'}")
    name = register_tiny_clip(tmp_path, "paintseg-test-clip-c")
    with pytest.raises(ScoreError, match=f"w.pt: cannot load into open_clip model '{name}'"):
        build_encoder(f"open_clip:{name}:{tmp_path / 'w.pt'}")


# --------------------------------------------------------------------------------------------- selection
def test_select_best_takes_the_argmax_and_the_first_of_ties():
    best = select_best({0: np.array([0.1, 0.9, 0.3]), 5: np.array([0.4, 0.4])})
    assert best == {0: (1, pytest.approx(0.9)), 5: (0, pytest.approx(0.4))}
    with pytest.raises(ScoreError, match="placement 3 has no candidate scores"):
        select_best({3: np.array([])})


def test_keep_threshold_and_top_fraction_per_class():
    best = [(0, 4, 0.9), (1, 4, 0.2), (2, 4, 0.6), (3, 4, 0.7), (10, 5, 0.3), (11, 5, 0.1)]
    assert keep(best) == ([0, 1, 2, 3, 10, 11], {})
    kept, rejected = keep(best, threshold=0.5)
    assert kept == [0, 2, 3] and rejected == {1: "below threshold", 10: "below threshold", 11: "below threshold"}
    kept, rejected = keep(best, top_fraction=0.5)  # per class: 2 of 4, 1 of 2
    assert kept == [0, 3, 10] and rejected == {2: "outside top fraction", 1: "outside top fraction",
                                               11: "outside top fraction"}
    kept, rejected = keep(best, threshold=0.25, top_fraction=0.75)  # 3 of 4, 2 of 2
    assert kept == [0, 2, 3, 10] and rejected == {1: "below threshold", 11: "below threshold"}
    assert keep([(p, 1, 0.5) for p in range(10)], top_fraction=0.3)[0] == [0, 1, 2]  # ties: lower id; 0.3·10 = 3
    with pytest.raises(ScoreError, match="top_fraction 0 must be in"):
        keep(best, top_fraction=0)


def test_ranking_auc():
    assert ranking_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert ranking_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert ranking_auc([0.9, 0.1, 0.8, 0.2], [True, True, False, False]) == 0.5
    assert ranking_auc([0.5, 0.5, 0.5], [True, False, False]) == 0.5  # all tied
    assert ranking_auc([0.7, 0.5, 0.5, 0.1], [True, True, False, False]) == 0.875  # one tied pair of four
    with pytest.raises(ScoreError, match="needs positives and negatives; got 2 and 0"):
        ranking_auc([0.1, 0.2], [True, True])
