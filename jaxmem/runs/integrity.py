"""Checksums of a run's arrays, checked before a run is scored or reported.

Every array of a run is hashed once, as it is written (:class:`jaxmem.io.Digest`: SHA-256 of
each 64 MiB segment, computed from the bytes on their way to the disk, so nothing is read back):
``checksums.json`` holds the run's arrays' digests and each shard's ``meta.json`` its own.

:func:`verify` compares the files with them. By default (``full=False``) files up to
:data:`FULL_BYTES` are checked whole and larger ones (the logits of a big run) by their size and
a sample of :data:`SAMPLE_SEGMENTS` segments (the first, the last and some spread between):
reading a 48 GB ``logits.npy`` twice (once to check, once to score) would add about half a
minute of CPU (SHA-256 runs at ~1.7 GB/s) and the disk time of a second pass
(``benchmarks/checksums.py`` measures both); ``full=True`` (``jaxmem score --verify full``)
checks every byte.

:func:`ensure_intact` acts on what it finds, with the smallest fix: an assembled array whose
shards are intact is rebuilt from them; a damaged shard names the folder to delete (its models
retrain); ``keep.npy`` and the other arrays drawn from the config and the data are rewritten by
rerunning the run's command (nothing retrains); an imported run is re-imported.
"""

from __future__ import annotations

from pathlib import Path

from jaxmem.io import RunError, check_digest, file_digest, load_json, save_json
from jaxmem.runs import provenance
from jaxmem.runs.provenance import load
from jaxmem.runs.records import RECORD_FILES
from jaxmem.runs.store import ASSEMBLED, assemble, shard_spans

__all__ = ["CHECKSUMS", "FULL_BYTES", "SAMPLE_SEGMENTS", "record", "stored", "verify",
           "ensure_intact", "note_mixed", "record_missing", "DERIVED"]

CHECKSUMS = "checksums.json"
#: Files up to this size are checked whole by default.
FULL_BYTES = 1 << 30
#: Segments checked of a larger file by default (first, last, and spread between).
SAMPLE_SEGMENTS = 8
#: Arrays drawn from the config and the data (rewritten by rerunning the run's command).
DERIVED = ("keep.npy", "model_ratio.npy", "labels.npy", "example_ids.npy", "test_labels.npy",
           "test_ids.npy")


def stored(workdir) -> dict:
    p = Path(workdir) / CHECKSUMS
    return load_json(p).get("files", {}) if p.exists() else {}


def record(workdir, digests: dict) -> None:
    """Add ``{file name: digest}`` to the run's ``checksums.json`` (one writer: the lock holder)."""
    p = Path(workdir) / CHECKSUMS
    data = load_json(p) if p.exists() else {}
    data.setdefault("files", {}).update(digests)
    save_json(p, data)


def record_missing(workdir, log=print) -> None:
    """Record the digests of a run's arrays that have none (a run of an older jaxmem, after it
    was scored: its files are trusted from then on)."""
    workdir = Path(workdir)
    have = stored(workdir)
    names = [n for n in DERIVED + ASSEMBLED + RECORD_FILES
             if n not in have and (workdir / n).is_file()]
    if names:
        record(workdir, {n: file_digest(workdir / n) for n in names})
        log(f"{workdir}: recorded checksums of {len(names)} files that had none")


def note_mixed(workdir, fields) -> None:
    p = Path(workdir) / CHECKSUMS
    data = load_json(p) if p.exists() else {}
    data["mixed_shards"] = list(fields)
    save_json(p, data)


def _sample(n: int) -> list:
    """Indices of the segments checked of a large file: first, last, and spread between."""
    if n <= SAMPLE_SEGMENTS:
        return list(range(n))
    if SAMPLE_SEGMENTS < 2:
        return [0]
    step = (n - 1) / (SAMPLE_SEGMENTS - 1)
    return sorted({round(i * step) for i in range(SAMPLE_SEGMENTS)})


