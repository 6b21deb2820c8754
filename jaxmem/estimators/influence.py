"""Influence of training examples on test examples (Feldman & Zhang 2020).

Both are differences of means over the model axis, i.e. matrix products over models:
infl = Aᵀ @ test_metric with A[m, i] = keep[m,i]/n_in[i] − (1 − keep[m,i])/n_out[i]. The
[N, K] product is computed in blocks of training × test examples, written into a dense array, a
memory-mapped ``.npy`` file, or reduced on the fly to the top-k training examples per test
example, so N=50,000 × K=10,000 with M=1,000 never holds more than a few blocks in memory.

Standard errors (optional) follow ``memorization``: two independent means,
stderr = sqrt(s²_in/n_in + s²_out/n_out) with ddof=1 sample variances, NaN when either side has
fewer than 2 models. They need only first and second moments per side, again matrix products:
S = K_sideᵀ @ c and Q = K_sideᵀ @ c² with c the metric centred by its mean over the used models
(the variance is shift-invariant; centring keeps Q − S²/n from cancelling for offset metrics).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Real, Shaped

from jaxmem.estimators._common import (
    BLOCK_ELEMENTS,
    as_keep,
    as_model_mask,
    check_model_axis,
    is_jax,
    matmul,
    resolve_dtype,
    warn_missing,
)

__all__ = [
    "influence",
    "InfluenceResult",
    "TopInfluence",
    "top_influencers",
]

DEFAULT_BLOCK = (4096, 4096)


class InfluenceResult(NamedTuple):
    influence: Float[np.ndarray, "N K"]  # mean_IN − mean_OUT (dense or a read-only memmap)
    stderr: Float[np.ndarray, "N K"]  # sqrt(s²_in/n_in + s²_out/n_out), ddof=1 (dense or a read-only memmap)
    n_in: Real[np.ndarray, " N"]  # number of (unmasked) models trained on i
    n_out: Real[np.ndarray, " N"]  # number of (unmasked) models not trained on i


class TopInfluence(NamedTuple):
    indices: Integer[np.ndarray, "K k"]  # training-example indices, most influential first
    values: Float[np.ndarray, "K k"]  # their influence (NaN where fewer than k finite values exist)
    n_in: Real[np.ndarray, " N"]
    n_out: Real[np.ndarray, " N"]
    stderr: Float[np.ndarray, "K k"] | None = None  # stderr of ``values`` (``return_stderr=True`` only)

class GroupKeep(NamedTuple):
    group_keep: np.ndarray  # [M, G] bool
    groups: np.ndarray  # [G] the sorted distinct group ids

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


def _side_weights(xp, keep, mask, dt):
    """W = [K_in | K_out] [M, 2·bn] over the unmasked models, and its column counts [2·bn]."""
    m = mask[:, None]
    w = xp.concatenate([keep & m, ~keep & m], axis=1).astype(dt)
    return w, w.sum(0)


def _welch_tile(xp, w, n, xc, dt):
    """Influence and Welch stderr tiles [bn, bt] from side weights and the centred metric xc [M, bt]
    (zero on unused models): S = Wᵀ xc, Q = Wᵀ xc² per side, var = max(Q − S²/n, 0)/(n − 1)."""
    bn, bt = w.shape[1] // 2, xc.shape[1]
    sq = matmul(xp, w.T, xp.concatenate([xc, xc * xc], axis=1))  # [2·bn, 2·bt]
    n = n[:, None]
    n_in, n_out = n[:bn], n[bn:]
    s_in, q_in, s_out, q_out = sq[:bn, :bt], sq[:bn, bt:], sq[bn:, :bt], sq[bn:, bt:]
    zero, nan = xp.zeros((), dt), xp.asarray(np.nan, dt)
    mu_in, mu_out = s_in / n_in, s_out / n_out
    var_in = xp.maximum(q_in - s_in * mu_in, zero) / (n_in - 1)
    var_out = xp.maximum(q_out - s_out * mu_out, zero) / (n_out - 1)
    # Explicit NaN: XLA may turn x/0 into inf or 0 rather than NaN.
    infl = xp.where((n_in > 0) & (n_out > 0), mu_in - mu_out, nan)
    se = xp.where((n_in > 1) & (n_out > 1), xp.sqrt(var_in / n_in + var_out / n_out), nan)
    return infl, se


_side_weights_jit = jax.jit(partial(_side_weights, jnp), static_argnames="dt")
_welch_tile_jit = jax.jit(partial(_welch_tile, jnp), static_argnames="dt")


def _centred(xp, c, mask):
    """c − its mean over the unmasked models, zero on masked-out models."""
    m = xp.asarray(mask)[:, None]
    mean = xp.where(m, c, 0).sum(0) / max(int(np.sum(mask)), 1)
    return xp.where(m, c - mean, 0).astype(c.dtype)


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
    # the k largest, ties broken lowest index first (as the JAX path): the columns are in index
    # order among equal values (the kept best come first, lower-indexed, tied ones lowest first)
    thr = -np.partition(-v, k - 1, axis=1)[:, k - 1 : k]            # the k-th largest value
    above = v > thr
    tied = v == thr
    take = above | (tied & (np.cumsum(tied, axis=1) <= k - above.sum(1, keepdims=True)))
    part = np.argsort(~take, axis=1, kind="stable")[:, :k]          # the k taken, in column order
    pv = np.take_along_axis(v, part, 1)
    order = np.argsort(-pv, axis=1, kind="stable")
    return np.take_along_axis(pv, order, 1), np.take_along_axis(np.take_along_axis(i, part, 1), order, 1)


def _blocks(keep, test_metric, mask, dt, block, with_stderr=False):
    """Yield (n0, t0, influence block [bn, bt], stderr block or None), plus n_in/n_out at the end.

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
        # masked-out models (e.g. diverged, metric NaN) must not reach the products: 0 · NaN = NaN
        c = _centred(np, c, mask) if with_stderr else np.where(np.asarray(mask)[:, None], c, 0.0)
        for n0 in range(0, n, bn):
            kb = keep_np[:, n0 : n0 + bn]
            if with_stderr:
                w, ns = _side_weights(np, kb, mask, np.float64)
                ni, no = ns[: kb.shape[1]], ns[kb.shape[1] :]
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    a, ni, no = _weights_kernel(np, kb, mask, np.float64)
            n_in[n0 : n0 + bn], n_out[n0 : n0 + bn] = ni, no
            for t0 in range(0, t, bt):
                if with_stderr:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        tile = _welch_tile(np, w, ns, c[:, t0 : t0 + bt], np.float64)
                    yield n0, t0, *tile
                else:
                    yield n0, t0, a.T @ c[:, t0 : t0 + bt], None
    else:
        pad_n, pad_t = -n % bn, -t % bt
        keep_j = jnp.pad(jnp.asarray(keep), ((0, 0), (0, pad_n)))
        c = jnp.pad(jnp.asarray(test_metric, jnp.float32), ((0, 0), (0, pad_t)))
        mask_j = jnp.asarray(mask)
        c = _centred(jnp, c, mask) if with_stderr else jnp.where(mask_j[:, None], c, 0.0)
        for n0 in range(0, n + pad_n, bn):
            if with_stderr:
                a, ns = _side_weights_jit(keep_j[:, n0 : n0 + bn], mask_j, dt=jnp.float32)
                ni, no = ns[:bn], ns[bn:]
            else:
                a, ni, no = _weights_jit(keep_j[:, n0 : n0 + bn], mask_j, dt=jnp.float32)
            w = min(bn, n - n0)
            n_in[n0 : n0 + w], n_out[n0 : n0 + w] = np.asarray(ni)[:w], np.asarray(no)[:w]
            for t0 in range(0, t + pad_t, bt):
                if with_stderr:
                    yield n0, t0, *_welch_tile_jit(a, ns, c[:, t0 : t0 + bt], dt=jnp.float32)
                else:
                    yield n0, t0, _product_jit(a, c[:, t0 : t0 + bt]), None
    yield n_in.astype(np.int64), n_out.astype(np.int64)


