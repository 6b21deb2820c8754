"""The model registry: which families exist, each family's config (its ``model.*`` fields and
their defaults, declared once here), what builds it and what it can do. Light on purpose (no
flax, no jax): config validation reads it, and the heavy module class is imported only when a
model is built (:func:`jaxmem.models.get_model`).

Adding a model family = one file under ``jaxmem/models/`` defining a flax module
``Module(num_classes, <fields>..., dtype=None)`` with ``__call__(x, train=False) -> logits``,
plus one :func:`register_model` call: its config class (a frozen dataclass deriving
:class:`jaxmem.config.registry.Choice`, the fields a config may set) and its capabilities.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from jaxmem.config.registry import MODEL, Choice, ConfigError, resolve
from jaxmem.data.pretrained import resolve_checkpoint

__all__ = ["ModelSpec", "MODELS", "MODEL_NAMES", "LORA_TARGETS", "spec", "module_class",
           "register_model", "MLPConfig", "CNNConfig", "AirbenchConfig", "WRNConfig",
           "TransformerConfig", "LlamaConfig"]

#: The projections of a ``pretrained`` family that LoRA may adapt (``model.lora_targets``).
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


class ModelSpec(NamedTuple):
    """One model family.

    ``module``: ``"jaxmem.models.FILE:Class"``, imported lazily. ``fields``: the ``model.*``
    config fields passed to the class as keyword arguments (the family's config class may hold
    more: ``resnet_airbench``'s ``whiten``, ``llama``'s ``checkpoint``).
    Capability flags: ``batch_norm`` — ``"always"``, ``"optional"`` (``model.batch_norm``
    switches it) or ``"never"``; ``dropout`` — has dropout layers (``model.dropout``);
    ``tokens`` — takes int token sequences, not float inputs; ``whiten`` — its stem can be
    whitened (``model.whiten``, ``model.whiten_bias_epochs``); ``convolutional`` — convolution
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
        """Whether a model built from ``model_cfg`` (the family's config) has BatchNorm layers."""
        return self.batch_norm == "always" or (self.batch_norm == "optional" and
                                               bool(getattr(model_cfg, "batch_norm", False)))


def _unit(path, key, v):
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"{path}.{key}: must be in [0, 1), got {v}")


def _positive(path, key, v, strict=True):
    if (v <= 0) if strict else (v < 0):
        raise ConfigError(f"{path}.{key}: must be {'> 0' if strict else '>= 0'}, got {v}")


def _sizes(path, key, sizes):
    if any(h <= 0 for h in sizes):
        raise ConfigError(f"{path}.{key}: layer sizes must be > 0, got {list(sizes)}")


def _bn_check(c, path):
    _unit(path, "bn_momentum", c.bn_momentum)
    _positive(path, "bn_eps", c.bn_eps)


@dataclass(frozen=True)
class MLPConfig(Choice):
    """``mlp`` (:class:`jaxmem.models.mlp.MLP`)."""

    hidden: typing.List[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0

    def check(self, path):
        _sizes(path, "hidden", self.hidden)
        _unit(path, "dropout", self.dropout)


@dataclass(frozen=True)
class CNNConfig(Choice):
    """``cnn`` (:class:`jaxmem.models.cnn.CNN`)."""

    channels: typing.List[int] = field(default_factory=lambda: [32, 64])
    batch_norm: bool = False
    dropout: float = 0.0
    bn_momentum: float = 0.9        # BatchNorm running-statistics decay (PyTorch: 1 - momentum)
    bn_eps: float = 1e-5

    def check(self, path):
        _bn_check(self, path)
        _sizes(path, "channels", self.channels)
        _unit(path, "dropout", self.dropout)


@dataclass(frozen=True)
class AirbenchConfig(Choice):
    """``resnet_airbench`` (:class:`jaxmem.models.airbench.AirbenchNet`)."""

    whiten: bool = False            # stem = frozen patch whitening of the run's own data
    whiten_bias_epochs: float = 0.0  # train the (whitened) stem's bias this long (0 = always)
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5

    def check(self, path):
        _bn_check(self, path)
        if self.whiten_bias_epochs < 0:
            raise ConfigError(f"{path}.whiten_bias_epochs: must be >= 0, got {self.whiten_bias_epochs}")


@dataclass(frozen=True)
class WRNConfig(Choice):
    """``wrn`` (:class:`jaxmem.models.wrn.WideResNet`): WRN-depth-width."""

    depth: int = 16
    width: int = 4
    dropout: float = 0.0
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5

    def check(self, path):
        _bn_check(self, path)
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ConfigError(f"{path}.depth: a WRN's depth is 6n + 4 (n >= 1), got {self.depth}")
        _positive(path, "width", self.width)
        _unit(path, "dropout", self.dropout)


@dataclass(frozen=True)
class TransformerConfig(Choice):
    """``transformer`` and ``causal_lm``."""

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    dropout: float = 0.0

    def check(self, path):
        for key in ("d_model", "num_layers", "num_heads"):
            _positive(path, key, getattr(self, key))
        _unit(path, "dropout", self.dropout)


@dataclass(frozen=True)
class LlamaConfig(Choice):
    """``llama`` (:class:`jaxmem.models.llama.Llama`): a pretrained checkpoint and LoRA adapters."""

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    checkpoint: str = ""            # "smollm2" | a .gguf file | a Hugging Face folder ("": random base)
    num_kv_heads: int = 0           # without a checkpoint: key/value heads (0 = num_heads)
    ffn_dim: int = 0                # without a checkpoint: SwiGLU width (0 = 8/3 d_model)
    lora_rank: int = 0              # > 0: train rank-r LoRA adapters (the model axis) over a frozen base
    lora_alpha: float = 16.0        # LoRA scale alpha / rank
    lora_targets: typing.List[str] = field(default_factory=lambda: ["q", "v"])  # projections adapted

    def check(self, path):
        for key in ("lora_rank", "num_kv_heads", "ffn_dim"):
            _positive(path, key, getattr(self, key), strict=False)
        _positive(path, "lora_alpha", self.lora_alpha)
        t = list(self.lora_targets)
        if any(x not in LORA_TARGETS for x in t) or (self.lora_rank and not t) or len(set(t)) != len(t):
            raise ConfigError(f"{path}.lora_targets: distinct names of {list(LORA_TARGETS)}, at least one, "
                              f"got {t}")
        if self.checkpoint and not self.lora_rank:
            raise ConfigError(f"{path}.lora_rank: a pretrained {path}.checkpoint is fine-tuned with LoRA "
                              f"adapters; set {path}.lora_rank > 0 (full fine-tuning is not supported)")
        if self.checkpoint:
            try:
                resolve_checkpoint(self.checkpoint)
            except FileNotFoundError as e:
                raise ConfigError(f"{path}.checkpoint: {e}") from None
        if not self.checkpoint and self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{path}.num_kv_heads: must divide {path}.num_heads = {self.num_heads}, "
                              f"got {self.num_kv_heads}")


