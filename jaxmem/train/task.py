"""What a model learns, one interface for the trainer: a *task* supplies the pieces that differ
between classifying inputs and modelling token sequences, so shared training code never branches
on a model family's flag.

The task is chosen once, from the model family's capability (``lm`` in
:data:`jaxmem.models.registry.MODELS`), by :func:`task_for`:

* :data:`CLASSIFICATION` (this module): inputs ``x`` [B, ...] and integer labels (or soft targets)
  ``y``; cross-entropy loss.
* :data:`jaxmem.train.lm.CAUSAL_LM`: token sequences ``x`` [B, L] and their lengths ``y`` [B];
  next-token loss.

What a run stores of a trained chunk (logits, :func:`chunk_logits`; or a language model's
per-token signals) is the run-level task's (:mod:`jaxmem.runs.task`).

A task is a stateless object with:

``name``
    ``"classification"`` or ``"causal_lm"``.
``loss(logits, x, y, label_smoothing, num_classes)``
    one model's mean training loss on a batch (float32 ``logits`` of the network on ``x``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxmem.models.registry import spec
from jaxmem.train.lm import CAUSAL_LM

__all__ = ["Classification", "CLASSIFICATION", "task_for", "chunk_logits"]


class Classification:
    """Classification of inputs into ``num_classes`` classes (the image and tabular families)."""

    name = "classification"

    @staticmethod
    def loss(logits, x, y, label_smoothing: float, num_classes: int):
        """Mean softmax cross-entropy of ``logits`` [B, C] against integer labels ``y`` [B] or soft
        targets [B, C] (a label-mixing augmentation), with ``label_smoothing`` (``optax.smooth_labels``).

        Args:
            logits: float32 [B, C].
            x: the batch's inputs (unused: a classifier's targets are its labels).
            y: int [B] labels or float [B, C] targets.
            label_smoothing: ``train.label_smoothing``.
            num_classes: C.

        Returns:
            The scalar mean loss."""
        del x
        if y.ndim == logits.ndim:   # soft targets [B, C] of a label-mixing augmentation
            labels = optax.smooth_labels(y, label_smoothing) if label_smoothing else y
            return optax.softmax_cross_entropy(logits, labels).mean()
        if label_smoothing:
            labels = optax.smooth_labels(jax.nn.one_hot(y, num_classes), label_smoothing)
            return optax.softmax_cross_entropy(logits, labels).mean()
        # (the one-hot form ran ~3x slower per step on CPU for small MLPs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


#: The classification task (one stateless instance).
CLASSIFICATION = Classification()


def chunk_logits(trainer, state, ds) -> dict:
    """Eval-mode logits of every model of the chunk under each of ``signals.queries``, on the
    training inputs (the trainer's device copy) and on ``ds.x_test``: ``logits`` [K, N, A, C]
    and ``test_logits`` [K, T, A, C] in ``signals.dtype``, computed before returning.

    Args:
        trainer: the :class:`~jaxmem.train.trainer.Trainer` the chunk trained with.
        state: the chunk's trained state.
        ds: the run's dataset (``x_test``).

    Returns:
        ``{"logits": ..., "test_logits": ...}`` (device arrays)."""
    cfg = trainer.cfg
    out_dtype = jnp.float16 if cfg.signals.dtype == "float16" else jnp.float32
    queries = list(cfg.signals.queries)
    if "x_test" not in trainer.device_arrays:   # (copied to the device once, not once per chunk)
        trainer.device_arrays["x_test"] = jnp.asarray(ds.x_test)
    arrays = {"logits": trainer.logits(state, trainer.x_train, queries, out_dtype),
              "test_logits": trainer.logits(state, trainer.device_arrays["x_test"], queries, out_dtype)}
    jax.block_until_ready(arrays)
    return arrays


def task_for(model_name: str):
    """The task of a model family (:data:`CLASSIFICATION` or
    :data:`jaxmem.train.lm.CAUSAL_LM`), from its ``lm`` capability in
    :data:`jaxmem.models.registry.MODELS`.

    Args:
        model_name: ``model.name``.

    Returns:
        The task object (module docstring).

    Raises:
        ConfigError: an unknown model name (:func:`jaxmem.models.registry.spec`)."""
    return CAUSAL_LM if spec(model_name).lm else CLASSIFICATION
