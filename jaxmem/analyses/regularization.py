"""Regularizers reduce the train-test gap but only partly reduce memorization and attack power
(Carlini et al. 2022; Tobaben et al.); early stopping trades accuracy for less memorization."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import figure, sweep_rows, write_csv


def analyze(cfg, workdir, runs, log):
    """Per variant: the regularizer's settings, the train-test gap, memorization, LiRA power."""
    def extra(name, run, sig, mem, c):
        t = c.train
        return {"weight_decay": t.weight_decay, "dropout": getattr(c.model, "dropout", 0.0), "augment": t.augment,
                "epochs": t.epochs}

    rows = sweep_rows(cfg, runs, extra)
    for r in rows:
        r["gap"] = r["train_accuracy"] - r["test_accuracy"]

    def draw(ax):
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["mem_mean"] for r in rows], 0.4, label="mean memorization")
        ax.bar(x + 0.2, [r["auc"] - 0.5 for r in rows], 0.4, label="LiRA AUC − 0.5")
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, fontsize=7)
        ax.legend(fontsize=7)

    files = {"regularization": figure(workdir / "regularization.png", draw),
             "table": write_csv(workdir / "regularization.csv", rows)}
    return {"rows": rows, "files": files}
