"""The forgetting quality of an unlearning method as the NeurIPS 2023 machine unlearning
competition measures it (google-deepmind/unlearning_evaluation, ``metric.py``): per forget-set
example, the best (epsilon, delta) lower bound that a decision rule on its signal achieves between
unlearned and retrained models (:func:`forget_epsilons`, ``_get_epsilons``), and the bucketed
score over examples (:func:`forget_score`, ``compute_forget_score_from_confs``). U-LiRA, the
population MIA and the audit that combines them are :mod:`jaxmem.attacks.unlearning`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from jaxtyping import ArrayLike, Float, Real

from jaxmem.attacks.roc import UndefinedMetricWarning

__all__ = ["forget_epsilons", "forget_score", "DELTA", "EPSILON_CAP"]

DELTA = 1e-5          # the competition's delta
EPSILON_CAP = 50.0    # ... and its cap on a per-example epsilon
THRESHOLDS_PER_UNIT = 100   # ... and its threshold grid's density


def _warn(msg):
    warnings.warn(msg, UndefinedMetricWarning, stacklevel=3)


def _eps_from_rates(fpr, fnr, delta):
    """Per decision rule: the competition's epsilon (NaN: discarded)."""
    tpr, tnr = 1 - fnr, 1 - fpr
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(1 - delta - fpr) - np.log(fnr)
        b = np.log(1 - delta - fnr) - np.log(fpr)
        e = np.clip(np.fmax(a, b), 0, None)
    both = (fpr + fnr == 0) & (tpr + tnr == 2)
    one = ~both & (fpr * fnr == 0)
    return np.where(both, np.inf, np.where(one, np.nan, e))


def _rates_single(pos, neg):
    """Single threshold ("confidence >= t is positive") at every distinct value: (fpr, fnr)."""
    t = np.unique(np.concatenate([pos, neg]))
    ps, ns = np.sort(pos), np.sort(neg)
    tpr = (ps.size - np.searchsorted(ps, t, "left")) / ps.size
    fpr = (ns.size - np.searchsorted(ns, t, "left")) / ns.size
    return fpr, 1 - tpr


