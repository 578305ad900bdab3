"""Where the training loop gets faster: each trainer's step in the default memory layout against channels_last, and
prediction under torch.no_grad against torch.inference_mode - side by side in one process, alternating A and B
rounds so that both see the same machine load, with the results compared (same seed, same batches).

    segmentation  paintseg's Unet with the ImageNet EfficientNet-Lite0 encoder (tu-tf_efficientnet_lite0), batch 8,
                  crop 128, AdamW (the demo's and Dubai's training step)
    generator     paintseg's pixel generator (size small, 64 px, batch 8) and the latent painter's UNet (size
                  small on 16 x 16 x 32 latents), one training step with the loss the trainer uses
    predict       the segmentation model on a batch of 4 512-px tiles, no_grad vs inference_mode

Prints and writes benchmarks/results/train_speed.json: median seconds per step of each variant, the speed-up and
the largest difference between the variants' losses (training, after the same steps) or logits (prediction).

    OMP_NUM_THREADS=1 python benchmarks/train_speed.py --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CL = torch.channels_last


def _segmenter(layout):
    from paintseg.networks import build_model

    torch.manual_seed(0)
    model = build_model("unet", "tu-tf_efficientnet_lite0", 7, encoder_weights=None).to(memory_format=layout)
    return model, torch.optim.AdamW(model.parameters(), 1e-3)


def segmentation_steps(layout, steps: int) -> tuple[list[float], list[float]]:
    model, optimizer = _segmenter(layout)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 128, 128, generator=g).contiguous(memory_format=layout)
    y = torch.randint(0, 7, (8, 128, 128), generator=g)
    times, losses = [], []
    for _ in range(steps):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t)
        losses.append(float(loss))
    return times, losses


def generator_steps(layout, steps: int, latent: bool) -> tuple[list[float], list[float]]:
    from paintseg.config import GeneratorConfig
    from paintseg.paint.diffusion.model import build_generator
    from paintseg.paint.diffusion.train import TrainingStep

    torch.manual_seed(0)
    config = GeneratorConfig(size="small", space="latent" if latent else "pixel",
                             autoencoder="../shared/models/taef2" if latent else None, resolution=None)
    model = build_generator(config, 32 if latent else None).to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    s, c = model.spec.sample_size, model.spec.channels_out
    r = model.spec.ref_size
    g = torch.Generator().manual_seed(1)
    noisy, masked = torch.randn(8, c, s, s, generator=g), torch.randn(8, c, s, s, generator=g)
    mask = (torch.rand(8, 1, s, s, generator=g) > 0.5).float()
    ref, ref_mask = torch.randn(8, 3, r, r, generator=g), torch.ones(8, 1, r, r)
    t = torch.randint(0, 1000, (8,), generator=g)
    drop = torch.zeros(8, dtype=torch.bool)
    noisy, masked, mask = (x.contiguous(memory_format=layout) for x in (noisy, masked, mask))
    times, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        pred = TrainingStep(model)(noisy, masked, mask, ref, ref_mask, drop, t, None)
        loss = torch.nn.functional.mse_loss(pred, noisy)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    return times, losses


def predict_steps(mode, steps: int) -> tuple[list[float], list[float]]:
    model, _ = _segmenter(torch.contiguous_format)
    model.eval()
    x = torch.randn(4, 3, 512, 512, generator=torch.Generator().manual_seed(2))
    times, out = [], None
    for _ in range(steps):
        start = time.perf_counter()
        with mode():
            out = model(x)
        times.append(time.perf_counter() - start)
    return times, out.flatten()[:4096].tolist()


CASES = {
    "segmentation train step": (lambda v, n: segmentation_steps(v, n), torch.contiguous_format, CL),
    "pixel generator train step": (lambda v, n: generator_steps(v, n, False), torch.contiguous_format, CL),
    "latent generator train step": (lambda v, n: generator_steps(v, n, True), torch.contiguous_format, CL),
    "segmentation predict": (predict_steps, torch.no_grad, torch.inference_mode),
}
NAMES = {torch.contiguous_format: "default layout", CL: "channels_last", torch.no_grad: "no_grad",
         torch.inference_mode: "inference_mode"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6, help="A/B rounds per case (A then B, B then A, ...)")
    ap.add_argument("--steps", type=int, default=4, help="steps per round (the first of each round is dropped)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = ap.parse_args()
    rows = {}
    for case in args.cases:
        run, a, b = CASES[case]
        times = {a: [], b: []}
        results = {}
        for i in range(args.rounds):
            for variant in ((a, b) if i % 2 == 0 else (b, a)):
                spent, values = run(variant, args.steps)
                times[variant] += spent[1:]
                results.setdefault(variant, values)
        med = {v: statistics.median(times[v]) for v in (a, b)}
        diff = max(abs(x - y) for x, y in zip(results[a], results[b]))
        scale = max(abs(x) for x in results[a]) or 1.0
        rows[case] = {NAMES[a]: round(med[a], 4), NAMES[b]: round(med[b], 4), "speedup": round(med[a] / med[b], 3),
                      "max_difference": float(f"{diff:.3g}"), "relative_difference": float(f"{diff / scale:.3g}"),
                      "samples": len(times[a])}
        print(f"{case}: {NAMES[a]} {med[a]:.3f} s, {NAMES[b]} {med[b]:.3f} s -> x{med[a] / med[b]:.2f}; "
              f"largest difference {diff:.2g} ({diff / scale:.2g} of the largest value)", flush=True)
    command = shlex.join(["python", *sys.argv])
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    out = {"date": str(date.today()), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.machine(), "cpus": os.cpu_count(), "rounds": args.rounds, "steps": args.steps,
           "cases": rows, "command": command}
    target = REPO / "benchmarks" / "results" / "train_speed.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"written {target}\n$ {command}")


if __name__ == "__main__":
    main()
