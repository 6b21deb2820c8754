"""Every model as the target: membership attacks on a stack of M models, the one driver.

Each model t in turn (all, or ``targets``) is the target, and every other usable model (or a
fixed random subset of ``num_shadows`` of them) is one of its shadow/reference models; its members
are ``keep[t]``. Each attack is looked up in :data:`jaxmem.attacks.registry.ATTACKS` and called on
the signals it names. Per attack and target the ROC-AUC and TPR at FPR 0.1% / 1% are reported, as
in Carlini et al. (2022), Sec. V; :meth:`Evaluation.table` aggregates the scores over any subset of
examples. LiRA with every other model as a shadow uses the batched leave-one-out kernel of
:mod:`jaxmem.attacks._loo` (one pass for all targets). Every attack runs over blocks of targets
(``target_block_elems`` scores at a time), so memory beyond the inputs does not grow with the
number of targets (unless ``return_scores=True`` keeps them all); ``benchmarks/scoring.py
--memory`` measures it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.attacks import registry
from jaxmem.attacks._checks import NonFiniteModelWarning, nonfinite_models
from jaxmem.attacks._loo import example_stats, lira_targets
from jaxmem.attacks.evaluation import MIN_SCORED, Evaluation, FewScoredWarning
from jaxmem.attacks.likelihood_ratio import FewShadowsWarning, PairOut, _check_options, balanced_design
from jaxmem.attacks.rmia_protocol import rmia_call_options
from jaxmem.attacks.roc import UndefinedMetricWarning, roc_metrics
from jaxmem.attacks.spec import RMIA_TUNINGS, AuditSpec
from jaxmem.signals.functions import check_labels

__all__ = ["evaluate", "Evaluation", "AuditSpec", "ATTACKS", "DEFAULT_ATTACKS", "LIRA_ATTACKS",
           "metric_warnings_only"]

ATTACKS = registry.ATTACKS


@contextlib.contextmanager
def metric_warnings_only():
    """Silence every warning but those that make a metric undefined or unreliable
    (:class:`UndefinedMetricWarning`, :class:`FewScoredWarning`, :class:`NonFiniteModelWarning`),
    shown once each: how a run's scoring and the analyses call :func:`evaluate`, where the
    per-example ones (few shadows, NaN inputs) would be chatter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind in (UndefinedMetricWarning, FewScoredWarning, NonFiniteModelWarning):
            warnings.simplefilter("default", kind)
        yield

DEFAULT_ATTACKS = registry.DEFAULT_ATTACKS
#: LiRA variants: name -> (online, fixed_variance).
LIRA_ATTACKS = {n: (a.options["online"], a.options["fixed_variance"])
                for n, a in registry.ATTACKS.items() if a.loo == "lira"}
_LIRA_OPTIONS = ("location", "offline_variant", "min_in", "min_out", "eps", "fixed_variance")


def _per_target(x, name, M):
    """A signal as a numpy array with M models checked."""
    x = np.asarray(x)
    if x.shape[0] != M:
        raise ValueError(f"signal {name!r} has {x.shape[0]} models, expected {M}")
    return x


def _shadow_sets(targets, mask, num_shadows, seed):
    """Each target's shadow models (sorted indices)."""
    M = mask.size
    if num_shadows is None:
        return [np.flatnonzero(mask & (np.arange(M) != t)) for t in targets]
    order = np.random.default_rng(seed).permutation(M)
    return [np.sort(np.array([m for m in order if m != t and mask[m]])[:num_shadows]).astype(np.int64)
            for t in targets]