def _prepare(keep, test_metric, model_mask, dtype):
    keep = as_keep(keep)
    if not is_jax(test_metric):
        test_metric = np.asarray(test_metric)
    check_model_axis("test_correct", test_metric, keep.shape[0])
    if test_metric.ndim != 2:
        raise ValueError(f"test_correct must be [M, K], got {test_metric.shape}")
    return keep, test_metric, as_model_mask(model_mask, keep.shape[0]), resolve_dtype(dtype, test_metric)


class _Output:
    """An [N, K] result: a dense array, or a ``.npy`` file mapped one stripe of training rows at a
    time (dropping the map of a written stripe hands its pages to the OS page cache, so resident
    memory stays at about one stripe)."""

    def __init__(self, path, shape, dtype):
        self.path, self.stripe = path, None
        if path is None:
            self.arr = np.empty(shape, dtype=dtype)
        else:
            np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
            self.arr = None

    def write(self, n0, t0, blk):
        if self.path is not None and self.stripe != n0:
            self.arr = None  # unmap the previous stripe before mapping the next
            self.arr, self.stripe = np.load(self.path, mmap_mode="r+"), n0
        blk = np.asarray(blk)
        h, w = min(blk.shape[0], self.arr.shape[0] - n0), min(blk.shape[1], self.arr.shape[1] - t0)
        self.arr[n0 : n0 + h, t0 : t0 + w] = blk[:h, :w]

    def result(self):
        if self.path is None:
            return self.arr
        self.arr = None
        return np.load(self.path, mmap_mode="r")


