"""Provenance and checksums (issue 13, item 3): every run records what produced it (per shard);
every array's checksum is taken as it is written and checked before scoring and reporting; a
damaged assembled array with intact shards is rebuilt; other damage names the smallest fix;
shards trained under different settings are not assembled unless --allow-mixed-shards."""

from __future__ import annotations

import hashlib
import json
import shutil

import helpers_run as H
import numpy as np
import pytest

from jaxmem import cli
from jaxmem.io import SEGMENT, Digest, check_digest, file_digest, save_npy
from jaxmem.runs import integrity, provenance


def _copy(name):
    wd = H.fresh_dir(name)
    shutil.copytree(H.finished_reference(), wd)
    return wd


def _flip(path, offset=-1, bit=0):
    b = bytearray(path.read_bytes())
    b[offset] ^= 1 << bit
    path.write_bytes(bytes(b))


def _score(wd, *extra):
    return H.cli(["score", wd, *extra])


def test_digest_is_sha256_of_each_segment(tmp_path, rng):
    data = rng.integers(0, 256, size=SEGMENT + 12345, dtype=np.uint8).tobytes()
    d = Digest()
    for i in range(0, len(data), 999_999):       # fed in pieces that do not align with segments
        d.update(data[i:i + 999_999])
    want = [hashlib.sha256(data[:SEGMENT]).hexdigest(), hashlib.sha256(data[SEGMENT:]).hexdigest()]
    assert d.result() == {"algorithm": "sha256", "segment": SEGMENT, "size": len(data), "sha256": want}
    a = rng.normal(size=(3, 5, 7)).astype(np.float32)
    got = save_npy(tmp_path / "a.npy", a)          # hashed on the way to the disk
    assert got == file_digest(tmp_path / "a.npy") and check_digest(tmp_path / "a.npy", got) == []
    _flip(tmp_path / "a.npy", offset=200)
    assert check_digest(tmp_path / "a.npy", got) == [0]


def test_a_run_records_provenance_and_checksums():
    wd = H.finished_reference()
    prov = json.loads((wd / "provenance.json").read_text())
    rec = prov["created"]
    for k in ("jaxmem", "jax", "jaxlib", "flax", "optax", "numpy", "xla_flags", "command", "host",
              "date", "pid"):
        assert k in rec, k
    assert rec["command"][:2] == ["jaxmem", "run"] and len(prov["run_id"]) == 32
    for d in (wd / "shards").iterdir():
        meta = json.loads((d / "meta.json").read_text())
        assert meta["provenance"]["backend"] == "cpu"
        assert meta["provenance"]["xla_flags"] == H.env().get("XLA_FLAGS", "")
        for f, dig in meta["checksums"].items():
            assert file_digest(d / f) == dig, f
    sums = integrity.stored(wd)
    assert {"keep.npy", "labels.npy", "logits.npy", "test_logits.npy", "diverged.npy"} <= set(sums)
    for f, dig in sums.items():
        assert file_digest(wd / f) == dig, f
    assert integrity.verify(wd, full=True) == {}


def test_flipped_bit_in_keep_is_refused_then_rewritten_by_rerunning():
    wd = _copy("flip-keep")
    _flip(wd / "keep.npy")
    r = _score(wd)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip()
    assert "keep.npy: damaged" in line and "rerun its command" in line and "no model retrains" in line
    assert "--overwrite" not in line
    before = H.tree_state(wd / "shards")
    r = H.run_here(wd)                                   # the run's own command
    assert r.returncode == 0, r.stderr[-3000:]
    assert "keep.npy: was damaged" in r.stdout
    assert H.tree_state(wd / "shards") == before          # nothing retrained
    H.assert_same_run(H.finished_reference(), wd)


