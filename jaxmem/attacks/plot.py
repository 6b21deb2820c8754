"""Log-log ROC plots of membership-inference attacks (as Carlini et al. 2022, Fig. 1), averaged
over target models. matplotlib is imported lazily and drawn with the Agg canvas (no pyplot)."""

from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = ["FPR_GRID", "tpr_on_grid", "mean_roc", "plot_roc"]

#: Common log-spaced FPR grid, 1e-5 … 1 (the LiRA reference plot's axis range).
FPR_GRID = np.logspace(-5, 0, 251)


def tpr_on_grid(fpr, tpr, grid=FPR_GRID):
    """TPR of one ROC curve at each grid FPR: the largest TPR among points with FPR ≤ g.

    The same step rule as ``metrics.tpr_at_fpr`` (a threshold attack cannot interpolate without
    randomizing), so the mean curve at 1e-3 is the mean TPR@0.1%.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    order = np.argsort(fpr, kind="stable")
    f, t = fpr[order], np.maximum.accumulate(tpr[order])
    idx = np.searchsorted(f, np.asarray(grid, dtype=np.float64), side="right") - 1
    return np.where(idx >= 0, t[np.maximum(idx, 0)], 0.0)


def _auc(fpr, tpr):
    order = np.argsort(fpr, kind="stable")
    f, t = np.asarray(fpr, float)[order], np.asarray(tpr, float)[order]
    return float(np.sum(np.diff(f) * (t[1:] + t[:-1]) / 2))


def mean_roc(curves, grid=FPR_GRID):
    """Mean over targets of (TPR on ``grid``, AUC, TPR@0.1% FPR) for a list of (fpr, tpr) curves."""
    if len(curves) == 0:
        raise ValueError("no curves")
    tprs = np.stack([tpr_on_grid(f, t, grid) for f, t in curves])
    auc = float(np.mean([_auc(f, t) for f, t in curves]))
    low = float(np.mean([tpr_on_grid(f, t, [1e-3])[0] for f, t in curves]))
    return tprs.mean(0), auc, low


def plot_roc(curves, path, *, title=None, grid=FPR_GRID):
    """Write a log-log ROC plot (PNG) of each attack's mean curve over targets.

    ``curves``: {attack name: [(fpr, tpr), ...] one per target model}. The legend gives the mean
    AUC and mean TPR at 0.1% FPR. The file is written to a temporary name, then os.replace'd.
    Returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the global backend is left alone

    fig = Figure(figsize=(4.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, cs in curves.items():
        t, auc, low = mean_roc(cs, grid)
        ax.plot(grid, np.maximum(t, 1e-5), label=f"{name}  AUC={auc:.3f}  TPR@0.1%={low:.3f}")
    ax.plot([1e-5, 1], [1e-5, 1], ls="--", color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".png.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=150)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
