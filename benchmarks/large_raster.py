"""Peak memory and speed of `paintseg predict` on large GeoTIFFs: window by window from disk vs whole in memory.

GeoTIFFs of 2048, 4096 and 8192 px a side are built by tiling the real sample (../shared/data/oem_geotiff_sample/
adelaide_2.tif, 1024 px, EPSG:4326); a Unet-resnet18 run (trained 1 step on the demo scenes: the speed and memory of
prediction do not depend on the weights) predicts each with 512-px windows, in a fresh process per measurement so
that its peak RSS is its own. "windowed" is what the CLI does above 4096 x 4096 px (paintseg.segment.predict.
predict_geotiff); "in memory" reads the whole image first (the path for smaller images), shown for comparison.

    python benchmarks/large_raster.py          # ~10 min on 2 CPU cores -> benchmarks/results/large_raster.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "oem_geotiff_sample" / "adelaide_2.tif"

PREDICT = r"""
import sys, json, resource, time
from pathlib import Path
from paintseg.segment.predict import predict
run, image, out, large = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
predict(run, [image], out, window=512, batch=4, progress=False, large_pixels=large)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def tiled(size: int, path: Path) -> Path:
    import rasterio

    with rasterio.open(SAMPLE) as s:
        tile, profile = s.read(), s.profile
    profile.update(width=size, height=size, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    n = size // tile.shape[1]
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(n):
            for c in range(n):
                dst.write(tile, window=rasterio.windows.Window(c * tile.shape[2], r * tile.shape[1], tile.shape[2],
                                                               tile.shape[1]))
    return path


def windows(size: int, window: int = 512, overlap: float = 0.25) -> int:
    stride = int(round(window * (1 - overlap)))
    n = len(range(0, size - window, stride)) + 1
    return n * n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "large_raster.json")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ps = [sys.executable, "-m", "paintseg"]
        from paintseg.data.demo import make_demo_episode

        make_demo_episode(tmp / "ep", scenes=2, size=128, shots=1, query=1, progress=False)
        subprocess.run(ps + ["train", str(tmp / "ep"), "--out", str(tmp / "run"), "--steps", "1", "--batch", "2",
                             "--crop", "128"], check=True, capture_output=True, env=env)
        for size in args.sizes:
            image = tiled(size, tmp / f"big_{size}.tif")
            for mode, large in (("windowed", 0), ("in memory", 10**12)):
                out = tmp / f"pred_{size}_{mode.replace(' ', '_')}"
                done = subprocess.run([sys.executable, "-c", PREDICT, str(tmp / "run"), str(image), str(out),
                                       str(large)], capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise SystemExit(done.stderr[-2000:])
                m = json.loads(done.stdout.strip().splitlines()[-1])
                row = {"size": size, "mode": mode, "windows": windows(size), "seconds": round(m["seconds"], 1),
                       "windows_per_second": round(windows(size) / m["seconds"], 2),
                       "peak_rss_mb": round(m["peak_rss_mb"])}
                rows.append(row)
                print(json.dumps(row), flush=True)
                for f in out.rglob("*"):
                    if f.is_file():
                        f.unlink()
            image.unlink()
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/large_raster.py"] + sys.argv[1:])
    result = {"date": str(date.today()), "command": command, "window": 512, "overlap": 0.25,
              "model": "smp Unet-resnet18, fp32", "threads": env["OMP_NUM_THREADS"], "rows": rows}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}\n{command}")


if __name__ == "__main__":
    main()
