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

Names load lazily, so that ``jaxmem.attacks.registry`` (read by config validation) needs no jax.
"""

import sys
import types

from jaxmem.attacks.registry import ATTACKS, DEFAULT_ATTACKS, Attack, register
from jaxmem.attacks.spec import RMIA_TUNINGS, AuditSpec

__all__ = [
    "ATTACKS", "DEFAULT_ATTACKS", "Attack", "register", "AuditSpec", "RMIA_TUNINGS",
    "lira", "global_threshold", "FewShadowsWarning",
    "evaluate", "Evaluation", "LIRA_ATTACKS", "metric_warnings_only",
    "UndefinedMetricWarning", "FewScoredWarning", "NonFiniteModelWarning",
    "rmia", "rmia_reference_mean", "tune_rmia_a", "A_GRID",
    "loss_attack", "confidence_attack", "shokri", "sorted_probability_features",
    "roc_curve", "roc_auc", "tpr_at_fpr", "balanced_accuracy", "clopper_pearson", "epsilon_lower_bound",
    "read_lira_layout", "write_lira_layout", "lira_reference_scores", "to_numpy",
    "FPR_GRID", "tpr_on_grid", "mean_roc", "plot_roc",
]

_LAZY = {
    "evaluate": "evaluate", "Evaluation": "evaluation", "LIRA_ATTACKS": "evaluate",
    "metric_warnings_only": "evaluate",
    "UndefinedMetricWarning": "roc", "FewScoredWarning": "evaluation",
    "NonFiniteModelWarning": "_checks",
    "lira": "lira", "global_threshold": "lira", "FewShadowsWarning": "lira",
    "rmia": "rmia", "rmia_reference_mean": "rmia", "tune_rmia_a": "rmia", "A_GRID": "rmia",
    "loss_attack": "threshold", "confidence_attack": "threshold", "shokri": "threshold",
    "sorted_probability_features": "threshold", "roc_curve": "roc", "roc_auc": "metrics",
    "tpr_at_fpr": "metrics", "balanced_accuracy": "metrics", "clopper_pearson": "metrics",
    "epsilon_lower_bound": "metrics", "read_lira_layout": "interop",
    "write_lira_layout": "interop", "lira_reference_scores": "interop", "to_numpy": "interop", "FPR_GRID": "plot",
    "tpr_on_grid": "plot", "mean_roc": "plot", "plot_roc": "plot",
}


class _Package(types.ModuleType):
    """Keeps ``jaxmem.attacks.lira`` / ``.rmia`` / ``.evaluate`` the functions of those names
    (the import system would bind the submodules of the same names over them when they load, as
    it did before these names were lazy); the modules stay in ``sys.modules``."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jaxmem.attacks.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxmem.attacks' has no attribute {name!r}")
