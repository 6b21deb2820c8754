"""Membership-inference attacks and their metrics: pure array code (numpy / JAX in, scores out).

Every score is "higher means more likely a member".

* LiRA (Carlini et al. 2022): :func:`lira`, the global-threshold baseline :func:`global_threshold`
* RMIA (Zarifzadeh et al. 2024): :func:`rmia`
* loss / confidence thresholds (Yeom et al. 2018) and Shokri et al. (2017): :func:`loss_attack`,
  :func:`confidence_attack`, :func:`shokri`
* every model as the target, leave-one-out: :func:`evaluate` -> :class:`Evaluation`
* metrics: :func:`roc_curve`, :func:`roc_auc`, :func:`tpr_at_fpr`, ...
* the LiRA reference code's file layout: :func:`read_lira_layout`, :func:`write_lira_layout`
* ROC plots: :func:`mean_roc`, :func:`plot_roc`
"""

from jaxmem.attacks.evaluate import ATTACKS, DEFAULT_ATTACKS, LIRA_ATTACKS, Evaluation, evaluate
from jaxmem.attacks.interop import lira_reference_scores, read_lira_layout, write_lira_layout
from jaxmem.attacks.lira import FewShadowsWarning, global_threshold, lira
from jaxmem.attacks.metrics import (
    balanced_accuracy,
    clopper_pearson,
    epsilon_lower_bound,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from jaxmem.attacks.plot import FPR_GRID, mean_roc, plot_roc, tpr_on_grid
from jaxmem.attacks.rmia import A_GRID, rmia, rmia_reference_mean, tune_rmia_a
from jaxmem.attacks.threshold import confidence_attack, loss_attack, shokri, sorted_probability_features

__all__ = [
    "lira", "global_threshold", "FewShadowsWarning",
    "evaluate", "Evaluation", "ATTACKS", "DEFAULT_ATTACKS", "LIRA_ATTACKS",
    "rmia", "rmia_reference_mean", "tune_rmia_a", "A_GRID",
    "loss_attack", "confidence_attack", "shokri", "sorted_probability_features",
    "roc_curve", "roc_auc", "tpr_at_fpr", "balanced_accuracy", "clopper_pearson", "epsilon_lower_bound",
    "read_lira_layout", "write_lira_layout", "lira_reference_scores",
    "FPR_GRID", "tpr_on_grid", "mean_roc", "plot_roc",
]
