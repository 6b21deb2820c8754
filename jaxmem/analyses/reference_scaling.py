"""Hayes et al. (2025): attack strength against the number of reference models, RMIA against its
population size, and the decision stability of each attack over target replicas.

A run of the ``replica`` design (:func:`jaxmem.subsets.replica_keep`): R target replicas trained
on the same half of the data with different seeds, then reference models on random halves. Each
replica is attacked with ONLY the references as shadows (the other replicas saw the same data), a
random subset of c of them for c = 1, 2, 4, ..., all (a different subset per replica); intervals
are over the R replicas (Student t, 95%), so they hold both the seed's and the references' draw.
RMIA's population (the test set) is cut to its first |Z| points. Decision stability
(:func:`jaxmem.attacks.stability.decision_stability`) reads the R replicas' scores with all
references. Images read the logits' signals; language models their sequences' NLL (``phi`` =
−NLL; RMIA's ``p`` = exp(−NLL), the geometric mean of the tokens' probabilities; its population
the held-out sequences).
"""

from __future__ import annotations

import time

import numpy as np

from jaxmem.analyses.common import audit, audit_spec, figure, rmia_tuning, run_signals, write_csv
from jaxmem.attacks.metrics import roc_auc, tpr_at_fpr
from jaxmem.attacks.relative_membership import tune_rmia_a
from jaxmem.attacks.stability import decision_stability

#: The attacks compared, by their registry names.
ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed_variance", "lira_offline_fixed_variance",
           "rmia_offline", "rmia_online")
#: FPRs of the TPRs and of the decision-stability thresholds.
FPRS = (0.001, 0.01, 0.1)


def reference_counts(n: int) -> list:
    """1, 2, 4, ... below ``n`` references, and ``n``."""
    return sorted({c for c in (2 ** j for j in range(20)) if c < n} | {n})


