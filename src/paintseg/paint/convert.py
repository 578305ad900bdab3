"""Convert RS-Paint's released generator into a diffusers Paint-by-Example folder that ``--generator DIR`` paints with.

RS-Paint (Immanuel et al. 2025; github.com/SteveImmanuel/rs-paint, ``sd_inpaint_samrs_ep74.ckpt``) is an original
latent-diffusion checkpoint of the Paint-by-Example family: an SD-1.x UNet with 9 input channels (noisy latent,
masked-image latent, mask), the SD VAE (scale 0.18215), and as conditioning the RemoteCLIP ViT-L/14 image tower with
its visual projection removed (the 1024-d pooled class token) -> a 5-block, 1-head, width-1024 transformer "mapper"
-> LayerNorm(1024) -> Linear(1024 -> 768), plus a learnt 1x1x768 null vector for classifier-free guidance. That is
exactly diffusers' ``PaintByExampleImageEncoder`` around a ``CLIPVisionModel``, so the converted folder is a
``PaintByExamplePipeline`` and paints through :mod:`paintseg.paint.pipelines`.

What maps to what (checkpoint key prefix -> diffusers component):

    model.diffusion_model.*          -> unet/   diffusers' own convert_ldm_unet_checkpoint (config from the LDM yaml)
    first_stage_model.*              -> vae/    diffusers' own convert_ldm_vae_checkpoint (scale_factor of the yaml)
    cond_stage_model.transformer.*   -> image_encoder/ model.[vision_model.]*  (open_clip ViT -> HF CLIPVisionModel):
        conv1                           embeddings.patch_embedding
        class_embedding                 embeddings.class_embedding
        positional_embedding            embeddings.position_embedding.weight
        ln_pre                          pre_layrnorm                         (sic: HF's spelling)
        transformer.resblocks.i.ln_1    encoder.layers.i.layer_norm1
        ....attn.in_proj_weight/bias    encoder.layers.i.self_attn.{q,k,v}_proj  (rows split in thirds, q k v)
        ....attn.out_proj               encoder.layers.i.self_attn.out_proj
        ....ln_2                        encoder.layers.i.layer_norm2
        ....mlp.c_fc / mlp.c_proj       encoder.layers.i.mlp.fc1 / fc2
        ln_post                         post_layernorm    (the pooled output = ln_post(class token), as open_clip)
        proj                            dropped: RS-Paint sets visual.proj = None
      (taken from --remoteclip, an open_clip state dict with ``visual.*`` keys, when the checkpoint has none)
    cond_stage_model.mapper.resblocks.i.*  -> image_encoder/ mapper.blocks.i.* (BasicTransformerBlock, 1 head):
        ln_1                            norm1
        attn.c_qkv (3D x D)             attn1.to_q / to_k / to_v  (rows split in thirds: with one head the fused
                                        projection is [q | k | v])
        attn.c_proj                     attn1.to_out.0
        ln_2                            norm3
        mlp.c_fc / mlp.c_proj           ff.net.0.proj / ff.net.2   (exact GELU in both)
    cond_stage_model.final_ln        -> image_encoder/ final_layer_norm
    proj_out                         -> image_encoder/ proj_out   (1024 -> 768)
    learnable_vector                 -> image_encoder/ uncond_vector
    scheduler                        -> PNDM (PLMS, RS-Paint's sampler) with the yaml's linear_start/linear_end,
                                        scaled_linear, 1000 steps
    feature_extractor                -> CLIPImageProcessor at the tower's image size, OpenAI CLIP mean/std (what
                                        RS-Paint normalises references with)

The conversion checks itself: every key of the checkpoint is used or listed as ignored, every diffusers component
loads strictly, and the converted image encoder reproduces open_clip's pooled output on a random image.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from paintseg.errors import PaintsegError
from paintseg.extras import require
from paintseg.files import sha256, write_text
from paintseg.pretrained import load_strict

# The architecture part of RS-Paint's configs/rs_remoteclip.yaml (the LDM "original config" diffusers' converters
# read); --config replaces it.
RS_PAINT_CONFIG = {"model": {"params": {
    "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 64, "channels": 4,
    "scale_factor": 0.18215,
    "unet_config": {"params": {
        "image_size": 32, "in_channels": 9, "out_channels": 4, "model_channels": 320,
        "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8,
        "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768, "legacy": False}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
        "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}}}}}}
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
UNET, VAE, ENCODER, MAPPER = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.", \
    "cond_stage_model.mapper.resblocks."
# training-only or unused entries of an RS-Paint checkpoint
IGNORED = ("model_ema.", "cond_stage_model.projection", "betas", "alphas_cumprod", "alphas_cumprod_prev",
           "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
           "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
           "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2", "logvar",
           "model_ema", "first_stage_model.loss.")


class ConvertError(PaintsegError):
    """A checkpoint that is not the RS-Paint layout, or parts that do not fit together."""


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a Lightning/LDM ``.ckpt`` (its ``state_dict``) or of a plain state-dict file."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"{path}: checkpoint not found; download RS-Paint's sd_inpaint_samrs_ep74.ckpt (see "
                           f"github.com/SteveImmanuel/rs-paint) and pass its path")
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # Lightning checkpoints pickle their callbacks' state too
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise ConvertError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e}); re-download it")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConvertError(f"{path}: holds no state dict of tensors")
    return state


def _vision_config(model: str, width: int, layers: int, patch: int, proj_dim: int):
    """The HF CLIPVisionConfig of open_clip architecture ``model`` (a name or a model-config .json)."""
    open_clip = require("open_clip", package="open_clip_torch", extra="generators", feature="convert rs-paint")
    from transformers import CLIPVisionConfig

    if str(model).endswith(".json"):
        open_clip.add_model_config(model)
        model = Path(model).stem
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        raise ConvertError(f"unknown open_clip model {model!r}; RemoteCLIP's is ViT-L-14 (or pass a model config "
                           f".json)")
    vision = cfg["vision_cfg"]
    want = (vision["width"], vision["layers"], vision["patch_size"])
    if want != (width, layers, patch):
        raise ConvertError(f"the checkpoint's image tower (width {width}, {layers} blocks, patch {patch}) is not "
                           f"open_clip {model!r} (width {want[0]}, {want[1]} blocks, patch {want[2]}); pass "
                           f"--remoteclip-model for the tower the checkpoint holds")
    heads = width // vision.get("head_width", 64)
    return model, CLIPVisionConfig(
        hidden_size=width, intermediate_size=int(width * vision.get("mlp_ratio", 4.0)), num_hidden_layers=layers,
        num_attention_heads=heads, image_size=vision["image_size"], patch_size=patch, projection_dim=proj_dim,
        hidden_act="quick_gelu" if cfg.get("quick_gelu") else "gelu", layer_norm_eps=1e-5)


def open_clip_to_hf_vision(visual: dict[str, torch.Tensor], layers: int, p: str = "model.vision_model."
                           ) -> dict[str, torch.Tensor]:
    """open_clip VisionTransformer keys (without ``visual.``) -> HF ``CLIPVisionModel`` keys under prefix ``p``
    (module docstring; transformers 5 names them ``model.*``, earlier versions ``model.vision_model.*``)."""
    out = {f"{p}embeddings.patch_embedding.weight": visual["conv1.weight"],
           f"{p}embeddings.class_embedding": visual["class_embedding"],
           f"{p}embeddings.position_embedding.weight": visual["positional_embedding"]}
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for t in ("weight", "bias"):
            out[f"{p}{theirs}.{t}"] = visual[f"{ours}.{t}"]
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"{p}encoder.layers.{i}."
        for t in ("weight", "bias"):
            q, k, v = visual[f"{src}attn.in_proj_{t}"].chunk(3, 0)
            out.update({f"{dst}self_attn.q_proj.{t}": q, f"{dst}self_attn.k_proj.{t}": k,
                        f"{dst}self_attn.v_proj.{t}": v,
                        f"{dst}self_attn.out_proj.{t}": visual[f"{src}attn.out_proj.{t}"],
                        f"{dst}layer_norm1.{t}": visual[f"{src}ln_1.{t}"],
                        f"{dst}layer_norm2.{t}": visual[f"{src}ln_2.{t}"],
                        f"{dst}mlp.fc1.{t}": visual[f"{src}mlp.c_fc.{t}"],
                        f"{dst}mlp.fc2.{t}": visual[f"{src}mlp.c_proj.{t}"]})
    return out


def rs_paint_mapper(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """RS-Paint's mapper, final LayerNorm, projection and null vector -> ``PaintByExampleImageEncoder`` keys."""
    out = {}
    for i in range(blocks):
        src, dst = f"{MAPPER}{i}.", f"mapper.blocks.{i}."
        for t in ("weight", "bias"):
            q, k, v = state[f"{src}attn.c_qkv.{t}"].chunk(3, 0)
            out.update({f"{dst}attn1.to_q.{t}": q, f"{dst}attn1.to_k.{t}": k, f"{dst}attn1.to_v.{t}": v,
                        f"{dst}attn1.to_out.0.{t}": state[f"{src}attn.c_proj.{t}"],
                        f"{dst}norm1.{t}": state[f"{src}ln_1.{t}"], f"{dst}norm3.{t}": state[f"{src}ln_2.{t}"],
                        f"{dst}ff.net.0.proj.{t}": state[f"{src}mlp.c_fc.{t}"],
                        f"{dst}ff.net.2.{t}": state[f"{src}mlp.c_proj.{t}"]})
    for t in ("weight", "bias"):
        out[f"final_layer_norm.{t}"] = state[f"cond_stage_model.final_ln.{t}"]
        out[f"proj_out.{t}"] = state[f"proj_out.{t}"]
    out["uncond_vector"] = state["learnable_vector"].reshape(1, 1, -1)
    return out


