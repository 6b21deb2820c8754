"""Building models: from a name and keyword fields, or from a run's config; parameter and FLOP
counts."""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.data.pretrained import read_llama_config, resolve_checkpoint
from jaxmem.models.registry import MODELS, module_class, spec

__all__ = ["get_model", "make_model", "count_params", "flops_per_example"]


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Model ``name`` (one of MODEL_NAMES) with ``num_classes`` outputs; kwargs are module fields.

    List-valued kwargs (e.g. from TOML) are turned into tuples so the module stays hashable.
    """
    cls = module_class(name)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return cls(num_classes=num_classes, **kwargs)


def make_model(cfg, num_classes: int) -> nn.Module:
    """The model of a run's config: ``cfg.model``'s fields that its family takes
    (:data:`jaxmem.models.registry.MODELS`), in ``cfg.train.compute_dtype``."""
    kwargs = {f: getattr(cfg.model, f) for f in spec(cfg.model.name).fields}
    if spec(cfg.model.name).pretrained and getattr(cfg.model, "checkpoint", ""):   # the architecture is the file's
        arch = read_llama_config(resolve_checkpoint(cfg.model.checkpoint))
        if arch["vocab_size"] != num_classes:
            raise ValueError(f"model.checkpoint: its vocabulary has {arch['vocab_size']} tokens, the "
                             f"data {num_classes} (tokenize with data.tokenizer = \"pretrained\")")
        kwargs.update({k: v for k, v in arch.items() if k != "vocab_size"})
    if cfg.train.compute_dtype == "bfloat16":
        kwargs["dtype"] = jnp.bfloat16
    return get_model(cfg.model.name, num_classes, **kwargs)


def count_params(variables) -> int:
    """Number of trainable scalars: leaves of ``variables['params']`` (or of ``variables`` itself
    when it has no 'params' key). BatchNorm running statistics are not counted. Pass one model's
    variables (a K-stacked tree counts K times)."""
    tree = variables["params"] if isinstance(variables, Mapping) and "params" in variables else variables
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def flops_per_example(model: nn.Module, input_shape, input_dtype=None, batch_size: int = 8) -> float:
    """Forward (eval-mode) FLOPs per example from XLA's cost analysis of the lowered, un-optimised
    HLO of ``model.apply`` on a ``[batch_size, *input_shape]`` batch, divided by ``batch_size``.

    XLA counts a multiply-add as 2 FLOPs and includes elementwise ops (activations, BN,
    softmax), so this is slightly above the 2 * MACs convention. Training costs about
    3x this per example. ``input_dtype`` defaults to int32 for the transformer, else float32.
    """
    if input_dtype is None:
        tokens = any(isinstance(model, module_class(n)) for n, m in MODELS.items() if m.tokens)
        input_dtype = jnp.int32 if tokens else jnp.float32
    x = jax.ShapeDtypeStruct((batch_size, *tuple(input_shape)), input_dtype)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape, x.dtype)), jax.random.key(0))
    lowered = jax.jit(lambda v, xb: model.apply(v, xb, train=False)).lower(variables, x)
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"]) / batch_size
