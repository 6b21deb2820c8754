"""Scoring a finished run: signals (streamed from the stored logits), estimators, attacks (the one
driver), DP accounting, and every table and figure a report shows, written to ``results/`` and
``summary.json``, committed as one set (:func:`jaxmem.runs.store.begin_scoring`, then the
results, then :func:`jaxmem.runs.store.commit_scoring` writes the summary):

    results/memorization.csv        every training example, ranked (rank 1: the most memorized; Feldman & Zhang 2020)
    results/attacks.json            per-target attack metrics, chosen parameters, summary, and the
                                    audit specification scored with ("audit": jaxmem.attacks.AuditSpec)
    results/influence.csv           with scoring.influence_top_k: each test example's top-k
    results/convergence.csv         the estimate's convergence as models are added (>= 4 models)
    results/examples.csv            the most memorized examples, with the OUT models' majority label
    results/examples_inputs.npy     their inputs (when the training data is at hand)
    results/scores/                 every target's per-example attack scores (jaxmem.runs.examples)
    results/memorization_hist.png, results/roc.png
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem import estimators
from jaxmem.attacks import AuditSpec, evaluate
from jaxmem.attacks.plot import plot_roc
from jaxmem.attacks.registry import get
from jaxmem.estimators import InsufficientModelsWarning, convergence
from jaxmem.estimators.label_noise import out_of_sample_votes
from jaxmem.io import RunError, atomic_path, load_json, remove_stale_tmp, save_json, save_npy, save_text
from jaxmem.privacy import run_epsilon
from jaxmem.runs import integrity, preflight, provenance
from jaxmem.runs.examples import write_scores
from jaxmem.runs.interop import check_population, run_inputs
from jaxmem.runs.lock import run_lock
from jaxmem.runs.score_lm import score_lm
from jaxmem.runs.store import begin_scoring, commit_scoring, load_run
from jaxmem.runs.task import stored_task
from jaxmem.signals import compute_signals, rmia_p_spec

__all__ = ["score", "majority_out", "EXAMPLES_SHOWN"]

#: Most memorized examples tabulated (and drawn by the report).
EXAMPLES_SHOWN = 16


def _signal_names(cfg):
    """Signals of the training set and of the population (test set) that scoring reads."""
    needs = [n for a in cfg.scoring.attacks for n in get(a).needs]
    train = ["correct"] + [n for n in needs if not n.endswith("_pop")]
    pop = ["correct_pop", "correct_query_average_pop"] + [n for n in needs if n.endswith("_pop")]
    return train + pop


def score(workdir, *, log=print, dataset=None, overrides=(), verify: str = "auto",
          allow_mixed_shards: bool = False) -> dict:
    """Estimators and attacks on a finished run; writes results/ and summary.json.

    Holds the run's lock (:func:`jaxmem.runs.lock.run_lock`). The run's arrays are checked
    against their checksums first (:func:`jaxmem.runs.integrity.ensure_intact`; ``verify="full"``
    reads every byte of the large ones); a damaged assembled array with intact shards is rebuilt.
    ``overrides``: ``scoring.*`` settings (``--set`` syntax) to score with; ``config.json`` takes
    them only once scoring has finished (a killed rescoring leaves the run as it was; the summary
    records the scoring settings it was computed with). ``dataset``: the run's training data when
    at hand (else rebuilt from the config, if possible), for the inputs of the most memorized
    examples."""
    workdir = Path(workdir)
    bad = [o for o in overrides if not o.startswith("scoring.")]
    if bad:
        raise cfgmod.ConfigError(f"{bad[0]}: jaxmem score takes scoring.* overrides only")
    if verify not in ("auto", "full"):
        raise ValueError(f'verify must be "auto" or "full", got {verify!r}')
    if not workdir.is_dir():
        load_run(workdir)        # (the error of a missing run, before a folder is made to lock)
    with run_lock(workdir):
        run = load_run(workdir)
        cfg = run.config
        scorer = _SCORERS[stored_task(run).name]
        if overrides and not scorer.takes_overrides:
            raise cfgmod.ConfigError(f"{overrides[0]}: a language-model run is scored with the "
                                     f"settings it was run with (no scoring overrides)")
        if overrides:   # (config.json keeps what it holds: an imported run's only what is known)
            stored = cfgmod.apply_overrides(load_json(workdir / "config.json"), overrides)
            cfg = cfgmod.from_dict(stored)
        scorer.check(run, cfg)   # (before anything is allocated)
        remove_stale_tmp(workdir, ("results", "results/scores"))
        integrity.ensure_intact(workdir, run.num_models, full=verify == "full", log=log,
                                allow_mixed=allow_mixed_shards)
        # results/ and summary.json commit as one set: a new scoring id first, the summary that
        # carries it last (a kill between leaves ids that differ, which the readers report)
        sid = begin_scoring(workdir, cfgmod.to_dict(cfg)["scoring"])
        summary = scorer.score(workdir, run, cfg, log, dataset)
        if overrides:   # (before the commit: a kill between leaves the run flagged, not mixed)
            save_json(workdir / "config.json", stored)
        commit_scoring(workdir, summary, sid)
        integrity.record_missing(workdir, log)
        provenance.append(workdir, provenance.record(devices=False))
    return summary


class _ClassifierScoring:
    """A classifier's run (:data:`jaxmem.runs.task.CLASSIFICATION_RUN`): scored from its logits."""

    takes_overrides = True

    @staticmethod
    def check(run, cfg) -> None:
        """RMIA's population and the memory at the door (test_logits opened before the scoring
        begins: a bad file changes nothing)."""
        check_population(cfg.scoring.attacks, len(run.test_labels))
        preflight.check_scoring(cfg, len(run.labels), int(run.test_logits.shape[1]),
                                int(run.logits.shape[-1]))

    @staticmethod
    def score(workdir, run, cfg, log, dataset) -> dict:
        return _score(workdir, run, cfg, log, dataset)


