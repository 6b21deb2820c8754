"""Every model as the target: leave-one-out membership attacks on a stack of M models.

Each model t in turn (all, or ``targets``) is the target and every other usable model is one of its
shadow/reference models; its members are ``keep[t]``. Per attack and target the ROC-AUC and TPR at
FPR 0.1% / 1% are reported, as in Carlini et al. (2022), Sec. V.

LiRA statistics are NOT recomputed per target. Per example, the IN and OUT sets of all usable
models are summarized once: three order statistics around the median (exact bit-bisection
selection, :mod:`jaxmem.attacks._select`), the mean and the sum of squared deviations. Removing
the target's own value v from a sorted set s of size n moves the median predictably:

* n = 2p:   median' = s[p−1] if v > s[p−1] else s[p]
* n = 2p+1: median' = ½(lo + hi), lo = s[p−1] if v > s[p−1] else s[p], hi = s[p] if v > s[p] else s[p+1]

and the leave-one-out mean/variance follow from a rank-one downdate (n' = n − 1,
μ' = (nμ − v)/n', SS' = SS − (v − μ)(v − μ'), in float64; a leave-one-out set left constant gets
SS' = 0 and its value as mean exactly, from the set's min/max and their multiplicities). The scores
then equal per-target :func:`lira` calls up to float64 rounding (except where σ' is tiny next to
the removed point's deviation, when the downdate loses relative precision ~1e-16·SS/SS'), at the
cost of one pass for all targets.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.attacks._batched_roc import batched_roc_metrics
from jaxmem.attacks.lira import (
    _check_options,
    blocked_stats,
    score_from_stats,
    warn_few,
)

__all__ = ["evaluate", "Evaluation", "LIRA_ATTACKS", "ATTACKS", "DEFAULT_ATTACKS"]

#: LiRA variants: name -> (online, fixed_variance).
LIRA_ATTACKS = {
    "lira_online": (True, False),
    "lira_online_fixed_variance": (True, True),
    "lira_offline": (False, False),
    "lira_offline_fixed_variance": (False, True),
}
ATTACKS = tuple(LIRA_ATTACKS) + ("global_threshold", "loss", "rmia_offline", "rmia_online")
DEFAULT_ATTACKS = tuple(LIRA_ATTACKS) + ("global_threshold",)
_LIRA_OPTIONS = ("location", "offline_variant", "min_in", "min_out", "eps", "fixed_variance")


@dataclasses.dataclass
class Evaluation:
    """Per-target metrics of each attack.

    ``metrics[attack][metric]`` is a [T] array for ``targets`` (metric names ``"auc"`` and
    ``"tpr_at_{fpr}_fpr"``); ``scores[attack]`` is [T, N] when ``return_scores=True``;
    ``params[attack]`` records settings the evaluation chose (RMIA's offline ``a``).
    """

    targets: np.ndarray
    metrics: dict
    scores: dict | None = None
    #: settings chosen while evaluating, per attack (JSON-ready): ``params["rmia_offline"]`` is
    #: ``{"a": float, "a_source": "given" | "tuned_once", "tune_model": int}`` or, with
    #: ``rmia_tune="per_target"``, ``{"a": [T floats], "a_source": "tuned_per_target"}``; plus
    #: ``"aggregate"`` / ``"trim"`` when ``rmia_aggregate`` / ``rmia_trim`` were passed (then
    #: also ``params["rmia_online"]``).
    params: dict = dataclasses.field(default_factory=dict)

    def __getitem__(self, attack):
        return self.metrics[attack]

    def summary(self):
        """{attack: {metric: mean over targets, metric + "_std": std (ddof 0), "n_targets": T}}."""
        out = {}
        for attack, ms in self.metrics.items():
            row = {}
            for name, v in ms.items():
                row[name] = float(np.nanmean(v)) if v.size else float("nan")
                row[name + "_std"] = float(np.nanstd(v)) if v.size else float("nan")
            row["n_targets"] = int(self.targets.size)
            out[attack] = row
        return out


# ----------------------------------------------------------------------------- leave-one-out kernels


def _full_median(o, n):
    """Median of the whole set from o = (s[j0], s[j0+1], s[j0+2]), j0 = max(n//2 − 1, 0)."""
    return jnp.where(n == 1, o[..., 0], jnp.where(n % 2 == 0, 0.5 * (o[..., 0] + o[..., 1]), o[..., 1]))


def _loo_median(o, n, v):
    """Median of the set without one element of value v (v is in the set; n ≥ 2)."""
    lo = jnp.where(v > o[..., 0], o[..., 0], o[..., 1])
    hi = jnp.where(v > o[..., 1], o[..., 1], o[..., 2])
    return jnp.where(n % 2 == 0, lo, 0.5 * (lo + hi))


def _loo(st, name, v32, removed, location):
    """Location, SS and count of one hypothesis' set for each target, v [T, N, A], removed [T, N]."""
    v = v32.astype(jnp.float64)
    n = st[f"n_{name}"][None, :]  # [1, N]
    mean, ss = st[f"mean_{name}"][None], st[f"ss_{name}"][None]  # [1, N, A]
    r = removed[..., None]
    n_t = n - removed.astype(n.dtype)
    nf = n[..., None].astype(v.dtype)
    n_tf = n_t[..., None].astype(v.dtype)
    mean_t = jnp.where(n_tf > 0, (nf * mean - v) / jnp.maximum(n_tf, 1), jnp.nan)
    ss_t = jnp.where(n_tf > 0, ss - (v - mean) * (v - mean_t), 0.0)
    # A constant leave-one-out set gets SS' = 0 and its value as mean exactly (no rounding residue).
    lo, hi = st[f"min_{name}"][None], st[f"max_{name}"][None]
    c_lo, c_hi, n3 = st[f"cmin_{name}"][None], st[f"cmax_{name}"][None], n[..., None]
    drop_lo = (v32 == lo) & (c_lo == 1) & (c_hi == n3 - 1)
    drop_hi = (v32 == hi) & (c_hi == 1) & (c_lo == n3 - 1)
    const = (lo == hi) | drop_lo | drop_hi
    mean_t = jnp.where(const, jnp.where(drop_lo, hi, lo).astype(v.dtype), mean_t)
    ss_t = jnp.where(r, jnp.where(const, 0.0, jnp.maximum(ss_t, 0.0)), ss)
    mean_t = jnp.where(r, mean_t, mean)
    if location == "median":
        o = st[f"ord_{name}"][None]  # [1, N, A, 3]
        loc = jnp.where(r, _loo_median(o, n[..., None], v32), _full_median(o, n[..., None]))
    else:
        loc = mean_t
    return loc, ss_t, n_t


@functools.partial(jax.jit, static_argnames=("kinds", "location", "offline_variant", "fixed_mode"))
def _lira_targets(v, member, st, *, kinds, location, offline_variant, fixed_mode, min_in, min_out, eps):
    """LiRA scores of a block of targets: v [T, N, A] their φ, member [T, N] their keep rows."""
    mu_in, ss_in, n_in = _loo(st, "in", v, member, location)
    mu_out, ss_out, n_out = _loo(st, "out", v, ~member, location)
    sd = {
        "in": jnp.sqrt(ss_in / n_in[..., None]),
        "out": jnp.sqrt(ss_out / n_out[..., None]),
        "in_pooled": jnp.sqrt(jnp.sum(ss_in, 1) / jnp.maximum(jnp.sum(n_in, 1), 1)[:, None])[:, None],
        "out_pooled": jnp.sqrt(jnp.sum(ss_out, 1) / jnp.maximum(jnp.sum(n_out, 1), 1)[:, None])[:, None],
    }
    if fixed_mode == "in":
        sd["out_pooled"] = sd["in_pooled"]
    scores, n_bad = {}, {}
    for kind in kinds:
        online, fixed = LIRA_ATTACKS[kind]
        s_in = sd["in_pooled"] if fixed else sd["in"]
        s_out = sd["out_pooled"] if fixed else sd["out"]
        s = score_from_stats(v, mu_in, s_in, mu_out, s_out, online=online, offline_variant=offline_variant, eps=eps)
        bad = n_out < jnp.maximum(min_out, 1)
        if online:
            bad |= n_in < jnp.maximum(min_in, 1)
        scores[kind] = jnp.where(bad, jnp.nan, s)
        n_bad[kind] = jnp.sum(bad, axis=1)
    return scores, n_bad


def _example_stats(phi, keep, mask, location):
    """Per-example IN/OUT statistics over the usable models (float64 means/SS; see lira.py)."""
    with jax.enable_x64(True):
        maskj = jnp.asarray(mask)[:, None]
        keepj = jnp.asarray(keep)
        st = blocked_stats(
            phi, keepj & maskj, ~keepj & maskj, n_next=2, want_order=location == "median", extremes=True,
            rank_fn=lambda n_in, n_out: (jnp.maximum(n_in // 2 - 1, 0), jnp.maximum(n_out // 2 - 1, 0)),
        )
    if location != "median":
        st.pop("ord_in", None), st.pop("ord_out", None)
    return st


# ----------------------------------------------------------------------------- public API


def _per_target(x, m, M):
    """[M, N] or [M, N, A] signal as a numpy array with M models checked; None stays None."""
    if x is None:
        return None
    x = np.asarray(x)
    if x.shape[0] != M:
        raise ValueError(f"signal {m!r} has {x.shape[0]} models, expected {M}")
    return x


def _rmia_offline_a(p, keep, p_pop, mask, targets, opts, mode):
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
    per = []
    for t in targets:  # what rmia(..., a=None) does with the target's references
        ref = mask.copy()
        ref[t] = False
        per.append(tune_rmia_a(p[ref], keep[ref], p_pop[ref], **kw))
    return np.array(per), {"a": per, "a_source": "tuned_per_target", **given}


def _rmia_given_options(opts):
    """RMIA's query aggregation and trimming as passed (JSON-ready); {} when left to defaults."""
    return {k: (str(opts[k]) if k == "aggregate" else float(opts[k]))
            for k in ("aggregate", "trim") if k in opts}


def evaluate(
    phi,
    keep,
    attacks=DEFAULT_ATTACKS,
    targets=None,
    *,
    model_mask=None,
    signals=None,
    fprs=(0.001, 0.01),
    return_scores=False,
    target_block_elems=1 << 22,
    **options,
):
    """Attack every model (or ``targets``) with all other usable models as its shadows.

    Args:
      phi: [M, N, A] (or [M, N]) logit-scaled confidences of M models on N examples, A queries.
      keep: [M, N] bool membership.
      attacks: names among :data:`ATTACKS`: ``"lira_online"``, ``"lira_online_fixed_variance"``,
        ``"lira_offline"``, ``"lira_offline_fixed_variance"``, ``"global_threshold"`` (mean of
        the target's φ), ``"loss"`` (needs ``signals["loss"]``), ``"rmia_offline"`` /
        ``"rmia_online"`` (need ``signals["p"]`` and ``signals["p_pop"]``).
      targets: model indices to attack (default: every usable model).
      model_mask: [M] bool, False for models to exclude entirely (diverged): neither targets nor
        shadows.
      signals: optional mapping of extra per-model signals, each with the model axis first:
        ``"loss"`` [M, N(, A)] per-example losses (:func:`jaxmem.attacks.threshold.loss_attack`,
        averaged over A); ``"p"`` [M, N(, A)] true-class probabilities on the N examples and
        ``"p_pop"`` [M, Z(, A)] on Z population points that no model trained on
        (:func:`jaxmem.attacks.rmia.rmia`; A is averaged first, unless ``rmia_aggregate="vote"``
        passes each query's p). Compute them with :mod:`jaxmem.signals` from logits.
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
    signals = dict(signals or {})
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; choose from {ATTACKS}")
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

    phi = jnp.asarray(phi, jnp.float32)
    if phi.ndim == 2:
        phi = phi[..., None]
    M, N, A = phi.shape
    keep = np.asarray(keep, bool)
    if keep.shape != (M, N):
        raise ValueError(f"keep {keep.shape} must be [M, N] = {(M, N)}")
    mask = np.ones(M, bool) if model_mask is None else np.asarray(model_mask, bool)
    if mask.shape != (M,):
        raise ValueError(f"model_mask {mask.shape} must be [M] = {(M,)}")
    if targets is None:
        targets = np.flatnonzero(mask)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if targets.size and ((targets < 0).any() or (targets >= M).any() or not mask[targets].all()):
        raise ValueError("targets must be indices of usable models (inside model_mask)")

    metrics, all_scores, params = {}, {}, {}

    _metrics = functools.partial(batched_roc_metrics, fprs=fprs)

    def record(name, s, tgt):  # s [T', N] for the targets tgt
        auc, tprs = _metrics(s, keep[tgt])
        metrics.setdefault(name, {"auc": []})["auc"].append(auc)
        for f, t in zip(fprs, tprs):
            metrics[name].setdefault(f"tpr_at_{f}_fpr", []).append(t)
        if return_scores:
            all_scores.setdefault(name, []).append(np.asarray(s, np.float64))

    # --- LiRA: per-example statistics once, then leave-one-out per target block
    kinds = tuple(a for a in attacks if a in LIRA_ATTACKS)
    if kinds:
        st = _example_stats(phi, keep, mask, location)
        tb = max(1, target_block_elems // (N * A))
        n_bad = {k: 0 for k in kinds}
        for t0 in range(0, targets.size, tb):
            tgt = targets[t0:t0 + tb]
            sel = np.r_[tgt, np.full(tb - tgt.size, tgt[0])] if targets.size > tb else tgt  # one shape
            with jax.enable_x64(True):
                sc, nb = _lira_targets(
                    phi[sel], jnp.asarray(keep[sel]), st, kinds=kinds, location=location,
                    offline_variant=offline_variant, fixed_mode=fixed_mode, min_in=min_in,
                    min_out=min_out, eps=eps,
                )
                sc, nb = jax.device_get((sc, nb))
            for k in kinds:
                n_bad[k] += int(nb[k][: tgt.size].sum())
                record(k, sc[k][: tgt.size], tgt)
        for k in kinds:
            warn_few(n_bad[k], targets.size * N, min_in, min_out, LIRA_ATTACKS[k][0],
                     who=f"evaluate[{k}] ({targets.size} targets)", stacklevel=2)

    # --- other attacks: per-target calls of their own functions
    others = [a for a in attacks if a not in LIRA_ATTACKS]
    if others:
        from jaxmem.attacks.rmia import rmia
        from jaxmem.attacks.threshold import loss_attack

        phi_np = None
        loss = _per_target(signals.get("loss"), "loss", M)
        p = _per_target(signals.get("p"), "p", M)
        p_pop = _per_target(signals.get("p_pop"), "p_pop", M)
        if "loss" in others and loss is None:
            raise ValueError('the "loss" attack needs signals["loss"] [M, N(, A)]')
        if any(a.startswith("rmia") for a in others) and (p is None or p_pop is None):
            raise ValueError('RMIA needs signals["p"] [M, N(, A)] and signals["p_pop"] [M, Z(, A)]')
        mean_a = lambda x: x.reshape(x.shape[0], x.shape[1], -1).mean(-1)  # noqa: E731
        per_query = lambda x: x.reshape(x.shape[0], x.shape[1], -1)  # noqa: E731
        if p is not None:  # "vote" needs each query's p; otherwise A is averaged once here
            fold = per_query if rmia_opts.get("aggregate", "mean") == "vote" else mean_a
            p, p_pop = fold(p.astype(np.float64)), fold(p_pop.astype(np.float64))
        opts = dict(rmia_opts)
        if "rmia_offline" in others and targets.size:
            opts["a"], params["rmia_offline"] = _rmia_offline_a(p, keep, p_pop, mask, targets, opts, rmia_tune)
        if "rmia_online" in others and _rmia_given_options(opts):
            params["rmia_online"] = _rmia_given_options(opts)
        for attack in others:
            rows = []
            for j, t in enumerate(targets):
                if attack == "global_threshold":
                    if phi_np is None:
                        phi_np = np.asarray(phi)
                    rows.append(phi_np[t].mean(-1))
                elif attack == "loss":
                    rows.append(loss_attack(loss[t]))
                else:
                    ref = mask.copy()
                    ref[t] = False
                    kw = dict(opts, online=attack == "rmia_online")
                    if attack == "rmia_online":
                        kw.pop("a", None)
                    elif isinstance(opts.get("a"), np.ndarray):  # tuned per target
                        kw["a"] = float(opts["a"][j])
                    rows.append(rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], **kw))
            if rows:
                record(attack, np.stack(rows), targets)
            else:
                record(attack, np.zeros((0, N)), targets)

    metrics = {a: {k: np.concatenate(v) for k, v in metrics[a].items()} for a in attacks if a in metrics}
    scores = {a: np.concatenate(v) for a, v in all_scores.items()} if return_scores else None
    return Evaluation(targets=targets, metrics=metrics, scores=scores, params=params)
