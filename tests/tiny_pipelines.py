"""Tiny diffusers pipelines with random weights, saved in the real on-disk format (``save_pretrained``), for the
tests of the pretrained-generator loaders. No network: every component, the CLIP tokenizer's files included, is
built here."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

CROSS = 32  # cross-attention width of the tiny UNets (768 in the released models)


def tiny_unet(in_channels: int = 9, cross: int = CROSS):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross, attention_head_dim=4, norm_num_groups=8)


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=64)


def tiny_vision_config(layers: int = 4):
    """A CLIP ViT of width 32; ``layers`` = 4 gives Paint-by-Example's mapper (layers + 1) // 5 = 1 block."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                            image_size=32, patch_size=8, projection_dim=CROSS, hidden_act="gelu")


def tiny_feature_extractor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=32, size=32)


def save_paint_by_example(folder: Path, hub_index: bool = True, seed: int = 0) -> Path:
    """A tiny Paint-by-Example pipeline in ``folder``. ``hub_index``: its model_index.json names the image encoder
    exactly as the hub's Fantasy-Studio/Paint-by-Example does, ``["paint_by_example", "PaintByExampleImageEncoder"]``,
    and the encoder's weights carry the hub file's key names (``model.vision_model.*``)."""
    from diffusers import PaintByExamplePipeline, PNDMScheduler
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder

    torch.manual_seed(seed)
    pipe = PaintByExamplePipeline(vae=tiny_vae(), image_encoder=PaintByExampleImageEncoder(tiny_vision_config()),
                                  unet=tiny_unet(), scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
                                  feature_extractor=tiny_feature_extractor(), requires_safety_checker=False)
    pipe.save_pretrained(folder)
    if hub_index:
        index = json.loads((folder / "model_index.json").read_text())
        index["image_encoder"] = ["paint_by_example", "PaintByExampleImageEncoder"]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
        # and the hub file's key layout (written by transformers 4: model.vision_model.*)
        from safetensors.torch import load_file, save_file

        file = folder / "image_encoder" / "model.safetensors"
        state = load_file(file)
        save_file({("model.vision_model." + k[6:] if k.startswith("model.") and ".vision_model." not in k else k): v
                   for k, v in state.items()}, file, metadata={"format": "pt"})
    return folder


def tiny_tokenizer(folder: Path):
    """A character-level CLIP BPE tokenizer (vocab of ASCII letters, digits and punctuation, no merges)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def save_sd_inpaint(folder: Path, seed: int = 0) -> Path:
    """A tiny StableDiffusionInpaintPipeline (9-channel UNet, CLIP text encoder and tokenizer) in ``folder``."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(folder / "_tok")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=CROSS, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    pipe = StableDiffusionInpaintPipeline(vae=tiny_vae(), text_encoder=text, tokenizer=tokenizer, unet=tiny_unet(),
                                          scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def placement_jobs(episode, n: int = 2) -> list:
    """``n`` painting jobs of the tiny episode's novel class (pool): fixed boxes in the first trainset scenes."""
    from paintseg.paint.candidates import SceneCache, make_job
    from paintseg.place.masks import Box
    from paintseg.place.placement import Placement
    from paintseg.place.references import extract_references

    pool = 4  # the novel class of conftest.tiny_classes()
    refs = extract_references(episode)
    scenes = SceneCache(episode)
    jobs = []
    for i in range(n):
        box = Box(18 + 4 * i, 20, 30 + 4 * i, 32)
        placement = Placement(episode.train_names[i], pool, 0, box, Box(8, 8, 56, 56), "rectangle", 11 + i)
        jobs.append(make_job(i, placement, refs, scenes))
    return jobs
