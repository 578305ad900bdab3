"""Segmentation stage: config, model factory, training sampler, training + resume, sliding-window prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_tiny_episode, tiny_scene

from paintseg.config import ConfigError, TrainConfig, dump_yaml, load_yaml
from paintseg.data.classes import IGNORE
from paintseg.data.episode import Episode
from paintseg.data.raster import read_label, write_image, write_label
from paintseg.segment import data as segdata
from paintseg.segment.data import DataError, TrainingSampler
from paintseg.networks import ARCHS, ModelError, build_model
from paintseg.segment.predict import PredictError, predict, predict_array, window_weight
from paintseg.segment.train import TrainError, load_model, train

# A small, fast model for the tiny 64x64 scenes (timm encoders need no download with encoder_weights=None).
FAST = dict(arch="unet", encoder="tu-resnet10t", crop=64, batch=4, lr=1e-3, warmup_steps=5)


# ------------------------------------------------------------------------------------------------ config
def test_config_defaults_and_yaml_roundtrip(tmp_path: Path) -> None:
    cfg = TrainConfig(steps=50, rgb_bands=[4, 3, 2])
    path = dump_yaml(cfg, tmp_path / "train.yaml")
    assert load_yaml(path, TrainConfig) == cfg
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("field, value, message", [
    ("crop", 100, "not a multiple of 32"),
    ("support_fraction", 1.0, "not a fraction in [0, 1)"),
    ("arch", "nope", "unknown arch 'nope'"),
    ("class_weights", "inverse", "inverse-sqrt"),
    ("rgb_bands", [0, 1, 2], "counted from 1"),
])
def test_config_rejects_bad_values_with_clear_message(tmp_path: Path, field: str, value, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({field: value}))
    with pytest.raises(ConfigError) as err:
        load_yaml(path, TrainConfig)
    assert str(path) in str(err.value) and message in str(err.value)


def test_config_pan_needs_larger_crop_and_fractions_must_fit() -> None:
    with pytest.raises(ValueError, match="crop >= 128"):
        TrainConfig(arch="pan", crop=64)
    with pytest.raises(ValueError, match="exceed 1"):
        TrainConfig(support_fraction=0.6, synthetic_fraction=0.6)


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("arch, encoder", [("unet", "tu-resnet10t"), ("fpn", "tu-resnet10t"),
                                           ("segformer", "tu-resnet10t"), ("deeplabv3plus", "resnet18")])
def test_build_model_output_shape(arch: str, encoder: str) -> None:
    model = build_model(arch, encoder, num_classes=5).eval()
    with torch.inference_mode():
        out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 5, 64, 96)
    assert arch in ARCHS


def test_build_model_unknown_names() -> None:
    with pytest.raises(ModelError, match="unknown arch 'nope'; choose one of unet, unetplusplus"):
        build_model("nope", "resnet18", 5)
    with pytest.raises(ModelError, match=r"unknown encoder 'resnet19'.*resnet18"):
        build_model("unet", "resnet19", 5)
    with pytest.raises(ModelError, match="unknown timm encoder 'tu-not_a_model'"):
        build_model("unet", "tu-not_a_model", 5)
    with pytest.raises(ModelError, match="has no pretrained weights 'nope'"):
        build_model("unet", "resnet18", 5, encoder_weights="nope")


# ------------------------------------------------------------------------------------------------ sampler
def _sampler(root: Path, **overrides) -> TrainingSampler:
    return TrainingSampler(Episode(root), TrainConfig(**{**FAST, **overrides}))


def test_sampler_shapes_pools_and_background_ignored(tiny_episode: Path) -> None:
    sampler = _sampler(tiny_episode, batch=16, crop=32)
    # no synthetic set: its share goes to the trainset, the support keeps support_fraction
    assert sampler.weights == {"train": 0.75, "support": 0.25, "synthetic": 0.0}
    images, labels = sampler.batch(0)
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16, 32, 32) and labels.dtype == torch.int64
    assert 0 <= float(images.min()) and float(images.max()) <= 1
    values = set(torch.unique(labels).tolist())
    assert 0 not in values and IGNORE in values and values <= {1, 2, 3, 4, IGNORE}

    learnt = _sampler(tiny_episode, batch=16, crop=32, learn_background=True)
    assert 0 in set(torch.unique(learnt.batch(0)[1]).tolist())


def test_sampler_pads_small_images_with_ignore(tiny_episode: Path) -> None:
    images, labels = _sampler(tiny_episode, crop=96).batch(3)
    assert images.shape == (4, 3, 96, 96)
    assert ((labels == IGNORE).float().mean(dim=(1, 2)) >= 1 - 64 * 64 / 96**2 - 1e-6).all()


def test_sampler_is_deterministic_per_seed_and_step(tiny_episode: Path) -> None:
    a, b = _sampler(tiny_episode), _sampler(tiny_episode)
    assert torch.equal(a.batch(7)[0], b.batch(7)[0]) and torch.equal(a.batch(7)[1], b.batch(7)[1])
    assert not torch.equal(a.batch(7)[0], a.batch(8)[0])
    assert not torch.equal(a.batch(7)[0], _sampler(tiny_episode, seed=1).batch(7)[0])


def test_support_crops_centred_on_novel_pixels(tiny_episode: Path, monkeypatch) -> None:
    monkeypatch.setattr(segdata, "CENTRED_CROP_PROB", 1.0)
    sampler = _sampler(tiny_episode, batch=32, crop=32)
    sampler.weights = {"train": 0.0, "support": 1.0, "synthetic": 0.0}  # every crop from the support pool
    _, labels = sampler.batch(0)
    assert all((lab == 4).any() for lab in labels)


def test_synthetic_pool_and_class_weights(tiny_episode: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    syn = tmp_path / "synthetic"
    for i in range(2):
        img, lab = tiny_scene(rng, 64, pools=2)
        write_image(syn / "images" / f"s{i}.png", img)
        write_label(syn / "labels" / f"s{i}.png", lab)
    sampler = TrainingSampler(Episode(tiny_episode), TrainConfig(**FAST), [syn])
    assert len(sampler.pools["synthetic"]) == 2
    assert sampler.weights == pytest.approx({"train": 0.25, "support": 0.25, "synthetic": 0.5})
    weights = sampler.class_weights()
    assert weights.shape == (5,) and weights[4] > weights[1]  # the rare novel class weighs more

    (syn / "labels" / "s1.png").unlink()
    with pytest.raises(DataError, match=r"s1.png: no label with stem 's1'"):
        TrainingSampler(Episode(tiny_episode), TrainConfig(**FAST), [syn])


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Episode, Path]:
    """One run trained for 120 steps on a tiny episode, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("trained")
    episode = Episode(make_tiny_episode(root / "episode"))
    train(episode, root / "run", TrainConfig(**FAST, steps=120, checkpoint_every=50), progress=False)
    return episode, root / "run"


