"""Issue #20 item 2: every caller of the attack driver passes the one audit specification built
from the run's cfg.scoring (a run's scoring and an experiment's audit of the same run pass equal
specs), and results/attacks.json records it, RMIA's tuning protocol included."""

from __future__ import annotations

import importlib
import json
import shutil

import helpers_run as H
import numpy as np
import pytest

import jaxmem.attacks
from jaxmem import runs as R
from jaxmem.analyses.common import sweep_rows
from jaxmem.attacks import AuditSpec

S = importlib.import_module("jaxmem.runs.score")   # (jaxmem.runs.score is also the function)


def capture(monkeypatch, module):
    """Record the spec of every driver call made through ``module.evaluate``."""
    seen, real = [], jaxmem.attacks.evaluate

    def spy(*args, spec=None, **kw):
        seen.append(spec)
        return real(*args, spec=spec, **kw)

    monkeypatch.setattr(module, "evaluate", spy)
    return seen


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("tuning", ["once", "per_target"])
def test_run_scoring_and_an_experiments_audit_pass_the_same_spec(monkeypatch, tuning):
    wd = H.fresh_dir(f"audit-spec-{tuning}")
    shutil.copytree(H.finished_reference(), wd)
    overrides = ['scoring.attacks=["lira_online","rmia_offline"]', "scoring.targets=3",
                 "scoring.rmia.gamma=2.0", "scoring.rmia.trim=0.1", f'scoring.rmia.tuning="{tuning}"']
    in_score = capture(monkeypatch, S)
    R.score(wd, log=lambda *a: None, overrides=overrides)
    run = R.load_run(wd)
    assert len(in_score) == 1 and in_score[0] == AuditSpec.from_scoring(run.config.scoring)
    spec = in_score[0]
    assert (spec.rmia_tuning, spec.rmia_gamma, spec.rmia_trim, spec.targets) == (tuning, 2.0, 0.1, 3)
    # attacks.json records the spec and the protocol the a came from
    stored = json.loads((wd / "results" / "attacks.json").read_text())
    assert stored["audit"] == spec.to_json() and stored["audit"]["rmia_tuning"] == tuning
    prm = stored["params"]["rmia_offline"]
    assert prm["a_source"] == {"once": "tuned_once", "per_target": "tuned_per_target"}[tuning]
    assert len(stored["targets"]) == 3
    # an experiment's audit of the same run (jaxmem.analyses.common.audit, through sweep_rows)
    in_analysis = capture(monkeypatch, jaxmem.attacks)
    rows = sweep_rows(run.config, {"v": run}, attacks=tuple(run.config.scoring.attacks))
    assert in_analysis == [spec]
    # the same a (per target: the same list over the same targets) and the same AUC
    np.testing.assert_allclose(rows[0]["auc"], np.nanmean(stored["per_target"]["lira_online"]["auc"]),
                               rtol=1e-6)
