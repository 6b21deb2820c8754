"""Issue #11 through a run: undefined metrics are null in results/attacks.json and summary.json,
"n/a" in the CLI summary and the report, with n_targets and the scored fractions next to them;
imported arrays with bad labels or a NaN model."""

import json
import subprocess
import sys
import warnings

import helpers_run as H
import numpy as np
import pytest

from jaxmem import cli
from jaxmem.io import RunError
from jaxmem.runs import import_arrays, load_run, score


def _strict(text):
    def no(c):
        raise ValueError(f"JSON holds {c}")
    return json.loads(text, parse_constant=no)


def _summary_attacks(wd):
    """summary.json's attack table, parsed strictly (the rest may hold NaN: test accuracy
    without a test set)."""
    return _strict(json.dumps(json.loads((wd / "summary.json").read_text())["attacks"]))


def _four_models(seed=0, N=80, C=3):
    """A balanced design on 4 models (each example IN for 2): offline LiRA scores only each
    target's members (2 OUT shadows among the other 3), online LiRA nothing."""
    r = np.random.default_rng(seed)
    keep = np.zeros((4, N), bool)
    for i in range(N):
        keep[r.permutation(4)[:2], i] = True
    labels = r.integers(0, C, N)
    logits = r.normal(size=(4, N, 1, C)).astype(np.float32)
    logits[np.arange(4)[:, None], np.arange(N)[None], 0, labels[None]] += 1.5 * keep
    return keep, logits, labels


def test_undefined_metrics_are_null_in_json_and_na_in_the_table_and_report(tmp_path, capsys):
    keep, logits, labels = _four_models()
    wd = tmp_path / "run"
    import_arrays(wd, keep, logits, labels,
                  overrides=['scoring.attacks=["lira_offline","lira_online","global_threshold"]'])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        score(wd, log=lambda *a: None)
    stored = _strict((wd / "results" / "attacks.json").read_text())
    summ = _summary_attacks(wd)
    for a in ("lira_offline", "lira_online"):
        assert stored["per_target"][a]["auc"] == [None] * 4
        assert stored["per_target"][a]["tpr_at_0.001_fpr"] == [None] * 4
        for s in (stored["summary"][a], summ[a]):
            assert s["auc"] is None and s["tpr_at_0.01_fpr"] is None
            assert s["n_targets"] == 0 and s["n_targets_undefined"] == 4
    # a balanced design: LiRA leaves a pair out (issue #21), so members too keep 1 OUT shadow
    assert stored["per_target"]["lira_offline"]["scored_fraction_members"] == [0.0] * 4
    assert stored["per_target"]["lira_offline"]["scored_fraction_non_members"] == [0.0] * 4
    assert summ["lira_offline"]["scored_fraction_non_members"] == 0.0
    assert summ["global_threshold"]["n_targets"] == 4 and summ["global_threshold"]["auc"] > 0.5
    assert stored["excluded_models"] == []

    cli._print_summary(json.loads((wd / "summary.json").read_text()), str(wd))
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("lira_offline"))
    assert row.split()[1:] == ["n/a", "n/a", "n/a", "0/4", "0.00/0.00"], row
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("global_threshold"))
    assert row.split()[4:] == ["4", "1.00/1.00"] and "±" in row

    assert cli.main(["report", str(wd)]) == 0
    page = (wd / "report.html").read_text() if (wd / "report.html").exists() else \
        next(wd.glob("**/*.html")).read_text()
    section = page.split("Membership inference")[1].split("<h2>")[0]
    assert "<td>n/a</td>" in section and "nan" not in section

    from jaxmem.report.show import run_text  # `jaxmem show`: a null number prints n/a
    shown = run_text(wd)
    assert "lira_offline AUC" in shown
    assert next(ln for ln in shown.splitlines() if "lira_offline AUC" in ln).split()[-1] == "n/a"
    assert "None" not in shown


def test_imported_labels_out_of_range_and_a_nan_model(tmp_path):
    keep, logits, labels = _four_models(N=40)
    keep = np.concatenate([keep, keep[::-1]])      # 8 models
    logits = np.concatenate([logits, logits[::-1] + 0.1])
    for bad in (labels + 1, np.r_[labels[:-1], -1]):
        for cls in (ValueError, RunError):   # a bad argument, and one line from the CLI
            with pytest.raises(cls, match=r"labels: out of range: must lie in \[0, 3\) for 3 classes"):
                import_arrays(tmp_path / "x", keep, logits, bad)
    logits[5] = np.nan
    from jaxmem.attacks import NonFiniteModelWarning

    with pytest.warns(NonFiniteModelWarning, match=r"models \[5\] have NaN/inf logits"):
        import_arrays(tmp_path / "y", keep, logits, labels)
    np.testing.assert_array_equal(load_run(tmp_path / "y").diverged, np.arange(8) == 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = score(tmp_path / "y", log=lambda *a: None)
    assert summary["diverged"]["models"] == [5]
    stored = _strict((tmp_path / "y" / "results" / "attacks.json").read_text())
    assert 5 not in stored["targets"] and stored["excluded_models"] == []   # masked by the run
    assert summary["attacks"]["lira_online"]["n_targets"] == 7
    logits[:] = np.nan
    with pytest.raises(RunError, match="every model"):
        import_arrays(tmp_path / "z", keep, logits, labels)


@pytest.mark.slow
def test_a_four_model_run_prints_na_not_a_perfect_attack():
    """`jaxmem run --set subsets.num_models=4` printed `lira_offline 0.0000±0.000 1.0000 1.0000`."""
    wd = H.fresh_dir("four-models")
    sets = [s for s in H.SMALL if not s.startswith(("subsets.num_models", "scoring.attacks"))]
    r = H.run(wd, sets + ["subsets.num_models=4",
                          'scoring.attacks=["lira_offline","lira_online","global_threshold"]'])
    assert r.returncode == 0, r.stderr[-3000:]
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("lira_offline"))
    assert row.split()[1:4] == ["n/a", "n/a", "n/a"] and "0/4" in row, row
    assert "UndefinedMetricWarning" in r.stderr and "evaluate[lira_offline] (4 targets)" in r.stderr
    stored = _strict((wd / "results" / "attacks.json").read_text())
    assert stored["summary"]["lira_offline"]["n_targets"] == 0
    assert subprocess.run([sys.executable, "-m", "jaxmem", "report", str(wd)], env=H.env(),
                          cwd=H.REPO, capture_output=True, timeout=300).returncode == 0
