"""A small pre-LN transformer classifier on int tokens (``model.name = "transformer"``); its block
is shared with the causal language model (:mod:`jaxmem.models.causal_lm`)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmem.models.common import Dtype, float32_logits


class _TransformerBlock(nn.Module):
    num_heads: int
    mlp_ratio: int
    dropout: float
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, h, mask, train: bool):
        d = h.shape[-1]
        ln = lambda: nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)
        a = nn.MultiHeadDotProductAttention(self.num_heads, dtype=self.dtype,
                                            param_dtype=jnp.float32)(ln()(h), mask=mask)
        h = h + nn.Dropout(self.dropout)(a, deterministic=not train)
        m = nn.Dense(self.mlp_ratio * d, dtype=self.dtype, param_dtype=jnp.float32)(ln()(h))
        m = nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32)(nn.gelu(m))
        return h + nn.Dropout(self.dropout)(m, deterministic=not train)


class Transformer(nn.Module):
    """Small pre-LN transformer on int tokens [B, L] (L <= max_len), learned position embeddings.

    Classification logits [B, num_classes] from mean-pooled final features; ``causal=True``
    masks attention causally.
    """

    num_classes: int
    vocab_size: int = 256
    max_len: int = 128
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    causal: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        seq_len = tokens.shape[1]
        if seq_len > self.max_len:
            raise ValueError(f"sequence length {seq_len} > max_len {self.max_len}")
        tokens = jnp.asarray(tokens, jnp.int32)
        h = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, param_dtype=jnp.float32)(tokens)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.d_model),
                         jnp.float32)
        h = h + pos[:seq_len].astype(h.dtype)
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        mask = nn.make_causal_mask(tokens) if self.causal else None
        for _ in range(self.num_layers):
            h = _TransformerBlock(self.num_heads, self.mlp_ratio, self.dropout, dtype=self.dtype)(
                h, mask, train)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(h)
        h = jnp.mean(h, axis=1)
        return float32_logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))
