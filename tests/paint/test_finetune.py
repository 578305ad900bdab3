"""`paintseg generator train --init PIPE`: the self-supervised recipe fine-tunes a (tiny, random) Paint-by-Example
pipeline in its latent space with accelerate; the result is a pipeline folder that paints; a killed run resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tiny_pipelines import save_paint_by_example, save_sd_inpaint  # noqa: E402
from paintseg.config import GeneratorConfig, PaintConfig  # noqa: E402
from paintseg.data.episode import Episode  # noqa: E402
from paintseg.paint import finetune as finetune_module  # noqa: E402
from paintseg.paint.finetune import FinetuneError, finetune_pipeline  # noqa: E402
from paintseg.paint.pipelines import PretrainedBackend, load_pipeline  # noqa: E402


def _config(**kw) -> GeneratorConfig:
    return GeneratorConfig(size="tiny", steps=4, batch=2, resolution=64, lr=1e-3, warmup_steps=0,
                           checkpoint_every=2, **kw)


def test_finetune_changes_the_unet_and_mapper_not_the_tower_and_paints(tiny_episode: Path, tmp_path: Path) -> None:
    init = save_paint_by_example(tmp_path / "pbe")
    out = tmp_path / "tuned"
    path = finetune_pipeline(Episode(tiny_episode), init, out, _config(), progress=False, device="cpu")
    assert path == out / "model_index.json" and not (out / "checkpoints").exists()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3, 4] and all(0 < x["loss"] < 10 for x in log)
    before, after = load_pipeline(init), load_pipeline(out)
    changed = lambda a, b: not torch.equal(a, b)  # noqa: E731
    assert changed(before.unet.conv_in.weight, after.unet.conv_in.weight)
    assert changed(before.image_encoder.proj_out.weight, after.image_encoder.proj_out.weight)
    assert changed(before.image_encoder.uncond_vector, after.image_encoder.uncond_vector)
    tower = {k: v for k, v in before.image_encoder.state_dict().items() if k.startswith("model.")}
    assert all(torch.equal(v, after.image_encoder.state_dict()[k]) for k, v in tower.items())
    assert all(torch.equal(v, after.vae.state_dict()[k]) for k, v in before.vae.state_dict().items())
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["processes"] == 1
    from tiny_pipelines import placement_jobs

    jobs = placement_jobs(Episode(tiny_episode), 1)
    paint = PaintConfig(scheduler="default", steps=2, window=64, device="cpu")
    assert PretrainedBackend(out, paint).paint(jobs, 1)[0][0].image.shape == \
        jobs[0].window_image.shape
    assert finetune_pipeline(Episode(tiny_episode), init, out, _config(), resume=True, progress=False) == path
    with pytest.raises(FinetuneError, match="already holds a fine-tuned pipeline"):
        finetune_pipeline(Episode(tiny_episode), init, out, _config(), progress=False)


def test_a_killed_finetune_resumes_to_the_uninterrupted_weights(tiny_episode: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    init = save_paint_by_example(tmp_path / "pbe")
    ep = Episode(tiny_episode)
    finetune_pipeline(ep, init, tmp_path / "straight", _config(), progress=False, device="cpu")
    real = finetune_module.PairSampler.batch

    def crash(self, step):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return real(self, step)

    monkeypatch.setattr(finetune_module.PairSampler, "batch", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune_pipeline(ep, init, tmp_path / "resumed", _config(), progress=False, device="cpu")
    assert json.loads((tmp_path / "resumed/checkpoints/state/step.json").read_text())["step"] == 2
    assert not (tmp_path / "resumed/model_index.json").exists()
    with pytest.raises(FinetuneError, match="pass --resume"):
        finetune_pipeline(ep, init, tmp_path / "resumed", _config(), progress=False, device="cpu")
    monkeypatch.setattr(finetune_module.PairSampler, "batch", real)
    finetune_pipeline(ep, init, tmp_path / "resumed", _config(), resume=True, progress=False, device="cpu")
    a, b = load_pipeline(tmp_path / "straight"), load_pipeline(tmp_path / "resumed")
    for key, value in a.unet.state_dict().items():
        assert torch.allclose(value, b.unet.state_dict()[key], atol=1e-6), key
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed/log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_finetune_refuses_what_it_cannot_train(tiny_episode: Path, tmp_path: Path) -> None:
    sd = save_sd_inpaint(tmp_path / "sd")
    with pytest.raises(FinetuneError, match="an SD inpainting pipeline has no reference"):
        finetune_pipeline(Episode(tiny_episode), sd, tmp_path / "o", _config(), progress=False)
    pbe = save_paint_by_example(tmp_path / "pbe")
    with pytest.raises(FinetuneError, match="resolution 60"):
        finetune_pipeline(Episode(tiny_episode), pbe, tmp_path / "o", _config().model_copy(update={"resolution": 60}),
                          progress=False, device="cpu")
    with pytest.raises(FinetuneError, match="mixed precision 'fp8'"):
        finetune_pipeline(Episode(tiny_episode), pbe, tmp_path / "o", _config(), mixed_precision="fp8")


def test_cli_generator_train_init_then_generate_with_it(tiny_episode: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paintseg.cli import app

    init = save_paint_by_example(tmp_path / "pbe")
    out = tmp_path / "tuned"
    r = CliRunner().invoke(app, ["generator", "train", str(tiny_episode), "--out", str(out), "--init", str(init),
                                 "--steps", "2", "--batch", "2", "--device", "cpu", "--no-gradient-checkpointing"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "PaintByExamplePipeline"
    r = CliRunner().invoke(app, ["generate", str(tiny_episode), "--generator", str(out), "--out", str(tmp_path / "syn"),
                                 "--per-class", "1", "--candidates", "1", "--steps", "2", "--window-size", "64",
                                 "--select", "first", "--strength", "1"])
    assert r.exit_code == 0, r.output
    bad = CliRunner().invoke(app, ["generator", "train", str(tiny_episode), "--out", str(tmp_path / "x"), "--init",
                                   str(init), "--mixed-precision", "fp8"])
    assert bad.exit_code == 2 and "mixed precision 'fp8'" in bad.output
