"""The multilayer perceptron family (``model.name = "mlp"``)."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxmem.models.common import Dtype, as_input, float32_logits


class MLP(nn.Module):
    """Multilayer perceptron on the flattened input: [Dense-ReLU-Dropout] * len(hidden), Dense."""

    num_classes: int
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.0
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = as_input(x, self.dtype).reshape((x.shape[0], -1))
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)(h))
            h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return float32_logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))
