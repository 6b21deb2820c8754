"""Pieces shared by the model families: BatchNorm with the trainer's conventions, input casting,
float32 logits, PyTorch's default initializer.

Every module maps ``__call__(x, train: bool = False) -> logits`` with float32 logits
``[B, num_classes]`` (the causal language model returns ``[B, L, num_classes]``, its
vocabulary), whatever
the compute ``dtype`` (parameters are always float32). Conventions the trainer relies on:

* BatchNorm: ``nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)``,
  statistics in the ``'batch_stats'`` collection (pass ``mutable=['batch_stats']`` in train mode).
* Dropout: ``nn.Dropout(rate)(h, deterministic=not train)``, rng stream ``'dropout'``.
* Variables are plain dicts, so K models stack with ``jax.vmap(model.init)`` over K keys and
  ``jax.vmap(model.apply)``; BatchNorm statistics are then per model (nothing is shared).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

BN_MOMENTUM = 0.9


BN_EPS = 1e-5


# PyTorch's default conv/linear init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def batch_norm_layer(train: bool, dtype: Dtype, name: str | None = None, *, momentum: float = BN_MOMENTUM,
                epsilon: float = BN_EPS, **kw) -> nn.BatchNorm:
    """Flax BatchNorm; ``momentum`` is the running statistics' decay (PyTorch's ``1 - momentum``)."""
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        dtype=dtype, param_dtype=jnp.float32, name=name, **kw)


def as_input(x, dtype: Dtype | None) -> jax.Array:
    return jnp.asarray(x, dtype if dtype is not None else jnp.float32)


def float32_logits(h: jax.Array) -> jax.Array:
    return h.astype(jnp.float32)
