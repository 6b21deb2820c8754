"""Executing a run: lock the run directory, check it, build the data, check memory and disk at
the door, draw the design, train every chunk of models that has no shard yet
(:mod:`jaxmem.runs.training`: resumable, SIGTERM-safe, one process's share of a multi-process
run), assemble the shards, score. Library code raises :class:`Interrupted` on SIGTERM; the CLI
maps it to exit status 143."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem import data as datamod
from jaxmem.config.registry import DESIGN
from jaxmem.data import DataError, dataset_fingerprint, duplicate_groups
from jaxmem.data.text_build import text_facts
from jaxmem.io import RunError, load_json, load_npy, remove_stale_tmp, save_json, save_npy
from jaxmem.models.registry import spec
from jaxmem.runs import integrity, preflight, provenance
from jaxmem.runs import workdir as W
from jaxmem.runs.lock import run_lock, wait_for_coordinator
from jaxmem.runs.score import score
from jaxmem.runs.score_lm import reference_nll
from jaxmem.runs.store import assemble, covered
from jaxmem.runs.task import task_for
from jaxmem.runs.training import Interrupted, default_chunk_size, train_models
from jaxmem.subsets import make_design

__all__ = ["execute", "train_models", "Interrupted", "default_chunk_size", "config_hash"]


def config_hash(cfg) -> str:
    """A short hash of a config (its resolved dict), to tell runs apart."""
    text = json.dumps(cfgmod.to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _design_blocks(cfg, old_blocks):
    """Keep blocks for ``cfg.subsets.num_models`` models, extending the stored ones."""
    M = cfg.subsets.num_models
    blocks = list(old_blocks or [])
    have = sum(b["count"] for b in blocks)
    if M < have:
        raise RunError(f"subsets.num_models: the run already has {have} models; it can grow, "
                       f"not shrink (got {M})")
    if M > have:
        if blocks and not DESIGN.get(cfg.subsets.design.name).capabilities["grows"]:
            raise RunError(f"subsets.num_models: runs with design {cfg.subsets.design.name!r} cannot grow")
        if blocks and cfg.subsets.design.name == "ratio" and len(cfg.subsets.design.ratios) > 1:
            raise RunError("subsets.num_models: multi-ratio runs cannot grow")
        blocks.append({"first": have, "count": M - have, "block": len(blocks)})
    return blocks


def execute(cfg: cfgmod.Config, workdir, *, overwrite: bool = False, progress: bool = True,
            process_id: int = 0, num_processes: int = 1, log=print,
            allow_mixed_shards: bool = False, delete_imported: bool = False) -> dict:
    """Train (or resume, or grow) the run in ``workdir``, then score it. Returns the summary.

    Process 0 holds the run directory's lock (:func:`jaxmem.runs.lock.run_lock`) throughout;
    the other processes of a multi-process run wait for it to lock the run, then write only
    their own shards. ``allow_mixed_shards``: assemble shards trained under different software
    or settings (refused by default). ``delete_imported``: with ``overwrite``, also delete a run
    imported from arrays (which cannot be retrained)."""
    workdir = Path(workdir)
    kw = dict(overwrite=overwrite, progress=progress, process_id=process_id,
              num_processes=num_processes, log=log, allow_mixed_shards=allow_mixed_shards,
              delete_imported=delete_imported)
    if process_id != 0:
        wait_for_coordinator(workdir, num_processes, config_hash(cfg))
        return _execute(cfg, workdir, **kw)
    with run_lock(workdir, process_id=0, num_processes=num_processes, config=config_hash(cfg)):
        return _execute(cfg, workdir, **kw)


def _execute(cfg, workdir: Path, *, overwrite, progress, process_id, num_processes, log,
             allow_mixed_shards, delete_imported) -> dict:
    blocks = W.check_workdir(workdir, cfg, overwrite, delete_imported) if process_id == 0 else None
    if process_id != 0:  # the coordinator's design, once it covers this many models
        design = workdir / "design.json"
        W.wait_for(design, "the coordinator's design", ready=lambda: sum(
            b["count"] for b in load_json(design)["blocks"]) == cfg.subsets.num_models)
        blocks = load_json(design)["blocks"]

    try:
        ds = datamod.build_dataset(cfg)   # (looked up at call time: tests replace it)
    except DataError as e:
        if cfg.data.source.startswith("external:"):
            raise RunError(str(e)) from None
        raise
    if spec(cfg.model.name).tokens and not np.issubdtype(ds.x_train.dtype, np.integer):
        raise RunError(f"model.name: the transformer takes token sequences, and data.source="
                       f"{cfg.data.source!r} gives {ds.x_train.dtype} inputs; use a token source "
                       f"(e.g. data.source=digits_tokens)")
    if cfg.scoring.influence_top_k > len(ds.y_train):
        raise RunError(f"scoring.influence_top_k: {cfg.scoring.influence_top_k} is more than the "
                       f"{len(ds.y_train)} training examples")
    if cfg.scoring.reference_nll:   # one NLL per training sequence: N is known now, before training
        reference_nll(cfg, len(ds.y_train))
    blocks = _design_blocks(cfg, blocks)
    M = cfg.subsets.num_models
    if process_id == 0:   # memory and disk at the door: before the design is drawn
        preflight.check(cfg, ds, log=log)
        done = 0 if overwrite else int(covered(workdir, M).sum())
        W.check_disk(workdir, W.storage_plan(cfg, M, len(ds.y_train), len(ds.y_test),
                                             int(ds.num_classes), done, not overwrite and
                                             (workdir / ".assembled.json").exists(),
                                             seq_len=task_for(cfg.model.name).sequence_length(ds)),
                     log, freed=W.freed_bytes(workdir, overwrite, num_processes))
    groups = None
    if cfg.subsets.design.name == "leave_group_out":
        # an example and its duplicates form one group; with no duplicates, drop whole classes
        groups = duplicate_groups(ds) if cfg.data.duplicates else np.asarray(ds.y_train)
    # a text dataset's identical texts (natural and planted copies) are IN or OUT together
    keep, model_ratio = make_design(cfg, blocks, len(ds.y_train), groups, units=getattr(ds, "groups", None))
    preflight.check_batch(cfg, keep)
    if process_id == 0:
        _write_run(cfg, workdir, ds, keep, model_ratio, blocks, overwrite, num_processes, log,
                   allow_mixed_shards)
    else:
        W.wait_for(workdir / "keep.npy", "the coordinator's keep")

    train_models(cfg, ds, keep, blocks, workdir, progress=progress, process_id=process_id,
                 num_processes=num_processes, log=log)
    if process_id != 0:
        return {}
    if num_processes > 1:  # the other processes' shards
        W.wait_for(workdir / "shards", "the other processes' shards",
                   ready=lambda: covered(workdir, keep.shape[0]).all())
    assemble(workdir, keep.shape[0], allow_mixed=allow_mixed_shards, log=log)
    return score(workdir, log=log, dataset=ds, allow_mixed_shards=allow_mixed_shards)


def _write_run(cfg, workdir: Path, ds, keep, model_ratio, blocks, overwrite, num_processes, log,
               allow_mixed=False):
    """Process 0: (delete an overwritten run,) write the run's config, provenance and the arrays
    drawn from the config and the data; a damaged one (checksum) is rewritten, a differing one
    refused."""

    if overwrite:   # only now that the config, data and design are known to be good
        W.delete_run(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # temporaries of writes killed in an earlier attempt (shards/ only when no other process
    # may be writing there)
    remove_stale_tmp(workdir, ("shards", "results") if num_processes == 1 else ("results",))
    rec = provenance.record(num_processes=num_processes)
    if (workdir / provenance.PROVENANCE).exists():
        provenance.append(workdir, rec)
    else:
        provenance.start(workdir, rec)
    save_json(workdir / "config.json", cfgmod.to_dict(cfg))
    meta = {"name": ds.name, "num_classes": int(ds.num_classes), "num_train": len(ds.y_train),
            "num_test": len(ds.y_test), "input_shape": list(ds.x_train.shape[1:]),
            "fingerprint": dataset_fingerprint(ds), "meta": ds.meta}
    damaged = integrity.verify(workdir, integrity.DERIVED)
    sums = {}
    arrays = {"labels.npy": ds.y_train, "example_ids.npy": ds.ids_train,
              "test_labels.npy": ds.y_test, "test_ids.npy": ds.ids_test}
    for name, arr in arrays.items():
        path, arr = workdir / name, np.asarray(arr)
        if path.exists() and name not in damaged:
            old = load_npy(path)
            if old.shape != arr.shape or not np.array_equal(old, arr):
                raise RunError(f"{path}: differs from what this config's data gives (the data "
                               f"changed since the run was made?); restore the data, or start a "
                               f"new run in another --workdir")
        else:
            sums[name] = save_npy(path, arr)
    # the inputs too (a tokenizer or preprocessing that changed keeps the labels and ids): the
    # data's fingerprint (all its arrays) must be the one the run was trained on
    old = load_json(workdir / "dataset.json") if (workdir / "dataset.json").exists() else {}
    if old.get("fingerprint") not in (None, meta["fingerprint"]) and not allow_mixed:
        raise RunError(f"{workdir / 'dataset.json'}: the data this config gives now (fingerprint "
                       f"{meta['fingerprint']}) differs from the data the run was trained on "
                       f"({old['fingerprint']}: the files, their preprocessing or a tokenizer "
                       f"changed?); restore them, start a new run in another --workdir, or pass "
                       f"--allow-mixed-shards to go on with the new data")
    save_json(workdir / "dataset.json", meta)
    if hasattr(ds, "texts_train"):   # a text dataset: its texts and per-example facts
        save_json(workdir / "text.json", text_facts(ds))
    path = workdir / "keep.npy"
    if path.exists() and "keep.npy" not in damaged:
        prev = load_npy(path)
        if prev.shape[1] != keep.shape[1] or not np.array_equal(prev, keep[: prev.shape[0]]):
            raise RunError(f"{path}: differs from this config's design (a different jaxmem "
                           f"version drew it?); start a new run in another --workdir")
    sums["keep.npy"] = save_npy(path, keep)
    sums["model_ratio.npy"] = save_npy(workdir / "model_ratio.npy", model_ratio)
    integrity.record(workdir, sums)
    for name, what in damaged.items():
        if name in sums:
            log(f"{workdir / name}: was damaged ({what}); rewritten from the config and the data")
    save_json(workdir / "design.json", {"design": cfg.subsets.design.name, "blocks": blocks})
