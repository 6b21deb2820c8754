"""Empirical ε lower bounds of DP audits, from attack scores: many runs (each trained model one
trial of one canary) and one run (every canary one trial, Steinke, Nasr & Jagielski 2023).

The computations are those of ``jax_privacy.auditing.CanaryScoreAuditor`` (Google DeepMind's
``jax-privacy``, the optional extra ``jaxmem[audit]``), not written again here; this module
chooses the trials so that the bounds are valid and combines canaries (Bonferroni). Pure
functions of arrays.

Validity (what the caller must supply):
  * many runs: for one canary i, the trials are the models, its IN/OUT the secret bit. They are
    independent only when the score of model m is a function of model m's outputs and of things
    independent of every trial's bit (fixed reference models that are not trials): use the
    ``bernoulli`` design (a balanced design ties the bits of the models together) and references
    disjoint from the trial models.
  * one run: for one model, the trials are the canaries, each IN independently with probability
    1/2 (Bernoulli canaries); the scores use no other model's membership of the canaries.
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike, Bool, Real

from jaxmem.privacy import gaussian_epsilon

__all__ = ["auditor", "epsilon_bounds", "epsilon_many_runs", "epsilon_one_run", "epsilon_gdp",
           "AUDIT_METHODS"]

#: The bounds computed, by name: Clopper–Pearson on (TPR, FPR) (Jagielski et al. 2020),
#: Gaussian DP (Nasr et al. 2023), one run (Steinke et al. 2023), one run with f-DP
#: (Mahloujifar et al. 2024). ``clopper_pearson`` and ``one_run`` hold for any mechanism;
#: ``gdp`` and ``one_run_fdp`` refute "as private as the Gaussian mechanism of this ε", so
#: they bound ε only for mechanisms with a Gaussian trade-off curve (DP-SGD approximately):
#: for randomized response at ε = 1 one exact (FPR, FNR) point gives a GDP "bound" near 5.5.
AUDIT_METHODS = ("clopper_pearson", "gdp", "one_run", "one_run_fdp")


def auditor(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"]):
    """``jax_privacy.auditing.CanaryScoreAuditor`` of the finite scores (higher = member).

    Args:
      scores: [...] attack scores of the trials (non-finite ones are dropped).
      members: [...] bool, the trials' secret bits, of the shape of ``scores``.

    Returns:
      A ``CanaryScoreAuditor`` of the member and the non-member scores.

    Raises:
      ImportError: naming the extra when jax-privacy is not installed.
      ValueError: on shapes, or with no finite member or non-member score.
    """
    try:
        from jax_privacy.auditing import CanaryScoreAuditor
    except ImportError as e:   # pragma: no cover - the extra is in the test extra
        raise ImportError("DP audits need jax-privacy: pip install 'jaxmem[audit]'") from e
    s = np.asarray(scores, np.float64).ravel()
    mb = np.asarray(members, bool).ravel()
    if s.shape != mb.shape:
        raise ValueError(f"scores and members must have the same size, got {s.size} and {mb.size}")
    ok = np.isfinite(s)
    if not (ok & mb).any() or not (ok & ~mb).any():
        raise ValueError("an audit needs at least one finite member and one non-member score")
    return CanaryScoreAuditor(s[ok & mb], s[ok & ~mb])


def _one(scores, members, method, alpha, delta):
    a = auditor(scores, members)
    if method == "clopper_pearson":
        return float(a.epsilon_clopper_pearson(alpha, delta))
    if method == "gdp":
        return epsilon_gdp(scores, members, alpha=alpha, delta=delta)
    if method == "one_run":
        return float(a.epsilon_one_run(alpha, delta))
    if method == "one_run_fdp":
        return float(a.epsilon_one_run_fdp(alpha, delta))
    raise ValueError(f"unknown audit method {method!r}; use one of {AUDIT_METHODS}")


def epsilon_gdp(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"], *, alpha: float = 0.05,
                delta: float = 1e-5) -> float:
    """ε lower bound through Gaussian DP (Nasr et al. 2023): a lower bound on μ from Clopper–Pearson
    upper bounds on FPR and FNR at every threshold (union bound over the 2n bounds), then the ε
    at ``delta`` of μ-GDP (Dong, Roth & Su 2022, Cor. 2.13; ``dp_accounting``'s Gaussian).

    Written here, not taken from ``CanaryScoreAuditor.epsilon_from_gdp`` (jax-privacy 2.0.0):
    that one takes the largest ``|Φ⁻¹(1 − FPR_ub) − Φ⁻¹(FNR_ub)|``, and the negative side (the
    reversed test) would need LOWER bounds on FPR and FNR; with upper bounds it overstates μ.
    On a Gaussian mechanism of σ = 1 (ε = 4.38 at δ = 1e-5) it returned up to 9.4 on 300 trials
    (tests/attacks/test_dp_audit.py). Only the one-sided test (high score = member) is used.
    The bound assumes a Gaussian trade-off curve (it refutes μ-GDP, then converts μ to ε): it is
    not a lower bound on the ε of an arbitrary mechanism.

    Args:
      scores, members: [K] trials as in :func:`epsilon_bounds`.
      alpha: failure probability; delta: the δ audited, in (0, 1).

    Returns:
      The ε lower bound (0 when no μ > 0 is shown).

    Raises:
      ValueError: ``alpha`` outside (0, 0.5), ``delta`` outside (0, 1), or no finite member or
        non-member score.

    References:
      Nasr et al. (2023), "Tight auditing of differentially private machine learning", USENIX
      Security; Dong, Roth & Su (2022), "Gaussian differential privacy", Cor. 2.13.
    """
    from scipy.stats import beta, norm  # lazy: scipy is not a core dependency

    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    s = np.asarray(scores, np.float64).ravel()
    mb = np.asarray(members, bool).ravel()
    ok = np.isfinite(s)
    s_in, s_out = np.sort(s[ok & mb]), np.sort(s[ok & ~mb])
    if not s_in.size or not s_out.size:
        raise ValueError("an audit needs at least one finite member and one non-member score")
    thr = np.unique(np.concatenate([s_in, s_out]))
    # rule: member iff score >= t
    fn = np.searchsorted(s_in, thr, side="left")
    fp = s_out.size - np.searchsorted(s_out, thr, side="left")
    a = alpha / (2 * thr.size)

    def upper(k, n):
        return np.where(k >= n, 1.0, beta.ppf(1 - a, k + 1, np.maximum(n - k, 1)))

    fpr_ub, fnr_ub = upper(fp, s_out.size), upper(fn, s_in.size)
    use = (fpr_ub < 1) & (fnr_ub < 1)
    if not use.any():
        return 0.0
    mu = float(np.max(norm.isf(fpr_ub[use]) - norm.ppf(fnr_ub[use])))
    if not mu > 0:
        return 0.0
    return gaussian_epsilon(1.0 / mu, delta)


def epsilon_bounds(scores: Real[ArrayLike, "*shape"], members: Bool[ArrayLike, "*shape"], *,
                   methods=AUDIT_METHODS, alpha: float = 0.05, delta: float = 1e-5) -> dict:
    """ε lower bounds at confidence 1 − ``alpha`` from one set of trials, by method.

    Args:
      scores: [K] attack scores of K trials (higher = member; non-finite ones are dropped).
      members: [K] bool, the trials' secret bits.
      methods: names from :data:`AUDIT_METHODS`.
      alpha: the audit's failure probability (each method is valid at this level).
      delta: the δ of the (ε, δ) claim audited (> 0 for every method but Clopper–Pearson).

    Returns:
      ``{method: ε lower bound}`` (0 when nothing is refuted).

    Raises:
      ImportError: jax-privacy is not installed (``pip install 'jaxmem[audit]'``).
      ValueError: an unknown method, shapes that disagree, or no finite member or non-member.

    References:
      Jagielski, Ullman & Oprea 2020; Nasr et al. 2023 (GDP); Steinke, Nasr & Jagielski 2023,
      "Privacy auditing with one (1) training run"; Mahloujifar et al. 2024.
    """
    return {m: _one(scores, members, m, alpha, delta) for m in methods}


def epsilon_many_runs(scores: Real[ArrayLike, "M K"], members: Bool[ArrayLike, "M K"], *,
                      methods=("clopper_pearson", "gdp"), alpha: float = 0.05, delta: float = 1e-5) -> dict:
    """The many-run audit of K canaries, each audited over the M models: per canary the bound of
    its M trials at level ``alpha`` / K, and the largest over canaries (Bonferroni: the max of K
    bounds each valid at ``alpha`` / K is valid at ``alpha``).

    Args:
      scores: [M, K] scores of the K canaries under M models (non-finite = not scored).
      members: [M, K] bool, canary k IN model m.
      methods: many-run methods (``clopper_pearson``, ``gdp``).
      alpha, delta: as in :func:`epsilon_bounds`.

    Returns:
      ``{method: {"epsilon": max over canaries, "per_canary": [K] (NaN where a canary lacks an
      IN or OUT trial), "best_canary": index or -1}}``; NaN epsilon with a warning when no
      canary could be audited.

    Raises:
      ValueError: ``scores`` and ``members`` not both [M, K], or a method that is not many-run.

    References:
      Jagielski, Ullman & Oprea (2020), "Auditing differentially private machine learning";
      Nasr et al. (2023), "Tight auditing of differentially private machine learning".
    """
    s = np.asarray(scores, np.float64)
    mb = np.asarray(members, bool)
    if s.ndim != 2 or s.shape != mb.shape:
        raise ValueError(f"scores and members must both be [M, K], got {s.shape} and {mb.shape}")
    for meth in methods:
        if meth not in ("clopper_pearson", "gdp"):
            raise ValueError(f"{meth!r} is not a many-run method; use clopper_pearson or gdp")
    return _bonferroni_max(s.T, mb.T, methods, alpha, delta, "canary",
                           "epsilon_many_runs: no canary has both an IN and an OUT trial")


def _bonferroni_max(s, mb, methods, alpha, delta, unit, undefined) -> dict:
    """Per row j of ``s`` [J, n] (its finite entries the trials, ``mb`` their membership) the
    bound at level alpha / J, and the largest over rows: ``{method: {"epsilon", "per_" + unit,
    "best_" + unit}}``; NaN with the warning ``undefined`` when no row has both kinds of trial."""
    J = s.shape[0]
    out = {}
    for meth in methods:
        per = np.full(J, np.nan)
        for j in range(J):
            ok = np.isfinite(s[j])
            if (ok & mb[j]).any() and (ok & ~mb[j]).any():
                per[j] = _one(s[j, ok], mb[j, ok], meth, alpha / J, delta)
        if np.isnan(per).all():
            warnings.warn(f"{undefined}: the bound is undefined (NaN)", stacklevel=3)
            out[meth] = {"epsilon": float("nan"), f"per_{unit}": per, f"best_{unit}": -1}
        else:
            b = int(np.nanargmax(per))
            out[meth] = {"epsilon": float(per[b]), f"per_{unit}": per, f"best_{unit}": b}
    return out


def epsilon_one_run(scores: Real[ArrayLike, "T K"], members: Bool[ArrayLike, "T K"], *,
                    methods=("one_run", "one_run_fdp"), alpha: float = 0.05, delta: float = 1e-5) -> dict:
    """The one-run audit of T target models, each on its own Bernoulli canaries: per target the
    bound at level ``alpha`` / T, and the largest over targets (Bonferroni), like
    :func:`epsilon_many_runs` with the roles of models and canaries exchanged.

    Args:
      scores: [T, K] scores of K canaries under T targets.
      members: [T, K] bool.
      methods: one-run methods (``one_run``, ``one_run_fdp``; ``clopper_pearson`` / ``gdp`` are
        accepted too, for comparison, but are NOT valid one-run bounds: canaries are not
        independent runs).

      alpha, delta: as in :func:`epsilon_bounds`.

    Returns:
      ``{method: {"epsilon", "per_target" [T], "best_target"}}``.

    Raises:
      ImportError: jax-privacy is not installed.
      ValueError: ``scores`` and ``members`` not both [T, K].

    References:
      Steinke, Nasr & Jagielski (2023), "Privacy auditing with one (1) training run", NeurIPS;
      Mahloujifar et al. (2024), "Auditing f-differential privacy in one run".
    """
    s = np.asarray(scores, np.float64)
    mb = np.asarray(members, bool)
    if s.ndim != 2 or s.shape != mb.shape:
        raise ValueError(f"scores and members must both be [T, K], got {s.shape} and {mb.shape}")
    return _bonferroni_max(s, mb, methods, alpha, delta, "target",
                           "epsilon_one_run: no target has both a member and a non-member canary")