def evaluate(
    signals,
    keep,
    attacks=None,
    targets=None,
    *,
    spec: AuditSpec | None = None,
    model_mask=None,
    labels=None,
    target_block_elems=1 << 20,
    min_scored=MIN_SCORED,
    **options,
):
    """Attack every model (or ``targets``) with all other usable models as its shadows.

    Args:
      signals: mapping of per-model signals, each with the model axis first (a
        :class:`jaxmem.signals.Signals`, or a dict; a bare array is taken as ``{"phi": array}``):
        ``"phi"`` [M, N, A] (or [M, N]) logit-scaled confidences of M models on N examples, A
        queries (LiRA, global threshold); ``"loss"`` [M, N(, A)] per-example losses
        (:func:`jaxmem.attacks.threshold.loss_attack`, averaged over A when given; the ``loss``
        of :func:`jaxmem.signals.compute_signals` is the identity query's, [M, N]); ``"p"`` [M, N(, A)]
        true-class probabilities on the N examples and ``"p_pop"`` [M, Z(, A)] on Z population
        points that no model trained on (:func:`jaxmem.attacks.relative_membership.rmia`; A is averaged first,
        unless ``rmia_aggregate="vote"`` passes each query's p); ``"probs"`` [M, N, C] (Shokri,
        with ``labels``); ``"p_taylor"`` / ``"p_taylor_pop"`` (RMIA's research signal).
        Whatever the registered attacks need (:data:`jaxmem.attacks.registry.ATTACKS`); compute
        them with :func:`jaxmem.signals.compute_signals`.
      keep: [M, N] bool membership.
      attacks: names of :data:`jaxmem.attacks.registry.ATTACKS` (default
        :data:`~jaxmem.attacks.registry.DEFAULT_ATTACKS`); not with ``spec``.
      targets: model indices to attack (default: every usable model, or with ``spec`` its
        ``targets``: the first k usable models when k > 0).
      spec: the audit specification (:class:`jaxmem.attacks.spec.AuditSpec`, built from a
        config's ``scoring`` by :meth:`~jaxmem.attacks.spec.AuditSpec.from_scoring`): the attacks,
        the target count, shadows, FPRs, pair_out, RMIA's options and ``a`` tuning protocol, the
        warnings policy and whether scores are kept. How every jaxmem caller (run scoring, the
        analyses) calls the driver. With a spec, ``attacks`` and every option below but
        ``model_mask``, ``labels``, ``target_block_elems`` and ``min_scored`` are refused (a
        TypeError: they belong in the spec).
      model_mask: [M] bool, False for models to exclude entirely (diverged): neither targets nor
        shadows. Models whose signals (those the attacks read, but the per-token ones of
        ``registry.UNCHECKED_SIGNALS``, where −inf is a value) hold NaN/inf are excluded as well,
        found from the signals, with a :class:`NonFiniteModelWarning` naming them; their ids are
        ``Evaluation.excluded_models`` (and they are dropped from ``targets``).
      num_shadows: None: every other usable model is a shadow of each target (LiRA then uses its
        batched leave-one-out kernel). An int k: each target's shadows are the first k usable
        non-target models of one fixed random order (``shadow_seed``), sorted; every attack is
        then called per target.
      labels: [N] integer true labels (attacks that read them: Shokri); a ValueError names the
        range when one lies outside [0, C) (C from ``"probs"``; else only negatives are caught).
      fprs: FPRs of the reported TPRs.
      return_scores: also keep every target's [N] scores (``Evaluation.scores``): T × N float64.
      target_block_elems: scores per block of targets (each attack runs over blocks of targets).
      min_scored: a :class:`FewScoredWarning` names the attacks with targets whose AUC and TPRs
        rest on fewer scored members or non-members than this (10).
      pair_out: "auto" (default): when ``keep`` is a balanced design
        (:func:`jaxmem.attacks.likelihood_ratio.balanced_design`), every attack registered with
        ``pair_out`` (LiRA, RMIA, the OUT references' NLL ``reference_out``) leaves out,
        with each target and for each example, one model of the opposite membership
        (:func:`jaxmem.attacks.likelihood_ratio.pair_out`, seeded by ``shadow_seed``), so that the target's
        members and non-members see equally many IN and OUT shadow/reference models; True /
        False force it. Without it online LiRA scores below chance on a balanced design (AUC
        0.42 on pure noise with 8 models; :mod:`jaxmem.attacks.likelihood_ratio` explains), offline RMIA
        0.47 with 4; ``reference_out`` above it, 0.523 with 4 in a CI run (a member's OUT mean
        averages one more skewed NLL than a non-member's, which raises its median). Recorded
        as ``Evaluation.params[attack]["pair_out"] = True`` for those attacks when a pair was
        left out.
      **options: LiRA options (``location``, ``offline_variant``, ``min_in``, ``min_out``,
        ``eps`` as in :func:`jaxmem.attacks.likelihood_ratio.lira`; ``fixed_variance="in"`` switches the
        fixed-variance attacks to the reference code's IN-spread-for-both choice) and RMIA
        options prefixed ``rmia_``: ``rmia_a``, ``rmia_gamma``, ``rmia_aggregate`` ("mean" or
        "vote") and ``rmia_trim`` (passed to ``rmia``, and to the tuning of ``a``) and
        ``rmia_tune`` (how ``a`` is chosen when ``rmia_a`` is not given, below: "per_target",
        the default, or "once"; :data:`jaxmem.attacks.spec.RMIA_TUNINGS`). When given,
        ``rmia_aggregate`` / ``rmia_trim`` are recorded in ``Evaluation.params["rmia_offline"]``
        (next to ``a``) and ``params["rmia_online"]`` as ``"aggregate"`` / ``"trim"``.

    RMIA offline ``a`` (unless ``rmia_a`` is given), by one of two named protocols
    (:mod:`jaxmem.attacks.spec`), with :func:`jaxmem.attacks.relative_membership.tune_rmia_a` (ML Privacy
    Meter's grid search, highest AUC wins). ``rmia_tune="per_target"`` (the default): each target
    tunes its own ``a`` among its own shadows only (the first plays the target, the rest are its
    references; ``rmia(..., a=None)`` per target), as ML Privacy Meter does inside its loop over
    targets (with the target's paired model as pseudo-target): the target's membership never
    enters; ~12x the cost of one offline scoring per target. ``rmia_tune="once"``: the first
    usable model (lowest index inside ``model_mask``) plays the target and the other usable
    models are its references; that ``a`` then scores every target. In leave-one-out evaluation
    every model is also a target, so this ``a`` has seen each target's membership row (as one of
    the pseudo-target's references), and for the first usable model it was chosen on that
    target's own members: a selection of one of 11 grid values, hence a small optimistic bias,
    not a per-example leak. Recorded in ``Evaluation.params["rmia_offline"]``: ``a`` (a float, or
    [T] floats per target) and ``a_source`` ("given", "tuned_once" with ``tune_model``, or
    "tuned_per_target").

    Undefined metrics: a target without a scored member or non-member (an attack leaves an
    example unscored, NaN, e.g. with too few IN/OUT shadows; or keep[t] is all True / all False)
    has NaN metrics, never 0 or 1, with one :class:`UndefinedMetricWarning` per attack that
    says for how many targets and why; ``Evaluation.summary()`` averages over the targets where
    they are defined and reports how many (``n_targets``), and the fraction of each target's
    members and non-members scored (``Evaluation.scored_fraction``).

    Returns:
      :class:`Evaluation`; ``.summary()`` gives mean ± std over targets.
    """
    if spec is not None:
        clash = (["attacks"] if attacks is not None else []) + sorted(options)
        if clash:
            raise TypeError(f"evaluate(spec=...): {clash} belong in the AuditSpec "
                            "(spec.replace(...)), not beside it")
        policy = metric_warnings_only() if spec.warnings == "metrics" else contextlib.nullcontext()
        with policy:
            return _evaluate(signals, keep, spec.attacks, targets, model_mask=model_mask,
                             labels=labels, target_block_elems=target_block_elems,
                             min_scored=min_scored, first_targets=spec.targets,
                             return_scores=spec.keep_scores, max_kept_scores=spec.max_kept_scores,
                             **spec.evaluate_options())
    return _evaluate(signals, keep, registry.DEFAULT_ATTACKS if attacks is None else attacks,
                     targets, model_mask=model_mask, labels=labels,
                     target_block_elems=target_block_elems, min_scored=min_scored, **options)


