"""Carlini et al. (2022, Fig. 9), Feldman & Zhang: highly memorized examples are the most
vulnerable to membership inference; per-example memorization tracks per-example LiRA power."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import audit, audit_spec, figure, memorization_of, run_signals, spearman, write_csv
from jaxmem.attacks.metrics import roc_auc


def analyze(cfg, workdir, runs, log):
    """Per example: memorization against LiRA's mean IN − OUT score gap and per-example AUC over
    targets; LiRA's power on the top 10% and bottom 50% memorized."""
    name, run = next(iter(runs.items()))
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    sig = run_signals(run, ["lira_online"])
    mem = memorization_of(keep, sig, ok)
    ev = audit(sig, keep, ok, audit_spec(run.config, ["lira_online"]))
    scores, members = ev.scores["lira_online"], ev.members
    gap = np.full(keep.shape[1], np.nan)
    per_auc = np.full(keep.shape[1], np.nan)
    for i in range(len(gap)):
        fin = np.isfinite(scores[:, i])
        mi = members[fin, i]
        if mi.any() and (~mi).any():
            gap[i] = scores[fin, i][mi].mean() - scores[fin, i][~mi].mean()
            per_auc[i] = roc_auc(scores[fin, i], mi)
    rho = spearman(mem.mem, gap)
    q = np.nanquantile(mem.mem, [0.5, 0.9])
    top, bottom = mem.mem >= q[1], mem.mem <= q[0]
    t_top = ev.table(top)["lira_online"]
    t_bot = ev.table(bottom)["lira_online"]

    def draw(ax):
        ax.scatter(mem.mem, gap, s=4, alpha=0.5)
        ax.set_xlabel("memorization")
        ax.set_ylabel("mean LiRA score IN − OUT")
        ax.set_title(f"Spearman ρ = {rho:.2f}")

    files = {"scatter": figure(workdir / "mem_vs_lira.png", draw),
             "per_example": write_csv(workdir / "per_example.csv", [
                 {"index": i, "mem": float(mem.mem[i]), "lira_gap": float(gap[i]),
                  "lira_auc": float(per_auc[i])} for i in range(len(gap))])}
    rows = [{"group": "top 10% memorized", **t_top}, {"group": "bottom 50% memorized", **t_bot},
            {"group": "all", **ev.table()["lira_online"]}]
    return {"rows": rows, "spearman_mem_vs_lira": rho,
            "spearman_mem_vs_lira_auc": spearman(mem.mem, per_auc),
            "auc_top10_mem": t_top["auc"], "auc_bottom50_mem": t_bot["auc"],
            "tpr_at_0.01_fpr_top10_mem": t_top["tpr_at_0.01_fpr"],
            "tpr_at_0.01_fpr_bottom50_mem": t_bot["tpr_at_0.01_fpr"],
            "num_targets": int(len(ev.targets)), "files": files}
