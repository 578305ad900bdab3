#!/usr/bin/env bash
# The device check of issue 13, prepared to fit one ~10-minute GPU call (the `device` tool's `run`):
#   painting throughput of the Paint-by-Example-sized pipeline (fp16/fp32 x 20/50 steps x batch 1/4/8) and of
#   paintseg's base generator, then SAM vit_t / vit_b / vit_h seconds per 1024-px image. Results land in $OUT
#   (copy them to benchmarks/results/ and run python benchmarks/readme_tables.py).
#   run: bash benchmarks/gpu_check.sh      (timeout_s 600)
# CHECK=painter runs the painter check instead (issue 22, one more ~10-minute call): paintseg's `base` generator
# trained for a budget in minutes on the demo episode, then its learning curve at strengths 0.3 / 0.6 / 1
# (benchmarks/gpu_painter.sh) - the documented way to a painter that paints new instances, which a CPU does not reach.
#   run: CHECK=painter bash benchmarks/gpu_check.sh      (timeout_s 600)
set -euo pipefail
if [ "${CHECK:-speed}" = painter ]; then exec bash "$(dirname "$0")/gpu_painter.sh"; fi
OUT=${OUT:-benchmarks/results}
pip install -q -e ".[generators,sam]" >/dev/null 2>&1 || pip install -q -e ".[generators,sam]"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 420 python benchmarks/pretrained_speed.py --device cuda --out "$OUT/pretrained_speed_gpu.json" || echo "pretrained_speed: rc $?"
timeout 120 python benchmarks/sam_speed.py --device cuda --types vit_t vit_b vit_h --out "$OUT/sam_speed_gpu.json" || echo "sam_speed: rc $?"
