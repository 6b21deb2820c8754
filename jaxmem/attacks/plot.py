"""Log-log ROC plots of membership-inference attacks (as Carlini et al. 2022, Fig. 1), averaged
over target models. matplotlib is imported lazily and drawn with the Agg canvas (no pyplot)."""

from __future__ import annotations

import os

import numpy as np

from jaxmem.io import atomic_path

__all__ = ["FPR_GRID", "tpr_on_grid", "mean_roc", "plot_roc", "lowest_fpr", "roc_figure"]

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


def lowest_fpr(curves) -> float:
    """The lowest FPR every target's ROC curve can resolve: the largest over targets of its
    smallest positive FPR (1 / its number of non-members, unless they tie at the top)."""
    lows = [float(np.min(np.asarray(f)[np.asarray(f) > 0])) for cs in curves.values()
            for f, _ in cs if np.any(np.asarray(f) > 0)]
    return max(lows) if lows else float(FPR_GRID[0])


def plot_roc(curves, path, *, title=None, grid=FPR_GRID):
    """Write :func:`roc_figure` of ``curves`` as a PNG, atomically
    (:func:`jaxmem.io.atomic_path`, with a new file's usual mode). Returns ``path`` as a str."""
    fig = roc_figure(curves, title=title, grid=grid)
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return os.fspath(path)


def roc_figure(curves, *, title=None, grid=FPR_GRID):
    """A log-log ROC plot (a matplotlib ``Figure``) of each attack's mean curve over targets.

    ``curves``: {attack name: [(fpr, tpr), ...] one per target model}. The curves stop at the
    lowest FPR all targets can measure (:func:`lowest_fpr`: below 1 / the number of
    non-members a target's TPR is not measured, only bounded), and the axis label says over how
    many targets they are averaged. The legend, below the axes (clear of the curves), gives the
    mean AUC and mean TPR at 0.1% FPR.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: the global backend is left alone

    # the legend goes below the axes: in a log-log ROC the curves fill the lower left (the
    # low-FPR end, the part that matters) and the upper right, so no corner inside is free
    fig = Figure(figsize=(4.5, 4 + 0.15 * len(curves)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    low = max(lowest_fpr(curves), float(grid[0]))
    g = np.asarray(grid)[np.asarray(grid) >= low * (1 - 1e-12)]
    targets = sorted({len(cs) for cs in curves.values()})
    for name, cs in curves.items():
        t, auc, tpr_low = mean_roc(cs, g)
        ax.plot(g, np.maximum(t, low), label=f"{name}  AUC={auc:.3f}  TPR@0.1%={tpr_low:.3f}")
    ax.plot([low, 1], [low, 1], ls="--", color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1)
    n = "/".join(map(str, targets))
    ax.set_xlabel(f"False positive rate (from {low:.1e}, the lowest measurable)", fontsize=8)
    ax.set_ylabel(f"True positive rate (mean over {n} target{'s' if targets != [1] else ''})",
                  fontsize=8)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    return fig
