"""Unlearning audits with the retrain-from-scratch oracle in the same stack (issue 22; survey open
question 3: does controlled forgetting reduce the privacy risk that memorization creates?).

For each forget-set kind (random, one class, the most memorized examples of an earlier run), one
stack (:func:`jaxmem.runs.unlearning.unlearn_run`): half of the models train on the forget set F
and are then unlearned by every method; the other half never see F (retrained from scratch
without it). Every unlearned model is the target in turn: U-LiRA (Hayes et al. 2024) against
shadow unlearned vs shadow retrained models, the NeurIPS 2023 competition's per-example epsilon
and forget score, a population MIA on F (forget vs test examples), utility (retain, forget and
test accuracy) and cost relative to retraining. Two reference rows: ``original`` (no unlearning:
the models that trained on F, an upper bound on distinguishability) and ``retrain`` (the oracle:
half of the retrained models scored against the other half as if unlearned, U-LiRA ~ 0.5).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.analyses.common import figure, memorization_of, print_rows, run_signals, write_csv
from jaxmem.attacks import unlearning as UA
from jaxmem.attacks.unlearning_epsilon import forget_epsilons, forget_score
from jaxmem.data import build_dataset
from jaxmem.runs import execute, load_run
from jaxmem.runs.unlearning import TRAINED, unlearn_run
from jaxmem.signals.functions import logit_scaled_confidence
from jaxmem.unlearn import FORGET_KINDS, MethodError, forget_set, make_methods

DEFAULT_METHODS = ["finetune", "gradient_ascent", "neggrad_plus", "random_label", "l1_sparse"]


def check_params(methods, forget_kinds, forget_size, forget_class, retain_fraction, unlearned_fraction,
                 block_steps, memorized_run, num_models=None):
    """Validation at the door: one line naming the bad parameter. ``num_models`` (M): the
    audits need >= 3 unlearned models and >= 6 retrained ones (U-LiRA's leave-one-out Gaussians
    need 3 per role; the oracle row splits the retrained models into two halves)."""
    w = "experiment.params"
    try:
        ms = make_methods(methods, f"{w}.methods")
    except MethodError as e:
        raise cfgmod.ConfigError(str(e)) from None
    if not isinstance(forget_kinds, (list, tuple)) or not forget_kinds:
        raise cfgmod.ConfigError(f"{w}.forget_kinds: expected a non-empty list of {', '.join(FORGET_KINDS)}")
    for i, k in enumerate(forget_kinds):
        if k not in FORGET_KINDS:
            raise cfgmod.ConfigError(f"{w}.forget_kinds[{i}]: unknown {k!r} (known: {', '.join(FORGET_KINDS)})")
    if not isinstance(forget_size, int) or forget_size < 1:
        raise cfgmod.ConfigError(f"{w}.forget_size: expected an integer >= 1, got {forget_size!r}")
    if not isinstance(forget_class, int) or forget_class < 0:
        raise cfgmod.ConfigError(f"{w}.forget_class: expected an integer >= 0, got {forget_class!r}")
    if not (0 < retain_fraction <= 1):
        raise cfgmod.ConfigError(f"{w}.retain_fraction: must be in (0, 1], got {retain_fraction!r}")
    if not (0 < unlearned_fraction < 1):
        raise cfgmod.ConfigError(f"{w}.unlearned_fraction: must be in (0, 1), got {unlearned_fraction!r}")
    if not isinstance(block_steps, int) or block_steps < 0:
        raise cfgmod.ConfigError(f"{w}.block_steps: expected an integer >= 0, got {block_steps!r}")
    if num_models is not None and 0 < unlearned_fraction < 1:
        n_u = int(round(num_models * unlearned_fraction))
        if n_u < 3 or num_models - n_u < 6:
            raise cfgmod.ConfigError(
                f"subsets.num_models: {num_models} models with unlearned_fraction {unlearned_fraction} give "
                f"{n_u} unlearned and {num_models - n_u} retrained; the audits need >= 3 unlearned and >= 6 "
                f"retrained (the oracle's two halves of >= 3)")
    if memorized_run and not (Path(memorized_run) / "keep.npy").exists():
        raise cfgmod.ConfigError(f"{w}.memorized_run: {memorized_run} is not a jaxmem run")
    return ms


def _memorization(cfg, workdir: Path, memorized_run: str, log):
    """Feldman-Zhang memorization of every training example from an earlier run (given, or a
    reference run of this config, without attacks, in ``workdir/reference``)."""
    if memorized_run:
        path = Path(memorized_run)
    else:
        path = workdir / "reference"
        ref = dataclasses.replace(cfg, scoring=dataclasses.replace(cfg.scoring, attacks=[]))
        log("[unlearning] reference run (memorization scores for the 'memorized' forget set)")
        execute(ref, path, progress=False, log=log)
    run = load_run(path)
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    return memorization_of(keep, run_signals(run), ok).mem


def _phi(logits, labels):
    return np.asarray(logit_scaled_confidence(np.asarray(logits, np.float64), np.asarray(labels)))


def audit_stage(unl_logits, ret_logits, keep_u, forget, labels, test_logits_u, test_labels):
    """The audit of one method's unlearned models (pure, from arrays): U-LiRA, epsilons, forget
    score, population MIA and utility. ``unl_logits`` [U, N, C] / ``ret_logits`` [R, N, C]: the
    unlearned and retrained models' logits; ``keep_u`` [U, N]: the unlearned models' training
    sets (their retain set is ``keep_u & ~forget``); ``test_logits_u`` [U, n, C]."""
    fu = _phi(unl_logits[:, forget], labels[forget])
    fr = _phi(ret_logits[:, forget], labels[forget])
    ul = UA.ulira(fu, fr)
    eps = forget_epsilons(fu, fr)
    pop = UA.population_mia(fu, _phi(test_logits_u, test_labels))
    retain_mask = keep_u & ~forget[None]
    acc = {"retain": UA.accuracy(unl_logits, labels, retain_mask),
           "forget": UA.accuracy(unl_logits, labels, forget),
           "test": UA.accuracy(test_logits_u, test_labels)}
    row = {"ulira_acc": ul.accuracy, "ulira_ci_low": ul.ci[0], "ulira_ci_high": ul.ci[1], "ulira_auc": ul.auc,
           "forget_score": forget_score(eps, fu.shape[0]), "eps_median": float(np.nanmedian(eps))}
    m, lo, hi = UA.mean_ci(pop)
    row.update(pop_mia_auc=m, pop_mia_ci_low=lo, pop_mia_ci_high=hi)
    for k, v in acc.items():
        m, lo, hi = UA.mean_ci(v)
        row.update({f"{k}_acc": m, f"{k}_acc_ci_low": lo, f"{k}_acc_ci_high": hi})
    return row


def analyze(cfg, workdir, runs, log, methods=tuple(DEFAULT_METHODS), forget_kinds=("random", "class", "memorized"),
            forget_size: int = 50, forget_class: int = 0, retain_fraction: float = 1.0,
            unlearned_fraction: float = 0.5, block_steps: int = 0, memorized_run: str = ""):
    """Methods x forget-set kinds: one row each (plus ``original`` and ``retrain`` per kind) with
    U-LiRA accuracy and its 95% interval over targets, U-LiRA AUC, the competition's forget score
    and median epsilon, population-MIA AUC, retain / forget / test accuracy (mean and interval
    over targets), cost relative to retraining (gradient evaluations; and measured seconds per
    model, compilation included). Figure: U-LiRA accuracy (forget quality; 0.5 ideal) against
    test accuracy, per method and kind."""
    methods = list(methods)
    ms = check_params(methods, list(forget_kinds), forget_size, forget_class, retain_fraction,
                      unlearned_fraction, block_steps, memorized_run, cfg.subsets.num_models)
    workdir = Path(workdir)
    cfg = dataclasses.replace(cfg, experiment=cfgmod.schema.ExperimentConfig())   # the runs' own config
    ds = build_dataset(cfg)
    labels, test_labels = np.asarray(ds.y_train), np.asarray(ds.y_test)
    scores = _memorization(cfg, workdir, memorized_run, log) if "memorized" in forget_kinds else None
    rows = []
    for kind in forget_kinds:
        try:
            forget = forget_set(kind, cfg.seed, labels, forget_size, forget_class=forget_class, scores=scores)
        except ValueError as e:
            raise cfgmod.ConfigError(f"experiment.params.{e}") from None
        log(f"[unlearning] forget set '{kind}': {int(forget.sum())} examples")
        res = unlearn_run(cfg, workdir / kind, methods=methods, forget=forget, retain_fraction=retain_fraction,
                          unlearned_fraction=unlearned_fraction, block_steps=block_steps, dataset=ds, log=log)
        unl, keep = res["unlearned"], res["keep"]
        ok_t = ~res["diverged"][TRAINED]
        ret_idx = np.flatnonzero(~unl & ok_t)
        u_idx = np.flatnonzero(unl)
        lg, tl = res["logits"], res["test_logits"]
        ret = lg[TRAINED][ret_idx]
        per_model_train = res["seconds"][TRAINED] / len(unl)
        base = {"forget_kind": kind, "forget_size": int(forget.sum())}
        # the oracle: retrained models, half as "unlearned", scored against the other half
        h = len(ret_idx) // 2
        a, b = ret_idx[:h], ret_idx[h:]
        r = audit_stage(lg[TRAINED][a], lg[TRAINED][b], keep[a], forget, labels, tl[TRAINED][a], test_labels)
        rows.append({**base, "method": "retrain", **r, "cost_vs_retrain": 1.0, "seconds_vs_retrain": 1.0})
        ok_u = ok_t[u_idx]
        r = audit_stage(lg[TRAINED][u_idx[ok_u]], ret, keep[u_idx[ok_u]], forget, labels, tl[TRAINED][u_idx[ok_u]],
                        test_labels)
        rows.append({**base, "method": "original", **r, "cost_vs_retrain": 0.0, "seconds_vs_retrain": 0.0})
        for m in ms:
            ok = ~res["diverged"][m.name] & ok_u
            r = audit_stage(lg[m.name][ok], ret, keep[u_idx[ok]], forget, labels, tl[m.name][ok], test_labels)
            rows.append({**base, "method": m.name, **r, "diverged": int((~ok).sum()),
                         "cost_vs_retrain": res["meta"][m.name]["cost_vs_retrain"],
                         "seconds_vs_retrain": res["seconds"][m.name] / len(u_idx) / per_model_train})
            log(f"  {kind:9s} {m.name:16s} U-LiRA {r['ulira_acc']:.3f} [{r['ulira_ci_low']:.3f}, "
                f"{r['ulira_ci_high']:.3f}]  pop-MIA {r['pop_mia_auc']:.3f}  test acc {r['test_acc']:.3f}")
    files = {"table": write_csv(workdir / "unlearning.csv", rows)}

    def draw(ax):
        marks = dict(zip(FORGET_KINDS, "os^"))
        names = ["retrain", "original"] + [m.name for m in ms]
        colors = {n: f"C{i}" for i, n in enumerate(names)}
        for row in rows:
            ax.errorbar(row["test_acc"], row["ulira_acc"],
                        yerr=[[row["ulira_acc"] - row["ulira_ci_low"]], [row["ulira_ci_high"] - row["ulira_acc"]]],
                        fmt=marks.get(row["forget_kind"], "o"), color=colors[row["method"]], ms=5, capsize=2)
        for n in names:
            ax.plot([], [], "o", color=colors[n], label=n)
        for k in forget_kinds:
            ax.plot([], [], marks[k], color="gray", label=f"forget: {k}")
        ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.set_xlabel("test accuracy (utility)")
        ax.set_ylabel("U-LiRA accuracy (0.5 = like retraining)")
        ax.legend(fontsize=6, ncol=2)

    files["forget_vs_utility"] = figure(workdir / "forget_vs_utility.png", draw, size=(6, 4.2))
    show = ["forget_kind", "method", "ulira_acc", "ulira_ci_low", "ulira_ci_high", "forget_score",
            "pop_mia_auc", "retain_acc", "forget_acc", "test_acc", "cost_vs_retrain"]
    print_rows(rows, show)
    return {"rows": rows, "files": files}
