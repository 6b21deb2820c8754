"""The one ROC implementation: every ROC curve, AUC and TPR at a fixed FPR in jaxmem comes from
:func:`_ranked` (metrics of one attack, :func:`jaxmem.attacks.evaluate`'s batched metrics over
targets, :meth:`jaxmem.attacks.Evaluation.table`, a run's ROC figure).

Conventions (sklearn's): NaN scores are dropped (they count for neither side: "not scored");
±inf are scores like any other; tied scores form one ROC point, found by equality of the sorted
scores (so ±inf ties are ties: inf − inf is not used); the AUC is the trapezoid through the ROC
points, computed exactly as P(s_in > s_out) + ½ P(tie) from integer counts; TPR@FPR is the
largest TPR among ROC points with FPR ≤ the given value (Carlini et al. 2022, Sec. III; the LiRA
reference code's ``plot.py`` takes ``tpr[last fpr < x]`` instead, which differs exactly when
x · #non-members is an integer, e.g. FPR = 25/25,000 on CIFAR-10).

A metric is undefined without at least one scored member and one scored non-member (a rate
would divide by zero): it is NaN, never 0 or 1 (scikit-learn's single-class AUC is NaN with a
warning too). The batched kernel returns NaN silently with the counts; the callers warn
(:class:`UndefinedMetricWarning`, once per call).
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

__all__ = ["roc_metrics", "roc_curve", "UndefinedMetricWarning"]

#: Score elements per block of rows in :func:`roc_metrics` (its temporaries: ~80 bytes each: 21 MB).
ROC_BLOCK_ELEMS = 1 << 18


class UndefinedMetricWarning(UserWarning):
    """A metric needs at least one scored member and one scored non-member; it is NaN."""


def _ranked(scores, members):
    """Sort each row by decreasing score: (key, pos, neg, tp, fp, last) [T, N], ``last`` marking
    the last element of each tie group (a ROC point); NaNs sort last and count for no side."""
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    members = np.asarray(members, bool)
    if s.ndim != 2 or s.shape != members.shape:
        raise ValueError(f"scores {s.shape} and members {members.shape} must both be [T, N]")
    valid = ~np.isnan(s)
    key = np.where(valid, s, -np.inf)  # NaNs join the last tie group but count for neither side
    order = np.argsort(-key, axis=1, kind="stable")
    key = np.take_along_axis(key, order, 1)
    pos = np.take_along_axis(members & valid, order, 1)
    neg = np.take_along_axis(~members & valid, order, 1)
    tp = np.cumsum(pos, 1, dtype=np.int64)
    fp = np.cumsum(neg, 1, dtype=np.int64)
    last = np.ones(key.shape, bool)
    last[:, :-1] = key[:, 1:] != key[:, :-1]
    return key, pos, neg, tp, fp, last


def _totals(tp, fp):
    """Scored members P and non-members Nn per row, [T, 1] int64."""
    T, N = tp.shape
    zero = np.zeros((T, 1), np.int64)
    return (tp[:, -1:] if N else zero), (fp[:, -1:] if N else zero)


def _rates(counts, total):
    """counts / total, NaN where total = 0 (an undefined rate)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, counts / np.maximum(total, 1), np.nan)


def _roc_block(scores, members, fprs):
    key, pos, neg, tp, fp, last = _ranked(scores, members)
    P, Nn = _totals(tp, fp)
    # TP count at the end of each element's tie group, and at the end of the previous group
    big = np.iinfo(np.int64).max
    tp_end = np.minimum.accumulate(np.where(last, tp, big)[:, ::-1], axis=1)[:, ::-1]
    ends = np.where(last, tp, 0)
    tp_prev = np.zeros_like(tp)
    tp_prev[:, 1:] = np.maximum.accumulate(ends, axis=1)[:, :-1]
    pairs = np.sum(np.where(neg, tp_prev + tp_end, 0), axis=1)
    defined = (P[:, 0] > 0) & (Nn[:, 0] > 0)
    auc = np.where(defined, pairs / (2.0 * np.maximum(P[:, 0] * Nn[:, 0], 1)), np.nan)
    tpr, fpr = tp / np.maximum(P, 1), fp / np.maximum(Nn, 1)
    out = np.full((len(fprs), tp.shape[0]), np.nan)
    for j, f in enumerate(fprs):
        best = np.max(np.where(last & (fpr <= f), tpr, 0.0), axis=1, initial=0.0)
        out[j] = np.where(defined, best, np.nan)
    return auc, out, P[:, 0], Nn[:, 0]


