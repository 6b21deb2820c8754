"""Typed run configuration, validated at the door.

* :mod:`jaxmem.config.schema` - the frozen dataclasses (:class:`Config` and its tables)
* :mod:`jaxmem.config.load` - TOML files with ``include`` / ``full_include``, ``--set``
  overrides, dicts, experiment variants
* :mod:`jaxmem.config.validate` - ranges and names, read from the registries
* :mod:`jaxmem.config.registry` - the choices (model families, optimizers, schedules, designs,
  augmentations, attacks, analyses), each declared once by the package that owns it

Imports neither jax nor flax, nor any other jaxmem package: the packages fill the registries
(``import jaxmem`` imports their light registry modules).
"""

from jaxmem.config.load import (
    ConfigError,
    apply_overrides,
    flatten,
    from_dict,
    load_config,
    read_experiment,
    resolve_experiment,
    to_dict,
    upgrade_stored,
    variant_configs,
)
from jaxmem.config.registry import Choice, Registry
from jaxmem.config.schema import (
    Config,
    DataConfig,
    DPConfig,
    ExperimentConfig,
    RecordsConfig,
    RMIAConfig,
    ScoringConfig,
    SignalsConfig,
    SubsetConfig,
    TrainConfig,
)
from jaxmem.config.validate import validate

__all__ = ["Config", "ConfigError", "load_config", "from_dict", "to_dict", "apply_overrides",
           "variant_configs", "upgrade_stored", "validate", "flatten", "read_experiment", "resolve_experiment",
           "DataConfig", "SubsetConfig", "Choice", "Registry", "DPConfig", "TrainConfig", "SignalsConfig",
           "RMIAConfig", "ScoringConfig", "ExperimentConfig", "RecordsConfig"]
