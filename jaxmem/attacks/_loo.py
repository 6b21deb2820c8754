"""LiRA with every model as the target, in one pass (the batched kernel of
:func:`jaxmem.attacks.evaluate`).

LiRA statistics are NOT recomputed per target. Per example, the IN and OUT sets of all usable
models are summarized once: three order statistics around the median (exact bit-bisection
selection, :mod:`jaxmem.attacks._select`), the mean and the sum of squared deviations. Removing
the target's own value v from a sorted set s of size n moves the median predictably:

* n = 2p:   median' = s[p−1] if v > s[p−1] else s[p]
* n = 2p+1: median' = ½(lo + hi), lo = s[p−1] if v > s[p−1] else s[p], hi = s[p] if v > s[p] else s[p+1]

and the leave-one-out mean/variance follow from a rank-one downdate (n' = n − 1,
μ' = (nμ − v)/n', SS' = SS − (v − μ)(v − μ'), in float64; a leave-one-out set left constant gets
SS' = 0 and its value as mean exactly, from the set's min/max and their multiplicities). The scores
then equal per-target :func:`jaxmem.attacks.likelihood_ratio.lira` calls up to float64 rounding (except where
σ' is tiny next to the removed point's deviation, when the downdate loses relative precision
~1e-16·SS/SS'), at the cost of one pass for all targets. Leaving a pair out (a balanced design,
:func:`jaxmem.attacks.likelihood_ratio.pair_out`) removes one element from each set instead: the target's
value from its own side and the left-out model's value from the other, with the same formulas.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxmem.attacks.likelihood_ratio import blocked_stats, score_from_stats

__all__ = ["lira_targets", "example_stats"]


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
        o = st[f"ord_{name}"][None].astype(jnp.float64)  # [1, N, A, 3]; medians in float64
        loc = jnp.where(r, _loo_median(o, n[..., None], v), _full_median(o, n[..., None]))
    else:
        loc = mean_t
    return loc, ss_t, n_t


@functools.partial(jax.jit, static_argnames=("kinds", "location", "offline_variant", "fixed_mode"))
def lira_targets(v, member, st, v_drop=None, has_drop=None, *, kinds, location, offline_variant,
                 fixed_mode, min_in, min_out, eps):
    """LiRA scores of a block of targets: v [T, N, A] their φ, member [T, N] their keep rows;
    when leaving a pair out (:func:`jaxmem.attacks.likelihood_ratio.pair_out`), v_drop [T, N, A] the φ of the
    model left out with the target on each example and has_drop [T, N] whether it is one of the
    usable models (its value is then removed from the set of the opposite membership)."""
    if v_drop is None:
        mu_in, ss_in, n_in = _loo(st, "in", v, member, location)
        mu_out, ss_out, n_out = _loo(st, "out", v, ~member, location)
    else:
        m3 = member[..., None]
        mu_in, ss_in, n_in = _loo(st, "in", jnp.where(m3, v, v_drop), member | has_drop, location)
        mu_out, ss_out, n_out = _loo(st, "out", jnp.where(m3, v_drop, v), ~member | has_drop, location)
    sd = {
        "in": jnp.sqrt(ss_in / n_in[..., None]),
        "out": jnp.sqrt(ss_out / n_out[..., None]),
        "in_pooled": jnp.sqrt(jnp.sum(ss_in, 1) / jnp.maximum(jnp.sum(n_in, 1), 1)[:, None])[:, None],
        "out_pooled": jnp.sqrt(jnp.sum(ss_out, 1) / jnp.maximum(jnp.sum(n_out, 1), 1)[:, None])[:, None],
    }
    if fixed_mode == "in":
        sd["out_pooled"] = sd["in_pooled"]
    scores, n_bad = {}, {}
    for kind, online, fixed in kinds:
        s_in = sd["in_pooled"] if fixed else sd["in"]
        s_out = sd["out_pooled"] if fixed else sd["out"]
        s = score_from_stats(v, mu_in, s_in, mu_out, s_out, online=online, offline_variant=offline_variant, eps=eps)
        bad = n_out < jnp.maximum(min_out, 1)
        if online:
            bad |= n_in < jnp.maximum(min_in, 1)
        scores[kind] = jnp.where(bad, jnp.nan, s)
        n_bad[kind] = jnp.sum(bad, axis=1)
    return scores, n_bad


def example_stats(phi, keep, mask, location):
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

