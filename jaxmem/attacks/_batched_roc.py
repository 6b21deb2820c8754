"""ROC-AUC and TPR at fixed FPRs for many score vectors at once (one row per target model).

Agrees exactly with :mod:`jaxmem.attacks.metrics` (and sklearn): NaN scores are dropped, ties form
one ROC point, the AUC is the trapezoid through the ROC points (= P(s_in > s_out) + ½ P(tie)),
and TPR@FPR is the largest TPR among ROC points with FPR ≤ the given value. One argsort per row,
then cumulative sums; no Python loop over rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["batched_roc_metrics"]


def batched_roc_metrics(scores, members, fprs=(0.001, 0.01)):
    """AUC [T] and TPR at each of ``fprs`` [len(fprs), T] for ``scores``/``members`` [T, N]."""
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    members = np.asarray(members, bool)
    if s.ndim != 2 or s.shape != members.shape:
        raise ValueError(f"scores {s.shape} and members {members.shape} must both be [T, N]")
    T, N = s.shape
    valid = ~np.isnan(s)
    key = np.where(valid, s, -np.inf)  # NaNs join the last tie group but count for neither side
    order = np.argsort(-key, axis=1, kind="stable")
    key = np.take_along_axis(key, order, 1)
    pos = np.take_along_axis(members & valid, order, 1)
    neg = np.take_along_axis(~members & valid, order, 1)
    tp = np.cumsum(pos, 1, dtype=np.int64)
    fp = np.cumsum(neg, 1, dtype=np.int64)
    last = np.ones((T, N), bool)  # last element of its tie group: a ROC point
    last[:, :-1] = key[:, 1:] != key[:, :-1]
    P = np.maximum(tp[:, -1:] if N else np.zeros((T, 1), np.int64), 1).astype(np.float64)
    Nn = np.maximum(fp[:, -1:] if N else np.zeros((T, 1), np.int64), 1).astype(np.float64)
    # TP count at the end of each element's tie group, and at the end of the previous group
    big = np.iinfo(np.int64).max
    tp_end = np.minimum.accumulate(np.where(last, tp, big)[:, ::-1], axis=1)[:, ::-1]
    ends = np.where(last, tp, 0)
    tp_prev = np.zeros_like(tp)
    tp_prev[:, 1:] = np.maximum.accumulate(ends, axis=1)[:, :-1]
    auc = np.sum(np.where(neg, tp_prev + tp_end, 0), axis=1) / (2.0 * P[:, 0] * Nn[:, 0])
    tpr, fpr = tp / P, fp / Nn
    out = np.stack([np.max(np.where(last & (fpr <= f), tpr, 0.0), axis=1, initial=0.0) for f in fprs])
    return auc, out
