"""Per-example memorization (Feldman & Zhang 2020; Zhang et al. 2021) and C-scores (Jiang et al. 2021).

All functions take ``keep`` [M, N] (True when model m trained on example i) and a per-example
metric [M, N]; NumPy and JAX arrays are accepted and NumPy arrays are returned. Work is blocked
over examples so memory stays bounded; see ``_common`` for the float32/float64 rule.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Real, Shaped

from jaxmem.estimators._common import (
    as_keep,
    as_model_mask,
    block_size,
    check_model_axis,
    is_jax,
    map_column_blocks,
    matmul,
    resolve_dtype,
    warn_missing,
)

__all__ = ["MemorizationResult", "memorization", "counterfactual_memorization", "CScoreResult", "cscore"]


class MemorizationResult(NamedTuple):
    mem: Float[np.ndarray, " N"]  # mean_IN − mean_OUT
    stderr: Float[np.ndarray, " N"]  # sqrt(s²_in/n_in + s²_out/n_out), ddof=1
    n_in: Integer[np.ndarray, " N"]  # number of (unmasked) models trained on i
    n_out: Integer[np.ndarray, " N"]  # number of (unmasked) models not trained on i
    mean_in: Float[np.ndarray, " N"]
    mean_out: Float[np.ndarray, " N"]


class CScoreResult(NamedTuple):
    score: Float[np.ndarray, " N"]  # mean over ratios of the hold-out metric
    per_ratio: Float[np.ndarray, "ratios N"]  # hold-out mean at each subset ratio
    ratios: Real[np.ndarray, " ratios"]  # the sorted distinct subset ratios
    n_out: Integer[np.ndarray, "ratios N"]  # hold-out models per ratio


def _mem_kernel(xp, keep, x, mask, dt):
    m = mask[:, None]
    kin = keep & m
    kout = ~keep & m
    x = x.astype(dt)
    zero = xp.zeros((), dt)
    n_in = kin.sum(0).astype(dt)
    n_out = kout.sum(0).astype(dt)
    mu_in = xp.where(kin, x, zero).sum(0) / n_in
    mu_out = xp.where(kout, x, zero).sum(0) / n_out
    var_in = xp.where(kin, (x - mu_in) ** 2, zero).sum(0) / (n_in - 1)
    var_out = xp.where(kout, (x - mu_out) ** 2, zero).sum(0) / (n_out - 1)
    nan = xp.asarray(np.nan, dt)
    # Explicit NaN: XLA may rewrite masked sums / 0 to 0 instead of IEEE 0/0 = NaN.
    mu_in, mu_out = xp.where(n_in > 0, mu_in, nan), xp.where(n_out > 0, mu_out, nan)
    stderr = xp.sqrt(var_in / n_in + var_out / n_out)
    stderr = xp.where((n_in > 1) & (n_out > 1), stderr, nan)
    return mu_in - mu_out, stderr, n_in, n_out, mu_in, mu_out


def _mem_kernel_shifted(keep, x, mask, ref_row, dt):
    """One-pass version for XLA (a column reduction followed by a broadcast is slow on CPU):
    sums and sums of squares of x − x[ref_row] (the shifted-data algorithm, Chan et al. 1983),
    which keeps Q − S²/n free of catastrophic cancellation; 0/1 sums stay exact in float32."""
    m = mask[:, None]
    kin = keep & m
    kout = ~keep & m
    x = x.astype(dt)
    shift = x[ref_row]
    zero = jnp.zeros((), dt)
    nan = jnp.asarray(np.nan, dt)
    xs = jnp.where(m, x - shift, zero)
    x_in = jnp.where(kin, xs, zero)
    x_out = xs - x_in
    n_in = kin.sum(0).astype(dt)
    n_out = kout.sum(0).astype(dt)
    s_in, s_out = x_in.sum(0), x_out.sum(0)
    q_in, q_out = (x_in * x_in).sum(0), (x_out * x_out).sum(0)
    d_in, d_out = s_in / n_in, s_out / n_out
    var_in = jnp.maximum(q_in - s_in * d_in, zero) / (n_in - 1)
    var_out = jnp.maximum(q_out - s_out * d_out, zero) / (n_out - 1)
    mu_in = jnp.where(n_in > 0, d_in + shift, nan)
    mu_out = jnp.where(n_out > 0, d_out + shift, nan)
    stderr = jnp.where((n_in > 1) & (n_out > 1), jnp.sqrt(var_in / n_in + var_out / n_out), nan)
    return mu_in - mu_out, stderr, n_in, n_out, mu_in, mu_out


_mem_jit = jax.jit(_mem_kernel_shifted, static_argnames="dt")


def _cscore_kernel(xp, keep, x, groups, mask, dt):
    kout = ~keep & mask[:, None]
    x = x.astype(dt)
    num = matmul(xp, groups.T, xp.where(kout, x, xp.zeros((), dt)))
    den = matmul(xp, groups.T, kout.astype(dt))
    return xp.where(den > 0, num / den, xp.asarray(np.nan, dt)), den


_cscore_jit = jax.jit(partial(_cscore_kernel, jnp), static_argnames="dt")


def _prepare(keep, metric, model_mask, dtype, name):
    keep = as_keep(keep)
    if not is_jax(metric):
        metric = np.asarray(metric)
    check_model_axis(name, metric, keep.shape[0])
    if metric.shape != keep.shape:
        raise ValueError(f"{name} must have the shape of keep {keep.shape}, got {metric.shape}")
    dt = resolve_dtype(dtype, metric)
    mask = as_model_mask(model_mask, keep.shape[0])
    return keep, metric, mask, dt


def memorization(
    keep: Bool[ArrayLike, "M N"],
    correct: Shaped[ArrayLike, "M N"],
    *,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: int | None = None,
) -> MemorizationResult:
    """Feldman & Zhang (2020), Eq. (1) estimator of label memorization.

    mem_i = mean_{m: keep[m,i]} correct[m,i] − mean_{m: ¬keep[m,i]} correct[m,i],
    stderr_i = sqrt(s²_in/n_in + s²_out/n_out) (two independent means, sample variances ddof=1).

    Args:
      keep: [M, N] bool, True where model m trained on example i.
      correct: [M, N] any real per-example metric (0/1 correctness, true-class probability,
        per-token accuracy, negative loss; bool and int are accepted).
      model_mask: [M] bool, the models to use (e.g. excludes diverged ones); None: all.
      dtype: None, "float32" or "float64" (the precision rule of ``jaxmem.estimators._common``).
      block: examples per block (None: as many as fit ~4 MB per [M, block] slab).

    Returns:
      :class:`MemorizationResult` (``mem``, ``stderr``, ``n_in``, ``n_out``, ``mean_in``,
      ``mean_out``, each [N]). Examples without an IN or an OUT model get NaN and an
      ``InsufficientModelsWarning``; stderr is NaN when n_in or n_out < 2.

    Raises:
      ValueError: ``keep`` is not [M, N], ``correct`` not of its shape, ``model_mask`` not [M],
        or ``dtype`` not float32/float64.

    References:
      Feldman & Zhang (2020), "What neural networks memorize and why: discovering the long tail
      via influence estimation", NeurIPS, Eq. (1).

    Example:
      >>> import numpy as np
      >>> keep = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], bool)
      >>> correct = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
      >>> memorization(keep, correct).mem
      array([1. , 0.5])
    """
    keep, correct, mask, dt = _prepare(keep, correct, model_mask, dtype, "correct")
    n = keep.shape[1]
    blk = block_size(keep.shape[0], block)
    if dt == "float64":
        with np.errstate(divide="ignore", invalid="ignore"):
            fn = partial(_mem_kernel, np, dt=np.float64)
            res = map_column_blocks(fn, [np.asarray(keep), np.asarray(correct)], [mask], n, blk, False)
    else:
        fn = partial(_mem_jit, dt=jnp.float32)
        ref_row = int(np.argmax(mask))  # first used model
        res = map_column_blocks(fn, [keep, correct], [jnp.asarray(mask), ref_row], n, blk, True)
    mem, stderr, n_in, n_out, mu_in, mu_out = res
    n_in, n_out = n_in.astype(np.int64), n_out.astype(np.int64)
    warn_missing(int(np.sum((n_in == 0) | (n_out == 0))), n, "examples have no IN or no OUT model")
    return MemorizationResult(mem, stderr, n_in, n_out, mu_in, mu_out)


def counterfactual_memorization(
    keep: Bool[ArrayLike, "M N"],
    metric: Shaped[ArrayLike, "M N"],
    *,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: int | None = None,
) -> MemorizationResult:
    """Counterfactual memorization, the same estimator as :func:`memorization`.

    mem(x) = E_{S∋x}[M(f_S, x)] − E_{S∌x}[M(f_S, x)] for a real-valued per-example performance
    measure M (e.g. per-token accuracy, or negative loss).

    Args:
      keep: [M, N] bool, True where model m trained on example i.
      metric: [M, N] real per-example performance measure.
      model_mask, dtype, block: as :func:`memorization`.

    Returns:
      :class:`MemorizationResult`, each field [N] (as :func:`memorization`).

    Raises:
      ValueError: as :func:`memorization`.

    References:
      Zhang et al. (2021), "Counterfactual memorization in neural language models", Eq. (1).
    """
    return memorization(keep, metric, model_mask=model_mask, dtype=dtype, block=block)


def cscore(
    keep: Bool[ArrayLike, "M N"],
    correct: Shaped[ArrayLike, "M N"],
    ratio_of_model: Real[ArrayLike, " M"],
    *,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: int | None = None,
) -> CScoreResult:
    """Hold-out consistency score (C-score) of every example.

    ĉ(x) = E_r [ mean_{m: ratio_m = r, ¬keep[m,i]} correct[m,i] ]: for each subset ratio r (the
    design group of ``ratio_of_model``) the mean metric of example i over the models that did not
    train on it, then the uniform mean over ratios. Ratios with no hold-out model for i are left
    out of i's mean (warned); i gets NaN only if it has none at all.

    Args:
      keep: [M, N] bool, True where model m trained on example i.
      correct: [M, N] real per-example metric (0/1 correctness in the paper).
      ratio_of_model: [M] the subset ratio (or any design group id) of each model.
      model_mask, dtype, block: as :func:`memorization`.

    Returns:
      :class:`CScoreResult`: ``score`` [N], ``per_ratio`` [R, N], ``ratios`` [R], ``n_out`` [R, N]
      (R distinct ratios among the used models).

    Raises:
      ValueError: as :func:`memorization`, or ``ratio_of_model`` without a leading [M] axis.

    References:
      Jiang et al. (2021), "Characterizing structural regularities of labeled data in
      overparameterized models", ICML, Eq. (1)-(2).
    """
    keep, correct, mask, dt = _prepare(keep, correct, model_mask, dtype, "correct")
    ratio_of_model = np.asarray(ratio_of_model)
    check_model_axis("ratio_of_model", ratio_of_model, keep.shape[0])
    ratios = np.unique(ratio_of_model[mask])
    groups = ratio_of_model[:, None] == ratios[None, :]
    n = keep.shape[1]
    blk = block_size(keep.shape[0], block)
    if dt == "float64":
        with np.errstate(divide="ignore", invalid="ignore"):
            fn = partial(_cscore_kernel, np, dt=np.float64)
            shared = [groups.astype(np.float64), mask]
            table, den = map_column_blocks(fn, [np.asarray(keep), np.asarray(correct)], shared, n, blk, False)
    else:
        fn = partial(_cscore_jit, dt=jnp.float32)
        shared = [jnp.asarray(groups, jnp.float32), jnp.asarray(mask)]
        table, den = map_column_blocks(fn, [keep, correct], shared, n, blk, True)
    n_out = np.rint(den).astype(np.int64)
    have = n_out > 0
    warn_missing(int(np.sum(~have.all(0) & have.any(0))), n, "examples lack a hold-out model at some ratio")
    warn_missing(int(np.sum(~have.any(0))), n, "examples have no hold-out model at any ratio")
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(have, table, 0.0).sum(0) / have.sum(0)
    return CScoreResult(score, table, ratios, n_out)