class _LanguageModelScoring:
    """A causal language model's run (:data:`jaxmem.runs.lm.LANGUAGE_MODEL_RUN`): scored from its
    per-token signals by :func:`jaxmem.runs.score_lm.score_lm`, with the settings it ran with."""

    takes_overrides = False

    @staticmethod
    def check(run, cfg) -> None:
        """Nothing to check before scoring (its memory is the training's)."""

    @staticmethod
    def score(workdir, run, cfg, log, dataset) -> dict:
        return score_lm(workdir, log=log)


#: How each run task (:func:`jaxmem.runs.task.stored_task`) is scored.
_SCORERS = {"classification": _ClassifierScoring, "causal_lm": _LanguageModelScoring}


def _score(workdir: Path, run, cfg, log, dataset) -> dict:
    keep, labels, test_labels = run.keep, run.labels, run.test_labels
    diverged = run.diverged
    ok = ~diverged
    res = workdir / "results"
    res.mkdir(exist_ok=True)
    rc = cfg.scoring.rmia
    specs = {"p": rmia_p_spec(rc.signal, rc.temperature, rc.margin, rc.order,
                              every_query=rc.aggregate == "vote")}   # else p of the identity query
    t0 = time.time()
    sg = compute_signals(run.logits, labels, _signal_names(cfg), test_logits=run.test_logits,
                         test_labels=test_labels, specs=specs,
                         exact=("p",))   # streamed, float32 but RMIA's p (float64, as the attacks compute)
    log(f"scoring: signals of {len(keep)} models in {time.time() - t0:.1f} s")
    t0 = time.time()
    correct = sg["correct"]
    test_acc = sg["correct_pop"].mean(1) if len(test_labels) else np.full(len(keep), np.nan)
    test_acc_tta = (sg["correct_query_average_pop"].mean(1)
                    if len(test_labels) and "correct_query_average_pop" in sg else None)
    mem = estimators.memorization(keep, correct, model_mask=ok)
    ids = run.example_ids
    order = np.argsort(-np.nan_to_num(mem.mem, nan=-np.inf), kind="stable")
    lines = ["rank,example_id,index,label,mem,stderr,n_in,n_out"]
    for r, i in enumerate(order):
        lines.append(f"{r + 1},{ids[i]},{i},{labels[i]},{mem.mem[i]:.6g},{mem.stderr[i]:.6g},"
                     f"{mem.n_in[i]},{mem.n_out[i]}")
    save_text(res / "memorization.csv", "\n".join(lines) + "\n")
    influence_summary = None
    if cfg.scoring.influence_top_k and len(test_labels):
        influence_summary = _influence_table(res / "influence.csv", keep, sg["correct_pop"], ok,
                                             cfg.scoring.influence_top_k, run, mem)
    _convergence_table(res / "convergence.csv", keep, correct, ok)
    _examples_table(res, run, mem, order[:EXAMPLES_SHOWN], ok, dataset)
    log(f"scoring: estimators in {time.time() - t0:.1f} s")
    t0 = time.time()

    attack_summary, curves = {}, {}
    if cfg.scoring.attacks:
        spec = AuditSpec.from_scoring(cfg.scoring)   # the one audit policy (and the analyses')
        ev = evaluate(sg, keep, spec=spec, model_mask=ok)
        curves = ev.curves()
        if ev.scores is not None:
            write_scores(res / "scores", ev, ids, cfg.signals.dtype)
        else:   # more than spec.max_kept_scores scores: the metrics only
            log(f"scoring: the per-example attack scores are not kept ({len(ev.targets)} targets x "
                f"{keep.shape[1]} examples > {spec.max_kept_scores})")
            shutil.rmtree(res / "scores", ignore_errors=True)
        # targets, excluded models, per-target metrics and scored fractions, params (RMIA's a),
        # summary (means over the n_targets targets where defined); undefined numbers are null
        stored = {**ev.to_json(), "audit": spec.to_json()}   # the spec: RMIA's tuning protocol...
        save_json(res / "attacks.json", stored)
        attack_summary = stored["summary"]
        log(f"scoring: {len(cfg.scoring.attacks)} attacks on {len(ev.targets)} targets in "
            f"{time.time() - t0:.1f} s")
    elif (res / "scores").exists():
        shutil.rmtree(res / "scores")
    figures = {}
    try:
        figures = _plots(res, mem, curves)
    except Exception as e:  # plotting is a convenience; never lose a scored run to it
        log(f"warning: plotting failed: {e}")
    summary = _summary(cfg, workdir, run, keep, ok, diverged, correct, test_acc, test_acc_tta, mem,
                       order, attack_summary, res, figures)
    if influence_summary is not None:
        summary["influence"] = influence_summary
        summary["files"]["influence"] = str(res / "influence.csv")
    if cfg.scoring.attacks and (res / "scores").exists():
        summary["files"]["scores"] = str(res / "scores")
    if cfg.train.dp.enabled:
        summary["dp"] = run_epsilon(cfg.train, keep.sum(1).mean())
    summary["scoring"] = cfgmod.to_dict(cfg)["scoring"]   # the settings this summary was made with
    return summary   # (written by score(), with the scoring's id: jaxmem.runs.store.commit_scoring)


