import os

# Tests compile many small XLA programs on CPU; optimization level 0 roughly halves the suite's
# time and changes no result the tests check (they compare within one configuration). Subprocess
# tests inherit it. Set XLA_FLAGS yourself to override.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
