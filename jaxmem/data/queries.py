"""Test-time augmentation queries: the views of an input that a run stores logits of
(``signals.queries``): ``identity``, ``flip`` (horizontal mirror), ``shift:DX,DY`` (a translation
with reflect padding). Parsing is numpy-free (config validation reads it); :func:`query_inputs`
applies a query to an NHWC batch (numpy or JAX arrays; non-images pass through unchanged).

Adding a query = one entry in :data:`QUERIES` (its parser of the text after ``NAME:``) and a case
in :func:`query_inputs`.
"""

from __future__ import annotations

__all__ = ["QUERIES", "parse_query", "query_inputs"]


def _no_args(arg):
    if arg is not None:
        raise ValueError("takes no arguments")
    return ()


def _shift_args(arg):
    dx, dy = (arg or "").split(",")
    return int(dx), int(dy)


def _external_args(arg):
    return (arg or "",)


#: name -> parser of its arguments (the text after "name:", or None). ``external:NAME`` names a
#: view made outside jaxmem (an imported run's queries): it is recorded, never applied.
QUERIES = {"identity": _no_args, "flip": _no_args, "shift": _shift_args, "external": _external_args}


def parse_query(query: str):
    """``(name, args)`` of a query string; ValueError when it is not one of :data:`QUERIES`."""
    name, sep, arg = query.partition(":")
    if name not in QUERIES:
        raise ValueError(f"unknown query {query!r} (identity, flip, shift:DX,DY, external:NAME)")
    try:
        return name, QUERIES[name](arg if sep else None)
    except (ValueError, TypeError):
        raise ValueError(f"unknown query {query!r} (identity, flip, shift:DX,DY, external:NAME)") from None


def _xp(x):
    if type(x).__module__.startswith("jax"):
        import jax.numpy as jnp

        return jnp
    import numpy as np

    return np


def _shift(x, dx, dy):
    """Translate an NHWC batch by (dx, dy) pixels with reflect padding."""
    if x.ndim != 4:
        return x
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    H, W = x.shape[1], x.shape[2]
    xp = _xp(x).pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return xp[:, p - dy : p - dy + H, p - dx : p - dx + W, :]


def query_inputs(x, query: str):
    """The input under an augmentation query: identity, flip (horizontal), shift:DX,DY."""
    name, args = parse_query(query)
    if name == "identity":
        return x
    if name == "flip":
        return x[:, :, ::-1, :] if x.ndim == 4 else x
    if name == "external":
        raise ValueError(f"query {query!r}: made outside jaxmem (an imported run's); it cannot be "
                         f"applied to inputs")
    return _shift(x, *args)