def _summary(cfg, workdir, run, keep, ok, diverged, correct, test_acc, test_acc_tta, mem, order,
             attack_summary, res, figures) -> dict:
    shard_meta = [load_json(d / "meta.json") for d in sorted((workdir / "shards").glob("models-*"))
                  if (d / "meta.json").exists()]
    train_seconds = float(sum(m["seconds"] for m in shard_meta if m["models"][1] <= len(keep)))
    finite = np.isfinite(mem.mem)
    ids = run.example_ids
    return {
        "name": cfg.name,
        "num_models": int(keep.shape[0]),
        "num_examples": int(keep.shape[1]),
        "num_test": int(len(run.test_labels)),
        "test_accuracy": float(test_acc[ok].mean()) if ok.any() else None,   # (no usable model)
        # test-time augmentation over the signal queries (identity + flip: airbench's mirror TTA)
        "test_accuracy_query_average": (float(test_acc_tta[ok].mean()) if test_acc_tta is not None
                                        and ok.any() else None),
        "train_accuracy_in": (float((correct * keep)[ok].sum() / keep[ok].sum()) if keep[ok].any()
                              else None),
        "train_seconds": train_seconds,
        "models_per_second": float(keep.shape[0] / train_seconds) if train_seconds else None,
        "diverged": {"count": int(diverged.sum()), "models": np.flatnonzero(diverged).tolist()},
        "memorization": {
            "mean": float(np.nanmean(mem.mem)) if finite.any() else None,
            "mean_stderr": float(np.nanmean(mem.stderr)) if finite.any() else None,
            "top10": [ids[i].item() for i in order[:10]],   # (int, or str for file-name ids)
            "top10_index": [int(i) for i in order[:10]],
            "num_nan": int((~finite).sum()),
        },
        "attacks": attack_summary,
        "files": {"memorization": str(res / "memorization.csv"), **figures},
    }


