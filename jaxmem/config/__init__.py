"""Typed run configuration, validated at the door.

* :mod:`jaxmem.config.schema` - the frozen dataclasses (:class:`Config` and its tables)
* :mod:`jaxmem.config.load` - TOML files with ``include`` / ``full_include``, ``--set``
  overrides, dicts, experiment variants
* :mod:`jaxmem.config.validate` - ranges and names, read from the registries that own them

Imports neither jax nor flax: the registries that validation reads are light.
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
    variant_configs,
)
from jaxmem.config.schema import (
    Config,
    DataConfig,
    DPConfig,
    ExperimentConfig,
    ModelConfig,
    RecordsConfig,
    RMIAConfig,
    ScoringConfig,
    SignalsConfig,
    SubsetConfig,
    TrainConfig,
)
from jaxmem.config.validate import validate

__all__ = ["Config", "ConfigError", "load_config", "from_dict", "to_dict", "apply_overrides",
           "variant_configs", "validate", "flatten", "read_experiment", "resolve_experiment",
           "DataConfig", "SubsetConfig", "ModelConfig", "DPConfig", "TrainConfig", "SignalsConfig",
           "RMIAConfig", "ScoringConfig", "ExperimentConfig", "RecordsConfig"]
