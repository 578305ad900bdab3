"""How well a latent painter denoises the inpaint region, against doing nothing: the diagnosis of a flat curve.

For training pairs of the episode (drawn from a fresh pool of the painter's own recipe), at noise levels t, the
painter's one-step estimate of the clean latents inside the inpaint mask is compared with the noisy input's own
error there (MSE per latent value, standardised latents): a painter whose estimate is worse than its input damages
whatever it starts from (the paste at strength < 1). Also: how far the training hint (the hidden instance re-coloured
and warped by ``hint_jitter``) lies from the instance in latent space, against an empty hint. And what the samplers
make of it: the in-mask error of whole paintings (20 steps) from noise and from the clean latents at strength 0.3 /
0.6, with DDIM and DPM-Solver++ at guidance 1, 2 and 3 (a sampler whose paintings end worse than its first one-step
estimate drifts).

    python benchmarks/latent_denoising.py benchmarks/work/painter_curve_demo/gen_latent \\
        benchmarks/work/painter_curve_demo/stages/episode-c04f91cd5d/episode --name demo

Writes benchmarks/results/latent_denoising_NAME.json (one entry per GEN folder given).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVELS = (100, 300, 600, 900)
JITTERS = (1.0, 0.3, 0.0)


def main() -> None:
    import torch

    from paintseg.data.episode import Episode
    from paintseg.paint.diffusion import PairSampler, load_generator
    from paintseg.paint.diffusion.latent import LatentPairSampler
    from paintseg.paint.diffusion.model import load_autoencoder_of
    from paintseg.paint.diffusion.sample import paint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generators", nargs="+", type=Path, help="latent GEN folders, then the episode folder last")
    ap.add_argument("--name", required=True)
    ap.add_argument("--windows", type=int, default=64, help="training windows encoded for the check")
    args = ap.parse_args()
    *gens, episode_dir = args.generators
    episode = Episode(episode_dir)
    torch.manual_seed(0)
    found = {}
    for gen in gens:
        model, config = load_generator(gen)
        autoencoder = load_autoencoder_of(gen, model)
        if autoencoder is None:
            sys.exit(f"{gen}: a pixel painter; this check is for latent painters")
        schedule = model.noise_scheduler()
        row = {"config": {k: getattr(config, k) for k in ("size", "mask_weight", "spatial_hint", "hint_jitter",
                                                           "lr", "novel_share")}, "levels": {}, "hint": {}}
        pixels = PairSampler.from_episode(episode, config.model_copy(update={"latent_pool": args.windows}))
        pairs = LatentPairSampler(pixels, autoencoder, None).bind(model)
        batch = pairs.batch(0)
        m = batch.mask
        inside = lambda x: float((((x - batch.target) ** 2) * m).sum() / (m.sum() * x.shape[1]))  # noqa: E731
        with torch.no_grad():
            tokens = model.encode_reference(batch.reference, batch.ref_mask)
            for t in LEVELS:
                steps = torch.full((len(batch.target),), t)
                noisy = schedule.add_noise(batch.target, torch.randn_like(batch.target), steps)
                pred = model(noisy, batch.masked, batch.mask, tokens, steps, batch.hint if model.spec.hint else None)
                a = schedule.alphas_cumprod[t]
                estimate = a.sqrt() * noisy - (1 - a).sqrt() * pred if model.prediction_type == "v_prediction" \
                    else (noisy - (1 - a).sqrt() * pred) / a.sqrt()
                row["levels"][t] = {"estimate": round(inside(estimate), 4), "input": round(inside(noisy), 4),
                                    "zeros": round(inside(torch.zeros_like(noisy)), 4)}
        row["samplers"] = {}
        for scheduler in ("ddim", "dpm++"):
            for guidance in (1.0, 2.0, 3.0):
                cell = {}
                for strength in (1.0, 0.6, 0.3):
                    out = paint(model, batch.masked, batch.mask, batch.reference, batch.ref_mask, steps=20,
                                guidance=guidance, scheduler=scheduler, generator=torch.Generator().manual_seed(0),
                                strength=strength, init=batch.target, hint=batch.hint if model.spec.hint else None)
                    cell[strength] = round(inside(out), 4)
                row["samplers"][f"{scheduler} g{guidance:g}"] = cell
        for jitter in JITTERS:
            hinted = config.model_copy(update={"latent_pool": args.windows, "spatial_hint": True,
                                               "hint_jitter": jitter})
            sampler = LatentPairSampler(PairSampler.from_episode(episode, hinted), autoencoder, None).bind(model)
            b = sampler.batch(0)
            row["hint"][jitter] = round(float((((b.hint[:, :-1] - b.target) ** 2) * b.mask).sum()
                                              / (b.mask.sum() * b.target.shape[1])), 4)
        found[str(gen)] = row
        print(f"== {gen}")
        for t, v in row["levels"].items():
            print(f"  t={t}: in-mask error of the estimate {v['estimate']:.3f}, of the noisy input {v['input']:.3f}, "
                  f"of zeros {v['zeros']:.3f}")
        for name, cell in row["samplers"].items():
            print(f"  {name}: in-mask error of the painting " + ", ".join(f"@{k:g} {v:.3f}" for k, v in cell.items()))
        print("  training hint vs the instance (in-mask): " + ", ".join(f"jitter {j:g}: {e:.3f}"
                                                                         for j, e in row["hint"].items()))
    result = {"name": args.name, "date": str(date.today()), "episode": str(episode_dir), "windows": args.windows,
              "generators": found, "command": shlex.join(["python", *sys.argv])}
    target = REPO / "benchmarks" / "results" / f"latent_denoising_{args.name}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {target}\n$ {result['command']}")


if __name__ == "__main__":
    main()
