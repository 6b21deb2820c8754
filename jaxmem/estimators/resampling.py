"""Resampling over models: convergence diagnostics and bootstrap confidence intervals.

Both work with any estimator ``fn(keep, *arrays, **kwargs)`` of this package whose result is an
array or a NamedTuple with the estimate first (``mem``, ``score``, ``effect``, ...) and,
optionally, a ``stderr`` field; every positional array has the model axis first and is
resampled together with ``keep``.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Shaped

from jaxmem.estimators._common import InsufficientModelsWarning, as_model_mask, first_field, is_jax
from jaxmem.estimators.memorization import memorization

__all__ = ["convergence", "BootstrapCI", "bootstrap_ci"]


class BootstrapCI(NamedTuple):
    estimate: Float[np.ndarray, "*shape"]  # the estimate from all (unmasked) models
    low: Float[np.ndarray, "*shape"]  # percentile interval, alpha/2 quantile
    high: Float[np.ndarray, "*shape"]  # 1 − alpha/2 quantile
    stderr: Float[np.ndarray, "*shape"]  # bootstrap standard deviation (ddof=1)
    num_valid: Integer[np.ndarray, "*shape"]  # bootstrap samples with a finite estimate


def _select_models(keep, arrays, model_mask):
    keep = keep if is_jax(keep) else np.asarray(keep)
    arrays = [a if is_jax(a) else np.asarray(a) for a in arrays]
    m = np.shape(keep)[0]
    for a in arrays:
        if np.shape(a)[:1] != (m,):
            raise ValueError(f"every array needs a leading model axis of size {m}, got {np.shape(a)}")
    if model_mask is None:
        return keep, arrays
    idx = np.flatnonzero(as_model_mask(model_mask, m))
    return keep[idx], [a[idx] for a in arrays]


def _run(fn, keep, arrays, idx, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientModelsWarning)
        res = fn(keep[idx], *[a[idx] for a in arrays], **kwargs)
    err = getattr(res, "stderr", None)
    return first_field(res), (None if err is None else np.asarray(err))


def _spearman(a, b):
    from scipy.stats import spearmanr  # lazy

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return np.nan
    return float(spearmanr(a[ok], b[ok]).statistic)


def convergence(
    keep: Bool[ArrayLike, "M N"],
    *arrays: Shaped[ArrayLike, "M ..."],
    estimator=memorization,
    sizes=None,
    seed: int = 0,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    **kwargs,
) -> dict:
    """How an estimate stabilizes as models are added.

    For M' = 8, 16, 32, … (and all M models) take the first M' models of one random permutation
    (nested subsets) and compare the estimate with the one from all models: Spearman rank
    correlation over examples finite in both, RMSE, mean stderr (if the estimator reports one),
    and the fraction of examples whose estimate is NaN (no IN/OUT model yet). A study needs
    enough models that the Spearman correlation has flattened out near 1. Needs scipy.

    Args:
      keep: [M, N] bool, True where model m trained on example i.
      *arrays: the estimator's other positional arrays, each with the model axis first [M, ...].
      estimator: ``fn(keep, *arrays, **kwargs)`` returning an array or a NamedTuple with the
        estimate first (default :func:`memorization`).
      sizes: the numbers of models M' to try (default powers of two from 8, and M).
      seed: the seed of the permutation.
      model_mask: [M] bool, the models to use; None: all.
      **kwargs: passed to ``estimator``.

    Returns:
      A dict of float64 arrays [S] (S sizes): ``sizes``, ``spearman``, ``rmse``, ``mean_stderr``,
      ``frac_nan``.

    Raises:
      ValueError: an array without the leading [M] axis, or a size outside [1, M].
    """
    keep, arrays = _select_models(keep, arrays, model_mask)
    m = np.shape(keep)[0]
    if sizes is None:
        sizes = [s for s in (2 ** np.arange(3, 31)) if s < m] + [m]
    sizes = np.asarray(sorted(set(int(s) for s in sizes)))
    if sizes.min() < 1 or sizes.max() > m:
        raise ValueError(f"sizes must lie in [1, {m}]")
    perm = np.random.default_rng(seed).permutation(m)
    full, _ = _run(estimator, keep, arrays, np.arange(m), kwargs)
    full = full.ravel()
    rows = {"spearman": [], "rmse": [], "mean_stderr": [], "frac_nan": []}
    for s in sizes:
        est, err = _run(estimator, keep, arrays, np.sort(perm[:s]), kwargs)
        est = est.ravel()
        ok = np.isfinite(est) & np.isfinite(full)
        rows["spearman"].append(_spearman(est, full))
        rows["rmse"].append(np.sqrt(np.mean((est[ok] - full[ok]) ** 2)) if ok.any() else np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows["mean_stderr"].append(np.nanmean(err) if err is not None else np.nan)
        rows["frac_nan"].append(np.mean(~np.isfinite(est)))
    return {"sizes": sizes, **{k: np.asarray(v, dtype=np.float64) for k, v in rows.items()}}


def bootstrap_ci(
    estimator_fn,
    keep: Bool[ArrayLike, "M N"],
    *arrays: Shaped[ArrayLike, "M ..."],
    num_bootstrap: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    **kwargs,
) -> BootstrapCI:
    """Percentile bootstrap over models for any estimator.

    Resample the M (unmasked) models with replacement ``num_bootstrap`` times, recompute
    ``estimator_fn(keep[idx], *[a[idx] for a in arrays], **kwargs)``, and take the alpha/2 and
    1 − alpha/2 quantiles per entry. Samples where an entry is NaN (e.g. an example left without
    an IN model) are ignored for that entry; ``num_valid`` counts the rest. Holds all samples
    in memory: num_bootstrap × size of the estimate.

    Args:
      estimator_fn: ``fn(keep, *arrays, **kwargs)`` returning an array or a NamedTuple with the
        estimate first (e.g. :func:`memorization`).
      keep: [M, N] bool, True where model m trained on example i.
      *arrays: the estimator's other positional arrays, each with the model axis first [M, ...].
      num_bootstrap: resamples.
      alpha: 1 − the interval's level, in (0, 1).
      seed: the seed of the resampling.
      model_mask: [M] bool, the models to use; None: all.
      **kwargs: passed to ``estimator_fn``.

    Returns:
      :class:`BootstrapCI` (``estimate``, ``low``, ``high``, ``stderr``, ``num_valid``), each of
      the estimate's shape ([N] for :func:`memorization`).

    Raises:
      ValueError: ``alpha`` outside (0, 1), or an array without the leading [M] axis.

    References:
      Efron & Tibshirani (1993), "An introduction to the bootstrap", Ch. 13.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    keep, arrays = _select_models(keep, arrays, model_mask)
    m = np.shape(keep)[0]
    rng = np.random.default_rng(seed)
    estimate, _ = _run(estimator_fn, keep, arrays, np.arange(m), kwargs)
    samples = np.stack(
        [_run(estimator_fn, keep, arrays, rng.integers(0, m, m), kwargs)[0] for _ in range(num_bootstrap)]
    ).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        stderr = np.nanstd(samples, axis=0, ddof=1)
    return BootstrapCI(estimate, low, high, stderr, np.isfinite(samples).sum(0))
