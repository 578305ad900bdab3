"""`paintseg convert rs-paint`: a tiny checkpoint in RS-Paint's exact key layout (LDM UNet and VAE, open_clip image
tower, xf mapper, proj_out, learnable_vector), built here with random weights, converted and painted with."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")

from paintseg.paint.convert import ConvertError, convert_rs_paint  # noqa: E402

WIDTH, LAYERS, CROSS = 32, 4, 32  # tower width and blocks ((4 + 1) // 5 = 1 mapper block), UNet context width
TINY_CONFIG = {"model": {"params": {
    "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 32, "channels": 4,
    "scale_factor": 0.18215,
    "unet_config": {"params": {"image_size": 32, "in_channels": 9, "out_channels": 4, "model_channels": 32,
                               "attention_resolutions": [1], "num_res_blocks": 1, "channel_mult": [1, 2],
                               "num_heads": 4, "use_spatial_transformer": True, "transformer_depth": 1,
                               "context_dim": CROSS, "legacy": False}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}}}}}
TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": LAYERS, "width": WIDTH, "head_width": 8,
                                             "patch_size": 8},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
           "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def _res(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    return f"{table.get(head, head)}.{tail}"


def ldm_unet_keys(state: dict, per_level: int, has_attention: list[bool]) -> dict:
    """A diffusers UNet state dict in the original LDM layout (openaimodel.UNetModel), the inverse of diffusers'
    convert_ldm_unet_checkpoint: input_blocks / middle_block / output_blocks / time_embed / out."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top, step, out = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"], per_level + 1, {}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", key):
            b, kind, i, rest = int(m[1]), m[2], int(m[3]), m[4]
            if kind == "resnets":
                out[f"input_blocks.{1 + b * step + i}.0.{_res(rest, _RESNET)}"] = value
            elif kind == "attentions":
                out[f"input_blocks.{1 + b * step + i}.1.{rest}"] = value
            else:
                out[f"input_blocks.{1 + b * step + per_level}.0.op.{rest.removeprefix('conv.')}"] = value
        elif m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
            index = 1 if m[1] == "attentions" else 2 * int(m[2])
            out[f"middle_block.{index}.{_res(m[3], _RESNET) if m[1] == 'resnets' else m[3]}"] = value
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", key):
            b, kind, i, rest = int(m[1]), m[2], int(m[3]), m[4]
            if kind == "resnets":
                out[f"output_blocks.{b * step + i}.0.{_res(rest, _RESNET)}"] = value
            elif kind == "attentions":
                out[f"output_blocks.{b * step + i}.1.{rest}"] = value
            else:
                slot = 2 if has_attention[b] else 1
                out[f"output_blocks.{b * step + per_level}.{slot}.{rest}"] = value
        else:
            raise AssertionError(f"unmapped UNet key {key}")
    return out


