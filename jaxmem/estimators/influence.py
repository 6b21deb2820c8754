"""Influence of training examples on test examples (Feldman & Zhang 2020) and leave-subset-out effects.

Both are differences of means over the model axis, i.e. matrix products over models:
infl = Aᵀ @ test_metric with A[m, i] = keep[m,i]/n_in[i] − (1 − keep[m,i])/n_out[i]. The
[N, T] product is computed in blocks of training × test examples, written into a dense array, a
memory-mapped ``.npy`` file, or reduced on the fly to the top-k training examples per test
example, so N=50,000 × T=10,000 with M=1,000 never holds more than a few blocks in memory.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.estimators._common import (
    as_keep,
    as_model_mask,
    block_size,
    check_model_axis,
    is_jax,
    map_column_blocks,
    resolve_dtype,
    warn_missing,
)

__all__ = [
    "influence",
    "TopInfluence",
    "top_influencers",
    "SubsetEffect",
    "leave_subset_out",
    "GroupKeep",
    "group_keep_from_ids",
]

DEFAULT_BLOCK = (4096, 4096)


class TopInfluence(NamedTuple):
    indices: np.ndarray  # [T, k] training-example indices, most influential first
    values: np.ndarray  # [T, k] their influence (NaN where fewer than k finite values exist)
    n_in: np.ndarray  # [N]
    n_out: np.ndarray  # [N]


class SubsetEffect(NamedTuple):
    effect: np.ndarray  # [G, K] mean metric with the group − without
    stderr: np.ndarray  # [G, K]
    n_in: np.ndarray  # [G] models that kept the group
    n_out: np.ndarray  # [G] models that dropped it


class GroupKeep(NamedTuple):
    group_keep: np.ndarray  # [M, G] bool
    groups: np.ndarray  # [G] the sorted distinct group ids


def _matmul(xp, a, b):
    if xp is np:
        return a @ b
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _weights_kernel(xp, keep, mask, dt):
    """A[m, i] = keep/n_in − (1−keep)/n_out over the unmasked models (NaN column if n_in·n_out = 0)."""
    kin = (keep & mask[:, None]).astype(dt)
    kout = (~keep & mask[:, None]).astype(dt)
    n_in, n_out = kin.sum(0), kout.sum(0)
    a = kin / n_in - kout / n_out
    # Explicit NaN: XLA rewrites convert(bool)/0 to 0 instead of IEEE 0/0 = NaN.
    return xp.where((n_in > 0) & (n_out > 0), a, xp.asarray(np.nan, dt)), n_in, n_out


_weights_jit = jax.jit(partial(_weights_kernel, jnp), static_argnames="dt")


@jax.jit
def _product_jit(a, c):
    return jnp.matmul(a.T, c, precision=jax.lax.Precision.HIGHEST)


@partial(jax.jit, static_argnames="k")
def _merge_topk_jit(best_v, best_i, block, offset, k):
    s = block.T  # [bt, bn], already sign-adjusted
    s = jnp.where(jnp.isnan(s), -jnp.inf, s)
    idx = jnp.broadcast_to(offset + jnp.arange(s.shape[1]), s.shape)
    v = jnp.concatenate([best_v, s], axis=1)
    i = jnp.concatenate([best_i, idx], axis=1)
    top_v, pos = jax.lax.top_k(v, k)
    return top_v, jnp.take_along_axis(i, pos, axis=1)


def _merge_topk_np(best_v, best_i, block, offset, k):
    s = np.where(np.isnan(block.T), -np.inf, block.T)
    idx = np.broadcast_to(offset + np.arange(s.shape[1]), s.shape)
    v = np.concatenate([best_v, s], axis=1)
    i = np.concatenate([best_i, idx], axis=1)
    part = np.argpartition(-v, k - 1, axis=1)[:, :k]
    pv = np.take_along_axis(v, part, 1)
    order = np.argsort(-pv, axis=1, kind="stable")
    return np.take_along_axis(pv, order, 1), np.take_along_axis(np.take_along_axis(i, part, 1), order, 1)


def _blocks(keep, test_metric, mask, dt, block):
    """Yield (n0, t0, block [bn, bt]) of the influence matrix, plus n_in/n_out at the end.

    The JAX path pads N and T to whole blocks (one compiled shape); padded training columns
    have n_in = 0 and therefore NaN influence, padded test columns are zero.
    """
    m, n = keep.shape
    t = test_metric.shape[1]
    bn, bt = min(block[0], n), min(block[1], t)
    n_in = np.zeros(n)
    n_out = np.zeros(n)
    if dt == "float64":
        keep_np = np.asarray(keep)
        c = np.asarray(test_metric, dtype=np.float64)
        for n0 in range(0, n, bn):
            with np.errstate(divide="ignore", invalid="ignore"):
                a, ni, no = _weights_kernel(np, keep_np[:, n0 : n0 + bn], mask, np.float64)
            n_in[n0 : n0 + bn], n_out[n0 : n0 + bn] = ni, no
            for t0 in range(0, t, bt):
                yield n0, t0, a.T @ c[:, t0 : t0 + bt]
    else:
        pad_n, pad_t = -n % bn, -t % bt
        keep_j = jnp.pad(jnp.asarray(keep), ((0, 0), (0, pad_n)))
        c = jnp.pad(jnp.asarray(test_metric, jnp.float32), ((0, 0), (0, pad_t)))
        mask_j = jnp.asarray(mask)
        for n0 in range(0, n + pad_n, bn):
            a, ni, no = _weights_jit(keep_j[:, n0 : n0 + bn], mask_j, dt=jnp.float32)
            w = min(bn, n - n0)
            n_in[n0 : n0 + w], n_out[n0 : n0 + w] = np.asarray(ni)[:w], np.asarray(no)[:w]
            for t0 in range(0, t + pad_t, bt):
                yield n0, t0, _product_jit(a, c[:, t0 : t0 + bt])
    yield n_in.astype(np.int64), n_out.astype(np.int64)


def _prepare(keep, test_metric, model_mask, dtype):
    keep = as_keep(keep)
    if not is_jax(test_metric):
        test_metric = np.asarray(test_metric)
    check_model_axis("test_correct", test_metric, keep.shape[0])
    if test_metric.ndim != 2:
        raise ValueError(f"test_correct must be [M, T], got {test_metric.shape}")
    return keep, test_metric, as_model_mask(model_mask, keep.shape[0]), resolve_dtype(dtype, test_metric)


def influence(keep, test_correct, *, out=None, model_mask=None, dtype=None, block=DEFAULT_BLOCK):
    """Feldman & Zhang (2020), Eq. (2): infl[i, j] = mean_{m ∋ i} test_correct[m, j] − mean_{m ∌ i} test_correct[m, j].

    ``keep`` [M, N], ``test_correct`` [M, T] (any per-test-example metric of every model) ->
    influence [N, T]. Computed as Aᵀ @ test_correct in (block[0] × block[1]) tiles. With
    ``out`` a path, the result is written to a ``.npy`` file through
    ``numpy.lib.format.open_memmap`` and returned as a read-only memmap (host memory stays at a
    few tiles); otherwise a dense array is returned. Rows of training examples without an IN or
    OUT model are NaN (warned). Use ``top_influencers`` to keep only the top-k per test example.
    """
    keep, test_correct, mask, dt = _prepare(keep, test_correct, model_mask, dtype)
    n, t = keep.shape[1], test_correct.shape[1]
    if out is None:
        result = np.empty((n, t), dtype=dt)
    else:
        # Create the file, then map it one stripe of training rows at a time: unmapping a written
        # stripe hands its pages to the OS page cache, so resident memory stays at one stripe.
        np.lib.format.open_memmap(out, mode="w+", dtype=dt, shape=(n, t)).flush()
        result, stripe = None, None
    for item in _blocks(keep, test_correct, mask, dt, block):
        if len(item) == 2:
            n_in, n_out = item
            break
        n0, t0, blk = item
        if out is not None and stripe != n0:
            del result
            result, stripe = np.load(out, mmap_mode="r+"), n0
        blk = np.asarray(blk)
        h, w = min(blk.shape[0], n - n0), min(blk.shape[1], t - t0)
        result[n0 : n0 + h, t0 : t0 + w] = blk[:h, :w]
    warn_missing(int(np.sum((n_in == 0) | (n_out == 0))), n, "training examples have no IN or no OUT model")
    if out is None:
        return result
    del result
    return np.load(out, mmap_mode="r")


def top_influencers(keep, test_correct, k, *, largest=True, model_mask=None, dtype=None, block=DEFAULT_BLOCK):
    """The k training examples with the largest (or, ``largest=False``, most negative) influence
    (Feldman & Zhang 2020, Eq. 2) on each test example, without materialising [N, T].

    Returns ``TopInfluence(indices [T, k], values [T, k], n_in, n_out)`` sorted most influential
    first; NaN-influence rows (no IN/OUT model) are never selected before finite ones.
    """
    keep, test_correct, mask, dt = _prepare(keep, test_correct, model_mask, dtype)
    n, t = keep.shape[1], test_correct.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N={n}], got {k}")
    sign = 1.0 if largest else -1.0
    best = {}
    use_np = dt == "float64"
    for item in _blocks(keep, test_correct, mask, dt, block):
        if len(item) == 2:
            n_in, n_out = item
            break
        n0, t0, blk = item
        if t0 not in best:
            xp = np if use_np else jnp
            width = blk.shape[1]
            best[t0] = (xp.full((width, k), -np.inf, dtype=dt), xp.zeros((width, k), dtype=np.int32))
        if use_np:
            best[t0] = _merge_topk_np(*best[t0], sign * blk, n0, k)
        else:
            best[t0] = _merge_topk_jit(*best[t0], sign * blk, n0, k=k)
    values = np.concatenate([np.asarray(best[t0][0]) for t0 in sorted(best)])[:t]
    indices = np.concatenate([np.asarray(best[t0][1]) for t0 in sorted(best)])[:t].astype(np.int64)
    values = np.where(np.isneginf(values), np.nan, sign * values)
    warn_missing(int(np.sum((n_in == 0) | (n_out == 0))), n, "training examples have no IN or no OUT model")
    return TopInfluence(indices, values, n_in, n_out)


def _lso_kernel(xp, x, gkeep, mask, dt):
    m = mask[:, None]
    gin = (gkeep & m).astype(dt)
    gout = (~gkeep & m).astype(dt)
    zero = xp.zeros((), dt)
    x = xp.where(m, x.astype(dt), zero)
    xc = xp.where(m, x - x.sum(0) / mask.sum(), zero)  # centred: the one-pass variance stays stable
    n_in, n_out = gin.sum(0)[:, None], gout.sum(0)[:, None]
    s_in, s_out = _matmul(xp, gin.T, xc), _matmul(xp, gout.T, xc)
    q_in, q_out = _matmul(xp, gin.T, xc * xc), _matmul(xp, gout.T, xc * xc)
    mu_in, mu_out = s_in / n_in, s_out / n_out
    var_in = xp.maximum(q_in - s_in * mu_in, zero) / (n_in - 1)
    var_out = xp.maximum(q_out - s_out * mu_out, zero) / (n_out - 1)
    ok = (n_in > 0) & (n_out > 0)
    nan = xp.asarray(np.nan, dt)
    return xp.where(ok, mu_in - mu_out, nan), xp.where(ok, xp.sqrt(var_in / n_in + var_out / n_out), nan)


_lso_jit = jax.jit(partial(_lso_kernel, jnp), static_argnames="dt")


def leave_subset_out(group_keep, metric, *, model_mask=None, dtype=None, block=None) -> SubsetEffect:
    """Effect of a whole group (subpopulation, duplicate set, class) on a metric.

    The group analogue of Feldman & Zhang (2020) Eq. (2): with designs in which groups are kept
    or dropped together, effect[g, k] = mean_{m keeps g} metric[m, k] − mean_{m drops g} metric[m, k],
    stderr = sqrt(s²_in/n_in + s²_out/n_out) (ddof=1). ``group_keep`` [M, G] bool,
    ``metric`` [M, K] or [M] -> effect/stderr [G, K] or [G]. Blocked over K.
    """
    gkeep = as_keep(group_keep)
    if not is_jax(metric):
        metric = np.asarray(metric)
    check_model_axis("metric", metric, gkeep.shape[0])
    squeeze = metric.ndim == 1
    if squeeze:
        metric = metric[:, None]
    mask = as_model_mask(model_mask, gkeep.shape[0])
    dt = resolve_dtype(dtype, metric)
    kcols = metric.shape[1]
    blk = block_size(max(gkeep.shape[1], gkeep.shape[0]), block)
    if dt == "float64":
        with np.errstate(divide="ignore", invalid="ignore"):
            fn = partial(_lso_kernel, np, dt=np.float64)
            effect, stderr = map_column_blocks(fn, [np.asarray(metric)], [np.asarray(gkeep), mask], kcols, blk, False)
    else:
        fn = partial(_lso_jit, dt=jnp.float32)
        effect, stderr = map_column_blocks(fn, [metric], [jnp.asarray(gkeep), jnp.asarray(mask)], kcols, blk, True)
    gk = np.asarray(gkeep)
    n_in = (gk & mask[:, None]).sum(0)
    n_out = (~gk & mask[:, None]).sum(0)
    warn_missing(int(np.sum((n_in == 0) | (n_out == 0))), gk.shape[1], "groups are never kept or never dropped")
    if squeeze:
        effect, stderr = effect[:, 0], stderr[:, 0]
    return SubsetEffect(effect, stderr, n_in, n_out)


def group_keep_from_ids(keep, group_ids) -> GroupKeep:
    """Derive ``group_keep`` [M, G] from ``keep`` [M, N] and a group id per example [N].

    Raises ValueError when some model keeps only part of a group (the design must keep or drop
    whole groups for ``leave_subset_out`` to measure the group's effect).
    """
    keep = np.asarray(keep).astype(bool)
    ids = np.asarray(group_ids)
    if ids.shape != (keep.shape[1],):
        raise ValueError(f"group_ids must have shape ({keep.shape[1]},), got {ids.shape}")
    groups, inv = np.unique(ids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv, minlength=len(groups))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    counts = np.add.reduceat(keep[:, order].astype(np.int32), starts, axis=1)
    partial_ = (counts != 0) & (counts != sizes)
    if partial_.any():
        bad_groups = np.flatnonzero(partial_.any(0))
        raise ValueError(
            f"{int(partial_.sum())} (model, group) pairs keep only part of their group "
            f"({len(bad_groups)} groups, e.g. {groups[bad_groups[:5]].tolist()})"
        )
    return GroupKeep(counts == sizes, groups)