@pytest.mark.slow
def test_train_writes_run_folder_and_loss_decreases(trained) -> None:
    episode, run = trained
    for name in ("config.yaml", "classes.json", "log.jsonl", "model.pt", "train_summary.json"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoints").exists()  # the resume state is dropped once model.pt is written
    lines = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines] == list(range(1, 121))
    losses = [ln["loss"] for ln in lines]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    record = yaml.safe_load((run / "config.yaml").read_text())
    assert record["episode"] == str(episode.root.resolve()) and record["train"]["steps"] == 120
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 120 and summary["seconds_per_step"] > 0 and summary["peak_rss_mb"] > 0
    model, classes, meta = load_model(run)
    assert classes == episode.classes and meta["num_classes"] == 5 and meta["crop"] == 64
    assert meta["step"] == 120


def test_a_finished_run_without_its_checkpoint_is_done_or_says_how_to_continue(trained) -> None:
    episode, run = trained
    cfg = TrainConfig(**FAST, steps=120, checkpoint_every=50)
    mtime = (run / "model.pt").stat().st_mtime_ns
    assert train(episode, run, cfg, resume=True, progress=False) == run / "model.pt"
    assert (run / "model.pt").stat().st_mtime_ns == mtime  # already done: not retrained from scratch
    with pytest.raises(TrainError, match=r"finished at step 120 and its resume checkpoint was dropped.*"
                                         r"pass steps=120.*--keep-checkpoint"):
        train(episode, run, cfg.model_copy(update={"steps": 130}), resume=True, progress=False)