def ldm_vae_keys(state: dict, levels: int) -> dict:
    """A diffusers AutoencoderKL state dict in the LDM layout (encoder.down.i.block.j, mid.block_1, mid.attn_1 with
    1x1 conv q/k/v/proj_out, decoder.up in reverse order), the inverse of convert_ldm_vae_checkpoint."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top, out = DIFFUSERS_TO_LDM_MAPPING["vae"], {}
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in state.items():
        if key in top:
            out[top[key]] = value
            continue
        key = key.replace("conv_shortcut", "nin_shortcut")
        if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
            value = value[:, :, None, None] if value.ndim == 2 else value
            out[f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"] = value
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            out[f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"] = value
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(.+)", key):
            out[f"encoder.down.{m[1]}.block.{m[2]}"] = value
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            out[f"encoder.down.{m[1]}.downsample.{m[2]}"] = value
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(.+)", key):
            out[f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}"] = value
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            out[f"decoder.up.{levels - 1 - int(m[1])}.upsample.{m[2]}"] = value
        else:
            raise AssertionError(f"unmapped VAE key {key}")
    return out


def tiny_rs_paint(folder: Path, with_tower: bool = True) -> dict:
    """Write ``rs_paint_tiny.ckpt`` (and the tiny open_clip config / RemoteCLIP-style state dict) into ``folder``;
    returns the diffusers reference models and raw tensors the tests compare against."""
    import diffusers
    from diffusers.loaders.single_file_utils import (create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm)

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    clip_json = folder / "tiny-vit.json"
    clip_json.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(clip_json))
    clip = open_clip.create_model("tiny-vit", pretrained=None)
    torch.save(clip.state_dict(), folder / "remoteclip_tiny.pt")
    unet_cfg = create_unet_diffusers_config_from_ldm(TINY_CONFIG, {})
    unet = diffusers.UNet2DConditionModel(**unet_cfg)
    vae_cfg = create_vae_diffusers_config_from_ldm(TINY_CONFIG, {}, scaling_factor=0.18215)
    vae = diffusers.AutoencoderKL(**vae_cfg)
    attention = [t.startswith("CrossAttn") for t in unet_cfg["up_block_types"]]
    state = {f"model.diffusion_model.{k}": v for k, v in ldm_unet_keys(unet.state_dict(), 1, attention).items()}
    state |= {f"first_stage_model.{k}": v for k, v in ldm_vae_keys(vae.state_dict(), 2).items()}
    if with_tower:
        state |= {f"cond_stage_model.transformer.{k[7:]}": v for k, v in clip.state_dict().items()
                  if k.startswith("visual.") and k != "visual.proj"}
        state["cond_stage_model.projection"] = clip.visual.proj.detach().clone()
    p = "cond_stage_model.mapper.resblocks.0."
    for name, shape in (("ln_1", (WIDTH,)), ("ln_2", (WIDTH,)), ("attn.c_qkv", (3 * WIDTH, WIDTH)),
                        ("attn.c_proj", (WIDTH, WIDTH)), ("mlp.c_fc", (4 * WIDTH, WIDTH)),
                        ("mlp.c_proj", (WIDTH, 4 * WIDTH))):
        ln = name.startswith("ln")
        state[f"{p}{name}.weight"] = 1 + 0.1 * torch.randn(shape) if ln else torch.randn(shape) / math.sqrt(shape[-1])
        state[f"{p}{name}.bias"] = 0.1 * torch.randn(shape[0])
    state["cond_stage_model.final_ln.weight"] = 1 + 0.1 * torch.randn(WIDTH)
    state["cond_stage_model.final_ln.bias"] = 0.1 * torch.randn(WIDTH)
    state["proj_out.weight"], state["proj_out.bias"] = torch.randn(CROSS, WIDTH) / math.sqrt(WIDTH), torch.randn(CROSS)
    state["learnable_vector"] = torch.randn(1, 1, CROSS)
    state["betas"] = torch.linspace(0.00085, 0.012, 1000)  # a buffer every LDM checkpoint carries
    torch.save({"state_dict": state, "epoch": 74, "global_step": 1}, folder / "rs_paint_tiny.ckpt")
    return {"unet": unet, "vae": vae, "clip": clip, "state": state, "clip_json": clip_json}


def xf_mapper(state: dict, pooled: torch.Tensor) -> torch.Tensor:
    """RS-Paint's conditioning after the tower, written from its definition (ldm/modules/encoders/xf.py: one-head
    fused-qkv pre-norm blocks, exact GELU MLP) + final_ln + proj_out."""
    x, d = pooled[:, None], pooled.shape[-1]
    ln = lambda t, n: F.layer_norm(t, (d,), state[f"{n}.weight"], state[f"{n}.bias"])  # noqa: E731
    lin = lambda t, n: F.linear(t, state[f"{n}.weight"], state[f"{n}.bias"])  # noqa: E731
    p = "cond_stage_model.mapper.resblocks.0."
    q, k, v = lin(ln(x, p + "ln_1"), p + "attn.c_qkv").split(d, -1)
    x = x + lin(torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), -1) @ v, p + "attn.c_proj")
    x = x + lin(F.gelu(lin(ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
    return lin(ln(x, "cond_stage_model.final_ln"), "proj_out")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict, dict]:
    root = tmp_path_factory.mktemp("rs")
    made = tiny_rs_paint(root / "src")
    record = convert_rs_paint(root / "src/rs_paint_tiny.ckpt", root / "rs_paint", remoteclip_model=str(made["clip_json"]),
                              config=TINY_CONFIG)
    return root / "rs_paint", made, record


def test_conversion_reproduces_every_part(converted) -> None:
    from paintseg.paint.pipelines import load_pipeline

    out, made, record = converted
    assert (out / "model_index.json").is_file() and (out / "paintseg_conversion.json").is_file()
    assert record["image_encoder"]["mapper_blocks"] == 1 and record["image_encoder"]["max_abs_error_vs_open_clip"] < 1e-4
    pipe = load_pipeline(out)
    for name in ("unet", "vae"):
        theirs, ours = made[name].state_dict(), getattr(pipe, name).state_dict()
        assert set(theirs) == set(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs), name
    assert pipe.vae.config.scaling_factor == pytest.approx(0.18215)
    assert pipe.scheduler.config.beta_start == pytest.approx(0.00085) and pipe.scheduler.config.beta_end == 0.012
    x = torch.randn(2, 3, 32, 32)
    tower = made["clip"].visual
    tower.proj = None
    with torch.no_grad():
        want = xf_mapper(made["state"], tower.eval()(x))
        got = pipe.image_encoder(x)
        assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())
        assert torch.equal(pipe.image_encoder(x, return_uncond_vector=True)[1], made["state"]["learnable_vector"])


def test_converted_rs_paint_paints_placements(converted, tiny_episode: Path) -> None:
    from paintseg.data.episode import Episode
    from paintseg.paint.pipelines import PretrainedBackend
    from tiny_pipelines import placement_jobs

    jobs = placement_jobs(Episode(tiny_episode), 1)
    from paintseg.config import PaintConfig

    paint = PaintConfig(scheduler="default", steps=2, window=64, device="cpu")
    cands = PretrainedBackend(converted[0], paint).paint(jobs, 2)[0]
    mask = jobs[0].mask
    assert len(cands) == 2 and np.array_equal(cands[0].image[~mask], jobs[0].window_image[~mask])
    assert not np.array_equal(cands[0].image[mask], cands[1].image[mask])


def test_cli_convert_takes_the_tower_from_remoteclip_and_refuses_bad_input(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from paintseg.cli import app

    made = tiny_rs_paint(tmp_path, with_tower=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    base = ["convert", "rs-paint", "--ckpt", str(tmp_path / "rs_paint_tiny.ckpt"), "--config",
            str(tmp_path / "tiny.yaml"), "--remoteclip-model", str(made["clip_json"])]
    missing = CliRunner().invoke(app, base + ["--out", str(tmp_path / "a")])
    assert missing.exit_code == 2 and "pass --remoteclip" in missing.output
    ok = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b"), "--remoteclip", str(tmp_path / "remoteclip_tiny.pt")])
    assert ok.exit_code == 0, ok.output
    record = json.loads((tmp_path / "b/paintseg_conversion.json").read_text())
    assert record["image_encoder"]["from"] == "remoteclip_tiny.pt: visual.*" and record["source"]["remoteclip"]["used"]
    again = CliRunner().invoke(app, base + ["--out", str(tmp_path / "b"), "--remoteclip", str(tmp_path / "remoteclip_tiny.pt")])
    assert again.exit_code == 2 and "already holds a converted pipeline" in again.output
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConvertError, match="not a readable PyTorch checkpoint"):
        convert_rs_paint(tmp_path / "junk.ckpt", tmp_path / "c")
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ConvertError, match="not an RS-Paint"):
        convert_rs_paint(tmp_path / "other.ckpt", tmp_path / "c")
