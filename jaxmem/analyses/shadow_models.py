"""Carlini et al. (2022): LiRA dominates loss/Shokri at low FPR and improves with more shadows;
fixed variance helps with few shadows; RMIA (Zarifzadeh et al. 2024) is strong with few."""

from __future__ import annotations

import time

import numpy as np

from jaxmem.analyses.common import ANALYSIS_TARGETS, audit, audit_spec, figure, rmia_tuning, run_signals, write_csv
from jaxmem.attacks.plot import plot_roc

#: The attacks compared, by their registry names.
ATTACKS = ("loss", "shokri", "lira_online", "lira_offline", "lira_online_fixed_variance",
           "lira_offline_fixed_variance", "rmia_offline", "rmia_online", "rmia_online_research")


def shadow_counts(m: int) -> list:
    """Nested shadow-set sizes 4, 8, ... below ``m`` usable models, and all of them (m − 1)."""
    top = m - 1
    return sorted({c for c in (4, 8, 16, 32, 64, 128, 256) if c < top} | {top})


def analyze(cfg, workdir, runs, log):
    """One trained run scored with nested subsets of its models as shadows (4, 8, ..., M − 1):
    every attack's AUC and TPRs at each count; the ROC curves with all shadows."""
    name, run = next(iter(runs.items()))
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    sig = run_signals(run, ATTACKS)
    by_count, last = [], None
    for c in shadow_counts(int(ok.sum())):
        t0 = time.time()
        ev = audit(sig, keep, ok, audit_spec(run.config, ATTACKS, num_shadows=c,
                                             default_targets=ANALYSIS_TARGETS))
        for a, m in ev.table().items():
            by_count.append({"shadows": c, "attack": a, **m, "rmia_tuning": rmia_tuning(ev, a)})
        log(f"  shadows={c}: scored in {time.time() - t0:.1f} s")
        last = ev
    attacks, targets = last.table(), np.asarray(last.targets)
    files = {"roc": str(plot_roc(last.curves(), workdir / "roc.png",
                                 title=f"{len(targets)} targets, "
                                       f"{shadow_counts(int(ok.sum()))[-1]} shadows"))}

    def draw(ax):
        for a in ATTACKS:
            r = [x for x in by_count if x["attack"] == a]
            ax.plot([x["shadows"] for x in r], [x["tpr_at_0.01_fpr"] for x in r], "o-", label=a)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shadow models")
        ax.set_ylabel("TPR at 1% FPR")
        ax.legend(fontsize=6)

    files["tpr_vs_shadows"] = figure(workdir / "tpr_vs_shadows.png", draw)
    files["by_shadow_count"] = write_csv(workdir / "by_shadow_count.csv", by_count)
    rows = [{"attack": a, **{k: v for k, v in m.items() if k != "auc_std"}} for a, m in attacks.items()]
    return {"rows": rows, "attacks": attacks, "by_shadow_count": by_count,
            "targets": targets.tolist(), "files": files}
