"""Flax linen models for stacked (vmapped) training, one family per file, and their registry.

Families (:data:`jaxmem.models.registry.MODELS`): ``mlp``, ``cnn``, ``resnet_airbench``
(airbench94), ``wrn`` (Wide-ResNet), ``transformer``, ``causal_lm`` (a GPT-style language
model), ``llama`` (a Llama-family language model; pretrained weights:
:mod:`jaxmem.models.pretrained`). Conventions in :mod:`jaxmem.models.common`.
The package imports flax only when a model is built or a class is asked for, so that config
validation can read the registry without jax.
"""

from jaxmem.models.registry import MODEL_NAMES, MODELS, ModelSpec

__all__ = ["MODELS", "MODEL_NAMES", "ModelSpec", "get_model", "make_model", "count_params",
           "flops_per_example", "MLP", "CNN", "AirbenchNet", "WideResNet", "Transformer",
           "CausalLM", "Llama", "dirac_init", "whitening_kernel", "whitening_kernels"]

_LAZY = {
    "get_model": "build", "make_model": "build", "count_params": "build",
    "flops_per_example": "build", "MLP": "mlp", "CNN": "cnn", "AirbenchNet": "airbench",
    "dirac_init": "airbench", "whitening_kernel": "airbench", "whitening_kernels": "airbench",
    "WideResNet": "wrn", "Transformer": "transformer", "CausalLM": "causal_lm", "Llama": "llama",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jaxmem.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxmem.models' has no attribute {name!r}")
