"""Metrics of a membership-inference attack: ROC curve, AUC, TPR at low FPR (all from the one ROC
kernel, :mod:`jaxmem.attacks.roc`), balanced accuracy, Clopper–Pearson intervals and the
empirical ε lower bound of a DP audit.

Scores are "higher means more likely a member"; ``members`` is a boolean array of the same shape.
NaN scores are dropped (with their labels) before any metric is computed: NaN means "not scored".
A metric without at least one scored member and one scored non-member is undefined: NaN with an
:class:`UndefinedMetricWarning`, never 0 or 1.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from jaxmem.attacks.roc import UndefinedMetricWarning, roc_curve, roc_metrics, warn_undefined

__all__ = [
    "UndefinedMetricWarning",
    "roc_curve",
    "roc_auc",
    "tpr_at_fpr",
    "balanced_accuracy",
    "clopper_pearson",
    "epsilon_lower_bound",
]


def _clean(scores, members):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    members = np.asarray(members, dtype=bool).ravel()
    if scores.shape != members.shape:
        raise ValueError(f"scores {scores.shape} and members {members.shape} differ in size")
    ok = ~np.isnan(scores)
    return scores[ok], members[ok]


def _undefined(what, m):
    """True (after one warning) when ``m`` (the scored examples' membership) lacks a class."""
    pos = int(m.sum())
    if pos and pos < m.size:
        return False
    warn_undefined(what, pos, m.size - pos, stacklevel=3)
    return True


def roc_auc(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"]) -> float:
    """Area under the ROC curve (trapezoidal, ties count one half): P(score_in > score_out).

    Args:
      scores: [...] attack scores, higher = more likely a member; NaN = not scored (dropped).
      members: [...] bool, the true membership, of the shape of ``scores``.

    Returns:
      A float in [0, 1]; NaN (with an :class:`UndefinedMetricWarning`) without a scored member
      or non-member.

    Raises:
      ValueError: ``scores`` and ``members`` differ in size.

    Example:
      >>> roc_auc(np.array([0.9, 0.2, 0.6, 0.4]), np.array([True, False, False, True]))
      0.75
    """
    s, m = _clean(scores, members)
    if _undefined("the AUC", m):
        return float("nan")
    return float(roc_metrics(s[None], m[None], fprs=())[0][0])


def tpr_at_fpr(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"], fpr: float = 0.001) -> float:
    """The largest TPR among ROC points whose FPR ≤ ``fpr`` (Carlini et al. 2022, Sec. III).

    The LiRA reference code (``plot.py``) takes ``tpr[last fpr < x]`` instead: the two differ
    exactly when ``fpr`` × #non-members is an integer (FPR = 25/25,000 on CIFAR-10, where this
    one counts the ROC point at FPR = 0.001 and the reference does not).

    Args:
      scores: [...] attack scores, higher = more likely a member; NaN = not scored (dropped).
      members: [...] bool, the true membership, of the shape of ``scores``.
      fpr: the largest false-positive rate allowed.

    Returns:
      The TPR, a float in [0, 1]; NaN (with an :class:`UndefinedMetricWarning`) without a scored
      member or non-member.

    Raises:
      ValueError: ``scores`` and ``members`` differ in size.

    References:
      Carlini et al. (2022), "Membership inference attacks from first principles", IEEE S&P.
    """
    s, m = _clean(scores, members)
    if _undefined(f"TPR@{fpr:g} FPR", m):
        return float("nan")
    return float(roc_metrics(s[None], m[None], fprs=(fpr,))[1][0, 0])


def balanced_accuracy(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"]) -> float:
    """Best balanced accuracy over thresholds: max over ROC points of (TPR + 1 − FPR) / 2.

    This is the "accuracy" of Carlini et al. (2022), LiRA reference code ``plot.py``:
    ``max(1 − (FPR + (1 − TPR)) / 2)``.

    Args:
      scores: [...] attack scores, higher = more likely a member; NaN = not scored (dropped).
      members: [...] bool, the true membership, of the shape of ``scores``.

    Returns:
      A float in [0.5, 1]; NaN (with an :class:`UndefinedMetricWarning`) without a scored member
      or non-member.

    Raises:
      ValueError: ``scores`` and ``members`` differ in size.

    References:
      Carlini et al. (2022), "Membership inference attacks from first principles", IEEE S&P.
    """
    s, m = _clean(scores, members)
    if _undefined("the balanced accuracy", m):
        return float("nan")
    f, t, _ = roc_curve(s, m)
    return float(np.max((t + 1.0 - f) / 2.0))


def clopper_pearson(
    k: Real[ArrayLike, "*#batch"], n: Real[ArrayLike, "*#batch"], alpha: float = 0.05
) -> tuple[Float[np.ndarray, "*batch"], Float[np.ndarray, "*batch"]]:
    """Two-sided exact (Clopper–Pearson) interval for a binomial proportion k / n.

    Each tail gets ``alpha / 2``: lo = Beta⁻¹(α/2; k, n−k+1), hi = Beta⁻¹(1−α/2; k+1, n−k), with
    lo = 0 at k = 0 and hi = 1 at k = n (statsmodels ``proportion_confint(method="beta")``).
    Needs scipy.

    Args:
      k: [...] successes.
      n: [...] trials (broadcast against ``k``).
      alpha: 1 − the interval's level.

    Returns:
      (lo, hi), float64 arrays of the broadcast shape.

    Raises:
      ValueError: some k < 0 or k > n.

    References:
      Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the case
      of the binomial", Biometrika.

    Example:
      >>> lo, hi = clopper_pearson(0, 10)
      >>> float(lo), round(float(hi), 4)
      (0.0, 0.3085)
    """
    from scipy.stats import beta  # lazy: scipy is not a core dependency

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n")
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
        hi = np.where(k < n, beta.isf(alpha / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def epsilon_lower_bound(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"], *,
                        alpha: float = 0.05, delta: float = 0.0, two_sided: bool = False) -> float:
    """Empirical ε lower bound of a DP audit from an attack's TPR/FPR with Clopper–Pearson bounds.

    An (ε, δ)-DP mechanism forces every threshold test to satisfy TPR ≤ e^ε·FPR + δ and
    TNR ≤ e^ε·FNR + δ (Kairouz et al. 2015), so at every ROC threshold

        ε ≥ log((TPR_lo − δ) / FPR_hi)   and   ε ≥ log((TNR_lo − δ) / FNR_hi),

    with the rates replaced by their Clopper–Pearson bounds (each bound at level α/2, as
    statsmodels' ``proportion_confint(alpha, method="beta")``). This is Jagielski et al. (2020),
    "Auditing differentially private machine learning", ``get_eps_lower_bound`` (written there as
    log((1 − δ − FNR_hi) / FPR_hi); TPR_lo = 1 − FNR_hi exactly), and at δ = 0 it is TensorFlow
    Privacy's ``EpsilonLowerBound(..., BoundMethod.CLOPPER_PEARSON)``, which takes
    log(TPR_lo / FPR_hi) and log(TNR_lo / FNR_hi) over all thresholds (``two_sided=True`` adds
    the reversed tests FPR/TPR and FNR/TNR, TF Privacy's ``two_sided_threshold``). Members are
    the positives; thresholds run over every distinct score ("score ≥ t" is predicted member).

    Args:
      scores: [...] attack scores, higher = more likely a member; NaN = not scored (dropped).
      members: [...] bool, the true membership, of the shape of ``scores``.
      alpha: 1 − the level of the Clopper–Pearson bounds.
      delta: the δ of the (ε, δ) guarantee being audited.
      two_sided: also the reversed tests.

    Returns:
      The maximum over thresholds and tests, floored at 0 (a bound of 0 is no evidence); NaN
      (with an :class:`UndefinedMetricWarning`) without a scored member or non-member.

    Raises:
      ValueError: ``scores`` and ``members`` differ in size.

    References:
      Jagielski et al. (2020), "Auditing differentially private machine learning: how private is
      private SGD?", NeurIPS; Kairouz et al. (2015), "The composition theorem for differential
      privacy", ICML.
    """
    s, m = _clean(scores, members)
    if _undefined("the epsilon lower bound", m):
        return float("nan")
    pos, neg = int(m.sum()), int((~m).sum())
    f, t, _ = roc_curve(s, m)
    tp = np.rint(t * pos)
    fp = np.rint(f * neg)
    fn, tn = pos - tp, neg - fp
    # (numerator count, its total, denominator count, its total): bound num_lo / den_hi
    tests = [(tp, pos, fp, neg), (tn, neg, fn, pos)]
    if two_sided:
        tests += [(fp, neg, tp, pos), (fn, pos, tn, neg)]
    best = 0.0
    for k1, n1, k0, n0 in tests:
        num_lo, _ = clopper_pearson(k1, n1, alpha)
        _, den_hi = clopper_pearson(k0, n0, alpha)
        num = num_lo - delta
        ok = (num > 0) & (den_hi > 0)
        if np.any(ok):
            best = max(best, float(np.max(np.log(num[ok] / den_hi[ok]))))
    return best
