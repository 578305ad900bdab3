"""The latent painter: the autoencoder component (TAEF2 layout, strict loading, value ranges), the cached pool of
encoded training windows, training a latent GEN folder, and painting with it through the backend.

Tiny autoencoders are built here and saved as the released files are (plain state dicts of the ``nn.Sequential``
encoder and decoder, ``taef2_*.pth``); the ``realdata`` tests read the real TAEF2 files from ../shared/models/taef2.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from paintseg.config import ConfigError, GeneratorConfig, validate
from paintseg.files import sha256
from paintseg.evaluate.conditioning import masked_psnr
from paintseg.paint.autoencoder import KNOWN, AutoencoderError, TinyAutoencoder, load_autoencoder
from paintseg.paint.candidates import WindowJob
from paintseg.paint.diffusion import PairSampler, load_generator, to_tensor, to_uint8, train_generator
from paintseg.paint.diffusion.latent import POOL_FILE, LatentPairSampler, latent_mask, paint_windows
from paintseg.paint.diffusion.model import LATENT_SIZES, build_generator, load_autoencoder_of

from conftest import crash_at, quick_config

pytestmark = pytest.mark.usefixtures("one_thread")
TAEF2 = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "taef2"


def save_tiny_autoencoder(folder: Path, channels: int = 4, width: int = 8, pool: bool = True, seed: int = 0) -> Path:
    """A tiny TAESD-family autoencoder saved like the released TAEF2 files."""
    torch.manual_seed(seed)
    model = TinyAutoencoder(channels, width, pool)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.encoder.state_dict(), folder / "taef2_encoder.pth")
    torch.save(model.decoder.state_dict(), folder / "taef2_decoder.pth")
    return folder


def latent_config(autoencoder: Path, **changes) -> GeneratorConfig:
    base = dict(space="latent", autoencoder=str(autoencoder), latent_pool=16, sample_count=2)
    return quick_config(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny_ae(tmp_path_factory) -> Path:
    return save_tiny_autoencoder(tmp_path_factory.mktemp("ae"))


# ------------------------------------------------------------------------------------------- autoencoder
def test_tiny_autoencoder_loads_strictly_and_keeps_shapes_and_ranges(tiny_ae):
    ae = load_autoencoder(tiny_ae)
    assert ae.latent_channels == 4 and not any(p.requires_grad for p in ae.parameters())
    assert any(".pool." in k for k in ae.encoder.state_dict()) and any(".pool." in k for k in ae.decoder.state_dict())
    x = torch.rand(2, 3, 48, 32) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 4, 6, 4)
    y = ae.decode(z)
    assert y.shape == (2, 3, 48, 32) and float(y.min()) >= -1 and float(y.max()) <= 1
    with pytest.raises(AutoencoderError, match="multiples of 8"):
        ae.encode(torch.zeros(1, 3, 20, 16))
    with pytest.raises(AutoencoderError, match="B×4×H×W"):
        ae.decode(torch.zeros(1, 3, 4, 4))


def test_autoencoder_input_is_minus_one_to_one(tiny_ae):
    """encode() maps paintseg's [-1, 1] to the autoencoder's [0, 1]: the same as the raw encoder on (x + 1) / 2."""
    ae = load_autoencoder(tiny_ae)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ae.encode(x), ae.encoder((x + 1) / 2))
        assert torch.allclose(ae.decode(ae.encode(x)), (ae.decoder(ae.encoder((x + 1) / 2)) * 2 - 1).clamp(-1, 1))


def test_autoencoder_errors_name_the_file_and_the_fix(tmp_path, tiny_ae):
    with pytest.raises(AutoencoderError, match="no such folder.*madebyollin/taesd"):
        load_autoencoder(tmp_path / "nowhere")
    half = tmp_path / "half"
    half.mkdir()
    (half / "taef2_encoder.pth").write_bytes((tiny_ae / "taef2_encoder.pth").read_bytes())
    with pytest.raises(AutoencoderError, match=r"expected one \*_decoder.pth file, found none"):
        load_autoencoder(half)
    (half / "taef2_decoder.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AutoencoderError, match="taef2_decoder.pth: not a PyTorch state dict"):
        load_autoencoder(half)
    other = save_tiny_autoencoder(tmp_path / "other", channels=6)
    (half / "taef2_decoder.pth").write_bytes((other / "taef2_decoder.pth").read_bytes())
    with pytest.raises(AutoencoderError, match="taef2_decoder.pth: does not fit the autoencoder its encoder describes "
                                               r"\(4 latent channels"):
        load_autoencoder(half)
    nopool = save_tiny_autoencoder(tmp_path / "nopool", pool=False)
    (half / "taef2_decoder.pth").write_bytes((nopool / "taef2_decoder.pth").read_bytes())
    with pytest.raises(AutoencoderError, match="does not fit.*pooling on.*Missing key"):
        load_autoencoder(half)


def test_latent_config_needs_an_autoencoder():
    with pytest.raises(ConfigError, match="space: latent paints in an autoencoder's latents; give autoencoder"):
        validate({"space": "latent"}, GeneratorConfig, "gen.yaml")
    assert GeneratorConfig(space="latent", autoencoder="ae").latent_pool == 1024


def test_latent_sizes_and_resolution_rules(tiny_ae):
    for name, spec in LATENT_SIZES.items():
        model = build_generator(GeneratorConfig(space="latent", autoencoder="ae", size=name), latent_channels=4)
        assert model.spec.latent == 4 and model.spec.sample_size == spec.resolution // 8
        assert model.unet.config.in_channels == 9 and model.unet.config.out_channels == 4
    hinted = build_generator(GeneratorConfig(space="latent", autoencoder="ae", size="tiny", spatial_hint=True), 4)
    assert hinted.unet.config.in_channels == 14
    small = build_generator(GeneratorConfig(space="latent", autoencoder="ae", size="small"))
    assert 5e6 <= small.num_parameters <= 10e6 and small.spec.latent == 32
    from paintseg.paint.diffusion import GeneratorError

    with pytest.raises(GeneratorError, match="resolution 120 is not a multiple of 32.*latents at 1/8"):
        build_generator(GeneratorConfig(space="latent", autoencoder="ae", size="small", resolution=120))


@pytest.mark.realdata
def test_taef2_reconstructs_a_demo_scene(tmp_path):
    """The released TAEF2 files load strictly into our build; a 256-px demo scene comes back at >= 31 dB (measured
    32.3-32.8 dB on three scenes) and its latents are 32 x 32 x 32."""
    if not TAEF2.is_dir():
        pytest.skip(f"TAEF2 not found at {TAEF2} (it lives beside the repository as ../shared/models/taef2)")
    from paintseg.data.demo import make_scene

    assert {sha256(p) for p in sorted(TAEF2.glob("taef2_*.pth"))} == set(KNOWN)
    ae = load_autoencoder(TAEF2)
    image = make_scene(np.random.default_rng(0), 256)[0]
    with torch.no_grad():
        z = ae.encode(to_tensor(image))
        back = to_uint8(ae.decode(z))[0]
    assert z.shape == (1, 32, 32, 32) and 0.5 < float(z.std()) < 1.5
    assert masked_psnr(back, image, np.ones(image.shape[:2], bool)) >= 31.0


# ------------------------------------------------------------------------------------------- pool & pairs
def test_latent_mask_paints_a_cell_when_any_pixel_is():
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 9, 2] = 1
    cells = latent_mask(mask)
    assert cells.shape == (1, 1, 2, 2) and cells.sum() == 1 and cells[0, 0, 1, 0] == 1


def test_pool_is_encoded_once_and_reused(texture_episode, tiny_ae, tmp_path):
    config = latent_config(tiny_ae)
    pixels = PairSampler.from_episode(texture_episode, config)
    ae = load_autoencoder(tiny_ae)
    first = LatentPairSampler(pixels, ae, tmp_path / POOL_FILE, autoencoder_id="a")
    assert not first.reused and first.pool["latents"].shape == (16, 4, 8, 8)
    again = LatentPairSampler(pixels, ae, tmp_path / POOL_FILE, autoencoder_id="a")
    assert again.reused and torch.equal(again.pool["latents"], first.pool["latents"])
    other = LatentPairSampler(pixels, ae, tmp_path / POOL_FILE, autoencoder_id="b")  # another autoencoder
    assert not other.reused
    model = build_generator(config, 4)
    mean, std = first.scale()
    model.set_latent_scale(mean, std)
    batch = first.bind(model).batch(3)
    assert batch.target.shape == (4, 4, 8, 8) and batch.mask.shape == (4, 1, 8, 8)
    assert torch.equal(batch.masked, batch.target * (1 - batch.mask)) and batch.mask.sum() > 0
    flat = model.normalise(first.pool["latents"]).transpose(0, 1).reshape(4, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(4), atol=1e-4) and torch.allclose(flat.std(1), torch.ones(4), atol=1e-3)
    assert torch.equal(first.batch(3).target, batch.target)  # a step's pairs depend only on (seed, step)


# ------------------------------------------------------------------------------------------- training
def test_latent_generator_trains_resumes_and_paints(texture_episode, tiny_ae, tmp_path, monkeypatch):
    config = latent_config(tiny_ae, steps=6, checkpoint_every=3, sample_every=6)
    path = train_generator(texture_episode, tmp_path / "straight", config, progress=False)
    gen = path.parent
    index = json.loads(path.read_text())
    assert index["paintseg"]["space"] == "latent" and index["autoencoder"] == ["paintseg", "TinyAutoencoder"]
    assert (gen / "autoencoder/encoder.pth").is_file() and (gen / "autoencoder/decoder.pth").is_file()
    assert not (gen / POOL_FILE).exists()  # the pool goes with the checkpoint
    assert (gen / "samples/step_000006.png").is_file()
    summary = json.loads((gen / "train_summary.json").read_text())
    assert summary["space"] == "latent" and summary["latent_cache_seconds"] > 0

    crash_at(4, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_generator(texture_episode, tmp_path / "resumed", config, progress=False)
    assert (tmp_path / "resumed" / POOL_FILE).is_file()
    monkeypatch.undo()
    train_generator(texture_episode, tmp_path / "resumed", config, resume=True, progress=False)
    straight, _ = load_generator(gen)
    resumed, _ = load_generator(tmp_path / "resumed")
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key
    assert float(straight.latent_std.min()) > 0 and not torch.equal(straight.latent_std, torch.ones(4))

    # the folder paints without the autoencoder's original path
    moved = tmp_path / "moved_ae"
    tiny_ae.rename(moved)
    try:
        model, _ = load_generator(gen)
        ae = load_autoencoder_of(gen, model)
        R = model.spec.resolution
        windows = torch.rand(2, 3, R, R) * 2 - 1
        mask = torch.zeros(2, 1, R, R)
        mask[:, :, 16:40, 8:30] = 1
        ref = torch.rand(2, 3, model.spec.ref_size, model.spec.ref_size) * 2 - 1
        out = paint_windows(model, ae, windows, mask, ref, torch.ones(2, 1, *ref.shape[2:]), candidates=3, steps=3,
                            guidance=3.0, scheduler="ddim", generator=torch.Generator().manual_seed(0))
        assert out.shape == (6, 3, R, R) and torch.isfinite(out).all()
        again = paint_windows(model, ae, windows, mask, ref, torch.ones(2, 1, *ref.shape[2:]), candidates=3, steps=3,
                              guidance=3.0, scheduler="ddim", generator=torch.Generator().manual_seed(0))
        assert torch.equal(out, again)
    finally:
        moved.rename(tiny_ae)


def test_latent_backend_pastes_only_the_painted_region(texture_episode, tiny_ae, tmp_path):
    from paintseg.paint.generate import make_backend
    from paintseg.config import PaintConfig
    from paintseg.place.masks import Box
    from paintseg.place.placement import Placement
    from paintseg.place.references import Reference

    gen = train_generator(texture_episode, tmp_path / "gen", latent_config(tiny_ae, steps=2), progress=False).parent
    rng = np.random.default_rng(0)
    window = rng.integers(0, 255, (90, 90, 3), dtype=np.uint8)  # not a multiple of 8: resized on the way
    mask = np.zeros((90, 90), bool)
    mask[30:60, 25:55] = True
    ref = Reference(image=rng.integers(0, 255, (20, 24, 3), dtype=np.uint8), mask=np.ones((20, 24), bool),
                    class_id=1, source="s", box=Box(0, 0, 24, 20), instance_box=Box(0, 0, 24, 20))
    placement = Placement(scene="s", class_id=1, reference=0, box=Box(30, 30, 54, 50), window=Box(0, 0, 90, 90),
                          mask_kind="rectangle", seed=7)
    job = WindowJob(index=0, placement=placement, reference=ref, window_image=window, mask=mask,
                    box=Box(30, 30, 54, 50))
    for strength in (1.0, 0.4):
        backend, settings = make_backend(gen, PaintConfig(steps=4, strength=strength))
        assert backend.autoencoder is not None and settings["generator"] == str(gen.resolve())
        cands = backend.paint([job], 2)[0]
        assert len(cands) == 2
        for c in cands:
            assert c.image.shape == window.shape
            assert np.array_equal(c.image[~c.paint_mask], window[~c.paint_mask])
            assert (c.image[c.paint_mask] != window[c.paint_mask]).mean() > 0.5
            assert c.paint_mask[mask].all()
        assert not np.array_equal(cands[0].image, cands[1].image)


def test_cross_reference_pool_keeps_its_windows_and_draws_other_references(texture_episode, tiny_ae, tmp_path):
    """The latent pool with cross_reference: the same encoded windows, other instances' references, its own cache
    key (a pool made without it is encoded again, not reused)."""
    ae = load_autoencoder(tiny_ae)
    pools = {}
    for share in (0.0, 1.0):
        config = latent_config(tiny_ae, random_region_prob=0.0, spatial_hint=True, cross_reference=share)
        pools[share] = LatentPairSampler(PairSampler.from_episode(texture_episode, config), ae,
                                         tmp_path / POOL_FILE, autoencoder_id="a")
    assert not pools[1.0].reused
    own, cross = pools[0.0].pool, pools[1.0].pool
    assert torch.equal(own["latents"], cross["latents"]) and torch.equal(own["classes"], cross["classes"])
    differs = [not torch.equal(own["refs"][i], cross["refs"][i]) for i in range(len(own["refs"]))]
    assert sum(differs) >= len(differs) - 2 and not torch.equal(own["hints"], cross["hints"])


def test_hint_jitter_scales_how_far_a_training_hint_is_from_its_instance():
    from paintseg.paint.diffusion.data import hint_image
    from paintseg.place.masks import Box

    rng = np.random.default_rng(0)
    window = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    obj = np.zeros((32, 32), bool)
    obj[8:20, 10:24] = True
    rgb, mask = hint_image(window, obj, Box(10, 8, 24, 20), np.random.default_rng(1), jitter=0.0)
    assert np.array_equal(rgb, window) and np.array_equal(mask, obj)
    far = [np.abs(hint_image(window, obj, Box(10, 8, 24, 20), np.random.default_rng(1), jitter=j)[0].astype(int)
                  - window).mean() for j in (0.3, 1.0)]
    assert 0 < far[0] < far[1]
    with pytest.raises(ValueError, match="less than or equal to 2"):
        GeneratorConfig(hint_jitter=3)


@pytest.fixture(scope="module")
def tiny_latent_gen(texture_episode, tiny_ae, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("latent_gen") / "gen"
    return train_generator(texture_episode, out, latent_config(tiny_ae, steps=2, spatial_hint=True),
                           progress=False).parent


def test_any_window_and_mask_is_painted_inside_its_region_only(tiny_latent_gen):
    """Windows of any side (not only multiples of 8, smaller and larger than the painter's), masks of any shape and
    both painting modes: the candidates keep every pixel outside their painted region, cover the inpaint mask, and
    the same placement seed paints the same pixels."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from paintseg.config import PaintConfig
    from paintseg.paint.generate import make_backend
    from paintseg.place.masks import Box, mask_box
    from paintseg.place.placement import Placement
    from paintseg.place.references import Reference

    backends = {s: make_backend(tiny_latent_gen, PaintConfig(steps=3, strength=s))[0] for s in (0.3, 1.0)}

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(side=st.integers(12, 150), box=st.tuples(st.floats(0, 0.6), st.floats(0, 0.6), st.floats(0.15, 0.4),
                                                     st.floats(0.15, 0.4)),
           ref_shape=st.tuples(st.integers(3, 40), st.integers(3, 40)), strength=st.sampled_from([0.3, 1.0]),
           seed=st.integers(0, 2**31 - 1))
    def check(side, box, ref_shape, strength, seed):
        rng = np.random.default_rng(seed)
        x0, y0 = int(box[0] * side), int(box[1] * side)
        x1, y1 = min(side, x0 + max(2, int(box[2] * side))), min(side, y0 + max(2, int(box[3] * side)))
        window = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        mask = np.zeros((side, side), bool)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.8
        mask[y0, x0] = True
        h, w = ref_shape
        ref = Reference(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask=rng.random((h, w)) < 0.7,
                        class_id=1, source="s", box=Box(0, 0, w, h), instance_box=Box(0, 0, w, h))
        ref.mask[h // 2, w // 2] = True
        b = mask_box(mask)
        placement = Placement(scene="s", class_id=1, reference=0, box=b, window=Box(0, 0, side, side),
                              mask_kind="bezier", seed=seed % 1000)
        job = WindowJob(index=0, placement=placement, reference=ref, window_image=window, mask=mask, box=b)
        first = backends[strength].paint([job], 2)[0]
        again = backends[strength].paint([job], 2)[0]
        for c, d in zip(first, again):
            assert c.image.shape == window.shape and c.paint_mask.shape == mask.shape
            assert np.array_equal(c.image[~c.paint_mask], window[~c.paint_mask])
            assert c.paint_mask[mask].all()
            assert np.array_equal(c.image, d.image)

    check()
