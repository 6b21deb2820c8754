"""Figures of examples that the analyses write and the reports show (public, so that a notebook
can draw them too): a grid of training inputs with titles, the most and least memorized examples.
They sit in the analyses, below :mod:`jaxmem.report` (which renders what the analyses wrote and
draws a run's most memorized examples with :func:`plot_examples`). matplotlib is imported only
when a figure is drawn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from jaxmem.io import atomic_path

__all__ = ["new_figure", "plot_examples", "plot_memorization_extremes"]


def new_figure(size=(5, 3.5), rows=1, cols=1):
    """A matplotlib ``Figure`` (Agg canvas: no display needed) and its [rows, cols] axes.

    Args:
      size: (width, height) in inches.
      rows, cols: the grid of axes.

    Returns:
      (figure, axes): axes a [rows, cols] object array (``squeeze=False``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib: optional, heavy
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def plot_examples(inputs, titles, cols: int = 8, path=None):
    """A grid of training inputs with a title each; returns the matplotlib ``Figure`` (and
    writes it as PNG to ``path`` when given). ``inputs`` [K, H, W(, C)] images (grayscale when
    C = 1; colour images are scaled to [0, 1] each) or [K, D] vectors (drawn as lines)."""
    x = np.asarray(inputs)
    k = len(x)
    rows = max(1, int(math.ceil(k / cols)))
    fig, axes = new_figure((1.6 * cols, 1.9 * rows), rows, cols)
    for ax in axes.ravel():
        ax.axis("off")
    for j in range(k):
        ax, xi = axes.ravel()[j], x[j]
        if xi.ndim == 3 and xi.shape[-1] == 1:
            ax.imshow(xi[..., 0], cmap="gray")
        elif xi.ndim == 3:
            ax.imshow((xi - xi.min()) / max(np.ptp(xi), 1e-9))
        elif xi.ndim == 2:
            ax.imshow(xi, cmap="gray")
        else:
            ax.plot(np.ravel(xi), lw=0.8)
        ax.set_title(titles[j], fontsize=7)
    fig.tight_layout()
    if path is not None:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return fig


def plot_memorization_extremes(inputs, labels, mem, *, stderr=None, predicted=None,
                               class_names=None, flagged=None, ids=None, k: int = 32,
                               cols: int = 8, path=None):
    """The ``k`` most and ``k`` least memorized training examples (Feldman & Zhang 2020, Fig. 2:
    the most memorized look atypical or mislabeled), as two grids of images, each titled with
    its memorization (± its standard error), its given label and, when given, the label the
    models that did not train on it predict.

    Args:
      inputs: [N, H, W(, C)] images (or [N, D] vectors) of the training set.
      labels: [N] int given labels; ``class_names`` maps them to names (default: the numbers).
      mem: [N] float Feldman-Zhang memorization (NaN where undefined: never shown).
      stderr: [N] its standard error; predicted: [N] int the OUT models' majority label.
      flagged: [N] bool examples to mark with a star in their title (e.g. flipped labels).
      ids: [N] example ids to print (default: the row index).
      k: examples per grid (fewer when fewer have a finite memorization).

    Returns:
      (figure of the most memorized, figure of the least memorized, the [k] row indices of each,
      most memorized first / least memorized first); each figure is written to ``path`` with
      ``_most`` / ``_least`` before the suffix when ``path`` is given. Ties keep row order.
    """
    mem = np.asarray(mem, float)
    rows = np.flatnonzero(np.isfinite(mem))
    order = rows[np.argsort(-mem[rows], kind="stable")]
    most = order[:k]
    least = rows[np.argsort(mem[rows], kind="stable")][:k]
    labels = np.asarray(labels)
    name = (lambda c: str(class_names[int(c)])) if class_names is not None else (lambda c: str(int(c)))

    def title(i):
        t = f"{'* ' if flagged is not None and flagged[i] else ''}" \
            f"id {int(ids[i]) if ids is not None else int(i)}  mem {mem[i]:.2f}"
        if stderr is not None:
            t += f"±{float(stderr[i]):.2f}"
        t += f"\n{name(labels[i])}"
        if predicted is not None and int(predicted[i]) >= 0:
            t += f" / out: {name(predicted[i])}"
        return t

    figs = []
    for sel, tag in ((most, "most"), (least, "least")):
        p = None
        if path is not None:
            p = Path(path)
            p = p.with_name(f"{p.stem}_{tag}{p.suffix or '.png'}")
        figs.append(plot_examples(np.asarray(inputs)[sel], [title(i) for i in sel], cols=cols,
                                  path=p))
    return figs[0], figs[1], most, least
