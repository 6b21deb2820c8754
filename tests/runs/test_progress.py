"""Progress (issue 13, item 10): within a chunk (epochs, with an ETA), per finished chunk without
bars, for assembly and scoring; a line saying a run resumes and how much is done; --log-file."""

from __future__ import annotations

import re
import subprocess

import helpers_run as H


def test_resume_line_chunk_lines_and_log_file():
    wd = H.fresh_dir("progress")
    p = H.start(wd)
    assert H.kill_when(p, lambda: H.shards(wd) and H.ckpt_steps(wd)), H.log_text(p)[-3000:]
    done = 2 * len(H.shards(wd))
    from jaxmem.runs.training import checkpoint_epoch

    ckpt = {d.name: checkpoint_epoch(d) for d in (wd / "ckpt").iterdir()} if (wd / "ckpt").is_dir() else {}
    ckpt = {k: v for k, v in ckpt.items() if v is not None and k not in H.shards(wd)}
    log = wd.parent / "progress.log"
    r = H.run(wd, extra=["--log-file", str(log)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {wd}: {done} of 8 models already trained" in r.stdout, r.stdout
    for name, epoch in ckpt.items():       # (the kill may also fall between a shard and the next
        a, b = (int(x) for x in name.split("-")[1:])        # chunk's first checkpoint)
        assert f"models {a}-{b - 1} continue from their checkpoint at epoch {epoch}" in r.stdout
    chunks = re.findall(r"trained models (\d+)-(\d+) in [\d.]+ s: (\d+) of 8 done, about .* left",
                        r.stdout)
    assert [int(c[2]) for c in chunks] == list(range(done + 2, 9, 2)), r.stdout
    assert "scoring: signals of 8 models" in r.stdout and "scoring: 2 attacks on 8 targets" in r.stdout
    text = log.read_text()
    for line in ("resuming", "trained models", "scoring: signals"):
        assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  " + line, text, re.M), (line, text)
    H.assert_same_run(H.finished_reference(), wd)


def test_bars_show_the_epochs_of_the_chunk_in_training():
    wd = H.fresh_dir("progress-bars")
    r = subprocess.run(H.argv(wd, progress=True), capture_output=True, text=True, env=H.env(),
                       cwd=H.REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"models 0-1: epoch [1-4] of 4 .* ETA", r.stderr), r.stderr[-2000:]
    assert "training:" in r.stderr
