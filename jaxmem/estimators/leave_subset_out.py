"""Leave-subset-out effects: the mean metric of the models that kept a group of training examples
minus that of the models that dropped it, per group and per evaluation example, with standard
errors (Feldman & Zhang 2020's estimator applied to groups, e.g. an example and its duplicates).
Matrix products over the model axis, blocked over evaluation examples (see ``influence``)."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Shaped

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

__all__ = ["SubsetEffect", "leave_subset_out", "GroupKeep", "group_keep_from_ids"]


class SubsetEffect(NamedTuple):
    effect: Float[np.ndarray, " G *K"]  # mean metric with the group − without ([G] for a metric [M])
    stderr: Float[np.ndarray, " G *K"]
    n_in: Integer[np.ndarray, " G"]  # models that kept the group
    n_out: Integer[np.ndarray, " G"]  # models that dropped it


class GroupKeep(NamedTuple):
    group_keep: Bool[np.ndarray, "M G"]
    groups: Shaped[np.ndarray, " G"]  # the sorted distinct group ids


def _lso_kernel(xp, x, gkeep, mask, dt):
    m = mask[:, None]
    gin = (gkeep & m).astype(dt)
    gout = (~gkeep & m).astype(dt)
    zero = xp.zeros((), dt)
    x = xp.where(m, x.astype(dt), zero)
    xc = xp.where(m, x - x.sum(0) / mask.sum(), zero)  # centred: the one-pass variance stays stable
    n_in, n_out = gin.sum(0)[:, None], gout.sum(0)[:, None]
    s_in, s_out = matmul(xp, gin.T, xc), matmul(xp, gout.T, xc)
    q_in, q_out = matmul(xp, gin.T, xc * xc), matmul(xp, gout.T, xc * xc)
    mu_in, mu_out = s_in / n_in, s_out / n_out
    var_in = xp.maximum(q_in - s_in * mu_in, zero) / (n_in - 1)
    var_out = xp.maximum(q_out - s_out * mu_out, zero) / (n_out - 1)
    nan = xp.asarray(np.nan, dt)
    # Explicit NaN where a side has < 2 models: XLA turns the 0/0 variance of one model into inf.
    effect = xp.where((n_in > 0) & (n_out > 0), mu_in - mu_out, nan)
    return effect, xp.where((n_in > 1) & (n_out > 1), xp.sqrt(var_in / n_in + var_out / n_out), nan)


_lso_jit = jax.jit(partial(_lso_kernel, jnp), static_argnames="dt")


def leave_subset_out(
    group_keep: Bool[ArrayLike, "M G"],
    metric: Shaped[ArrayLike, " M *K"],
    *,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: int | None = None,
) -> SubsetEffect:
    """Effect of a whole group (subpopulation, duplicate set, class) on a metric.

    The group analogue of Feldman & Zhang (2020) Eq. (2): with designs in which groups are kept
    or dropped together, effect[g, k] = mean_{m keeps g} metric[m, k] − mean_{m drops g} metric[m, k],
    stderr = sqrt(s²_in/n_in + s²_out/n_out) (ddof=1; NaN where a side has < 2 models, as in
    :func:`memorization`). Blocked over K.

    Args:
      group_keep: [M, G] bool, True where model m kept group g (:func:`group_keep_from_ids`).
      metric: [M, K] or [M] real metric of every model on K evaluation examples (or one number).
      model_mask: [M] bool, the models to use; None: all.
      dtype, block: as :func:`memorization`.

    Returns:
      :class:`SubsetEffect`: ``effect`` and ``stderr`` [G, K] (or [G] for a metric [M]), ``n_in``
      and ``n_out`` [G]. Groups never kept or never dropped are NaN (with an
      ``InsufficientModelsWarning``).

    Raises:
      ValueError: ``group_keep`` not [M, G], ``metric`` without the leading [M] axis,
        ``model_mask`` not [M], or ``dtype`` not float32/float64.

    References:
      Feldman & Zhang (2020), "What neural networks memorize and why", NeurIPS, Eq. (2) (per
      example; here per group).
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


def group_keep_from_ids(keep: Bool[ArrayLike, "M N"], group_ids: Shaped[ArrayLike, " N"]) -> GroupKeep:
    """Derive ``group_keep`` [M, G] from ``keep`` [M, N] and a group id per example [N].

    Args:
      keep: [M, N] bool, True where model m trained on example i.
      group_ids: [N] the group of every example (any sortable ids).

    Returns:
      ``GroupKeep(group_keep [M, G] bool, groups [G])``, the groups sorted.

    Raises:
      ValueError: ``group_ids`` is not [N], or some model keeps only part of a group (the design
        must keep or drop whole groups for :func:`leave_subset_out` to measure the group's effect).
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

