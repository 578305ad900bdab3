"""Seconds per image of SAM-family refiners at their real sizes, random weights: MobileSAM vit_t vs SAM vit_b.

The refiner's cost is the image encoder at 1024 x 1024 (SamPredictor.set_image); the prompt decoder adds
milliseconds. Each model is built by its own package's registry (mobile_sam, segment_anything) with random weights,
saved as a checkpoint and loaded through paintseg's `--refine sam --sam-model-type TYPE` path, then refines the same
1024-px window ``--repeats`` times (the first call, which warms up, is reported apart). SAM 2.1 (hiera) models are
built by the sam2 package (install: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2).

    python benchmarks/sam_speed.py                  # ~3 min on 2 CPU cores -> benchmarks/results/sam_speed.json
    python benchmarks/sam_speed.py --types vit_t vit_b vit_h --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from paintseg.curate.refine import SAM2_MODEL_TYPES, SamRefiner, sam_builder
from paintseg.place.masks import Box
from paintseg.runs import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="+", default=["vit_t", "vit_b", "sam2.1_hiera_t"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sam_speed.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    inpaint = np.zeros((1024, 1024), bool)
    inpaint[400:620, 380:640] = True
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in args.types:
            torch.manual_seed(0)
            ckpt = Path(tmp) / f"{model_type}.pth"
            if model_type in SAM2_MODEL_TYPES:  # released SAM 2 files hold {"model": state_dict}
                from sam2.build_sam import build_sam2

                sam = build_sam2(f"configs/sam2.1/{model_type}.yaml", None, device="cpu")
                torch.save({"model": sam.state_dict()}, ckpt)
            else:
                sam = sam_builder(model_type)(checkpoint=None)
                torch.save(sam.state_dict(), ckpt)
            params = sum(p.numel() for p in sam.parameters())
            del sam
            refiner = SamRefiner(ckpt, model_type, "point", device=args.device)
            times = []
            for _ in range(args.repeats + 1):
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
                refiner.refine(image, inpaint, Box(380, 400, 640, 620))
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            row = {"model_type": model_type, "parameters_m": round(params / 1e6, 2), "first_s": round(times[0], 3),
                   "seconds_per_image": round(statistics.median(times[1:]), 3), "peak_rss_mb": round(peak_rss_mb())}
            rows.append(row)
            print(f"{model_type:6s} {row['parameters_m']:7.2f} M params  {row['seconds_per_image']:7.3f} s/image "
                  f"(first {row['first_s']:.2f} s)", flush=True)
            del refiner
    command = "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]).relative_to(REPO))
                                                             if Path(sys.argv[0]).is_absolute() else sys.argv[0]]
                                                            + sys.argv[1:])
    result = {"date": str(date.today()), "command": command, "device": args.device,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "image": "1024 x 1024, random weights, point prompt", "rows": rows}
    if len(rows) > 1 and rows[0]["model_type"] == "vit_t":
        result["vit_t_speedup"] = {r["model_type"]: round(r["seconds_per_image"] / rows[0]["seconds_per_image"], 1)
                                   for r in rows[1:]}
        for name, times in result["vit_t_speedup"].items():
            print(f"{name} takes {times}x vit_t's time")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}\n{command}")


if __name__ == "__main__":
    main()