def _rates_double(pos, neg):
    """Double threshold ("l <= confidence <= r is positive", positive = the peakier of the two
    distributions) for every pair l <= r of distinct values: (fpr, fnr)."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    t = np.unique(np.concatenate([pos, neg]))
    ps, ns = np.sort(pos), np.sort(neg)
    li, ri = np.triu_indices(t.size)
    tp = np.searchsorted(ps, t[ri], "right") - np.searchsorted(ps, t[li], "left")
    fp = np.searchsorted(ns, t[ri], "right") - np.searchsorted(ns, t[li], "left")
    return fp / ns.size, 1 - tp / ps.size


def _rates_single_grid(pos, neg):
    """The reference's single-threshold grid: ``ceil(100 * range)`` evenly spaced thresholds from
    the smallest to the largest signal of both roles."""
    allc = np.concatenate([pos, neg])
    lo, hi = allc.min(), allc.max()
    t = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    ps, ns = np.sort(pos), np.sort(neg)
    tpr = (ps.size - np.searchsorted(ps, t, "left")) / ps.size
    fpr = (ns.size - np.searchsorted(ns, t, "left")) / ns.size
    return fpr, 1 - tpr


def _rates_double_grid(pos, neg):
    """The reference's double-threshold grid: positive = the distribution of smaller range
    (width w); right ends evenly spaced (100 per unit) over ``[min + w - 2, max + 2]`` of it,
    for each right end ``r`` 400 left ends evenly spaced over ``[r - w - 2, r - w + 2]``."""
    if np.ptp(pos) >= np.ptp(neg):
        pos, neg = neg, pos
    w, buf = np.ptp(pos), 2.0
    lo, hi = pos.min() + w - buf, pos.max() + buf
    right = np.linspace(lo, hi, int(math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
    n_left = int(math.ceil(2 * buf * THRESHOLDS_PER_UNIT))
    left = np.concatenate([np.linspace(r - w - buf, r - w + buf, n_left) for r in right]) if right.size else right
    right = np.repeat(right, n_left)
    ps, ns = np.sort(pos), np.sort(neg)
    tp = np.maximum(np.searchsorted(ps, right, "right") - np.searchsorted(ps, left, "left"), 0)
    fp = np.maximum(np.searchsorted(ns, right, "right") - np.searchsorted(ns, left, "left"), 0)
    return fp / ns.size, 1 - tp / ps.size


def forget_epsilons(unlearned: Real[ArrayLike, "U F"], retrained: Real[ArrayLike, "R F"], *, delta: float = DELTA,
                    cap: float = EPSILON_CAP, rules: str = "grid") -> Float[np.ndarray, " F"]:
    """The NeurIPS 2023 unlearning competition's per-example epsilon (google-deepmind/
    unlearning_evaluation, ``metric.py``, ``_get_epsilons``).

    Per example: the positive class is the one of larger median (retrained when its median is
    larger, else unlearned); if the smaller of the two signal ranges is below 1% of the larger,
    epsilon is the cap. Otherwise, for each decision rule of two families - one threshold
    (``signal >= t``) and an interval (``l <= signal <= r``, positive = the distribution of
    smaller range) - with rates FPR and FNR:
    ``eps = max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))`` clipped at 0;
    a rule with FPR = FNR = 0 gives inf; one with exactly one of them 0 is discarded. The
    example's epsilon is the largest over the rules, clipped to ``[0, cap]``.

    ``rules="grid"`` (default): the reference's thresholds - single thresholds evenly spaced,
    100 per unit of signal, over the range of both roles; intervals whose right end runs, 100 per
    unit, over ``[min + w - 2, max + 2]`` of the positive (smaller-range) distribution, of width
    within ``w ± 2`` (400 left ends per right end), ``w`` its range. ``rules="observed"``: every
    rule with thresholds at the observed values (every distinct operating point of both families
    with no restriction on the interval's width, a superset of the grid's): epsilon >= the
    grid's; on identically distributed roles of 16 + 16 (64 + 64) Gaussian models the forget
    score reads ~0.13 (~0.08) against the grid's ~0.19 (~0.16), so it is not the competition's
    number. (The reference computes its rates in float32; here in float64.)

    Args:
        unlearned: [U, F] signals of the unlearned models on the forget set.
        retrained: [R, F] signals of the retrained models.
        delta: the competition's 1e-5.
        cap: the competition's 50.
        rules: ``"grid"`` (the competition's) or ``"observed"``.

    Returns:
        [F] epsilons; NaN (with a warning) where every rule was discarded.

    Raises:
        ValueError: an unknown ``rules``, or shapes that differ in F.

    References:
        The NeurIPS 2023 machine unlearning competition (google-deepmind/unlearning_evaluation,
        ``metric.py``); Kairouz et al. (2015) for the epsilon of a test's (FPR, FNR).
    """
    if rules not in ("grid", "observed"):
        raise ValueError(f"forget_epsilons: rules must be 'grid' or 'observed', got {rules!r}")
    double, single = ((_rates_double_grid, _rates_single_grid) if rules == "grid"
                      else (_rates_double, _rates_single))
    u = np.asarray(unlearned, np.float64)
    r = np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"forget_epsilons: unlearned {u.shape} and retrained {r.shape} must be [models, F] with the same F")
    out = np.full(u.shape[1], np.nan)
    for i in range(u.shape[1]):
        a, b = u[:, i], r[:, i]
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        if a.size == 0 or b.size == 0:
            continue
        ret_pos = np.median(b) > np.median(a)
        pos, neg = (b, a) if ret_pos else (a, b)
        pd, nd = np.ptp(pos), np.ptp(neg)
        largest, smallest = max(pd, nd), min(pd, nd)
        if largest > 0 and smallest / largest < 0.01:
            out[i] = cap
            continue
        eps = np.concatenate([_eps_from_rates(*double(pos, neg), delta),
                              _eps_from_rates(*single(pos, neg), delta)])
        if np.isnan(eps).all():
            continue
        out[i] = np.clip(np.nanmax(eps), 0, cap)
    bad = int(np.isnan(out).sum())
    if bad:
        _warn(f"forget_epsilons: {bad} of {out.size} examples have no usable decision rule "
              f"(or no finite signal); their epsilon is NaN")
    return out


def forget_score(epsilons: Real[ArrayLike, " F"], num_models: int) -> float:
    """The competition's forget score (``compute_forget_score_from_confs``): each example earns
    points by the bucket of its epsilon - 1 for [0, 0.5), 1/2 for [0.5, 1), 1/4 for [1, 1.5), ...,
    for the buckets that end at or below ``ceil(log(num_models - 1))``, 0 beyond - averaged over
    examples (1 = every example indistinguishable). NaN epsilons are left out (with a warning).
    With fewer than 3 models there is no bucket (the reference scores every example 0 whatever
    its epsilon): NaN with a warning.

    Args:
        epsilons: [F] per-example epsilons (:func:`forget_epsilons`).
        num_models: the number of unlearned models (the reference's ``unlearned_confs.shape[0]``).

    Returns:
        The forget score in [0, 1], or NaN (with a warning).

    References:
        The NeurIPS 2023 machine unlearning competition (google-deepmind/unlearning_evaluation,
        ``metric.py``, ``compute_forget_score_from_confs``).
    """
    e = np.asarray(epsilons, np.float64).ravel()
    if num_models < 3:
        _warn(f"forget_score: {num_models} unlearned models give no bucket (ceil(log(num_models - 1)) "
              f"< 0.5): every example would score 0 whatever its epsilon; the score is NaN")
        return float("nan")
    fin = ~np.isnan(e)
    if not fin.all():
        _warn(f"forget_score: {int((~fin).sum())} NaN epsilons left out")
    if not fin.any():
        return float("nan")
    max_eps = math.ceil(math.log(num_models - 1))
    edges = np.arange(0.5, max_eps + 1e-12, 0.5)        # bucket ends (at least one: max_eps >= 1)
    points = 0.5 ** np.arange(edges.size)
    k = np.searchsorted(edges, e[fin], side="right")    # first bucket whose end exceeds e
    got = np.where(k < edges.size, points[np.minimum(k, edges.size - 1)], 0.0)
    return float(got.mean())
