"""The painter's compute budget and learning curve: training for minutes instead of steps (measured, fixed, resumed),
snapshots along the run, min-SNR weighting, and painting quality measured at every snapshot."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from paintseg.config import GeneratorConfig, PaintConfig
from paintseg.data.episode import Episode
from paintseg.evaluate.curve import painting_curve, snapshots
from paintseg.paint.diffusion import load_generator, train_generator
from paintseg.paint.diffusion import train as train_module
from paintseg.paint.diffusion.train import snapshot_steps, snr_weights, weighted_mse
from paintseg.place.references import extract_references

from conftest import crash_at, quick_config

pytestmark = pytest.mark.usefixtures("one_thread")


def log_steps(folder) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]


def test_snapshot_steps_halve_back_from_the_end():
    assert snapshot_steps(1000, 4) == [125, 250, 500]
    assert snapshot_steps(1000, 1) == [] and snapshot_steps(1000, 0) == []
    assert snapshot_steps(5, 5) == [1, 2]  # no step twice, never step 0


def test_min_snr_weights_and_the_weighted_loss():
    alphas = torch.tensor([0.999, 0.9, 0.5, 0.01])
    t = torch.arange(4)
    snr = alphas / (1 - alphas)  # 999, 9, 1, 0.0101
    v = snr_weights(alphas, t, 5.0, "v_prediction")
    assert torch.allclose(v, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert v[0] == pytest.approx(5 / 1000, rel=1e-4) and v[2] == pytest.approx(0.5)  # low noise counts less
    eps = snr_weights(alphas, t, 5.0, "epsilon")
    assert eps[2] == pytest.approx(1.0) and eps[0] == pytest.approx(5 / 999, rel=1e-4)
    pred, wanted = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    mask = torch.zeros(4, 1, 8, 8)
    plain = weighted_mse(pred, wanted, mask, 1.0)
    assert weighted_mse(pred, wanted, mask, 1.0, torch.ones(4)) == pytest.approx(float(plain), rel=1e-5)
    per_pair = (pred - wanted).square().flatten(1).mean(1)
    weights = torch.tensor([0.0, 1.0, 2.0, 0.5])
    assert weighted_mse(pred, wanted, mask, 1.0, weights) == pytest.approx(float((per_pair * weights).mean()),
                                                                            rel=1e-5)


@pytest.mark.slow
def test_a_minutes_budget_is_measured_fixed_and_laid_under_the_lr_schedule(texture_episode, tmp_path):
    config = quick_config(steps=100_000, minutes=0.15, warmup_steps=30, checkpoint_every=10, sample_every=10_000,
                          snapshots=3, keep_checkpoint=True)
    out = tmp_path / "gen"
    train_generator(texture_episode, out, config, progress=False)
    budget = json.loads((out / "budget.json").read_text())
    summary = json.loads((out / "train_summary.json").read_text())
    assert budget["minutes"] == 0.15 and budget["measured_steps"] == train_module.MEASURE
    assert budget["fixed_at_step"] == train_module.WARM + train_module.MEASURE and not budget["capped"]
    total = budget["steps"]
    assert total == summary["steps"]
    assert total <= budget["fixed_at_step"] + 9.0 / budget["seconds_per_step"] + 1  # what 9 s buy at that rate
    assert total > budget["fixed_at_step"] and log_steps(out) == list(range(1, total + 1))
    lrs = [json.loads(line)["lr"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert lrs[-1] < 0.02 * config.lr  # the cosine decay ends with the budget, not at the 100 000-step cap
    assert summary["minutes"] == 0.15 and summary["train_seconds"] > 0
    found = snapshots(out)
    # the points after the budget was fixed (on a busy machine the budget buys few steps, and total/4 may fall
    # inside the timed steps, which are not kept), then the finished generator
    kept = [s for s in snapshot_steps(total, 3) if s > budget["fixed_at_step"]]
    assert [p["step"] for p in found] == kept + [total]
    assert all(p["train_seconds"] is not None for p in found)
    seconds = [p["train_seconds"] for p in found]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)
    for point in found[:-1]:
        model, saved = load_generator(point["path"])
        assert saved == config and model.num_parameters > 0
    # a finished budget run is finished: resuming it with the same settings does nothing
    before = (out / "model_index.json").read_bytes()
    train_generator(texture_episode, out, config, resume=True, progress=False)
    assert (out / "model_index.json").read_bytes() == before


@pytest.mark.slow
def test_a_budget_run_killed_after_its_budget_resumes_to_the_steps_it_bought(texture_episode, tmp_path,
                                                                           monkeypatch):
    """Killed after the budget is fixed, the run resumes to the same step with the same schedule: its weights are
    those of a plain run of that many steps (the measured steps lie inside the warm-up, which no total changes)."""
    config = quick_config(steps=100_000, minutes=0.15, warmup_steps=30, checkpoint_every=10, sample_every=10_000)
    crash_at(35, monkeypatch)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        train_generator(texture_episode, out, config, progress=False)
    budget = json.loads((out / "budget.json").read_text())
    assert torch.load(out / "checkpoints/last.pt", weights_only=True)["step"] == 30
    monkeypatch.undo()
    train_generator(texture_episode, out, config, resume=True, progress=False)
    assert json.loads((out / "budget.json").read_text()) == budget  # measured once, not again
    total = budget["steps"]
    assert log_steps(out) == list(range(1, total + 1))
    plain = tmp_path / "plain"
    train_generator(texture_episode, plain, quick_config(steps=total, warmup_steps=30, checkpoint_every=10,
                                                         sample_every=10_000), progress=False)
    a, b = load_generator(out)[0].state_dict(), load_generator(plain)[0].state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_a_budget_caps_at_steps_and_other_settings_still_refuse_a_resume(texture_episode, tmp_path):
    out = tmp_path / "gen"
    train_generator(texture_episode, out, quick_config(steps=30, minutes=5.0, checkpoint_every=10,
                                                       sample_every=100, keep_checkpoint=True), progress=False)
    budget = json.loads((out / "budget.json").read_text())
    assert budget["steps"] == 30 and budget["capped"]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 30
    with pytest.raises(train_module.GeneratorTrainError, match=r"minutes: run has 5.0, now 2.0"):
        train_generator(texture_episode, out, quick_config(steps=30, minutes=2.0, checkpoint_every=10,
                                                           sample_every=100), resume=True, progress=False)


def test_min_snr_training_runs_and_differs_from_equal_weights(texture_episode, tmp_path):
    plain = train_generator(texture_episode, tmp_path / "plain", quick_config(steps=3), progress=False)
    snr = train_generator(texture_episode, tmp_path / "snr", quick_config(steps=3, snr_gamma=5.0), progress=False)
    losses = [[json.loads(line)["loss"] for line in (p.parent / "log.jsonl").read_text().splitlines()]
              for p in (plain, snr)]
    assert losses[0][0] != losses[1][0]
    assert load_generator(snr)[1].snr_gamma == 5.0


def test_painting_curve_paints_every_snapshot_beside_the_controls(tiny_episode, tmp_path):
    episode = Episode(tiny_episode)
    gen = tmp_path / "gen"
    train_generator(episode, gen, quick_config(steps=8, snapshots=3, sample_every=100), progress=False)
    curve = painting_curve(episode, gen, extract_references(episode), strengths=(0.3, 1.0),
                           paint=PaintConfig(steps=2), tests=3, candidates=2)
    assert [(p["step"], p["strength"]) for p in curve["points"]] == [
        (2, 0.3), (2, 1.0), (4, 0.3), (4, 1.0), (8, 0.3), (8, 1.0)]
    assert set(curve["controls"]) == {"copy-paste", "copy-paste-noise"}
    for row in curve["points"] + list(curve["controls"].values()):
        assert row["tests"] > 0
        assert 0 <= row["class_rate"] <= 1 and row["delta_e"] >= 0
        assert 0 <= row["novelty"] <= 2 and 0 <= row["diversity"] <= 2
    assert all(p["trained_on"] for p in curve["points"])  # quick_config trains every noise level
    # painting from noise at the same spot gives two different candidates; copy-paste only flips / turns its reference
    from_noise = [p for p in curve["points"] if p["strength"] == 1.0]
    assert min(p["diversity"] for p in from_noise) > curve["controls"]["copy-paste"]["diversity"]


def test_the_curve_and_the_assessment_paint_with_the_sampler_they_are_given(tiny_episode, tmp_path, monkeypatch):
    """The sampler reaches every snapshot's backend and the conditioning check (a curve painted with DDIM while the
    run paints with DPM-Solver++ measured another painter)."""
    from paintseg.evaluate import assess
    from paintseg.evaluate.conditioning import conditioning_quality
    from paintseg.paint import generate
    from paintseg.paint.diffusion import sample

    episode = Episode(tiny_episode)
    gen = tmp_path / "gen"
    train_generator(episode, gen, quick_config(steps=4, snapshots=2, sample_every=100), progress=False)
    seen = []
    real = generate.make_backend

    def spy(generator, paint=None, **kwargs):
        if paint is not None:
            seen.append(paint.scheduler)
        return real(generator, paint, **kwargs)

    monkeypatch.setattr(generate, "make_backend", spy)
    painting_curve(episode, gen, extract_references(episode), strengths=(1.0,),
                   paint=PaintConfig(steps=2, scheduler="dpm++"), tests=1, candidates=1)
    assert seen == ["dpm++", "dpm++"]
    schedulers = []
    real_scheduler = sample.make_scheduler

    def spy_scheduler(model, name="ddim"):
        schedulers.append(name)
        return real_scheduler(model, name)

    monkeypatch.setattr(sample, "make_scheduler", spy_scheduler)
    conditioning_quality(episode, gen, PaintConfig(steps=2, scheduler="dpm++"), count=1)
    assert schedulers and set(schedulers) == {"dpm++"}
    assert assess.Assessment().paint.scheduler == PaintConfig().scheduler == "ddim"


@pytest.mark.slow
def test_cli_curve_writes_json_and_figures(tiny_episode, tmp_path):
    episode = Episode(tiny_episode)
    gen = tmp_path / "gen"
    train_generator(episode, gen, quick_config(steps=4, snapshots=2, sample_every=100, max_strength=0.3),
                    progress=False)
    out, figure = tmp_path / "curve.json", tmp_path / "curve.png"
    done = subprocess.run([sys.executable, "-m", "paintseg", "generator", "curve", str(gen), str(tiny_episode),
                           "--out", str(out), "--figure", str(figure), "--per-class", "2", "--steps", "2",
                           "--samples", "2", "--strength", "0.3", "--strength", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    curve = json.loads(out.read_text())
    assert [(p["step"], p["trained_on"]) for p in curve["points"]] == [(2, True), (2, False), (4, True), (4, False)]
    assert done.stdout.count("(beyond the noise levels it was trained on)") == 2
    assert "step       4" in done.stdout and "copy-paste-noise:" in done.stdout
    for png in (figure, tmp_path / "curve_samples.png"):
        assert Image.open(png).size[0] > 400
    bad = subprocess.run([sys.executable, "-m", "paintseg", "generator", "curve", str(tmp_path / "nothing"),
                          str(tiny_episode), "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode != 0 and "no generator here" in bad.stderr and "--snapshots" in bad.stderr


def test_finetune_refuses_budget_settings_it_does_not_use(texture_episode, tmp_path):
    pytest.importorskip("accelerate")
    from paintseg.paint.finetune import FinetuneError, finetune_pipeline

    with pytest.raises(FinetuneError, match="minutes 1.0: budgets in minutes"):
        finetune_pipeline(texture_episode, tmp_path / "nothing", tmp_path / "out", GeneratorConfig(minutes=1.0))
    assert not (tmp_path / "out").exists()
