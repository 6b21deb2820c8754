"""Provenance of a run: what produced each of its files.

``provenance.json`` in a run directory::

    {"run_id": "3f2a...",              a random id, made when the run is created (or imported)
     "created": {...},                 the record of the command that created it
     "imported": {"source": ...},      only for runs made from arrays trained elsewhere
     "invocations": [{...}, ...]}      every command that wrote the run, oldest first (last 100)

A record (:func:`record`) holds the jaxmem version, the SHA-256 of its package source
(``jaxmem_source``: every ``.py`` file of the installed ``jaxmem`` package, by path and content)
and the git revision (when jaxmem runs from a git checkout), the versions of jax, jaxlib, flax,
optax, orbax-checkpoint and numpy, the backend and device kinds, ``XLA_FLAGS`` and the ``JAX_*``
settings, the command line, host, pid, process index / count and the UTC date. Each shard stores
the record of the process that trained it (``shards/models-A-B/meta.json``: ``provenance``), since
processes (or a resumed run) can differ: :func:`mismatch` names the fields
(:data:`NUMERIC_FIELDS`) on which two shards' records differ in a way that can change the numbers,
and assembling such mixed shards is refused unless ``--allow-mixed-shards`` is given.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from jaxmem.io import load_json, save_json

__all__ = ["record", "NUMERIC_FIELDS", "mismatch", "start", "append", "load", "git_revision", "source_hash",
           "PROVENANCE", "command_line"]

PROVENANCE = "provenance.json"

#: Record fields that can change a model's numbers: shards that differ in one were trained
#: under different software or settings.
#: The package source's hash, not the git revision, decides: a commit that changes only tests,
#: docs or experiments (a new revision, the same code) must not make a running experiment's
#: shards "mixed"; a dirty checkout's edits to the package do change the hash.
NUMERIC_FIELDS = ("jaxmem", "jaxmem_source", "jax", "jaxlib", "flax", "optax", "backend",
                  "device_kind", "xla_flags")

_MAX_INVOCATIONS = 100


def _version(name: str):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_revision():
    """``(revision, dirty)`` of the git checkout jaxmem runs from, or ``(None, None)``."""
    root = Path(__file__).resolve().parent.parent.parent
    if not (root / ".git").exists():
        return None, None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        st = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if rev.returncode:
        return None, None
    return rev.stdout.strip(), bool(st.stdout.strip()) if st.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """SHA-256 (hex) of the jaxmem package's Python source: each ``.py`` file's path relative to
    the package and its bytes, in sorted order."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def command_line() -> list:
    """This process's command line (``jaxmem ...`` when run as the jaxmem command)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "/jaxmem")):
        argv[0] = "jaxmem"
    return argv


def record(*, devices: bool = True, process_id: int = 0, num_processes: int = 1) -> dict:
    """This process's provenance record (see the module docstring). ``devices=False`` leaves
    out the backend and devices (and so does not start jax's backend)."""
    rev, dirty = git_revision()
    out = {
        "jaxmem": _version("jaxmem"), "jaxmem_source": source_hash(),
        "git_revision": rev, "git_dirty": dirty,
        "jax": _version("jax"), "jaxlib": _version("jaxlib"), "flax": _version("flax"),
        "optax": _version("optax"), "orbax_checkpoint": _version("orbax-checkpoint"),
        "numpy": _version("numpy"), "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("JAX_")},
        "command": command_line(), "cwd": os.getcwd(), "host": socket.gethostname(),
        "pid": os.getpid(), "process_id": process_id, "num_processes": num_processes,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if devices:
        import jax

        devs = jax.local_devices()
        out.update(backend=jax.default_backend(), device_kind=sorted({d.device_kind for d in devs}),
                   local_devices=len(devs), devices=jax.device_count())
    return out


def mismatch(a: dict, b: dict) -> list:
    """The :data:`NUMERIC_FIELDS` on which records ``a`` and ``b`` differ (fields missing from
    either, e.g. in records of older jaxmem versions, are not compared)."""
    return [k for k in NUMERIC_FIELDS if k in a and k in b and a[k] != b[k]]


def load(workdir) -> dict:
    """The run's ``provenance.json`` ({} when it has none: runs of older jaxmem versions)."""
    p = Path(workdir) / PROVENANCE
    return load_json(p) if p.exists() else {}


def start(workdir, rec: dict, imported: dict | None = None) -> dict:
    """A new run's provenance (a fresh run id), written to ``provenance.json``."""
    prov = {"run_id": uuid.uuid4().hex, "created": rec, "invocations": [rec]}
    if imported is not None:
        prov["imported"] = imported
    save_json(Path(workdir) / PROVENANCE, prov)
    return prov


def append(workdir, rec: dict) -> dict:
    """Add a command's record to the run's ``provenance.json`` (started if missing)."""
    prov = load(workdir)
    if not prov:
        return start(workdir, rec)
    prov["invocations"] = (prov.get("invocations", []) + [rec])[-_MAX_INVOCATIONS:]
    save_json(Path(workdir) / PROVENANCE, prov)
    return prov
