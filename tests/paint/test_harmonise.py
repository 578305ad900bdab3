"""The harmoniser (copy-paste re-coloured to fit the scene), its training pairs, training, backend and CLI, and the
colour-matched copy-paste."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from paintseg.cli import app
from paintseg.config import HarmoniserConfig, PlaceConfig
from paintseg.data.episode import Episode
from paintseg.errors import PaintsegError
from paintseg.paint.copy_paste import CopyPasteBackend, match_colour
from paintseg.paint.harmonise.data import HarmonyPairs
from paintseg.paint.harmonise.model import Harmoniser, HarmoniserError, load_harmoniser
from paintseg.paint.harmonise.train import region_l1, train_harmoniser

TINY = dict(encoder_weights=None, crop=32, batch=4, box_fraction=(0.02, 0.5), min_instance_pixels=16,
            validation_pairs=16, checkpoint_every=10)


def test_untrained_harmoniser_is_copy_paste_and_changes_only_the_region():
    torch.manual_seed(0)
    window = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mask = np.zeros((50, 70), bool)
    mask[10:30, 20:45] = True
    _, region = Harmoniser(HarmoniserConfig(**TINY)).eval().harmonise(window, mask)
    assert np.array_equal(region, mask)  # by default the object only: no re-coloured ring round it
    model = Harmoniser(HarmoniserConfig(**TINY, border=2)).eval()
    out, region = model.harmonise(window, mask)
    assert out.shape == window.shape and np.array_equal(out, window)  # zero head: the composite exactly
    assert region.sum() == (20 + 4) * (25 + 4)  # the mask grown by border = 2 on every side
    with torch.no_grad():  # a head that changes everything still leaves pixels outside the region alone
        model.head[-1].bias.fill_(1.0)
    out, region = model.harmonise(window, mask)
    assert np.array_equal(out[~region], window[~region]) and not np.array_equal(out[region], window[region])


def test_pairs_recolour_the_instance_only_and_depend_on_seed_and_step(tiny_episode: Path):
    pairs = HarmonyPairs.from_episode(Episode(tiny_episode), HarmoniserConfig(**TINY))
    a, b, c = pairs.batch(3), pairs.batch(3), pairs.batch(4)
    assert torch.equal(a.composite, b.composite) and not torch.equal(a.composite, c.composite)
    outside = (a.mask == 0).expand_as(a.target)
    assert torch.equal(a.composite[outside], a.target[outside])
    inside = (a.mask == 1).expand_as(a.target)
    assert (a.composite[inside] - a.target[inside]).abs().mean() > 0.02
    assert pairs.held_out and pairs.train  # 8 scenes with instances: every fifth is held out


@pytest.mark.slow
def test_the_harmoniser_can_fit_a_colour_shift(tiny_episode: Path):
    """One batch of pairs, fitted for 120 steps: the per-object colour transform undoes much of the re-colouring
    (measured: the error falls to 0.46 of the composite's with 1 and with 2 threads, and stays there)."""
    cfg = HarmoniserConfig(**{**TINY, "other_scene_prob": 0.0, "batch": 8})
    batch = HarmonyPairs.from_episode(Episode(tiny_episode), cfg).batch(0)
    torch.manual_seed(0)
    model = Harmoniser(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    region = model.region(batch.mask)
    start = float(region_l1(batch.composite, batch.target, region).mean())
    for _ in range(120):
        loss = region_l1(model(batch.composite, batch.mask), batch.target, region).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.6 * start


def test_training_scores_held_out_pairs_and_a_resumed_run_matches(tiny_episode: Path, tmp_path: Path, monkeypatch):
    ep = Episode(tiny_episode)
    cfg = HarmoniserConfig(**TINY, steps=20, warmup_steps=2)
    train_harmoniser(ep, tmp_path / "h", cfg, progress=False)
    summary = json.loads((tmp_path / "h" / "train_summary.json").read_text())
    held = summary["held_out"]
    assert held["pairs"] == 16 and held["l1_composite"] > 1
    assert abs(held["error_removed"] - (1 - held["l1_harmonised"] / held["l1_composite"])) < 1e-3
    assert (tmp_path / "h" / "samples.png").is_file() and not (tmp_path / "h" / "checkpoints").exists()
    real_batch = HarmonyPairs.batch

    def killed_at_step_13(self, step):
        if step == 13:
            raise KeyboardInterrupt("killed")
        return real_batch(self, step)

    monkeypatch.setattr(HarmonyPairs, "batch", killed_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        train_harmoniser(ep, tmp_path / "r", cfg, progress=False)
    assert not (tmp_path / "r" / "harmoniser.pt").exists()
    monkeypatch.setattr(HarmonyPairs, "batch", real_batch)
    train_harmoniser(ep, tmp_path / "r", cfg, resume=True, progress=False)
    steps = [json.loads(x)["step"] for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # the log was cut back to the checkpoint at step 10
    one, _ = load_harmoniser(tmp_path / "h")
    two, _ = load_harmoniser(tmp_path / "r")
    for (k, v), w in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(v, w, atol=1e-6), k
    with pytest.raises(PaintsegError, match="pass --resume"):
        train_harmoniser(ep, tmp_path / "h", cfg, progress=False)


def test_load_harmoniser_says_what_is_missing(tmp_path: Path):
    with pytest.raises(HarmoniserError, match="paintseg harmoniser train EPISODE"):
        load_harmoniser(tmp_path)
    (tmp_path / "harmoniser.pt").write_bytes(b"not a model")
    with pytest.raises(HarmoniserError, match="not a paintseg harmoniser"):
        load_harmoniser(tmp_path)


def test_cli_trains_a_harmoniser_and_generate_paints_with_it(tiny_episode: Path, tmp_path: Path):
    runner = CliRunner()
    harm, syn = tmp_path / "harm", tmp_path / "syn"
    r = runner.invoke(app, ["harmoniser", "train", str(tiny_episode), "--out", str(harm), "--steps", "4",
                            "--crop", "32", "--batch", "2", "--encoder-weights", "none"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["generate", str(tiny_episode), "--generator", str(harm), "--out", str(syn),
                            "--per-class", "3", "--candidates", "2", "--select", "first", "--seed", "1"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (syn / "candidates" / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {x["backend"] for x in lines} == {"harmonise"}
    assert f"harmoniser: {harm.resolve()}" in (syn / "generate.yaml").read_text()
    r = runner.invoke(app, ["harmoniser", "train", str(tiny_episode), "--out", str(tmp_path / "x"), "--crop", "40"])
    assert r.exit_code == 2 and "not a multiple of 32" in r.output


def test_colour_match_moves_the_paste_to_the_new_surroundings(tiny_episode: Path):
    rng = np.random.default_rng(0)
    source = rng.normal((200, 180, 150), 10, (500, 3)).clip(0, 255).astype(np.uint8)
    target = rng.normal((60, 70, 80), 5, (500, 3)).clip(0, 255).astype(np.uint8)
    pixels = rng.normal((220, 200, 170), 10, (8, 9, 3)).clip(0, 255).astype(np.uint8)
    moved = match_colour(pixels, source, target)
    assert moved.shape == pixels.shape
    # brighter than its old surroundings before, brighter than the new (dark) ones after, but much darker overall
    assert pixels.mean() - 180 > 0 and moved.mean() - target.mean() > 0 and moved.mean() < pixels.mean() - 80
    from paintseg.paint.candidates import SceneCache, make_job
    from paintseg.place.placement import plan_placements
    from paintseg.place.references import extract_references

    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    placement = plan_placements(ep, refs, PlaceConfig(per_class=1, prior="context"), seed=0, progress=False)[0]
    job = make_job(0, placement, refs, SceneCache(ep))
    plain = CopyPasteBackend().paint([job], 1)[0][0]
    matched = CopyPasteBackend(colour="match").paint([job], 1)[0][0]
    assert plain.object_mask.sum() == matched.object_mask.sum()
    assert np.array_equal(plain.image[~plain.paint_mask], matched.image[~matched.paint_mask])
    with pytest.raises(PaintsegError, match="use one of none, match"):
        CopyPasteBackend(colour="reinhard")


def test_paste_noise_control_adds_noise_of_the_asked_std_around_the_paste(tiny_episode: Path):
    from paintseg.paint.candidates import SceneCache, make_job
    from paintseg.place.placement import plan_placements
    from paintseg.place.references import extract_references

    ep = Episode(tiny_episode)
    refs = extract_references(ep)
    placement = plan_placements(ep, refs, PlaceConfig(per_class=1, prior="context"), seed=0, progress=False)[0]
    job = make_job(0, placement, refs, SceneCache(ep))
    plain = CopyPasteBackend().paint([job], 1)[0][0]
    noisy = CopyPasteBackend(noise=17.5).paint([job], 1)[0][0]
    assert np.array_equal(noisy.object_mask, plain.object_mask) and noisy.paint_mask.sum() > plain.object_mask.sum()
    change = noisy.image.astype(float) - plain.image.astype(float)
    assert np.abs(change[~noisy.paint_mask]).max() == 0
    assert 12 < change[noisy.paint_mask].std(0).mean() < 19  # 17.5, less what clipping at 0/255 removes
    with pytest.raises(PaintsegError, match="0 \\(none\\) to 128"):
        CopyPasteBackend(noise=-1)
