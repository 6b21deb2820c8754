"""Small-run helpers for the reliability tests: start/kill ``python -m jaxmem`` subprocesses at
points chosen by the run directory's progress, read a run's arrays, compare runs exactly."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# A run that takes seconds: 8 models in chunks of 2, 4 epochs, a checkpoint after every epoch.
SMALL = ["subsets.num_models=8", "train.chunk_size=2", "train.epochs=4", "train.checkpoint_every=1",
         "data.max_train=300", "data.max_test=100", "model.hidden=[32]",
         'scoring.attacks=["lira_online","global_threshold"]']

# Arrays a finished run must reproduce bit for bit, and the summary fields that may differ.
ARRAYS = ["keep.npy", "model_ratio.npy", "labels.npy", "example_ids.npy", "test_labels.npy",
          "test_ids.npy", "logits.npy", "test_logits.npy", "diverged.npy", "final_loss.npy"]
TIMING = {"train_seconds", "models_per_second", "files", "scoring_id"}   # (scoring_id: new each scoring)

_SESSION = Path(tempfile.mkdtemp(prefix="jaxmem-rel-"))
atexit.register(shutil.rmtree, _SESSION, ignore_errors=True)
_CACHE: dict = {}


def env() -> dict:
    """Subprocess environment: CPU, and the suite's XLA flags and persistent compilation cache
    (conftest.py puts them in os.environ: same executables, fewer compiles; a cache hit gives the
    same bits as a fresh compile)."""
    e = dict(os.environ)
    e.update(JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def argv(workdir, sets=SMALL, extra=(), progress=False) -> list:
    out = [sys.executable, "-m", "jaxmem", "run", "--workdir", str(workdir)]
    out += [] if progress else ["--no-progress"]
    for s in sets:
        out += ["--set", s]
    return out + list(extra)


def start(workdir, sets=SMALL, extra=(), log=None, progress=False) -> subprocess.Popen:
    """Start a run in the background; stdout+stderr go to ``log`` (default WORKDIR.log)."""
    log = Path(log or f"{workdir}.log")
    f = open(log, "ab")
    p = subprocess.Popen(argv(workdir, sets, extra, progress), stdout=f, stderr=subprocess.STDOUT,
                         env=env(), cwd=REPO)
    p.log_path = log
    f.close()
    return p


def run(workdir, sets=SMALL, extra=(), timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(argv(workdir, sets, extra), capture_output=True, text=True, env=env(),
                          cwd=REPO, timeout=timeout)


def cli(args, cwd=REPO) -> subprocess.CompletedProcess:
    """``python -m jaxmem ARGS`` run IN THIS PROCESS (jaxmem.cli.main; the suite's compiled
    programs are reused), its stdout and stderr (warnings included) captured: a CompletedProcess
    like ``run``'s. For
    tests whose point is not the process boundary (kill/resume, pipes, exit codes of a real
    process keep their subprocesses)."""
    from jaxmem import cli as jaxmem_cli

    args = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here, argv0 = os.getcwd(), sys.argv
    try:
        os.chdir(cwd)
        sys.argv = [str(REPO / "jaxmem" / "__main__.py"), *args]   # (the run's recorded command)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            # warnings on stderr, as a process prints them (not into pytest's record)
            warnings.simplefilter("default")
            warnings.showwarning = lambda msg, cat, fn, ln, file=None, line=None: err.write(
                warnings.formatwarning(msg, cat, fn, ln, line))
            rc = jaxmem_cli.main(args)
    finally:
        os.chdir(here)
        sys.argv = argv0
    return subprocess.CompletedProcess(["jaxmem", *args], rc, out.getvalue(), err.getvalue())


def run_here(workdir, sets=SMALL, extra=()) -> subprocess.CompletedProcess:
    """``run`` in this process (see :func:`cli`)."""
    return cli(argv(workdir, sets, extra)[3:])


def log_text(p) -> str:
    return Path(p.log_path).read_text(errors="replace")


def wait_for(p: subprocess.Popen, pred, timeout=300.0, poll=0.002) -> bool:
    """Poll ``pred()`` until it holds (True) or the process exits first (False)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if pred():
                return True
        except (FileNotFoundError, NotADirectoryError):
            pass
        if p.poll() is not None:
            return bool(pred())
        time.sleep(poll)
    raise TimeoutError(f"condition not reached in {timeout} s; log:\n{log_text(p)[-3000:]}")


def kill_when(p: subprocess.Popen, pred, sig=signal.SIGKILL, timeout=300.0) -> bool:
    """Send ``sig`` as soon as ``pred()`` holds; True if it was sent while the run was alive."""
    hit = wait_for(p, pred, timeout)
    alive = p.poll() is None
    if hit and alive:
        p.send_signal(sig)
    p.wait(timeout=120)
    return hit and alive


def finished_reference(sets=tuple(SMALL)) -> Path:
    """An uninterrupted run of ``sets`` (made once per test session, shared by the test files)."""
    key = tuple(sets)
    if key not in _CACHE:
        wd = _SESSION / f"ref-{len(_CACHE)}"
        r = run_here(wd, list(sets))    # (in process: the same bits as `python -m jaxmem run`)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        _CACHE[key] = wd
    return _CACHE[key]


def fresh_dir(name: str) -> Path:
    d = _SESSION / name
    shutil.rmtree(d, ignore_errors=True)
    return d


# ------------------------------------------------------------------------------------ progress

def shards(wd) -> list:
    d = Path(wd) / "shards"
    return sorted(p.name for p in d.iterdir() if p.name.startswith("models-")) if d.is_dir() else []


def ckpt_steps(wd) -> list:
    """Committed orbax steps of the chunk in training (integer-named folders under ckpt/*/)."""
    out = []
    d = Path(wd) / "ckpt"
    if d.is_dir():
        for c in d.iterdir():
            if c.is_dir():
                out += [int(s.name) for s in c.iterdir() if s.name.isdigit()]
    return out


def tmp_files(folder, pattern="*.tmp*") -> list:
    return sorted(Path(folder).glob(pattern))


# ------------------------------------------------------------------------------------ compare

def comparable_summary(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING}


def assert_same_run(a, b) -> None:
    """Keep, logits and every other run array bit-identical; summary equal except timings."""
    a, b = Path(a), Path(b)
    for name in ARRAYS:
        x = np.load(a / name, allow_pickle=False)
        y = np.load(b / name, allow_pickle=False)
        assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, x.shape, y.dtype, y.shape)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), \
            f"{name} differs: max |diff| {np.nanmax(np.abs(x.astype(float) - y.astype(float)))}"
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert comparable_summary(sa) == comparable_summary(sb)
    ma = (a / "results" / "memorization.csv").read_bytes()
    assert ma == (b / "results" / "memorization.csv").read_bytes()


def tree_state(folder) -> dict:
    """``{relative path: (sha256, inode, mtime_ns)}`` of every file under ``folder``."""
    out = {}
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(folder))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               st.st_ino, st.st_mtime_ns)
    return out
