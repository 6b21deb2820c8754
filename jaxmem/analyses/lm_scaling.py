"""Memorization and extraction against model size and prefix length (Carlini et al. 2022,
"Quantifying memorization across neural language models": the fraction of training sequences
extractable grows log-linearly with the model's size and with the length of the prompt), at the
sizes the machine allows: one run per model size (the experiment's variants), every prefix length
of ``scoring.prefix_lengths`` read from the same stored signals."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.analyses.common import figure, write_csv
from jaxmem.analyses.lm_common import mean_se, num_params, sequence_table, texts
from jaxmem.estimators.lm import loglinear_slope
from jaxmem.runs.score_lm import extraction, suffix_length_used


def _fit(x, per_seq, num_bootstrap=2000, seed=0):
    """OLS slope of the mean over sequences against log10(x), with a paired bootstrap over
    sequences (every group resamples the same sequences): ``per_seq`` [G, N] (NaN: not scored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = loglinear_slope(x, per_seq, num_bootstrap=num_bootstrap, seed=seed)
    return {"slope_per_decade": r.slope, "low": r.low, "high": r.high, "stderr": r.stderr}


def _extracted(run, k, s, rows):
    """([G], [G]) per-text extraction rate over the models that trained on it and over those
    that did not, on the texts ``rows`` (NaN elsewhere; copies merged: :func:`texts`)."""
    f = texts(run).first
    matched, valid = extraction(run, k, s)
    matched, valid = matched[:, f], valid[f]
    keep, ok = np.asarray(run.keep, bool)[:, f], ~np.asarray(run.diverged, bool)
    out = []
    for use in (keep & ok[:, None], ~keep & ok[:, None]):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = ((matched == s) & use).sum(0) / use.sum(0)
        out.append(np.where(valid & rows, r, np.nan))
    return out


def analyze(cfg, workdir, runs, log):
    """Per model size (variant): parameters, mean counterfactual memorization, NLLs, extraction
    of the IN and OUT models at each prefix length (on the texts long enough for the longest
    prefix, each text once); slopes per decade of parameters (and of prefix length) with paired
    bootstrap 95% intervals over sequences."""
    ks, s = list(cfg.scoring.prefix_lengths), suffix_length_used(cfg)   # (the run's: clipped)
    rows, per_size = [], {k: [] for k in ks}
    mem_seq, sizes, by_prefix = [], [], []
    for name, run in runs.items():
        c = run.config
        t = sequence_table(run)
        # every row of the table is a text; the same texts at every k: those long enough
        first = np.ones(len(t["index"]), bool)
        common = np.asarray(t["length"]) >= max(ks) + s
        p = num_params(c, int(run.dataset["num_classes"]), int(run.dataset["input_shape"][0]))
        summ = run.summary
        row = {"variant": name, "params": p, "mem": mean_se(t["mem"][first])[0],
               "mem_se": mean_se(t["mem"][first])[1], "train_nll_in": summ["train_nll_in"],
               "train_nll_out": summ["train_nll_out"], "test_nll": summ["test_nll"], "suffix_length": s}
        for k in ks:
            e, e_out = _extracted(run, k, s, common)
            per_size[k].append(e)
            row[f"extracted_in_k{k}"] = mean_se(e)[0]
            row[f"extracted_out_k{k}"] = mean_se(e_out)[0]
            by_prefix.append({"variant": name, "params": p, "prefix_length": k, "suffix_length": s,
                              "extracted_in": mean_se(e)[0],
                              "extracted_in_se": mean_se(e)[1], "texts": int(np.isfinite(e).sum())})
        rows.append(row)
        mem_seq.append(t["mem"])
        sizes.append(p)
    fits = {}
    if len(runs) >= 2:
        fits["mem_vs_params"] = _fit(sizes, np.stack([np.where(np.isfinite(m), m, np.nan) for m in mem_seq]))
        for k in ks:
            fits[f"extraction_k{k}_vs_params"] = _fit(sizes, np.stack(per_size[k]))
    if len(ks) >= 2:
        for j, name in enumerate(runs):
            fits[f"extraction_vs_prefix_{name}"] = _fit(ks, np.stack([per_size[k][j] for k in ks]))

    def draw_size(ax):
        for k in ks:
            ax.plot(sizes, [r[f"extracted_in_k{k}"] for r in rows], "o-", label=f"prefix k={k}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(f"extracted (suffix {s}), IN models")
        ax.legend(fontsize=7)

    def draw_prefix(ax):
        for name, p in zip(runs, sizes):
            pr = [b for b in by_prefix if b["variant"] == name]
            ax.plot([b["prefix_length"] for b in pr], [b["extracted_in"] for b in pr], "o-", label=f"{name} ({p:,})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prefix length k (tokens)")
        ax.set_ylabel(f"extracted (suffix {s}), IN models")
        ax.legend(fontsize=7)

    files = {"extraction_vs_size": figure(workdir / "extraction_vs_size.png", draw_size),
             "extraction_vs_prefix": figure(workdir / "extraction_vs_prefix.png", draw_prefix),
             "by_size": write_csv(workdir / "by_size.csv", rows),
             "by_prefix": write_csv(workdir / "by_prefix.csv", by_prefix)}
    return {"rows": rows, "by_prefix": by_prefix, "fits": fits, "files": files}
