"""A small GPT-style causal language model (``model.name = "causal_lm"``): pre-LN transformer
blocks with causal self-attention over int tokens, learned position embeddings, an untied output
head over the vocabulary.

Its ``num_classes`` is the vocabulary size V (a next-token model is a classifier over the
vocabulary; a text dataset's ``num_classes``, :mod:`jaxmem.data.text_build`), and it maps tokens
``[B, L]`` to next-token logits ``[B, L, V]`` (float32): the logits at position t predict token
t + 1 and see tokens 0..t only. The position embeddings have as many rows as the sequences it is
initialized with (the dataset's ``data.max_len``); it applies to any length up to that.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmem.models.common import Dtype, float32_logits
from jaxmem.models.transformer import _TransformerBlock


class CausalLM(nn.Module):
    """Causal transformer LM: tokens [B, L] int -> logits [B, L, num_classes] float32."""

    num_classes: int          # the vocabulary size V
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        tokens = jnp.asarray(tokens, jnp.int32)
        seq_len = tokens.shape[1]
        h = nn.Embed(self.num_classes, self.d_model, dtype=self.dtype, param_dtype=jnp.float32)(tokens)
        if self.is_initializing():   # as many positions as the sequences it is initialized with
            pos = self.param("pos_embedding", nn.initializers.normal(0.02), (seq_len, self.d_model),
                             jnp.float32)
        else:
            pos = self.get_variable("params", "pos_embedding")
            if seq_len > pos.shape[0]:
                raise ValueError(f"sequence length {seq_len} > the {pos.shape[0]} positions the model "
                                 f"was initialized with")
        h = h + pos[:seq_len].astype(h.dtype)
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.num_layers):
            h = _TransformerBlock(self.num_heads, self.mlp_ratio, self.dropout, dtype=self.dtype)(h, mask, train)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(h)
        return float32_logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))
