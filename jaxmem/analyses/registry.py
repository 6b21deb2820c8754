"""The analysis registry: ``experiment.kind`` -> the analysis run after an experiment's variants
are trained. Light (no imports of the analyses themselves): config validation reads the names.

An analysis is ``analyze(cfg, workdir, runs, log, **params) -> summary dict`` (``runs``: variant
name -> :class:`jaxmem.runs.Run`; ``"rows"`` is printed as a table, ``"files"`` lists figures
and tables; keyword parameters come from ``experiment.params``). Adding an analysis = one file
under ``jaxmem/analyses/`` with its ``analyze`` function, plus one line below.
"""

from __future__ import annotations

import importlib

from jaxmem.config.registry import ANALYSIS

__all__ = ["ANALYSES", "NO_VARIANTS", "get"]

ANALYSES = {
    "default": "jaxmem.analyses.default",
    "label_noise": "jaxmem.analyses.label_noise",
    "shadow_models": "jaxmem.analyses.shadow_models",
    "dp_sgd": "jaxmem.analyses.dp_sgd",
    "capacity": "jaxmem.analyses.capacity",
    "regularization": "jaxmem.analyses.regularization",
    "forgetting": "jaxmem.analyses.forgetting",
    "long_tail": "jaxmem.analyses.long_tail",
    "canary_exposure": "jaxmem.analyses.canary_exposure",
    "mem_vs_mia": "jaxmem.analyses.mem_vs_mia",
    "memorization_proxies": "jaxmem.analyses.memorization_proxies",
    "label_cleaning": "jaxmem.analyses.label_cleaning",
    "lm_memorization": "jaxmem.analyses.lm_memorization",
    "lm_scaling": "jaxmem.analyses.lm_scaling",
    "lm_mia": "jaxmem.analyses.lm_mia",
    "lm_finetune_mia": "jaxmem.analyses.lm_finetune_mia",
    "memorization_audit": "jaxmem.analyses.memorization_audit",
    "unlearning": "jaxmem.analyses.unlearning",
    "reference_scaling": "jaxmem.analyses.reference_scaling",
    "dp_audit": "jaxmem.analyses.dp_audit",
    "augmentation": "jaxmem.analyses.augmentation",
    "localization": "jaxmem.analyses.localization",
}
#: Analyses that train their own models instead of running jaxmem.runs.execute per variant
#: (unlearning: its stacks hold unlearned and retrained models, jaxmem.runs.unlearning).
NO_VARIANTS: set = {"unlearning"}

# Declared into the config mechanism (experiment.kind is validated against it).
for _kind, _module in ANALYSES.items():
    ANALYSIS.register(_kind, None, builder=f"{_module}:analyze",
                      capabilities={"variants": _kind not in NO_VARIANTS})


def get(kind: str):
    """The ``analyze`` function of analysis ``kind``."""
    return importlib.import_module(ANALYSES[kind]).analyze
