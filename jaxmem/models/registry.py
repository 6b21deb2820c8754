"""The model registry: which families exist, which ``model.*`` config fields each takes, and what
each can do. Light on purpose (no flax, no jax): config validation reads it, and the heavy module
class is imported only when a model is built (:func:`jaxmem.models.get_model`).

Adding a model family = one file under ``jaxmem/models/`` defining a flax module
``Module(num_classes, <fields>..., dtype=None)`` with ``__call__(x, train=False) -> logits``,
plus one line in :data:`MODELS` below.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

__all__ = ["ModelSpec", "MODELS", "MODEL_NAMES", "LORA_TARGETS", "spec", "module_class"]

#: The projections of a ``pretrained`` family that LoRA may adapt (``model.lora_targets``).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


class ModelSpec(NamedTuple):
    """One model family.

    ``module``: ``"jaxmem.models.FILE:Class"``, imported lazily. ``fields``: the ``model.*``
    config fields it takes (passed to the class as keyword arguments; others are ignored).
    Capability flags: ``batch_norm`` — ``"always"``, ``"optional"`` (``model.batch_norm``
    switches it) or ``"never"``; ``dropout`` — has dropout layers (``model.dropout``);
    ``tokens`` — takes int token sequences, not float inputs; ``whiten`` — its stem can be
    whitened (``model.whiten``, ``train.whiten_bias_epochs``); ``convolutional`` — convolution
    gradients dominate (the trainer steps from the host on CPU, jax#12868); ``lm`` — a causal
    language model: it takes token sequences ``[N, L]`` of a text source (their lengths as ``y``)
    and returns next-token logits ``[N, L, V]``; the trainer takes its next-token loss and a run
    stores per-token signals instead of logits (:mod:`jaxmem.train.lm`); ``pretrained`` — its
    architecture can come from ``model.checkpoint`` (:mod:`jaxmem.models.pretrained`) and it takes
    LoRA adapters (``model.lora_*``) over a frozen base (:mod:`jaxmem.train.lora`).
    DP-SGD needs per-example gradients, so a family is DP-compatible unless it uses BatchNorm.
    """

    module: str
    fields: tuple
    batch_norm: str = "never"
    dropout: bool = False
    tokens: bool = False
    whiten: bool = False
    convolutional: bool = False
    lm: bool = False
    pretrained: bool = False

    def uses_batch_norm(self, model_cfg) -> bool:
        """Whether a model built from ``model_cfg`` (a ``ModelConfig``) has BatchNorm layers."""
        return self.batch_norm == "always" or (self.batch_norm == "optional" and
                                               bool(model_cfg.batch_norm))


_BN = ("bn_momentum", "bn_eps")

MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec("jaxmem.models.mlp:MLP", ("hidden", "dropout"), dropout=True),
    "cnn": ModelSpec("jaxmem.models.cnn:CNN", ("channels", "batch_norm", "dropout") + _BN,
                     batch_norm="optional", dropout=True, convolutional=True),
    "resnet_airbench": ModelSpec("jaxmem.models.airbench:AirbenchNet", _BN, batch_norm="always",
                                 whiten=True, convolutional=True),
    "wrn": ModelSpec("jaxmem.models.wrn:WideResNet", ("depth", "width", "dropout") + _BN,
                     batch_norm="always", dropout=True, convolutional=True),
    "transformer": ModelSpec("jaxmem.models.transformer:Transformer",
                             ("d_model", "num_layers", "num_heads", "dropout"), dropout=True,
                             tokens=True),
    "causal_lm": ModelSpec("jaxmem.models.causal_lm:CausalLM",
                           ("d_model", "num_layers", "num_heads", "dropout"), dropout=True,
                           tokens=True, lm=True),
    "llama": ModelSpec("jaxmem.models.llama:Llama",
                       ("d_model", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "lora_rank",
                        "lora_alpha", "lora_targets"), tokens=True, lm=True, pretrained=True),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    return MODELS[name]


def module_class(name: str):
    """The flax module class of family ``name`` (imports its file)."""
    mod, cls = spec(name).module.split(":")
    return getattr(importlib.import_module(mod), cls)
