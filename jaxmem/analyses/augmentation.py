"""What training augmentations do to memorization (the survey's open question 2, arXiv
2406.03880): the same stack trained under each augmentation (and none), compared on the
Feldman–Zhang memorization distribution and its tail, LiRA and RMIA power, and test accuracy,
each with a 95% interval over models."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.analyses.common import audit, audit_spec, figure, memorization_of, rmia_tuning, run_signals, write_csv
from jaxmem.attacks.roc import roc_metrics
from jaxmem.estimators import memorization
from jaxmem.train.augment_registry import resolve_args

#: Tail thresholds reported: the share of training examples with memorization above each.
TAIL = (0.25, 0.5, 0.75)


def mean_interval(values, level: float = 0.95):
    """Mean and its Student-t interval over the finite ``values`` (one per model or target).

    Returns:
        (mean, low, high); NaN (with a warning) for no finite value, the interval NaN for one."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        warnings.warn("mean_interval: no finite value; the mean is undefined (NaN)", stacklevel=2)
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - h, m + h


def memorization_summary(mem) -> dict:
    """The distribution's summary over the finite per-example scores: mean, 90th and 99th
    percentiles, and the share above each of :data:`TAIL`."""
    m = np.asarray(mem, np.float64)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return {k: float("nan") for k in ("mem_mean", "mem_p90", "mem_p99",
                                          *(f"share_mem_gt_{t}" for t in TAIL))}
    out = {"mem_mean": float(m.mean()), "mem_p90": float(np.quantile(m, 0.9)),
           "mem_p99": float(np.quantile(m, 0.99))}
    out.update({f"share_mem_gt_{t}": float((m > t).mean()) for t in TAIL})
    return out


def jackknife_models(keep, correct, ok, level: float = 0.95) -> dict:
    """Delete-one-model jackknife intervals of :func:`memorization_summary`: the Feldman–Zhang
    estimate recomputed without each usable model in turn, standard error
    ``sqrt((n - 1) / n * sum (t_i - mean t_.)^2)`` (Efron & Stein 1981) and the normal interval
    ``t +- z * se`` around the estimate ``t`` from all n models. (A bootstrap over models
    repeats models, which makes each per-example estimate noisier and shifts the tail shares
    by more than their spread; leaving one model out hardly changes the noise.)

    Returns:
        ``{statistic: (low, high)}``."""
    from scipy import stats

    idx = np.flatnonzero(ok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = memorization_summary(memorization(keep[idx], correct[idx]).mem)
        loo = [memorization_summary(memorization(keep[np.delete(idx, i)],
                                                 correct[np.delete(idx, i)]).mem)
               for i in range(idx.size)]
    z, n = stats.norm.ppf(0.5 + level / 2), idx.size
    out = {}
    for k, t in full.items():
        v = np.array([d[k] for d in loo])
        se = float(np.sqrt((n - 1) / n * ((v - v.mean()) ** 2).sum()))
        out[k] = (t - z * se, t + z * se)
    return out


def analyze(cfg, workdir, runs, log, attacks=("lira_online", "rmia_offline")):
    """One row per variant (augmentation): test and train accuracy over models, the
    memorization summary (mean, p90, p99, share above 0.25 / 0.5 / 0.75) with jackknife
    intervals over models, and per attack the AUC and TPR at 0.1% / 1% FPR, mean over targets
    with a t-interval. Figure: the memorization distributions (survival curves)."""
    rows, mems = [], {}
    for name, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        c = run.config
        sig = run_signals(run, attacks)
        mem = memorization_of(keep, sig, ok)
        mems[name] = mem.mem
        corr = sig["correct"]
        test_acc = sig["correct_pop"].mean(1)[ok]
        train_acc = np.array([corr[m][keep[m]].mean() for m in np.flatnonzero(ok)])
        row = {"variant": name, "augment": c.train.augment,
               "augment_args": resolve_args(c.train.augment, c.train.augment_args),
               "models": int(ok.sum())}
        for key, v in (("test_accuracy", test_acc), ("train_accuracy", train_acc)):
            row[key], row[key + "_low"], row[key + "_high"] = mean_interval(v)
        summ = memorization_summary(mem.mem)
        ci = jackknife_models(keep, corr, ok)
        for k, v in summ.items():
            row[k], (row[k + "_low"], row[k + "_high"]) = v, ci[k]
        ev = audit(sig, keep, ok, audit_spec(c, attacks))
        for a in attacks:
            auc, tprs = roc_metrics(ev.scores[a], ev.members, (0.001, 0.01))
            for key, v in (("auc", auc), ("tpr_at_0.001_fpr", tprs[0]), ("tpr_at_0.01_fpr", tprs[1])):
                row[f"{a}_{key}"], row[f"{a}_{key}_low"], row[f"{a}_{key}_high"] = mean_interval(v)
            if a.startswith("rmia"):   # how RMIA's offline a was chosen (jaxmem.attacks.spec)
                row[f"{a}_tuning"] = rmia_tuning(ev, a)
        row["targets"] = int(len(ev.targets))
        rows.append(row)
        log(f"{name}: test {row['test_accuracy']:.3f}, mem mean {row['mem_mean']:.3f}, "
            f"share > 0.5 {row['share_mem_gt_0.5']:.3f}, LiRA AUC {row[f'{attacks[0]}_auc']:.3f}")

    def draw(ax):
        for name, m in mems.items():
            m = np.sort(m[np.isfinite(m)])
            ax.plot(m, 1 - np.arange(m.size) / m.size, label=name)
        ax.set_xlabel("Feldman–Zhang memorization")
        ax.set_ylabel("share of examples ≥ x")
        ax.set_yscale("log")
        ax.legend(fontsize=7)

    files = {"memorization_tail": figure(workdir / "augmentation_mem_tail.png", draw),
             "table": write_csv(workdir / "augmentation.csv",
                                [{k: (str(v) if isinstance(v, dict) else v) for k, v in r.items()}
                                 for r in rows])}
    short = [{k: r[k] for k in ("variant", "test_accuracy", "mem_mean", "share_mem_gt_0.5",
                                f"{attacks[0]}_auc", f"{attacks[0]}_tpr_at_0.01_fpr",
                                f"{attacks[-1]}_auc")} for r in rows]
    return {"rows": short, "variants": rows, "files": files}