def _influence_table(path: Path, keep, test_correct, ok, k: int, run, mem,
                     threshold: float = 0.15) -> dict:
    """Feldman & Zhang (2020) Eq. 2 on the test set: each test example's ``k`` most influential
    training examples (with standard errors) to ``path`` as CSV, and a summary: how many test
    examples have a training example of influence >= ``threshold`` (0.15, the level of their
    high-influence pairs, as we recall the paper: the text was not at hand to check), how many
    of those come from a training example memorized >= 0.25, and the 10 pairs of largest
    influence (the test examples ranked by their largest influence, as in their
    ``mnist_infl_mem.py`` demo)."""
    if k > keep.shape[1]:
        raise RunError(f"scoring.influence_top_k: {k} is more than the {keep.shape[1]} training "
                       f"examples")

    top = estimators.top_influencers(keep, test_correct, k, model_mask=ok, dtype="float32",
                                     return_stderr=True)
    ids, tids = run.example_ids, run.test_ids
    labels, tlabels = run.labels, run.test_labels
    lines = ["test_index,test_id,test_label,rank,train_index,train_id,train_label,influence,stderr,"
             "train_mem"]
    for j in range(top.indices.shape[0]):
        for r in range(k):
            i = int(top.indices[j, r])
            if i < 0:   # fewer than k training examples with an IN and an OUT model
                break
            lines.append(f"{j},{tids[j]},{tlabels[j]},{r + 1},{i},{ids[i]},{labels[i]},"
                         f"{top.values[j, r]:.6g},{top.stderr[j, r]:.6g},{mem.mem[i]:.6g}")
    save_text(path, "\n".join(lines) + "\n")
    best = np.nan_to_num(top.values[:, 0], nan=-np.inf)
    strong = best >= threshold
    with np.errstate(invalid="ignore"):   # any of the k pairs over the threshold
        strong_mem = ((top.values >= threshold) & (mem.mem[top.indices] >= 0.25)
                      & (top.indices >= 0)).any(1)
    order = np.argsort(-best, kind="stable")[:10]
    return {"top_k": int(k), "threshold": threshold,
            "test_examples_with_a_pair": int(strong.sum()),
            "test_examples_with_a_pair_mem_0.25": int(strong_mem.sum()),
            "top10_pairs": [{"test_index": int(j), "train_index": int(top.indices[j, 0]),
                             "influence": float(top.values[j, 0])} for j in order if np.isfinite(best[j])]}


def majority_out(logits0, keep, ok) -> np.ndarray:
    """Per example: the most common argmax among the non-diverged models that did not train on it
    (-1 when there is none; the smallest label on ties). ``logits0`` [M, N, C]. The OUT models'
    votes are :func:`jaxmem.estimators.label_noise.out_of_sample_votes`'s."""
    with warnings.catch_warnings():   # (an example no OUT model votes on is -1 here)
        warnings.simplefilter("ignore", InsufficientModelsWarning)
        votes = out_of_sample_votes(logits0, np.asarray(keep, bool), model_mask=np.asarray(ok, bool))
    return np.where(votes.sum(1) > 0, votes.argmax(1), -1)


def _convergence_table(path: Path, keep, correct, ok) -> None:
    """How the memorization estimate settles as models are added
    (:func:`jaxmem.estimators.convergence`); written for runs of 4 models or more."""
    if ok.sum() < 4:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = convergence(keep, correct, model_mask=ok)
    lines = ["models,spearman,rmse,mean_stderr,frac_nan"]
    lines += [f"{int(s)},{float(r)!r},{float(e)!r},{float(m)!r},{float(f)!r}" for s, r, e, m, f in
              zip(c["sizes"], c["spearman"], c["rmse"], c["mean_stderr"], c["frac_nan"])]
    save_text(path, "\n".join(lines) + "\n")


def _examples_table(res: Path, run, mem, order, ok, dataset) -> None:
    """The most memorized examples: id, given label, the OUT models' majority label (only their
    logits are read: a run's may be tens of GB), memorization; and their inputs when the
    training data is at hand."""
    keep, labels, ids = np.asarray(run.keep), np.asarray(run.labels), np.asarray(run.example_ids)
    pred = majority_out(np.asarray(run.logits[:, order, 0]), keep[:, order], ok)
    lines = ["rank,example_id,index,label,predicted_out_majority,mem,stderr"]
    lines += [f"{r + 1},{ids[i]},{i},{labels[i]},{pred[r]},{float(mem.mem[i])!r},"
              f"{float(mem.stderr[i])!r}" for r, i in enumerate(order)]
    save_text(res / "examples.csv", "\n".join(lines) + "\n")
    if dataset is None:   # an imported run's x_train.npy, or the data rebuilt when at hand
        x = run_inputs(run)[0]
    else:
        x = dataset.x_train
    if x is not None:
        save_npy(res / "examples_inputs.npy", np.asarray(x[order]))
    elif (res / "examples_inputs.npy").exists():
        (res / "examples_inputs.npy").unlink()


def _plots(res: Path, mem, curves) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    m = mem.mem[np.isfinite(mem.mem)]
    ax.hist(m, bins=40, log=True)
    ax.set_xlabel("Feldman–Zhang memorization")
    ax.set_ylabel("training examples (log scale)")
    ax.set_title(f"{m.size} examples" + (f" ({int((~np.isfinite(mem.mem)).sum())} NaN: no IN or "
                                         f"no OUT model)" if m.size < mem.mem.size else ""),
                 fontsize=8)
    fig.tight_layout()
    with atomic_path(res / "memorization_hist.png", ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    out["memorization_hist"] = str(res / "memorization_hist.png")
    if curves:
        plot_roc(curves, res / "roc.png")
        out["roc"] = str(res / "roc.png")
    return out
