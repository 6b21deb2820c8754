"""Membership inference on language models with ground-truth membership: reference-free attacks
(loss, zlib, Min-K%, Min-K%++) against reference-based ones (the OUT references' mean NLL, LiRA
with the other models as shadows) on the same models, every model the target in turn. The
members and non-members are random halves of one corpus, so no distribution shift between
them inflates the result (the remedy Duan et al. 2024 and Meeus et al. 2024 ask for). Variants
train longer; planted duplicates give texts seen 1..C times per epoch."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import figure, write_csv
from jaxmem.analyses.lm_common import texts
from jaxmem.attacks import evaluate
from jaxmem.attacks.plot import plot_roc
from jaxmem.attacks.registry import get
from jaxmem.runs.score_lm import lm_attacks, lm_audit_spec, per_text_signals

#: Attacks that need no other model (scored from the target's own outputs). Reference-based:
#: reference_out (alias reference: the target's OUT models), reference_model (an external model's
#: NLL, scoring.reference_nll), LiRA.
REFERENCE_FREE = ("loss", "zlib", "min_k", "min_k_plus_plus")


def _evaluate(run, spec, tg):
    """Every attack of ``spec`` on the texts ``tg`` (copies merged), as the run's own scoring
    (:func:`jaxmem.runs.score_lm.lm_audit_spec`: the same spec, targets and warnings policy)."""
    keep, ok = np.asarray(run.keep, bool)[:, tg.first], ~np.asarray(run.diverged, bool)
    sig = per_text_signals(run, sorted({n for a in spec.attacks for n in get(a).needs}), tg)
    return evaluate(sig, keep, spec=spec, model_mask=ok)


def analyze(cfg, workdir, runs, log):
    """Per variant and attack: AUC and TPR at 0.1% / 1% FPR (means over every usable model as the
    target), overall and by a text's number of copies (each text once: its first row); the log-log
    ROC of the last variant."""
    attacks = lm_attacks(cfg)         # (the run's own: reference_model too when its NLL is given)
    rows, dup_rows, last, units = [], [], None, {}
    for name, run in runs.items():
        tg = texts(run)
        units[name] = tg.unit()
        ev = _evaluate(run, lm_audit_spec(run.config), tg)   # the run's own spec (and targets)
        facts = run.text
        planted = np.asarray(facts["planted_count"])[tg.first]
        dup = np.asarray(facts["duplicate_count"])[tg.first]
        first = np.ones(tg.num_texts, bool)      # (the evaluation is per text already)
        for a, m in ev.table(first).items():
            rows.append({"variant": name, "epochs": run.config.train.epochs, "attack": a,
                         "kind": "reference-free" if a in REFERENCE_FREE else "reference-based", **m})
        buckets = [("unique (natural)", first & (planted == 0) & (dup == 1))]
        buckets += [(f"planted x{c}", first & (planted == c)) for c in sorted(set(planted[planted > 0]))]
        for label, sel in buckets:
            for a, m in ev.table(sel).items():
                dup_rows.append({"variant": name, "copies": label, "texts": int(sel.sum()), "attack": a,
                                 "auc": m["auc"], "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"]})
        last = (name, ev, first)
    files = {"attacks": write_csv(workdir / "attacks.csv", rows),
             "by_copies": write_csv(workdir / "attacks_by_copies.csv", dup_rows)}
    if last is not None:
        name, ev, first = last
        sub = type(ev)(targets=ev.targets, metrics=ev.metrics, scores={a: s[:, first] for a, s in ev.scores.items()},
                       members=ev.members[:, first])
        files["roc"] = plot_roc(sub.curves(), workdir / "roc.png", title=f"{name}: every model the target")

        def draw(ax):
            for a in attacks:
                pts = [r for r in dup_rows if r["variant"] == name and r["attack"] == a and r["copies"] != "unique (natural)"]
                ax.plot([int(r["copies"].split("x")[1]) for r in pts], [r["auc"] for r in pts], marker="o", ms=3,
                        ls="--" if a in REFERENCE_FREE else "-", label=a)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("copies of the text (planted)")
            ax.set_ylabel("AUC over targets")
            ax.legend(fontsize=6)

        if any(r["copies"] != "unique (natural)" for r in dup_rows):
            files["auc_vs_copies"] = figure(workdir / "auc_vs_copies.png", draw)
    best = {}
    for name in runs:
        for kind in ("reference-free", "reference-based"):
            rs = [r for r in rows if r["variant"] == name and r["kind"] == kind]
            if rs:
                top = max(rs, key=lambda r: np.nan_to_num(r["tpr_at_0.001_fpr"], nan=-1))
                best[f"{name}/{kind}"] = {"attack": top["attack"], "auc": top["auc"],
                                          "tpr_at_0.001_fpr": top["tpr_at_0.001_fpr"],
                                          "tpr_at_0.01_fpr": top["tpr_at_0.01_fpr"]}
    return {"rows": [{k: r[k] for k in ("variant", "attack", "kind", "auc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr")}
                     for r in rows],
            "attacks": rows, "by_copies": dup_rows, "best_at_low_fpr": best, "unit": units, "files": files}
