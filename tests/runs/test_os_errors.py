"""Everyday OS errors as one line (issue 13, item 7): a full disk while training or scoring
(simulated: the write raises ENOSPC once it reaches a file whose path holds a given part), then
the same command resumes to the same run. (The other OS errors, a read-only workdir, a path that
is a file, a binary TOML, are cases of tests/test_bad_input.py and tests/runs/test_lock.py.)"""

from __future__ import annotations

import errno

import helpers_run as H
import pytest

import jaxmem.io as jio


def _full_disk(monkeypatch, part):
    """Every write to a file whose path holds ``part`` raises ENOSPC (in this process)."""
    write = jio.HashingWriter.write

    def full(self, data):
        if part in getattr(self.f, "name", ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    monkeypatch.setattr(jio.HashingWriter, "write", full)


@pytest.mark.parametrize("stage,part,where", [
    ("training", "models-000004-000006", "shards/models-000004-000006"),
    ("assembly", "{wd}/.logits.npy.", "logits.npy"),
    ("scoring", "scores", "results/scores")])
def test_full_disk_is_one_line_and_the_same_command_resumes(stage, part, where, monkeypatch):
    wd = H.fresh_dir(f"enospc-{stage}")
    with monkeypatch.context() as m:
        _full_disk(m, part.format(wd=wd))
        r = H.run_here(wd)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    assert "no space left on the device" in lines[0] and "rerun the same command" in lines[0]
    assert lines[0].startswith(f"jaxmem: error: {wd / where}"), lines[0]
    assert "Traceback" not in r.stderr
    r = H.run_here(wd)
    assert r.returncode == 0, r.stderr[-3000:]
    H.assert_same_run(H.finished_reference(), wd)
    assert not [p for p in wd.rglob(".*") if ".tmp" in p.name]