def influence(
    keep: Bool[ArrayLike, "M N"],
    test_correct: Shaped[ArrayLike, "M K"],
    *,
    out=None,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: tuple[int, int] = DEFAULT_BLOCK,
    return_stderr: bool = False,
    stderr_out=None,
) -> Float[np.ndarray, "N K"] | InfluenceResult:
    """Influence of every training example on every test example.

    infl[i, j] = mean_{m ∋ i} test_correct[m, j] − mean_{m ∌ i} test_correct[m, j], computed as
    Aᵀ @ test_correct in (block[0] × block[1]) tiles. With ``out`` a path, the result is written
    to a ``.npy`` file through ``numpy.lib.format.open_memmap`` and returned as a read-only memmap
    (host memory stays at a few tiles); otherwise a dense array is returned. Use
    :func:`top_influencers` to keep only the top-k per test example.

    ``return_stderr=True`` (implied by ``stderr_out``) adds the standard error of each entry as in
    :func:`jaxmem.estimators.memorization`: sqrt(s²_in/n_in + s²_out/n_out), sample variances
    (ddof=1) of the metric over the IN and OUT models, NaN where n_in or n_out < 2. Both matrices
    then come from first and second moments per side, Wᵀ @ [c, c²] with W = [K_in | K_out] (four
    times the influence-only matmul work, and a tile of [2·block[0], 2·block[1]]); the influence
    equals the default call's up to rounding.

    Args:
      keep: [M, N] bool, True where model m trained on training example i.
      test_correct: [M, K] any real per-test-example metric of every model (0/1 correctness).
      out: None (dense result) or a path for a memory-mapped ``.npy`` result.
      model_mask: [M] bool, the models to use; None: all.
      dtype: None, "float32" or "float64" (the rule of ``jaxmem.estimators._common``).
      block: (training, test) examples per tile.
      return_stderr: also return the standard errors (an :class:`InfluenceResult`).
      stderr_out: None or a path that memory-maps the stderr matrix like ``out``.

    Returns:
      influence [N, K] (dense or a read-only memmap); with ``return_stderr``
      ``InfluenceResult(influence [N, K], stderr [N, K], n_in [N], n_out [N])``. Rows of training
      examples without an IN or OUT model are NaN (with an ``InsufficientModelsWarning``).

    Raises:
      ValueError: ``keep`` not [M, N], ``test_correct`` without the leading [M] axis,
        ``model_mask`` not [M], or ``dtype`` not float32/float64.

    References:
      Feldman & Zhang (2020), "What neural networks memorize and why", NeurIPS, Eq. (2).
    """
    keep, test_correct, mask, dt = _prepare(keep, test_correct, model_mask, dtype)
    with_stderr = return_stderr or stderr_out is not None
    n, t = keep.shape[1], test_correct.shape[1]
    result = _Output(out, (n, t), dt)
    se_result = _Output(stderr_out, (n, t), dt) if with_stderr else None
    for item in _blocks(keep, test_correct, mask, dt, block, with_stderr):
        if len(item) == 2:
            n_in, n_out = item
            break
        n0, t0, blk, se = item
        result.write(n0, t0, blk)
        if with_stderr:
            se_result.write(n0, t0, se)
    warn_missing(int(np.sum((n_in == 0) | (n_out == 0))), n, "training examples have no IN or no OUT model")
    if not with_stderr:
        return result.result()
    return InfluenceResult(result.result(), se_result.result(), n_in, n_out)


