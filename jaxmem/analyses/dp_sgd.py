"""Abadi et al. (2016) DP-SGD bounds membership inference; audits (Jagielski et al. 2020) give
empirical ε lower bounds far below the proven ε, and cost accuracy."""

from __future__ import annotations

import math

import numpy as np

from jaxmem.analyses.common import ANALYSIS_TARGETS, audit, audit_spec, common_row, memorization_of, run_signals
from jaxmem.attacks.metrics import epsilon_lower_bound
from jaxmem.attacks.plot import plot_roc


def analyze(cfg, workdir, runs, log):
    """Per variant: the accountant's ε, LiRA online's AUC / TPRs, the audit's ε lower bound
    (Clopper–Pearson, Bonferroni over targets), the loss attack's AUC, accuracy."""
    rows, roc = [], {}
    for name, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        sig = run_signals(run, ["lira_online", "loss"])
        mem = memorization_of(keep, sig, ok)
        ev = audit(sig, keep, ok, audit_spec(run.config, ["lira_online", "loss"],
                                             default_targets=ANALYSIS_TARGETS))
        targets = ev.targets
        table = ev.table()
        m = table["lira_online"]
        c = run.config
        eps = run.summary.get("dp", {}).get("epsilon") if c.train.dp.enabled else None
        # Bonferroni over targets: the max of T bounds at level alpha/T is a valid alpha bound.
        # (a target without a scored member or non-member has no bound: NaN, left out)
        lb = max((b for row, mb in zip(ev.scores["lira_online"], ev.members)
                  if (b := epsilon_lower_bound(row[np.isfinite(row)], mb[np.isfinite(row)],
                                               alpha=0.05 / len(targets))) == b), default=float("nan"))
        row = common_row(name, keep, ok, sig, mem)
        row.update({"epsilon": None if eps is None or not math.isfinite(eps) else float(eps),
                    "noise_multiplier": c.train.dp.noise_multiplier if c.train.dp.enabled else None,
                    "auc": m["auc"], "tpr_at_0.001_fpr": m["tpr_at_0.001_fpr"],
                    "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"], "n_targets": m["n_targets"],
                    "epsilon_lower_bound": lb,
                    "loss_attack_auc": table["loss"]["auc"]})
        rows.append(row)
        roc[f"{name} lira_online"] = ev.curves().get("lira_online", [])
    files = {"roc": plot_roc({k: v for k, v in roc.items() if v}, workdir / "roc.png",
                             title="LiRA online vs DP-SGD")}
    return {"rows": rows, "dp": rows, "files": {k: str(v) for k, v in files.items()}}
