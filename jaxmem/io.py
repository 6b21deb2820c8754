"""Atomic, pickle-free file I/O for run artifacts.

Every write goes to a temporary file in the destination's folder, is flushed and fsynced, and is
then renamed into place (``os.replace`` is atomic on POSIX), so a write killed midway leaves the
previous version intact. ``.npy`` files are always read with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["RunError", "atomic_path", "save_npy", "load_npy", "save_json", "load_json",
           "save_text", "atomic_dir", "remove_stale_tmp"]


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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_npy(path, array) -> None:
    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"{path}: refusing to save an object array (it would need pickle)")
    with atomic_path(path, ".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


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
