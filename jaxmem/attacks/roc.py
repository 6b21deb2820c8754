"""The one ROC implementation: every ROC curve, AUC and TPR at a fixed FPR in jaxmem comes from
:func:`_ranked` (metrics of one attack, :func:`jaxmem.attacks.evaluate`'s batched metrics over
targets, a run's ROC figure).

Conventions (sklearn's): NaN scores are dropped (they count for neither side); tied scores form one
ROC point, found by equality of the sorted scores (so ±inf ties are ties: inf − inf is not used);
the AUC is the trapezoid through the ROC points, computed exactly as
P(s_in > s_out) + ½ P(tie) from integer counts; TPR@FPR is the largest TPR among ROC points with
FPR ≤ the given value (Carlini et al. 2022, Sec. III). With no member (or no non-member) the
rates divide by 1, as before (issue #11 decides what an undefined metric reports).
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_metrics", "roc_curve"]


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
    T, N = tp.shape
    P = np.maximum(tp[:, -1:] if N else np.zeros((T, 1), np.int64), 1).astype(np.float64)
    Nn = np.maximum(fp[:, -1:] if N else np.zeros((T, 1), np.int64), 1).astype(np.float64)
    return P, Nn


def roc_metrics(scores, members, fprs=(0.001, 0.01)):
    """AUC [T] and TPR at each of ``fprs`` [len(fprs), T] for ``scores``/``members`` [T, N]
    (one row per target model): one argsort per row, then cumulative sums, no loop over rows."""
    key, pos, neg, tp, fp, last = _ranked(scores, members)
    P, Nn = _totals(tp, fp)
    # TP count at the end of each element's tie group, and at the end of the previous group
    big = np.iinfo(np.int64).max
    tp_end = np.minimum.accumulate(np.where(last, tp, big)[:, ::-1], axis=1)[:, ::-1]
    ends = np.where(last, tp, 0)
    tp_prev = np.zeros_like(tp)
    tp_prev[:, 1:] = np.maximum.accumulate(ends, axis=1)[:, :-1]
    auc = np.sum(np.where(neg, tp_prev + tp_end, 0), axis=1) / (2.0 * P[:, 0] * Nn[:, 0])
    tpr, fpr = tp / P, fp / Nn
    out = np.zeros((len(fprs), tp.shape[0]))
    for j, f in enumerate(fprs):
        out[j] = np.max(np.where(last & (fpr <= f), tpr, 0.0), axis=1, initial=0.0)
    return auc, out


def roc_curve(scores, members):
    """ROC points (fpr, tpr, thresholds) of one score vector at every distinct score, thresholds
    decreasing. The first point is (0, 0) at threshold +inf; ties are one point, as in sklearn."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    m = np.asarray(members, dtype=bool).ravel()
    if s.shape != m.shape:
        raise ValueError(f"scores {s.shape} and members {m.shape} differ in size")
    ok = ~np.isnan(s)
    key, _, _, tp, fp, last = _ranked(s[ok][None], m[ok][None])
    P, Nn = _totals(tp, fp)
    pts = last[0]
    tpr = np.r_[0.0, tp[0][pts] / P[0, 0]]
    fpr = np.r_[0.0, fp[0][pts] / Nn[0, 0]]
    thresholds = np.r_[np.inf, key[0][pts]]
    return fpr, tpr, thresholds
