"""Fine-tune a pretrained Paint-by-Example-family pipeline (PbE, a converted RS-Paint) on the user's own scenes.

``paintseg generator train EPISODE --init DIR --out OUT`` runs the built-in generator's self-supervised recipe in
the pipeline's latent space: a real instance of the trainset or support scenes (or a random region) is hidden under
an inpaint mask and painted back from an augmented crop of itself (:class:`.diffusion.data.PairSampler`, the very
pairs our own model learns from). The pipeline's own pieces build the inputs, so training sees what painting sees:
``prepare_mask_and_masked_image`` and ``prepare_mask_latents`` give the (inverted) mask and masked-image latents,
the VAE encodes the target, the image encoder embeds the reference, and the null vector replaces it for
``cond_drop`` of the pairs (classifier-free guidance). Trained, as Paint-by-Example and RS-Paint train them: the
UNet, the encoder's mapper, final LayerNorm, projection and null vector; the CLIP tower and the VAE stay frozen.

accelerate runs it (``mixed_precision`` fp16/bf16 on a GPU, fp32 on a CPU; several processes with ``accelerate
launch``); gradient checkpointing trades compute for memory. ``checkpoints/`` holds accelerate's state every
``checkpoint_every`` steps and a killed run continues from it with ``resume``; OUT is written as a diffusers
PaintByExamplePipeline folder (model_index.json last), which ``--generator OUT`` paints with.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from paintseg.config import GeneratorConfig, dump_yaml
from paintseg.data.episode import Episode
from paintseg.distributed import share, timeout
from paintseg.errors import PaintsegError
from paintseg.extras import require
from paintseg.files import write_text
from paintseg.runs import TrainingLoop, lr_factor, step_batches, write_summary

from .diffusion.data import PairSampler
from .pipelines import load_pipeline, pipeline_kind

MIXED_PRECISION = ("no", "fp16", "bf16")


class FinetuneError(PaintsegError):
    """A pretrained pipeline that cannot be fine-tuned as asked."""


def _reference_pixels(reference: torch.Tensor, processor, size: int) -> torch.Tensor:
    """References (B×3×r×r in [-1, 1], square) as the CLIP tower expects them: ``size`` px, the processor's
    mean/std (what CLIPImageProcessor makes of a square image)."""
    x = F.interpolate((reference + 1) / 2, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    mean = torch.tensor(processor.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _latents(vae, image: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A sample of the VAE's latent distribution of ``image`` drawn with the noise ``eps``, scaled as the UNet
    sees latents."""
    dist = vae.encode(image).latent_dist
    return (dist.mean + dist.std * eps.to(dist.mean.dtype)) * vae.config.scaling_factor


def _trainable(encoder) -> list[torch.nn.Parameter]:
    """The image encoder's parts that Paint-by-Example trains (everything but the CLIP tower)."""
    encoder.model.requires_grad_(False)
    return [p for n, p in encoder.named_parameters() if not n.startswith("model.")]


def _last_state(ckpt_dir: Path) -> Path | None:
    """The newest complete accelerate state (a folder whose step.json is written), if any."""
    for name in ("state", "state.new"):
        if (ckpt_dir / name / "step.json").is_file():
            return ckpt_dir / name
    return None


def _save_state(accelerator, ckpt_dir: Path, step: int) -> None:
    """accelerate's state into ``state.new`` (marked complete by its step.json), then swapped for ``state``: a
    kill at any point leaves one complete state."""
    fresh, current = ckpt_dir / "state.new", ckpt_dir / "state"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(fresh, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(fresh))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text(fresh / "step.json", json.dumps({"step": step}) + "\n")
        shutil.rmtree(current, ignore_errors=True)
        fresh.rename(current)
    accelerator.wait_for_everyone()


