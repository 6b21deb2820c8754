"""Exact masked order statistics along a model axis, fast under ``jit`` on CPU and GPU.

XLA's CPU sort is slow (sorting [256, 100000] f32 takes seconds), so instead of sorting we *select*:
each float32 is mapped to a uint32 key with the same order, and the k-th smallest key among the
selected entries of a row is found by bisection on its 32 bits (radix select): bit b of the answer
is 0 iff at least k + 1 selected keys are ≤ (answer so far with bit b = 0 and all lower bits 1).
That is 32 passes of compare + count, each a vectorized reduction over the model axis. The next
order statistics (k + 1, k + 2) then cost one pass each: either the current value again (ties) or
the smallest selected key above it.

Two disjoint groups of the same row (LiRA's IN and OUT shadow models) are selected *in the same
passes*: each entry is compared with its own group's threshold, and both counts come out of one
integer sum, the OUT count weighted by 2**16 (so at most 32767 models per group).

Results are exact: the median equals ``np.median`` of the selected float32 values (the mean of the
two middle values, computed in float32, for even counts).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["select_two_groups", "order_statistics_two_groups", "masked_median"]

_SIGN = np.uint32(0x80000000)
_ALL = np.uint32(0xFFFFFFFF)
_OUT_WEIGHT = 1 << 16


def _to_key(x):
    """float32 -> uint32 with the same total order (−0 < +0; NaNs sort past ±inf)."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(bits & _SIGN, ~bits, bits | _SIGN)


def _from_key(key):
    bits = jnp.where(key & _SIGN, key & ~_SIGN, ~key)
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


def select_two_groups(x, in_mask, out_mask, j_in, j_out, n_next):
    """Order statistics j, j+1, …, j+n_next of the IN and OUT entries of each row of ``x`` [r, M].

    Unblocked: call it on small row blocks (e.g. inside ``lax.map``), where XLA's CPU code is
    several times faster than on one large array. Returns two [r, n_next + 1] float32 arrays.
    """
    if x.shape[-1] >= _OUT_WEIGHT // 2:
        raise ValueError(f"at most {_OUT_WEIGHT // 2 - 1} models, got {x.shape[-1]}")
    one = jnp.uint32(1)
    key = _to_key(x)
    weight = jnp.where(in_mask, 1, jnp.where(out_mask, _OUT_WEIGHT, 0)).astype(jnp.int32)
    j_in, j_out = j_in.astype(jnp.int32), j_out.astype(jnp.int32)

    def count(thr_in, thr_out):
        thr = jnp.where(in_mask, thr_in[:, None], thr_out[:, None])
        c = jnp.sum(jnp.where(key <= thr, weight, 0), axis=1)
        return c & (_OUT_WEIGHT - 1), c >> 16

    def bit_step(i, ans):
        a_in, a_out = ans
        b = jnp.uint32(31) - i.astype(jnp.uint32)
        low = (one << b) - one
        c_in, c_out = count(a_in | low, a_out | low)
        a_in = jnp.where(c_in >= j_in + 1, a_in, a_in | (one << b))
        a_out = jnp.where(c_out >= j_out + 1, a_out, a_out | (one << b))
        return a_in, a_out

    zeros = jnp.zeros(key.shape[:1], jnp.uint32)
    a_in, a_out = jax.lax.fori_loop(0, 32, bit_step, (zeros, zeros), unroll=2)
    outs_in, outs_out = [a_in], [a_out]
    for step in range(1, n_next + 1):
        c_in, c_out = count(a_in, a_out)
        nxt_in = jnp.min(jnp.where(in_mask & (key > a_in[:, None]), key, _ALL), axis=1)
        nxt_out = jnp.min(jnp.where(out_mask & (key > a_out[:, None]), key, _ALL), axis=1)
        a_in = jnp.where(c_in >= j_in + 1 + step, a_in, nxt_in)
        a_out = jnp.where(c_out >= j_out + 1 + step, a_out, nxt_out)
        outs_in.append(a_in)
        outs_out.append(a_out)
    return _from_key(jnp.stack(outs_in, -1)), _from_key(jnp.stack(outs_out, -1))


@functools.partial(jax.jit, static_argnames=("n_next", "rows_per_pass"))
def order_statistics_two_groups(x, in_mask, out_mask, j_in, j_out, *, n_next=1, rows_per_pass=64):
    """Exact order statistics of two disjoint masked groups along the last axis.

    Args:
      x: [R, M] float values (computed in float32).
      in_mask, out_mask: [R, M] bool, disjoint selections (entries in neither are ignored).
      j_in, j_out: [R] int, 0-based rank of the first wanted statistic in each group.
      n_next: how many consecutive statistics to return after the first one.

    Returns:
      (in_vals, out_vals), each [R, n_next + 1] float32: the (j, j+1, …)-th smallest selected
      values. Ranks outside [0, count) give meaningless values; the caller masks them.
    """
    R, M = x.shape
    r = min(rows_per_pass, R)
    pad = (-R) % r
    args = (x.astype(jnp.float32), in_mask.astype(bool), out_mask.astype(bool), j_in, j_out)
    if pad:
        args = tuple(jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in args)
    args = tuple(a.reshape((-1, r) + a.shape[1:]) for a in args)
    fn = lambda a: select_two_groups(*a, n_next=n_next)
    vin, vout = jax.lax.map(fn, args)
    return vin.reshape(-1, n_next + 1)[:R], vout.reshape(-1, n_next + 1)[:R]


def masked_median(x, mask):
    """Exact median of the entries of each row of ``x`` [R, M] where ``mask`` is True.

    Equal to ``np.median(x[r][mask[r]])`` (float32); NaN for rows with no selected entry.
    """
    x = jnp.asarray(x, jnp.float32)
    mask = jnp.asarray(mask, bool)
    n = jnp.sum(mask, axis=1)
    j = jnp.maximum((n - 1) // 2, 0)
    v, _ = order_statistics_two_groups(x, mask, jnp.zeros_like(mask), j, jnp.zeros_like(j))
    med = jnp.where(n % 2 == 1, v[:, 0], 0.5 * (v[:, 0] + v[:, 1]))
    return jnp.where(n > 0, med, jnp.nan)
