"""Exposure of inserted canaries (Carlini et al. 2019, "The secret sharer")."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["exposure_rank", "SkewNormalExposure", "exposure_skewnorm"]


class SkewNormalExposure(NamedTuple):
    exposure: np.ndarray  # [...] −log2 CDF(canary loss)
    shape: np.ndarray  # [...] fitted skew-normal parameters (scipy's a, loc, scale)
    loc: np.ndarray
    scale: np.ndarray


def _split(canary_loss, reference_losses):
    canary = np.asarray(canary_loss, dtype=np.float64)
    refs = np.asarray(reference_losses, dtype=np.float64)
    if refs.ndim < 1 or refs.shape[-1] < 1:
        raise ValueError("reference_losses must be [..., R] with R >= 1")
    return canary, refs


def exposure_rank(canary_loss, reference_losses) -> np.ndarray:
    """Carlini et al. (2019), Def. 4: exposure = log2 |R| − log2 rank(canary).

    The candidate space is the canary plus its R references, |R| = R + 1, and rank 1 means the
    canary has the lowest loss (perplexity) of all. Ties count against the canary (a reference
    with equal loss ranks ahead), so exposure is never overstated. ``canary_loss`` [...],
    ``reference_losses`` [..., R] (broadcast against each other) -> exposure [...] in bits,
    between 0 and log2(R + 1). TensorFlow Privacy's secret sharer counts |R| = R candidates
    (log2 R − log2 rank): its rank exposure is a constant log2((R + 1) / R) bits lower.
    """
    canary, refs = _split(canary_loss, reference_losses)
    rank = 1 + np.sum(refs <= canary[..., None], axis=-1)
    return np.log2(refs.shape[-1] + 1) - np.log2(rank)


def exposure_skewnorm(canary_loss, reference_losses) -> SkewNormalExposure:
    """Carlini et al. (2019), Sec. 4.3 (estimating exposure by extrapolation).

    Fit a skew-normal density ρ to the reference losses (``scipy.stats.skewnorm.fit``, maximum
    likelihood) and return exposure = −log2 ∫_{−∞}^{loss(canary)} ρ(x) dx, which extends beyond
    log2(R + 1) when the canary's loss is far below every reference. ``canary_loss`` [...],
    ``reference_losses`` [..., R]: one fit per leading index.
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
