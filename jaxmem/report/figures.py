"""Figures of a run's stored results, public so that a notebook can draw what the report shows:
the most memorized training examples with their given and predicted labels."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

__all__ = ["plot_examples", "plot_most_memorized"]


def plot_examples(inputs, titles, cols: int = 8, path=None):
    """A grid of training inputs with a title each; returns the matplotlib ``Figure`` (and
    writes it as PNG to ``path`` when given). ``inputs`` [K, H, W(, C)] images (grayscale when
    C = 1; colour images are scaled to [0, 1] each) or [K, D] vectors (drawn as lines)."""
    from jaxmem.report.html import new_figure

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
        from jaxmem.io import atomic_path

        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return fig


def plot_most_memorized(workdir, path=None, cols: int = 8):
    """The most memorized training examples of a scored run (``results/examples.csv`` and
    ``results/examples_inputs.npy``), each titled with its id, memorization, given label and the
    label predicted by the models that did not train on it. Returns the ``Figure``; raises
    FileNotFoundError when the run was scored without its inputs at hand."""
    res = Path(workdir) / "results"
    with open(res / "examples.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    x = np.load(res / "examples_inputs.npy", allow_pickle=False)
    titles = [f"id {r['example_id']}  mem {float(r['mem']):.2f}\n"
              f"given {r['label']}  pred {r['predicted_out_majority']}" for r in rows]
    return plot_examples(x[: len(rows)], titles, cols=cols, path=path)