def test_damaged_logits_with_intact_shards_are_rebuilt_when_scoring_and_reporting():
    wd = _copy("flip-logits")
    _flip(wd / "logits.npy", offset=-3)
    r = _score(wd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "logits.npy: was damaged" in r.stdout and "rebuilt from its intact shards" in r.stdout
    H.assert_same_run(H.finished_reference(), wd)
    _flip(wd / "test_logits.npy", offset=-3)
    assert cli.main(["report", str(wd)]) == 0
    assert integrity.verify(wd, full=True) == {}


def test_damaged_logits_and_shard_name_the_shard_to_delete():
    wd = _copy("flip-shard")
    _flip(wd / "logits.npy", offset=-3)
    shard = wd / "shards" / "models-000002-000004"
    _flip(shard / "logits.npy", offset=-3)
    r = _score(wd)
    assert r.returncode == 2
    assert f"delete {shard}" in r.stderr and "retrain those models" in r.stderr, r.stderr


def test_large_files_are_sampled_unless_full(tmp_path, monkeypatch, rng):
    """Above FULL_BYTES a file is checked by its size and SAMPLE_SEGMENTS segments (first, last,
    spread between); --verify full reads it all. (Segments of 1 KB here stand for 64 MiB.)"""
    (tmp_path / "big.bin").write_bytes(rng.integers(0, 256, 10 * 1024, dtype=np.uint8).tobytes())
    integrity.record(tmp_path, {"big.bin": file_digest(tmp_path / "big.bin", segment=1024)})
    monkeypatch.setattr(integrity, "FULL_BYTES", 1000)
    monkeypatch.setattr(integrity, "SAMPLE_SEGMENTS", 3)
    assert integrity._sample(10) == [0, 4, 9] or integrity._sample(10) == [0, 5, 9]
    assert integrity.verify(tmp_path) == {} == integrity.verify(tmp_path, full=True)
    _flip(tmp_path / "big.bin", offset=2 * 1024 + 7)          # in segment 2: not sampled
    assert integrity.verify(tmp_path) == {}
    assert "checksum mismatch at bytes 2048..3072" in integrity.verify(tmp_path, full=True)["big.bin"]
    _flip(tmp_path / "big.bin", offset=-1)                    # in the last segment: sampled
    assert "9216..10240" in integrity.verify(tmp_path)["big.bin"]
    with open(tmp_path / "big.bin", "ab") as f:
        f.write(b"x")
    assert "size" in integrity.verify(tmp_path)["big.bin"]


def test_mixed_shards_are_refused_unless_allowed():
    wd = _copy("mixed")
    (wd / ".assembled.json").unlink()                     # (as if the last shard just came in)
    meta_path = wd / "shards" / "models-000006-000008" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["provenance"]["xla_flags"] = "--xla_cpu_use_onednn=true"
    meta_path.write_text(json.dumps(meta))
    r = H.run_here(wd)
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "different settings (xla_flags" in line and "--allow-mixed-shards" in line, line
    assert "rm -r" in line and "models-000006-000008" in line
    r = H.run_here(wd, extra=["--allow-mixed-shards"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "assembled anyway" in r.stdout
    from jaxmem.report.show import provenance_rows

    rows = dict(provenance_rows(wd))
    assert "xla_flags" in rows["mixed shards"] and "onednn" in rows["mixed shards"]


def test_provenance_mismatch_compares_numeric_fields_only():
    a = provenance.record(devices=False)
    b = dict(a, host="elsewhere", pid=1, date="x", xla_flags="--foo")
    assert provenance.mismatch(a, b) == ["xla_flags"]
    assert provenance.mismatch(a, {k: v for k, v in b.items() if k != "xla_flags"}) == []


def test_shards_of_the_same_package_source_are_not_mixed_across_commits():
    """A commit that changes only tests or docs gives a new git revision and the same package
    source: a running experiment's shards still assemble. An edit to the package does not."""
    import hashlib
    from pathlib import Path

    import jaxmem

    a = provenance.record(devices=False)
    assert provenance.mismatch(a, dict(a, git_revision="0" * 40, git_dirty=True)) == []
    assert provenance.mismatch(a, dict(a, jaxmem_source="f" * 64)) == ["jaxmem_source"]
    root = Path(jaxmem.__file__).resolve().parent        # brute force, independently of the module
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    assert a["jaxmem_source"] == h.hexdigest()


def test_imported_run_damage_advises_a_new_import(tmp_path):
    from jaxmem.runs import import_arrays, score

    r = np.random.default_rng(0)
    keep = r.random((6, 40)) < 0.5
    import_arrays(tmp_path / "imp", keep, r.normal(size=(6, 40, 1, 3)).astype(np.float32),
                  r.integers(0, 3, 40))
    _flip(tmp_path / "imp" / "logits.npy")
    with pytest.raises(Exception, match="imported and cannot be rebuilt"):
        score(tmp_path / "imp", log=lambda *a: None)


def test_a_resume_on_changed_inputs_with_the_same_labels_is_refused(tmp_path, monkeypatch):
    """A tokenizer or preprocessing that changed gives other inputs with the same labels and
    ids: the run's data fingerprint catches it (only labels and ids were compared), unless
    --allow-mixed-shards."""
    import dataclasses

    from jaxmem import config as cfgmod
    from jaxmem import data
    from jaxmem.io import RunError
    from jaxmem.runs import execute

    cfg = cfgmod.load_config(None, ["subsets.num_models=4", "train.epochs=1", "train.batch_size=64",
                                    "model.hidden=[16]", 'scoring.attacks=["loss"]'])
    wd = tmp_path / "w"
    execute(cfg, wd, progress=False, log=lambda *a: None)
    before = json.loads((wd / "dataset.json").read_text())["fingerprint"]
    real = data.build_dataset
    monkeypatch.setattr(data, "build_dataset",
                        lambda c: dataclasses.replace(real(c), x_train=real(c).x_train * 0.5))
    with pytest.raises(RunError, match=rf"dataset.json: the data this config gives now .* \({before}:"):
        execute(cfg, wd, progress=False, log=lambda *a: None)
    assert json.loads((wd / "dataset.json").read_text())["fingerprint"] == before   # not overwritten
    execute(cfg, wd, progress=False, log=lambda *a: None, allow_mixed_shards=True)
    assert json.loads((wd / "dataset.json").read_text())["fingerprint"] != before


# ------------------------------------------------------------------ scoring commits as one set


def _imported_run(path, rng):
    from jaxmem.runs import import_arrays

    M, N, T, C = 10, 40, 20, 3
    import_arrays(path, rng.random((M, N)) < 0.5,
                  rng.normal(size=(M, N, 1, C)).astype(np.float32), rng.integers(0, C, N),
                  test_logits=rng.normal(size=(M, T, 1, C)).astype(np.float32),
                  test_labels=rng.integers(0, C, T), overrides=['scoring.attacks=["loss"]'])
    return path


@pytest.mark.parametrize("killed_at", ["summary.json", "attacks.json"])
def test_a_rescoring_killed_before_its_summary_is_reported_not_mixed(tmp_path, rng, monkeypatch,
                                                                     capsys, killed_at):
    """Issue 21 item 6: a rescoring with other scoring.* settings, killed after (or while)
    writing results/ and before summary.json, left the previous scoring's summary beside the
    new results (show and report printed both). The readers now name the mismatch in one line;
    the same command rescores it into one set again."""
    import os

    from jaxmem.io import RunError
    from jaxmem.report.run import run_html
    from jaxmem.report.show import example_text, run_text
    from jaxmem.runs import load_run, score

    wd = _imported_run(tmp_path / "r", rng)
    quiet = lambda *a: None
    score(wd, log=quiet)
    assert "loss AUC" in run_text(wd) and "global_threshold" not in run_text(wd)
    sets = ['scoring.attacks=["loss","global_threshold"]']
    real = os.replace

    def killed(src, dst, *a, **k):   # the process dies as it would commit this file
        if str(dst).endswith(killed_at):
            raise KeyboardInterrupt("killed")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        score(wd, overrides=sets, log=quiet)
    monkeypatch.setattr(os, "replace", real)
    if killed_at == "summary.json":   # (the new scoring's results are all there)
        assert "global_threshold" in json.loads((wd / "results/attacks.json").read_text())["summary"]
    text = run_text(wd)
    assert "different scorings" in text and "loss AUC" not in text, text
    assert json.loads(run_text(wd, as_json=True))["summary"] is None
    with pytest.raises(RunError, match="different scorings"):
        run_html(wd)
    with pytest.raises(RunError, match="different scorings"):
        example_text(wd, int(load_run(wd).example_ids[0]))
    with pytest.raises(RunError, match="different scorings"):
        _ = load_run(wd).summary
    assert cli.main(["report", str(wd)]) == 2
    err = capsys.readouterr().err
    assert "different scorings" in err and len(err.strip().splitlines()) == 1
    # the same command again: one set, shown whole
    score(wd, overrides=sets, log=quiet)
    text = run_text(wd)
    assert "global_threshold AUC" in text and "loss AUC" in text and "different" not in text
    assert "global_threshold" in run_html(wd)
    assert load_run(wd).summary["scoring_id"] == json.loads(
        (wd / "results/scoring.json").read_text())["id"]