def _evaluate(signals, keep, attacks, targets, *, model_mask, labels, target_block_elems,
              min_scored, num_shadows=None, shadow_seed=0, fprs=(0.001, 0.01),
              return_scores=False, pair_out="auto", first_targets=0, max_kept_scores=None,
              **options):
    """:func:`evaluate` with its options resolved (``first_targets``: the spec's target count;
    ``max_kept_scores``: the spec's bound on kept scores, None: no bound)."""
    if not isinstance(signals, Mapping):
        signals = {"phi": signals}
    if labels is None:
        labels = getattr(signals, "labels", None)
    unknown = [a for a in attacks if a not in registry.ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; choose from {tuple(registry.ATTACKS)}")
    entries = {a: registry.get(a) for a in attacks}
    lira_opts = {k: options.pop(k) for k in list(options) if k in _LIRA_OPTIONS}
    rmia_opts = {k[5:]: options.pop(k) for k in list(options) if k.startswith("rmia_")}
    if options:
        raise TypeError(f"unknown options {sorted(options)}")
    rmia_tune = rmia_opts.pop("tune", RMIA_TUNINGS[0])
    if rmia_tune not in RMIA_TUNINGS:
        raise ValueError(f"rmia_tune must be one of {RMIA_TUNINGS}, got {rmia_tune!r}")
    if rmia_opts.get("a") is None:
        rmia_opts.pop("a", None)
    location = lira_opts.get("location", "median")
    offline_variant = lira_opts.get("offline_variant", "one_sided")
    fixed_mode = lira_opts.get("fixed_variance", True)
    _check_options(offline_variant, location, fixed_mode)
    min_in, min_out = lira_opts.get("min_in", 2), lira_opts.get("min_out", 2)
    eps = lira_opts.get("eps", 1e-30)

    keep = np.asarray(keep, bool)
    if keep.ndim != 2:
        raise ValueError(f"keep {keep.shape} must be [M, N]")
    M, N = keep.shape
    needs = {n for e in entries.values() for n in e.needs}
    missing = sorted(n for n in needs if n not in signals)
    if missing:
        raise ValueError(f"attacks {sorted(attacks)} need signals {missing} [M, ...]")
    sig = {n: _per_target(signals[n], n, M) for n in needs}
    empty = sorted(n for n in needs if n.endswith("_pop") and np.ndim(sig[n]) >= 2
                   and np.shape(sig[n])[1] == 0)
    if empty:   # RMIA compares with population points: none would end in a reshape error
        raise ValueError(f"attacks {sorted(a for a in attacks if set(entries[a].needs) & set(empty))} "
                         f"need population signals {empty} [M, Z] with Z >= 1 points no model "
                         f"trained on (e.g. a test set); got Z = 0")
    if "phi" in sig:
        if sig["phi"].ndim == 2:
            sig["phi"] = sig["phi"][..., None]
        if sig["phi"].shape[:2] != (M, N):
            raise ValueError(f"keep {keep.shape} must be [M, N] = {sig['phi'].shape[:2]}")
    if labels is not None:
        C = sig["probs"].shape[-1] if "probs" in sig else None
        labels = check_labels(labels, C, shape=(N,))
    mask = np.ones(M, bool) if model_mask is None else np.asarray(model_mask, bool)
    if mask.shape != (M,):
        raise ValueError(f"model_mask {mask.shape} must be [M] = {(M,)}")
    if targets is None:
        targets = np.flatnonzero(mask)[: first_targets or None]
    targets = np.asarray(targets, np.int64).reshape(-1)
    if targets.size and ((targets < 0).any() or (targets >= M).any() or not mask[targets].all()):
        raise ValueError("targets must be indices of usable models (inside model_mask)")
    # models whose signals hold NaN/inf (diverged) are neither targets nor shadows
    checked = sorted(n for n in needs if n not in registry.UNCHECKED_SIGNALS)
    bad = nonfinite_models([sig[n] for n in checked], mask) if checked else np.zeros(M, bool)
    excluded = np.flatnonzero(bad).tolist()
    if excluded:
        warnings.warn(f"evaluate: models {excluded} have NaN/inf values in the signals "
                      f"{checked}; they are excluded as targets and as shadow models "
                      "(Evaluation.excluded_models)", NonFiniteModelWarning, stacklevel=3)
        mask = mask & ~bad
        targets = targets[~bad[targets]]

    if return_scores and max_kept_scores is not None and targets.size * N > max_kept_scores:
        return_scores = False   # (a memory bound: the metrics are computed all the same)
    if pair_out not in ("auto", True, False):
        raise ValueError(f'pair_out must be "auto", True or False, got {pair_out!r}')
    pair_names = [a for a, e in entries.items() if e.pair_out]
    pair = bool(pair_names) and (balanced_design(keep) if pair_out == "auto" else bool(pair_out))
    pair_seed = shadow_seed if pair else None

    acc = {}  # attack -> {metric: [blocks]} (and "_members" / "_non_members": scored counts)
    all_scores, params = {}, ({a: {"pair_out": True} for a in pair_names} if pair else {})
    n_nan = {}  # attack -> NaN (unscored) scores

    def record(name, s, tgt):  # s [T', N] for the targets tgt
        auc, tprs, sm, sn = roc_metrics(s, keep[tgt], fprs, return_counts=True)
        a = acc.setdefault(name, {})
        for k, v in (("auc", auc), *((f"tpr_at_{f}_fpr", t) for f, t in zip(fprs, tprs)),
                     ("_members", sm), ("_non_members", sn)):
            a.setdefault(k, []).append(v)
        n_nan[name] = n_nan.get(name, 0) + int(np.isnan(s).sum())
        if return_scores:
            all_scores.setdefault(name, []).append(np.asarray(s, np.float64))

    # --- LiRA with every other usable model as a shadow: statistics once, leave-one-out per block
    kinds = tuple((a, e.options["online"], e.options["fixed_variance"]) for a, e in entries.items()
                  if e.loo == "lira" and num_shadows is None)
    if kinds and targets.size:
        _lira_all_targets(jnp.asarray(sig["phi"], jnp.float32), keep, mask, targets, kinds, record,
                          location=location, offline_variant=offline_variant, fixed_mode=fixed_mode,
                          min_in=min_in, min_out=min_out, eps=eps,
                          target_block_elems=target_block_elems, pair_seed=pair_seed)

    # --- every other attack (and LiRA with shadow subsets): per-target calls of its function,
    # in blocks of targets
    others = [a for a in attacks if not any(a == k[0] for k in kinds)]
    if others and targets.size:
        shadows = _shadow_sets(targets, mask, num_shadows, shadow_seed)
        if "phi" in sig:  # the attacks read φ in float32 (a copy only for other dtypes)
            sig["phi"] = np.asarray(sig["phi"], np.float32)
        per_call = {a: dict(entries[a].options) for a in others}
        for a in others:
            e = entries[a]
            if e.loo == "lira":
                per_call[a].update({k: v for k, v in lira_opts.items() if k != "fixed_variance"})
            if e.family == "rmia":
                per_call[a] = rmia_call_options(a, e, sig, keep, mask, targets, shadows,
                                                 rmia_opts, rmia_tune, params)
        tb = max(1, target_block_elems // max(N, 1))
        pick = PairOut(keep) if pair_seed is not None else None
        for attack in others:
            e = entries[attack]
            with_drop = pair_seed is not None and e.pair_out
            with warnings.catch_warnings():  # the per-target warnings become one, below
                warnings.simplefilter("ignore", FewShadowsWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                for b0 in range(0, targets.size, tb):
                    rows = []
                    drops = pick(targets[b0:b0 + tb], pair_seed) if with_drop else None
                    for j in range(b0, min(b0 + tb, targets.size)):
                        kw = dict(per_call[attack])
                        if isinstance(kw.get("a"), np.ndarray):  # tuned per target
                            kw["a"] = float(kw["a"][j])
                        view = registry.TargetView(sig, keep, int(targets[j]), shadows[j], labels,
                                                   None if drops is None else drops[j - b0])
                        rows.append(np.asarray(e.call(view, **kw), np.float64))
                    record(attack, np.stack(rows), targets[b0:b0 + tb])

    metrics, scored = {}, {}
    for a in attacks:
        if a in acc:
            cat = {k: np.concatenate(v) for k, v in acc[a].items()}
            scored[a] = {"members": cat.pop("_members"), "non_members": cat.pop("_non_members")}
            metrics[a] = cat
        else:  # no target left
            metrics[a] = {k: np.zeros(0) for k in ["auc"] + [f"tpr_at_{f}_fpr" for f in fprs]}
            scored[a] = {"members": np.zeros(0, np.int64), "non_members": np.zeros(0, np.int64)}
    scores = ({a: (np.concatenate(all_scores[a]) if a in all_scores else np.zeros((0, N)))
               for a in attacks} if return_scores else None)
    n_members = keep[targets].sum(1)
    n_non_members = N - n_members
    for a in attacks:
        _warn_coverage(a, entries[a], scored[a], n_nan.get(a, 0), n_members, n_non_members,
                       min_scored, _nan_reason(entries[a], min_in, min_out))
    return Evaluation(targets=targets, metrics=metrics, scores=scores, params=params,
                      members=keep[targets] if return_scores else None, scored=scored,
                      excluded_models=excluded, n_members=n_members, n_non_members=n_non_members,
                      min_scored=min_scored)


def _nan_reason(entry, min_in, min_out):
    """Why an attack leaves an example unscored (NaN)."""
    online = entry.options.get("online")
    if entry.loo == "lira":
        return (f"fewer than {min_in} IN or {min_out} OUT shadow models" if online
                else f"fewer than {min_out} OUT shadow models")
    if entry.family == "rmia":
        return "no IN or no OUT reference model" if online else "no OUT reference model"
    return "NaN scores from the attack"


def _warn_coverage(attack, entry, scored, n_nan, n_members, n_non_members, min_scored, reason):
    """At most one warning per attack about what it left unscored: metrics undefined (NaN) for
    targets without a scored member or non-member (an :class:`UndefinedMetricWarning`, with how
    many targets and why), else NaN scores alone (a :class:`FewShadowsWarning` for LiRA and
    RMIA); and one :class:`FewScoredWarning` for targets whose metrics rest on fewer than
    ``min_scored`` scored members or non-members."""
    sm, sn = scored["members"], scored["non_members"]
    T = sm.size
    nan = f"{n_nan} of {int((n_members + n_non_members).sum())} scores are NaN ({reason})"
    und = (sm == 0) | (sn == 0)
    if und.any():
        why = [(int((n_non_members == 0).sum()), "with no non-member (keep row all True)"),
               (int((n_members == 0).sum()), "with no member (keep row all False)"),
               (int(((sn == 0) & (n_non_members > 0)).sum()), "with no non-member scored"),
               (int(((sm == 0) & (n_members > 0)).sum()), "with no member scored")]
        warnings.warn(
            f"evaluate[{attack}] ({T} targets): AUC and TPR@FPR are undefined (NaN) for "
            f"{int(und.sum())} of them: " + "; ".join(f"{k} {w}" for k, w in why if k)
            + (f". {nan}" if n_nan else "") + ". Means and stds are over the other "
            f"{T - int(und.sum())} targets (n_targets)", UndefinedMetricWarning, stacklevel=4)
    elif n_nan:
        warnings.warn(f"evaluate[{attack}] ({T} targets): {nan}",
                      FewShadowsWarning if entry.loo or entry.family else UserWarning, stacklevel=4)
    few = ~und & (np.minimum(sm, sn) < min_scored)
    if few.any():
        warnings.warn(
            f"evaluate[{attack}]: {int(few.sum())} of {T} targets have fewer than {min_scored} "
            f"scored members or non-members (fewest: {int(sm[few].min())} members, "
            f"{int(sn[few].min())} non-members scored); their AUC and TPRs rest on a handful of "
            "examples", FewScoredWarning, stacklevel=4)


def _lira_all_targets(phi, keep, mask, targets, kinds, record, *, location, offline_variant,
                      fixed_mode, min_in, min_out, eps, target_block_elems, pair_seed):
    M, N, A = phi.shape
    st = example_stats(phi, keep, mask, location)
    tb = max(1, target_block_elems // (N * A))
    cols = jnp.arange(N)
    pick = PairOut(keep) if pair_seed is not None else None
    for t0 in range(0, targets.size, tb):
        tgt = targets[t0:t0 + tb]
        sel = np.r_[tgt, np.full(tb - tgt.size, tgt[0])] if targets.size > tb else tgt  # one shape
        drop = {}
        if pair_seed is not None:  # the model left out with each target on each example
            d = pick(sel, pair_seed)
            has = (d >= 0) & mask[np.maximum(d, 0)]
            drop = {"v_drop": phi[jnp.asarray(np.maximum(d, 0)), cols[None, :]],
                    "has_drop": jnp.asarray(has)}
        with jax.enable_x64(True):
            sc, _ = lira_targets(
                phi[sel], jnp.asarray(keep[sel]), st, **drop, kinds=kinds, location=location,
                offline_variant=offline_variant, fixed_mode=fixed_mode, min_in=min_in,
                min_out=min_out, eps=eps,
            )
            sc = jax.device_get(sc)
        for k, _, _ in kinds:
            record(k, sc[k][: tgt.size], tgt)
