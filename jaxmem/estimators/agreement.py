"""Agreement of a per-example score with a reference score: rank correlation, top-k overlap,
bootstrap intervals over examples, and averaging a per-model score over models of a stack.

Used to validate the memorization proxies of :mod:`jaxmem.estimators.proxies` (from one training
run) against Feldman–Zhang memorization from a whole stack, but the functions take any two
per-example scores. Orient both so that higher = more memorized first
(``jaxmem.estimators.proxies.memorization_score``). Undefined values are NaN with an
``UndefinedProxyWarning`` that says why: a rank statistic needs at least 3 examples and
non-constant inputs; examples where either score is NaN are left out.

Imports only numpy, scipy (lazily) and jaxmem.estimators.
"""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.estimators._common import as_model_mask
from jaxmem.estimators.proxies import UndefinedProxyWarning
from jaxmem.estimators.resampling import BootstrapCI

__all__ = ["average_over_models", "bootstrap_over_examples", "spearman", "top_k_precision"]


def _warn(msg: str) -> None:
    warnings.warn(msg, UndefinedProxyWarning, stacklevel=3)


def _pairs(a, b, what):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"{what}: the two scores differ in size ({a.size} vs {b.size})")
    ok = ~(np.isnan(a) | np.isnan(b))
    if not ok.all():
        _warn(f"{what}: {int((~ok).sum())} of {a.size} examples have a NaN score and are left out")
    return a[ok], b[ok]


def _spearman_clean(a, b):
    from scipy.stats import spearmanr  # lazy: scipy is not a core dependency

    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return np.nan
    return float(spearmanr(a, b).statistic)


def spearman(proxy, reference) -> float:
    """Spearman rank correlation over examples (average ranks for ties; scipy.stats.spearmanr).

    Examples where either score is NaN are left out (with a warning). NaN, with a warning, when
    fewer than 3 examples remain or either score is constant. ±inf are ranked as values.
    """
    a, b = _pairs(proxy, reference, "spearman")
    r = _spearman_clean(a, b)
    if np.isnan(r):
        _warn(f"spearman is undefined: {a.size} examples (need >= 3) or a constant score")
    return r


def _topk_weights(s, k):
    """Inclusion probabilities of each example in the top k of ``s`` under uniform random
    tie-breaking: 1 above the k-th largest value, (k − #above)/#tied at it, 0 below."""
    t = np.partition(s, s.size - k)[s.size - k]  # the k-th largest
    above = s > t
    tied = s == t
    w = above.astype(np.float64)
    w[tied] = (k - above.sum()) / tied.sum()
    return w


def top_k_precision(proxy, reference, k: int) -> float:
    """Top-k precision: |top_k(proxy) ∩ top_k(reference)| / k over examples.

    Ties at the k-th value are broken uniformly at random, independently in the two rankings,
    and the *expected* overlap is returned (exact, no sampling): with w_i the probability that
    example i is in a top-k set (1 above the k-th largest value, (k − #above)/#tied at it),
    precision = Σ_i w_i^proxy · w_i^reference / k. Without ties this is the plain overlap.
    Orient both scores first (``memorization_score``: higher = more memorized). Examples where
    either score is NaN are left out (with a warning).

    Args: proxy, reference: [N]; k: 1 ≤ k ≤ number of examples without NaN.
    Returns: float in [0, 1].
    """
    a, b = _pairs(proxy, reference, "top_k_precision")
    if int(k) != k or not 1 <= k <= a.size:
        raise ValueError(f"k must be an integer in [1, {a.size}] (examples with both scores), got {k!r}")
    k = int(k)
    return float(np.dot(_topk_weights(a, k), _topk_weights(b, k)) / k)


