"""Memorization put to work on noisy labels (Feldman & Zhang 2020; survey: mislabeled examples are
the memorized ones): flag suspected labels by memorization, by training-dynamics proxies and by
cleanlab's confident learning (Northcutt et al. 2021) on the stack's out-of-sample
probabilities; then retrain on the cleaned data and compare test accuracy with training on the
noisy and on the clean labels."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from jaxmem.analyses.common import figure, id_mask, memorization_of, run_signals, write_csv
from jaxmem.analyses.label_noise import noise_auroc
from jaxmem.analyses.memorization_proxies import proxy_scores
from jaxmem.config import RecordsConfig
from jaxmem.data import build_dataset
from jaxmem.estimators import label_noise as L
from jaxmem.estimators.agreement import average_over_models
from jaxmem.io import load_json, save_json
from jaxmem.train import Trainer, steps_per_epoch_max


def _flags(run, keep, ok, proxies):
    """Scores (higher = more suspect) and the OUT-model quantities of one noisy run."""
    labels = np.asarray(run.labels)
    logits = run.logits[:, :, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs = L.out_of_sample_probs(logits, keep, model_mask=ok)
        votes = L.out_of_sample_votes(logits, keep, model_mask=ok)
        mem = memorization_of(keep, run_signals(run), ok).mem
        have = np.isfinite(probs).all(1)
        cl_flags = np.zeros(len(labels), bool)
        cl_score = np.full(len(labels), np.nan)
        cl_flags[have] = L.cleanlab_flags(probs[have], labels[have])
        cl_score[have] = L.cleanlab_scores(probs[have], labels[have])
        scores = {"memorization": mem, "cleanlab": cl_score}
        all_proxies = proxy_scores(run, ok)
        for p in proxies:
            if p not in all_proxies:
                raise ValueError(f"label_cleaning: proxy {p!r} needs a record this run lacks "
                                 f"(train.records.fields; available: {', '.join(all_proxies)})")
            scores[p] = average_over_models(all_proxies[p], keep=keep, model_mask=ok)
    return scores, cl_flags, votes


def _retrain(cfg, run, y_train, keep_row, num_models, log):
    """Test accuracy [num_models] of models trained on every example of ``keep_row`` with labels
    ``y_train`` (the variant's model and recipe, no records; model ids 0..num_models-1, so every
    condition starts from the same initializations)."""
    import jax.numpy as jnp

    c = run.config
    c = dataclasses.replace(c, train=dataclasses.replace(c.train, record_forgetting=False,
                                                         records=RecordsConfig()))
    ds = build_dataset(c)
    rows = np.repeat(keep_row[None], num_models, 0)
    tr = Trainer(c, jnp.asarray(ds.x_train), jnp.asarray(y_train.astype(np.int32)), int(ds.num_classes),
                 steps_per_epoch_max(rows, c.train.batch_size))
    ids = np.arange(num_models)
    state, status = tr.init_chunk(ids, rows)
    state, status, _ = tr.train_epochs(state, status, rows, ids, 0, tr.num_epochs)
    z = np.asarray(tr.logits(state, jnp.asarray(ds.x_test), ["identity"]))[:, :, 0]
    acc = (z.argmax(-1) == np.asarray(ds.y_test)[None]).mean(1)
    acc[np.asarray(status.diverged)] = np.nan
    return acc


def _interval(acc):
    """Mean test accuracy over the retrained models with a 95% Student-t interval."""
    from scipy import stats

    a = np.asarray(acc, float)
    a = a[np.isfinite(a)]
    if a.size < 2:
        return float(np.mean(a)) if a.size else float("nan"), float("nan"), float("nan")
    se = a.std(ddof=1) / np.sqrt(a.size)
    if se == 0:   # every model the same accuracy (a t-interval of zero width)
        return float(a.mean()), float(a.mean()), float(a.mean())
    lo, hi = stats.t.interval(0.95, a.size - 1, loc=a.mean(), scale=se)
    return float(a.mean()), float(lo), float(hi)


def analyze(cfg, workdir, runs, log, proxies=("cumulative_sample_loss", "aum"), retrain_models: int = 8,
            retrain_with=("memorization", "cleanlab", "cumulative_sample_loss")):
    """Per noisy variant: precision / recall / F1 of the flags of each method against the truly
    flipped labels (cleanlab flags what ``find_label_issues`` returns; memorization and the
    proxies flag their top k with k = cleanlab's number of flags, the same budget; AUROC of
    each score), then test accuracy (mean over ``retrain_models`` models, 95% t-interval) of
    models trained on all the data with the noisy labels, with the clean labels, and cleaned by
    each method of ``retrain_with``: flagged examples dropped, or relabelled to the
    OUT-majority prediction. Retraining results are cached in ``label_cleaning/*.json``."""
    unknown = [m for m in retrain_with if m not in ("memorization", "cleanlab", *proxies)]
    if unknown:
        raise ValueError(f"label_cleaning: retrain_with {unknown} must be memorization, cleanlab or one of proxies")
    rows, acc_rows = [], []
    cache_dir = workdir / "label_cleaning"
    for vname, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        flipped = id_mask(run, "label_noise", "flipped_ids")
        if not flipped.any():
            log(f"  {vname}: no flipped label; skipped")
            continue
        d = run.config.data
        scores, cl_flags, votes = _flags(run, keep, ok, proxies)
        k = max(1, int(cl_flags.sum()))
        flags = {"cleanlab": cl_flags}
        for name, s in scores.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name != "cleanlab":
                    flags[name] = L.flag_top_k(s, k)
                auroc = noise_auroc(s, flipped)
                pr = L.flag_precision_recall(flags[name], flipped)
            rows.append({"variant": vname, "noise": d.label_noise_kind, "rate": d.label_noise, "method": name,
                         "flagged": pr.num_flagged, "flipped": pr.num_flipped, "precision": pr.precision,
                         "recall": pr.recall, "f1": pr.f1, "auroc": auroc})
        log(f"  {vname}: " + ", ".join(f"{r['method']} P {r['precision']:.2f} R {r['recall']:.2f}"
                                       for r in rows if r["variant"] == vname))
        cache = cache_dir / f"{vname}.json"
        if cache.exists():
            accs = load_json(cache)
        else:
            noisy = np.asarray(run.labels)
            clean = noisy.copy()
            rec = next(t for t in run.dataset["meta"]["transforms"] if t["name"] == "label_noise")
            pos = {int(i): j for j, i in enumerate(np.asarray(run.example_ids))}
            clean[[pos[i] for i in rec["flipped_ids"]]] = rec["original_labels"]
            majority = votes.argmax(1)
            everything = np.ones(len(noisy), bool)
            conds = {"noisy": (noisy, everything), "clean": (clean, everything)}
            for name in retrain_with:
                f = flags[name] & (votes.sum(1) > 0)
                conds[f"{name}_drop"] = (noisy, ~flags[name])
                conds[f"{name}_relabel"] = (np.where(f, majority, noisy), everything)
            accs = {}
            for cname, (y, row) in conds.items():
                accs[cname] = _retrain(cfg, run, y, row, retrain_models, log).tolist()
                log(f"    {vname} {cname}: test accuracy {np.nanmean(accs[cname]):.4f}")
            save_json(cache, accs)
        for cname, a in accs.items():
            mean, lo, hi = _interval(a)
            acc_rows.append({"variant": vname, "noise": d.label_noise_kind, "rate": d.label_noise,
                             "training": cname, "test_accuracy": mean, "low": lo, "high": hi})
    files = {"flags": write_csv(workdir / "flags.csv", rows), "retrain": write_csv(workdir / "retrain.csv", acc_rows)}
    files["f1_figure"] = figure(workdir / "flags_f1.png", lambda ax: _draw_f1(ax, rows))
    files["accuracy_figure"] = figure(workdir / "retrain_accuracy.png", lambda ax: _draw_acc(ax, acc_rows),
                                      size=(7, 4))
    return {"rows": rows, "retrain": acc_rows, "files": files}


def _draw_f1(ax, rows):
    """F1 by noise rate: one colour per method, solid for uniform and dashed for class-conditional noise."""
    for noise, style in (("uniform", "-"), ("class_conditional", "--")):
        for j, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
            sel = sorted((r["rate"], r["f1"]) for r in rows if r["noise"] == noise and r["method"] == method)
            if sel:
                ax.plot(*zip(*sel), style, color=f"C{j}", marker="o", label=f"{method} ({noise})")
    ax.set_xlabel("label noise rate")
    ax.set_ylabel("F1 of the flags")
    ax.legend(fontsize=6)


def _draw_acc(ax, rows):
    trainings = list(dict.fromkeys(r["training"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    w = 0.8 / len(trainings)
    for j, t in enumerate(trainings):
        sel = {r["variant"]: r for r in rows if r["training"] == t}
        xs = [i + j * w for i, v in enumerate(variants) if v in sel]
        ys = [sel[v]["test_accuracy"] for v in variants if v in sel]
        err = np.array([[sel[v]["test_accuracy"] - sel[v]["low"], sel[v]["high"] - sel[v]["test_accuracy"]]
                        for v in variants if v in sel]).T
        ax.bar(xs, ys, width=w, yerr=np.nan_to_num(err), capsize=1.5, label=t)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(variants))], variants, rotation=30, fontsize=6, ha="right")
    ax.set_ylabel("test accuracy")
    lows = [r["low"] for r in rows if np.isfinite(r["low"])]
    if lows:
        ax.set_ylim(min(lows) - 0.02, 1.0)
    ax.legend(fontsize=5, ncol=2)
