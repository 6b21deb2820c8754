"""The run's storage plan against the bytes a finished run really wrote, and the disk check that
refuses a run whose signals cannot fit before any work starts."""

from __future__ import annotations

import json
from pathlib import Path

import helpers_run as H
import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem import runs as R
from jaxmem.io import RunError
from jaxmem.runs import workdir as W

SIGNALS = ["logits.npy", "test_logits.npy", "diverged.npy", "final_loss.npy", "correct_by_epoch.npy"]


def _written(wd: Path) -> int:
    """Data bytes (file size less the .npy header) of every signal array, shards and assembled."""
    files = [f for d in [wd, *(wd / "shards").iterdir()] for f in d.glob("*.npy") if f.name in SIGNALS]
    return sum(np.load(f, mmap_mode="r").nbytes for f in files)


@pytest.mark.parametrize("extra", [[], ["signals.dtype=float16", 'signals.queries=["identity","flip"]',
                                        "train.record_forgetting=true"]])
def test_plan_equals_the_bytes_a_finished_run_wrote(extra):
    wd = H.finished_reference(tuple(H.SMALL + extra))
    cfg = cfgmod.from_dict(json.loads((wd / "config.json").read_text()))
    ds = json.loads((wd / "dataset.json").read_text())
    M = cfg.subsets.num_models
    plan = W.storage_plan(cfg, M, ds["num_train"], ds["num_test"], ds["num_classes"])
    assert plan["total"] == _written(wd)
    scores = [f for f in (wd / "results" / "scores").glob("*.npy") if f.name not in
              ("targets.npy", "example_ids.npy")]
    assert plan["scores"] == sum(np.load(f, mmap_mode="r").nbytes for f in scores)
    assert plan["todo"] == plan["total"] + plan["scores"]      # nothing written yet
    done = W.storage_plan(cfg, M, ds["num_train"], ds["num_test"], ds["num_classes"], M, True)
    assert done["todo"] == plan["scores"]                       # (rescoring rewrites them)
    half = W.storage_plan(cfg, M, ds["num_train"], ds["num_test"], ds["num_classes"], M // 2, False)
    assert half["todo"] == plan["total"] + plan["scores"] - M // 2 * plan["per_model"]


def test_a_run_that_cannot_fit_fails_at_the_door(tmp_path, monkeypatch):
    cfg = cfgmod.from_dict({"subsets": {"num_models": 4}, "data": {"max_train": 100, "max_test": 50},
                            "train": {"batch_size": 32}})
    usage = type("Usage", (), {"free": 10_000, "total": 10**9, "used": 0})
    monkeypatch.setattr(W.shutil, "disk_usage", lambda p: usage)
    wd = tmp_path / "not" / "yet" / "made"
    with pytest.raises(RunError, match=r"only 10 KB is free.*signals\.dtype=float16"):
        R.execute(cfg, wd, progress=False, log=lambda *a: None)
    assert not (tmp_path / "not").exists()     # refused before the run folder was made


def test_large_runs_log_their_size():
    lines = []
    plan = {"per_model": 2 * 10**8, "total": 4 * 10**9, "todo": 3 * 10**9}
    W.check_disk(Path("."), plan, lines.append, free=5 * 10**9)
    assert lines == ["signals: 4 GB on disk in all (shards + assembled arrays); 3 GB still to "
                     "write, 5 GB free"]
    with pytest.raises(RunError, match="200 MB per model"):
        W.check_disk(Path("."), plan, lines.append, free=2 * 10**9)


def test_space_the_run_deletes_first_counts_as_free(tmp_path, monkeypatch):
    """--overwrite deletes the old run and a resume deletes temporaries of killed writes before
    anything is written: with no free space at all, both still start when that space suffices."""
    import shutil as sh

    sets = tuple(H.SMALL + ["subsets.num_models=4", "train.epochs=1"])
    cfg = cfgmod.from_dict(json.loads((H.finished_reference(sets) / "config.json").read_text()))
    wd = tmp_path / "run"
    sh.copytree(H.finished_reference(sets), wd)
    usage = type("Usage", (), {"free": 0, "total": 10**9, "used": 0})
    monkeypatch.setattr(W.shutil, "disk_usage", lambda p: usage)
    R.execute(cfg, wd, overwrite=True, progress=False, log=lambda *a: None)     # fits in the old run
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(RunError, match="only 0 B is free"):
        R.execute(cfg, fresh, progress=False, log=lambda *a: None)
    plan = W.storage_plan(cfg, 4, 300, 100, 10)
    (fresh / ".logits.npy.abcd1234.tmp.npy").write_bytes(b"\0" * plan["todo"])   # a killed write
    R.execute(cfg, fresh, progress=False, log=lambda *a: None)
    assert (fresh / "summary.json").exists() and not list(fresh.glob(".logits.npy.*"))
