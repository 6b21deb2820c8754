"""Standardization of inputs, in bounded memory.

Images are scaled to [0, 1] and standardized per channel with the train split's mean and
standard deviation; 1-D signals are standardized with the train split's scalar mean and std.
The statistics are stored in ``meta["preprocessing"]``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["standardize", "images"]

_CHUNK = 4096  # rows per chunk when converting/standardizing, to bound float64 temporaries


def _chunks(n: int):
    for lo in range(0, n, _CHUNK):
        yield slice(lo, min(n, lo + _CHUNK))


def standardize(x_train, x_test, *, scale: float, per_channel: bool):
    """(x * scale - mean) / std in float32, with float64 mean/std of the scaled train split.

    Statistics are per channel (last axis) or over all values. uint8/uint16 inputs use exact
    per-channel value histograms and a lookup table (no float64 copy of CIFAR-sized data);
    other inputs use two chunked float64 passes.
    """
    c = x_train.shape[-1] if per_channel else 1
    if x_train.dtype in (np.uint8, np.uint16) and x_test.dtype == x_train.dtype:
        return _standardize_lut(x_train, x_test, scale=scale, c=c, per_channel=per_channel)
    count = x_train.size // c
    total = np.zeros(c)
    for s in _chunks(len(x_train)):
        total += (x_train[s].astype(np.float64) * scale).reshape(-1, c).sum(axis=0)
    mean = total / count
    ss = np.zeros(c)
    for s in _chunks(len(x_train)):
        d = (x_train[s].astype(np.float64) * scale).reshape(-1, c) - mean
        ss += np.einsum("ij,ij->j", d, d)
    std = _safe_std(ss / count)

    def apply(x):
        out = np.empty(x.shape, np.float32)
        for s in _chunks(len(x)):
            z = (x[s].astype(np.float64) * scale).reshape(-1, c)
            out[s] = ((z - mean) / std).reshape(x[s].shape)
        return out

    return apply(x_train), apply(x_test), _stats(scale, per_channel, mean, std)


def _safe_std(var: np.ndarray) -> np.ndarray:
    std = np.sqrt(var)
    return np.where(std > 0, std, 1.0)


def _stats(scale, per_channel, mean, std) -> dict:
    return {
        "scale": float(scale),
        "per_channel": bool(per_channel),
        "mean": mean.tolist(),
        "std": std.tolist(),
    }


def _standardize_lut(x_train, x_test, *, scale: float, c: int, per_channel: bool):
    """Exact mean/std from per-channel histograms of integer values; apply by table lookup."""
    k = int(np.iinfo(x_train.dtype).max) + 1
    counts = np.zeros((k, c))
    for s in _chunks(len(x_train)):
        flat = x_train[s].reshape(-1, c)
        for j in range(c):
            counts[:, j] += np.bincount(flat[:, j], minlength=k)
    v = np.arange(k, dtype=np.float64)[:, None] * scale
    n = counts.sum(axis=0)
    mean = (counts * v).sum(axis=0) / n
    std = _safe_std((counts * (v - mean) ** 2).sum(axis=0) / n)
    lut = ((v - mean) / std).astype(np.float32)  # [k, c]

    def apply(x):
        out = np.empty(x.shape, np.float32)
        for s in _chunks(len(x)):
            flat, dst = x[s].reshape(-1, c), out[s].reshape(-1, c)
            for j in range(c):
                dst[:, j] = lut[:, j].take(flat[:, j])
        return out

    return apply(x_train), apply(x_test), _stats(scale, per_channel, mean, std)


def images(x_train, x_test, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """NHWC images: multiply by `scale` (to [0, 1]), then standardize per channel."""
    xtr, xte, stats = standardize(x_train, x_test, scale=scale, per_channel=True)
    return xtr, xte, {"kind": "image", **stats}
