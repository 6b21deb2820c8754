"""Experiments reproducing the findings of the survey "Memorization in deep learning"
(arXiv 2406.03880): one analysis per finding (one file each), run over an experiment file's
variants (the TOML files in the repository's ``experiments/`` folder).

* :mod:`jaxmem.analyses.registry` - ``experiment.kind`` -> analysis
* :mod:`jaxmem.analyses.driver` - :func:`run_experiment`
* :mod:`jaxmem.analyses.common` - signals and audits of a run, tables, figures

Membership-inference audits here go through the one attack driver
(:func:`jaxmem.attacks.evaluate`): every target model takes its turn against the other
(non-diverged) models as shadows, like Carlini et al. (2022, Sec. VI).
"""

from jaxmem.analyses.driver import run_experiment
from jaxmem.analyses.registry import ANALYSES

__all__ = ["run_experiment", "ANALYSES"]
