"""jaxmem: memorization and membership inference with thousands of stacked JAX models."""

__version__ = "0.1.0"

from jaxmem.config.registry import on_first_use  # (light: imports no other package)


def _fill_registries():
    """Fill the choice registries of :mod:`jaxmem.config.registry`: each package declares its
    choices (model families, optimizers, schedules, designs, augmentations, data sources'
    checks, attacks, analyses) in a light module (no jax), imported here when a registry is
    first read (so that ``import jaxmem.estimators`` alone pulls in no training code)."""
    import jaxmem.analyses.registry  # (analyses)
    import jaxmem.attacks.registry  # (attacks)
    import jaxmem.attacks.spec  # (RMIA's tuning protocols)
    import jaxmem.data.sources  # (sources, queries, tokenizers: validation's checks)
    import jaxmem.models.registry  # (model families)
    import jaxmem.subsets  # (designs)
    import jaxmem.train.augment_registry  # (augmentations)
    import jaxmem.train.choices  # noqa: F401  (optimizers, schedules, lookahead)


on_first_use(_fill_registries)


def __getattr__(name):
    # Lazy, so that `import jaxmem.estimators` / `jaxmem.attacks` pull in no training code.
    if name == "load_run":
        from jaxmem.runs import load_run

        return load_run
    raise AttributeError(f"module 'jaxmem' has no attribute {name!r}")
