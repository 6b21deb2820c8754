"""Atomic, pickle-free file I/O for run artifacts.

Every write goes to a temporary file in the destination's folder, is flushed and fsynced, and is
then renamed into place (``os.replace`` is atomic on POSIX), so a write killed midway leaves the
previous version intact. ``.npy`` files are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["RunError", "atomic_path", "save_npy", "load_npy", "save_json", "load_json",
           "save_text", "atomic_dir", "remove_stale_tmp", "Digest", "file_digest", "check_digest",
           "fmt_bytes", "HashingWriter", "os_error_line"]


class RunError(RuntimeError):
    """A problem with a run directory or its files; the message names the file."""


def _read_umask() -> int:
    mask = os.umask(0o022)   # read once at import (os.umask is process-wide, not thread-safe)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path next to ``path``; on success fsync and rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; give a new file's usual mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.filename and not str(e.filename).startswith(str(tmp)):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None   # (name the file written)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder next to ``path``; on success rename it onto ``path`` (which must
    not exist). Used for a chunk's shard: either all of its files are there or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)   # mkdtemp makes 0700
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.filename and not str(e.filename).startswith(str(tmp)):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npy(path, array) -> dict:
    """Write ``array`` atomically as ``.npy`` (no pickle); returns the file's :class:`Digest`
    (hashed from the bytes as they are written: the file is not read back)."""
    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"{path}: refusing to save an object array (it would need pickle)")
    with atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as f:
            w = HashingWriter(f)
            np.lib.format.write_array(w, array, allow_pickle=False)
    return w.digest.result()


def load_npy(path, mmap: bool = False) -> np.ndarray:
    """Load a ``.npy`` without pickle; truncated, corrupt or pickled files raise RunError."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: file not found")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise RunError(f"{path}: holds pickled objects; refusing to load it") from None
        raise RunError(f"{path}: corrupt or truncated .npy ({e})") from None
    except (OSError, EOFError) as e:
        raise RunError(f"{path}: corrupt or truncated .npy ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise RunError(f"{path}: not a single .npy array")
    if mmap and arr.dtype == object:
        raise RunError(f"{path}: holds pickled objects; refusing to load it")
    return arr


def save_json(path, obj) -> None:
    save_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def load_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: corrupt JSON ({e})") from None


def save_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


# The names atomic_path/atomic_dir give their temporaries: ".NAME." + mkstemp's 8 random
# characters + ".tmp" (+ the suffix).
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def stale_tmp(folder, recursive_into=("shards", "results")) -> list:
    """Temporaries of killed writes in ``folder`` and its ``recursive_into`` subfolders."""
    folder = Path(folder)
    return [p for d in [folder] + [folder / s for s in recursive_into] if d.is_dir()
            for p in d.iterdir() if _TMP_NAME.match(p.name)]


def remove_stale_tmp(folder, recursive_into=("shards", "results")) -> list:
    """Delete temporaries left by writes that were killed midway (they can be as large as the
    run's logits) in ``folder`` and its ``recursive_into`` subfolders; return what was removed.
    Call it only while no other process writes into ``folder``."""
    removed = stale_tmp(folder, recursive_into)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return removed


def disk_bytes(paths) -> int:
    """Bytes the files under ``paths`` (files or folders; missing ones count 0) take on disk."""
    total = 0
    for p in map(Path, paths):
        files = [p] if p.is_file() else (f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                if not f.is_symlink():
                    total += f.stat().st_blocks * 512
    return total


# ------------------------------------------------------------------------------ checksums

#: Files are hashed in segments of this many bytes (SHA-256 each), so that a large file can be
#: checked in part (some segments) or in parallel, and a damaged one located.
SEGMENT = 64 << 20


class Digest:
    """SHA-256 of each :data:`SEGMENT`-byte segment of a byte stream; :meth:`result` is the
    JSON-able record ``{"algorithm", "segment", "size", "sha256": [hex per segment]}``."""

    def __init__(self, segment: int = SEGMENT):
        self.segment = segment
        self.size, self.parts, self._h, self._fill = 0, [], hashlib.sha256(), 0

    def update(self, data) -> None:
        mv = memoryview(data).cast("B")
        while len(mv):
            take = min(len(mv), self.segment - self._fill)
            self._h.update(mv[:take])
            self._fill += take
            self.size += take
            mv = mv[take:]
            if self._fill == self.segment:
                self.parts.append(self._h.hexdigest())
                self._h, self._fill = hashlib.sha256(), 0

    def result(self) -> dict:
        parts = self.parts + ([self._h.hexdigest()] if self._fill or not self.parts else [])
        return {"algorithm": "sha256", "segment": self.segment, "size": self.size, "sha256": parts}


class HashingWriter:
    """A file object that hashes what it writes into ``digest`` (with
    ``np.lib.format.write_array`` numpy then writes the data through ``write`` in pieces
    instead of ``tofile``)."""

    def __init__(self, f, digest=None):
        self.f, self.digest = f, Digest() if digest is None else digest

    def write(self, data):
        self.digest.update(data)
        return self.f.write(data)


def file_digest(path, segment: int = SEGMENT) -> dict:
    """The :class:`Digest` record of a file on disk."""
    d = Digest(segment)
    with open(path, "rb") as f:
        while chunk := f.read(segment):
            d.update(chunk)
    return d.result()


def check_digest(path, digest: dict, segments=None) -> list:
    """Compare a file with its recorded digest: ``[]`` when it matches, else what differs
    (``["size"]`` or the indices of damaged segments). ``segments``: the segment indices to
    read (default: all; a sample checks a large file in part)."""
    path = Path(path)
    size = path.stat().st_size
    if size != digest["size"]:
        return ["size"]
    seg, want = digest["segment"], digest["sha256"]
    todo = range(len(want)) if segments is None else sorted(set(segments) & set(range(len(want))))
    bad = []
    with open(path, "rb") as f:
        for i in todo:
            f.seek(i * seg)
            if hashlib.sha256(f.read(seg)).hexdigest() != want[i]:
                bad.append(i)
    return bad


def fmt_bytes(n: float) -> str:
    """A size in B, KB, MB, GB or TB (powers of 1000), three significant digits."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 999.5:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space (or choose a --workdir on a larger "
                  "disk) and rerun the same command: finished work is kept",
    errno.EDQUOT: "disk quota exceeded: free some space and rerun the same command",
    errno.EROFS: "the file system is read-only: choose a folder you can write to",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or folder",
}


def os_error_line(e: OSError) -> str:
    """One line for an operating-system error: the file, what happened, what to do."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f) or "?"
    what = _OS_ADVICE.get(e.errno, e.strerror or str(e))
    return f"{where}: {what}"
