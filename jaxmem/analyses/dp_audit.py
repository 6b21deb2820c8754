"""DP audits of DP-SGD runs against the accountant (Jagielski et al. 2020; Nasr et al. 2023;
Steinke, Nasr & Jagielski 2023): per variant the accountant's ε (``dp-accounting``, in the run's
summary) beside empirical lower bounds at 95% confidence:

* many runs: each canary audited over the models (one trial per model: its IN/OUT bit), Clopper–
  Pearson and Gaussian DP, Bonferroni over the canaries of a kind;
* one run (Steinke et al. 2023, and its f-DP version, Mahloujifar et al. 2024): each target
  model's canaries are the trials, Bonferroni over the targets.

Canary kinds: ``mislabeled`` (``data.label_noise``'s flipped examples), the inserted canaries
(``data.canaries``, ``data.canary_kind``: ``random_input`` = input-space canaries, or
``random_label``), and ``all`` (every training example, one run only). The score is the loss
attack's (−loss of the example under the model alone), so the trials are independent: the run
must use the ``bernoulli`` design (a balanced design ties models' bits together; attacks with
shadows would tie trials through the shadows). :mod:`jaxmem.attacks.dp_audit` computes the bounds
(jax-privacy's auditor). Reuses :mod:`jaxmem.analyses.dp_sgd`'s rows (LiRA's AUC, the
per-target Clopper–Pearson bound of natural examples, accuracy) for the same runs.
"""

from __future__ import annotations

import math

import numpy as np

from jaxmem.analyses import dp_sgd
from jaxmem.analyses.common import id_mask, run_signals, write_csv
from jaxmem.attacks.dp_audit import epsilon_many_runs, epsilon_one_run

#: Most canaries audited over the runs per kind (the many-run audit of ``all`` is left out).
MANY_RUN_KINDS = ("mislabeled", "random_input", "random_label")


def canary_kinds(run) -> dict:
    """``{kind: bool [N]}``: the mislabeled examples, the inserted canaries (by their kind), all."""
    out = {}
    flipped = id_mask(run, "label_noise", "flipped_ids")
    if flipped.any():
        out["mislabeled"] = flipped
    ins = id_mask(run, "insert_canaries", "canary_ids")
    if ins.any():
        out[run.config.data.canary_kind] = ins
    out["all"] = np.ones(len(np.asarray(run.keep)[0]), bool)
    return out


def analyze(cfg, workdir, runs, log, alpha: float = 0.05):
    """Per variant and canary kind: the accountant's ε, the many-run bounds (Clopper–Pearson,
    GDP) and the one-run bounds (Steinke et al.; f-DP), each with its tightness (bound / ε)."""
    base = {r["variant"]: r for r in dp_sgd.analyze(cfg, workdir, runs, log)["rows"]}
    rows = []
    for name, run in runs.items():
        c = run.config
        if c.subsets.design.name != "bernoulli":
            raise ValueError(f"dp_audit: variant {name!r} has subsets.design = {c.subsets.design.name!r}; "
                             "the audit's trials are independent only with 'bernoulli'")
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        sig = run_signals(run, ["loss"])
        loss = np.asarray(sig["loss"], np.float64)
        score = -(loss.mean(-1) if loss.ndim == 3 else loss)
        score[~ok] = np.nan
        eps = base[name]["epsilon"]
        delta = c.train.dp.delta
        targets = np.flatnonzero(ok)[: (cfg.scoring.targets or 4)]
        for kind, sel in canary_kinds(run).items():
            row = {"variant": name, "kind": kind, "canaries": int(sel.sum()),
                   "epsilon": eps, "delta": delta, "models": int(ok.sum()),
                   "one_run_targets": int(targets.size)}
            one = epsilon_one_run(score[targets][:, sel], keep[targets][:, sel], alpha=alpha, delta=delta)
            for m, v in one.items():
                row[f"{m}"] = v["epsilon"]
                row[f"{m}_targets_median"] = float(np.nanmedian(v["per_target"]))
            if kind in MANY_RUN_KINDS:
                many = epsilon_many_runs(score[ok][:, sel], keep[ok][:, sel], alpha=alpha, delta=delta)
                for m, v in many.items():
                    row[f"many_{m}"] = v["epsilon"]
            for k in [k for k in list(row) if k in ("one_run", "one_run_fdp", "many_clopper_pearson",
                                                    "many_gdp")]:
                row[f"{k}_tightness"] = (row[k] / eps if eps and math.isfinite(eps) and eps > 0
                                         else None)
            row.update({"test_accuracy": base[name]["test_accuracy"], "lira_auc": base[name]["auc"],
                        "natural_cp_per_target": base[name]["epsilon_lower_bound"]})
            rows.append(row)
            log(f"  {name} {kind}: accountant {eps}, one run {row.get('one_run'):.3g}, "
                f"many runs CP {row.get('many_clopper_pearson', float('nan')):.3g}")
    files = {"audit": write_csv(workdir / "dp_audit.csv", rows)}
    return {"rows": rows, "audit": rows, "dp": list(base.values()), "files": files}
