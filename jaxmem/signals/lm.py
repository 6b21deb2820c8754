"""Per-example signals of causal language models, from logits: pure array functions.

Conventions. ``tokens`` is ``[..., L]`` (integer ids) with a bool ``mask`` ``[..., L]`` (True on
real tokens: BOS, text, EOS; False on padding), and a causal LM's ``logits`` are ``[..., L, V]``,
the logits at position t predicting token t + 1. Per-token signals are therefore ``[..., L − 1]``:
entry t scores token t + 1 given tokens 0..t, and is counted where the *target mask*
``mask[..., t] & mask[..., t + 1]`` is True (so BOS is never a target and every real token after
it is, EOS included, as in Hugging Face's ``labels=input_ids`` loss).

* :func:`token_signals` -> :class:`TokenSignals`: per token, ``logp`` = log p(x_{t+1} | x_{≤t});
  ``mu`` and ``sigma``, the mean and standard deviation of log p(v) for v drawn from the model's own
  next-token distribution (Min-K%++'s μ and σ, Zhang et al. 2024); ``correct`` = 1.0 where
  the argmax of the logits is the true next token (exact-match token accuracy, Tirumala et al.
  2022; ties go to the lowest id), 0.0 elsewhere.
* :func:`sequence_nll` (mean token NLL, nats), :func:`token_accuracy`, :func:`masked_mean`:
  per-sequence reductions over the target mask.
* :func:`lm_token_signals`: the same signals straight from a model, ``apply_fn(params, tokens)``,
  one batch of logits at a time (a [N, L, V] logit array never exists).
* :func:`greedy_extraction`: Carlini et al. (2022)'s k-extractability by greedy decoding.

Precision and memory. NumPy inputs are computed in float64 NumPy (float16/32 logits are upcast
one block at a time: at most ``block_elements`` logits, 2^24 by default = 128 MB in float64, with
about five temporaries of that size, so a ``[M, N, L, V]`` stack or a memmap is never copied
whole) and return float64 (or ``dtype``). JAX
inputs are computed in ``jax.numpy`` in float32 (float64 if the logits are float64 under x64),
work under ``jit``/``vmap``, and are blocked over rows with ``lax.map(batch_size=block_rows)``.

Undefined values are NaN: every per-token signal at a position outside the target mask; every
signal of a row whose logits contain NaN; ``sigma`` is 0 (not NaN) for a one-hot or uniform
next-token distribution. The per-sequence reductions give NaN for a sequence without target tokens
(NumPy warns with the count; JAX cannot warn under ``jit``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

__all__ = [
    "TokenSignals",
    "STATS",
    "token_signals",
    "lm_token_signals",
    "target_mask",
    "masked_mean",
    "sequence_nll",
    "token_accuracy",
    "Extraction",
    "greedy_extraction",
]

STATS = ("logp", "mu", "sigma", "correct")
_BLOCK_ELEMENTS = 1 << 24


class TokenSignals(NamedTuple):
    """Per-token signals ``[..., L − 1]``; fields not asked for are None."""

    logp: object  # log-probability of the true next token (nats)
    mu: object  # E_{v~p}[log p(v)] (= −entropy of the next-token distribution)
    sigma: object  # sqrt(E_{v~p}[(log p(v) − mu)²])
    correct: object  # 1.0 where argmax == true next token, 0.0 elsewhere (float, NaN if undefined)
    mask: object  # bool target mask: mask[..., :-1] & mask[..., 1:]


def _is_jax(*arrays) -> bool:
    return any(type(a).__module__.startswith("jax") for a in arrays)


def _check_stats(stats):
    stats = tuple(stats)
    bad = [s for s in stats if s not in STATS]
    if bad or not stats:
        raise ValueError(f"stats must be a non-empty subset of {STATS}, got {stats}")
    return stats


def _check_shapes(logits_shape, tokens_shape, mask_shape):
    if len(logits_shape) < 2:
        raise ValueError(f"logits must be [..., L, V], got shape {logits_shape}")
    if tuple(tokens_shape) != tuple(logits_shape[:-1]):
        raise ValueError(f"tokens {tuple(tokens_shape)} must be logits.shape[:-1] = {tuple(logits_shape[:-1])}")
    if mask_shape is not None and tuple(mask_shape) != tuple(tokens_shape):
        raise ValueError(f"mask {tuple(mask_shape)} must have the shape of tokens {tuple(tokens_shape)}")
    if logits_shape[-2] < 2:
        raise ValueError(f"sequences need L >= 2 positions to have a next token, got L = {logits_shape[-2]}")


def target_mask(mask):
    """bool ``[..., L − 1]``: ``mask[..., :-1] & mask[..., 1:]`` (positions whose next token counts)."""
    if _is_jax(mask):
        import jax.numpy as jnp

        mask = jnp.asarray(mask, bool)
    else:
        mask = np.asarray(mask, bool)
    return mask[..., :-1] & mask[..., 1:]


# ----------------------------------------------------------------------------- kernels


def _kernel(xp, z, target, tmask, stats):
    """z [..., T, V] float (already upcast), target [..., T] int, tmask [..., T] bool -> dict."""
    zmax = xp.max(z, axis=-1, keepdims=True)
    zmax = xp.where(xp.isfinite(zmax), zmax, xp.zeros_like(zmax))  # all −inf rows -> NaN below
    shifted = z - zmax
    lse = xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))
    logq = shifted - lse  # log-softmax [..., T, V]
    has_nan = xp.any(xp.isnan(z), axis=-1)
    nan = xp.asarray(np.nan, dtype=z.dtype)
    out = {}
    if "logp" in stats:
        lp = xp.take_along_axis(logq, target[..., None], axis=-1)[..., 0]
        out["logp"] = lp
    if "mu" in stats or "sigma" in stats:
        q = xp.exp(logq)
        live = q > 0  # p log p -> 0 where p underflows or the logit is −inf
        mu = xp.sum(xp.where(live, q * logq, xp.zeros_like(q)), axis=-1)
        if "mu" in stats:
            out["mu"] = mu
        if "sigma" in stats:
            # Zhang et al.'s code: sqrt(E[(log p)²] − μ²); the same variance computed centred.
            dev = xp.where(live, logq - mu[..., None], xp.zeros_like(q))
            out["sigma"] = xp.sqrt(xp.sum(q * dev * dev, axis=-1))
    if "correct" in stats:
        out["correct"] = (xp.argmax(z, axis=-1) == target).astype(z.dtype)
    bad = ~tmask | has_nan
    return {k: xp.where(bad, nan, v) for k, v in out.items()}


def _numpy_token_signals(logits, tokens, mask, stats, block_elements, dtype):
    logits = logits if isinstance(logits, np.ndarray) else np.asarray(logits)
    lead, (L, V) = logits.shape[:-2], logits.shape[-2:]
    R = int(np.prod(lead, dtype=np.int64)) if lead else 1
    z_all = logits.reshape(R, L, V)
    tok = np.asarray(tokens).reshape(R, L).astype(np.int64)
    m = np.ones((R, L), bool) if mask is None else np.asarray(mask, bool).reshape(R, L)
    if tok.size and (tok.min() < 0 or tok.max() >= V):
        raise ValueError(f"token ids must lie in [0, {V}) (the logits' last axis)")
    tm = m[:, :-1] & m[:, 1:]
    out = {s: np.empty((R, L - 1), dtype) for s in stats}
    step = max(1, int(block_elements) // max(1, (L - 1) * V))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for r0 in range(0, R, step):
            r1 = min(R, r0 + step)
            z = np.asarray(z_all[r0:r1, :-1], dtype=np.float64)
            res = _kernel(np, z, tok[r0:r1, 1:], tm[r0:r1], stats)
            for s in stats:
                out[s][r0:r1] = res[s]
    shape = tuple(lead) + (L - 1,)
    return TokenSignals(
        *(out[s].reshape(shape) if s in out else None for s in STATS[:4]), tm.reshape(shape)
    )


@functools.partial(jax.jit, static_argnames=("stats", "block_rows"))
def _jax_token_signals(logits, tokens, mask, *, stats, block_rows):
    import jax.numpy as jnp

    lead, (L, V) = logits.shape[:-2], logits.shape[-2:]
    R = math.prod(lead)
    ct = logits.dtype if logits.dtype == jnp.float64 else jnp.float32
    z = logits.reshape(R, L, V)
    tok = tokens.reshape(R, L).astype(jnp.int32)
    tm = (mask[..., :-1] & mask[..., 1:]).reshape(R, L - 1)

    def row(args):
        zr, tr, mr = args
        return _kernel(jnp, zr[:-1].astype(ct), tr[1:], mr, stats)

    res = jax.lax.map(row, (z, tok, tm), batch_size=min(block_rows, R) if R else None)
    shape = tuple(lead) + (L - 1,)
    return {k: v.reshape(shape) for k, v in res.items()}, tm.reshape(shape)


def token_signals(logits, tokens, mask=None, *, stats=STATS, block_elements=_BLOCK_ELEMENTS,
                  block_rows=None, dtype=np.float64) -> TokenSignals:
    """Per-token LM signals from logits (see the module docstring for the conventions).

    Args:
      logits: [..., L, V] float16/bfloat16/float32/float64, NumPy (memmaps welcome) or JAX; the
        logits at position t predict token t + 1.
      tokens: [..., L] integer ids in [0, V).
      mask: [..., L] bool, True on real tokens (default: all True).
      stats: the signals to compute, a subset of ``("logp", "mu", "sigma", "correct")``.
      block_elements: NumPy: logits upcast to float64 at a time (whole rows).
      block_rows: JAX: rows (sequences) vmapped at a time inside ``lax.map``; default: as many as
        fit ``block_elements`` logits.
      dtype: NumPy: dtype of the returned arrays (computation is float64 regardless).

    Returns:
      :class:`TokenSignals` with arrays ``[..., L − 1]`` (NumPy in, NumPy out; JAX in, JAX out).
      ``logp`` is log p_θ(x_{t+1} | x_{≤t}); ``mu`` = Σ_v p(v) log p(v); ``sigma`` =
      sqrt(Σ_v p(v) (log p(v) − mu)²) (Zhang et al. 2024, "Min-K%++": the mean and standard
      deviation of log p(z) for z ~ p(· | x_{≤t})); ``correct`` = [argmax_v z_v = x_{t+1}].

    Raises:
      ValueError: shapes disagree, L < 2, unknown stats, or (NumPy) token ids outside [0, V).
    """
    stats = _check_stats(stats)
    _check_shapes(np.shape(logits), np.shape(tokens), None if mask is None else np.shape(mask))
    if not _is_jax(logits, tokens, mask):
        return _numpy_token_signals(logits, tokens, mask, stats, block_elements, dtype)
    import jax.numpy as jnp

    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        logits = logits.astype(jnp.float32)
    tokens = jnp.asarray(tokens)
    mask = jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask, bool)
    L, V = logits.shape[-2:]
    if block_rows is None:
        block_rows = max(1, int(block_elements) // max(1, (L - 1) * V))
    res, tm = _jax_token_signals(logits, tokens, mask, stats=stats, block_rows=int(block_rows))
    return TokenSignals(*(res.get(s) for s in STATS), tm)


def lm_token_signals(apply_fn: Callable, params, tokens, mask=None, *, batch_size: int = 64,
                     stats=STATS, dtype=np.float32) -> TokenSignals:
    """:func:`token_signals` of a model on ``tokens`` [N, L], one batch of logits at a time.

    ``apply_fn(params, tokens[B, L]) -> logits[B, L, V]`` is any causal LM (a flax ``apply``
    wrapped as ``lambda p, x: model.apply({"params": p}, x)``, a lookup table, ...). Each batch of
    ``batch_size`` sequences is run through one jitted function (the model and the signals, in
    float32); the last batch is padded to the same shape (one compilation). Returns NumPy
    :class:`TokenSignals` ``[N, L − 1]`` in ``dtype``.
    """
    import jax.numpy as jnp

    stats = _check_stats(stats)
    tokens = np.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [N, L], got shape {tokens.shape}")
    mask = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != tokens.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of tokens {tokens.shape}")
    N, L = tokens.shape

    @jax.jit
    def run(p, t, m):
        logits = apply_fn(p, t)
        return token_signals(logits, t, m, stats=stats, block_rows=t.shape[0])[:4]

    B = max(1, min(int(batch_size), N)) if N else 1
    out = {s: np.empty((N, L - 1), dtype) for s in stats}
    for i0 in range(0, N, B):
        t, m = tokens[i0:i0 + B], mask[i0:i0 + B]
        n = t.shape[0]
        if n < B:
            t = np.concatenate([t, np.repeat(t[-1:], B - n, 0)])
            m = np.concatenate([m, np.repeat(m[-1:], B - n, 0)])
        res = jax.device_get(run(params, jnp.asarray(t), jnp.asarray(m)))
        for s, v in zip(STATS, res):
            if s in out:
                out[s][i0:i0 + n] = np.asarray(v)[:n]
    tm = mask[:, :-1] & mask[:, 1:]
    return TokenSignals(*(out.get(s) for s in STATS), tm)


# ----------------------------------------------------------------------------- reductions


def masked_mean(x, mask):
    """Mean of ``x`` [..., T] over the positions where ``mask`` [..., T] is True -> [...].

    NaN where the mask is empty (NumPy: with a RuntimeWarning counting them). A NaN inside the mask
    gives NaN; values outside the mask are ignored (NaN included).
    """
    if _is_jax(x, mask):
        import jax.numpy as jnp

        x, mask = jnp.asarray(x), jnp.asarray(mask, bool)
        n = jnp.sum(mask, axis=-1)
        s = jnp.sum(jnp.where(mask, x, jnp.zeros((), x.dtype)), axis=-1)
        return jnp.where(n > 0, s / jnp.maximum(n, 1).astype(s.dtype), jnp.nan)
    x = np.asarray(x, np.float64)
    mask = np.broadcast_to(np.asarray(mask, bool), x.shape)
    n = mask.sum(-1)
    s = np.where(mask, x, 0.0).sum(-1)
    empty = int(np.sum(n == 0))
    if empty:
        warnings.warn(f"{empty} of {n.size} sequences have no target token; their mean is NaN",
                      RuntimeWarning, stacklevel=3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def sequence_nll(logp, mask):
    """Mean negative log-likelihood per sequence (nats per token): −mean_t logp over the target
    mask, ``[..., T] -> [...]``; the log-perplexity of Carlini et al. (2021) and the loss of
    Yeom et al. (2018) for sequences. NaN for a sequence without target tokens."""
    return -masked_mean(logp, mask)


def token_accuracy(correct, mask):
    """Exact-match token accuracy per sequence (Tirumala et al. 2022, "Memorization without
    overfitting"): the fraction of target tokens whose argmax prediction is the true next
    token, ``[..., T] -> [...]``. NaN for a sequence without target tokens."""
    return masked_mean(correct, mask)


# ----------------------------------------------------------------------------- extraction


class Extraction(NamedTuple):
    extracted: object  # bool [B]: greedy decoding reproduced all s suffix tokens
    matched: object  # int32 [B]: length of the longest matched prefix of the true suffix (0..s)
    generated: object  # int32 [B, s]: the greedy continuation
    valid: object  # bool [B]: the sequence has k + s real tokens (mask); others are not scored


def greedy_extraction(apply_fn: Callable, params, tokens, prefix_len: int, suffix_len: int,
                      mask=None) -> Extraction:
    """k-extractability by greedy decoding (Carlini et al. 2022, "Quantifying memorization across
    neural language models", the definition of k-extractable: a string s is extractable with k tokens of context if the
    model, prompted with the k-token prefix p, greedily generates exactly s, where [p ‖ s] is a
    training sequence).

    The prefix is ``tokens[:, :k]`` (BOS included) and the true suffix ``tokens[:, k:k+s]``. The
    decoder fills a ``[B, k + s]`` buffer (positions ≥ k start as 0, so the true suffix is never
    seen) and runs ``lax.scan`` over the s steps: step j calls ``apply_fn(params, buffer)``, takes
    the argmax of the logits at position k + j − 1 (ties: lowest id) and writes it at k + j. It
    recomputes the whole buffer each step (no KV cache): s forward passes of length k + s, for
    any causal ``apply_fn(params, tokens[B, k + s]) -> logits[B, k + s, V]``. Fixed shapes;
    jit-able with ``apply_fn``, ``prefix_len`` and ``suffix_len`` static.

    Returns :class:`Extraction` (JAX arrays): ``extracted`` = all s tokens match, ``matched`` =
    the number of leading suffix tokens reproduced before the first mismatch, ``generated``, and
    ``valid`` = ``mask[:, :k+s]`` all True (rows with fewer real tokens have padding in the prefix
    or the suffix and should be left out of rates).

    Raises:
      ValueError: prefix_len < 1, suffix_len < 1, or k + s > L.
    """
    import jax.numpy as jnp

    k, s = int(prefix_len), int(suffix_len)
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [B, L], got shape {tokens.shape}")
    if k < 1 or s < 1 or k + s > tokens.shape[1]:
        raise ValueError(f"need prefix_len >= 1, suffix_len >= 1 and prefix_len + suffix_len <= L = "
                         f"{tokens.shape[1]}, got {k} and {s}")
    return _greedy(apply_fn, params, tokens, jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask, bool), k, s)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _greedy(apply_fn, params, tokens, mask, k, s):
    import jax.numpy as jnp

    tokens = tokens.astype(jnp.int32)
    B = tokens.shape[0]
    buf0 = jnp.concatenate([tokens[:, :k], jnp.zeros((B, s), jnp.int32)], axis=1)

    def step(buf, j):
        logits = apply_fn(params, buf)  # [B, k + s, V]
        last = jax.lax.dynamic_index_in_dim(logits, k + j - 1, axis=1, keepdims=False)
        nxt = jnp.argmax(last, axis=-1).astype(jnp.int32)
        buf = jax.lax.dynamic_update_index_in_dim(buf, nxt, k + j, axis=1)
        return buf, nxt

    _, gen = jax.lax.scan(step, buf0, jnp.arange(s))
    gen = gen.T  # [B, s]
    hit = gen == tokens[:, k:k + s]
    matched = jnp.sum(jnp.cumprod(hit.astype(jnp.int32), axis=1), axis=1).astype(jnp.int32)
    valid = jnp.all(mask[:, :k + s], axis=1)
    return Extraction(matched == s, matched, gen, valid)