def test_resume_after_kill_equals_uninterrupted_run(tiny_episode: Path, tmp_path: Path, monkeypatch) -> None:
    episode = Episode(tiny_episode)
    cfg = TrainConfig(**FAST, steps=20, checkpoint_every=5)
    train(episode, tmp_path / "full", cfg, progress=False)

    real_batch = TrainingSampler.batch

    def killed_at_12(self, step):
        if step == 12:
            raise KeyboardInterrupt
        return real_batch(self, step)

    monkeypatch.setattr(TrainingSampler, "batch", killed_at_12)
    with pytest.raises(KeyboardInterrupt):
        train(episode, tmp_path / "killed", cfg, progress=False)
    assert torch.load(tmp_path / "killed/checkpoints/last.pt", weights_only=True)["step"] == 10
    assert not (tmp_path / "killed/model.pt").exists()
    with pytest.raises(TrainError, match="--resume"):
        load_model(tmp_path / "killed")
    with pytest.raises(TrainError, match="pass --resume"):
        train(episode, tmp_path / "killed", cfg, progress=False)

    monkeypatch.setattr(TrainingSampler, "batch", real_batch)
    train(episode, tmp_path / "killed", cfg, resume=True, progress=False)
    full = torch.load(tmp_path / "full/model.pt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "killed/model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(full[k].float(), resumed[k].float(), atol=1e-6) for k in full)
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "killed/log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))

    mtime = (tmp_path / "killed/model.pt").stat().st_mtime_ns
    assert train(episode, tmp_path / "killed", cfg, resume=True, progress=False) == tmp_path / "killed/model.pt"
    assert (tmp_path / "killed/model.pt").stat().st_mtime_ns == mtime  # already done: returns at once

    with pytest.raises(TrainError, match=r"cannot resume.*lr: run has 0.001, now 0.002"):
        train(episode, tmp_path / "killed", cfg.model_copy(update={"lr": 2e-3}), resume=True, progress=False)


def test_resume_extends_a_finished_run_with_dice_and_class_weights(tiny_episode: Path, tmp_path: Path) -> None:
    episode = Episode(tiny_episode)
    cfg = TrainConfig(**FAST, steps=4, checkpoint_every=2, dice_weight=0.5, class_weights="inverse-sqrt",
                      keep_checkpoint=True)
    train(episode, tmp_path / "run", cfg, progress=False)
    assert torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["step"] == 4
    train(episode, tmp_path / "run", cfg.model_copy(update={"steps": 6}), resume=True, progress=False)
    assert torch.load(tmp_path / "run/model.pt", weights_only=True)["step"] == 6
    assert len((tmp_path / "run/log.jsonl").read_text().splitlines()) == 6


# ------------------------------------------------------------------------------------------------ prediction
class _ColourModel(torch.nn.Module):
    """Logits that are one-hot of round(4 * red): a model whose exact answer is known for every pixel."""

    num_classes = 5

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = (x[:, 0] * 4).round().long()
        return torch.nn.functional.one_hot(ids, 5).permute(0, 3, 1, 2).float() * 10


def test_sliding_window_stitches_exactly() -> None:
    rng = np.random.default_rng(0)
    expected = rng.integers(0, 5, (70, 100)).astype(np.uint8)
    image = np.zeros((70, 100, 3), np.float32)
    image[..., 0] = expected / 4
    for window, overlap in ((32, 0.25), (64, 0.5), (128, 0.0)):  # 128: the image is padded
        got = predict_array(_ColourModel(), image, window, overlap, batch=3)
        assert got.shape == (70, 100) and np.array_equal(got, expected)
    weight = window_weight(32)
    assert float(weight.min()) > 0 and float(weight[15, 15]) > 0.99 > 0.1 > float(weight[0, 0])


