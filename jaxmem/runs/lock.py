"""The run directory's lock: one writer at a time.

Every command that writes a run (``jaxmem run``, ``score``, ``import-*``, ``report`` into the
run) holds an exclusive advisory lock (``fcntl.flock``) on ``RUN/.jaxmem.lock`` for its whole
life. The kernel drops the lock when the process ends, however it ends (``kill -9`` included), so
a lock is never left stale. The file holds who locked the run (pid, host, command, start time),
so that a second writer is refused with one line naming the holder:
    jaxmem: error: runs/x: in use by pid 4242 on host0 since 2026-01-01 12:00:00 UTC
    (jaxmem run --workdir runs/x ...); wait for it to finish, or stop it

Locks nest within a process (scoring inside a run takes the run's own lock again). A multi-process
run is locked by process 0 (which writes every file of the run except the other processes'
shards); the other processes do not lock and write only their own shards
(:func:`wait_for_coordinator` makes them check that the lock is held by a run like theirs).
Reading a run (``jaxmem show``, :func:`jaxmem.runs.load_run`) needs no lock.

``flock`` is local to a host on some network file systems (NFS without lock support, Lustre
mounted without ``-o flock``); there the lock raises an error naming the file system problem
rather than pretending to lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import time
from pathlib import Path

from jaxmem.io import RunError
from jaxmem.runs.provenance import command_line

__all__ = ["LOCK_NAME", "run_lock", "holder", "held", "wait_for_coordinator"]

LOCK_NAME = ".jaxmem.lock"

_HELD: dict = {}   # resolved run path -> [fd, depth]


def _command() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in command_line())


def _info(extra: dict) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "since": now.strftime("%Y-%m-%d %H:%M:%S UTC"), **extra}


def holder(workdir) -> dict | None:
    """Who last locked ``workdir`` (the lock file's record), or None."""
    try:
        return json.loads((Path(workdir) / LOCK_NAME).read_text() or "null")
    except (OSError, ValueError):
        return None


def held(workdir) -> bool:
    """Whether this process holds the lock of ``workdir``."""
    return Path(workdir).resolve() in _HELD


def _describe(info) -> str:
    if not info:
        return "in use by another jaxmem process (it has not written its name yet)"
    return (f"in use by pid {info.get('pid')} on {info.get('host')} since {info.get('since')} "
            f"({info.get('command')})")


def _made_dirs(path: Path) -> list:
    """Create ``path`` and its missing parents; return the folders made, innermost first."""
    made, p = [], path
    while not p.exists():
        made.append(p)
        p = p.parent
    if not p.is_dir():
        raise RunError(f"{p}: exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return made


def _os_error(workdir: Path, e: OSError, what: str) -> RunError:
    reason = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device",
              errno.ENOTDIR: "a parent is not a directory"}.get(e.errno, e.strerror or str(e))
    return RunError(f"{workdir}: cannot {what} ({reason}); choose a --workdir you can write to")


@contextlib.contextmanager
def run_lock(workdir, **extra):
    """Hold the lock of run directory ``workdir`` (created if missing) for the ``with`` block.

    Raises :class:`~jaxmem.io.RunError` at once (no waiting) when another process holds it,
    naming that process. ``extra`` is recorded with the holder (e.g. ``num_processes``). Folders
    this call created are removed again when the block leaves them empty (a command refused at
    the door leaves nothing behind)."""
    import fcntl

    workdir = Path(workdir)
    key = workdir.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    try:
        made = _made_dirs(workdir)
    except OSError as e:
        raise _os_error(workdir, e, "create the run directory") from None
    path = workdir / LOCK_NAME
    fd = None
    try:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise _os_error(workdir, e, "write in the run directory") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                fd = None
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunError(f"{workdir}: {_describe(holder(workdir))}; wait for it to "
                                   f"finish, or stop it") from None
                raise RunError(f"{path}: the file system does not support locks ({e.strerror}); "
                               f"use a --workdir on a file system with flock") from None
            # the holder before us may have removed the file after we opened it: lock the file
            # that is at the path now
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(_info(extra)) + "\n").encode(), 0)
        _HELD[key] = [fd, 1]
        yield
    finally:
        if fd is not None:
            _HELD.pop(key, None)
            with contextlib.suppress(OSError):
                os.unlink(path)            # still holding it: nobody can lock the old inode
            os.close(fd)
        for d in made:                     # innermost first; stops at the first non-empty one
            try:
                d.rmdir()
            except OSError:
                break


def wait_for_coordinator(workdir, num_processes: int, config_hash: str,
                         timeout: float = 3600.0, grace: float = 120.0) -> dict:
    """For processes 1.. of a multi-process run: wait until process 0 has locked the run as the
    coordinator of a run like this one (``num_processes`` processes, the same config), and return
    its record. A run directory held by anything else (another run, a ``jaxmem score``) for
    ``grace`` seconds is an error naming the holder. (The record is read, not probed with flock:
    a probe could make process 0 fail to take its own lock.)"""
    workdir = Path(workdir)
    t0 = time.time()
    other, since = None, None
    while time.time() - t0 < timeout:
        info = holder(workdir)
        if info and (info.get("num_processes"), info.get("process_id"), info.get("config")) == \
                (num_processes, 0, config_hash):
            return info
        if info:
            if info != other:
                other, since = info, time.time()
            elif time.time() - since > grace:
                raise RunError(f"{workdir}: {_describe(info)}, not by process 0 of this "
                               f"{num_processes}-process run; wait for it to finish, or stop it")
        time.sleep(0.2)
    raise RunError(f"{workdir}: timed out after {timeout:.0f} s waiting for process 0 of this "
                   f"{num_processes}-process run to lock it")
