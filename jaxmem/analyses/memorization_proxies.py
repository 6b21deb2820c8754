"""Which memorization proxy to use when one model is all you can train: every proxy of
``jaxmem.estimators.proxies``, recorded in-jit for every model of a stack, ranked against
Feldman–Zhang memorization from the rest of the stack (Jiang et al. 2021; Toneva et al. 2019;
Pleiss et al. 2020; Swayamdipta et al. 2020; Ravikumar et al. 2025; Garg et al. 2024; Agarwal
et al. 2022)."""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.analyses.common import figure, id_mask, memorization_of, run_signals, write_csv
from jaxmem.analyses.label_noise import noise_auroc
from jaxmem.estimators.agreement import average_over_models, bootstrap_over_examples, spearman, top_k_precision
from jaxmem.estimators.proxies import class_normalize, memorization_score

# proxy -> the stored record it is a function of (vog: the per-model score itself)
_RECORD = {"cumulative_accuracy": "correct", "forgetting": "correct", "cumulative_confidence": "p_true",
           "cartography_variability": "p_true", "aum": "margin", "cumulative_sample_loss": "loss",
           "curvature": "curvature", "vog": "vog", "vog_class_normalized": "vog"}


def proxy_scores(run, ok) -> dict:
    """``{proxy: [M, N]}``: every proxy the run's records allow, oriented higher = more memorized
    (``memorization_score``); diverged models' rows are NaN."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, rec_name in _RECORD.items():
            rec = run.record(rec_name)
            if rec is None:
                continue
            if name == "vog":
                s = np.asarray(rec, np.float64)
            elif name == "vog_class_normalized":
                s = class_normalize(np.asarray(rec, np.float64), np.asarray(run.labels))
            else:
                s = memorization_score(name, rec)
            s[~ok] = np.nan
            out[name] = s
    return out


def _ci(stat, a, b, num_bootstrap, seed, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bootstrap_over_examples(stat, a, b, num_bootstrap=num_bootstrap, seed=seed, **kw)


def _split_half(keep, correct, ref_models, seed):
    """Spearman between memorization from two disjoint random halves of the reference models:
    how far the reference's own noise caps any correlation with it."""
    perm = np.random.default_rng(seed).permutation(ref_models)
    halves = []
    for part in (perm[: len(perm) // 2], perm[len(perm) // 2:]):
        mask = np.zeros(keep.shape[0], bool)
        mask[part] = True
        halves.append(memorization_of(keep, {"correct": correct}, mask).mem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spearman(halves[0], halves[1])


def analyze(cfg, workdir, runs, log, models=(1, 4), top_fraction: float = 0.05, num_bootstrap: int = 200):
    """Per variant and proxy: Spearman and top-k precision (k = ``top_fraction`` of the examples
    scored) against Feldman–Zhang memorization, each with a percentile bootstrap interval over
    examples, for the proxy of ONE model (M' = 1) and averaged over a few (``models``). The
    proxies come from the first max(models) non-diverged models, averaged per example over the
    ones that trained on it; the reference memorization from all the other models, so the two
    share no model. ``spread_single`` is the standard deviation of the M' = 1 Spearman over
    those first models taken one at a time (model-to-model variation, which the bootstrap over
    examples does not see)."""
    models = sorted(int(m) for m in models)
    rows, best, split_half = [], {}, {}
    for vname, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        usable = np.flatnonzero(ok)
        if usable.size < models[-1] + 4:
            raise ValueError(f"memorization_proxies: variant {vname} has {usable.size} usable models; it needs "
                             f"max(models) = {models[-1]} for the proxies and at least 4 more for the reference")
        chosen, ref_models = usable[: models[-1]], usable[models[-1]:]
        sig = run_signals(run)
        ref_mask = np.zeros(keep.shape[0], bool)
        ref_mask[ref_models] = True
        mem = memorization_of(keep, sig, ref_mask).mem
        split_half[vname] = _split_half(keep, sig["correct"], ref_models, cfg.seed)
        scores = proxy_scores(run, ok)
        flipped = id_mask(run, "label_noise", "flipped_ids")
        log(f"  {vname}: {len(scores)} proxies, reference from {ref_models.size} models "
            f"(split-half Spearman {split_half[vname]:.3f})")
        for name, s in scores.items():
            singles = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for m in chosen[: max(4, models[0])]:
                    singles.append(spearman(average_over_models(s, keep=keep, models=[int(m)]), mem))
            for mm in models:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p = average_over_models(s, keep=keep, models=[int(m) for m in chosen[:mm]])
                fin = np.isfinite(p) & np.isfinite(mem)
                k = max(1, int(round(top_fraction * fin.sum())))
                rs = _ci(spearman, p[fin], mem[fin], num_bootstrap, cfg.seed)
                tk = _ci(top_k_precision, p[fin], mem[fin], num_bootstrap, cfg.seed, k=k)
                row = {"variant": vname, "proxy": name, "models": mm, "examples": int(fin.sum()),
                       "spearman": rs.estimate, "spearman_low": rs.low, "spearman_high": rs.high,
                       "top_k": k, "top_k_precision": tk.estimate, "top_k_low": tk.low, "top_k_high": tk.high}
                if mm == 1:
                    row["spread_single"] = float(np.nanstd(singles))
                if flipped.any():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        row["noisy_label_auroc"] = noise_auroc(p[fin], flipped[fin])
                rows.append(row)
        for mm in models:
            cand = [r for r in rows if r["variant"] == vname and r["models"] == mm and np.isfinite(r["spearman"])]
            if cand:
                best[f"{vname}/{mm}"] = max(cand, key=lambda r: r["spearman"])["proxy"]
    files = {"proxies": write_csv(workdir / "proxies.csv", rows)}
    for stat in ("spearman", "top_k_precision"):
        files[f"{stat}_figure"] = figure(workdir / f"proxies_{stat}.png", lambda ax, s=stat: _draw(ax, rows, s),
                                         size=(7, 0.32 * len({r["proxy"] for r in rows}) * len(runs) + 1.5))
    return {"rows": [_short(r) for r in rows], "best_proxy": best, "reference_split_half_spearman": split_half,
            "files": files}


def _short(r):
    return {k: r[k] for k in ("variant", "proxy", "models", "spearman", "spearman_low", "spearman_high",
                              "top_k_precision")}


def _draw(ax, rows, stat):
    """Horizontal bars per proxy: one bar per (variant, M'), with the bootstrap interval."""
    lo, hi = ("spearman_low", "spearman_high") if stat == "spearman" else ("top_k_low", "top_k_high")
    proxies = list(dict.fromkeys(r["proxy"] for r in rows))
    groups = list(dict.fromkeys((r["variant"], r["models"]) for r in rows))
    h = 0.8 / len(groups)
    for g, (v, mm) in enumerate(groups):
        sel = {r["proxy"]: r for r in rows if (r["variant"], r["models"]) == (v, mm)}
        ys = [i + g * h for i, p in enumerate(proxies) if p in sel]
        vals = [sel[p][stat] for p in proxies if p in sel]
        err = np.array([[sel[p][stat] - sel[p][lo], sel[p][hi] - sel[p][stat]] for p in proxies if p in sel]).T
        ax.barh(ys, vals, height=h, xerr=np.nan_to_num(err), capsize=2,
                label=f"{v}, {'one model' if mm == 1 else f'{mm} models'}")
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(proxies))], proxies, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Spearman with Feldman–Zhang memorization" if stat == "spearman" else
                  "top-k precision against Feldman–Zhang memorization")
    ax.axvline(0, color="k", lw=0.5)
    ax.legend(fontsize=6)
