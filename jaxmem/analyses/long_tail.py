"""Feldman (2020): examples of rare subpopulations must be memorized to be fit; they are more
memorized and more exposed to membership inference than frequent ones."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import ANALYSIS_TARGETS, audit, audit_spec, id_mask, nanmean, sweep_rows, write_csv


def analyze(cfg, workdir, runs, log):
    """Per variant: memorization, LiRA AUC and test accuracy of the rare and frequent groups."""
    def extra(name, run, sig, mem, c):
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        rare = id_mask(run, "long_tail", "rare_ids")
        ev = audit(sig, keep, ok, audit_spec(c, ["lira_online"], default_targets=ANALYSIS_TARGETS))
        out = {"num_rare": int(rare.sum())}
        if rare.any():
            ty = np.asarray(run.test_labels)
            rare_cls = np.isin(ty, c.data.long_tail_classes)
            acc = sig["correct_pop"][ok]
            out.update({"mem_rare": nanmean(mem.mem[rare]), "mem_frequent": nanmean(mem.mem[~rare]),
                        "auc_rare": ev.table(rare)["lira_online"]["auc"],
                        "auc_frequent": ev.table(~rare)["lira_online"]["auc"],
                        "test_accuracy_rare_classes": float(acc[:, rare_cls].mean()),
                        "test_accuracy_frequent_classes": float(acc[:, ~rare_cls].mean())})
        return out

    rows = sweep_rows(cfg, runs, extra)
    files = {"table": write_csv(workdir / "long_tail.csv", rows)}
    main = next((r for r in rows if r.get("num_rare")), rows[0])
    return {"rows": rows, **{k: main.get(k) for k in ("mem_rare", "mem_frequent", "auc_rare",
                                                       "auc_frequent")}, "files": files}
