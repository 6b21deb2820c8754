"""Exposure of inserted canaries (Carlini et al. 2019, "The secret sharer")."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Float, Real

__all__ = ["exposure_rank", "SkewNormalExposure", "exposure_skewnorm"]


class SkewNormalExposure(NamedTuple):
    exposure: Float[np.ndarray, "*batch"]  # −log2 CDF(canary loss)
    shape: Float[np.ndarray, "*batch"]  # fitted skew-normal parameters (scipy's a, loc, scale)
    loc: Float[np.ndarray, "*batch"]
    scale: Float[np.ndarray, "*batch"]


def _split(canary_loss, reference_losses):
    canary = np.asarray(canary_loss, dtype=np.float64)
    refs = np.asarray(reference_losses, dtype=np.float64)
    if refs.ndim < 1 or refs.shape[-1] < 1:
        raise ValueError("reference_losses must be [..., R] with R >= 1")
    return canary, refs


def exposure_rank(
    canary_loss: Real[ArrayLike, "*#batch"], reference_losses: Real[ArrayLike, "*#batch R"]
) -> Float[np.ndarray, "*batch"]:
    """Exposure of a canary by its rank among R reference candidates: log2 |R| − log2 rank(canary).

    The candidate space is the canary plus its R references, |R| = R + 1, and rank 1 means the
    canary has the lowest loss (perplexity) of all. Ties count against the canary (a reference
    with equal loss ranks ahead), so exposure is never overstated. TensorFlow Privacy's secret
    sharer counts |R| = R candidates (log2 R − log2 rank): its rank exposure is a constant
    log2((R + 1) / R) bits lower.

    Args:
      canary_loss: [...] the canary's loss (or log-perplexity).
      reference_losses: [..., R] the losses of R reference candidates (never inserted), broadcast
        against ``canary_loss``.

    Returns:
      float64 [...] exposure in bits, between 0 and log2(R + 1).

    Raises:
      ValueError: ``reference_losses`` has no last axis or R = 0.

    References:
      Carlini et al. (2019), "The secret sharer: evaluating and testing unintended memorization in
      neural networks", USENIX Security, Def. 4.

    Example:
      >>> float(exposure_rank(0.1, np.array([0.5, 0.7, 0.9])))   # rank 1 of 4 candidates
      2.0
    """
    canary, refs = _split(canary_loss, reference_losses)
    rank = 1 + np.sum(refs <= canary[..., None], axis=-1)
    return np.log2(refs.shape[-1] + 1) - np.log2(rank)


def exposure_skewnorm(
    canary_loss: Real[ArrayLike, "*#batch"], reference_losses: Real[ArrayLike, "*#batch R"]
) -> SkewNormalExposure:
    """Exposure of a canary by extrapolation from a skew-normal fit to the reference losses.

    Fit a skew-normal density ρ to the reference losses (``scipy.stats.skewnorm.fit``, maximum
    likelihood) and return exposure = −log2 ∫_{−∞}^{loss(canary)} ρ(x) dx, which extends beyond
    log2(R + 1) when the canary's loss is far below every reference. Needs scipy.

    Args:
      canary_loss: [...] the canary's loss.
      reference_losses: [..., R] reference losses: one fit per leading index (broadcast against
        ``canary_loss``).

    Returns:
      :class:`SkewNormalExposure` (``exposure``, ``shape``, ``loc``, ``scale``, each float64 [...]).

    Raises:
      ValueError: ``reference_losses`` has no last axis or R = 0.

    References:
      Carlini et al. (2019), "The secret sharer", USENIX Security, Sec. 4.3.
    """
    from scipy.stats import skewnorm  # lazy: scipy is only needed here

    canary, refs = _split(canary_loss, reference_losses)
    lead = np.broadcast_shapes(canary.shape, refs.shape[:-1])
    canary = np.broadcast_to(canary, lead)
    refs = np.broadcast_to(refs, lead + refs.shape[-1:])
    out = np.empty((4,) + lead)
    for idx in np.ndindex(*lead):
        a, loc, scale = skewnorm.fit(refs[idx])
        out[(slice(None),) + idx] = (-skewnorm.logcdf(canary[idx], a, loc, scale) / np.log(2), a, loc, scale)
    return SkewNormalExposure(*out)