def verify(workdir, names=None, *, full: bool = False) -> dict:
    """``{file name: what is wrong}`` for the run's recorded files that are missing or differ
    from their digest (checked whole, or sampled above :data:`FULL_BYTES` unless ``full``)."""
    workdir = Path(workdir)
    bad = {}
    for name, digest in stored(workdir).items():
        if names is not None and name not in names:
            continue
        path = workdir / name
        if not path.is_file():
            bad[name] = "missing"
            continue
        whole = full or digest["size"] <= FULL_BYTES
        diff = check_digest(path, digest, None if whole else _sample(len(digest["sha256"])))
        if diff == ["size"]:
            bad[name] = f"size {path.stat().st_size} bytes, {digest['size']} when written"
        elif diff:
            seg = digest["segment"]
            where = ", ".join(f"{i * seg}..{min((i + 1) * seg, digest['size'])}" for i in diff[:3])
            bad[name] = f"checksum mismatch at bytes {where}{' and more' if len(diff) > 3 else ''}"
    return bad


def _shards_intact(workdir: Path, name: str, num_models: int) -> tuple:
    """``(spans, damaged shard folders)`` for rebuilding ``name`` from the shards."""
    spans = shard_spans(workdir, num_models)
    damaged = []
    for _, _, d in spans:
        meta = load_json(d / "meta.json") if (d / "meta.json").exists() else {}
        want = meta.get("checksums", {}).get(name)
        if not (d / name).is_file() or (want is not None and check_digest(d / name, want)):
            damaged.append(d)
    return spans, damaged


def _rerun_hint(workdir: Path) -> str:
    prov = load(workdir)
    cmd = (prov.get("created") or {}).get("command")
    if cmd and "run" in cmd:
        import shlex

        return f"rerun its command ({' '.join(shlex.quote(c) for c in cmd)})"
    return f"rerun `jaxmem run ... --workdir {workdir}` with its config"


def ensure_intact(workdir, num_models: int, *, full: bool = False, log=print,
                  allow_mixed: bool = False) -> None:
    """Verify the run's files (:func:`verify`) and repair what can be repaired: an assembled
    array with intact shards is reassembled (logged). Anything else raises
    :class:`~jaxmem.io.RunError` naming the file and the smallest fix. A run without
    ``checksums.json`` (written by an older jaxmem) passes: :func:`record_missing` gives it one
    once it has been scored."""
    workdir = Path(workdir)
    bad = verify(workdir, full=full)
    if not bad:
        return
    imported = provenance.load(workdir).get("imported")
    for name, what in bad.items():
        if imported is not None:
            raise RunError(f"{workdir / name}: damaged ({what}); this run was imported and cannot "
                           f"be rebuilt here: import it again into a new --workdir")
        if name in DERIVED:
            raise RunError(f"{workdir / name}: damaged ({what}); it is drawn from the config and "
                           f"the data: {_rerun_hint(workdir)} to rewrite it (no model retrains)")
    rebuild = [n for n in bad if n in ASSEMBLED or n in RECORD_FILES]
    for name in rebuild:
        _, damaged = _shards_intact(workdir, name, num_models)
        if damaged:
            raise RunError(f"{workdir / name}: damaged ({bad[name]}), and so is its shard "
                           f"{damaged[0]}{' and more' if len(damaged) > 1 else ''}: delete "
                           f"{' '.join(str(d) for d in damaged)} and {_rerun_hint(workdir)} to "
                           f"retrain those models")
    if rebuild:
        assemble(workdir, num_models, names=rebuild, force=True, allow_mixed=allow_mixed, log=log)
        for name in rebuild:
            log(f"{workdir / name}: was damaged ({bad[name]}); rebuilt from its intact shards")
    rest = [n for n in bad if n not in rebuild]
    if rest:
        raise RunError(f"{workdir / rest[0]}: damaged ({bad[rest[0]]}); delete it and "
                       f"{_rerun_hint(workdir)}")
