"""The language-model path of the stacked trainer, selected by the model family's ``lm`` flag
(:data:`jaxmem.models.registry.MODELS`): the next-token loss of a batch of sequences.

Batches are rows of a text dataset (:mod:`jaxmem.data.text_build`): tokens ``x`` [B, L] and
lengths ``y`` [B] (the real tokens are ``arange(L) < y``). Everything else (chunks, vmap,
``fold_in`` streams, data orders, resume, sharding, DP-SGD) is the trainer's, unchanged. What a run
stores of each trained chunk instead of logits (per-token signals: a ``[K, N, L, V]`` logit array
never exists) is computed above the trainer, by :func:`jaxmem.signals.lm_models.chunk_signals`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["next_token_loss"]


def next_token_loss(logits, tokens, lengths, label_smoothing: float = 0.0):
    """Mean cross-entropy of the next token over the target tokens of a batch (Hugging Face's
    ``labels=input_ids`` loss): logits [B, L, V] at position t predict ``tokens[:, t + 1]``,
    counted where both positions are real (t + 1 < length). With ``label_smoothing`` the target is
    ``optax.smooth_labels`` of the one-hot token. A batch without target tokens has loss 0."""
    L = tokens.shape[1]
    # position t counts when its next token t + 1 is real (jaxmem.signals.lm.target_mask of the
    # length mask; written from the lengths here, so that training imports no signal code)
    target = jnp.arange(1, L)[None] < lengths[:, None]
    z, y = logits[:, :-1].astype(jnp.float32), tokens[:, 1:]
    if label_smoothing:
        onehot = optax.smooth_labels(jax.nn.one_hot(y, z.shape[-1]), label_smoothing)
        ce = optax.softmax_cross_entropy(z, onehot)
    else:
        ce = optax.softmax_cross_entropy_with_integer_labels(z, y)
    w = target.astype(jnp.float32)
    return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
