"""Runs made from arrays trained elsewhere, and the LiRA reference layout, at the run level."""

import numpy as np
import pytest

from jaxmem import cli
from jaxmem.io import RunError
from jaxmem.runs import export_lira, import_arrays, import_lira, load_run, score


def _arrays(M=8, N=60, T=20, A=2, C=3, seed=0):
    r = np.random.default_rng(seed)
    keep = r.random((M, N)) < 0.5
    labels = r.integers(0, C, N)
    logits = r.normal(size=(M, N, A, C)).astype(np.float32)
    # members get a boost on their own label: a real membership signal
    logits[np.arange(M)[:, None], np.arange(N)[None], :, labels[None]] += 1.5 * keep[..., None]
    return keep, logits, labels, r.normal(size=(M, T, A, C)).astype(np.float32), r.integers(0, C, T)


def test_import_arrays_scores_like_the_estimators_directly(tmp_path):
    from jaxmem import attacks, estimators, signals

    keep, logits, labels, tl, tlab = _arrays()
    import_arrays(tmp_path / "run", keep, logits, labels, test_logits=tl, test_labels=tlab)
    summary = score(tmp_path / "run", log=lambda *a: None)
    correct = signals.correctness(logits[:, :, 0], labels)
    mem = estimators.memorization(keep, correct)
    assert summary["memorization"]["mean"] == pytest.approx(np.nanmean(mem.mem))
    phi = signals.logit_scaled_confidence(logits.astype(np.float64), labels[None, :, None])
    ev = attacks.evaluate(phi, keep, attacks=("lira_online",))
    assert summary["attacks"]["lira_online"]["auc"] == pytest.approx(ev.summary()["lira_online"]["auc"])
    assert summary["attacks"]["lira_online"]["auc"] > 0.6
    assert "rmia_offline" in summary["attacks"]           # the test set is the population
    # test accuracy: identity query, and with the logits averaged over the A = 2 queries (TTA)
    assert summary["test_accuracy"] == pytest.approx((tl[:, :, 0].argmax(-1) == tlab).mean())
    tta = np.mean([(tl[m].astype(np.float64).sum(1).argmax(-1) == tlab).mean() for m in range(len(tl))])
    assert summary["test_accuracy_query_average"] == pytest.approx(tta)


def test_lira_layout_round_trip_through_runs(tmp_path):
    keep, logits, labels, _, _ = _arrays()
    import_arrays(tmp_path / "a", keep, logits, labels)
    export_lira(tmp_path / "a", tmp_path / "lira")
    assert (tmp_path / "lira" / "experiment-0_8" / "keep.npy").exists()
    import_lira(tmp_path / "lira", tmp_path / "b")
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    np.testing.assert_array_equal(a.keep, b.keep)
    np.testing.assert_array_equal(np.asarray(a.logits), np.asarray(b.logits))
    np.testing.assert_array_equal(a.labels, b.labels)


def test_bad_arrays_and_training_an_imported_run_are_refused(tmp_path, capsys):
    keep, logits, labels, _, _ = _arrays()
    with pytest.raises(RunError, match="do not match keep"):
        import_arrays(tmp_path / "x", keep, logits[:, :-1], labels)
    with pytest.raises(RunError, match="labels: out of range"):
        import_arrays(tmp_path / "x", keep, logits, labels + 5)
    import_arrays(tmp_path / "x", keep, logits, labels)
    with pytest.raises(RunError, match="not empty"):
        import_arrays(tmp_path / "x", keep, logits, labels)
    assert cli.main(["run", "--workdir", str(tmp_path / "y"), "--set",
                     "data.source=external:mine", "--no-progress", "--cache-dir", ""]) == 2
    assert "can be scored" in capsys.readouterr().err
