"""Every model as the target: membership attacks on a stack of M models, the one driver.

Each model t in turn (all, or ``targets``) is the target, and every other usable model (or a
fixed random subset of ``num_shadows`` of them) is one of its shadow/reference models; its members
are ``keep[t]``. Each attack is looked up in :data:`jaxmem.attacks.registry.ATTACKS` and called on
the signals it names. Per attack and target the ROC-AUC and TPR at FPR 0.1% / 1% are reported, as
in Carlini et al. (2022), Sec. V; :meth:`Evaluation.table` aggregates the scores over any subset of
examples. LiRA with every other model as a shadow uses the batched leave-one-out kernel of
:mod:`jaxmem.attacks._loo` (one pass for all targets).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.attacks import registry
from jaxmem.attacks._loo import example_stats, lira_targets
from jaxmem.attacks.evaluation import Evaluation
from jaxmem.attacks.lira import _check_options, warn_few
from jaxmem.attacks.roc import roc_metrics

__all__ = ["evaluate", "Evaluation", "ATTACKS", "DEFAULT_ATTACKS", "LIRA_ATTACKS"]

ATTACKS = registry.ATTACKS
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


def _rmia_given_options(opts):
    """RMIA's query aggregation and trimming as passed (JSON-ready); {} when left to defaults."""
    return {k: (str(opts[k]) if k == "aggregate" else float(opts[k]))
            for k in ("aggregate", "trim") if k in opts}


