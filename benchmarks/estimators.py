"""Estimator speed, measured side by side in one run (ratios, not absolute targets).

    python benchmarks/estimators.py                 # small default sizes (2-core CPU friendly)
    python benchmarks/estimators.py --m 1000 --n 50000 --t 10000   # the issue's full size

Compares, on the same inputs:
  memorization: JAX float32 jit (blocked) vs NumPy float64 (blocked) vs a naive NumPy loop over models
  influence:    JAX float32 blocked tiles vs NumPy float64 tiles vs one dense NumPy matmul
  top-k:        blocked top_influencers (JAX) vs dense influence + np.argpartition
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import jaxmem.estimators as E


def timed(fn, repeat=2):
    fn()  # warm-up / compile
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_memorization(keep, correct):
    """mem and stderr by a hand-written loop over models (one-pass sums and sums of squares)."""
    s_in, s_out, q_in, q_out = (np.zeros(keep.shape[1]) for _ in range(4))
    for m in range(keep.shape[0]):
        x_in, x_out = np.where(keep[m], correct[m], 0), np.where(keep[m], 0, correct[m])
        s_in += x_in
        s_out += x_out
        q_in += x_in**2
        q_out += x_out**2
    n_in = keep.sum(0)
    n_out = keep.shape[0] - n_in
    var_in = (q_in - s_in**2 / n_in) / (n_in - 1)
    var_out = (q_out - s_out**2 / n_out) / (n_out - 1)
    return s_in / n_in - s_out / n_out, np.sqrt(var_in / n_in + var_out / n_out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=200)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--t", type=int, default=5_000)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    keep = rng.random((args.m, args.n)) < 0.5
    correct = (rng.random((args.m, args.n)) < 0.8).astype(np.float64)
    test = (rng.random((args.m, args.t)) < 0.8).astype(np.float64)
    print(f"M={args.m} N={args.n} T={args.t} k={args.k}")

    t32 = timed(lambda: E.memorization(keep, correct, dtype="float32"))
    t64 = timed(lambda: E.memorization(keep, correct, dtype="float64"))
    tnv = timed(lambda: naive_memorization(keep, correct))
    print(f"memorization  jax-f32 {t32:.3f}s  numpy-f64 {t64:.3f}s  naive-loop {tnv:.3f}s  "
          f"naive/jax {tnv / t32:.1f}x  f64/f32 {t64 / t32:.1f}x")

    i32 = timed(lambda: E.influence(keep, test, dtype="float32"), repeat=1)
    i64 = timed(lambda: E.influence(keep, test, dtype="float64"), repeat=1)

    def dense():
        k = keep.astype(np.float64)
        n_in = k.sum(0)[:, None]
        return (k.T @ test) / n_in - ((1 - k).T @ test) / (args.m - n_in)

    idn = timed(dense, repeat=1)
    print(f"influence     jax-f32 {i32:.3f}s  numpy-f64 {i64:.3f}s  dense-numpy {idn:.3f}s  "
          f"dense/jax {idn / i32:.1f}x")

    tk = timed(lambda: E.top_influencers(keep, test, args.k, dtype="float32"), repeat=1)

    def dense_topk():
        infl = E.influence(keep, test, dtype="float32")
        return np.argpartition(-infl, args.k, axis=0)[: args.k]

    tdk = timed(dense_topk, repeat=1)
    print(f"top-k         blocked-jax {tk:.3f}s  dense+argpartition {tdk:.3f}s  ratio {tdk / tk:.1f}x")


if __name__ == "__main__":
    main()