def t_interval(x) -> tuple:
    """Mean and 95% Student-t interval over the finite entries (NaNs when fewer than 2)."""
    from scipy.stats import t

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        m = float(x.mean()) if x.size else float("nan")
        return m, float("nan"), float("nan")
    h = float(t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return float(x.mean()), float(x.mean() - h), float(x.mean() + h)


def lm_rmia_signals(run) -> dict:
    """A language-model run's sequence signals for LiRA and RMIA (see the module docstring)."""
    nll = np.asarray(run.array("nll"), np.float64)
    test = np.asarray(run.array("test_nll"), np.float64)
    return {"phi": -nll[..., None], "loss": nll, "p": np.exp(-nll), "p_pop": np.exp(-test)}


def _signals(run, attacks):
    if run.is_lm:
        return lm_rmia_signals(run), None
    sig = run_signals(run, attacks)
    return {k: np.asarray(sig[k]) for k in sig.keys()}, np.asarray(run.labels)


def _per_target(ev, attacks, fprs):
    """{attack: {"auc", "tpr_at_f_fpr"...}} of the single target of ``ev``."""
    out = {}
    for a in attacks:
        s, mb = ev.scores[a][0], ev.members[0]
        ok = np.isfinite(s)
        if not (ok & mb).any() or not (ok & ~mb).any():
            out[a] = {"auc": float("nan"), **{f"tpr_at_{f}_fpr": float("nan") for f in fprs},
                      "scored_fraction": float(ok.mean())}
            continue
        out[a] = {"auc": float(roc_auc(s[ok], mb[ok])),
                  **{f"tpr_at_{f}_fpr": float(tpr_at_fpr(s[ok], mb[ok], f)) for f in fprs},
                  "scored_fraction": float(ok.mean())}
    return out


def _summarize(per_replica, keys):
    row = {}
    for k in keys:
        m, lo, hi = t_interval([p[k] for p in per_replica])
        row.update({k: m, f"{k}_lo": lo, f"{k}_hi": hi})
    return row


def analyze(cfg, workdir, runs, log, population_sizes=(10, 30, 100, 300, 1000)):
    """Per variant: every attack's AUC and TPRs against the number of references (means and 95%
    intervals over the replicas), RMIA against |Z| with all references, the share of true
    positives that are coin flips over the replicas; whether RMIA leads LiRA at some count."""
    keys = ["auc", *(f"tpr_at_{f}_fpr" for f in FPRS)]
    by_count, by_pop, stab_rows, cross = [], [], [], []
    for name, run in runs.items():
        c = run.config
        if c.subsets.design.name != "replica":
            raise ValueError(f"reference_scaling: variant {name!r} has subsets.design = "
                             f"{c.subsets.design.name!r}; it needs the replica design")
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        R = c.subsets.design.replicas
        replicas = [r for r in range(R) if ok[r]]
        refs = np.flatnonzero(ok)[np.flatnonzero(ok) >= R]
        sig, labels = _signals(run, ATTACKS)
        members = keep[0]
        # RMIA offline's a: tuned once on the whole reference pool (no replica, so no target's
        # membership), then given for every count (a count of 1 cannot tune it): the run's audit
        # spec with a given a ("a_source": "given")
        spec = audit_spec(c, ATTACKS)
        a_rmia = float(tune_rmia_a(sig["p"][refs], keep[refs], sig["p_pop"][refs], gamma=spec.rmia_gamma,
                                   aggregate=spec.rmia_aggregate, trim=spec.rmia_trim))
        spec = spec.replace(rmia_a=a_rmia)
        evs_all = {}
        for cnt in reference_counts(refs.size):
            t0 = time.time()
            per = {a: [] for a in ATTACKS}
            for r in replicas:
                mask = np.zeros(len(ok), bool)
                mask[refs] = True
                mask[r] = True
                ev = audit(sig, keep, mask, spec.replace(num_shadows=cnt, shadow_seed=r), [r],
                           labels=labels)
                if cnt == refs.size:
                    evs_all[r] = ev
                for a, m in _per_target(ev, ATTACKS, FPRS).items():
                    per[a].append(m)
            for a in ATTACKS:
                by_count.append({"variant": name, "attack": a, "references": cnt,
                                 **_summarize(per[a], keys),
                                 "scored_fraction": float(np.mean([p["scored_fraction"] for p in per[a]])),
                                 "rmia_tuning": rmia_tuning(ev, a) if replicas else None})
            log(f"  {name}: {cnt} references scored in {time.time() - t0:.1f} s")
        # RMIA against the population size, all references
        Z = sig["p_pop"].shape[1]
        for z in sorted({min(z, Z) for z in population_sizes} | {Z}):
            s2 = dict(sig)
            for k in ("p_pop", "p_taylor_pop"):
                if k in s2:
                    s2[k] = s2[k][:, :z]
            per = {a: [] for a in ("rmia_offline", "rmia_online")}
            for r in replicas:
                mask = np.zeros(len(ok), bool)
                mask[refs] = True
                mask[r] = True
                ev = audit(s2, keep, mask, spec.replace(attacks=tuple(per)), [r], labels=labels)
                for a, m in _per_target(ev, list(per), FPRS).items():
                    per[a].append(m)
            for a in per:
                by_pop.append({"variant": name, "attack": a, "population": z,
                               **_summarize(per[a], keys)})
        # decision stability over the replicas, all references
        if len(replicas) >= 2:
            for a in ATTACKS:
                sc = np.stack([evs_all[r].scores[a][0] for r in replicas])
                st = decision_stability(sc, members, FPRS, classes=labels)
                for f, v in st.items():
                    stab_rows.append({"variant": name, "attack": a, "fpr": f, "replicas": len(replicas),
                                      "tpr": v["tpr"], "true_positives": v["true_positives"],
                                      "coin_flip_tp_share": v["coin_flip_tp_share"],
                                      "cutoff": v["cutoff"],
                                      "by_class": {str(k): x for k, x in v["by_class"].items()}})
        # the crossover: counts where RMIA (offline) beats both LiRA online and offline in AUC
        for cnt in reference_counts(refs.size):
            r_ = {x["attack"]: x for x in by_count if x["variant"] == name and x["references"] == cnt}
            rm, lon, lof = (r_[a]["auc"] for a in ("rmia_offline", "lira_online", "lira_offline"))
            best_lira = np.nanmax([lon, lof]) if np.isfinite([lon, lof]).any() else float("nan")
            cross.append({"variant": name, "references": cnt, "rmia_offline_auc": rm,
                          "lira_online_auc": lon, "lira_offline_auc": lof,
                          "rmia_ahead": bool(rm > best_lira) if np.isfinite(best_lira) and np.isfinite(rm) else None,
                          "rmia_a": a_rmia})
    files = {"by_reference_count": write_csv(workdir / "by_reference_count.csv", by_count),
             "by_population": write_csv(workdir / "by_population.csv", by_pop),
             "stability": write_csv(workdir / "stability.csv",
                                    [{k: v for k, v in s.items() if k != "by_class"} for s in stab_rows])}
    for name in runs:
        def draw(ax, name=name, key="auc"):
            for a in ATTACKS:
                rr = [x for x in by_count if x["variant"] == name and x["attack"] == a]
                x = np.array([q["references"] for q in rr])
                y = np.array([q[key] for q in rr])
                lo = np.array([q[f"{key}_lo"] for q in rr])
                hi = np.array([q[f"{key}_hi"] for q in rr])
                ax.errorbar(x, y, yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)], fmt="o-",
                            capsize=2, label=a)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("reference models")
            ax.set_ylabel(key.replace("_", " "))
            ax.set_title(name, fontsize=8)
            ax.legend(fontsize=6)

        files[f"auc_{name}"] = figure(workdir / f"auc_vs_references_{name}.png", draw)
        files[f"tpr_{name}"] = figure(workdir / f"tpr_vs_references_{name}.png",
                                      lambda ax, name=name: draw(ax, name, "tpr_at_0.01_fpr"))
    rows = [{k: v for k, v in x.items() if not k.endswith(("_lo", "_hi"))}
            for x in by_count if x["attack"] in ("lira_online", "lira_offline", "rmia_offline")]
    return {"rows": rows, "by_reference_count": by_count, "by_population": by_pop,
            "stability": stab_rows, "crossover": cross, "files": files}