def _rmia_offline_a(p, keep, p_pop, mask, targets, shadows, opts, mode):
    """RMIA's offline ``a``: given, tuned once on the usable models, or tuned per target ([T])."""
    from jaxmem.attacks.rmia import tune_rmia_a

    given = _rmia_given_options(opts)  # recorded next to a when passed explicitly
    if opts.get("a") is not None:
        return float(opts["a"]), {"a": float(opts["a"]), "a_source": "given", **given}
    kw = dict(gamma=opts.get("gamma", 1.0), aggregate=opts.get("aggregate", "mean"),
              trim=opts.get("trim", 0.0))
    if mode == "once":
        usable = np.flatnonzero(mask)
        a = tune_rmia_a(p[usable], keep[usable], p_pop[usable], tune_model=0, **kw)
        return a, {"a": a, "a_source": "tuned_once", "tune_model": int(usable[0]), **given}
    per = [tune_rmia_a(p[sh], keep[sh], p_pop[sh], **kw)   # what rmia(..., a=None) does
           for sh in shadows]
    return np.array(per), {"a": per, "a_source": "tuned_per_target", **given}


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
    attacks=registry.DEFAULT_ATTACKS,
    targets=None,
    *,
    model_mask=None,
    num_shadows=None,
    shadow_seed=0,
    labels=None,
    fprs=(0.001, 0.01),
    return_scores=False,
    target_block_elems=1 << 22,
    **options,
):
    """Attack every model (or ``targets``) with all other usable models as its shadows.

    Args:
      signals: mapping of per-model signals, each with the model axis first (a
        :class:`jaxmem.signals.Signals`, or a dict; a bare array is taken as ``{"phi": array}``):
        ``"phi"`` [M, N, A] (or [M, N]) logit-scaled confidences of M models on N examples, A
        queries (LiRA, global threshold); ``"loss"`` [M, N(, A)] per-example losses
        (:func:`jaxmem.attacks.threshold.loss_attack`, averaged over A); ``"p"`` [M, N(, A)]
        true-class probabilities on the N examples and ``"p_pop"`` [M, Z(, A)] on Z population
        points that no model trained on (:func:`jaxmem.attacks.rmia.rmia`; A is averaged first,
        unless ``rmia_aggregate="vote"`` passes each query's p); ``"probs"`` [M, N, C] (Shokri,
        with ``labels``); ``"p_taylor"`` / ``"p_taylor_pop"`` (RMIA's research signal).
        Whatever the registered attacks need (:data:`jaxmem.attacks.registry.ATTACKS`); compute
        them with :func:`jaxmem.signals.compute_signals`.
      keep: [M, N] bool membership.
      attacks: names of :data:`jaxmem.attacks.registry.ATTACKS`.
      targets: model indices to attack (default: every usable model).
      model_mask: [M] bool, False for models to exclude entirely (diverged): neither targets nor
        shadows.
      num_shadows: None: every other usable model is a shadow of each target (LiRA then uses its
        batched leave-one-out kernel). An int k: each target's shadows are the first k usable
        non-target models of one fixed random order (``shadow_seed``), sorted; every attack is
        then called per target.
      labels: [N] true labels (attacks that read them: Shokri).
      fprs: FPRs of the reported TPRs.
      return_scores: also keep every target's [N] scores (``Evaluation.scores``).
      **options: LiRA options (``location``, ``offline_variant``, ``min_in``, ``min_out``,
        ``eps`` as in :func:`jaxmem.attacks.lira.lira`; ``fixed_variance="in"`` switches the
        fixed-variance attacks to the reference code's IN-spread-for-both choice) and RMIA
        options prefixed ``rmia_``: ``rmia_a``, ``rmia_gamma``, ``rmia_aggregate`` ("mean" or
        "vote") and ``rmia_trim`` (passed to ``rmia``, and to the tuning of ``a``) and
        ``rmia_tune`` (how ``a`` is chosen when ``rmia_a`` is not given, below). When given,
        ``rmia_aggregate`` / ``rmia_trim`` are recorded in ``Evaluation.params["rmia_offline"]``
        (next to ``a``) and ``params["rmia_online"]`` as ``"aggregate"`` / ``"trim"``.

    RMIA offline ``a``: unless ``rmia_a`` is given it is tuned ONCE with
    :func:`jaxmem.attacks.rmia.tune_rmia_a` (ML Privacy Meter's grid search, highest AUC wins):
    the first usable model (lowest index inside ``model_mask``) plays the target and the other
    usable models are its references; that ``a`` then scores every target, and is recorded in
    ``Evaluation.params["rmia_offline"]``. In leave-one-out evaluation every model is also a
    target, so this ``a`` has seen each target's membership row (as one of the pseudo-target's
    references), and for the first usable model it was chosen on that target's own members: a
    selection of one of 11 grid values, hence a small optimistic bias, not a per-example leak.
    ``rmia_tune="per_target"`` is the leak-free (and ~12x slower) alternative: each target tunes
    its own ``a`` among its own references only (``rmia(..., a=None)`` per target), as ML Privacy
    Meter does inside its loop over targets (with the target's paired model as pseudo-target).

    Returns:
      :class:`Evaluation`; ``.summary()`` gives mean ± std over targets.
    """
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
    rmia_tune = rmia_opts.pop("tune", "once")
    if rmia_tune not in ("once", "per_target"):
        raise ValueError(f'rmia_tune must be "once" or "per_target", got {rmia_tune!r}')
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
    sig = {n: _per_target(signals[n], n, M) for n in needs if n != "phi"}
    if "phi" in needs:
        phi = jnp.asarray(signals["phi"], jnp.float32)
        if phi.ndim == 2:
            phi = phi[..., None]
        if phi.shape[:2] != (M, N):
            raise ValueError(f"keep {keep.shape} must be [M, N] = {phi.shape[:2]}")
    mask = np.ones(M, bool) if model_mask is None else np.asarray(model_mask, bool)
    if mask.shape != (M,):
        raise ValueError(f"model_mask {mask.shape} must be [M] = {(M,)}")
    if targets is None:
        targets = np.flatnonzero(mask)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if targets.size and ((targets < 0).any() or (targets >= M).any() or not mask[targets].all()):
        raise ValueError("targets must be indices of usable models (inside model_mask)")

    metrics, all_scores, params = {}, {}, {}
    _metrics = functools.partial(roc_metrics, fprs=fprs)

    def record(name, s, tgt):  # s [T', N] for the targets tgt
        auc, tprs = _metrics(s, keep[tgt])
        metrics.setdefault(name, {"auc": []})["auc"].append(auc)
        for f, t in zip(fprs, tprs):
            metrics[name].setdefault(f"tpr_at_{f}_fpr", []).append(t)
        if return_scores:
            all_scores.setdefault(name, []).append(np.asarray(s, np.float64))

    # --- LiRA with every other usable model as a shadow: statistics once, leave-one-out per block
    kinds = tuple((a, e.options["online"], e.options["fixed_variance"]) for a, e in entries.items()
                  if e.loo == "lira" and num_shadows is None)
    if kinds:
        _lira_all_targets(phi, keep, mask, targets, kinds, record, location=location,
                          offline_variant=offline_variant, fixed_mode=fixed_mode, min_in=min_in,
                          min_out=min_out, eps=eps, target_block_elems=target_block_elems)

    # --- every other attack (and LiRA with shadow subsets): per-target calls of its function
    others = [a for a in attacks if not any(a == k[0] for k in kinds)]
    if others:
        shadows = _shadow_sets(targets, mask, num_shadows, shadow_seed)
        if "phi" in needs:
            sig["phi"] = np.asarray(phi)
        per_call = {a: dict(entries[a].options) for a in others}
        for a in others:
            e = entries[a]
            if e.loo == "lira":
                per_call[a].update({k: v for k, v in lira_opts.items() if k != "fixed_variance"})
            if e.family == "rmia":
                per_call[a] = _rmia_call_options(a, e, sig, keep, mask, targets, shadows,
                                                 rmia_opts, rmia_tune, params)
        for attack in others:
            e = entries[attack]
            rows = []
            for j, t in enumerate(targets):
                kw = dict(per_call[attack])
                if isinstance(kw.get("a"), np.ndarray):  # tuned per target
                    kw["a"] = float(kw["a"][j])
                view = registry.TargetView(sig, keep, int(t), shadows[j], labels)
                rows.append(np.asarray(e.call(view, **kw), np.float64))
            record(attack, np.stack(rows) if rows else np.zeros((0, N)), targets)

    metrics = {a: {k: np.concatenate(v) for k, v in metrics[a].items()} for a in attacks if a in metrics}
    scores = ({a: np.concatenate(all_scores[a]) for a in attacks if a in all_scores}
              if return_scores else None)
    return Evaluation(targets=targets, metrics=metrics, scores=scores, params=params,
                      members=keep[targets] if return_scores else None)


