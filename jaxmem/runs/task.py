"""The run-level task interface: what a run stores, what that costs in memory and on disk, and
how its data is described, supplied by one of two implementations so that shared run code never
branches on a model family's language-model flag.

The trainer's face of the same choice is :mod:`jaxmem.train.task` (the loss, a trained chunk's
outputs). Here:

* :data:`CLASSIFICATION_RUN` (this module): a classifier's run stores logits
  ``[M, N, A, C]`` and is scored from them (:mod:`jaxmem.runs.score`);
* :data:`jaxmem.runs.lm.LANGUAGE_MODEL_RUN`: a causal language model's run stores per-token
  signals and is scored by :mod:`jaxmem.runs.score_lm`.

A run task is chosen once: from the config's model family (:func:`task_for`, its ``lm``
capability in :data:`jaxmem.models.registry.MODELS`) before a run exists, from the stored files
(:func:`stored_task`) once it does (an imported run has logits). It has:

``name``
    ``"classification"`` or ``"causal_lm"`` (the trainer's task of the same name).
``output_arrays``
    the array names a trained chunk stores (each with the model axis first).
``chunk_outputs(trainer, state, ds)``
    those arrays for a trained chunk (``ds``: the run's dataset).
``output_bytes(cfg, num_train, num_test, seq_len, num_queries, num_classes)``
    bytes of one model's outputs held with the chunk (:mod:`jaxmem.runs.preflight`).
``eval_rows(cfg, num_train, num_test, seq_len, num_classes)``
    examples one model evaluates at once (the evaluation activations at the door).
``scoring_bytes(cfg, num_train, num_test, num_classes)``
    host bytes of scoring by stage, or None where scoring is not estimated.
``sequence_length(ds)``
    L for a run of token sequences, 0 otherwise (:func:`jaxmem.runs.workdir.storage_plan`).
``data_summary(run, dataset)``
    one line on the run's data (``jaxmem show``, the report).

The run tasks import what trains a chunk (jax) when a chunk is trained.
"""

from __future__ import annotations

from jaxmem.models.registry import MODELS
from jaxmem.runs.lm import LANGUAGE_MODEL_RUN
from jaxmem.runs.scoring_memory import scoring_bytes

__all__ = ["ClassificationRun", "CLASSIFICATION_RUN", "task_for", "stored_task"]


class ClassificationRun:
    """A classifier's run: logits stored, scored from them (:mod:`jaxmem.runs.score`)."""

    name = "classification"
    output_arrays = ("logits", "test_logits")

    @staticmethod
    def chunk_outputs(trainer, state, ds) -> dict:
        """:func:`jaxmem.train.task.chunk_logits`: the chunk's logits under every query."""
        # (jax: imported when a chunk is trained, not when a run is read)
        from jaxmem.train.task import chunk_logits

        return chunk_logits(trainer, state, ds)

    @staticmethod
    def output_bytes(cfg, num_train: int, num_test: int, seq_len: int, num_queries: int,
                     num_classes: int) -> int:
        """One model's float32 logits on the training and test sets, ``[N + T, A, C]``."""
        return (num_train + num_test) * num_queries * num_classes * 4

    @staticmethod
    def eval_rows(cfg, num_train: int, num_test: int, seq_len: int, num_classes: int) -> int:
        """Examples one model evaluates at once: ``signals.batch_size``, at most N or T."""
        return min(cfg.signals.batch_size, max(num_train, num_test, 1))

    @staticmethod
    def scoring_bytes(cfg, num_train: int, num_test: int, num_classes: int) -> dict:
        """:func:`jaxmem.runs.scoring_memory.scoring_bytes`."""
        return scoring_bytes(cfg, num_train, num_test, num_classes)

    @staticmethod
    def sequence_length(ds) -> int:
        """0: a classifier's inputs are not token sequences."""
        return 0

    @staticmethod
    def data_summary(run, dataset: dict) -> str:
        """One line on the run's data: examples and classes (``dataset``: ``dataset.json``)."""
        return (f"{dataset.get('num_train')} training, {dataset.get('num_test')} test examples, "
                f"{dataset.get('num_classes')} classes")


#: The classification run task (one stateless instance).
CLASSIFICATION_RUN = ClassificationRun()


def task_for(model_name: str):
    """The run task of a model family: :data:`jaxmem.runs.lm.LANGUAGE_MODEL_RUN` where its
    ``lm`` capability (:data:`jaxmem.models.registry.MODELS`) says so, else
    :data:`CLASSIFICATION_RUN`.

    Args:
        model_name: ``model.name`` (validated: a registered family).

    Returns:
        The run task (module docstring)."""
    return LANGUAGE_MODEL_RUN if MODELS[model_name].lm else CLASSIFICATION_RUN


def stored_task(run):
    """The run task of a stored run, from its files (:attr:`jaxmem.runs.store.Run.is_lm`: per-token
    signals and no logits), so that an imported run (logits from elsewhere) is a classifier's.

    Args:
        run: a :class:`~jaxmem.runs.store.Run`.

    Returns:
        The run task (module docstring)."""
    return LANGUAGE_MODEL_RUN if run.is_lm else CLASSIFICATION_RUN
