"""LoRA adapters as the model axis over ONE frozen base (Hu et al. 2022, "LoRA: Low-Rank
Adaptation of Large Language Models").

With ``model.lora_rank > 0`` (a ``pretrained`` family, :mod:`jaxmem.models.llama`) a model's
``params`` are only its adapters (``lora_a``, ``lora_b`` of each projection in
``model.lora_targets``); the pretrained weights are the flax collection ``"frozen"``, held once by
the :class:`~jaxmem.train.trainer.Trainer` (``trainer.frozen``) and passed to each jitted call as
one argument, unbatched: ``vmap``/``lax.map`` over the chunk's adapters see the same base (never
copied per model, never a compiled-in constant). Everything else is the stacked trainer's: the
optimizer state, checkpoints, shards and resume hold the adapters only, and the LM path
(:mod:`jaxmem.train.lm`) computes each adapter's per-token signals.

The base is ``model.checkpoint``'s weights (:func:`jaxmem.models.pretrained.load_weights`), or
without a checkpoint a random base drawn once from ``(seed, BASE)`` (tests, small studies).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.models import make_model
from jaxmem.models.pretrained import load_weights
from jaxmem.models.registry import spec
from jaxmem.signals.lm import sequence_nll, token_signals

__all__ = ["uses_lora", "frozen_base", "base_nll", "BASE", "frozen_bytes"]

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


def base_nll(cfg, vocab_size: int, tokens, lengths, *, batch_size: int = 16) -> np.ndarray:
    """Mean token NLL (nats) of each sequence under the frozen base alone (the adapters' starting
    point, B = 0): the pretrained model as an external reference model (Carlini et al. 2021).

    Args:
      cfg: a LoRA run's config (its base: ``model.checkpoint``, or the random base of its seed).
      vocab_size: the run's vocabulary (its dataset's ``num_classes``).
      tokens: int [N, L] sequences of the run's data; ``lengths`` [N] their real tokens.

    Returns float64 [N] (NaN for a sequence without target tokens, as
    :func:`jaxmem.signals.lm.sequence_nll`).
    """
    tokens, lengths = np.asarray(tokens, np.int32), np.asarray(lengths, np.int32)
    model = make_model(cfg, int(vocab_size))
    sample = jnp.zeros((1, tokens.shape[1]), jnp.int32)
    frozen = frozen_base(cfg, model, sample)
    adapters = jax.eval_shape(lambda k: model.init(k, sample), jax.random.key(0))["params"]
    zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), adapters)

    @jax.jit
    def nll(frozen, x, n):
        mask = jnp.arange(x.shape[1])[None] < n[:, None]
        ts = token_signals(model.apply({"params": zero, "frozen": frozen}, x), x, mask, stats=("logp",),
                           block_rows=x.shape[0])
        return sequence_nll(ts.logp, ts.mask)

    out = []
    for s in range(0, len(tokens), batch_size):
        x, n = tokens[s:s + batch_size], lengths[s:s + batch_size]
        pad = batch_size - len(x)
        if pad:
            x, n = np.concatenate([x, np.repeat(x[:1], pad, 0)]), np.concatenate([n, np.repeat(n[:1], pad)])
        out.append(np.asarray(nll(frozen, jnp.asarray(x), jnp.asarray(n)), np.float64)[: batch_size - pad])
    return np.concatenate(out) if out else np.zeros(0)

