"""Per-example signals computed from logits: pure array functions.

Every function takes ``logits`` of shape ``[..., C]`` and integer ``labels`` of shape
``logits.shape[:-1]`` (or broadcastable to it) and returns an array of shape ``logits.shape[:-1]``.
NumPy inputs are computed in NumPy (float64 stays float64, as the LiRA reference code computes φ);
JAX inputs are computed in ``jax.numpy`` and work under ``jit``/``vmap``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "logit_scaled_confidence",
    "true_class_probability",
    "cross_entropy",
    "correctness",
]


def _xp(*arrays):
    """The array namespace for the inputs: numpy unless one of them is a JAX array."""
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def _prepare(logits, labels):
    xp = _xp(logits, labels)
    logits = xp.asarray(logits)
    if not xp.issubdtype(logits.dtype, xp.floating):
        logits = logits.astype(xp.float32)
    elif logits.dtype == xp.float16 or str(logits.dtype) == "bfloat16":
        logits = logits.astype(xp.float32)
    labels = xp.broadcast_to(xp.asarray(labels), logits.shape[:-1])
    onehot = labels[..., None] == xp.arange(logits.shape[-1])
    return xp, logits, labels, onehot


def _logsumexp(xp, z, where):
    """Stable log Σ exp(z) over the last axis, restricted to ``where``."""
    neg_inf = xp.asarray(-np.inf, dtype=z.dtype)
    zm = xp.where(where, z, neg_inf)
    m = xp.max(zm, axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    s = xp.sum(xp.where(where, xp.exp(z - m), xp.zeros_like(z)), axis=-1)
    return xp.log(s) + m[..., 0]


def logit_scaled_confidence(logits, labels):
    """φ = z_y − log Σ_{j≠y} exp(z_j) = log(p_y / (1 − p_y)), computed stably.

    Carlini et al. (2022), "Membership inference attacks from first principles", Sec. IV.B: the
    logit of the true-class softmax probability, which is approximately Gaussian over models.
    """
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return z_y - _logsumexp(xp, z, ~onehot)


def true_class_probability(logits, labels):
    """p_y = softmax(z)_y (the signal RMIA uses, Zarifzadeh et al. 2024)."""
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return xp.exp(z_y - _logsumexp(xp, z, xp.ones_like(onehot)))


def cross_entropy(logits, labels):
    """−log softmax(z)_y, the per-example loss (Yeom et al. 2018 threshold attack)."""
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return _logsumexp(xp, z, xp.ones_like(onehot)) - z_y


def correctness(logits, labels):
    """1.0 where argmax z == y, else 0.0 (Feldman & Zhang 2020's per-example metric)."""
    xp, z, labels, _ = _prepare(logits, labels)
    return (xp.argmax(z, axis=-1) == labels).astype(z.dtype)
