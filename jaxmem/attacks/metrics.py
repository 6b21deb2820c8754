"""Metrics of a membership-inference attack: ROC curve, AUC, TPR at low FPR.

Scores are "higher means more likely a member"; ``members`` is a boolean array of the same shape.
NaN scores are dropped (with their labels) before any metric is computed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_curve", "roc_auc", "tpr_at_fpr"]


def _clean(scores, members):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    members = np.asarray(members, dtype=bool).ravel()
    if scores.shape != members.shape:
        raise ValueError(f"scores {scores.shape} and members {members.shape} differ in size")
    ok = ~np.isnan(scores)
    return scores[ok], members[ok]


def roc_curve(scores, members):
    """ROC points (fpr, tpr, thresholds) at every distinct score, thresholds decreasing.

    The first point is (0, 0) at threshold +inf; ties are one point, as in sklearn.
    """
    s, m = _clean(scores, members)
    order = np.argsort(-s, kind="stable")
    s, m = s[order], m[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
    tps = np.cumsum(m)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(int(m.sum()), 1), max(int((~m).sum()), 1)
    tpr = np.r_[0.0, tps / P]
    fpr = np.r_[0.0, fps / N]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(scores, members):
    """Area under the ROC curve (trapezoidal, ties count one half): P(score_in > score_out)."""
    fpr, tpr, _ = roc_curve(scores, members)
    return float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))


def tpr_at_fpr(scores, members, fpr=0.001):
    """The largest TPR among ROC points whose FPR ≤ ``fpr`` (Carlini et al. 2022, Sec. III)."""
    f, t, _ = roc_curve(scores, members)
    return float(t[f <= fpr].max())
