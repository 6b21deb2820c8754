"""Workdir policy of a run: what may change between invocations, refusing foreign or
differently configured folders, deleting a run (--overwrite), disk accounting, and waiting for
other processes' files."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from jaxmem import config as cfgmod
from jaxmem.io import RunError, disk_bytes, load_json, remove_stale_tmp, stale_tmp
from jaxmem.io import fmt_bytes as B
from jaxmem.runs.examples import score_bytes
from jaxmem.runs.provenance import load
from jaxmem.runs.records import record_layout
from jaxmem.runs.store import RUN_ENTRIES, covered

__all__ = ["check_workdir", "check_overwrite", "is_imported", "delete_run", "storage_plan",
           "freed_bytes", "check_disk", "wait_for"]

# Config fields that may change between invocations of the same run. chunk_size and vmap_size
# change float rounding (~1e-7: XLA batches the arithmetic differently), so bit-identity of a
# resumed run holds at a fixed chunk_size / vmap_size; finished shards are kept either way.
# experiment.full_overrides: the file's list of overrides of its full variant, already applied to
# the rest of the config (it shrank when the airbench94 recipe moved to a preset).
_MUTABLE = {"subsets.num_models", "train.chunk_size", "train.vmap_size", "train.checkpoint_every",
            "signals.batch_size", "data.data_dir", "experiment.full_overrides"}


def _mutable(key: str) -> bool:
    """Config keys a stored run may be resumed or rescored with changed: how it is chunked, and
    every ``scoring.*`` key (scoring reads the stored logits only)."""
    return key in _MUTABLE or key.startswith("scoring.")


def delete_run(workdir: Path) -> None:
    """--overwrite: delete jaxmem's own entries of a run directory, nothing else."""
    if not (workdir / "config.json").exists():   # (a foreign folder was refused by check_workdir)
        return
    for name in RUN_ENTRIES[1:] + RUN_ENTRIES[:1]:   # config.json last: a killed delete resumes
        p = workdir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    remove_stale_tmp(workdir)


def is_imported(workdir: Path) -> bool:
    """Whether the run in ``workdir`` was made from arrays trained elsewhere (it cannot be
    retrained: deleting it loses its logits)."""
    if load(workdir).get("imported") is not None:
        return True
    design = workdir / "design.json"
    return design.exists() and load_json(design).get("design") == "external"


def _num_trained(workdir: Path) -> int:
    design = workdir / "design.json"
    M = sum(b["count"] for b in load_json(design)["blocks"]) if design.exists() else 0
    return int(covered(workdir, M).sum()) if M else 0


def check_overwrite(workdir: Path, delete_imported: bool) -> None:
    """``--overwrite`` of an imported run (whose logits cannot be made again here) needs
    ``--delete-imported`` as well."""
    if (workdir / "config.json").exists() and is_imported(workdir) and not delete_imported:
        raise RunError(f"{workdir}: holds an imported run, whose logits came from outside jaxmem "
                       f"and cannot be retrained; --overwrite would delete them. Choose another "
                       f"--workdir, or add --delete-imported to delete them")


def check_workdir(workdir: Path, cfg, overwrite: bool, delete_imported: bool = False):
    """Refuse to mix configs in one run directory; return the stored design blocks (or None).
    With ``overwrite`` only check that the folder may be deleted (see :func:`delete_run`): a
    jaxmem run, and an imported one only with ``delete_imported``."""
    cfg_path = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise RunError(f"{workdir}: exists and is not a directory")
    if overwrite:
        if workdir.exists() and not cfg_path.exists() and any(
                p for p in workdir.iterdir() if not p.name.startswith(".")):
            raise RunError(f"{workdir}: not a jaxmem run; refusing to delete it (choose another --workdir)")
        check_overwrite(workdir, delete_imported)
        return None
    if not workdir.exists():
        return None
    if not cfg_path.exists():
        if any(p for p in workdir.iterdir() if not p.name.startswith(".")):
            raise RunError(f"{workdir}: exists, is not empty and is not a jaxmem run")
        return None
    old = load_json(cfg_path)
    try:
        cfgmod.from_dict(old)
    except cfgmod.ConfigError as e:
        raise RunError(f"{cfg_path}: stored config is invalid ({e})") from None
    # (a config.json written before choices held their own fields is compared in today's form)
    a, b = cfgmod.flatten(cfgmod.upgrade_stored(old)), cfgmod.flatten(cfgmod.to_dict(cfg))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not _mutable(k))
    if diff:
        k = diff[0]
        if is_imported(workdir):
            fix = "it is an imported run: score it with jaxmem score, it cannot be trained"
        else:
            n = _num_trained(workdir)
            fix = (f"rerun with the same config to resume, or choose another --workdir for this "
                   f"one (--overwrite would delete the {n} trained models)")
        raise RunError(f"{workdir}: was written with a different config ({k}: {a.get(k)!r} there, "
                       f"{b.get(k)!r} now{' and more' if len(diff) > 1 else ''}); {fix}")
    design = workdir / "design.json"
    return load_json(design)["blocks"] if design.exists() else None


