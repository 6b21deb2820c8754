"""The small convolutional family (``model.name = "cnn"``), 1-D or 2-D by input rank."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmem.models.common import BN_EPS, BN_MOMENTUM, Dtype, as_input, batch_norm_layer, float32_logits


class CNN(nn.Module):
    """Small CNN: [Conv(k, SAME)-(BN)-ReLU-MaxPool(2, SAME)] per channel count, Dense-ReLU-Dropout, Dense.

    Input layout decides the convolution rank: ``[B, H, W, C]`` images use 2-D convs,
    ``[B, L]`` signals are read as ``[B, L, 1]`` and ``[B, L, C]`` as-is with 1-D convs.
    SAME max-pooling keeps odd sizes (7 -> 4) and tiny inputs (8x8 digits -> 2x2) valid.
    """

    num_classes: int
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128
    kernel_size: int = 3
    batch_norm: bool = False
    dropout: float = 0.0
    bn_momentum: float = BN_MOMENTUM
    bn_eps: float = BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = as_input(x, self.dtype)
        if h.ndim == 2:
            h = h[..., None]
        nd = h.ndim - 2
        for c in self.channels:
            h = nn.Conv(c, (self.kernel_size,) * nd, padding="SAME", use_bias=not self.batch_norm,
                        dtype=self.dtype, param_dtype=jnp.float32)(h)
            if self.batch_norm:
                h = batch_norm_layer(train, self.dtype, momentum=self.bn_momentum, epsilon=self.bn_eps)(h)
            h = nn.max_pool(nn.relu(h), (2,) * nd, strides=(2,) * nd, padding="SAME")
        h = h.reshape((h.shape[0], -1))
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return float32_logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))
