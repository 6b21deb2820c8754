"""Issue #20 item 2: the analyses' target choice is part of the audit specification. With
``scoring.targets = 0`` a run's own scoring attacks every usable model while the analyses that
sweep variants attack the first ANALYSIS_TARGETS usable ones; the spec says which (it records the
number), and the driver picks exactly those models from it."""

from __future__ import annotations

import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem.analyses.common import ANALYSIS_TARGETS, audit, audit_spec
from jaxmem.attacks import AuditSpec


@pytest.mark.parametrize("targets", [0, 3])
def test_the_spec_records_the_analysis_target_count(targets):
    cfg = cfgmod.load_config(None, [f"scoring.targets={targets}"])
    run_spec = AuditSpec.from_scoring(cfg.scoring)
    assert run_spec.targets == targets                          # a run's scoring: 0 = every model
    assert audit_spec(cfg, ["lira_online"]).targets == targets  # analyses that attack every model
    swept = audit_spec(cfg, ["lira_online"], default_targets=ANALYSIS_TARGETS)
    assert swept.targets == (targets or ANALYSIS_TARGETS)
    assert audit_spec(cfg, ["lira_online"], targets=2).targets == 2   # an explicit change wins


@pytest.mark.filterwarnings("ignore")
def test_audit_attacks_the_first_k_usable_models_of_the_spec(rng):
    M, N = 10, 30
    keep = rng.random((M, N)) < 0.5
    phi = rng.normal(size=(M, N, 1))
    ok = np.ones(M, bool)
    ok[[0, 3]] = False                                           # e.g. diverged models
    cfg = cfgmod.load_config(None, ["scoring.targets=0"])
    sig = {"phi": phi}
    ev = audit(sig, keep, ok, audit_spec(cfg, ["lira_online"], default_targets=ANALYSIS_TARGETS))
    np.testing.assert_array_equal(ev.targets, np.flatnonzero(ok)[:ANALYSIS_TARGETS])
    ev = audit(sig, keep, ok, audit_spec(cfg, ["lira_online"]))
    np.testing.assert_array_equal(ev.targets, np.flatnonzero(ok))
