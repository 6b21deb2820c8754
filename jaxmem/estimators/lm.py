"""Language-model memorization estimators: pure array functions (NumPy / SciPy).

* :func:`counterfactual_memorization_lm`: Zhang et al. (2021)'s counterfactual memorization of
  each sequence with its standard error, from a per-token metric [M, N, T] + mask (token accuracy
  by default: then ``mean_in`` is Tirumala et al. 2022's exact-match accuracy on training
  sequences) or any per-sequence metric [M, N]. It reduces tokens to sequences and calls
  :func:`jaxmem.estimators.counterfactual_memorization` (the one Feldman–Zhang estimator).
* :func:`exact_match_accuracy`: Tirumala et al. (2022)'s M(f) per model, pooled over the tokens of
  the IN (training) and of the OUT sequences.
* :func:`extraction_rate_by_count`: the extraction rate per duplicate-count bucket, with a Wilson
  or Clopper–Pearson interval (Carlini et al. 2022; Kandpal et al. 2022).
* :func:`loglog_slope`: the slope of log(mean metric) against log(duplicate count), with a
  stratified bootstrap interval, to test Kandpal et al. (2022)'s super-linear claim (slope > 1).

Imports numpy, scipy (lazily), :mod:`jaxmem.estimators.memorization`,
:func:`jaxmem.attacks.metrics.clopper_pearson` and :func:`jaxmem.signals.lm.masked_mean` only.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from jaxmem.attacks.metrics import clopper_pearson
from jaxmem.estimators._common import InsufficientModelsWarning
from jaxmem.estimators.memorization import (
    MemorizationResult,
    counterfactual_memorization,
)
from jaxmem.signals.lm import masked_mean

__all__ = [
    "counterfactual_memorization_lm",
    "exact_match_accuracy",
    "ExactMatch",
    "RateTable",
    "extraction_rate_by_count",
    "LogLogSlope",
    "loglog_slope",
]


def _per_sequence(metric, mask):
    metric = np.asarray(metric)
    if metric.ndim == 3:
        if mask is None:
            raise ValueError("a per-token metric [M, N, T] needs its target mask ([N, T] or [M, N, T])")
        m = np.asarray(mask, bool)
        if m.shape not in (metric.shape, metric.shape[1:]):
            raise ValueError(f"mask {m.shape} must be [N, T] = {metric.shape[1:]} or [M, N, T] = {metric.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per = masked_mean(metric, m)
        empty = int(np.sum(np.broadcast_to(m, metric.shape).sum(-1) == 0))
        if empty:
            warnings.warn(f"{empty} (model, sequence) pairs have no target token; their metric is NaN",
                          InsufficientModelsWarning, stacklevel=3)
        return per
    if metric.ndim == 2:
        if mask is not None:
            raise ValueError("mask is for per-token metrics [M, N, T]; this metric is [M, N]")
        return metric
    raise ValueError(f"metric must be [M, N] (per sequence) or [M, N, T] (per token), got {metric.shape}")


def counterfactual_memorization_lm(keep, metric, mask=None, *, model_mask=None, dtype=None, block=None) -> MemorizationResult:
    """Counterfactual memorization of each sequence (Zhang et al. 2021, "Counterfactual
    memorization in neural language models", Eq. 1):

        mem(x) = E_{S ∋ x}[M(f_S, x)] − E_{S ∌ x}[M(f_S, x)],

    estimated by the IN and OUT model means, with stderr sqrt(s²_in/n_in + s²_out/n_out).

    Args:
      keep: [M, N] bool, model m trained on sequence i.
      metric: [M, N, T] per-token metric with ``mask`` (Zhang et al. use per-token accuracy:
        ``TokenSignals.correct``; or ``TokenSignals.logp``), reduced to a per-sequence mean over
        the target tokens; or [M, N] any per-sequence metric (−NLL, token accuracy, extraction
        length), used as is.
      mask: [N, T] or [M, N, T] bool target mask, for a per-token metric only.
      model_mask, dtype, block: as :func:`jaxmem.estimators.memorization` (float64 when the
        metric is float64 NumPy).

    Returns :class:`jaxmem.estimators.MemorizationResult` (``mem``, ``stderr``, ``n_in``,
    ``n_out``, ``mean_in``, ``mean_out``, each [N]). With token accuracy, ``mean_in`` is the
    exact-match token accuracy of the models that trained on the sequence (Tirumala et al. 2022)
    and ``mean_out`` that of the models that did not. NaN (with ``InsufficientModelsWarning``)
    for a sequence without an IN or an OUT model, or without target tokens.
    """
    per = _per_sequence(metric, mask)
    return counterfactual_memorization(keep, per, model_mask=model_mask, dtype=dtype, block=block)


class ExactMatch(NamedTuple):
    acc_in: np.ndarray  # [M] correct / target tokens over the model's training (IN) sequences
    acc_out: np.ndarray  # [M] the same over its held-out (OUT) sequences
    tokens_in: np.ndarray  # [M] int64 target tokens counted for acc_in
    tokens_out: np.ndarray  # [M] int64 target tokens counted for acc_out


def exact_match_accuracy(keep, correct, mask) -> ExactMatch:
    """Exact-match memorization per model (Tirumala et al. 2022, "Memorization without overfitting"):
    M(f) = the fraction of (context, next token) pairs of the training set whose argmax
    prediction is the true next token, pooled over all target tokens of the IN sequences (and, for
    comparison, of the OUT sequences).

    Args:
      keep: [M, N] bool; correct: [M, N, T] (1.0/0.0, ``TokenSignals.correct``); mask: [N, T] or
        [M, N, T] bool target mask.

    Returns :class:`ExactMatch`; NaN (with a warning) for a model without IN (or OUT) tokens or
    with a NaN among its counted tokens.
    """
    keep = np.asarray(keep, bool)
    c = np.asarray(correct, np.float64)
    if c.ndim != 3 or keep.shape != c.shape[:2]:
        raise ValueError(f"correct must be [M, N, T] and keep [M, N]; got {c.shape} and {keep.shape}")
    m = np.broadcast_to(np.asarray(mask, bool), c.shape)
    res = []
    for member in (keep, ~keep):
        sel = m & member[..., None]
        n = sel.sum((1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(sel, c, 0.0).sum((1, 2)) / n
        res.append((np.where(n > 0, acc, np.nan), n.astype(np.int64)))
    bad = int(np.sum(~np.isfinite(res[0][0])) + np.sum(~np.isfinite(res[1][0])))
    if bad:
        warnings.warn(f"exact_match_accuracy: {bad} of {2 * c.shape[0]} accuracies are NaN (no IN/OUT "
                      "target token, or a NaN among them)", InsufficientModelsWarning, stacklevel=2)
    return ExactMatch(res[0][0], res[1][0], res[0][1], res[1][1])


class RateTable(NamedTuple):
    counts: np.ndarray  # [B] bucket: the duplicate count (or the bucket's lower edge)
    trials: np.ndarray  # [B] int64 (model, sequence) pairs in the bucket
    successes: np.ndarray  # [B] int64 extracted pairs
    rate: np.ndarray  # [B] successes / trials (NaN for an empty bucket)
    low: np.ndarray  # [B] interval bounds at level 1 − alpha (NaN for an empty bucket)
    high: np.ndarray
    sequences: np.ndarray  # [B] int64 distinct sequences with at least one trial


def _wilson(k, n, alpha):
    from scipy.stats import binomtest  # lazy

    lo, hi = np.full(len(k), np.nan), np.full(len(k), np.nan)
    for j, (kj, nj) in enumerate(zip(k, n)):
        if nj > 0:
            ci = binomtest(int(kj), int(nj)).proportion_ci(confidence_level=1 - alpha, method="wilson")
            lo[j], hi[j] = ci.low, ci.high
    return lo, hi


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


def extraction_rate_by_count(extracted, counts, *, keep=None, members=True, valid=None, bins=None,
                             method="wilson", alpha=0.05) -> RateTable:
    """Extraction rate per duplicate-count bucket (Carlini et al. 2022; Kandpal et al.
    2022), with a binomial interval.

    Each (model, sequence) pair is a trial: with ``keep`` only the pairs where the model trained on
    the sequence (``members=True``; ``members=False``: only held-out pairs, the baseline of
    sequences that are extractable without having been seen). The interval is Wilson's score
    interval (``method="wilson"``, scipy's ``binomtest(...).proportion_ci``) or the exact
    Clopper–Pearson interval (``"clopper_pearson"``, :func:`jaxmem.attacks.clopper_pearson`).
    Both treat the trials as independent; pairs of one sequence across models are not (a stratified
    bootstrap over sequences, :func:`loglog_slope`, accounts for that).

    Args:
      extracted: [M, N] or [N] bool (``Extraction.extracted`` per model).
      counts: [N] int, the duplicate count of each sequence (``jaxmem.data.text_transforms.duplicate_counts``).
      keep: [M, N] bool or None (every pair is a trial).
      valid: [N] or [M, N] bool, pairs that could be scored (``Extraction.valid``); others skipped.
      bins: None (one bucket per distinct count) or increasing lower edges (e.g. 1, 2, 4, 8, ...:
        bucket j holds edges[j] <= count < edges[j+1]; counts below edges[0] are skipped).

    Returns :class:`RateTable`; an empty bucket has NaN rate and interval (with a warning).
    """
    if method not in ("wilson", "clopper_pearson"):
        raise ValueError(f"method must be 'wilson' or 'clopper_pearson', got {method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    x = np.asarray(extracted)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"extracted must be [M, N] or [N], got {np.shape(extracted)}")
    x = x.astype(bool)
    edges, b = _buckets(counts, bins)
    if len(b) != x.shape[1]:
        raise ValueError(f"counts has {len(b)} sequences, extracted {x.shape[1]}")
    use = np.ones(x.shape, bool)
    if keep is not None:
        k = np.asarray(keep, bool)
        if k.shape != x.shape:
            raise ValueError(f"keep {k.shape} must have the shape of extracted {x.shape}")
        use &= k if members else ~k
    if valid is not None:
        use &= np.broadcast_to(np.asarray(valid, bool), x.shape)
    use &= (b >= 0)[None]
    B = len(edges)
    bb = np.broadcast_to(b, x.shape)
    trials = np.bincount(bb[use], minlength=B)[:B].astype(np.int64)
    succ = np.bincount(bb[use & x], minlength=B)[:B].astype(np.int64)
    seqs = np.bincount(b[use.any(0)], minlength=B)[:B].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(trials > 0, succ / np.maximum(trials, 1), np.nan)
    if method == "wilson":
        lo, hi = _wilson(succ, trials, alpha)
    else:
        lo, hi = clopper_pearson(succ, trials, alpha)
        lo, hi = np.where(trials > 0, lo, np.nan), np.where(trials > 0, hi, np.nan)
    empty = int(np.sum(trials == 0))
    if empty:
        warnings.warn(f"extraction_rate_by_count: {empty} of {B} buckets have no trial; their rate is NaN",
                      InsufficientModelsWarning, stacklevel=2)
    return RateTable(edges, trials, succ, rate, lo, hi, seqs)


class LogLogSlope(NamedTuple):
    slope: float  # OLS slope of log(mean) on log(count) over the used buckets
    intercept: float
    low: float  # percentile bootstrap interval, level 1 − alpha
    high: float
    stderr: float  # bootstrap standard deviation (ddof 1)
    counts: np.ndarray  # [B] bucket counts (x)
    means: np.ndarray  # [B] mean metric per bucket (y)
    sizes: np.ndarray  # [B] int64 sequences per bucket
    used: np.ndarray  # [B] bool: count > 0 and mean > 0 (the log is defined)
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


def loglog_slope(counts, values, *, bins=None, num_bootstrap=1000, alpha=0.05, seed=0) -> LogLogSlope:
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
      counts: [N] duplicate counts (> 0); values: [N] per-sequence metric.
      bins: None (one bucket per distinct count, x = the count) or increasing lower edges
        (x = the geometric mean of the bucket's counts).

    Returns :class:`LogLogSlope`; slope and interval are NaN (with a warning) when fewer than two
    buckets are usable.
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
