"""Shared input handling and blocking for the estimators.

Precision rule (every estimator takes ``dtype=None``):

* ``dtype="float64"`` computes in NumPy float64 (BLAS matmuls, exact to ~1e-16).
* ``dtype="float32"`` computes in jit-compiled JAX kernels in float32, with matmuls at
  ``Precision.HIGHEST`` (so GPUs do not silently use TF32/bf16 passes).
* ``dtype=None`` picks float64 when the metric argument is a float64 NumPy array and float32
  otherwise (JAX arrays, float32/bool/int NumPy arrays).

Sums of 0/1 correctness are exact in float32 as long as the counts stay below 2^24 models, so in
float32 only the final divisions round (relative error ~1e-7); real-valued metrics (losses)
accumulate float32 rounding ~sqrt(M)·2^-24 relative, and variances are computed two-pass
(centred) so they do not cancel catastrophically.
"""

from __future__ import annotations

import warnings

import numpy as np

# Elements of one [M, block] slab (4 MB float32): cache-sized, which is several times faster on
# CPU than one big slab (XLA column reductions over [200, 20000] ran 10-20x slower unblocked).
BLOCK_ELEMENTS = 1 << 20


class InsufficientModelsWarning(RuntimeWarning):
    """Some examples have no IN or no OUT model (their estimate is NaN)."""


def is_jax(a) -> bool:
    return type(a).__module__.startswith("jax")


def resolve_dtype(dtype, metric) -> str:
    """'float64' or 'float32' following the module's precision rule."""
    if dtype is None:
        if isinstance(metric, np.ndarray) and metric.dtype == np.float64:
            return "float64"
        return "float32"
    name = np.dtype(dtype).name
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def as_keep(keep) -> np.ndarray | object:
    """``keep`` [M, N] as a boolean array (NumPy stays NumPy, JAX stays JAX)."""
    if is_jax(keep):
        return keep.astype(bool)
    keep = np.asarray(keep)
    if keep.ndim != 2:
        raise ValueError(f"keep must be [M, N], got shape {keep.shape}")
    return keep.astype(bool, copy=False)


def as_model_mask(model_mask, num_models: int) -> np.ndarray:
    """``model_mask`` [M] as a NumPy bool array (all True when None)."""
    if model_mask is None:
        return np.ones(num_models, dtype=bool)
    mask = np.asarray(model_mask).astype(bool)
    if mask.shape != (num_models,):
        raise ValueError(f"model_mask must have shape ({num_models},), got {mask.shape}")
    return mask


def check_model_axis(name: str, a, num_models: int) -> None:
    if a.ndim < 1 or a.shape[0] != num_models:
        raise ValueError(f"{name} must have a leading model axis of size {num_models}, got {a.shape}")


def block_size(num_rows: int, block: int | None) -> int:
    """Columns per block: ``block`` or as many as fit BLOCK_ELEMENTS for ``num_rows`` rows."""
    if block is not None:
        if block < 1:
            raise ValueError("block size must be positive")
        return int(block)
    return max(256, BLOCK_ELEMENTS // max(num_rows, 1))


def map_column_blocks(fn, col_arrays, shared, n: int, block: int, use_jax: bool):
    """Apply ``fn(*col_blocks, *shared)`` over blocks of the last axis and concatenate.

    ``fn`` returns a tuple of arrays whose last axis is the block's columns. With ``use_jax`` the
    final partial block is zero-padded to ``block`` columns, so one compiled shape serves all.
    """
    outs = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        parts = [a[..., start:stop] for a in col_arrays]
        width = stop - start
        if use_jax and n > block and width < block:
            import jax.numpy as jnp

            parts = [jnp.pad(p, [(0, 0)] * (p.ndim - 1) + [(0, block - width)]) for p in parts]
        res = fn(*parts, *shared)
        outs.append([np.asarray(r)[..., :width] for r in res])
    return tuple(np.concatenate([o[k] for o in outs], axis=-1) for k in range(len(outs[0])))


def matmul(xp, a, b):
    """``a @ b`` in NumPy, or at ``Precision.HIGHEST`` in JAX (no TF32/bf16 passes on GPUs)."""
    if xp is np:
        return a @ b
    import jax
    import jax.numpy as jnp

    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def warn_missing(count: int, total: int, what: str) -> None:
    if count:
        warnings.warn(
            f"{count} of {total} {what}; their estimate is NaN",
            InsufficientModelsWarning,
            stacklevel=3,
        )


def first_field(result):
    """The estimate of an estimator's result: an array, or the first field of a NamedTuple."""
    if isinstance(result, tuple) and hasattr(result, "_fields"):
        return np.asarray(result[0])
    return np.asarray(result)
