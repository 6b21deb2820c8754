"""Figures of a run's stored results, public so that a notebook can draw what the report shows:
the most memorized training examples with their given and predicted labels (drawn by
:func:`jaxmem.analyses.figures.plot_examples`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from jaxmem.analyses.figures import plot_examples

__all__ = ["plot_most_memorized"]


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
