"""Random streams of the stacked trainer. Every stream derives from the run's seed by ``fold_in``
(stream, model id, step or epoch), so model k trains identically in a chunk of 1 or of 1,024."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["INIT", "DATA", "DROPOUT", "AUGMENT", "DP_NOISE", "FLIP", "CURVATURE", "model_keys", "epoch_orders"]

# Stream ids for fold_in(root, stream).
INIT, DATA, DROPOUT, AUGMENT, DP_NOISE, FLIP = 0, 1, 2, 3, 4, 5
CURVATURE = 6   # the Rademacher directions of train.records.curvature_epochs


def model_keys(seed: int, stream: int, model_ids):
    """Per-model keys ``fold_in(fold_in(key(seed), stream), m)``."""
    root = jax.random.fold_in(jax.random.key(seed), stream)
    return jax.vmap(lambda m: jax.random.fold_in(root, m))(jnp.asarray(model_ids, jnp.uint32))


def epoch_orders(seed: int, model_ids, keep_rows: np.ndarray, epoch0: int, num_epochs: int):
    """[K, E, N] int32: model m's visiting order of its IN examples in epoch e (first n_in
    entries; the rest pads), a pure function of (seed, model id, epoch): a uniform permutation from
    NumPy's PCG64 seeded with (seed, DATA, m, e). Drawn on the host, where sorting is fast (XLA's
    CPU sort is ~30x slower than NumPy's), the same on every backend and chunking."""
    K, N = keep_rows.shape
    out = np.zeros((K, num_epochs, N), np.int32)
    for k, m in enumerate(np.asarray(model_ids)):
        idx = np.flatnonzero(keep_rows[k]).astype(np.int32)
        for j in range(num_epochs):
            rng = np.random.default_rng([int(seed), DATA, int(m), int(epoch0 + j)])
            out[k, j, : idx.size] = rng.permutation(idx)
    return out
