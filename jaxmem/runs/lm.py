"""The language-model run: the causal-LM implementation of the run-level task interface
(:mod:`jaxmem.runs.task`), chosen once from the model family's ``lm`` capability (a stored run:
from its files). A language-model run stores per-token signals instead of logits
(:data:`CHUNK_ARRAYS`, computed by :func:`jaxmem.runs.lm_signals.chunk_signals`;
:data:`jaxmem.runs.store.LM_ARRAYS`) and is scored by
:mod:`jaxmem.runs.score_lm`.

What a chunk's signals and the evaluation batch need (:mod:`jaxmem.runs.lm_signals`, which imports
this module's :data:`CHUNK_ARRAYS`) and the texts' groups (:func:`jaxmem.estimators.lm.text_groups`)
are imported when asked for.
"""

from __future__ import annotations

from jaxmem.estimators.lm import text_groups
from jaxmem.runs.workdir import lm_output_bytes

__all__ = ["LanguageModelRun", "LANGUAGE_MODEL_RUN", "CHUNK_ARRAYS"]

#: The arrays a chunk of a language-model run stores (each with the model axis first).
CHUNK_ARRAYS = ("token_logp", "token_mu", "token_sigma", "token_correct", "nll", "test_token_logp",
                "test_nll")


class LanguageModelRun:
    """A causal language model's run (:mod:`jaxmem.runs.task`): token sequences [N, L] with
    their lengths as labels, per-token signals stored, scored by :mod:`jaxmem.runs.score_lm`."""

    name = "causal_lm"
    output_arrays = CHUNK_ARRAYS

    @staticmethod
    def chunk_outputs(trainer, state, ds) -> dict:
        """Per-token signals of a trained chunk on the run's training and test sequences
        (:func:`jaxmem.runs.lm_signals.chunk_signals`: the arrays of :data:`CHUNK_ARRAYS`)."""
        # (jax: imported when a chunk is trained, not when a run is read)
        from jaxmem.runs.lm_signals import chunk_signals

        return chunk_signals(trainer, state, ds.x_train, ds.y_train, ds.x_test, ds.y_test)

    @staticmethod
    def output_bytes(cfg, num_train: int, num_test: int, seq_len: int, num_queries: int,
                     num_classes: int) -> int:
        """One model's stored per-token signals (:func:`jaxmem.runs.workdir.lm_output_bytes`;
        ``num_queries`` and ``num_classes``, the vocabulary, do not count: no logits are kept)."""
        return lm_output_bytes(cfg, num_train, num_test, seq_len)

    @staticmethod
    def eval_rows(cfg, num_train: int, num_test: int, seq_len: int, num_classes: int) -> int:
        """Sequences one model evaluates at once (:func:`jaxmem.runs.lm_signals.eval_batch_size`:
        at most 2^26 logits)."""
        # (jax: imported for the estimate at the door only)
        from jaxmem.runs.lm_signals import eval_batch_size

        return eval_batch_size(cfg, max(num_train, num_test, 1), seq_len, num_classes)

    @staticmethod
    def scoring_bytes(cfg, num_train: int, num_test: int, num_classes: int):
        """None: scoring a language model reads its per-sequence signals, not estimated here."""
        return None

    @staticmethod
    def sequence_length(ds) -> int:
        """L, the length of the dataset's token sequences."""
        return int(ds.x_train.shape[1])

    @staticmethod
    def data_summary(run, dataset: dict) -> str:
        """One line on the run's data: sequences (copies included), the texts they hold, the
        vocabulary (``dataset``: the run's ``dataset.json``)."""
        texts = text_groups(run.text["groups"]).num_texts
        return (f"{dataset.get('num_train')} training sequences ({texts} texts), "
                f"{dataset.get('num_test')} test sequences, a vocabulary of "
                f"{dataset.get('num_classes')} tokens")


#: The language-model run task (one stateless instance).
LANGUAGE_MODEL_RUN = LanguageModelRun()
