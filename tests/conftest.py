import os

# Tests compile many small XLA programs on CPU; optimization level 0 roughly halves the suite's
# time and changes no result the tests check (they compare within one configuration). Subprocess
# tests inherit it. Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")


import sys
from pathlib import Path

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
