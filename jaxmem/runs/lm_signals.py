"""A trained chunk of a language-model run, as the run stores it: per-token signals instead of
logits (the causal-LM run task's outputs, :data:`jaxmem.runs.lm.LANGUAGE_MODEL_RUN`; training itself
is :mod:`jaxmem.train.lm`).

:func:`chunk_signals` computes, for every model of a chunk, with the one LM signal code
(:func:`jaxmem.signals.lm.token_signals`, :func:`jaxmem.signals.lm.greedy_extraction`):

* ``token_logp``, ``token_mu``, ``token_sigma`` [K, N, L − 1] (``signals.dtype``; NaN outside the
  target mask) and ``token_correct`` [K, N, L − 1] bool, on the training sequences;
* ``nll`` [K, N] float32: mean token NLL of each sequence (from the float32 log-probabilities);
* ``test_token_logp`` [K, T, L − 1] and ``test_nll`` [K, T] on the held-out sequences.

Greedy extraction needs no decoding here: prompted with a true prefix, greedy decoding reproduces
the next tokens exactly as long as each next-token argmax *given the true preceding tokens* is
right (while it matches, its context is the true sequence), so the longest matched suffix from
any prefix length is the run of ones in ``token_correct`` that starts there
(:func:`jaxmem.runs.score_lm.extraction`; checked against decoding with
:func:`jaxmem.signals.lm.greedy_extraction` in the tests). It costs nothing, for every k.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.models import make_model
from jaxmem.runs.lm import CHUNK_ARRAYS
from jaxmem.signals.lm import sequence_nll, token_signals
from jaxmem.train.lora import frozen_base

__all__ = ["chunk_signals", "eval_batch_size", "CHUNK_ARRAYS", "base_nll"]

_STATS = ("logp", "mu", "sigma", "correct")


def eval_batch_size(cfg, n: int, L: int, V: int) -> int:
    """Sequences per batch: ``signals.batch_size`` and the n sequences at most, and at most 2^26
    logits (256 MB)."""
    return int(max(1, min(cfg.signals.batch_size, n, (1 << 26) // max(1, L * V))))


def _padded(a, B):
    n = a.shape[0]
    nb = max(1, -(-n // B))
    pad = nb * B - n
    if pad:
        a = np.concatenate([a, np.repeat(a[:1], pad, 0)]) if n else np.zeros((pad,) + a.shape[1:], a.dtype)
    return a.reshape((nb, B) + a.shape[1:])


def _fns(trainer):
    """The jitted per-chunk functions, built once per trainer."""
    key = "lm_signal_fns"
    if key in trainer._train_fns:
        return trainer._train_fns[key]

    model = trainer.model
    out = jnp.float16 if trainer.cfg.signals.dtype == "float16" else jnp.float32

    def apply(params, tokens):
        return model.apply(trainer.variables(params), tokens, train=False)

    def signals(params, xb, lb, stats):
        def batch(args):
            x, n = args
            mask = jnp.arange(x.shape[1])[None] < n[:, None]
            ts = token_signals(apply(params, x), x, mask, stats=stats, block_rows=x.shape[0])
            res = {s: getattr(ts, s) for s in stats}
            nll = sequence_nll(res["logp"], ts.mask)
            res = {s: (v.astype(out) if s != "correct" else v == 1) for s, v in res.items()}
            return res, nll
        return jax.lax.map(batch, (xb, lb))

    def train_sig(state_params, xb, lb):
        return trainer._map_models(lambda p: signals(p, xb, lb, _STATS), state_params)

    def test_sig(state_params, xb, lb):
        return trainer._map_models(lambda p: signals(p, xb, lb, ("logp",)), state_params)

    fns = trainer._train_fns[key] = {"train": trainer._jit(train_sig), "test": trainer._jit(test_sig)}
    return fns


def _unbatch(a, n):
    """[K, nb, B, ...] -> [K, n, ...] on the host."""
    a = np.asarray(a)
    return a.reshape((a.shape[0], -1) + a.shape[3:])[:, :n]


def chunk_signals(trainer, state, x_train, y_train, x_test, y_test) -> dict:
    """The arrays of :data:`CHUNK_ARRAYS` for a trained chunk (module docstring), as numpy arrays
    with the chunk's model axis first. ``x_*`` int32 token sequences [N, L], ``y_*`` their
    lengths [N] (host arrays)."""
    cfg = trainer.cfg
    fns = _fns(trainer)
    x_train, y_train = np.asarray(x_train, np.int32), np.asarray(y_train, np.int32)
    x_test, y_test = np.asarray(x_test, np.int32), np.asarray(y_test, np.int32)
    (N, L), T = x_train.shape, x_test.shape[0]
    params = state.params
    B = eval_batch_size(cfg, N, L, trainer.num_classes)
    res, nll = fns["train"](params, _padded(x_train, B), _padded(y_train, B))
    out = {f"token_{s}": _unbatch(v, N) for s, v in res.items()}
    out["nll"] = _unbatch(nll, N).astype(np.float32)
    B = eval_batch_size(cfg, T, L, trainer.num_classes)
    res, nll = fns["test"](params, _padded(x_test, B), _padded(y_test, B))
    out["test_token_logp"] = _unbatch(res["logp"], T)
    out["test_nll"] = _unbatch(nll, T).astype(np.float32)
    return out


def base_nll(cfg, vocab_size: int, tokens, lengths, *, batch_size: int = 16) -> np.ndarray:
    """Mean token NLL (nats) of each sequence under the frozen base alone (the adapters' starting
    point, B = 0): the pretrained model as an external reference model (Carlini et al. 2021).

    Args:
      cfg: a LoRA run's config (its base: ``model.checkpoint``, or the random base of its seed).
      vocab_size: the run's vocabulary (its dataset's ``num_classes``).
      tokens: int [N, L] sequences of the run's data; ``lengths`` [N] their real tokens.

    Returns float64 [N] (NaN for a sequence without target tokens, as
    :func:`jaxmem.signals.lm.sequence_nll`).
    """
    tokens, lengths = np.asarray(tokens, np.int32), np.asarray(lengths, np.int32)
    model = make_model(cfg, int(vocab_size))
    sample = jnp.zeros((1, tokens.shape[1]), jnp.int32)
    frozen = frozen_base(cfg, model, sample)
    adapters = jax.eval_shape(lambda k: model.init(k, sample), jax.random.key(0))["params"]
    zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), adapters)

    @jax.jit
    def nll(frozen, x, n):
        mask = jnp.arange(x.shape[1])[None] < n[:, None]
        ts = token_signals(model.apply({"params": zero, "frozen": frozen}, x), x, mask, stats=("logp",),
                           block_rows=x.shape[0])
        return sequence_nll(ts.logp, ts.mask)

    out = []
    for s in range(0, len(tokens), batch_size):
        x, n = tokens[s:s + batch_size], lengths[s:s + batch_size]
        pad = batch_size - len(x)
        if pad:
            x, n = np.concatenate([x, np.repeat(x[:1], pad, 0)]), np.concatenate([n, np.repeat(n[:1], pad)])
        out.append(np.asarray(nll(frozen, jnp.asarray(x), jnp.asarray(n)), np.float64)[: batch_size - pad])
    return np.concatenate(out) if out else np.zeros(0)
