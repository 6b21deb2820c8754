"""Forgetting events (Toneva et al. 2019, "An empirical study of example forgetting during deep
neural network learning")."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Integer, Shaped

from jaxmem.estimators._common import as_model_mask, block_size, is_jax, map_column_blocks

__all__ = ["ForgettingEvents", "forgetting_events"]


class ForgettingEvents(NamedTuple):
    forgetting: Integer[np.ndarray, "*batch N"]  # 1→0 transitions; E for a never-learned example
    first_learned: Integer[np.ndarray, "*batch N"]  # first epoch classified correctly, −1 if never
    learned: Bool[np.ndarray, "*batch N"]  # correct at some epoch
    unforgettable: Bool[np.ndarray, "*batch N"]  # learned and never forgotten
    total_forgetting: Integer[np.ndarray, " N"]  # forgetting summed over all leading (model) axes
    num_unforgettable: Integer[np.ndarray, " N"]  # number of (models ×…) in which the example is unforgettable


@jax.jit
def _forgetting_kernel(x):
    c = x != 0  # [..., E, bn]
    epochs = c.shape[-2]
    learned = c.any(axis=-2)
    first = jnp.where(learned, jnp.argmax(c, axis=-2), -1)
    forgets = jnp.sum(c[..., :-1, :] & ~c[..., 1:, :], axis=-2)
    forgetting = jnp.where(learned, forgets, epochs)
    return forgetting.astype(jnp.int32), first.astype(jnp.int32), learned, learned & (forgets == 0)


def forgetting_events(
    correct_by_epoch: Shaped[ArrayLike, "*batch E N"],
    *,
    model_mask: Bool[ArrayLike, " _M"] | None = None,
    block: int | None = None,
) -> ForgettingEvents:
    """Forgetting events and unforgettable examples from per-epoch correctness.

    A forgetting event is a transition acc_i^t = 1 → acc_i^{t+1} = 0 between consecutive epochs
    t, t+1; examples never learned count as E forgetting events (they rank as the most
    forgettable), and an example is *unforgettable* when it is learned at some epoch and never
    forgotten afterwards.

    Args:
      correct_by_epoch: [..., E, N] of 0/1 (or bool; nonzero = correct), e.g. [E, N] or [M, E, N].
      model_mask: [M] bool over the first (model) axis, for the totals; needs a model axis.
      block: examples per block (None: as many as fit ~4 MB).

    Returns:
      :class:`ForgettingEvents`: per-(model) arrays [..., N] that keep the leading axes, and
      ``total_forgetting`` / ``num_unforgettable`` [N] summed over them (over the models of
      ``model_mask`` only).

    Raises:
      ValueError: ``correct_by_epoch`` has fewer than 2 axes, or ``model_mask`` is given without a
        model axis (or is not [M]).

    References:
      Toneva et al. (2019), "An empirical study of example forgetting during deep neural network
      learning", ICLR, Sec. 2.
    """
    x = correct_by_epoch if is_jax(correct_by_epoch) else np.asarray(correct_by_epoch)
    if x.ndim < 2:
        raise ValueError(f"correct_by_epoch must be [..., E, N], got {x.shape}")
    n = x.shape[-1]
    rows = int(np.prod(x.shape[:-1]))
    forgetting, first, learned, unforgettable = map_column_blocks(
        _forgetting_kernel, [x], [], n, block_size(rows, block), True
    )
    if x.ndim >= 3:
        mask = as_model_mask(model_mask, x.shape[0])
        f_used, u_used = forgetting[mask], unforgettable[mask]
    else:
        if model_mask is not None:
            raise ValueError("model_mask needs a model axis: correct_by_epoch [M, ..., E, N]")
        f_used, u_used = forgetting, unforgettable
    lead = tuple(range(f_used.ndim - 1))
    total = f_used.sum(axis=lead).astype(np.int64)
    num_unf = u_used.sum(axis=lead).astype(np.int64)
    return ForgettingEvents(forgetting, first, learned, unforgettable, total, num_unf)
