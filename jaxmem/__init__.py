"""jaxmem: memorization and membership inference with thousands of stacked JAX models."""

__version__ = "0.1.0"

# Fill the choice registries of jaxmem.config.registry: each package declares its choices (model
# families, optimizers and schedules, designs, augmentations, data sources, attacks, analyses)
# in a light module (no jax), imported here so that any `import jaxmem...` sees them all.
import jaxmem.analyses.registry
import jaxmem.attacks.registry
import jaxmem.data.sources
import jaxmem.models.registry
import jaxmem.subsets
import jaxmem.train.augment_registry
import jaxmem.train.choices  # noqa: F401  (optimizers, schedules)


def __getattr__(name):
    # Lazy, so that `import jaxmem.estimators` / `jaxmem.attacks` pull in no training code.
    if name == "load_run":
        from jaxmem.runs import load_run

        return load_run
    raise AttributeError(f"module 'jaxmem' has no attribute {name!r}")
