"""Wide-ResNets (``model.name = "wrn"``), the LiRA paper's family."""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxmem.models.common import BN_EPS, BN_MOMENTUM, Dtype, as_input, batch_norm_layer, float32_logits

_WRN_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _WideBasic(nn.Module):
    width: int
    stride: int
    dropout: float
    bn: Callable
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda k, s: nn.Conv(self.width, (k, k), strides=(s, s), padding="SAME",
                                    use_bias=False, kernel_init=_WRN_CONV_INIT,
                                    dtype=self.dtype, param_dtype=jnp.float32)
        o = nn.relu(self.bn(train, self.dtype)(x))
        if x.shape[-1] == self.width and self.stride == 1:
            shortcut = x
        else:
            shortcut = conv(1, self.stride)(o)
        h = conv(3, self.stride)(o)
        h = nn.relu(self.bn(train, self.dtype)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return conv(3, 1)(h) + shortcut


class WideResNet(nn.Module):
    """Wide-ResNet WRN-depth-width (Zagoruyko & Komodakis 2016) with pre-activation blocks.

    Conv3x3(16), three groups of n = (depth - 4) / 6 blocks
    [BN-ReLU-Conv3x3(stride)-BN-ReLU-Dropout-Conv3x3] + shortcut (identity, or a 1x1 conv on
    the activated input when the shape changes), widths (16w, 32w, 64w), strides (1, 2, 2),
    then BN-ReLU, global average pool, Dense. WRN-28-2 has 1,467,610 parameters.
    ``depth`` and ``width`` have no defaults here: the ``wrn`` config's are the only ones.
    """

    num_classes: int
    depth: int          # (defaults: the wrn config, jaxmem.models.registry.WRNConfig)
    width: int
    dropout: float = 0.0
    bn_momentum: float = BN_MOMENTUM
    bn_eps: float = BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {self.depth}")
        n = (self.depth - 4) // 6
        bn = functools.partial(batch_norm_layer, momentum=self.bn_momentum, epsilon=self.bn_eps)
        h = as_input(x, self.dtype)
        h = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, kernel_init=_WRN_CONV_INIT,
                    dtype=self.dtype, param_dtype=jnp.float32)(h)
        for group, stride in enumerate((1, 2, 2)):
            for b in range(n):
                h = _WideBasic(16 * 2**group * self.width, stride if b == 0 else 1,
                               self.dropout, bn, dtype=self.dtype)(h, train)
        h = nn.relu(bn(train, self.dtype)(h))
        h = jnp.mean(h, axis=(1, 2))
        return float32_logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))