def test_predict_geotiff_keeps_georeference_and_size(trained, tmp_path: Path) -> None:
    from affine import Affine
    from rasterio.crs import CRS

    from paintseg.data.raster import Raster, read_image

    _, run = trained
    img, _ = tiny_scene(np.random.default_rng(5), 128, pools=2)
    like = Raster(img[:70, :100], "GTiff", crs=CRS.from_epsg(32633), transform=Affine(0.5, 0, 500000, 0, -0.5, 4000000))
    src = write_image(tmp_path / "in" / "scene.tif", img[:70, :100], like=like)
    (written,) = predict(run, [tmp_path / "in"], tmp_path / "pred", progress=False)
    assert written == tmp_path / "pred" / "scene.tif"
    label = read_label(written)
    assert label.array.shape == (70, 100)
    assert label.crs == read_image(src).crs and label.transform == read_image(src).transform
    assert set(np.unique(label.array).tolist()) <= {1, 2, 3, 4}
    assert (tmp_path / "pred" / "color" / "scene.png").is_file()


def test_windowed_prediction_of_a_geotiff_equals_the_in_memory_one(trained, tmp_path: Path) -> None:
    """Column blocks and windowed reads/writes (the large-GeoTIFF path) give the labels of the in-memory path."""
    from affine import Affine
    from rasterio.crs import CRS

    from paintseg.data.raster import Raster
    from paintseg.segment.predict import predict_geotiff
    from paintseg.segment.train import load_model
    from paintseg.segment.predict import allowed_classes

    episode, run = trained
    img, _ = tiny_scene(np.random.default_rng(7), 192, pools=3)
    like = Raster(img[:150, :190], "GTiff", crs=CRS.from_epsg(32633), transform=Affine(0.5, 0, 5e5, 0, -0.5, 4e6))
    src = write_image(tmp_path / "in" / "scene.tif", img[:150, :190], like=like)
    (whole,) = predict(run, [src], tmp_path / "mem", batch=1, progress=False)
    model, classes, meta = load_model(run)
    blocked = predict_geotiff(model, src, tmp_path / "win" / "scene.tif", 64, 0.25, 1,
                              allowed_classes(classes, meta), classes, columns=40)
    a, b = read_label(whole), read_label(blocked)
    assert np.array_equal(a.array, b.array) and b.crs == a.crs and b.transform == a.transform
    (auto,) = predict(run, [src], tmp_path / "auto", batch=1, progress=False, large_pixels=0)  # the CLI's path
    assert np.array_equal(read_label(auto).array, a.array) and (tmp_path / "auto/color/scene.png").is_file()


