"""Trends of language-model memorization, with bootstrap intervals: pure NumPy functions.

* :func:`loglog_slope`: the slope of log(mean metric) against log(duplicate count), with a
  stratified bootstrap interval, to test Kandpal et al. (2022)'s super-linear claim (slope > 1).
* :func:`loglinear_slope`: the slope of a mean metric against log10 of a size (parameters,
  prefix length) measured on the same sequences, with a paired bootstrap interval (Carlini et
  al. 2022's log-linear trends).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Real

__all__ = ["LogLogSlope", "loglog_slope", "LogLinearSlope", "loglinear_slope"]


def _buckets(counts, bins):
    counts = np.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be [N], got {counts.shape}")
    if bins is None:
        edges = np.unique(counts)
        return edges, np.searchsorted(edges, counts)
    edges = np.asarray(bins)
    if edges.ndim != 1 or len(edges) == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins must be increasing lower edges")
    b = np.searchsorted(edges, counts, side="right") - 1  # bucket j: edges[j] <= c < edges[j+1]
    return edges, b


class LogLogSlope(NamedTuple):
    slope: float  # OLS slope of log(mean) on log(count) over the used buckets
    intercept: float
    low: float  # percentile bootstrap interval, level 1 − alpha
    high: float
    stderr: float  # bootstrap standard deviation (ddof 1)
    counts: Real[np.ndarray, " B"]  # bucket counts (x)
    means: Float[np.ndarray, " B"]  # mean metric per bucket (y)
    sizes: Integer[np.ndarray, " B"]  # int64 sequences per bucket
    used: Bool[np.ndarray, " B"]  # count > 0 and mean > 0 (the log is defined)
    num_valid: int  # bootstrap samples with a defined slope


def _fit(lx, ly):
    """OLS slope and intercept of ly on lx, rows of ly [S, B] (NaN entries left out per row)."""
    ok = np.isfinite(ly)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, lx, 0.0).sum(-1) / n
        my = np.where(ok, ly, 0.0).sum(-1) / n
        dx = np.where(ok, lx - mx[..., None], 0.0)
        sxx = (dx * dx).sum(-1)
        slope = (dx * np.where(ok, ly - my[..., None], 0.0)).sum(-1) / sxx
    slope = np.where((n >= 2) & (sxx > 0), slope, np.nan)
    return slope, my - slope * mx


def loglog_slope(counts: Real[ArrayLike, " N"], values: Real[ArrayLike, " N"], *, bins=None, num_bootstrap: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> LogLogSlope:
    """Slope b of log E[metric | count] = a + b · log(count) across duplicate-count buckets.

    Kandpal et al. (2022), "Deduplicating training data mitigates privacy risks in language
    models": the rate at which a sequence is regenerated grows super-linearly with its
    number of duplicates (b > 1 on log-log axes); Carlini et al. (2022) fit log-linear trends the
    same way. Each bucket's y is the mean metric of its sequences (e.g. each sequence's extraction
    rate over its IN models, or its counterfactual memorization); buckets whose mean is <= 0 (or
    NaN) are left out of the fit (the log is undefined) with a warning. The fit is unweighted OLS
    over the used buckets, natural logs.

    The interval resamples sequences with replacement *within* each bucket (stratified bootstrap,
    so every bucket keeps its size; Efron & Tibshirani 1993, Ch. 8), ``num_bootstrap`` times,
    refits, and takes the alpha/2 and 1 − alpha/2 percentiles; a resample where a bucket's mean
    is <= 0 drops that bucket from that refit. NaN metric values are left out of their bucket.
    Like any percentile bootstrap of means it is somewhat narrow for small buckets: with 40
    sequences per bucket and a log-normal metric its standard error was 0.80-1.05x (mean 0.90x)
    the slope's spread over fresh data sets (tests/test_lm_estimators.py).

    Args:
      counts: [N] duplicate counts (> 0).
      values: [N] per-sequence metric.
      bins: None (one bucket per distinct count, x = the count) or increasing lower edges
        (x = the geometric mean of the bucket's counts).
      num_bootstrap: stratified bootstrap resamples.
      alpha: 1 − the interval's level, in (0, 1).
      seed: the seed of the bootstrap.

    Returns:
      :class:`LogLogSlope`; slope and interval are NaN (with a warning) when fewer than two
      buckets are usable.

    Raises:
      ValueError: ``counts`` and ``values`` not both [N], a count <= 0, or alpha outside (0, 1).

    References:
      Kandpal et al. (2022), "Deduplicating training data mitigates privacy risks in language
      models", ICML; Efron & Tibshirani (1993), Ch. 8.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    counts = np.asarray(counts, np.float64)
    v = np.asarray(values, np.float64)
    if v.shape != counts.shape or v.ndim != 1:
        raise ValueError(f"counts and values must both be [N]; got {counts.shape} and {v.shape}")
    if np.any(~(counts > 0)):
        raise ValueError("counts must be > 0 (duplicate counts start at 1)")
    fin = np.isfinite(v)
    edges, b = _buckets(counts, bins)
    B = len(edges)
    sel = fin & (b >= 0)
    members = [np.flatnonzero(sel & (b == j)) for j in range(B)]
    sizes = np.array([len(m) for m in members], np.int64)
    if bins is None:
        x = edges.astype(np.float64)
    else:
        x = np.array([np.exp(np.mean(np.log(counts[m]))) if len(m) else np.nan for m in members])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.array([v[m].mean() if len(m) else np.nan for m in members])
    used = (sizes > 0) & (means > 0)
    dropped = int(np.sum((sizes > 0) & ~used))
    if dropped:
        warnings.warn(f"loglog_slope: {dropped} of {B} buckets have a mean <= 0 and are left out of "
                      "the log-log fit", RuntimeWarning, stacklevel=2)
    lx = np.log(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        ly = np.where(used, np.log(np.where(used, means, 1.0)), np.nan)
    slope, intercept = _fit(lx, ly[None])
    rng = np.random.default_rng(seed)
    S = int(num_bootstrap)
    boots = np.full((S, B), np.nan)
    for j, m in enumerate(members):
        if not used[j]:
            continue
        vm = v[m]
        chunk = max(1, (1 << 22) // len(m))  # bound the [samples, n] index array
        for s0 in range(0, S, chunk):
            s1 = min(S, s0 + chunk)
            mj = vm[rng.integers(0, len(m), size=(s1 - s0, len(m)))].mean(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                boots[s0:s1, j] = np.where(mj > 0, np.log(np.where(mj > 0, mj, 1.0)), np.nan)
    bs = _fit(lx, boots)[0] if S else np.array([])
    ok = np.isfinite(bs)
    if int(used.sum()) < 2:
        warnings.warn("loglog_slope: fewer than two buckets with a positive mean; the slope is NaN",
                      RuntimeWarning, stacklevel=2)
    if int(used.sum()) >= 2 and ok.sum() >= 2:
        low, high = np.percentile(bs[ok], [100 * alpha / 2, 100 * (1 - alpha / 2)])
        se = float(np.std(bs[ok], ddof=1))
    else:
        low = high = se = np.nan
    return LogLogSlope(float(slope[0]), float(intercept[0]), float(low), float(high), se,
                       x, means, sizes, used, int(ok.sum()))


class LogLinearSlope(NamedTuple):
    slope: float  # OLS slope of the mean metric per decade of x (per unit of log10 x)
    intercept: float
    low: float  # percentile bootstrap interval, level 1 − alpha
    high: float
    stderr: float  # bootstrap standard deviation (ddof 1)
    x: Real[np.ndarray, " G"]
    means: Float[np.ndarray, " G"]  # mean of each group's finite values
    num_valid: int  # bootstrap samples with a defined slope


def loglinear_slope(x: Real[ArrayLike, " G"], values: Real[ArrayLike, "G N"], *, num_bootstrap: int = 1000,
                    alpha: float = 0.05, seed: int = 0) -> LogLinearSlope:
    """Slope b of mean_i values[g, i] = a + b · log10(x_g) across G groups measured on the same N
    sequences (Carlini et al. 2022, "Quantifying memorization across neural language models":
    the extractable fraction grows log-linearly with model size and with prompt length).

    Unweighted OLS over the groups of each group's mean over its finite values (NaN: a sequence not
    scored in that group). The interval is a paired percentile bootstrap: ``num_bootstrap``
    resamples of the N sequences with replacement, the same draw for every group (the groups share
    their sequences, so their means are correlated), refit each time; alpha/2 and 1 − alpha/2
    percentiles. It treats sequences as the only source of noise (one set of trained models: the
    spread over retrainings is not in it).

    Args:
      x: [G] positive sizes (parameters, prefix lengths).
      values: [G, N] per-sequence metric of each group.
      num_bootstrap: paired bootstrap resamples of the N sequences.
      alpha: 1 − the interval's level, in (0, 1).
      seed: the seed of the bootstrap.

    Returns:
      :class:`LogLinearSlope`; NaN slope and interval (with a warning) when fewer than two
      distinct x have a finite mean.

    Raises:
      ValueError: shapes disagree, x <= 0, or alpha outside (0, 1).

    References:
      Carlini et al. (2022), "Quantifying memorization across neural language models", ICLR 2023.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    x = np.asarray(x, np.float64)
    v = np.asarray(values, np.float64)
    if x.ndim != 1 or v.ndim != 2 or v.shape[0] != x.shape[0]:
        raise ValueError(f"x must be [G] and values [G, N]; got {x.shape} and {v.shape}")
    if np.any(~(x > 0)):
        raise ValueError("x must be > 0 (its log10 is the regressor)")
    lx = np.log10(x)

    def means(block):  # [..., G, n] -> [..., G]
        fin = np.isfinite(block)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(fin, block, 0.0).sum(-1) / fin.sum(-1)

    m = means(v)
    slope, intercept = _fit(lx, m[None])
    S, N = int(num_bootstrap), v.shape[1]
    rng = np.random.default_rng(seed)
    boots = np.full(S, np.nan)
    chunk = max(1, (1 << 22) // max(1, v.size))
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        idx = rng.integers(0, N, size=(s1 - s0, N)) if N else np.zeros((s1 - s0, 0), int)
        boots[s0:s1] = _fit(lx, means(np.moveaxis(v[:, idx], 1, 0)))[0]
    ok = np.isfinite(boots)
    if not np.isfinite(slope[0]):
        warnings.warn("loglinear_slope: fewer than two distinct x with a finite mean; the slope is NaN",
                      RuntimeWarning, stacklevel=2)
    if np.isfinite(slope[0]) and ok.sum() >= 2:
        low, high = np.percentile(boots[ok], [100 * alpha / 2, 100 * (1 - alpha / 2)])
        se = float(np.std(boots[ok], ddof=1))
    else:
        low = high = se = np.nan
    return LogLinearSlope(float(slope[0]), float(intercept[0]), float(low), float(high), se, x, m, int(ok.sum()))