def _strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    load_strict(module, state, what, ConvertError, "; is this an RS-Paint checkpoint, and --config its yaml?",
                weights="the checkpoint's weights")


def convert_rs_paint(ckpt: str | Path, out: str | Path, remoteclip: str | Path | None = None,
                     remoteclip_model: str = "ViT-L-14", config: dict | None = None) -> dict:
    """Write RS-Paint's checkpoint as a diffusers PaintByExamplePipeline folder ``out``; returns the record it
    writes to ``out/paintseg_conversion.json`` (sources with their sha256, key counts, the encoder self-check)."""
    require("transformers", package="transformers", extra="generators", feature="convert rs-paint")
    import diffusers
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
                                                     create_unet_diffusers_config_from_ldm,
                                                     create_vae_diffusers_config_from_ldm)
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    ckpt, out = Path(ckpt), Path(out)
    if (out / "model_index.json").exists():
        raise ConvertError(f"{out}: already holds a converted pipeline; pass a new --out or delete it")
    original = config or RS_PAINT_CONFIG
    state = load_checkpoint(ckpt)
    params = original["model"]["params"]
    if not any(k.startswith(UNET) for k in state) or "learnable_vector" not in state:
        raise ConvertError(f"{ckpt}: no {UNET}* and learnable_vector keys; this is not an RS-Paint / Paint-by-Example "
                           f"LDM checkpoint")

    unet_cfg = create_unet_diffusers_config_from_ldm(original, state)
    unet = diffusers.UNet2DConditionModel(**unet_cfg)
    _strict(unet, convert_ldm_unet_checkpoint(state, unet_cfg), "unet")
    vae_cfg = create_vae_diffusers_config_from_ldm(original, state, scaling_factor=params.get("scale_factor"))
    vae = diffusers.AutoencoderKL(**vae_cfg)
    _strict(vae, convert_ldm_vae_checkpoint(state, vae_cfg), "vae")

    visual = {k[len(ENCODER):]: v for k, v in state.items() if k.startswith(ENCODER)}
    encoder_source = f"{ckpt.name}: {ENCODER}*"
    if not visual:
        if remoteclip is None:
            raise ConvertError(f"{ckpt}: holds no image tower ({ENCODER}*); pass --remoteclip with RemoteCLIP's "
                               f"open_clip checkpoint (RemoteCLIP-ViT-L-14.pt)")
        clip_state = load_checkpoint(remoteclip)
        visual = {k[len("visual."):]: v for k, v in clip_state.items() if k.startswith("visual.")}
        if not visual:
            raise ConvertError(f"{remoteclip}: no visual.* keys; pass an open_clip CLIP state dict (RemoteCLIP)")
        encoder_source = f"{Path(remoteclip).name}: visual.*"
    visual.pop("proj", None)
    layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    width, patch = visual["conv1.weight"].shape[0], visual["conv1.weight"].shape[-1]
    blocks = len({k[len(MAPPER):].split(".")[0] for k in state if k.startswith(MAPPER)})
    proj_dim = state["proj_out.weight"].shape[0]
    model_name, vision_cfg = _vision_config(remoteclip_model, width, layers, patch, proj_dim)
    if (layers + 1) // 5 != blocks:
        raise ConvertError(f"{ckpt}: {blocks} mapper blocks, but diffusers' Paint-by-Example encoder has "
                           f"(layers + 1) // 5 = {(layers + 1) // 5} for a {layers}-block tower")
    encoder = PaintByExampleImageEncoder(vision_cfg, proj_size=proj_dim)
    anchor = "embeddings.class_embedding"
    prefix = next(k for k in encoder.state_dict() if k.endswith(anchor)).removesuffix(anchor)
    _strict(encoder, {**open_clip_to_hf_vision(visual, layers, prefix), **rs_paint_mapper(state, blocks)},
            "image_encoder")
    encoder.eval()
    error = _check_encoder(encoder, visual, model_name, vision_cfg.image_size)

    used = (UNET, VAE, ENCODER, MAPPER, "cond_stage_model.final_ln.", "proj_out.", "learnable_vector")
    unknown = sorted(k for k in state if not k.startswith(used) and not k.startswith(IGNORED))
    if unknown:
        raise ConvertError(f"{ckpt}: {len(unknown)} keys this converter does not know, e.g. {unknown[:4]}; it "
                           f"converts RS-Paint's image-conditioned checkpoints only (not the text-joint ones)")
    scheduler = diffusers.PNDMScheduler(
        num_train_timesteps=params.get("timesteps", 1000), beta_start=params["linear_start"],
        beta_end=params["linear_end"], beta_schedule="scaled_linear", skip_prk_steps=True, set_alpha_to_one=False,
        steps_offset=1)
    size = vision_cfg.image_size
    features = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                  image_mean=OPENAI_MEAN, image_std=OPENAI_STD, do_convert_rgb=True)
    pipe = diffusers.PaintByExamplePipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                            safety_checker=None, feature_extractor=features,
                                            requires_safety_checker=False)
    partial = out.with_name(out.name + ".partial")
    pipe.save_pretrained(partial)
    record = {"source": {"checkpoint": str(ckpt.resolve()), "sha256": sha256(ckpt)},
              "image_encoder": {"from": encoder_source, "open_clip_model": model_name, "layers": layers,
                                "width": width, "mapper_blocks": blocks,
                                "max_abs_error_vs_open_clip": error},
              "unet": {"in_channels": unet_cfg["in_channels"], "cross_attention_dim": unet_cfg["cross_attention_dim"]},
              "vae": {"scaling_factor": vae_cfg["scaling_factor"]},
              "keys": {"total": len(state), "ignored": sum(k.startswith(IGNORED) for k in state)}}
    if remoteclip is not None:
        record["source"]["remoteclip"] = {"file": str(Path(remoteclip).resolve()), "sha256": sha256(Path(remoteclip)),
                                          "used": encoder_source.startswith(Path(remoteclip).name)}
    write_text(partial / "paintseg_conversion.json", json.dumps(record, indent=1) + "\n")
    partial.rename(out)
    return record


def _check_encoder(encoder, visual: dict[str, torch.Tensor], model: str, size: int) -> float:
    """Max abs difference between the converted tower's pooled output and open_clip's own (proj removed) on a
    random image; a conversion that does not reproduce it is refused."""
    import open_clip

    net = open_clip.create_model(model, pretrained=None)
    tower = net.visual
    tower.proj = None
    missing = tower.load_state_dict(visual, strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise ConvertError(f"image tower does not fit open_clip {model!r}: missing {missing.missing_keys[:3]}, "
                           f"unexpected {missing.unexpected_keys[:3]}")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = tower.eval()(x)
        ours = encoder.model(pixel_values=x).pooler_output
    error = float((theirs - ours).abs().max())
    if error > 1e-3 * max(1.0, float(theirs.abs().max())):
        raise ConvertError(f"the converted image encoder differs from open_clip's by {error:.2e}; not written")
    return round(error, 8)
