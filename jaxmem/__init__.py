"""jaxmem: memorization and membership inference with thousands of stacked JAX models."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import jaxmem.estimators` / `jaxmem.attacks` pull in no training code.
    if name == "load_run":
        from jaxmem.runs import load_run

        return load_run
    raise AttributeError(f"module 'jaxmem' has no attribute {name!r}")