def _selected_stderr(keep, test_metric, mask, indices):
    """Welch stderr (ddof=1) of influence[indices[j, r], j] for each test example j, in float64 by
    two-pass means over the models, blocked over test examples: O(M·T·k), not O(M·N·T)."""
    keep = np.asarray(keep, dtype=bool)
    x = np.asarray(test_metric, dtype=np.float64)
    m_models = keep.shape[0]
    t, k = indices.shape
    out = np.empty((t, k))
    tb = max(1, BLOCK_ELEMENTS // max(m_models * k, 1))
    used = mask[:, None, None]
    for t0 in range(0, t, tb):
        kb = keep[:, indices[t0 : t0 + tb]]  # [M, tb, k]
        xb = x[:, t0 : t0 + tb, None]  # [M, tb, 1]
        parts = []
        for side in (kb & used, ~kb & used):
            cnt = side.sum(0)
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = np.where(side, xb, 0.0).sum(0) / cnt
                var = np.where(side, (xb - mu) ** 2, 0.0).sum(0) / (cnt - 1)
            parts.append((cnt, var))
        (ni, vi), (no, vo) = parts
        with np.errstate(divide="ignore", invalid="ignore"):
            out[t0 : t0 + tb] = np.where((ni > 1) & (no > 1), np.sqrt(vi / ni + vo / no), np.nan)
    return out


def top_influencers(
    keep: Bool[ArrayLike, "M N"],
    test_correct: Shaped[ArrayLike, "M K"],
    k: int,
    *,
    largest: bool = True,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: tuple[int, int] = DEFAULT_BLOCK,
    return_stderr: bool = False,
) -> TopInfluence:
    """The k training examples of largest influence on each test example, without the [N, K] matrix.

    The influence is :func:`influence`'s (Feldman & Zhang 2020, Eq. 2), merged tile by tile into
    a running top-k. Sorted most influential first, equal values lowest training index first
    (binary metrics tie often); NaN-influence rows (no IN/OUT model) are never selected before
    finite ones. The selection ranks by influence only, not by its significance.

    Args:
      keep: [M, N] bool, True where model m trained on training example i.
      test_correct: [M, K] any real per-test-example metric of every model.
      k: how many training examples per test example, in [1, N].
      largest: True: the largest influence; False: the most negative.
      model_mask, dtype, block: as :func:`influence`.
      return_stderr: fill ``stderr`` [K, k] with the selected entries' standard errors (as in
        :func:`influence`; NaN where the value is NaN or a side has < 2 models), computed after
        the selection from the K·k chosen pairs alone, in float64, then cast to the result dtype.

    Returns:
      ``TopInfluence(indices [K, k], values [K, k], n_in [N], n_out [N], stderr [K, k] or None)``;
      a slot left without a finite value has index -1 and value NaN.

    Raises:
      ValueError: ``k`` outside [1, N], or the inputs as in :func:`influence`.

    References:
      Feldman & Zhang (2020), "What neural networks memorize and why", NeurIPS, Eq. (2).
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
        n0, t0, blk, _ = item
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
    stderr = None
    if return_stderr:
        stderr = _selected_stderr(keep, test_correct, mask, indices)
        stderr = np.where(np.isnan(values), np.nan, stderr).astype(dt)
    indices[np.isnan(values)] = -1   # no finite influence left for this slot
    return TopInfluence(indices, values, n_in, n_out, stderr)
