import os

# Tests compile many small XLA programs on CPU; optimization level 0 roughly halves the suite's
# time and changes no result the tests check (they compare within one configuration). Subprocess
# tests inherit it. Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

# One persistent compilation cache for the whole session, in-process and in every subprocess a
# test starts (`python -m jaxmem ...`, notebook kernels, scripts): they inherit these variables
# (JAXMEM_CACHE_DIR is the CLI's --cache-dir default), so a program compiled once is loaded, not
# recompiled, by the next process; a cache hit gives the same bits as a fresh compile. A fresh
# folder per session (never the user's ~/.cache/jaxmem), removed at exit. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep one between sessions.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="jaxmem-tests-xla-")
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
os.environ.setdefault("JAXMEM_CACHE_DIR", os.environ["JAX_COMPILATION_CACHE_DIR"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
if "jax" in sys.modules:   # (imported before this file by a plugin: the variables came too late)
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                      int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))

import numpy as np
import pytest

# The tests mirror the package (tests/attacks/, tests/runs/, ...); their shared helpers
# (helpers_run.py) stay here, importable from every folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Fresh inputs every run. Each test's seed is printed on failure; replay one test with
# JAXMEM_TEST_SEED=<that seed> python -m pytest tests/FILE.py::TEST
SEED = int.from_bytes(os.urandom(4), "little")


@pytest.fixture
def rng(request):
    """A fresh random generator per test (its seed is printed, so a failure can be replayed)."""
    replay = os.environ.get("JAXMEM_TEST_SEED")
    seed = int(replay) if replay else SEED + hash(request.node.name) % 10_000
    print(f"seed={seed}")
    return np.random.default_rng(seed)


# Test tiers (markers registered in pyproject.toml). `slow`: sweeps and full-size variants, only
# with `-m slow`. `e2e`: runs jaxmem's pipeline end to end (train a tiny run for a few steps,
# score, report, the CLI), in process unless the point is the process boundary: every test under
# runs/, analyses/, unlearn/, the notebooks, the benchmark smoke, bad input at the CLI, and any
# test marked `e2e` by hand. `unit`: the rest (small arrays, no run): `pytest -m unit` is the
# fast tier.
_E2E = ("runs/", "analyses/", "unlearn/", "test_notebooks.py", "test_benchmarks.py",
        "test_bad_input.py")
_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow"):
            continue
        rel = Path(str(item.fspath)).resolve().relative_to(_TESTS).as_posix()
        if item.get_closest_marker("e2e") is None and rel.startswith(_E2E):
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.unit)
