"""LoRA adapters as the model axis over ONE frozen base (Hu et al. 2022, "LoRA: Low-Rank
Adaptation of Large Language Models").

With ``model.lora_rank > 0`` (a ``pretrained`` family, :mod:`jaxmem.models.llama`) a model's
``params`` are only its adapters (``lora_a``, ``lora_b`` of each projection in
``model.lora_targets``); the pretrained weights are the flax collection ``"frozen"``, held once by
the :class:`~jaxmem.train.trainer.Trainer` (``trainer.frozen``) and passed to each jitted call as
one argument, unbatched: ``vmap``/``lax.map`` over the chunk's adapters see the same base (never
copied per model, never a compiled-in constant). Everything else is the stacked trainer's: the
optimizer state, checkpoints, shards and resume hold the adapters only, and the LM path
(:mod:`jaxmem.runs.lm_signals`) computes each adapter's per-token signals, and the frozen base's
own NLL (:func:`jaxmem.runs.lm_signals.base_nll`).

The base is ``model.checkpoint``'s weights (:func:`jaxmem.models.pretrained.load_weights`), or
without a checkpoint a random base drawn once from ``(seed, BASE)`` (tests, small studies).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.models.pretrained import load_weights
from jaxmem.models.registry import spec

__all__ = ["uses_lora", "frozen_base", "BASE", "frozen_bytes"]

#: fold_in stream of a random (checkpoint-less) frozen base; the trainer's streams are 0..6.
BASE = 101


def uses_lora(cfg) -> bool:
    """Whether a run's models are LoRA adapters over a frozen base."""
    return bool(spec(cfg.model.name).pretrained and getattr(cfg.model, "lora_rank", 0))


def frozen_base(cfg, model, sample):
    """The frozen base of a LoRA run as a pytree of float32 device arrays, shaped as ``model``'s
    ``"frozen"`` collection: the checkpoint's weights, or a random base from ``(cfg.seed, BASE)``.

    Raises:
      ValueError: the checkpoint's tensors do not fit the model (another architecture).
    """
    template = jax.eval_shape(lambda k: model.init({"params": k, "dropout": k}, sample, train=False),
                              jax.random.key(0))["frozen"]
    if cfg.model.checkpoint:
        _, w = load_weights(cfg.model.checkpoint)
        shapes = jax.tree.map(lambda a: tuple(a.shape), w)
        want = jax.tree.map(lambda a: tuple(a.shape), dict(template))
        if shapes != want:
            raise ValueError(f"model.checkpoint: its weights do not fit the model "
                             f"{type(model).__name__} built from the config")
        return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), w)
    key = jax.random.fold_in(jax.random.key(cfg.seed), BASE)
    return jax.jit(lambda k: model.init({"params": k, "dropout": k}, sample, train=False)["frozen"])(key)


def frozen_bytes(tree) -> int:
    """Bytes of a frozen base (or of its ``jax.eval_shape`` template)."""
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)))
