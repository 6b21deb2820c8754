#!/usr/bin/env bash
# One-GPU check for jaxmem: correctness against the CPU, the throughput table of issue #6 and a
# stack of CNNs on the real Fashion-MNIST (issue #14), in under 7 minutes on one H100. Run from
# the repository root on the device machine:
#     bash benchmarks/gpu_check.sh
# (the device image has jax with CUDA, flax, optax, orbax, chex, numpy but no TFDS: jaxmem.data's
# TFDS import is lazy, and digits come from scikit-learn if it is installed, else the check that
# needs them is skipped.)
# The Fashion-MNIST section reads the real IDX files (30 MB). The device machine gets only the
# repository, not ../shared: copy them into the ignored .data/ folder and carry it, e.g.
#     mkdir -p .data && cp -r ../shared/data/fashion-mnist .data/ && echo /.data/ >> .git/info/exclude
# then run with carry [".data"]. Without them that section prints SKIPPED.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if [ -z "${JAXMEM_DATA:-}" ]; then
    if [ -d .data/fashion-mnist ]; then export JAXMEM_DATA=$PWD/.data; else export JAXMEM_DATA=$PWD/../shared/data; fi
fi
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
timeout 420 python3 benchmarks/gpu_bench.py --out "$out/gpu_table.json" 2>&1 | tee "$out/gpu_check.log"
