"""Per-example results (issue 13, item 8): results/scores holds every target's score on every
example, equal to the attacks run independently; `jaxmem show RUN --example ID` prints that
example's memorization, influence, scores and IN/OUT counts; `jaxmem show RUN` what was run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import helpers_run as H
import numpy as np

from jaxmem.runs.examples import example_record, read_scores, score_bytes


def test_scores_equal_the_attacks_run_independently():
    from jaxmem import attacks
    from jaxmem import signals as S

    wd = H.finished_reference()
    sc = read_scores(wd / "results" / "scores")
    keep, labels = np.load(wd / "keep.npy"), np.load(wd / "labels.npy")
    logits = np.load(wd / "logits.npy").astype(np.float64)
    assert sc["meta"]["attacks"] == ["lira_online", "global_threshold"]
    np.testing.assert_array_equal(sc["targets"], np.arange(8))
    np.testing.assert_array_equal(sc["member"], keep)
    np.testing.assert_array_equal(sc["example_ids"], np.load(wd / "example_ids.npy"))
    phi = S.logit_scaled_confidence(logits, labels[None, :, None])
    ev = attacks.evaluate(phi, keep, attacks=("lira_online", "global_threshold"), return_scores=True)
    for a in ev.scores:
        got = np.asarray(sc["scores"][a], np.float64)
        assert got.dtype == np.float64 and sc["scores"][a].dtype == np.float32
        np.testing.assert_allclose(got, ev.scores[a], rtol=1e-4, atol=1e-4, equal_nan=True)
    files = [wd / "results" / "scores" / f for f in ("member.npy", "lira_online.npy",
                                                     "global_threshold.npy")]
    data = sum(np.load(f, mmap_mode="r").nbytes for f in files)
    assert data == score_bytes(8, keep.shape[1], 2, "float32")


def test_the_scores_layout_scales_to_2000_models_by_50000_examples():
    # float32 [T, N] per attack: 400 MB each at the scale, 1% of its 48 GB of logits
    assert score_bytes(2000, 50_000, 1, "float32") == 2000 * 50_000 * 5
    assert score_bytes(2000, 50_000, 4, "float16") == 2000 * 50_000 * 9


def test_show_example_prints_what_the_run_holds_about_it():
    wd = H.finished_reference()
    with open(wd / "results" / "memorization.csv") as f:
        row = next(csv.DictReader(f))                     # the most memorized example
    eid = int(row["example_id"])
    rec = example_record(wd, eid)
    keep = np.load(wd / "keep.npy")[:, int(row["index"])]
    assert rec["models_in"] == keep.sum() and rec["models_out"] == (~keep).sum()
    assert rec["memorization"]["mem"] == float(row["mem"]) and rec["memorization"]["rank"] == 1
    with open(wd / "results" / "examples.csv") as f:   # both tables rank from 1 (issue #27.9)
        first = next(csv.DictReader(f))
    assert first["rank"] == row["rank"] == "1" and first["example_id"] == row["example_id"]
    lira = rec["attacks"]["lira_online"]
    col = np.load(wd / "results" / "scores" / "lira_online.npy")[:, int(row["index"])]
    assert lira["in"]["count"] == keep.sum()
    np.testing.assert_allclose(lira["in"]["mean"], np.nanmean(col[keep]), rtol=1e-6)
    r = H.cli(["show", wd, "--example", eid])
    assert r.returncode == 0, r.stderr
    assert f"example {eid}" in r.stdout and "memorization" in r.stdout
    assert f"IN for {keep.sum()} models" in r.stdout and "lira_online: as a member of" in r.stdout
    v = col[keep & np.isfinite(col)]   # the brackets are labelled (issue #27.9)
    assert f"(min {v.min():.4g}, max {v.max():.4g}); as a non-member of" in r.stdout
    r = H.cli(["show", wd, "--json"])
    out = json.loads(r.stdout)
    assert out["run"]["seed"] == 0 and out["run"]["model"].startswith("mlp (hidden=[32]")
    assert out["provenance"]["run id"] == json.loads((wd / "provenance.json").read_text())["run_id"]


def test_show_needs_no_lock():
    from jaxmem.report.show import run_text
    from jaxmem.runs.lock import run_lock

    wd = H.finished_reference()
    with run_lock(wd):
        assert "what was run:" in run_text(wd)


def test_show_piped_into_head_ends_quietly(tmp_path):
    """`jaxmem show RUN | head -1` (issue #27.9): the reader going away is no error: no
    "Broken pipe" on stderr, no traceback at exit, status 141 (128 + SIGPIPE)."""
    wd = H.finished_reference()
    cmd = [sys.executable, "-m", "jaxmem", "show", str(wd)]
    # deterministic: the reader is gone before jaxmem writes anything
    err = tmp_path / "err.txt"
    with open(err, "w") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, env=H.env(), cwd=H.REPO)
        p.stdout.close()
        rc = p.wait(timeout=300)
    assert err.read_text() == "" and rc == 141
    # and as a user types it
    sh = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -1', "_", *cmd],
                        capture_output=True, text=True, env=H.env(), cwd=H.REPO, timeout=300)
    assert sh.stdout == f"{wd}\n" and sh.stderr == "" and sh.returncode in (0, 141)


def test_a_broken_pipe_elsewhere_is_an_error_line(monkeypatch, capsys):
    """Only the reader of stdout going away ends quietly; any other broken pipe (stdout still
    open) is an OS error: one line, status 2."""
    from jaxmem import cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_config", broken)
    assert cli.main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxmem: error:") and "Broken pipe" in err and err.count("\n") == 1
