"""Any sweep: per-variant memorization, accuracy and LiRA power."""

from __future__ import annotations

from jaxmem.analyses.common import sweep_rows, write_csv


def analyze(cfg, workdir, runs, log):
    """Per-variant memorization, accuracy and LiRA power (any sweep)."""
    rows = sweep_rows(cfg, runs)
    return {"rows": rows, "files": {"table": write_csv(workdir / "variants.csv", rows)}}
