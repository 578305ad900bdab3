"""Pretrained diffusers generators (Paint-by-Example, SD inpainting) through paintseg's paint path, with tiny random
weights saved in the real on-disk format (tests/tiny_pipelines.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from conftest import POOL  # noqa: E402
from tiny_pipelines import placement_jobs, save_paint_by_example, save_sd_inpaint  # noqa: E402
from paintseg.config import CurateConfig, PaintConfig, PlaceConfig  # noqa: E402
from paintseg.curate.pipeline import curate
from paintseg.data.episode import Episode  # noqa: E402
from paintseg.paint.diffusion.model import GeneratorError  # noqa: E402
from paintseg.paint.generate import generate, make_backend  # noqa: E402
from paintseg.paint.pipelines import PretrainedBackend, pipeline_kind, resolve_dtype  # noqa: E402


@pytest.fixture(scope="module")
def pbe(tmp_path_factory) -> Path:
    return save_paint_by_example(tmp_path_factory.mktemp("pbe") / "pipe")


@pytest.fixture(scope="module")
def sd_inpaint(tmp_path_factory) -> Path:
    return save_sd_inpaint(tmp_path_factory.mktemp("sd") / "pipe")


def test_the_hub_index_defeats_plain_from_pretrained_but_paintseg_loads_it(pbe: Path) -> None:
    from diffusers import PaintByExamplePipeline

    index = json.loads((pbe / "model_index.json").read_text())
    assert index["image_encoder"] == ["paint_by_example", "PaintByExampleImageEncoder"]
    with pytest.raises(ValueError, match="paint_by_example"):
        PaintByExamplePipeline.from_pretrained(pbe)
    assert pipeline_kind(pbe) == "paint-by-example"
    from safetensors.torch import load_file

    backend = PretrainedBackend(pbe, PaintConfig(scheduler="default", steps=2, window=64, device="cpu"))
    assert backend.pipe.image_encoder.__class__.__name__ == "PaintByExampleImageEncoder"
    saved = load_file(pbe / "image_encoder" / "model.safetensors")
    assert "model.vision_model.embeddings.class_embedding" in saved  # the hub's key names, loaded as they are
    loaded = dict(backend.pipe.image_encoder.named_parameters())
    key = next(k for k in loaded if k.endswith("embeddings.class_embedding"))
    assert np.array_equal(loaded[key].detach().numpy(), saved["model.vision_model.embeddings.class_embedding"].numpy())


def test_paint_by_example_paints_inside_the_mask_only_and_is_batch_independent(pbe: Path, tiny_episode: Path) -> None:
    ep = Episode(tiny_episode)
    jobs = placement_jobs(ep)
    paint = PaintConfig(scheduler="default", steps=2, guidance=3.0, window=64, device="cpu")
    backend = PretrainedBackend(pbe, paint, seed=5)
    both = backend.paint(jobs, 2)
    assert [len(c) for c in both] == [2, 2]
    for job, cands in zip(jobs, both):
        for cand in cands:
            assert cand.image.shape == job.window_image.shape and cand.image.dtype == np.uint8
            assert np.array_equal(cand.image[~job.mask], job.window_image[~job.mask])
            assert np.abs(cand.image[job.mask].astype(int) - job.window_image[job.mask]).mean() > 1.0
            assert np.array_equal(cand.object_mask, job.mask)
    assert not np.array_equal(both[0][0].image, both[0][1].image)  # candidates differ
    alone = backend.paint(jobs[1:], 2)  # the same placement painted in another batch: the same pixels
    assert np.array_equal(alone[0][1].image, both[1][1].image)


def test_generate_with_a_pipeline_folder_writes_a_synthetic_set(pbe: Path, tiny_episode: Path, tmp_path: Path) -> None:
    ep = Episode(tiny_episode)
    backend, settings = make_backend(pbe, PaintConfig(steps=2, guidance=2.0, scheduler="ddim", window=64,
                                                      device="cpu", strength=1.0))
    assert settings["pipeline"] == "paint-by-example" and settings["scheduler"] == "ddim"
    assert backend.pipe.scheduler.__class__.__name__ == "DDIMScheduler"
    sde, _ = make_backend(pbe, PaintConfig(steps=2, scheduler="dpm++sde", window=64, device="cpu", strength=1.0))
    assert sde.pipe.scheduler.config.algorithm_type == "sde-dpmsolver++"
    summary = generate(ep, backend, tmp_path / "syn", PlaceConfig(per_class=2),
                       PaintConfig(candidates=2, strength=1.0),
                       backend_settings=settings, progress=False)
    curate(ep, tmp_path / "syn", tmp_path / "syn", CurateConfig(filter="none"), progress=False)
    lines = [json.loads(x) for x in (tmp_path / "syn/candidates/manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {x["backend"] for x in lines} == {"paint-by-example"}
    assert summary["candidates"] == 4 and summary["painted_now"] == 2
    assert len(list((tmp_path / "syn/images").iterdir())) >= 1


def test_sd_inpaint_uses_one_prompt_per_class(sd_inpaint: Path, tiny_episode: Path) -> None:
    ep = Episode(tiny_episode)
    backend, settings = make_backend(sd_inpaint, PaintConfig(steps=2, window=64, device="cpu", strength=1.0),
                                     class_names={POOL: "pool"})
    assert settings["pipeline"] == "sd-inpaint"
    assert settings["prompts"] == {str(POOL): "a top-down satellite image of a pool"}
    own = PretrainedBackend(sd_inpaint, PaintConfig(scheduler="default", steps=2, window=64, device="cpu"),
                            prompts={POOL: "a swimming pool, top view"})
    assert own.prompt(POOL) == "a swimming pool, top view"
    jobs = placement_jobs(ep, 1)
    cands = backend.paint(jobs, 1)[0]
    assert np.array_equal(cands[0].image[~jobs[0].mask], jobs[0].window_image[~jobs[0].mask])
    assert not np.array_equal(cands[0].image, own.paint(jobs, 1)[0][0].image)  # the prompt conditions it


@pytest.mark.slow
def test_bad_pretrained_inputs_say_what_to_do(pbe: Path, tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="half precision is for GPUs"):
        resolve_dtype("fp16", "cpu")
    with pytest.raises(GeneratorError, match="hub cannot be asked.*--generator DIR"):
        pipeline_kind("no-such-owner/no-such-model-xyz")
    with pytest.raises(Exception, match="pretrained pipeline paints from noise only; pass --strength 1"):
        make_backend(pbe, PaintConfig(window=64, device="cpu"))  # the default strength, 0.3, is paintseg's painters'
    with pytest.raises(Exception, match="prompts for 'boat': not a novel class of this episode"):
        make_backend(pbe, PaintConfig(window=64, device="cpu", strength=1.0, prompts={"boat": "a boat"}),
                     class_names={1: "pool"})
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(GeneratorError, match="cannot paint placements"):
        pipeline_kind(broken)
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "PaintByExamplePipeline"}))
    with pytest.raises(GeneratorError, match="does not load"):
        PretrainedBackend(broken, PaintConfig(scheduler="default", window=64, device="cpu"))


def test_cli_generate_paints_with_a_pipeline_and_a_class_prompt(sd_inpaint: Path, tiny_episode: Path,
                                                                tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from paintseg.cli import app

    args = ["generate", str(tiny_episode), "--generator", str(sd_inpaint), "--out", str(tmp_path / "syn"),
            "--per-class", "1", "--candidates", "1", "--steps", "2", "--window-size", "64", "--device", "cpu",
            "--strength", "1", "--select", "first"]
    result = CliRunner().invoke(app, args + ["--prompt", "pool=a swimming pool, top view"])
    assert result.exit_code == 0, result.output
    recorded = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "syn/generate.yaml").read_text())))
    assert recorded["pipeline"] == "sd-inpaint" and recorded["prompts"] == {str(POOL): "a swimming pool, top view"}
    bad = CliRunner().invoke(app, args[:-1] + ["none", "--prompt", "pool"])
    assert bad.exit_code == 2 and "give CLASS=TEXT" in bad.output


@pytest.mark.slow
def test_paintseg_run_paints_with_a_pipeline_folder_and_keeps_a_hub_id(pbe: Path, tiny_episode: Path,
                                                                       tmp_path: Path) -> None:
    import shutil

    import yaml

    from paintseg.errors import PaintsegError
    from paintseg.experiment.spec import load_experiment
    from paintseg.experiment.run import run_experiment

    shutil.copytree(pbe, tmp_path / "pbe")
    data = {"name": "pipe", "episode": {"path": "episode"}, "generator": {"path": "pbe"},
            "generation": {"per_class": 2, "candidates": 2, "steps": 2, "batch": 2, "window": 64, "device": "cpu",
                           "quality_tests": 2, "refine": "none"},
            "arms": ["baseline", "diffusion"],
            "models": [{"arch": "unet", "encoder": "resnet18"}],
            "train": {"steps": 2, "batch": 2, "crop": 64, "checkpoint_every": 2, "warmup_steps": 1}, "seeds": [0]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PaintsegError, match="generator.path is a pretrained pipeline, which paints from noise only"):
        load_experiment(tmp_path / "exp.yaml")  # refused when the config is read, not when painting starts
    data["generation"]["strength"] = 1.0
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    config = load_experiment(tmp_path / "exp.yaml")
    saved = run_experiment(config, tmp_path / "exp", progress=False).dump()
    paint = saved["synthetic"][0]["paint"]["diffusion"]
    recorded = yaml.safe_load((tmp_path / "exp" / paint / "generate.yaml").read_text())
    assert recorded["pipeline"] == "paint-by-example" and recorded["size"] == 64
    assert saved["painting_quality"]["backends"]["diffusion"]["tests"] >= 1
    assert {r["arm"] for r in saved["runs"]} == {"baseline", "diffusion"}

    data["generator"] = {"path": "Fantasy-Studio/Paint-by-Example"}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(data))
    hub = load_experiment(tmp_path / "hub.yaml")
    assert hub.generator.path == "Fantasy-Studio/Paint-by-Example"  # not joined to the config's folder
    with pytest.raises(PaintsegError, match="hub cannot be asked.*--generator DIR"):
        run_experiment(hub, tmp_path / "exp_hub", progress=False)
