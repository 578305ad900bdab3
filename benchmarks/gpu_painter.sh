#!/usr/bin/env bash
# The painter on a GPU (issue 22), prepared to fit one ~10-minute device call (the `device` tool's `run`): paintseg's
# `base` generator (~44 M parameters at 128 px) trained for 6 minutes on the demo episode with 6 snapshots, then its
# learning curve (`paintseg generator curve`) beside copy-paste and copy-paste-noise at strengths 0.3, 0.6 and 1 (it
# trains on every noise level). MINUTES, SIZE and DEVICE override the budget, preset and device (a CPU smoke run:
# MINUTES=0.5 SIZE=tiny DEVICE=cpu OUT=/tmp bash benchmarks/gpu_painter.sh).
# SPACE=latent trains the latent painter of the same preset on the autoencoder in AUTOENCODER (default
# ../shared/models/taef2; on a device machine carry a copy inside the checkout, e.g. .gl/taef2, and point there).
# Results land in $OUT: gpu_painter_budget.json, gpu_painter_summary.json, gpu_painter_curve.json and .png (+ the
# samples figure). Compare with benchmarks/results/painter_curve_demo.json (the CPU curve of the tiny model).
#   run: bash benchmarks/gpu_painter.sh      (timeout_s 600)
set -euo pipefail
OUT=${OUT:-benchmarks/results}
MINUTES=${MINUTES:-6}
SIZE=${SIZE:-base}
DEVICE=${DEVICE:-cuda}
SPACE=${SPACE:-pixel}
AUTOENCODER=${AUTOENCODER:-../shared/models/taef2}
latent=()
if [ "$SPACE" = latent ]; then latent=(--space latent --autoencoder "$AUTOENCODER" --novel-share 0.5 --spatial-hint); fi
pip install -q -e . >/dev/null 2>&1 || pip install -q -e .
if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"; fi
work=$(mktemp -d)
python -c "from paintseg.data.demo import make_demo_episode; make_demo_episode('$work/episode', progress=False)"
paintseg generator train "$work/episode" --out "$work/gen" --size "$SIZE" --minutes "$MINUTES" --snapshots 6 \
    --steps 1000000 --batch 32 --lr 5e-4 --checkpoint-every 1000 --sample-every 1000000 \
    --device "$DEVICE" "${latent[@]}" 2>&1 | tr '\r' '\n' | grep -v "step/s\|s/step" || true
cp "$work/gen/budget.json" "$OUT/gpu_painter_budget.json"
cp "$work/gen/train_summary.json" "$OUT/gpu_painter_summary.json"
paintseg generator curve "$work/gen" "$work/episode" --out "$OUT/gpu_painter_curve.json" \
    --figure "$OUT/gpu_painter_curve.png" --strength 0.3 --strength 0.6 --strength 1 --per-class 24 --candidates 2
