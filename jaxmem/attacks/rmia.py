"""RMIA: the relative membership-inference attack of Zarifzadeh et al. (2024), "Low-cost
high-power membership inference attacks" (ICML), Eq. (2)–(4) and Sec. 3.

With p(x) the target model's probability of x's true label and P(x) its average over reference
models, RMIA scores x by how often its likelihood ratio beats that of population points z:

    score(x) = Pr_z[ (p(x)/P(x)) / (p(z)/P(z)) > γ ].

Offline (reference models never trained on x), P(x) is approximated from OUT models only,
P(x) = (1+a)/2 · mean_OUT p(x) + (1−a)/2 (paper, App. B.2.2). Online, P(x) = (mean_IN + mean_OUT)/2.
Population points are members of no reference model: P(z) = (1+a)/2 · mean p(z) + (1−a)/2 offline
(the same formula as for x, as in the paper's code and ML Privacy Meter), the plain mean over all
reference models online. For one target the score is a non-decreasing function of p(x)/P(x), so
P(z) and γ change its ROC only through ties; they matter when scores are pooled across targets.

The N × Z pairwise comparison is computed exactly in O((N + Z) log Z): sort the Z population
ratios once (numpy, float64) and count, for each x, the ratios strictly below ratio(x) / γ with
``searchsorted``. That is faster here than a blocked jitted N × Z comparison (XLA's CPU sort is
slow, and this needs no N × Z work at all) and bounded in memory.
"""

from __future__ import annotations

import warnings

import numpy as np

from .metrics import roc_auc

__all__ = ["rmia", "rmia_reference_mean", "tune_rmia_a", "A_GRID"]

#: ML Privacy Meter's grid for the offline coefficient: ``np.arange(0, 1.1, 0.1)``.
A_GRID = np.round(np.arange(0.0, 1.1, 0.1), 10)


