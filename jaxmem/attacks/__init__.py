"""Membership-inference attacks and their metrics: pure array code (numpy / JAX in, scores out).

Every score is "higher means more likely a member".

* the registry of attacks and the one driver: :data:`ATTACKS` (:mod:`jaxmem.attacks.registry`),
  :func:`evaluate` (every model as the target) -> :class:`Evaluation`, called with an
  :class:`AuditSpec` (:mod:`jaxmem.attacks.spec`: one audit specification from ``cfg.scoring``)
* LiRA (Carlini et al. 2022): :func:`lira`, the global-threshold baseline :func:`global_threshold`
* RMIA (Zarifzadeh et al. 2024): :func:`rmia`
* loss / confidence thresholds (Yeom et al. 2018) and Shokri et al. (2017): :func:`loss_attack`,
  :func:`confidence_attack`, :func:`shokri`
* metrics (one ROC kernel, :mod:`jaxmem.attacks.roc`): :func:`roc_curve`, :func:`roc_auc`,
  :func:`tpr_at_fpr`, ...; an undefined metric is NaN with an :class:`UndefinedMetricWarning`
* warnings of the driver: :class:`FewScoredWarning` (metrics resting on < 10 scored members or
  non-members), :class:`NonFiniteModelWarning` (models with NaN/inf signals left out)
* the LiRA reference code's file layout: :func:`read_lira_layout`, :func:`write_lira_layout`
* ROC plots: :func:`mean_roc`, :func:`plot_roc`

Modules are named after what they hold (:mod:`~jaxmem.attacks.likelihood_ratio`,
:mod:`~jaxmem.attacks.relative_membership`, :mod:`~jaxmem.attacks.driver`), never after a function
the package exports, so ``jaxmem.attacks.lira`` is always the function. Names other than the
registry's load on first use (PEP 562 ``__getattr__``), only so that reading
:mod:`jaxmem.attacks.registry` (config validation) needs no jax.
"""

import importlib

from jaxmem.attacks.registry import ATTACKS, DEFAULT_ATTACKS, Attack, register
from jaxmem.attacks.spec import RMIA_TUNINGS, AuditSpec

__all__ = [
    "ATTACKS", "DEFAULT_ATTACKS", "Attack", "register", "AuditSpec", "RMIA_TUNINGS",
    "lira", "global_threshold", "FewShadowsWarning",
    "evaluate", "Evaluation", "LIRA_ATTACKS", "metric_warnings_only",
    "UndefinedMetricWarning", "FewScoredWarning", "NonFiniteModelWarning",
    "rmia", "rmia_reference_mean", "tune_rmia_a", "A_GRID",
    "loss_attack", "confidence_attack", "shokri", "sorted_probability_features",
    "roc_curve", "roc_auc", "tpr_at_fpr", "balanced_accuracy", "epsilon_lower_bound",
    "read_lira_layout", "write_lira_layout", "lira_reference_scores", "to_numpy",
    "FPR_GRID", "tpr_on_grid", "mean_roc", "plot_roc",
]

_LAZY = {
    "evaluate": "driver", "Evaluation": "evaluation", "LIRA_ATTACKS": "driver",
    "metric_warnings_only": "driver",
    "UndefinedMetricWarning": "roc", "FewScoredWarning": "evaluation",
    "NonFiniteModelWarning": "_checks",
    "lira": "likelihood_ratio", "global_threshold": "likelihood_ratio", "FewShadowsWarning": "likelihood_ratio",
    "rmia": "relative_membership", "rmia_reference_mean": "relative_membership",
    "tune_rmia_a": "relative_membership", "A_GRID": "relative_membership",
    "loss_attack": "threshold", "confidence_attack": "threshold", "shokri": "threshold",
    "sorted_probability_features": "threshold", "roc_curve": "roc", "roc_auc": "metrics",
    "tpr_at_fpr": "metrics", "balanced_accuracy": "metrics",
    "epsilon_lower_bound": "metrics", "read_lira_layout": "interop",
    "write_lira_layout": "interop", "lira_reference_scores": "interop", "to_numpy": "interop", "FPR_GRID": "plot",
    "tpr_on_grid": "plot", "mean_roc": "plot", "plot_roc": "plot",
}


def __getattr__(name):
    """PEP 562: load ``name`` from its module on first use, and keep it in the package."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"jaxmem.attacks.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxmem.attacks' has no attribute {name!r}")
