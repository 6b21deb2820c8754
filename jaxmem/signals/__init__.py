"""Per-example signals from logits.

* :mod:`jaxmem.signals.functions` - pure array functions on logits ``[..., C]``: logit-scaled
  confidence φ, true-class probability, loss, correctness, RMIA's Taylor soft-margin signal;
  :func:`check_labels` (labels in [0, C), a ValueError naming the range otherwise)
* :mod:`jaxmem.signals.stream` - the one streamed computation of named per-model signals from
  stored logits ``[M, N, A, C]`` or ``[M, N, C]`` (:func:`compute_signals` -> :class:`Signals`)
  and its registry; :func:`model_logits` (the one check of stacked logits' shape)
* :mod:`jaxmem.signals.lm` - per-token signals of language models from logits (imported on its own)
"""

from jaxmem.signals.functions import (
    check_labels,
    correctness,
    cross_entropy,
    logit_scaled_confidence,
    taylor_soft_margin_probability,
    true_class_probability,
)
from jaxmem.signals.stream import (
    RMIA_RESEARCH_SIGNAL,
    SIGNALS,
    Signals,
    SignalSpec,
    compute_signals,
    model_logits,
    rmia_p_spec,
)

__all__ = ["check_labels", "logit_scaled_confidence", "true_class_probability", "cross_entropy", "correctness",
           "taylor_soft_margin_probability", "Signals", "SignalSpec", "SIGNALS",
           "compute_signals", "model_logits", "rmia_p_spec", "RMIA_RESEARCH_SIGNAL"]