def bootstrap_over_examples(
    statistic, proxy, reference, *, num_bootstrap: int = 1000, alpha: float = 0.05, seed: int = 0, **kwargs
) -> BootstrapCI:
    """Percentile bootstrap over examples (Efron & Tibshirani 1993, Ch. 13) of
    ``statistic(proxy, reference, **kwargs)``, e.g. :func:`spearman` or :func:`top_k_precision`.

    Examples with a NaN score are dropped once (with a warning); then the remaining n examples
    are resampled with replacement ``num_bootstrap`` times (``np.random.default_rng(seed)``).
    Samples where the statistic is NaN are ignored (``num_valid`` counts the rest). The interval
    reflects sampling of examples for a fixed trained model (not retraining noise).

    Returns: ``BootstrapCI`` with scalar fields (estimate, low, high, stderr, num_valid).
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    if int(num_bootstrap) != num_bootstrap or num_bootstrap < 2:
        raise ValueError(f"num_bootstrap must be an integer >= 2, got {num_bootstrap!r}")
    a, b = _pairs(proxy, reference, "bootstrap_over_examples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedProxyWarning)
        est = float(statistic(a, b, **kwargs))
        rng = np.random.default_rng(seed)
        samples = np.empty(int(num_bootstrap))
        for j in range(int(num_bootstrap)):
            idx = rng.integers(0, a.size, a.size)
            samples[j] = statistic(a[idx], b[idx], **kwargs)
    ok = np.isfinite(samples)
    if not ok.any():
        _warn("bootstrap_over_examples: the statistic is NaN in every bootstrap sample")
        return BootstrapCI(est, np.nan, np.nan, np.nan, 0)
    low, high = np.percentile(samples[ok], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    stderr = float(np.std(samples[ok], ddof=1)) if ok.sum() > 1 else np.nan
    return BootstrapCI(est, float(low), float(high), stderr, int(ok.sum()))


def average_over_models(proxy, *, keep=None, models=None, model_mask=None) -> np.ndarray:
    """Average a per-model proxy [M, N] over some models of the stack → [N].

    Which models: those of ``model_mask`` [M] (e.g. drop diverged ones; default all), then
    ``models``: None (all of them), an int M' (the first M' of them — a single model is
    M' = 1) or a sequence of model indices (each must be in the mask). With ``keep`` [M, N]
    (True where model m trained on example i) each example is averaged only over the chosen
    models that trained on it — a training-dynamics proxy describes the examples a model was
    trained on; the others are held out for it. Entries that are NaN (a diverged model that was
    not masked) are left out, with a warning; examples left with no value are NaN, with a
    warning (with ``keep`` and M' = 1, about half the examples when keep is balanced).

    Returns: [N] float64.
    """
    p = np.asarray(proxy, np.float64)
    if p.ndim != 2:
        raise ValueError(f"proxy must be [M, N] (one row per model), got shape {p.shape}")
    m, n = p.shape
    mask = as_model_mask(model_mask, m)
    candidates = np.flatnonzero(mask)
    if models is None:
        chosen = candidates
    elif np.ndim(models) == 0:
        if int(models) != models or not 1 <= models <= candidates.size:
            raise ValueError(f"models must be an integer in [1, {candidates.size}] (unmasked models), got {models!r}")
        chosen = candidates[: int(models)]
    else:
        chosen = np.asarray(models, dtype=np.int64).ravel()
        if chosen.size == 0 or np.any(chosen < 0) or np.any(chosen >= m) or not np.all(mask[chosen]):
            raise ValueError(f"models must be a non-empty list of unmasked model indices in [0, {m})")
    w = np.zeros((m, n), bool)
    w[chosen] = True
    if keep is not None:
        k = np.asarray(keep).astype(bool)
        if k.shape != (m, n):
            raise ValueError(f"keep must be [{m}, {n}], got {k.shape}")
        w &= k
    nan = np.isnan(p) & w
    if nan.any():
        _warn(
            f"average_over_models: {int(nan.sum())} NaN (model, example) values left out (diverged model? pass model_mask)"
        )
        w &= ~nan
    cnt = w.sum(axis=0)
    tot = np.where(w, p, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    empty = int((cnt == 0).sum())
    if empty:
        why = "trained on by none of the chosen models" if keep is not None else "NaN in every chosen model"
        _warn(f"average_over_models: {empty} of {n} examples are {why}; their average is NaN")
    return out