def register_model(name: str, config_cls: type, module: str, *, fields=None, doc: str = "",
                   replace: bool = False, **capabilities) -> ModelSpec:
    """Declare model family ``name``: its config class, its flax module (``"pkg.mod:Class"``,
    imported when built) and its capabilities (:class:`ModelSpec`'s flags).

    Args:
      name: ``model.name``.
      config_cls: a frozen dataclass deriving :class:`jaxmem.config.registry.Choice`.
      module: the module class, ``"pkg.mod:Class"`` (imported when first built) or the class.
      fields: the config fields passed to the module (default: all of them).
      doc: one line.
      replace: allow re-registering ``name``.
      **capabilities: :class:`ModelSpec` flags (``batch_norm``, ``dropout``, ``tokens``, ...).

    Returns:
      The family's :class:`ModelSpec`.
    """
    fields = tuple(config_cls.field_names() if fields is None else fields)
    s = ModelSpec(module, fields, **capabilities)
    MODEL.register(name, config_cls, builder=module, capabilities=s, doc=doc, replace=replace)
    return s


_BN = ("bn_momentum", "bn_eps")
register_model("mlp", MLPConfig, "jaxmem.models.mlp:MLP", dropout=True)
register_model("cnn", CNNConfig, "jaxmem.models.cnn:CNN", batch_norm="optional", dropout=True,
               convolutional=True)
register_model("resnet_airbench", AirbenchConfig, "jaxmem.models.airbench:AirbenchNet", fields=_BN,
               batch_norm="always", whiten=True, convolutional=True)
register_model("wrn", WRNConfig, "jaxmem.models.wrn:WideResNet", batch_norm="always", dropout=True,
               convolutional=True)
register_model("transformer", TransformerConfig, "jaxmem.models.transformer:Transformer",
               dropout=True, tokens=True)
register_model("causal_lm", TransformerConfig, "jaxmem.models.causal_lm:CausalLM", dropout=True,
               tokens=True, lm=True)
register_model("llama", LlamaConfig, "jaxmem.models.llama:Llama",
               fields=("d_model", "num_layers", "num_heads", "num_kv_heads", "ffn_dim", "lora_rank",
                       "lora_alpha", "lora_targets"), tokens=True, lm=True, pretrained=True)


class _Specs(Mapping):
    """``{family: ModelSpec}``, a live view of the model registry."""

    def __getitem__(self, name):
        if name not in MODEL:
            raise KeyError(name)
        return MODEL.get(name).capabilities

    def __iter__(self):
        return iter(MODEL)

    def __len__(self):
        return len(MODEL.names())


MODELS: Mapping = _Specs()
MODEL_NAMES: tuple[str, ...] = MODEL.names()


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of family ``name``.

    Raises:
      ValueError: unknown family."""
    if name not in MODEL:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL.names()}")
    return MODEL.get(name).capabilities


def module_class(name: str):
    """The flax module class of family ``name`` (imports its file)."""
    return resolve(spec(name).module)
