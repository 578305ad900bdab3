"""Painting throughput at the released models' sizes, random weights: a Paint-by-Example-sized pipeline and
paintseg's own `base` generator, through paintseg's painting path (PretrainedBackend / DiffusionBackend on real
placements of a demo episode).

The Paint-by-Example-sized pipeline is built in memory from the real architectures (SD-1.x UNet with 9 input channels,
the SD VAE, a CLIP ViT-L/14 image encoder + the 5-block mapper; ~1.3 B parameters), painting 512 x 512 windows with
classifier-free guidance. Each grid point paints ``--placements`` placements x K candidates once after a warm-up
call and reports candidates per second (and seconds per candidate), peak GPU memory on a GPU and peak RSS.

    python benchmarks/pretrained_speed.py                   # CPU: fp32, batch 1, 2 and 4 steps (~15 min on 2 cores)
    python benchmarks/pretrained_speed.py --device cuda     # GPU grid: fp16/fp32 x 20/50 steps x batch 1/4/8

On a CPU the per-step cost is fitted from the 2- and 4-step runs and the 20/50-step figures are extrapolated (and
say so). RS-Paint's own notebook: ~7.5 s for 4 samples at 512 px with 50 PLMS steps on one GPU, ~9 GB.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def pbe_sized_pipeline():
    """A PaintByExamplePipeline with the released model's architecture and random weights."""
    from diffusers import AutoencoderKL, PaintByExamplePipeline, PNDMScheduler, UNet2DConditionModel
    from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor, CLIPVisionConfig

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
                                block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        sample_size=512)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=224, patch_size=14, projection_dim=768)
    pipe = PaintByExamplePipeline(vae=vae, image_encoder=PaintByExampleImageEncoder(vision), unet=unet,
                                  scheduler=PNDMScheduler(skip_prk_steps=True), safety_checker=None,
                                  feature_extractor=CLIPImageProcessor(), requires_safety_checker=False)
    return pipe, sum(p.numel() for m in (unet, vae, pipe.image_encoder) for p in m.parameters())


def jobs_of(episode_dir: Path, count: int):
    from paintseg.data.demo import make_demo_episode
    from paintseg.data.episode import Episode
    from paintseg.paint.candidates import SceneCache, make_job
    from paintseg.config import PlaceConfig
    from paintseg.place.placement import plan_placements
    from paintseg.place.references import extract_references

    make_demo_episode(episode_dir, scenes=4, size=256, shots=2, query=1, seed=0, progress=False)
    episode = Episode(episode_dir)
    refs = extract_references(episode)
    config = PlaceConfig(per_class=count, prior="context")
    placements = plan_placements(episode, refs, config, seed=0, progress=False)[:count]
    scenes = SceneCache(episode)
    return [make_job(i, p, refs, scenes) for i, p in enumerate(placements)]


def timed(backend, jobs, candidates: int, device: str) -> dict:
    backend.paint(jobs[:1], 1)  # warm-up (allocations, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    backend.paint(jobs, candidates)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    n = len(jobs) * candidates
    row = {"candidates": n, "seconds": round(seconds, 2), "seconds_per_candidate": round(seconds / n, 3),
           "candidates_per_second": round(n / seconds, 4)}
    if device.startswith("cuda"):
        row["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> None:
    from paintseg.paint.diffusion.backend import DiffusionBackend
    from paintseg.paint.diffusion.model import build_generator, save_generator
    from paintseg.config import GeneratorConfig, PaintConfig
    from paintseg.paint.pipelines import PretrainedBackend
    from paintseg.runs import peak_rss_mb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--placements", type=int, default=None, help="default: 8 on a GPU, 1 on a CPU")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    placements = args.placements or (8 if gpu else 1)
    out = args.out or REPO / "benchmarks" / "results" / f"pretrained_speed_{'gpu' if gpu else 'cpu'}.json"
    device_name = torch.cuda.get_device_name(0) if gpu else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    grid = ([(d, s, b) for d in ("fp16", "fp32") for s in (20, 50) for b in (1, 4, 8)] if gpu else
            [("fp32", 2, 1), ("fp32", 4, 1)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = jobs_of(Path(tmp) / "episode", placements)
        pipe, params = pbe_sized_pipeline()
        print(f"Paint-by-Example-sized pipeline: {params / 1e6:.0f} M parameters, {len(jobs)} placements, "
              f"{device_name}", flush=True)
        for dtype, steps, batch in grid:
            paint = PaintConfig(steps=steps, guidance=5.0, scheduler="default", device=args.device, dtype=dtype)
            backend = PretrainedBackend(pipe, paint)
            row = {"model": "paint-by-example-sized", "dtype": dtype, "steps": steps, "batch": batch,
                   **timed(backend, jobs, batch, args.device)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del pipe, backend
        torch.manual_seed(0)
        config = GeneratorConfig(size="base")
        model = build_generator(config)
        save_generator(model, None, config, Path(tmp) / "gen")
        base_params = model.num_parameters
        for steps in ((25, 50) if gpu else (25,)):
            backend = DiffusionBackend(Path(tmp) / "gen", PaintConfig(steps=steps, device=args.device, strength=1.0))
            row = {"model": "paintseg-base", "parameters_m": round(base_params / 1e6, 1), "dtype": "fp32",
                   "steps": steps, "batch": 4, "resolution": 128, **timed(backend, jobs, 4, args.device)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"date": str(date.today()), "device": device_name, "torch": torch.__version__,
              "pbe_parameters_m": round(params / 1e6), "window": 512, "guidance": 5.0, "rows": rows,
              "peak_rss_mb": round(peak_rss_mb()),
              "rs_paint_reference": "RS-Paint notebook: ~7.5 s for 4 samples at 512 px, 50 PLMS steps, one GPU, ~9 GB"}
    if not gpu:  # per-step cost from the 2- and 4-step runs, extrapolated
        a, b = (r for r in rows if r["model"] == "paint-by-example-sized")
        per_step = (b["seconds_per_candidate"] - a["seconds_per_candidate"]) / (b["steps"] - a["steps"])
        fixed = a["seconds_per_candidate"] - per_step * a["steps"]
        result["cpu_extrapolated"] = {"seconds_per_step": round(per_step, 2), "fixed_seconds": round(fixed, 2),
                                      **{f"seconds_per_candidate_{n}_steps": round(fixed + per_step * n, 1)
                                         for n in (20, 50)}}
        print(f"CPU, extrapolated from 2 and 4 steps: {per_step:.1f} s per step, {fixed:.1f} s fixed -> "
              f"{fixed + 20 * per_step:.0f} s per candidate at 20 steps, {fixed + 50 * per_step:.0f} s at 50")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/pretrained_speed.py"] + sys.argv[1:])
    result["command"] = command
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}\n{command}")


if __name__ == "__main__":
    main()
