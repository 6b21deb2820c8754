"""Counterfactual memorization of KJV verses by small causal LMs (Zhang et al. 2021), and how it
and greedy extraction (Carlini et al. 2022) grow with a text's number of copies: natural
duplicates of the corpus, and duplicates planted at controlled counts (Kandpal et al. 2022: the
regeneration rate grows super-linearly with the count, a log-log slope above 1)."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.analyses.common import figure, write_csv
from jaxmem.analyses.lm_common import by_count, extraction_rates, mean_se, sequence_table, texts
from jaxmem.estimators.lm import loglog_slope
from jaxmem.runs.score_lm import suffix_length_used

#: Natural duplicate-count buckets (lower edges): 1, 2, 3-4, 5-8, 9-16, 17+.
NATURAL_BINS = (1, 2, 3, 5, 9, 17)


def _slope(counts, values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = loglog_slope(counts, values, num_bootstrap=2000, seed=0)
    return {"slope": r.slope, "low": r.low, "high": r.high, "stderr": r.stderr,
            "counts_used": [int(c) for c, u in zip(r.counts, r.used) if u]}


def analyze(cfg, workdir, runs, log, top=10):
    """Most and least memorized verses; memorization and extraction by natural and by planted
    duplicate count, with log-log slopes (stratified bootstrap 95% intervals) against the
    planted count. Every text counts once (the run's table is per text: copies merged)."""
    name, run = next(iter(runs.items()))
    t = sequence_table(run)
    first = np.ones(len(t["index"]), bool)      # (the table is per text: copies merged)
    dup, planted = t["duplicate_count"], t["planted_count"]
    ks, s = list(cfg.scoring.prefix_lengths), suffix_length_used(cfg)   # (the run's: clipped)
    ext_cols = [f"extracted_in_k{k}" for k in ks] + [f"extracted_out_k{k}" for k in ks]
    natural = first & (planted == 0)
    nat_rows = by_count(t, dup, natural, NATURAL_BINS, ("mem", "mem_loglik", *ext_cols))
    counts = sorted(int(c) for c in np.unique(planted[planted > 0]))
    pl_rows = by_count(t, planted, first & (planted > 0), counts, ("mem", "mem_loglik", *ext_cols)) if counts else []
    ext = {k: {"natural": extraction_rates(run, k, s, dup, bins=NATURAL_BINS, select=natural),
               "planted": extraction_rates(run, k, s, planted, select=first & (planted > 0)) if counts else []}
           for k in ks}
    slopes = {}
    if counts:
        sel = first & (planted > 0)
        slopes["mem"] = _slope(planted[sel], t["mem"][sel])
        for k in ks:
            slopes[f"extraction_k{k}"] = _slope(planted[sel], t[f"extracted_in_k{k}"][sel])
    order = np.argsort(-np.nan_to_num(t["mem"], nan=-np.inf), kind="stable")
    order = order[first[order]]
    show = lambda i: {"example_id": int(t["example_id"][i]), "mem": float(t["mem"][i]),
                      "stderr": float(t["stderr"][i]), "duplicate_count": int(dup[i]),
                      "planted_count": int(planted[i]), "acc_in": float(t["acc_in"][i]),
                      "acc_out": float(t["acc_out"][i]), "text": t["text"][i]}
    fin = order[np.isfinite(t["mem"][order])]
    most, least = [show(i) for i in fin[:top]], [show(i) for i in fin[::-1][:top]]
    k0 = ks[0]

    def draw_mem(ax):
        for rows, lab, mk in ((pl_rows, "planted copies", "o-"), (nat_rows, "natural duplicates", "s--")):
            xs = [r["count"] if isinstance(r["count"], int) else int(str(r["count"]).split("-")[0]) for r in rows]
            ys = np.array([r["mem"] for r in rows], float)
            ax.errorbar(xs, ys, yerr=1.96 * np.nan_to_num([r["mem_se"] for r in rows]), fmt=mk, label=lab, ms=4)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("copies of the text in the training set")
        ax.set_ylabel("counterfactual memorization (token acc.)")
        ax.legend(fontsize=7)

    def draw_ext(ax):
        for members, mk in ((True, "o-"), (False, "s--")):
            rows = [r for r in ext[k0]["planted"] if r["members"] == members and r["trials"]]
            xs = [r["count"] for r in rows]
            y = np.array([r["rate"] for r in rows])
            err = np.array([[r["rate"] - r["low"] for r in rows], [r["high"] - r["rate"] for r in rows]])
            ax.errorbar(xs, y, yerr=err, fmt=mk, ms=4, label=f"{'IN' if members else 'OUT'} models (Wilson 95%)")
        ax.set_xscale("log", base=2)   # (a linear rate axis: a bucket may have no extraction at all)
        ax.set_xlabel("planted copies")
        ax.set_ylabel(f"extracted (k={k0}, s={s})")
        sl = slopes.get(f"extraction_k{k0}")
        if sl and np.isfinite(sl["slope"]):
            ax.set_title(f"log-log slope {sl['slope']:.2f} [{sl['low']:.2f}, {sl['high']:.2f}]", fontsize=8)
        ax.legend(fontsize=7)

    ext_rows = [{"prefix_length": k, "suffix_length": s, "by": by, **r} for k in ks for by in ("natural", "planted")
                for r in ext[k][by]]
    files = {"memorization_vs_count": figure(workdir / "memorization_vs_count.png", draw_mem),
             "by_natural_count": write_csv(workdir / "by_natural_count.csv", nat_rows),
             "by_planted_count": write_csv(workdir / "by_planted_count.csv", pl_rows),
             "extraction_by_count": write_csv(workdir / "extraction_by_count.csv", ext_rows),
             "most_memorized": write_csv(workdir / "most_memorized.csv", most),
             "least_memorized": write_csv(workdir / "least_memorized.csv", least)}
    if counts:
        files["extraction_vs_planted"] = figure(workdir / "extraction_vs_planted.png", draw_ext)
    mem_all = mean_se(t["mem"][first])
    rows = [{"copies": r["count"], "kind": "planted", "texts": r["texts"], "mem": r["mem"],
             "mem_se": r["mem_se"], "suffix_length": s, f"extracted_in_k{k0}": r[f"extracted_in_k{k0}"],
             f"extracted_out_k{k0}": r[f"extracted_out_k{k0}"]} for r in pl_rows]
    rows += [{"copies": r["count"], "kind": "natural", "texts": r["texts"], "mem": r["mem"],
              "mem_se": r["mem_se"], "suffix_length": s, f"extracted_in_k{k0}": r[f"extracted_in_k{k0}"],
              f"extracted_out_k{k0}": r[f"extracted_out_k{k0}"]} for r in nat_rows if r["texts"]]
    return {"rows": rows, "suffix_length": s, "unit": texts(run).unit(), "mem_mean": mem_all[0],
            "mem_mean_se": mem_all[1], "texts": int(first.sum()),
            "by_natural_count": nat_rows, "by_planted_count": pl_rows, "extraction": ext_rows,
            "slopes_vs_planted_count": slopes, "most_memorized": most, "least_memorized": least,
            "files": files}
