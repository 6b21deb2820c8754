"""Advice that does not destroy (issue 13, items 2, 4 and 5): the smallest fix is named,
--overwrite of an imported run needs --delete-imported, export-lira never merges two runs, and
the small ones (roc.png's mode, temporaries of a killed plot, a killed `score --set`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import helpers_run as H
import numpy as np
import pytest

from jaxmem import cli
from jaxmem.io import RunError
from jaxmem.runs import export_lira, import_arrays, import_lira, load_run


def _arrays(seed=0, M=6, N=40, C=3):
    r = np.random.default_rng(seed)
    return (r.random((M, N)) < 0.5, r.normal(size=(M, N, 1, C)).astype(np.float32),
            r.integers(0, C, N))


def test_overwrite_of_an_imported_run_needs_a_second_flag(tmp_path, capsys):
    imp = tmp_path / "imp"
    import_arrays(imp, *_arrays())
    logits = (imp / "logits.npy").read_bytes()
    sets = sum((["--set", s] for s in H.SMALL), [])
    rc = cli.main(["run", "--workdir", str(imp), "--overwrite", "--no-progress", "--cache-dir", ""]
                  + sets)
    err = capsys.readouterr().err
    assert rc == 2 and "imported run" in err and "--delete-imported" in err, err
    assert (imp / "logits.npy").read_bytes() == logits
    with pytest.raises(RunError, match="--delete-imported"):
        import_arrays(imp, *_arrays(1), overwrite=True)
    assert (imp / "logits.npy").read_bytes() == logits
    import_arrays(imp, *_arrays(1), overwrite=True, delete_imported=True)
    assert (imp / "logits.npy").read_bytes() != logits
    # a run config differing from an imported run's: no --overwrite advice at all
    rc = cli.main(["run", "--workdir", str(imp), "--no-progress", "--cache-dir", ""] + sets)
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" not in err and "imported run" in err, err


def test_different_config_advice_resumes_or_moves_on_without_deleting():
    wd = H.finished_reference()
    r = H.run_here(wd, [s for s in H.SMALL if not s.startswith("train.epochs")] + ["train.epochs=2"])
    line = r.stderr.strip()
    assert r.returncode == 2 and "different config (train.epochs: 4" in line
    assert "another --workdir" in line and "would delete the 8 trained models" in line, line


def test_export_lira_never_merges_two_runs(tmp_path):
    import_arrays(tmp_path / "a", *_arrays(0))
    import_arrays(tmp_path / "b", *_arrays(1, M=4))
    export_lira(tmp_path / "a", tmp_path / "out")
    with pytest.raises(RunError, match="an export of another run"):
        export_lira(tmp_path / "b", tmp_path / "out")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(RunError, match="not an export of this run"):
        export_lira(tmp_path / "a", tmp_path / "mine")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        export_lira(tmp_path / "a", tmp_path / "afile")
    # the same run again (after it grew: 6 -> 8 models) replaces its own export whole
    keep, logits, labels = _arrays(0, M=8)
    import_arrays(tmp_path / "a", keep, logits, labels, overwrite=True, delete_imported=True)
    shutil.copy(tmp_path / "a" / "provenance.json", tmp_path / "prov")
    # (a re-import is a new run; give it the first one's id to stand for "the same run")
    old = json.loads((tmp_path / "out" / "jaxmem_export.json").read_text())["run_id"]
    prov = json.loads((tmp_path / "a" / "provenance.json").read_text())
    prov["run_id"] = old
    (tmp_path / "a" / "provenance.json").write_text(json.dumps(prov))
    export_lira(tmp_path / "a", tmp_path / "out")
    import_lira(tmp_path / "out", tmp_path / "back")
    np.testing.assert_array_equal(load_run(tmp_path / "back").keep, keep)


def test_roc_png_mode_and_killed_plot_temporaries(tmp_path):
    from jaxmem.runs import score

    import_arrays(tmp_path / "r", *_arrays())
    res = tmp_path / "r" / "results"
    res.mkdir()
    # what a plot killed midway leaves: atomic_path's temporary name
    fd, stale = tempfile.mkstemp(prefix=".roc.png.", suffix=".tmp.png", dir=res)
    os.close(fd)
    score(tmp_path / "r", log=lambda *a: None)
    mask = os.umask(0o022)
    os.umask(mask)
    for f in ("roc.png", "memorization_hist.png"):
        assert (res / f).stat().st_mode & 0o777 == 0o666 & ~mask, f
    assert not os.path.exists(stale)
    assert not [p for p in res.rglob("*") if ".tmp" in p.name]


def test_killed_score_set_leaves_config_and_summary_consistent(tmp_path, monkeypatch):
    import importlib

    from jaxmem.runs import score

    S = importlib.import_module("jaxmem.runs.score")     # (the module; jaxmem.runs.score is the function)
    import_arrays(tmp_path / "r", *_arrays())
    score(tmp_path / "r", log=lambda *a: None)
    cfg0 = (tmp_path / "r" / "config.json").read_text()
    sum0 = (tmp_path / "r" / "summary.json").read_text()

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "_plots", killed)      # killed after the attacks, before the summary
    with pytest.raises(KeyboardInterrupt):
        score(tmp_path / "r", overrides=['scoring.attacks=["loss"]'], log=lambda *a: None)
    assert (tmp_path / "r" / "config.json").read_text() == cfg0
    assert (tmp_path / "r" / "summary.json").read_text() == sum0
    monkeypatch.undo()
    s = score(tmp_path / "r", overrides=['scoring.attacks=["loss"]'], log=lambda *a: None)
    assert list(s["attacks"]) == ["loss"] and s["scoring"]["attacks"] == ["loss"]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["scoring"]["attacks"] == ["loss"]
