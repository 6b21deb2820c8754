"""Memorization estimators: pure, blocked, jit-compiled array functions.

Conventions: ``keep[m, i]`` is True when model m trained on example i; per-example metrics are
``[M, N]``; NumPy and JAX arrays are accepted, NumPy arrays are returned. ``model_mask`` [M]
selects the models to use (e.g. drops diverged ones). ``dtype=None`` computes in float64 NumPy
when the metric is a float64 NumPy array, else in float32 jit-compiled JAX (see ``_common``).

Shapes are written in the signatures with jaxtyping (``keep: Bool[ArrayLike, "M N"]``), the same
axis names in :mod:`jaxmem.estimators`, :mod:`jaxmem.attacks` and :mod:`jaxmem.signals`:
M models (shadow / reference models), N examples (training candidates, sequences), K evaluation
examples (test examples, audit trials / canaries), T target models (replicas), A test-time
queries (augmentations) per example, C classes, L tokens per sequence, E epochs, G groups (texts,
subpopulations), Z population points (RMIA), P points of a ROC curve; unlearning audits: U
unlearned and R retrained models, F forget-set examples (exposure: R reference candidates).
``*batch`` / ``...`` are any leading axes (``*#batch``: broadcast against them), a name with a
leading ``_`` is not matched across arguments. The annotations cost nothing at run time (no
checker in the library); ``tests/test_signatures.py`` checks them with jaxtyping + beartype.

This package imports only numpy, jax (and scipy lazily): never flax/optax/jaxmem.train/models/data.
"""

from jaxmem.estimators._common import InsufficientModelsWarning
from jaxmem.estimators.exposure import SkewNormalExposure, exposure_rank, exposure_skewnorm
from jaxmem.estimators.forgetting import ForgettingEvents, forgetting_events
from jaxmem.estimators.influence import InfluenceResult, TopInfluence, influence, top_influencers
from jaxmem.estimators.leave_subset_out import (
    GroupKeep,
    SubsetEffect,
    group_keep_from_ids,
    leave_subset_out,
)
from jaxmem.estimators.lm import (
    ExactMatch,
    RateTable,
    TextGroups,
    counterfactual_memorization_lm,
    exact_match_accuracy,
    extraction_rate_by_count,
    text_groups,
)
from jaxmem.estimators.lm_trends import LogLinearSlope, LogLogSlope, loglinear_slope, loglog_slope
from jaxmem.estimators.localization import brute_force_flip, greedy_flip, rewind_layer
from jaxmem.estimators.memorization import (
    CScoreResult,
    MemorizationResult,
    counterfactual_memorization,
    cscore,
    memorization,
)
from jaxmem.estimators.resampling import BootstrapCI, bootstrap_ci, convergence

__all__ = [
    "InsufficientModelsWarning",
    "MemorizationResult",
    "memorization",
    "counterfactual_memorization",
    "CScoreResult",
    "cscore",
    "influence",
    "InfluenceResult",
    "TopInfluence",
    "top_influencers",
    "SubsetEffect",
    "leave_subset_out",
    "GroupKeep",
    "group_keep_from_ids",
    "ForgettingEvents",
    "forgetting_events",
    "SkewNormalExposure",
    "exposure_rank",
    "exposure_skewnorm",
    "convergence",
    "BootstrapCI",
    "bootstrap_ci",
    "greedy_flip",
    "brute_force_flip",
    "rewind_layer",
    "counterfactual_memorization_lm",
    "exact_match_accuracy",
    "text_groups",
    "TextGroups",
    "ExactMatch",
    "extraction_rate_by_count",
    "RateTable",
    "loglog_slope",
    "LogLogSlope",
    "loglinear_slope",
    "LogLinearSlope",
]
