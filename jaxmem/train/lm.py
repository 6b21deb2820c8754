"""The language-model path of the stacked trainer: :data:`CAUSAL_LM`, the causal-LM implementation
of the trainer's task interface (:mod:`jaxmem.train.task`, chosen once from the model family's
``lm`` capability by :func:`jaxmem.train.task.task_for`): the next-token loss of a batch of
sequences. What a run stores of each trained chunk instead of logits (per-token signals; a
``[K, N, L, V]`` logit array never exists) is the run's business:
:func:`jaxmem.runs.lm_signals.chunk_signals`.

Batches are rows of a text dataset (:mod:`jaxmem.data.text_build`): tokens ``x`` [B, L] and
lengths ``y`` [B] (the real tokens are ``arange(L) < y``). Everything else (chunks, vmap,
``fold_in`` streams, data orders, resume, sharding, DP-SGD) is the trainer's, unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["next_token_loss", "CausalLM", "CAUSAL_LM"]


def next_token_loss(logits, tokens, lengths, label_smoothing: float = 0.0):
    """Mean cross-entropy of the next token over the target tokens of a batch (Hugging Face's
    ``labels=input_ids`` loss): logits [B, L, V] at position t predict ``tokens[:, t + 1]``,
    counted where both positions are real (t + 1 < length). With ``label_smoothing`` the target is
    ``optax.smooth_labels`` of the one-hot token. A batch without target tokens has loss 0."""
    L = tokens.shape[1]
    real = jnp.arange(L)[None] < lengths[:, None]
    target = real[:, :-1] & real[:, 1:]   # (jaxmem.signals.lm.target_mask: both positions real)
    z, y = logits[:, :-1].astype(jnp.float32), tokens[:, 1:]
    if label_smoothing:
        onehot = optax.smooth_labels(jax.nn.one_hot(y, z.shape[-1]), label_smoothing)
        ce = optax.softmax_cross_entropy(z, onehot)
    else:
        ce = optax.softmax_cross_entropy_with_integer_labels(z, y)
    w = target.astype(jnp.float32)
    return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


class CausalLM:
    """The causal-LM task (:mod:`jaxmem.train.task`): batches of token sequences ``x`` [B, L] with
    their lengths ``y`` [B]; :func:`next_token_loss`."""

    name = "causal_lm"

    @staticmethod
    def loss(logits, x, y, label_smoothing: float, num_classes: int):
        """:func:`next_token_loss` of ``logits`` [B, L, V] on the sequences ``x`` [B, L] of
        lengths ``y`` [B] (``num_classes``, the vocabulary, is the logits' last axis)."""
        del num_classes
        return next_token_loss(logits, x, y, label_smoothing)


#: The causal-LM task (one stateless instance).
CAUSAL_LM = CausalLM()
