"""Experiments reproducing the findings of the survey "Memorization in deep learning"
(arXiv 2406.03880): one analysis per finding (one file each), run over an experiment file's
variants (the TOML files in the repository's ``experiments/`` folder).

* :mod:`jaxmem.analyses.registry` - ``experiment.kind`` -> analysis
* :mod:`jaxmem.analyses.driver` - :func:`run_experiment`
* :mod:`jaxmem.analyses.common` - signals and audits of a run, tables, figures

Membership-inference audits here go through the one attack driver
(:func:`jaxmem.attacks.evaluate`): every target model takes its turn against the other
(non-diverged) models as shadows, like Carlini et al. (2022, Sec. VI).

``run_experiment`` loads on first use (PEP 562 ``__getattr__``), only so that reading
:mod:`jaxmem.analyses.registry` (config validation, which imports no jax) runs no analysis code.
"""

import importlib

from jaxmem.analyses.registry import ANALYSES

__all__ = ["run_experiment", "ANALYSES"]


def __getattr__(name):
    """PEP 562: :func:`jaxmem.analyses.driver.run_experiment` on first use, kept in the package."""
    if name == "run_experiment":
        value = importlib.import_module("jaxmem.analyses.driver").run_experiment
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxmem.analyses' has no attribute {name!r}")