def _f64(x, ndim, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {x.shape}")
    return x


def rmia_reference_mean(ref_p, ref_keep, *, online=False, a=0.0):
    """P(x) from reference models: offline (1+a)/2·mean_OUT + (1−a)/2; online (mean_IN + mean_OUT)/2.

    ``ref_p`` [M, N] float, ``ref_keep`` [M, N] bool. Returns float64 [N]; NaN where an example
    has no OUT model (or, online, no IN model).
    """
    ref_p = _f64(ref_p, 2, "ref_p")
    keep = np.asarray(ref_keep, dtype=bool)
    if keep.shape != ref_p.shape:
        raise ValueError(f"ref_keep {keep.shape} and ref_p {ref_p.shape} differ")
    n_out = (~keep).sum(0)
    n_in = keep.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = np.where(~keep, ref_p, 0.0).sum(0) / n_out
        if online:
            mean_in = np.where(keep, ref_p, 0.0).sum(0) / n_in
            return (mean_in + mean_out) / 2.0
    return (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0


def _population_ratio(target_p_pop, ref_p_pop, online, a):
    mean = ref_p_pop.mean(0)
    P = mean if online else (1.0 + a) / 2.0 * mean + (1.0 - a) / 2.0
    return target_p_pop / P


def _fraction_below(ratio_x, ratio_z_sorted, gamma):
    """Fraction of z with ratio_z < ratio_x / γ, i.e. ratio_x / ratio_z > γ (strict); NaN stays NaN."""
    counts = np.searchsorted(ratio_z_sorted, ratio_x / gamma, side="left")
    out = counts / ratio_z_sorted.size
    return np.where(np.isnan(ratio_x), np.nan, out)


def _rmia_scores(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, online, a, gamma):
    P_x = rmia_reference_mean(ref_p, ref_keep, online=online, a=a)
    ratio_x = target_p / P_x
    ratio_z = np.sort(_population_ratio(target_p_pop, ref_p_pop, online, a))
    ratio_z = ratio_z[~np.isnan(ratio_z)]
    return _fraction_below(ratio_x, ratio_z, gamma)


def tune_rmia_a(ref_p, ref_keep, ref_p_pop, *, grid=A_GRID, tune_model=0, gamma=1.0):
    """Offline coefficient ``a`` chosen as ML Privacy Meter does (``tune_offline_a``).

    Reference model ``tune_model`` plays the target, the other M − 1 reference models are its
    references; for each ``a`` in ``grid`` (default 0, 0.1, …, 1) offline RMIA attacks it and the
    ``a`` with the highest AUC on its members vs non-members wins (first on ties, as the tool's
    strict ``>``). The tool calls this inside its loop over targets, with the target's paired
    model (index target ^ 1; its models come in complementary pairs) as the temporary target,
    and EXCLUDES both the target and that paired model from the references, for tuning and for
    scoring the target alike. jaxmem's keep designs have no complementary pairs: here the caller
    leaves the real target out and the temporary target is not among its own references, as in
    the tool; the real target is scored with all other models. Differences from the tool: it
    tunes with ``num_reference_models=1`` (``attacks.py``: the one OUT model of the next pair;
    the later ``modules/mia``: every reference, IN values mapped to p_OUT by (p + a − 1)/a),
    here the mean over all OUT models among the M − 1 is used; and ``attacks.py`` takes P(z)
    from the largest k of the 2k reference values rather than their mean. The temporary target's
    own population probabilities are used, as in ``attacks.py`` (``modules/mia`` passes the real
    target's).
    """
    ref_p = _f64(ref_p, 2, "ref_p")
    ref_p_pop = _f64(ref_p_pop, 2, "ref_p_pop")
    keep = np.asarray(ref_keep, dtype=bool)
    M = ref_p.shape[0]
    if M < 2:
        raise ValueError("tuning `a` needs at least 2 reference models; pass `a` explicitly")
    j = int(tune_model) % M
    rest = np.arange(M) != j
    aucs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for a in grid:
            s = _rmia_scores(ref_p[j], ref_p[rest], keep[rest], ref_p_pop[j], ref_p_pop[rest],
                             False, float(a), gamma)
            aucs.append(roc_auc(s, keep[j]) if np.isfinite(s).any() else -np.inf)
    return float(np.asarray(grid, dtype=np.float64)[int(np.argmax(aucs))])


def rmia(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, *, online=False, a=None, gamma=1.0):
    """RMIA membership scores [N] in [0, 1], higher = more likely a member (Zarifzadeh et al. 2024).

    Args:
      target_p: [N] target model's probability of each example's true label.
      ref_p: [M, N] the same for M reference models; ``ref_keep`` [M, N] True where model m
        trained on example i.
      target_p_pop, ref_p_pop: [Z] and [M, Z] the same on population points (members of none).
      online: use IN and OUT models, P(x) = (mean_IN + mean_OUT)/2 (``a`` is then unused).
      a: offline coefficient; None tunes it with ``tune_rmia_a`` (ML Privacy Meter's procedure)
        on these reference models, at every call (11 extra scorings): when attacking many
        targets, tune once and pass it (``evaluate`` does, see its ``rmia_tune``).
      gamma: likelihood-ratio threshold γ (1 in ML Privacy Meter, 2 in the paper's code).

    score(x) = #{z : (p(x)/P(x)) / (p(z)/P(z)) > γ} / Z, evaluated as ratio_z < ratio_x / γ in
    float64 (exact on ties: an equal ratio does not count). Examples without an OUT reference
    model (online: or without an IN one) get NaN, with a warning.
    """
    target_p = _f64(target_p, 1, "target_p")
    ref_p = _f64(ref_p, 2, "ref_p")
    keep = np.asarray(ref_keep, dtype=bool)
    target_p_pop = _f64(target_p_pop, 1, "target_p_pop")
    ref_p_pop = _f64(ref_p_pop, 2, "ref_p_pop")
    if ref_p.shape[1] != target_p.shape[0] or ref_p_pop.shape[1] != target_p_pop.shape[0]:
        raise ValueError("reference and target shapes disagree")
    if ref_p_pop.shape[0] != ref_p.shape[0]:
        raise ValueError("ref_p and ref_p_pop must come from the same M reference models")
    if not gamma > 0:
        raise ValueError("gamma must be > 0")
    missing = (~keep).sum(0) == 0
    if online:
        missing |= keep.sum(0) == 0
    if missing.any():
        need = "IN and OUT" if online else "OUT"
        warnings.warn(f"RMIA: {int(missing.sum())} examples lack {need} reference models; "
                      "their score is NaN", RuntimeWarning, stacklevel=2)
    if not online and a is None:
        a = tune_rmia_a(ref_p, keep, ref_p_pop, gamma=gamma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _rmia_scores(target_p, ref_p, keep, target_p_pop, ref_p_pop, online,
                            0.0 if online else float(a), gamma)
