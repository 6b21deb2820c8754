"""Input checks the attacks share: models whose signals hold NaN/inf (a diverged model in a stack)
are found from the signals themselves and left out, with a warning that names them."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["NonFiniteModelWarning", "nonfinite_models", "drop_nonfinite_shadows"]

_BLOCK_ELEMS = 1 << 22  # values checked at a time (a bool temporary of this many bytes)


class NonFiniteModelWarning(UserWarning):
    """Models with NaN/inf signals were left out (as targets, shadow or reference models)."""


def nonfinite_models(arrays, mask=None) -> np.ndarray:
    """[M] bool: True for the models (axis 0 of every array in ``arrays``, all with M rows) with
    any NaN or ±inf value; models outside ``mask`` ([M] bool) are not read and stay False.
    Read a block of models at a time (memory-mapped arrays are streamed)."""
    arrays = list(arrays)
    M = len(arrays[0])
    bad = np.zeros(M, bool)
    use = np.ones(M, bool) if mask is None else np.asarray(mask, bool)
    for x in arrays:
        per = max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
        step = max(1, _BLOCK_ELEMS // per)
        for m0 in range(0, M, step):
            rows = np.flatnonzero(use[m0:m0 + step]) + m0
            if rows.size:
                v = np.asarray(x[rows[0]:rows[-1] + 1])[rows - rows[0]]
                bad[rows] |= ~np.isfinite(v.reshape(rows.size, -1)).all(1)
    return bad


def drop_nonfinite_shadows(who, arrays, keep, stacklevel=3):
    """``arrays`` (shadow/reference signals, model axis first) and ``keep`` [S, N] without the
    models whose signals hold NaN/inf, with one :class:`NonFiniteModelWarning` naming them
    (their indices along the shadow axis)."""
    bad = nonfinite_models(arrays)
    if not bad.any():
        return arrays, keep
    warnings.warn(f"{who}: shadow/reference models {np.flatnonzero(bad).tolist()} (of {bad.size}) "
                  "have NaN/inf signals; they are left out", NonFiniteModelWarning,
                  stacklevel=stacklevel)
    return [np.asarray(a)[~bad] for a in arrays], np.asarray(keep)[~bad]
