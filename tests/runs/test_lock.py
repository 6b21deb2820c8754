"""The run directory's lock (issue 13, item 1): one writer at a time, the second refused in one
line naming the first; released by the kernel on kill -9; nesting within a process; folders made
for a refused command removed; multi-process runs locked by process 0 only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import helpers_run as H
import pytest

from jaxmem import cli
from jaxmem.io import RunError
from jaxmem.runs import lock as L

_HOLD = textwrap.dedent("""
    import sys, time
    from jaxmem.runs.lock import run_lock
    with run_lock(sys.argv[1], process_id=0, num_processes=int(sys.argv[2])):
        print("locked", flush=True)
        time.sleep(600)
""")


def _hold(wd, num_processes=1) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(wd), str(num_processes)],
                         stdout=subprocess.PIPE, text=True, env=H.env(), cwd=H.REPO)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_writer_is_refused_naming_the_holder_and_kill_9_releases(tmp_path):
    wd = tmp_path / "run"
    p = _hold(wd)
    try:
        with pytest.raises(RunError) as e:
            with L.run_lock(wd):
                pass
        msg = str(e.value)
        assert f"pid {p.pid}" in msg and socket.gethostname() in msg and " since " in msg, msg
        assert "\n" not in msg
        assert L.holder(wd)["pid"] == p.pid
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the kernel dropped the lock with the process (its record is left, stale, and ignored)
    with L.run_lock(wd):
        assert L.held(wd) and L.holder(wd)["pid"] == os.getpid()
        with L.run_lock(wd):              # nested in one process
            pass
        assert L.held(wd)
    assert not L.held(wd) and not (wd / L.LOCK_NAME).exists()


def test_a_refused_command_leaves_no_folder_behind(tmp_path):
    wd = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError):
        with L.run_lock(wd):
            assert wd.is_dir()
            raise ValueError
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        with L.run_lock(tmp_path / "file" / "run"):
            pass


def test_unwritable_workdir_is_one_line(tmp_path, monkeypatch):
    import errno

    real = os.open

    def ro(path, flags, *a):
        if str(path).endswith(L.LOCK_NAME):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *a)

    monkeypatch.setattr(L.os, "open", ro)
    with pytest.raises(RunError, match="read-only.*choose a --workdir"):
        with L.run_lock(tmp_path / "run"):
            pass


def test_two_runs_on_one_workdir_cannot_interleave():
    """The issue's case: two `jaxmem run` on one workdir, one with other epochs. The second is
    refused in one line naming the first; the run finishes as the first's alone."""
    wd = H.fresh_dir("lock-two")
    p = H.start(wd)
    try:
        H.wait_for(p, lambda: (L.holder(wd) or {}).get("pid") == p.pid)
        p.send_signal(signal.SIGSTOP)      # (paused while holding the lock: the order is certain)
        sets = [s for s in H.SMALL if not s.startswith("train.epochs")] + ["train.epochs=2"]
        r = H.run(wd, sets)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {p.pid}" in lines[0] and "jaxmem run" in lines[0], lines
        s = subprocess.run([sys.executable, "-m", "jaxmem", "score", str(wd)], capture_output=True,
                           text=True, env=H.env(), cwd=H.REPO, timeout=300)
        assert s.returncode == 2 and f"pid {p.pid}" in s.stderr, s.stderr
    finally:
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=600) == 0, H.log_text(p)[-3000:]
    assert json.loads((wd / "config.json").read_text())["train"]["epochs"] == 4
    H.assert_same_run(H.finished_reference(), wd)


def test_process_1_without_coordinator_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_cluster_env", lambda: False)
    rc = cli.main(["run", "--workdir", str(tmp_path / "run"), "--num-processes", "2",
                   "--process-id", "1", "--cache-dir", ""] + sum((["--set", s] for s in H.SMALL), []))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--coordinator" in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_worker_refuses_a_run_locked_by_something_else(tmp_path):
    """Processes 1.. of a multi-process run write only after process 0 of a run like theirs has
    locked the folder; another holder (a single-process run) is an error naming it."""
    wd = tmp_path / "run"
    p = _hold(wd, num_processes=1)
    try:
        with pytest.raises(RunError, match=f"pid {p.pid}.*not by process 0"):
            L.wait_for_coordinator(wd, 2, "cafe", timeout=30, grace=0.5)
    finally:
        p.kill()
        p.wait()
    p = _hold(wd, num_processes=2)     # a coordinator of 2 processes, but of another config
    try:
        with pytest.raises(RunError, match="not by process 0"):
            L.wait_for_coordinator(wd, 2, "cafe", timeout=30, grace=0.5)
        info = L.holder(wd)
        info["config"] = "cafe"            # ... and one of this config
        (wd / L.LOCK_NAME).write_text(json.dumps(info))
        assert L.wait_for_coordinator(wd, 2, "cafe", timeout=5)["pid"] == p.pid
    finally:
        p.kill()
        p.wait()
    t0 = time.time()
    with pytest.raises(RunError, match="timed out"):
        L.wait_for_coordinator(tmp_path / "nobody", 2, "cafe", timeout=0.5)
    assert time.time() - t0 < 10
