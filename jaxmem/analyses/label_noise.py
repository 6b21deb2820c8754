"""Feldman & Zhang (2020): mislabeled examples are the most memorized; memorization detects them."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.analyses.common import (
    ANALYSIS_TARGETS,
    audit,
    audit_spec,
    common_row,
    figure,
    id_mask,
    memorization_of,
    nanmean,
    run_signals,
)
from jaxmem.attacks.metrics import roc_auc
from jaxmem.estimators.proxies import UndefinedProxyWarning

__all__ = ["analyze", "noise_auroc"]


def noise_auroc(score, flipped) -> float:
    """AUROC of a score for the flipped labels: P(score of a flipped example > score of a clean
    one), ties counting one half (:func:`jaxmem.attacks.metrics.roc_auc`).

    Args:
      score: [N] float, higher = more likely mislabeled (a memorization score, a proxy oriented
        with ``jaxmem.estimators.proxies.memorization_score``, cleanlab's score).
      flipped: [N] bool, True where the planted noise changed the label.

    Returns:
      The AUROC, a float in [0, 1]. Examples with a NaN score are left out (with an
      :class:`~jaxmem.estimators.proxies.UndefinedProxyWarning`); NaN, with a warning, when no
      label or every label is flipped among the scored examples.

    Raises:
      ValueError: when ``flipped`` is not a 1-d array of the size of ``score``.
    """
    s = np.asarray(score, np.float64).ravel()
    f = np.asarray(flipped)
    if f.ndim != 1 or f.size != s.size:
        raise ValueError(f"flipped must be a bool array [N] with N = {s.size}, got shape {f.shape}")
    f = f.astype(bool)
    nan = np.isnan(s)
    if nan.any():
        warnings.warn(f"noise_auroc: {int(nan.sum())} of {s.size} examples have a NaN score and are left out",
                      UndefinedProxyWarning, stacklevel=2)
        s, f = s[~nan], f[~nan]
    if f.all() or not f.any():
        warnings.warn(f"noise_auroc: {'every' if f.size and f.all() else 'no'} scored label is flipped; AUROC is NaN",
                      UndefinedProxyWarning, stacklevel=2)
        return float("nan")
    return roc_auc(s, f)


def analyze(cfg, workdir, runs, log):
    """Per variant: the AUROC of memorization for detecting a flipped label, mean memorization of
    flipped and clean examples, precision at k = #flipped, and LiRA's AUC on each group."""
    rows, hist = [], {}
    for name, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        sig = run_signals(run, ["lira_online"])
        mem = memorization_of(keep, sig, ok)
        flipped = id_mask(run, "label_noise", "flipped_ids")
        row = common_row(name, keep, ok, sig, mem)
        row["label_noise"] = run.config.data.label_noise
        row["num_flipped"] = int(flipped.sum())
        fin = np.isfinite(mem.mem)
        if flipped.any() and (~flipped).any():
            k = int(flipped.sum())
            order = np.argsort(-np.where(fin, mem.mem, -np.inf), kind="stable")
            row.update({"noisy_label_auroc": roc_auc(mem.mem[fin], flipped[fin]),
                        "mem_noisy": nanmean(mem.mem[flipped]),
                        "mem_clean": nanmean(mem.mem[~flipped]),
                        "precision_at_k": float(flipped[order[:k]].mean())})
            hist[name] = (mem.mem[flipped & fin], mem.mem[~flipped & fin])
        ev = audit(sig, keep, ok, audit_spec(run.config, ["lira_online"], default_targets=ANALYSIS_TARGETS))
        if flipped.any():
            row["lira_auc_noisy"] = ev.table(flipped)["lira_online"]["auc"]
            row["lira_auc_clean"] = ev.table(~flipped)["lira_online"]["auc"]
        rows.append(row)

    def draw(ax):
        vals = np.concatenate([np.concatenate(v) for v in hist.values()] or [np.zeros(1)])
        lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (-1.0, 1.0)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 41)   # the data's range
        for name, (noisy, clean) in hist.items():
            ax.hist(clean, bins, alpha=0.5, density=True, label=f"{name}: clean")
            ax.hist(noisy, bins, alpha=0.5, density=True, label=f"{name}: flipped")
        ax.set_xlabel("memorization")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)

    files = {"memorization_noisy_vs_clean": figure(workdir / "mem_noisy_vs_clean.png", draw)}
    main = next((r for r in rows if "noisy_label_auroc" in r), rows[0])
    return {"rows": rows, "noisy_label_auroc": main.get("noisy_label_auroc"),
            "mem_noisy": main.get("mem_noisy"), "mem_clean": main.get("mem_clean"),
            "precision_at_k": main.get("precision_at_k"), "files": files}