def _rmia_call_options(name, entry, sig, keep, mask, targets, shadows, rmia_opts, mode, params):
    """The keyword options of an RMIA entry: the driver's ``rmia_*`` options under the entry's own,
    its signals folded over queries once (averaged, or kept per query for the vote), and the
    offline coefficient ``a`` (given, tuned once, or per target) recorded in ``params``."""
    opts = {**rmia_opts, **entry.options}
    per_query = opts.get("aggregate", "mean") == "vote"
    for k in ("p", "p_pop"):   # the folded array under a key of its own, made once per fold
        key = (opts[k], per_query)
        if key not in sig:
            x = sig[opts[k]].astype(np.float64)
            x = x.reshape(x.shape[0], x.shape[1], -1)
            sig[key] = x if per_query else x.mean(-1)
        opts[k] = key
    given = _rmia_given_options(rmia_opts)
    if opts.get("online"):
        opts.pop("a", None)
        if given:
            params[name] = given
    elif targets.size:
        opts["a"], params[name] = _rmia_offline_a(sig[opts["p"]], keep, sig[opts["p_pop"]], mask,
                                                  targets, shadows, {**rmia_opts, **entry.options},
                                                  mode)
    return opts


def _lira_all_targets(phi, keep, mask, targets, kinds, record, *, location, offline_variant,
                      fixed_mode, min_in, min_out, eps, target_block_elems):
    M, N, A = phi.shape
    st = example_stats(phi, keep, mask, location)
    tb = max(1, target_block_elems // (N * A))
    n_bad = {k[0]: 0 for k in kinds}
    for t0 in range(0, targets.size, tb):
        tgt = targets[t0:t0 + tb]
        sel = np.r_[tgt, np.full(tb - tgt.size, tgt[0])] if targets.size > tb else tgt  # one shape
        with jax.enable_x64(True):
            sc, nb = lira_targets(
                phi[sel], jnp.asarray(keep[sel]), st, kinds=kinds, location=location,
                offline_variant=offline_variant, fixed_mode=fixed_mode, min_in=min_in,
                min_out=min_out, eps=eps,
            )
            sc, nb = jax.device_get((sc, nb))
        for k, _, _ in kinds:
            n_bad[k] += int(nb[k][: tgt.size].sum())
            record(k, sc[k][: tgt.size], tgt)
    for k, online, _ in kinds:
        warn_few(n_bad[k], targets.size * N, min_in, min_out, online,
                 who=f"evaluate[{k}] ({targets.size} targets)", stacklevel=3)