def roc_metrics(scores, members, fprs=(0.001, 0.01), *, return_counts=False,
                block_elems=ROC_BLOCK_ELEMS):
    """AUC [T] and TPR at each of ``fprs`` [len(fprs), T] for ``scores``/``members`` [T, N]
    (one row per target model): one argsort per row, then cumulative sums, no loop over rows
    (rows are processed in blocks of ``block_elems`` scores, so temporaries stay bounded).

    Rows without a scored (non-NaN) member or non-member get NaN. ``return_counts=True`` also
    returns the scored members and non-members per row (int64 [T] each).
    """
    s = np.asarray(scores)
    m = np.asarray(members, bool)
    if s.ndim != 2 or s.shape != m.shape:
        raise ValueError(f"scores {s.shape} and members {m.shape} must both be [T, N]")
    rows = max(1, block_elems // max(s.shape[1], 1))
    parts = [_roc_block(s[r:r + rows], m[r:r + rows], fprs) for r in range(0, s.shape[0], rows)]
    if not parts:
        parts = [_roc_block(s, m, fprs)]
    auc = np.concatenate([p[0] for p in parts])
    tprs = np.concatenate([p[1] for p in parts], axis=1)
    if return_counts:
        return auc, tprs, np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
    return auc, tprs


def warn_undefined(what, n_members, n_non_members, stacklevel=3):
    """The one warning of a single undefined metric (a curve or a number of one score vector)."""
    warnings.warn(
        f"{what} is undefined (NaN): it needs at least one scored member and one scored "
        f"non-member, got {n_members} members and {n_non_members} non-members with a non-NaN score",
        UndefinedMetricWarning, stacklevel=stacklevel + 1)


def roc_curve(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"]) -> tuple[
    Float[np.ndarray, " P"], Float[np.ndarray, " P"], Float[np.ndarray, " P"]
]:
    """ROC points (fpr, tpr, thresholds) of one score vector at every distinct score.

    Thresholds decrease; the first point is (0, 0) at threshold +inf; ties are one point, as in
    sklearn's ``roc_curve(..., drop_intermediate=False)``.

    Args:
      scores: [...] attack scores, higher = more likely a member; NaN = not scored (dropped).
      members: [...] bool, the true membership, of the shape of ``scores``.

    Returns:
      (fpr [P], tpr [P], thresholds [P]) float64, P = 1 + the distinct scored values. Without a
      scored member the TPRs are NaN, without a scored non-member the FPRs (with an
      :class:`UndefinedMetricWarning`).

    Raises:
      ValueError: ``scores`` and ``members`` differ in size.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    m = np.asarray(members, dtype=bool).ravel()
    if s.shape != m.shape:
        raise ValueError(f"scores {s.shape} and members {m.shape} differ in size")
    ok = ~np.isnan(s)
    key, _, _, tp, fp, last = _ranked(s[ok][None], m[ok][None])
    P, Nn = (int(c[0, 0]) for c in _totals(tp, fp))
    if not (P and Nn):
        warn_undefined("the ROC curve", P, Nn, stacklevel=2)
    pts = last[0]
    tpr = np.r_[0.0, _rates(tp[0][pts], P)]
    fpr = np.r_[0.0, _rates(fp[0][pts], Nn)]
    if not P:
        tpr[:] = np.nan
    if not Nn:
        fpr[:] = np.nan
    thresholds = np.r_[np.inf, key[0][pts]]
    return fpr, tpr, thresholds
