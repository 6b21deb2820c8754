"""Per-example signals computed from logits: pure array functions.

Shapes (one convention, shared with :func:`jaxmem.signals.compute_signals` and
:func:`jaxmem.runs.import_arrays`): ``logits`` is one of

* ``[N, C]`` — one model, N examples, C classes;
* ``[M, N, C]`` — M models; a missing query axis means A = 1 (one query per example);
* ``[M, N, A, C]`` — M models, A test-time queries (augmentations) per example.

A 3-D array is always ``[M, N, C]``: for one model's queries ``[N, A, C]`` pass ``logits[None]``.
``labels`` are integer class labels ``[N]`` (aligned with the N axis, whatever the rank), or any
other array that broadcasts to ``logits.shape[:-1]`` by numpy's rule (trailing axes align: e.g.
``labels[:, None]`` for ``[M, N, A, C]``, ``labels[None]`` for ``[M, N, C]``). Every function
returns ``logits.shape[:-1]``. Other ranks (``[..., C]``, as under ``vmap``) follow numpy's
rule alone. A shape that does not fit raises a ValueError that names the axis, e.g. ``labels:
expected [N] or a shape that broadcasts to logits [M, N, A]; axis N (examples) is 6 in logits
[M, N, A, C] (3, 6, 2, 4) but 5 in labels``.

NumPy inputs are computed in NumPy (float64 stays float64, as the LiRA reference code computes φ);
JAX inputs are computed in ``jax.numpy`` and work under ``jit``/``vmap``.

Labels must be integers in [0, C) (C = ``logits.shape[-1]``): anything else raises a ValueError
that names the range (:func:`check_labels`), for NumPy inputs and for concrete JAX arrays. Under
``jit`` / ``vmap`` the labels are tracers whose values cannot be read, so they are not checked:
an out-of-range label then matches no class and gives a finite, wrong value (φ and the loss
computed as if z_y were 0, correctness 0). That is the contract: check labels before tracing
(every entry point that takes labels from a user does: :func:`jaxmem.signals.compute_signals`,
:func:`jaxmem.attacks.evaluate`, :func:`jaxmem.runs.import_arrays`).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float, Integer, Real

#: Logits as the signal functions take them: ``[N, C]``, ``[M, N, C]``, ``[M, N, A, C]`` (or any
#: ``[..., C]``), with the leading axes named ``*batch``.
Logits = Real[ArrayLike, "*batch C"]
#: Integer class labels: ``[N]`` aligned with the N axis of the logits, or a shape that broadcasts
#: to the logits' leading axes (see the module docstring); an integral float dtype is accepted.
Labels = Real[ArrayLike, "..."]
#: A signal: one value per example (and model, and query), the logits' leading axes.
Signal = Float[ArrayLike, "*batch"]

__all__ = [
    "AXES",
    "axis_layout",
    "check_labels",
    "logit_scaled_confidence",
    "true_class_probability",
    "cross_entropy",
    "correctness",
    "taylor_soft_margin_probability",
]


def _xp(*arrays):
    """The array namespace for the inputs: numpy unless one of them is a JAX array."""
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp

            return jnp
    return np


def _traced(x):
    if not type(x).__module__.startswith("jax"):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def check_labels(labels: Real[ArrayLike, " ..."], num_classes: int | None = None, *, shape=None,
                 name: str = "labels") -> Integer[np.ndarray, " ..."]:
    """``labels`` as an int64 numpy array, checked.

    Args:
      labels: [...] integer class labels (an integral float dtype is accepted).
      num_classes: C: labels must lie in [0, C) (None: only >= 0).
      shape: the shape ``labels`` must have (None: any).
      name: the field named in errors.

    Returns:
      int64 [...] labels.

    Raises:
      ValueError: naming the field: a wrong shape, a non-integer dtype or value, or a label out of
        [0, C) (with the range and the count out of it).

    Example:
      >>> check_labels(np.array([0.0, 2.0]), 3)
      array([0, 2])
    """
    y = np.asarray(labels)
    if shape is not None and y.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {y.shape}")
    if y.dtype.kind == "b" or y.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise ValueError(f"{name}: expected integer class labels, got non-integer values")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            rng = f"[0, {num_classes})" if num_classes is not None else "[0, ∞)"
            bad = int(((y < 0) | (y >= (num_classes if num_classes is not None else np.inf))).sum())
            raise ValueError(
                f"{name}: must lie in {rng}" + (f" for {num_classes} classes" if num_classes else "")
                + f"; got values in [{lo:.0f}, {hi:.0f}] ({bad} of {y.size} out of range)")
    return y.astype(np.int64)


#: What each axis letter of a documented shape means (named in every shape error).
AXES = {"M": "models", "N": "examples", "A": "queries", "C": "classes"}


def axis_layout(ndim):
    """The documented axis letters of a logits array of rank ``ndim``: ``"NC"``, ``"MNC"`` (a
    missing query axis means A = 1) or ``"MNAC"``; None for any other rank."""
    return {2: "NC", 3: "MNC", 4: "MNAC"}.get(int(ndim))


def _fmt(letters):
    return "[" + ", ".join(letters) + "]"


def _align_labels(xp, labels, shape):
    """``labels`` reshaped to broadcast against ``shape[:-1]`` (``shape`` = the logits' shape,
    see the module docstring), or a ValueError naming the first axis that does not fit."""
    shape = tuple(shape)
    lead = shape[:-1]
    layout = axis_layout(len(shape))
    ls = tuple(np.shape(labels))
    hint = ("; a 3-D array is [M, N, C] (a missing query axis means A = 1): for one model's "
            "[N, A, C] pass logits[None]") if len(shape) == 3 else ""
    if len(ls) == 1 and layout is not None and len(lead) > 1:
        n_ax = layout.index("N")
        if ls[0] != lead[n_ax]:
            raise ValueError(
                f"labels: expected [N] or a shape that broadcasts to logits {_fmt(layout[:-1])}; "
                f"axis N ({AXES['N']}) is {lead[n_ax]} in logits {_fmt(layout)} {shape} but "
                f"{ls[0]} in labels{hint}")
        return xp.reshape(labels, tuple(ls[0] if i == n_ax else 1 for i in range(len(lead))))
    if len(ls) <= len(lead):   # numpy broadcasting: trailing axes align (labels[:, None])
        off = len(lead) - len(ls)
        for i, (a, b) in enumerate(zip(lead[off:], ls), start=off):
            if b not in (1, a):
                axis = f"axis {layout[i]} ({AXES[layout[i]]})" if layout else f"axis {i}"
                raise ValueError(
                    f"labels: shape {ls} does not broadcast to logits "
                    f"{_fmt(layout) if layout else '[..., C]'} {shape}: {axis} is {a} in logits "
                    f"but {b} in labels{hint}")
        return labels
    raise ValueError(f"labels: expected [N] or at most {len(lead)} axes for logits "
                     f"{_fmt(layout) if layout else '[..., C]'} {shape}, got shape {ls}")


def _prepare(logits, labels):
    xp = _xp(logits, labels)
    if np.ndim(logits) < 1:
        raise ValueError("logits: expected [N, C], [M, N, C] or [M, N, A, C], got a scalar")
    if not _traced(labels):
        check_labels(labels, np.shape(logits)[-1])
    logits = xp.asarray(logits)
    if not xp.issubdtype(logits.dtype, xp.floating):
        logits = logits.astype(xp.float32)
    elif logits.dtype == xp.float16 or str(logits.dtype) == "bfloat16":
        logits = logits.astype(xp.float32)
    labels = xp.broadcast_to(_align_labels(xp, xp.asarray(labels), logits.shape),
                             logits.shape[:-1])
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


def logit_scaled_confidence(logits: Logits, labels: Labels) -> Signal:
    """φ = z_y − log Σ_{j≠y} exp(z_j) = log(p_y / (1 − p_y)), computed stably.

    Carlini et al. (2022), "Membership inference attacks from first principles", Sec. IV.B: the
    logit of the true-class softmax probability, which is approximately Gaussian over models.
    Unbounded: the LiRA reference code's ``log(p_y + 1e-45) − log(Σ p_j + 1e-45)`` floors |φ|
    at ≈ 103.6 (:func:`jaxmem.attacks.lira_reference_scores` reproduces that; this does not).

    Args:
      logits: [N, C], [M, N, C] or [M, N, A, C] (see the module docstring).
      labels: [N] integer labels in [0, C), or a shape that broadcasts to the leading axes.

    Returns:
      φ of the logits' leading shape ([N], [M, N] or [M, N, A]), NumPy for NumPy inputs.

    Raises:
      ValueError: labels outside [0, C) or not integers, or labels whose shape does not fit the
        logits (naming the axis).

    References:
      Carlini et al. (2022), "Membership inference attacks from first principles", IEEE S&P.

    Example:
      >>> round(float(logit_scaled_confidence(np.array([2.0, 0.0]), np.array(0))), 6)   # log(e²)
      2.0
    """
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return z_y - _logsumexp(xp, z, ~onehot)


def true_class_probability(logits: Logits, labels: Labels) -> Signal:
    """p_y = softmax(z)_y (the signal RMIA uses).

    Args:
      logits: [N, C], [M, N, C] or [M, N, A, C] (see the module docstring).
      labels: [N] integer labels in [0, C), or a shape that broadcasts to the leading axes.

    Returns:
      p_y in [0, 1], of the logits' leading shape.

    Raises:
      ValueError: labels outside [0, C) or not integers, or labels whose shape does not fit the
        logits (naming the axis).

    References:
      Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", ICML.
    """
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return xp.exp(z_y - _logsumexp(xp, z, xp.ones_like(onehot)))


def cross_entropy(logits: Logits, labels: Labels) -> Signal:
    """−log softmax(z)_y, the per-example loss (the signal of Yeom et al. 2018's loss attack).

    Args:
      logits: [N, C], [M, N, C] or [M, N, A, C] (see the module docstring).
      labels: [N] integer labels in [0, C), or a shape that broadcasts to the leading axes.

    Returns:
      The loss (>= 0), of the logits' leading shape.

    Raises:
      ValueError: labels outside [0, C) or not integers, or labels whose shape does not fit the
        logits (naming the axis).

    References:
      Yeom et al. (2018), "Privacy risk in machine learning", IEEE CSF.
    """
    xp, z, _, onehot = _prepare(logits, labels)
    z_y = xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=-1)
    return _logsumexp(xp, z, xp.ones_like(onehot)) - z_y


def correctness(logits: Logits, labels: Labels) -> Signal:
    """1.0 where argmax z == y, else 0.0 (Feldman & Zhang 2020's per-example metric).

    Args:
      logits: [N, C], [M, N, C] or [M, N, A, C] (see the module docstring).
      labels: [N] integer labels in [0, C), or a shape that broadcasts to the leading axes.

    Returns:
      0.0 / 1.0 in the logits' float dtype, of their leading shape.

    Raises:
      ValueError: labels outside [0, C) or not integers, or labels whose shape does not fit the
        logits (naming the axis).

    References:
      Feldman & Zhang (2020), "What neural networks memorize and why", NeurIPS.
    """
    xp, z, labels, _ = _prepare(logits, labels)
    return (xp.argmax(z, axis=-1) == labels).astype(z.dtype)


def _taylor_exp(xp, u, order):
    """Σ_{k<order} u^k / k!: exp truncated to ``order`` terms (degree order − 1)."""
    term = xp.ones_like(u)
    total = xp.ones_like(u)
    for k in range(1, order):
        term = term * u / k
        total = total + term
    return total


def taylor_soft_margin_probability(logits: Logits, labels: Labels, *, order: int = 4, margin: float = 0.6,
                                   temperature: float = 2.0) -> Signal:
    """RMIA's default signal: a Taylor-softmax with a soft margin on the true class.

    Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", as computed by
    the authors' code (ml_privacy_meter, ``research/2023_rmia/signals.py``: ``convert_signals`` with
    metric ``"taylor-soft-margin"``, series from ``get_taylor``). With u = z / T and
    t(u) = Σ_{k=0}^{order−1} u^k / k! (exp truncated to ``order`` terms, the code's ``taylor_n``)::

        p = t(u_y − m) / ( t(u_y − m) + Σ_{j≠y} t(u_j) ).

    Their configs use order 4 (a cubic), m = 0.6, T = 2 (CIFAR-10, CINIC-10) or 1 (CIFAR-100).
    As order → ∞ with m = 0 this tends to softmax(z / T)_y. There is no max-shift (t is not
    shift-invariant) and an odd-degree t is negative for u below its real root (≈ −1.596 for
    order 4): very negative logits give values outside [0, 1], as in the original code. Here the
    sum over j ≠ y is taken directly instead of as (all − true), which only changes rounding.

    Args:
      logits: [N, C], [M, N, C] or [M, N, A, C] (see the module docstring).
      labels: [N] integer labels in [0, C), or a shape that broadcasts to the leading axes.
      order: terms of the truncated series (>= 2).
      margin: the soft margin m subtracted from the true class's scaled logit.
      temperature: T > 0.

    Returns:
      p, of the logits' leading shape.

    Raises:
      ValueError: ``order`` not an integer >= 2, ``temperature`` <= 0, or the labels as in
        :func:`true_class_probability`.

    References:
      Zarifzadeh et al. (2024), "Low-cost high-power membership inference attacks", ICML.
    """
    if int(order) != order or order < 2:
        raise ValueError(f"order must be an integer >= 2 (terms of the series), got {order!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    xp, z, _, onehot = _prepare(logits, labels)
    u = z / xp.asarray(temperature, dtype=z.dtype)
    zero = xp.zeros_like(u)
    u_y = xp.sum(xp.where(onehot, u, zero), axis=-1)
    num = _taylor_exp(xp, u_y - xp.asarray(margin, dtype=z.dtype), int(order))
    rest = xp.sum(xp.where(onehot, zero, _taylor_exp(xp, u, int(order))), axis=-1)
    return num / (num + rest)
