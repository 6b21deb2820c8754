"""Unlearning audits: pure functions of arrays (signals of unlearned and retrained models on the
forget set), so that they serve unlearned models trained anywhere.

An unlearning audit asks, example by example, whether a model that trained on the forget set F and
was then unlearned can be told apart from a model retrained from scratch without F:

* :func:`ulira`: U-LiRA (Hayes, Shumailov, Triantafillou, Khalifa & Papernot 2024, "Inexact
  unlearning needs more careful evaluations to avoid a false sense of privacy"): per example,
  Gaussians fitted to the signal of shadow unlearned and shadow retrained models; the target's
  log likelihood ratio decides "unlearned" (> 0) or "retrained"; every model the target in turn
  (leave-one-out shadows), the accuracy balanced over the two roles, with a 95% interval
  (jackknife over models). 0.5 = unlearning indistinguishable from retraining.
* :func:`~jaxmem.attacks.unlearning_epsilon.forget_epsilons` /
  :func:`~jaxmem.attacks.unlearning_epsilon.forget_score` (:mod:`jaxmem.attacks.unlearning_epsilon`):
  the NeurIPS 2023 machine unlearning competition's per-example epsilon from an attack's FPR/FNR and its bucketed forget score
  (google-deepmind/unlearning_evaluation, ``metric.py``: ``_get_epsilons`` and
  ``compute_forget_score_from_confs``).
* :func:`population_mia`: a population-level MIA on the forget set (forget vs test examples,
  one model's signal), which Hayes et al. show overstates forgetting.
* :func:`accuracy`, :func:`mean_ci`: utility and intervals over targets.
* :func:`unlearning_audit`: all of it for a user's own models, from ``(signals, keep, forget)``.

Signals: any per-example score where higher means "more like a member", e.g. the logit-scaled
confidence phi (LiRA's and the competition's signal).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from jaxmem.attacks.metrics import roc_auc
from jaxmem.attacks.unlearning_epsilon import DELTA, _warn, forget_epsilons, forget_score

__all__ = ["ULiRA", "ulira", "population_mia", "accuracy", "mean_ci", "split_roles", "unlearning_audit"]

Z95 = 1.959963984540054


def mean_ci(values: Real[ArrayLike, " ..."], z: float = Z95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of finite ``values`` with a normal interval ``mean ± z·s/√n``.

    Args:
      values: [...] numbers (non-finite ones are left out).
      z: the normal quantile of the interval (95%).

    Returns:
      ``(mean, low, high)`` (s with ddof=1); NaN (with a warning) for the bounds with fewer than 2
      finite values, and for all three with none.

    Example:
      >>> mean_ci([1.0, 3.0], z=1.0)
      (2.0, 1.0, 3.0)
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        _warn("mean_ci: no finite value; the mean and its interval are NaN")
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size < 2:
        _warn("mean_ci: one finite value; its interval is NaN")
        return m, float("nan"), float("nan")
    h = z * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m, m - h, m + h


def split_roles(
    keep: Bool[ArrayLike, "M N"], forget: Bool[ArrayLike, " N"]
) -> tuple[Bool[np.ndarray, " M"], Bool[np.ndarray, " M"]]:
    """Roles of the models of a stack from its design.

    Args:
      keep: [M, N] bool, each model's training set (before unlearning).
      forget: [N] bool, the forget set F.

    Returns:
      ``(unlearned [M] bool, retrained [M] bool)``: unlearned models trained on all of F
      (``keep[m, F]`` all True), retrained models on none of it.

    Raises:
      ValueError: a model that trained on part of F only.
    """
    keep, forget = np.asarray(keep, bool), np.asarray(forget, bool)
    inF = keep[:, forget]
    unl, ret = inF.all(1), ~inF.any(1)
    bad = np.flatnonzero(~unl & ~ret)
    if bad.size:
        raise ValueError(f"keep: model {bad[0]} trained on part of the forget set only "
                         f"({int(inF[bad[0]].sum())} of {int(forget.sum())} examples)")
    return unl, ret


@dataclass
class ULiRA:
    """U-LiRA with every model the target in turn.

    ``scores_unlearned`` [U, F] / ``scores_retrained`` [R, F]: log likelihood ratios (unlearned
    vs retrained) of each target on each example (NaN where a Gaussian is degenerate);
    ``target_accuracy_unlearned`` [U] / ``_retrained`` [R]: each target's accuracy over its
    scored examples (a tie, score 0, counts one half); ``accuracy``: the balanced accuracy
    ``(mean_U + mean_R) / 2`` with its 95% interval ``ci`` (jackknife over models, see
    :func:`ulira`); ``per_example``: [F] balanced accuracy of each example over targets;
    ``auc``: the ROC AUC over all (target, example) pairs."""

    scores_unlearned: np.ndarray
    scores_retrained: np.ndarray
    target_accuracy_unlearned: np.ndarray
    target_accuracy_retrained: np.ndarray
    accuracy: float
    ci: tuple
    per_example: np.ndarray
    auc: float


def _loo_gauss(x):
    """[n, F] -> leave-one-out means and (population) stds [n, F]: row j without model j.
    Sums of the signals shifted by the first model's (no cancellation: identical signals give a
    standard deviation of exactly 0, a degenerate Gaussian, not ~1e-6 from rounding)."""
    n = x.shape[0]
    c = x - x[:1]
    s1, s2 = c.sum(0), (c * c).sum(0)
    d = (s1[None] - c) / (n - 1)
    var = (s2[None] - c * c) / (n - 1) - d**2
    return x[:1] + d, np.sqrt(np.maximum(var, 0.0))


def _log_normal(x, mu, sd):
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    return np.where(sd > 0, out, np.nan)


def _ulira_core(u, r):
    """Scores, per-target correctness [U, F] / [R, F] (NaN: unscored) and the balanced accuracy."""
    U, R = u.shape[0], r.shape[0]
    mu_u, sd_u = _loo_gauss(u)
    mu_r, sd_r = _loo_gauss(r)
    pu, pr = np.arange(U) % R, np.arange(R) % U          # each target's paired model of the other role
    su = _log_normal(u, mu_u, sd_u) - _log_normal(u, mu_r[pu], sd_r[pu])
    sr = _log_normal(r, mu_u[pr], sd_u[pr]) - _log_normal(r, mu_r, sd_r)
    cu = np.where(np.isnan(su), np.nan, (su > 0) + 0.5 * (su == 0))
    cr = np.where(np.isnan(sr), np.nan, (sr < 0) + 0.5 * (sr == 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        au, ar = np.nanmean(cu, 1), np.nanmean(cr, 1)
        acc = 0.5 * (np.nanmean(au) + np.nanmean(ar))
    return su, sr, cu, cr, au, ar, float(acc)


def ulira(unlearned: Real[ArrayLike, "U F"], retrained: Real[ArrayLike, "R F"], *, z: float = Z95) -> ULiRA:
    """U-LiRA (Hayes et al. 2024) with every model the target in turn.

    For target ``t`` and forget example ``i``, Gaussians ``N(mu_U, sd_U)`` and ``N(mu_R, sd_R)``
    are fitted (mean and population standard deviation) to the signal on ``i`` of the shadow
    unlearned and shadow retrained models; the target's score is
    ``log N(s_ti; mu_U, sd_U) - log N(s_ti; mu_R, sd_R)``, "unlearned" when > 0. Leave-one-out on
    both sides: the target is left out of its own role, and its paired model (the one of the same
    index modulo the role's size) out of the other, so that both Gaussians rest on one model
    fewer. (Left out of its own role only, the target's role would be fitted on fewer models and
    so more narrowly: a bias towards the other role, ~0.4 with 3 + 3 models for identically
    distributed roles; with both sides the two roles are symmetric, and for the oracle
    (identically distributed roles of equal size) the expected accuracy is exactly 0.5.)

    The interval: the accuracy ± ``z`` jackknife standard errors over models (each model of
    either role deleted in turn, ``se² = (n-1)/n Σ (acc_j - mean)²``, n = U + R). Targets share
    their shadows, so the spread of per-target accuracies understates the uncertainty (a normal
    interval over targets covered 0.5 in ~84% of simulated oracles of 8 + 8 models with per-model
    effects; the jackknife's is conservative there, ~99%).

    Args:
        unlearned: [U, F] signals of the unlearned models on the forget set (U >= 3; the
            interval needs U >= 4).
        retrained: [R, F] signals of the retrained models (R >= 3; the interval R >= 4).
        z: the interval's normal quantile (95%).

    Returns:
        :class:`ULiRA`.

    Raises:
        ValueError: shapes that differ in F, or fewer than 3 models of a role.

    References:
        Hayes et al. (2024), "Inexact unlearning needs more careful evaluations to avoid a false
        sense of privacy".
    """
    u = np.asarray(unlearned, np.float64)
    r = np.asarray(retrained, np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"ulira: unlearned {u.shape} and retrained {r.shape} must be [models, F] with the same F")
    if u.shape[0] < 3 or r.shape[0] < 3:
        raise ValueError(f"ulira: needs >= 3 unlearned and >= 3 retrained models (leave-one-out Gaussians), "
                         f"got {u.shape[0]} and {r.shape[0]}")
    su, sr, cu, cr, au, ar, acc = _ulira_core(u, r)
    nan = int(np.isnan(su).sum() + np.isnan(sr).sum())
    if nan:
        _warn(f"ulira: {nan} (target, example) scores are NaN: a shadow Gaussian has zero variance "
              f"(identical signals)")
    if not np.isfinite(acc):
        _warn("ulira: no target of a role has a scored example; the accuracy is NaN")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_example = 0.5 * (np.nanmean(cu, 0) + np.nanmean(cr, 0))
    ci = (float("nan"), float("nan"))
    if u.shape[0] < 4 or r.shape[0] < 4:
        _warn("ulira: the jackknife interval needs >= 4 models of each role; it is NaN")
    elif np.isfinite(acc):
        jack = np.array([_ulira_core(np.delete(u, j, 0), r)[-1] for j in range(u.shape[0])]
                        + [_ulira_core(u, np.delete(r, j, 0))[-1] for j in range(r.shape[0])])
        n = jack.size
        h = z * math.sqrt((n - 1) / n * np.sum((jack - jack.mean()) ** 2))
        ci = (acc - h, acc + h)
    scores = np.concatenate([su.ravel(), sr.ravel()])
    members = np.concatenate([np.ones(su.size, bool), np.zeros(sr.size, bool)])
    return ULiRA(su, sr, au, ar, float(acc), (float(ci[0]), float(ci[1])), per_example,
                 roc_auc(scores, members))


def population_mia(forget_signal: Real[ArrayLike, "T F"], test_signal: Real[ArrayLike, "T K"]) -> Float[np.ndarray, " T"]:
    """A population-level MIA on the forget set: per target model, the ROC AUC of its signal
    separating forget examples (positives) from test examples (negatives); 0.5 looks forgotten.

    Args:
        forget_signal: [T, F] each target's signal on the forget set.
        test_signal: [T, K] on K test examples.

    Returns:
        [T] AUCs.

    References:
        Hayes et al. (2024), "Inexact unlearning needs more careful evaluations".
    """
    f = np.asarray(forget_signal, np.float64)
    t = np.asarray(test_signal, np.float64)
    members = np.concatenate([np.ones(f.shape[1], bool), np.zeros(t.shape[1], bool)])
    return np.array([roc_auc(np.concatenate([a, b]), members) for a, b in zip(f, t)])


def accuracy(logits: Real[ArrayLike, "T K C"], labels: Real[ArrayLike, " K"],
             mask: Bool[ArrayLike, "*_T K"] | None = None) -> Float[np.ndarray, " T"]:
    """Accuracy of each model's argmax on the examples of ``mask``.

    Args:
        logits: [T, K, C].
        labels: [K] int.
        mask: [K] bool or [T, K] bool (default: all).

    Returns:
        [T] float64 accuracies; NaN (with a warning) for a model whose mask is empty.
    """
    lg = np.asarray(logits)
    y = np.asarray(labels)
    correct = lg.argmax(-1) == y[None]
    m = np.ones(correct.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), correct.shape)
    n = m.sum(1)
    if (n == 0).any():
        _warn("accuracy: a model has no example in the mask; its accuracy is NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (correct & m).sum(1) / np.maximum(n, 1), np.nan)


def unlearning_audit(signals: Real[ArrayLike, "M N"], keep: Bool[ArrayLike, "M N"], forget: Bool[ArrayLike, " N"], *,
                     test_signals: Real[ArrayLike, "M K"] | None = None, delta: float = DELTA,
                     rules: str = "grid") -> dict:
    """The audit of a user's own unlearned models, from arrays: the models whose ``keep`` row
    holds all of the forget set trained on it and were then unlearned; those whose row holds
    none of it were retrained without it (:func:`split_roles`).

    Args:
        signals: [M, N] per-model signals on the training examples (e.g. the logit-scaled
            confidence; higher = more like a member), the unlearned models' after unlearning.
        keep: [M, N] bool, each model's training set (before unlearning).
        forget: [N] bool, the forget set.
        test_signals: [M, K] signals on K test examples (the population MIA; optional).
        delta: the competition's delta.
        rules: :func:`forget_epsilons`' decision rules.

    Returns:
        ``{"ulira": ULiRA, "epsilons": [F], "forget_score": float, "population_mia": [U] AUCs or
        None, "unlearned": [M] bool, "retrained": [M] bool}``.

    Raises:
        ValueError: a model trained on part of the forget set, or too few models of a role.

    References:
        Hayes et al. (2024), "Inexact unlearning needs more careful evaluations"; the NeurIPS 2023
        machine unlearning competition's forget score.
    """
    s = np.asarray(signals, np.float64)
    forget = np.asarray(forget, bool)
    unl, ret = split_roles(keep, forget)
    fu, fr = s[unl][:, forget], s[ret][:, forget]
    eps = forget_epsilons(fu, fr, delta=delta, rules=rules)
    pop = None
    if test_signals is not None:
        pop = population_mia(fu, np.asarray(test_signals, np.float64)[unl])
    return {"ulira": ulira(fu, fr), "epsilons": eps, "forget_score": forget_score(eps, int(unl.sum())),
            "population_mia": pop, "unlearned": unl, "retrained": ret}
