#!/usr/bin/env bash
# One-GPU check for jaxmem: correctness against the CPU, and the throughput table of issue #6, in
# under 5 minutes on one H100. Run from the repository root on the device machine:
#     bash benchmarks/gpu_check.sh
# (the device image has jax with CUDA, flax, optax, orbax, chex, numpy but no TFDS: jaxmem.data's
# TFDS import is lazy, and digits come from scikit-learn if it is installed, else the check that
# needs them is skipped.)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
timeout 280 python3 benchmarks/gpu_bench.py --out "$out/gpu_table.json" 2>&1 | tee "$out/gpu_check.log"
