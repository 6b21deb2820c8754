"""The language-model path of the stacked trainer: :data:`CAUSAL_LM`, the causal-LM implementation
of the trainer's task interface (:mod:`jaxmem.train.task`, chosen once from the model family's
``lm`` capability by :func:`jaxmem.train.task.task_for`): the next-token loss of a batch of
sequences, and what a run stores of each trained chunk instead of logits (a ``[K, N, L, V]``
logit array never exists).

Batches are rows of a text dataset (:mod:`jaxmem.data.text_build`): tokens ``x`` [B, L] and
lengths ``y`` [B] (the real tokens are ``arange(L) < y``). Everything else (chunks, vmap,
``fold_in`` streams, data orders, resume, sharding, DP-SGD) is the trainer's, unchanged.

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
import optax

from jaxmem.signals.lm import sequence_nll, target_mask, token_signals

__all__ = ["next_token_loss", "chunk_signals", "CHUNK_ARRAYS", "CausalLM", "CAUSAL_LM",
           "eval_batch_size"]

#: The arrays a chunk of a language-model run stores (each with the model axis first).
CHUNK_ARRAYS = ("token_logp", "token_mu", "token_sigma", "token_correct", "nll", "test_token_logp",
                "test_nll")
_STATS = ("logp", "mu", "sigma", "correct")


def next_token_loss(logits, tokens, lengths, label_smoothing: float = 0.0):
    """Mean cross-entropy of the next token over the target tokens of a batch (Hugging Face's
    ``labels=input_ids`` loss): logits [B, L, V] at position t predict ``tokens[:, t + 1]``,
    counted where both positions are real (t + 1 < length). With ``label_smoothing`` the target is
    ``optax.smooth_labels`` of the one-hot token. A batch without target tokens has loss 0."""
    L = tokens.shape[1]
    target = target_mask(jnp.arange(L)[None] < lengths[:, None])
    z, y = logits[:, :-1].astype(jnp.float32), tokens[:, 1:]
    if label_smoothing:
        onehot = optax.smooth_labels(jax.nn.one_hot(y, z.shape[-1]), label_smoothing)
        ce = optax.softmax_cross_entropy(z, onehot)
    else:
        ce = optax.softmax_cross_entropy_with_integer_labels(z, y)
    w = target.astype(jnp.float32)
    return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


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


class CausalLM:
    """The causal-LM task (:mod:`jaxmem.train.task`): batches of token sequences ``x`` [B, L] with
    their lengths ``y`` [B]; :func:`next_token_loss`; a trained chunk stores :data:`CHUNK_ARRAYS`
    (:func:`chunk_signals`)."""

    name = "causal_lm"
    output_arrays = CHUNK_ARRAYS

    @staticmethod
    def loss(logits, x, y, label_smoothing: float, num_classes: int):
        """:func:`next_token_loss` of ``logits`` [B, L, V] on the sequences ``x`` [B, L] of
        lengths ``y`` [B] (``num_classes``, the vocabulary, is the logits' last axis)."""
        del num_classes
        return next_token_loss(logits, x, y, label_smoothing)

    @staticmethod
    def chunk_outputs(trainer, state, ds) -> dict:
        """:func:`chunk_signals` of the chunk on the run's training and test sequences."""
        return chunk_signals(trainer, state, ds.x_train, ds.y_train, ds.x_test, ds.y_test)


#: The causal-LM task (one stateless instance).
CAUSAL_LM = CausalLM()