def finetune_pipeline(episode: Episode, init: str | Path, out: str | Path, config: GeneratorConfig,
                      resume: bool = False, progress: bool = True, device: str | None = None,
                      mixed_precision: str = "no", gradient_checkpointing: bool = True) -> Path:
    """Fine-tune the Paint-by-Example-family pipeline ``init`` on ``episode`` into ``out`` (module docstring);
    returns ``out/model_index.json``. Uses of ``config``: steps, batch, lr, weight_decay, warmup_steps, seed,
    cond_drop, grad_clip, checkpoint_every, max_strength, the pair settings (mask kinds, box fraction, random
    regions) and ``resolution`` (default: the pipeline's own, 512 for the released models)."""
    require("accelerate", package="accelerate", extra="generators", feature="generator train --init")
    from accelerate import Accelerator, DataLoaderConfiguration, InitProcessGroupKwargs
    from diffusers import DDPMScheduler
    from diffusers.pipelines.deprecated.paint_by_example.pipeline_paint_by_example import \
        prepare_mask_and_masked_image

    out = Path(out)
    if mixed_precision not in MIXED_PRECISION:
        raise FinetuneError(f"mixed precision {mixed_precision!r}: use one of {', '.join(MIXED_PRECISION)}")
    unused = [f"{name} {value}" for name, value in (("minutes", config.minutes), ("snapshots", config.snapshots),
                                                      ("snr_gamma", config.snr_gamma)) if value]
    if unused:
        raise FinetuneError(f"{', '.join(unused)}: budgets in minutes, snapshots and min-SNR weighting are for "
                            f"paintseg's own generator; a fine-tune takes --steps (drop those settings)")
    if pipeline_kind(init) != "paint-by-example":
        raise FinetuneError(f"{init}: --init takes a Paint-by-Example-family pipeline folder (Paint-by-Example, a "
                            f"converted RS-Paint); an SD inpainting pipeline has no reference to learn from")
    if (out / "model_index.json").exists():
        if resume:
            return out / "model_index.json"
        raise FinetuneError(f"{out}: already holds a fine-tuned pipeline; pass a new --out folder")
    if (out / "checkpoints").exists() and not resume:
        raise FinetuneError(f"{out}: holds a partly fine-tuned pipeline; pass --resume to continue it, or a new --out")
    # split_batches: config.batch is the global batch (each process trains on its rows), so the LR schedule takes
    # one step per training step whatever the number of processes
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=(device == "cpu"),
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timeout())])
    torch.manual_seed(config.seed)
    pipe = load_pipeline(init, "cpu", torch.float32)
    side = config.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if side % (8 * pipe.vae_scale_factor):
        raise FinetuneError(f"resolution {side}: use a multiple of {8 * pipe.vae_scale_factor} for this pipeline")
    config = config.model_copy(update={"resolution": side})
    record = {"generator": config.model_dump(mode="json"), "init": str(init), "episode": str(episode.root.resolve()),
              "split": episode.split, "mixed_precision": mixed_precision,
              "gradient_checkpointing": gradient_checkpointing}
    unet, encoder, vae = pipe.unet, pipe.image_encoder, pipe.vae
    vae.requires_grad_(False)
    encoder_params = _trainable(encoder)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(list(unet.parameters()) + encoder_params, lr=config.lr,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config.warmup_steps, config.steps))
    unet, encoder, optimizer, schedule = accelerator.prepare(unet, encoder, optimizer, schedule)
    vae.to(accelerator.device)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    top_t = max(1, int(round(config.max_strength * noise_scheduler.config.num_train_timesteps)))
    size = pipe.image_encoder.config.image_size

    ckpt_dir, start = out / "checkpoints", 0
    state = _last_state(ckpt_dir) if resume else None
    if state is not None:
        accelerator.load_state(str(state))
        start = int(json.loads((state / "step.json").read_text())["step"])
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        dump_yaml(record, out / "config.yaml")
    sampler = PairSampler.from_episode(episode, config, progress=progress and accelerator.is_main_process)
    log_path = out / "log.jsonl"
    if accelerator.is_main_process and log_path.exists():  # drop the lines after the checkpoint
        lines = [x for x in log_path.read_text().splitlines() if x.strip() and json.loads(x)["step"] <= start]
        write_text(log_path, "".join(x + "\n" for x in lines))
    unet.train()
    gen = torch.Generator(device="cpu")
    rows = share(config.batch, accelerator.process_index, accelerator.num_processes)
    latent_shape = (config.batch, vae.config.latent_channels, side // pipe.vae_scale_factor,
                    side // pipe.vae_scale_factor)

    def loss_of(step: int, batch) -> torch.Tensor:
        # the step's whole global batch and its noise depend only on (seed, step); each process takes its rows
        gen.manual_seed(config.seed * 1_000_003 + step)
        sample = torch.randn(latent_shape, generator=gen)  # of the VAE's latent distribution: resumable
        noise = torch.randn(latent_shape, generator=gen)
        t = torch.randint(0, top_t, (config.batch,), generator=gen)
        drop = torch.rand(config.batch, generator=gen) < config.cond_drop
        masked_sample = torch.randn(latent_shape, generator=gen)  # of the masked image's latent distribution
        batch = batch[rows].to(accelerator.device)
        sample, noise, t, drop, masked_sample = (x[rows].to(accelerator.device)
                                                 for x in (sample, noise, t, drop, masked_sample))
        b = batch.target.shape[0]
        with torch.no_grad():
            mask, masked = prepare_mask_and_masked_image(batch.target.clamp(-1, 1), batch.mask.float())
            # the masked image's latents sampled as the pipeline samples them, with this step's noise, and handed
            # to the pipeline's own prepare_mask_latents as latents (it would draw from torch's global RNG)
            masked_latents = _latents(vae, masked, masked_sample)
            mask_latents, masked_latents = pipe.prepare_mask_latents(
                mask, masked_latents, b, side, side, batch.target.dtype, accelerator.device, None, False)
            latents = _latents(vae, batch.target, sample)
            noisy = noise_scheduler.add_noise(latents, noise, t)
            pixels = _reference_pixels(batch.reference, pipe.feature_extractor, size)
        tokens, null = encoder(pixels, return_uncond_vector=True)
        tokens = torch.where(drop.view(-1, 1, 1), null.expand_as(tokens).to(tokens.dtype), tokens)
        pred = unet(torch.cat([noisy, masked_latents, mask_latents], 1), t, encoder_hidden_states=tokens).sample
        wanted = noise if noise_scheduler.config.prediction_type == "epsilon" else \
            noise_scheduler.get_velocity(latents, noise, t)
        return F.mse_loss(pred.float(), wanted.float())

    def save(done: int) -> None:  # accelerate's state, saved by every process together
        if done % config.checkpoint_every == 0 and done < config.steps:
            _save_state(accelerator, ckpt_dir, done)

    clip = (lambda: accelerator.clip_grad_norm_(list(unet.parameters()) + encoder_params, config.grad_clip)) \
        if config.grad_clip > 0 else None
    loop = TrainingLoop(out, unet, optimizer, schedule, start, config.steps, config.checkpoint_every,
                        "fine-tune generator", progress, accelerator.is_main_process, backward=accelerator.backward,
                        clip=clip, reduce=lambda loss: float(accelerator.gather(loss.detach()).mean()), save=save)
    losses = loop.run(step_batches(sampler, start), loss_of)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipe.unet = accelerator.unwrap_model(unet)
        pipe.image_encoder = accelerator.unwrap_model(encoder)
        partial = out / "pipeline.partial"
        shutil.rmtree(partial, ignore_errors=True)
        pipe.save_pretrained(partial)
        for item in partial.iterdir():  # the components first, model_index.json (the completion mark) last
            if item.name != "model_index.json":
                shutil.rmtree(out / item.name, ignore_errors=True)
                item.rename(out / item.name)
        (partial / "model_index.json").rename(out / "model_index.json")
        partial.rmdir()
        write_summary(out, config.steps, start, loop.wall, losses, accelerator.device,
                      accelerator.num_processes, mixed_precision=mixed_precision)
        if not config.keep_checkpoint:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    return out / "model_index.json"