@pytest.mark.slow
def test_predict_a_4096_px_geotiff_tiled_from_the_real_sample(trained, shared_data: Path, tmp_path: Path) -> None:
    """A 4096 x 4096 GeoTIFF (adelaide_2.tif tiled 4 x 4) goes window by window: same CRS, transform and size."""
    import rasterio

    _, run = trained
    with rasterio.open(shared_data / "oem_geotiff_sample" / "adelaide_2.tif") as s:
        tile, profile = s.read(), s.profile
    big = tmp_path / "big.tif"
    profile.update(width=4096, height=4096, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(big, "w", **profile) as dst:
        for r in range(4):
            for c in range(4):
                dst.write(tile, window=rasterio.windows.Window(c * 1024, r * 1024, 1024, 1024))
    (out,) = predict(run, [big], tmp_path / "pred", window=256, batch=8, progress=False, large_pixels=1024 * 1024)
    with rasterio.open(big) as a, rasterio.open(out) as b:
        assert (b.width, b.height, b.count, b.crs, b.transform) == (a.width, a.height, 1, a.crs, a.transform)
        corner = b.read(1, window=rasterio.windows.Window(0, 0, 64, 64))
    assert set(np.unique(corner).tolist()) <= {1, 2, 3, 4}
    assert not list((tmp_path / "pred").glob(".*.partial"))


def test_predict_accuracy_on_query_images(trained, tmp_path: Path) -> None:
    episode, run = trained
    written = predict(run, [s.image for s in episode.query], tmp_path / "pred", progress=False)
    assert [p.name for p in written] == [f"query_{i}.png" for i in range(3)]
    correct = total = 0
    for sample, path in zip(episode.query, written):
        truth, pred = read_label(sample.label).array, read_label(path).array
        correct += int((truth == pred).sum())
        total += truth.size
    assert correct / total > 0.8


def test_predict_input_errors(trained, tmp_path: Path) -> None:
    episode, run = trained
    a = write_image(tmp_path / "a" / "x.png", np.zeros((8, 8, 3), np.uint8))
    b = write_image(tmp_path / "b" / "x.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(PredictError, match="same stem 'x'"):
        predict(run, [a, b], tmp_path / "pred", progress=False)
    with pytest.raises(PredictError, match="would overwrite an input image"):
        predict(run, [a], tmp_path / "a", progress=False)
    with pytest.raises(PredictError, match="multiple of 32"):
        predict(run, [a], tmp_path / "pred", window=50, progress=False)
    with pytest.raises(TrainError, match="no model.pt"):
        predict(tmp_path, [a], tmp_path / "pred", progress=False)


def test_encoder_learning_rate_scale(tiny_episode: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(**FAST, steps=2, checkpoint_every=2, encoder_lr_scale=0.1, keep_checkpoint=True)
    train(Episode(tiny_episode), tmp_path / "run", cfg, progress=False)
    groups = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[0]["initial_lr"] == pytest.approx(0.1 * cfg.lr)
    assert groups[1]["initial_lr"] == pytest.approx(cfg.lr)


def test_near_novel_keeps_only_the_surroundings_of_novel_pixels() -> None:
    from paintseg.segment.data import near_novel

    label = np.full((40, 40), 1, np.uint8)
    label[18:22, 18:22] = 4  # a novel object
    near = near_novel(label, [4], radius=3)
    assert (near[18:22, 18:22] == 4).all() and near[16, 20] == 1 and near[15, 20] == 1  # within 3 px kept
    assert near[14, 20] == 255 and near[0, 0] == 255 and (near == 1).sum() < 100
    assert (near_novel(np.ones((8, 8), np.uint8), [4], 3) == 255).all()  # no novel pixel: nothing to learn from


def test_ignore_border_blanks_the_seam_of_synthetic_objects(tiny_episode: Path, tmp_path: Path) -> None:
    from paintseg.segment.data import TrainingSampler, ignore_border

    label = np.full((40, 40), 1, np.uint8)
    label[10:30, 10:30] = 4
    out = ignore_border(label, [4], 2)
    assert (out[14:26, 14:26] == 4).all() and out[20, 10] == 255 and out[20, 8] == 255 and out[20, 7] == 1
    assert out[20, 11] == 255 and out[20, 12] == 4 and out[0, 0] == 1  # 2 px inside, 2 px outside
    assert (ignore_border(np.ones((8, 8), np.uint8), [4], 2) == 1).all()  # no novel object: unchanged
    edge = np.full((20, 20), 1, np.uint8)
    edge[:, :6] = 4  # an object cut by the image edge keeps its inside there
    assert ignore_border(edge, [4], 2)[10, 0] == 4

    syn = tmp_path / "syn"
    for sub in ("images", "labels"):
        (syn / sub).mkdir(parents=True)
    image = np.zeros((40, 40, 3), np.uint8)
    write_image(syn / "images/s.png", image)
    write_label(syn / "labels/s.png", label)
    sampler = TrainingSampler(Episode(tiny_episode), TrainConfig(**FAST, synthetic_border=2), [syn])
    kept = sampler.pools["synthetic"][0].label
    assert np.array_equal(kept, out)  # the sampler applies it to synthetic labels
