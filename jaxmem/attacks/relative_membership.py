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

The N × Z pairwise comparison is the research code's, ``ratio_x · (1/ratio_z) > γ`` in float64,
counted exactly in O((N + Z) log Z) by :mod:`jaxmem.attacks.rmia_counting` (its docstring: why this
is not ``ratio_z < ratio_x / γ``, and how p(z) = 0 and NaN ratios count; the per-query vote).
Reference models whose p or p(z) hold NaN/inf
(diverged) are left out with a :class:`~jaxmem.attacks.NonFiniteModelWarning`.

Differences from the research code (ml_privacy_meter ``research/2024_rmia``, formerly
``research/2023_rmia``: ``main.py`` ``aggregate_signals``, ``signals.py`` ``convert_signals``,
``attack_configs/*/rmia_*.yaml``) and from ML Privacy Meter. Defaults here: p = softmax(z)_y
(T = 1); the A augmentation queries are averaged before the ratio; plain means over reference
models; ``a`` tuned by ML Privacy Meter's grid search (``tune_rmia_a``); γ = 1; the population
is points no model trained on. These follow ML Privacy Meter (``attacks.py``: ``run_rmia``
compares ``ratios > 1.0`` over a separate population, ``tune_offline_a`` picks a), except in how
P(x) averages the OUT models. jaxmem takes the plain mean of every OUT reference model. ML
Privacy Meter (``attacks.py``'s ``get_rmia_out_signals``, used by ``run_rmia``, and likewise its
later ``modules/mia`` scoring) takes 2k reference models, sets their IN values to 0 and averages
the *largest k* of the 2k values: that is the mean of the OUT models only when the models come in
complementary pairs (each example IN for exactly one model of a pair, so exactly k of the 2k
are OUT), as its training scripts make them. On a design without such pairs (jaxmem's balanced,
Bernoulli or fixed-ratio keep) the k largest mix in zeros when fewer than k models are OUT and
drop the smallest OUT values when more are, and the numbers differ: on an unpaired design
issue #21 measured AUC 0.476 with that selection against 0.611 with the OUT mean. Compare
with ML Privacy Meter on paired models only, or expect this difference. The tool also tunes
with one OUT model and leaves the target's paired model out (see ``tune_rmia_a``).

Precision: every ratio and comparison is float64, on p as given (converted per target). Give p
in float64 when it can be near 1: a float32 p cannot tell 1 − p apart below 2^-24 ≈ 6e-8, so
confident members' ratios collapse onto ties (issue #27 saw per-example scores move by up to
0.0117 between p stored in float32 and in float64). ``compute_signals(..., exact=("p",))``
(what a run's scoring does) or ``dtype=np.float64`` keeps them.
The research code instead uses (1) the signal ``sm_taylor_softmax_relative``, a 4-term Taylor
softmax with soft margin m = 0.6 at T = 2 (CIFAR-10, CINIC-10) or T = 1 (CIFAR-100);
Purchase-100 uses plain softmax at T = 2 on one query; (2) a ratio per query, the comparison
above per query and per (x, z), then a majority vote over queries (``torch.mode``: a tie is
False), score = fraction of z winning; (3) ``scipy.stats.trim_mean(proportiontocut=0.2)`` over
the reference models (offline the OUT models, online equally many IN and OUT models pooled);
(4) γ = 2; (5) a fixed a = 0.33 (CIFAR-10, CINIC-10), 0.6 (CIFAR-100), 0.2 (Purchase-100);
(6) the population z is the target model's non-members (x itself among them), with P(z) from
z's OUT models (offline). Its line for the x that are also population points,
``prediction = (prediction · Z − 1) / (Z − 1)``, meant to discount x's comparison with itself,
adds one spurious win to every such non-member instead (on scores stored negated, it turns
k wins into (k + 1)/(Z − 1); x never beats itself, ratio 1 < γ, so k/(Z − 1) would be the
discount): jaxmem does not reproduce it. To get (1)–(5) here: compute p with
:func:`jaxmem.signals.taylor_soft_margin_probability` (``order=4, margin=0.6,
temperature=2.0``) per query, pass [N, A] / [M, N, A] arrays with ``aggregate="vote",
trim=0.2, gamma=2.0, a=0.33``. (6) is a choice of data, not of this function.
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from ._checks import drop_nonfinite_shadows
from .metrics import UndefinedMetricWarning, roc_auc
from .rmia_counting import fraction_winning, reciprocals, vote_counts, win_bounds

__all__ = ["rmia", "rmia_reference_mean", "tune_rmia_a", "A_GRID", "AGGREGATES"]

#: ML Privacy Meter's grid for the offline coefficient: ``np.arange(0, 1.1, 0.1)``.
A_GRID = np.round(np.arange(0.0, 1.1, 0.1), 10)
#: How A augmentation queries are combined: average p first, or the research code's majority vote.
AGGREGATES = ("mean", "vote")
_COLUMN_BLOCK = 1 << 20  # values per block of examples in the trimmed means


def _f64(x, ndim, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in ((ndim,) if isinstance(ndim, int) else ndim):
        raise ValueError(f"{name} must have {ndim} dims, got shape {x.shape}")
    return x


def _check_options(aggregate, trim):
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")


def _trimmed_mean(values, use, trim):
    """Per example, ``scipy.stats.trim_mean(values[use[:, i], i], trim)`` over the model axis 0.

    ``values`` [M, N(, A)], ``use`` [M, N] bool. As scipy: with n used models, the
    ``int(trim * n)`` smallest and as many largest values are dropped and the rest averaged
    (the research code's ``trim_mean(..., proportiontocut=0.2, axis=0)``). NaN where n = 0.
    """
    extra = (1,) * (values.ndim - 2)
    use = use.reshape(use.shape + extra)
    k = np.arange(values.shape[0]).reshape((-1,) + (1,) * (values.ndim - 1))
    out = np.empty(values.shape[1:])
    for c in _column_blocks(values):   # per example independent: blocks bound the temporaries
        u = use[:, c]
        n = u.sum(0)
        srt = np.moveaxis(np.sort(np.moveaxis(np.where(u, values[:, c], np.inf), 0, -1), axis=-1), -1, 0)
        lo = (trim * n).astype(np.int64)
        sel = (k >= lo) & (k < n - lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.sum(srt, axis=0, where=sel) / (n - 2 * lo)
    return out


def _column_blocks(values):
    """Slices of the example axis (1) holding about 2^20 values of ``values`` each."""
    per = max(1, int(np.prod(values.shape, dtype=np.int64)) // max(values.shape[1], 1))
    step = max(1, _COLUMN_BLOCK // per)
    return [slice(i, i + step) for i in range(0, values.shape[1], step)]


def rmia_reference_mean(
    ref_p: Real[ArrayLike, "M N *A"],
    ref_keep: Bool[ArrayLike, "M N"],
    *,
    online: bool = False,
    a: float = 0.0,
    trim: float = 0.0,
    use: Bool[ArrayLike, "M N"] | None = None,
) -> Float[np.ndarray, " N *A"]:
    """P(x) from reference models: offline (1+a)/2·mean_OUT + (1−a)/2; online (mean_IN + mean_OUT)/2.

    ``trim`` > 0 replaces the means by scipy's ``trim_mean`` with that proportion cut from each
    end, as the research code (``main.py``, ``aggregate_signals``): offline over the OUT models,
    online over IN and OUT pooled (P = trimmed mean of the pool, not the average of two means;
    the research code pools equally many IN and OUT models).

    Args:
      ref_p: [M, N] (or per query [M, N, A]) the reference models' p(x).
      ref_keep: [M, N] bool, True where reference model m trained on example i.
      online: average IN and OUT means instead of the offline formula.
      a: the offline coefficient.
      trim: proportion cut from each end of the models' values (0: plain means).
      use: [M, N] bool, False where reference model m must not enter example i's means
        (:func:`jaxmem.attacks.likelihood_ratio.pair_out` on a balanced design); None: all enter.

    Returns:
      float64 [N] (or [N, A]) P(x); NaN where an example has no OUT model (or, online, no IN one).

    Raises:
      ValueError: ``ref_p`` neither [M, N] nor [M, N, A], or ``ref_keep`` not [M, N].

    References:
      Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", ICML,
      Sec. 3 and App. B.2.2.
    """
    ref_p = _f64(ref_p, (2, 3), "ref_p")
    keep = np.asarray(ref_keep, dtype=bool)
    if keep.shape != ref_p.shape[:2]:
        raise ValueError(f"ref_keep {keep.shape} and ref_p {ref_p.shape} differ")
    use = np.ones_like(keep) if use is None else np.asarray(use, bool)
    is_in, is_out = keep & use, ~keep & use
    n_out = is_out.sum(0)
    n_in = is_in.sum(0)
    if trim > 0:
        if online:
            pooled = _trimmed_mean(ref_p, use, trim)
            bad = ((n_in == 0) | (n_out == 0)).reshape(n_in.shape + (1,) * (ref_p.ndim - 2))
            return np.where(bad, np.nan, pooled)
        return (1.0 + a) / 2.0 * _trimmed_mean(ref_p, is_out, trim) + (1.0 - a) / 2.0
    if ref_p.ndim == 3:
        is_in, is_out, n_in, n_out = is_in[..., None], is_out[..., None], n_in[..., None], n_out[..., None]
    # masked sums (no [M, N] float temporary): the same additions, in the same order, as summing
    # np.where(mask, p, 0) over the models
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = np.sum(ref_p, axis=0, where=is_out) / n_out
        if online:
            mean_in = np.sum(ref_p, axis=0, where=is_in) / n_in
            return (mean_in + mean_out) / 2.0
    return (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0


def _population_ratio(target_p_pop, ref_p_pop, online, a, trim=0.0):
    if trim > 0:
        mean = _trimmed_mean(ref_p_pop, np.ones(ref_p_pop.shape[:2], bool), trim)
    else:
        mean = ref_p_pop.mean(0)
    P = mean if online else (1.0 + a) / 2.0 * mean + (1.0 - a) / 2.0
    return target_p_pop / P


def _rmia_scores_vote(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, online, a, gamma, trim,
                      use=None):
    """Per-query ratios, thresholded per query and majority-voted over queries (research code)."""
    P_x = rmia_reference_mean(ref_p, ref_keep, online=online, a=a, trim=trim, use=use)
    ratio_x = target_p / P_x  # [N, A]
    ratio_z = _population_ratio(target_p_pop, ref_p_pop, online, a, trim)  # [Z, A]
    ratio_z = ratio_z[~np.isnan(ratio_z).any(1)]
    if ratio_z.shape[0] == 0:
        return np.full(ratio_x.shape[0], np.nan)
    # Per query: z's position in the sorted reciprocals (the first of its tie group: tied values
    # win or lose together) against each x's bound.
    with np.errstate(divide="ignore"):
        rev = 1.0 / ratio_z
    rank_x = np.empty(ratio_x.shape, np.int64)
    suffix = np.empty(ratio_x.shape, bool)
    rank_z = np.empty(ratio_z.shape, np.int64)
    for q in range(ratio_x.shape[1]):
        srt = np.sort(rev[:, q])
        rank_x[:, q], suffix[:, q] = win_bounds(ratio_x[:, q], srt, gamma)
        rank_z[:, q] = np.searchsorted(srt, rev[:, q], side="left")
    idx = np.int32 if ratio_z.shape[0] < 2**31 - 1 else np.int64
    out = vote_counts(rank_x.astype(idx), suffix, rank_z.astype(idx)) / ratio_z.shape[0]
    return np.where(np.isnan(ratio_x).any(1), np.nan, out)


def _rmia_scores(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, online, a, gamma,
                 aggregate="mean", trim=0.0, use=None):
    if aggregate == "vote":
        return _rmia_scores_vote(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, online, a,
                                 gamma, trim, use)
    if target_p.ndim == 2:  # average p over the A queries first
        target_p, ref_p = target_p.mean(-1), ref_p.mean(-1)
    if target_p_pop.ndim == 2:
        target_p_pop, ref_p_pop = target_p_pop.mean(-1), ref_p_pop.mean(-1)
    P_x = rmia_reference_mean(ref_p, ref_keep, online=online, a=a, trim=trim, use=use)
    ratio_x = target_p / P_x
    rev = reciprocals(_population_ratio(target_p_pop, ref_p_pop, online, a, trim))
    return fraction_winning(ratio_x, rev, gamma)


def _check_shapes(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, aggregate):
    target_p = _f64(target_p, (1, 2), "target_p")
    ref_p = _f64(ref_p, target_p.ndim + 1, "ref_p")
    keep = np.asarray(ref_keep, dtype=bool)
    target_p_pop = _f64(target_p_pop, (1, 2), "target_p_pop")
    ref_p_pop = _f64(ref_p_pop, target_p_pop.ndim + 1, "ref_p_pop")
    if ref_p.shape[1:] != target_p.shape or ref_p_pop.shape[1:] != target_p_pop.shape:
        raise ValueError("reference and target shapes disagree")
    if ref_p_pop.shape[0] != ref_p.shape[0]:
        raise ValueError("ref_p and ref_p_pop must come from the same M reference models")
    if keep.shape != ref_p.shape[:2]:
        raise ValueError(f"ref_keep {keep.shape} and ref_p {ref_p.shape} differ")
    if aggregate == "vote":  # pair query a of x with query a of z
        a_x = target_p.shape[1] if target_p.ndim == 2 else 1
        a_z = target_p_pop.shape[1] if target_p_pop.ndim == 2 else 1
        if a_x != a_z:
            raise ValueError(f'aggregate="vote" needs as many queries on x ({a_x}) as on z ({a_z})')
        if target_p.ndim == 1:
            target_p, ref_p = target_p[:, None], ref_p[..., None]
        if target_p_pop.ndim == 1:
            target_p_pop, ref_p_pop = target_p_pop[:, None], ref_p_pop[..., None]
    return target_p, ref_p, keep, target_p_pop, ref_p_pop


def tune_rmia_a(ref_p: Real[ArrayLike, "M N *A"], ref_keep: Bool[ArrayLike, "M N"],
                ref_p_pop: Real[ArrayLike, "M Z *Az"], *, grid=A_GRID, tune_model: int = 0,
                gamma: float = 1.0, aggregate: str = "mean", trim: float = 0.0) -> float:
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
    target's). ``aggregate`` and ``trim`` are passed to the scorings as in :func:`rmia`; ``ref_p``
    [M, N] or per query [M, N, A], ``ref_p_pop`` likewise. When the tuning model's AUC is
    undefined for every ``a`` (no scored member or non-member: e.g. it trained on every example,
    or no other model is OUT on its non-members) the result is NaN, with an
    :class:`UndefinedMetricWarning`: pass ``a`` explicitly, or tune on another model.

    Args:
      ref_p: [M, N] (or [M, N, A]) the reference models' p on the N examples.
      ref_keep: [M, N] bool, True where reference model m trained on example i.
      ref_p_pop: [M, Z] (or [M, Z, A]) their p on the Z population points.
      grid: the candidate values of ``a``.
      tune_model: the reference model that plays the target.
      gamma, aggregate, trim: as :func:`rmia`.

    Returns:
      The chosen ``a`` (a float of ``grid``), NaN when the tuning AUC is undefined for every ``a``.

    Raises:
      ValueError: fewer than 2 reference models, shapes that disagree, or an unknown
        ``aggregate`` / a ``trim`` outside [0, 0.5).

    References:
      Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", ICML;
      ML Privacy Meter's ``tune_offline_a``.
    """
    _check_options(aggregate, trim)
    ref_p, ref_p_pop = np.asarray(ref_p), np.asarray(ref_p_pop)   # float64 once sliced, below
    for x, name in ((ref_p, "ref_p"), (ref_p_pop, "ref_p_pop")):
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} must have (2, 3) dims, got shape {x.shape}")
    keep = np.asarray(ref_keep, dtype=bool)
    M = ref_p.shape[0]
    if M < 2:
        raise ValueError("tuning `a` needs at least 2 reference models; pass `a` explicitly")
    j = int(tune_model) % M
    rest = np.arange(M) != j
    args = _check_shapes(ref_p[j], ref_p[rest], keep[rest], ref_p_pop[j], ref_p_pop[rest], aggregate)
    aucs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for a in grid:
            aucs.append(roc_auc(_rmia_scores(*args, False, float(a), gamma, aggregate, trim), keep[j]))
    aucs = np.asarray(aucs, np.float64)
    if np.isnan(aucs).all():
        warnings.warn(f"tune_rmia_a: the AUC of tuning model {j} is undefined for every a (it needs "
                      "a scored member and a scored non-member); a is NaN: pass a explicitly",
                      UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    return float(np.asarray(grid, dtype=np.float64)[int(np.nanargmax(aucs))])


def rmia(target_p: Real[ArrayLike, " N *A"], ref_p: Real[ArrayLike, "M N *A"], ref_keep: Bool[ArrayLike, "M N"],
         target_p_pop: Real[ArrayLike, " Z *Az"], ref_p_pop: Real[ArrayLike, "M Z *Az"], *, online: bool = False,
         a: float | None = None, gamma: float = 1.0, aggregate: str = "mean", trim: float = 0.0,
         ref_use: Bool[ArrayLike, "M N"] | None = None) -> Float[np.ndarray, " N"]:
    """RMIA membership scores [N] in [0, 1], higher = more likely a member (Zarifzadeh et al. 2024).

    Args:
      target_p: [N] target model's probability of each example's true label, or [N, A] per
        augmentation query.
      ref_p: [M, N] (or [M, N, A]) the same for M reference models; ``ref_keep`` [M, N] True
        where model m trained on example i.
      target_p_pop, ref_p_pop: [Z] and [M, Z] (or [Z, A] and [M, Z, A]) the same on population
        points (members of none).
      online: use IN and OUT models, P(x) = (mean_IN + mean_OUT)/2 (``a`` is then unused).
      a: offline coefficient; None tunes it with ``tune_rmia_a`` (ML Privacy Meter's procedure)
        on these reference models, at every call (11 extra scorings): when attacking many
        targets through :func:`jaxmem.attacks.evaluate`, its ``rmia_tune`` chooses: per target on
        that target's references (the default, what this does), or once for all.
      gamma: likelihood-ratio threshold γ > 0 (1 in ML Privacy Meter, 2 in the paper's code).
      aggregate: ``"mean"`` averages p over the A queries first (on x and on z separately), then
        scores as below. ``"vote"`` is the research code's (``main.py``, ``aggregate_signals``):
        per query a the ratios use that query's p and P, each pair (x, z) is thresholded per
        query, and it counts for x when more than half of the A queries say
        ratio_x[a] · (1/ratio_z[a]) > γ (a tie on an even A does not count: ``torch.mode`` keeps
        the smaller of two equally frequent values); score = fraction of z counted. With A = 1
        both are the same. Population points with a NaN ratio on any query are dropped.
      trim: proportion cut from each end before averaging over reference models, per example
        (and query), with ``scipy.stats.trim_mean`` semantics; 0 is the plain mean (0.2 in the
        research code). Offline over the OUT models; online over IN and OUT pooled.
      ref_use: [M, N] bool, False where reference model m must not enter example i's P(x)
        (None: all do). With the target and its references drawn from one balanced design, pass
        it from :func:`jaxmem.attacks.likelihood_ratio.pair_out` (as ``evaluate`` does): otherwise a member
        has one OUT reference more than a non-member, and offline RMIA scored AUC 0.47 on pure
        noise with 4 models (the reason is LiRA's, :mod:`jaxmem.attacks.likelihood_ratio`).

    score(x) = #{z : ratio_x · (1/ratio_z) > γ} / Z with ratio = p / P, the research code's rule
    evaluated in float64 (strict: an equal product does not count; a negative ratio_z never
    counts for a positive ratio_x; ratio_z = 0 counts for every ratio_x > 0; population points
    with a NaN ratio are dropped; see the module docstring). Examples without an OUT reference
    model (online: or without an IN one) get NaN, with a warning. Reference models whose p or
    p(z) hold NaN/inf are left out, with a :class:`~jaxmem.attacks.NonFiniteModelWarning`.

    Returns:
      float64 [N] scores in [0, 1], higher = more likely a member.

    Raises:
      ValueError: shapes that disagree (``aggregate="vote"`` needs as many queries on x as on z),
        ``gamma`` <= 0, ``ref_use`` not [M, N], or an unknown ``aggregate`` / a bad ``trim``.

    References:
      Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", ICML,
      Eq. (2)-(4) and Sec. 3.
    """
    _check_options(aggregate, trim)
    target_p, ref_p, keep, target_p_pop, ref_p_pop = _check_shapes(
        target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, aggregate)
    use = np.ones(keep.shape, bool) if ref_use is None else np.asarray(ref_use, bool)
    if use.shape != keep.shape:
        raise ValueError(f"ref_use {use.shape} must be [M, N] = {keep.shape}, as ref_keep")
    (ref_p, ref_p_pop, use), keep = drop_nonfinite_shadows("rmia", [ref_p, ref_p_pop, use], keep)
    if not gamma > 0:
        raise ValueError("gamma must be > 0")
    missing = (~keep & use).sum(0) == 0
    if online:
        missing |= (keep & use).sum(0) == 0
    if missing.any():
        need = "IN and OUT" if online else "OUT"
        warnings.warn(f"RMIA: {int(missing.sum())} examples lack {need} reference models; "
                      "their score is NaN", RuntimeWarning, stacklevel=2)
    if not online and a is None:
        a = tune_rmia_a(ref_p, keep, ref_p_pop, gamma=gamma, aggregate=aggregate, trim=trim)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _rmia_scores(target_p, ref_p, keep, target_p_pop, ref_p_pop, online,
                            0.0 if online else float(a), gamma, aggregate, trim,
                            None if ref_use is None else use)
