"""Everyday OS errors as one line (issue 13, item 7): a full disk while training or scoring
(simulated: the write raises ENOSPC once it reaches a file whose path holds a given part), then
the same command resumes to the same run. (The other OS errors, a read-only workdir, a path that
is a file, a binary TOML, are cases of tests/test_bad_input.py and tests/runs/test_lock.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import helpers_run as H
import pytest

_FULL = textwrap.dedent("""
    import errno, sys
    import jaxmem.io as io
    from jaxmem.cli import main

    PART = sys.argv[1]
    write = io.HashingWriter.write

    def full(self, data):
        if PART in getattr(self.f, "name", ""):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    io.HashingWriter.write = full
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("stage,part,where", [
    ("training", "models-000004-000006", "shards/models-000004-000006"),
    ("assembly", "{wd}/.logits.npy.", "logits.npy"),
    ("scoring", "scores", "results/scores")])
def test_full_disk_is_one_line_and_the_same_command_resumes(stage, part, where):
    wd = H.fresh_dir(f"enospc-{stage}")
    cmd = [sys.executable, "-c", _FULL, part.format(wd=wd)] + H.argv(wd)[3:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=H.env(), cwd=H.REPO, timeout=600)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
    assert "no space left on the device" in lines[0] and "rerun the same command" in lines[0]
    assert lines[0].startswith(f"jaxmem: error: {wd / where}"), lines[0]
    assert "Traceback" not in r.stderr
    r = H.run(wd)
    assert r.returncode == 0, r.stderr[-3000:]
    H.assert_same_run(H.finished_reference(), wd)
    assert not [p for p in wd.rglob(".*") if ".tmp" in p.name]