def lm_output_bytes(cfg, num_train: int, num_test: int, seq_len: int) -> int:
    """Bytes of one language model's stored per-token signals (:data:`jaxmem.runs.lm.CHUNK_ARRAYS`):
    log-probability, μ and σ on the training sequences and the log-probability on the test ones
    ([N, L − 1] and [T, L − 1] in ``signals.dtype``), a correctness byte per training token and
    float32 NLLs [N + T]."""
    item = 2 if cfg.signals.dtype == "float16" else 4
    T = seq_len - 1
    return (3 * num_train + num_test) * T * item + num_train * T + 4 * (num_train + num_test)


def storage_plan(cfg, num_models: int, num_train: int, num_test: int, num_classes: int,
                 num_done: int = 0, assembled: bool = False, seq_len: int = 0) -> dict:
    """Bytes a run writes: per model, its logits on the training and test sets ([N + T, A, C] in
    ``signals.dtype``) and its training-dynamics records (``train.records``,
    ``train.record_forgetting``: :func:`jaxmem.runs.records.record_layout`). A
    language-model run (``seq_len`` = L > 0) stores per-token signals instead
    (:func:`lm_output_bytes`).
    :func:`assemble` copies the shards into the run's arrays, so they are on disk twice.
    ``todo`` counts what is still to be written (shards of untrained models, and the assembled
    copy unless a finished run has it) and the per-example attack scores that scoring writes
    (``scores``: :func:`jaxmem.runs.examples.score_bytes`, the targets' [T, N] per attack)."""
    item = 2 if cfg.signals.dtype == "float16" else 4
    per_model = (num_train + num_test) * len(cfg.signals.queries) * num_classes * item + 5
    if seq_len:
        per_model = lm_output_bytes(cfg, num_train, num_test, seq_len) + 5

    records = sum(math.prod(shape) * dtype.itemsize for shape, dtype in record_layout(cfg, num_train).values())
    per_model += records
    total = 2 * num_models * per_model
    todo = (num_models - num_done) * per_model
    if not (assembled and num_done >= num_models):
        todo += num_models * per_model
    # (a language-model run's scoring writes no per-example score files: jaxmem.runs.score_lm)
    scores = 0 if seq_len else score_bytes(min(cfg.scoring.targets or num_models, num_models),
                                           num_train, len(cfg.scoring.attacks), cfg.signals.dtype)
    return {"per_model": per_model, "total": total, "todo": todo + scores, "scores": scores,
            "records_per_model": records, "language_model": bool(seq_len)}


def freed_bytes(workdir: Path, overwrite: bool, num_processes: int = 1) -> int:
    """Bytes execute deletes before training: the old run's entries with ``overwrite`` (only a
    jaxmem run's: see delete_run), and the temporaries of killed writes."""
    if not workdir.is_dir():
        return 0
    sub = ("shards", "results") if num_processes == 1 or overwrite else ("results",)
    freed = disk_bytes(stale_tmp(workdir, sub))
    if overwrite and (workdir / "config.json").exists():
        freed += disk_bytes(workdir / n for n in RUN_ENTRIES)
    return freed


def check_disk(workdir: Path, plan: dict, log=print, free=None, freed: int = 0):
    """Refuse to start a run whose signals cannot fit on the disk of ``workdir`` (before hours of
    training end in a full disk); log the size when it is large. ``freed``: bytes the run
    deletes before it writes (an overwritten run, temporaries of killed writes)."""
    if free is None:
        where = workdir
        while not where.exists():   # the run folder is made later
            where = where.parent
        free = shutil.disk_usage(where).free
    free += freed

    if plan["total"] > 1e9:
        log(f"signals: {B(plan['total'])} on disk in all (shards + assembled arrays); "
            f"{B(plan['todo'])} still to write, {B(free)} free")
    if plan["todo"] > free:
        raise RunError(
            f"{workdir}: this run still writes about {B(plan['todo'])} of "
            f"{'per-token LM signals' if plan.get('language_model') else 'logits'}"
            f"{' and training records' if plan.get('records_per_model') else ''} "
            f"({B(plan['per_model'])} per model, stored twice: shards and assembled "
            f"arrays) but only {B(free)} is free there; "
            f"{'shorter data.max_len, ' if plan.get('language_model') else 'fewer signals.queries, '}"
            f"signals.dtype=float16, "
            f"{'fewer train.records.fields or train.records.dtype=float16, ' if plan.get('records_per_model') else ''}"
            f"or a --workdir on a larger disk")


def wait_for(path: Path, what: str, timeout: float = 3600.0, ready=None):
    t0 = time.time()
    while not (path.exists() and (ready is None or _safe(ready))):
        if time.time() - t0 > timeout:
            raise RunError(f"timed out waiting for {what} ({path})")
        time.sleep(0.2)


def _safe(pred) -> bool:
    try:
        return bool(pred())
    except RunError:
        return False
