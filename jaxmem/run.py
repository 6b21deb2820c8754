"""A run: its directory, how it is trained, resumed, grown, scored and loaded.

Layout of a run directory (plain formats: ``.npy`` without pickle, JSON, CSV, PNG)::

    config.json          the validated config (refused on resume if it differs)
    design.json          keep blocks: which models were drawn together (growing a run adds one)
    dataset.json         the dataset's source, transforms and fingerprint
    keep.npy             bool [M, N]           model m trained on example i
    model_ratio.npy      float [M]             subset ratio of each model (C-scores)
    labels.npy, example_ids.npy, test_labels.npy, test_ids.npy
    shards/models-A-B/   one finished chunk of models, written atomically (a folder rename)
    ckpt/models-A-B/     orbax checkpoints of the chunk in training (deleted when it is done)
    logits.npy           [M, N, A, C]   eval-mode logits on train examples, A augmentation queries
    test_logits.npy      [M, T, A, C]
    diverged.npy         bool [M]      models frozen because their loss/params became non-finite
    results/             memorization.csv, attacks.json, roc.png, memorization_hist.png
    summary.json

Every stage is restartable: a killed run, rerun with the same command, skips what is done.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import RunError, atomic_dir, load_json, load_npy, save_json, save_npy, save_text

__all__ = ["Run", "load_run", "execute", "score", "RunError", "import_arrays", "import_lira",
           "export_lira"]

# Config fields that may change between invocations of the same run. chunk_size and vmap_size
# change float rounding (~1e-7: XLA batches the arithmetic differently), so bit-identity of a
# resumed run holds at a fixed chunk_size / vmap_size; finished shards are kept either way.
_MUTABLE = {"subsets.num_models", "train.chunk_size", "train.vmap_size", "train.checkpoint_every",
            "signals.batch_size", "data.data_dir"}


def _mutable(key: str) -> bool:
    """Config keys a stored run may be resumed or rescored with changed: how it is chunked, and
    every ``scoring.*`` key (scoring reads the stored logits only)."""
    return key in _MUTABLE or key.startswith("scoring.")


@dataclasses.dataclass
class Run:
    """A stored run. Arrays are read on first use; ``logits`` is memory-mapped."""

    path: Path

    def _npy(self, name, mmap=False):
        return load_npy(self.path / name, mmap=mmap)

    @property
    def config(self) -> cfgmod.Config:
        return cfgmod.from_dict(load_json(self.path / "config.json"))

    @property
    def keep(self):
        return self._npy("keep.npy")

    @property
    def labels(self):
        return self._npy("labels.npy")

    @property
    def test_labels(self):
        return self._npy("test_labels.npy")

    @property
    def example_ids(self):
        return self._npy("example_ids.npy")

    @property
    def test_ids(self):
        return self._npy("test_ids.npy")

    @property
    def model_ratio(self):
        return self._npy("model_ratio.npy")

    @property
    def logits(self):
        return self._npy("logits.npy", mmap=True)

    @property
    def test_logits(self):
        return self._npy("test_logits.npy", mmap=True)

    @property
    def diverged(self):
        return self._npy("diverged.npy")

    @property
    def correct_by_epoch(self):
        p = self.path / "correct_by_epoch.npy"
        return load_npy(p, mmap=True) if p.exists() else None

    @property
    def dataset(self) -> dict:
        return load_json(self.path / "dataset.json")

    @property
    def summary(self) -> dict:
        return load_json(self.path / "summary.json")

    @property
    def num_models(self) -> int:
        return int(self.keep.shape[0])


def load_run(path) -> Run:
    """Open a finished run directory (see the module docstring for its files)."""
    path = Path(path)
    for f in ("config.json", "keep.npy", "labels.npy", "logits.npy"):
        if not (path / f).exists():
            raise RunError(f"{path}: not a finished jaxmem run ({f} is missing)")
    run = Run(path)
    keep, logits = run.keep, run.logits
    if keep.dtype != bool or keep.ndim != 2:
        raise RunError(f"{path / 'keep.npy'}: expected a bool [M, N] array, got {keep.dtype} {keep.shape}")
    if logits.shape[:2] != keep.shape:
        raise RunError(f"{path}: logits {logits.shape} do not match keep {keep.shape}")
    return run


# ----------------------------------------------------------------------------------------------
# Data and design
# ----------------------------------------------------------------------------------------------

def build_dataset(cfg: cfgmod.Config):
    """Load the configured source and apply the configured transforms, in a fixed order."""
    from jaxmem import data as D

    d = cfg.data
    if d.source.startswith("external:"):
        raise RunError(f"data.source={d.source!r}: this run was imported from arrays; it can be "
                       f"scored (jaxmem score) and reported, not trained")
    ds = D.load(d.source, data_dir=d.data_dir)
    if d.max_train or d.max_test:
        ds = dataclasses.replace(
            ds,
            x_train=ds.x_train[: d.max_train or None], y_train=ds.y_train[: d.max_train or None],
            ids_train=ds.ids_train[: d.max_train or None],
            x_test=ds.x_test[: d.max_test or None], y_test=ds.y_test[: d.max_test or None],
            ids_test=ds.ids_test[: d.max_test or None],
            meta={**ds.meta, "max_train": d.max_train, "max_test": d.max_test})
    if d.long_tail_classes and d.long_tail_fraction < 1.0:
        ds = D.long_tail(ds, cfg.seed, classes=d.long_tail_classes, keep_fraction=d.long_tail_fraction)
    if d.duplicates:
        ds = D.duplicate(ds, cfg.seed, num=d.duplicates, copies=d.duplicate_copies)
    if d.canaries:
        ds = D.insert_canaries(ds, cfg.seed, num=d.canaries, kind=d.canary_kind)
    if d.label_noise:
        ds = D.label_noise(ds, d.label_noise, d.noise_seed)
    D.validate(ds)
    return ds


def _design_blocks(cfg, old_blocks):
    """Keep blocks for ``cfg.subsets.num_models`` models, extending the stored ones."""
    M = cfg.subsets.num_models
    blocks = list(old_blocks or [])
    have = sum(b["count"] for b in blocks)
    if M < have:
        raise RunError(f"subsets.num_models: the run already has {have} models; it can grow, "
                       f"not shrink (got {M})")
    if M > have:
        if blocks and cfg.subsets.design not in ("balanced", "bernoulli", "ratio"):
            raise RunError(f"subsets.num_models: runs with design {cfg.subsets.design!r} cannot grow")
        if blocks and cfg.subsets.design == "ratio" and len(cfg.subsets.ratios) > 1:
            raise RunError("subsets.num_models: multi-ratio runs cannot grow")
        blocks.append({"first": have, "count": M - have, "block": len(blocks)})
    return blocks


def make_design(cfg, blocks, num_examples, groups=None):
    from jaxmem.subsets import make_keep

    s = cfg.subsets
    keeps, ratios = [], []
    for b in blocks:
        k, r = make_keep(s.design, cfg.seed, b["count"], num_examples, pkeep=s.pkeep,
                         ratios=tuple(s.ratios), k=s.k, groups=groups, block=b["block"],
                         first_model=b["first"])
        keeps.append(k)
        ratios.append(r)
    return np.concatenate(keeps), np.concatenate(ratios)


# ----------------------------------------------------------------------------------------------
# Executing a run
# ----------------------------------------------------------------------------------------------

class _Stop(Exception):
    pass


# What jaxmem writes in a run directory (all that --overwrite deletes).
_RUN_ENTRIES = ("config.json", "design.json", "dataset.json", "keep.npy", "model_ratio.npy",
                "labels.npy", "example_ids.npy", "test_labels.npy", "test_ids.npy", "logits.npy",
                "test_logits.npy", "diverged.npy", "final_loss.npy", "correct_by_epoch.npy",
                "summary.json", "report.html", ".assembled.json", "shards", "ckpt", "results",
                "variants")


def _delete_run(workdir: Path) -> None:
    """--overwrite: delete jaxmem's own entries of a run directory, nothing else."""
    from jaxmem.io import remove_stale_tmp

    if not (workdir / "config.json").exists():   # (a foreign folder was refused by _check_workdir)
        return
    for name in _RUN_ENTRIES[1:] + _RUN_ENTRIES[:1]:   # config.json last: a killed delete resumes
        p = workdir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    remove_stale_tmp(workdir)


def _check_workdir(workdir: Path, cfg, overwrite: bool):
    """Refuse to mix configs in one run directory; return the stored design blocks (or None).
    With ``overwrite`` only check that the folder may be deleted (see :func:`_delete_run`)."""
    cfg_path = workdir / "config.json"
    if workdir.exists() and not workdir.is_dir():
        raise RunError(f"{workdir}: exists and is not a directory")
    if overwrite:
        if workdir.exists() and not cfg_path.exists() and any(
                p for p in workdir.iterdir() if not p.name.startswith(".")):
            raise RunError(f"{workdir}: not a jaxmem run; refusing to delete it (choose another --workdir)")
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
    a, b = cfgmod._flatten(old), cfgmod._flatten(cfgmod.to_dict(cfg))
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not _mutable(k))
    if diff:
        k = diff[0]
        raise RunError(f"{workdir}: was written with a different config ({k}: {a.get(k)!r} there, "
                       f"{b.get(k)!r} now{' and more' if len(diff) > 1 else ''}); rerun with the "
                       f"same config, or pass --overwrite to start over")
    design = workdir / "design.json"
    return load_json(design)["blocks"] if design.exists() else None


def _write_or_check(path: Path, array):
    if path.exists():
        old = load_npy(path)
        if old.shape != array.shape or not np.array_equal(old, array):
            raise RunError(f"{path}: differs from what this config produces; the data or design "
                           f"changed (pass --overwrite to start over)")
    else:
        save_npy(path, array)


def _chunks(blocks, chunk_size):
    out = []
    for b in blocks:
        for s in range(b["first"], b["first"] + b["count"], chunk_size):
            out.append((s, min(s + chunk_size, b["first"] + b["count"])))
    return out


def _runs(mask: np.ndarray, a: int, b: int):
    """Maximal [start, end) runs of True in mask[a:b]."""
    out, start = [], None
    for i in range(a, b):
        if mask[i] and start is None:
            start = i
        if not mask[i] and start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, b))
    return out


def _covered(workdir: Path, num_models: int) -> np.ndarray:
    """[M] bool: models that a finished shard holds."""
    done = np.zeros(num_models, bool)
    for d in (workdir / "shards").glob("models-*"):
        a, b = (int(x) for x in d.name.split("-")[1:])
        done[a:min(b, num_models)] = True
    return done


def _shard_name(a, b):
    return f"models-{a:06d}-{b:06d}"


def default_chunk_size(num_models: int, num_devices: int = 1) -> int:
    import jax

    per_device = 16 if jax.default_backend() == "cpu" else 256
    return max(1, min(num_models, per_device * num_devices))


def execute(cfg: cfgmod.Config, workdir, *, overwrite: bool = False, progress: bool = True,
            process_id: int = 0, num_processes: int = 1, log=print) -> dict:
    """Train (or resume, or grow) the run in ``workdir``, then score it. Returns the summary."""
    workdir = Path(workdir)
    blocks = _check_workdir(workdir, cfg, overwrite) if process_id == 0 else None
    if process_id != 0:  # the coordinator's design, once it covers this many models
        design = workdir / "design.json"
        _wait_for(design, "the coordinator's design", ready=lambda: sum(
            b["count"] for b in load_json(design)["blocks"]) == cfg.subsets.num_models)
        blocks = load_json(design)["blocks"]
    ds = build_dataset(cfg)
    if cfg.model.name == "transformer" and not np.issubdtype(ds.x_train.dtype, np.integer):
        raise RunError(f"model.name: the transformer takes token sequences, and data.source="
                       f"{cfg.data.source!r} gives {ds.x_train.dtype} inputs; use a token source "
                       f"(e.g. data.source=digits_tokens)")
    if cfg.scoring.influence_top_k > len(ds.y_train):
        raise RunError(f"scoring.influence_top_k: {cfg.scoring.influence_top_k} is more than the "
                       f"{len(ds.y_train)} training examples")
    blocks = _design_blocks(cfg, blocks)
    groups = None
    if cfg.subsets.design == "leave_group_out":
        from jaxmem.data import duplicate_groups

        # an example and its duplicates form one group; with no duplicates, drop whole classes
        groups = duplicate_groups(ds) if cfg.data.duplicates else np.asarray(ds.y_train)
    keep, model_ratio = make_design(cfg, blocks, len(ds.y_train), groups)
    if process_id == 0:
        M = keep.shape[0]
        done = 0 if overwrite else int(_covered(workdir, M).sum())
        check_disk(workdir, storage_plan(cfg, M, len(ds.y_train), len(ds.y_test), int(ds.num_classes),
                                         done, not overwrite and (workdir / ".assembled.json").exists()),
                   log, freed=_freed_bytes(workdir, overwrite, num_processes))
        from jaxmem.io import remove_stale_tmp

        if overwrite:   # only now that the config, data and design are known to be good
            _delete_run(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        # temporaries of writes killed in an earlier attempt (shards/ only when no other
        # process may be writing there)
        remove_stale_tmp(workdir, ("shards", "results") if num_processes == 1 else ("results",))
        save_json(workdir / "config.json", cfgmod.to_dict(cfg))
        from jaxmem.data import dataset_fingerprint

        meta = {"name": ds.name, "num_classes": int(ds.num_classes), "num_train": len(ds.y_train),
                "num_test": len(ds.y_test), "input_shape": list(ds.x_train.shape[1:]),
                "fingerprint": dataset_fingerprint(ds), "meta": ds.meta}
        save_json(workdir / "dataset.json", meta)
        _write_or_check(workdir / "labels.npy", np.asarray(ds.y_train))
        _write_or_check(workdir / "example_ids.npy", np.asarray(ds.ids_train))
        _write_or_check(workdir / "test_labels.npy", np.asarray(ds.y_test))
        _write_or_check(workdir / "test_ids.npy", np.asarray(ds.ids_test))
        old_keep = workdir / "keep.npy"
        if old_keep.exists():
            prev = load_npy(old_keep)
            if prev.shape[1] != keep.shape[1] or not np.array_equal(prev, keep[: prev.shape[0]]):
                raise RunError(f"{old_keep}: differs from this config's design (pass --overwrite "
                               f"to start over)")
        save_npy(workdir / "keep.npy", keep)
        save_npy(workdir / "model_ratio.npy", model_ratio)
        save_json(workdir / "design.json", {"design": cfg.subsets.design, "blocks": blocks})
    else:
        _wait_for(workdir / "keep.npy", "the coordinator's keep")

    train_models(cfg, ds, keep, blocks, workdir, progress=progress, process_id=process_id,
                 num_processes=num_processes, log=log)
    if process_id != 0:
        return {}
    if num_processes > 1:  # the other processes' shards
        _wait_for(workdir / "shards", "the other processes' shards",
                  ready=lambda: _covered(workdir, keep.shape[0]).all())
    assemble(workdir, keep.shape[0])
    return score(workdir, log=log)


def storage_plan(cfg, num_models: int, num_train: int, num_test: int, num_classes: int,
                 num_done: int = 0, assembled: bool = False) -> dict:
    """Bytes a run writes: per model, its logits on the training and test sets ([N + T, A, C] in
    ``signals.dtype``) and, with ``train.record_forgetting``, [ceil(epochs), N] correctness.
    :func:`assemble` copies the shards into the run's arrays, so they are on disk twice.
    ``todo`` counts what is still to be written (shards of untrained models, and the assembled
    copy unless a finished run has it)."""
    item = 2 if cfg.signals.dtype == "float16" else 4
    per_model = (num_train + num_test) * len(cfg.signals.queries) * num_classes * item + 5
    if cfg.train.record_forgetting:
        per_model += math.ceil(cfg.train.epochs) * num_train
    total = 2 * num_models * per_model
    todo = (num_models - num_done) * per_model
    if not (assembled and num_done >= num_models):
        todo += num_models * per_model
    return {"per_model": per_model, "total": total, "todo": todo}


def _freed_bytes(workdir: Path, overwrite: bool, num_processes: int = 1) -> int:
    """Bytes execute deletes before training: the old run's entries with ``overwrite`` (only a
    jaxmem run's: see _delete_run), and the temporaries of killed writes."""
    from jaxmem.io import disk_bytes, stale_tmp

    if not workdir.is_dir():
        return 0
    sub = ("shards", "results") if num_processes == 1 or overwrite else ("results",)
    freed = disk_bytes(stale_tmp(workdir, sub))
    if overwrite and (workdir / "config.json").exists():
        freed += disk_bytes(workdir / n for n in _RUN_ENTRIES)
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
    gb = 1e9
    if plan["total"] > gb:
        log(f"signals: {plan['total'] / gb:.1f} GB on disk in all (shards + assembled arrays); "
            f"{plan['todo'] / gb:.1f} GB still to write, {free / gb:.1f} GB free")
    if plan["todo"] > free:
        raise RunError(
            f"{workdir}: this run still writes about {plan['todo'] / gb:.1f} GB of logits "
            f"({plan['per_model'] / 1e6:.1f} MB per model, stored twice: shards and assembled "
            f"arrays) but only {free / gb:.1f} GB is free there; fewer signals.queries, "
            f"signals.dtype=float16, or a --workdir on a larger disk")


def _wait_for(path: Path, what: str, timeout: float = 3600.0, ready=None):
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


def _chunk_size(cfg) -> int:
    """Models per jitted call: a multiple of the local device count (the model axis is sharded)."""
    import jax

    ndev = jax.local_device_count()
    K = cfg.train.chunk_size or default_chunk_size(cfg.subsets.num_models, ndev)
    return int(math.ceil(K / ndev) * ndev)


def train_models(cfg, ds, keep, blocks, workdir: Path, *, progress=True, process_id=0,
                 num_processes=1, log=print):
    """Train every chunk of models that has no finished shard yet (this process's share)."""
    import jax
    import jax.numpy as jnp

    from jaxmem.train import Trainer, steps_per_epoch_max

    ndev = jax.local_device_count()
    K = _chunk_size(cfg)
    chunks = [c for i, c in enumerate(_chunks(blocks, K)) if i % num_processes == process_id]
    done = _covered(workdir, keep.shape[0])
    todo = [c for c in chunks if not done[c[0]:c[1]].all()]
    if not todo:
        return
    # a chunk partly covered by shards of another chunk size: train only its uncovered runs
    todo = [r for a, b in todo for r in _runs(~done, a, b)]
    sharding = None
    if ndev > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.array(jax.local_devices()), ("models",))
        sharding = NamedSharding(mesh, P("models"))
    x_train, y_train = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    x_test = jnp.asarray(ds.x_test)
    trainer = Trainer(cfg, x_train, y_train, int(ds.num_classes),
                      steps_per_epoch_max(keep, cfg.train.batch_size))
    out_dtype = jnp.float16 if cfg.signals.dtype == "float16" else jnp.float32
    queries = list(cfg.signals.queries)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        done = sum(b - a for a, b in chunks) - sum(b - a for a, b in todo)
        bar = tqdm(total=sum(b - a for a, b in chunks), initial=done, unit="model",
                   desc="training", dynamic_ncols=True)
    stop = {"flag": False}
    prev = signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__("flag", True)) \
        if _main_thread() else None
    try:
        for a, b in todo:
            ids = np.arange(a, a + K)                      # padded to K: no recompiles
            rows = keep[np.minimum(ids, keep.shape[0] - 1)]
            t0 = time.time()
            state, aux, correct = _train_chunk(trainer, cfg, rows, ids, workdir / "ckpt" /
                                               _shard_name(a, b), stop, sharding)
            lg = trainer.logits(state, x_train, queries, out_dtype)
            tl = trainer.logits(state, x_test, queries, out_dtype)
            jax.block_until_ready((lg, tl))
            seconds = time.time() - t0
            n = b - a
            with atomic_dir(workdir / "shards" / _shard_name(a, b)) as tmp:
                save_npy(tmp / "logits.npy", np.asarray(lg)[:n])
                save_npy(tmp / "test_logits.npy", np.asarray(tl)[:n])
                save_npy(tmp / "diverged.npy", np.asarray(aux[0])[:n])
                save_npy(tmp / "final_loss.npy", np.asarray(aux[1])[:n])
                if correct is not None:
                    save_npy(tmp / "correct_by_epoch.npy", np.asarray(correct)[:n])
                save_json(tmp / "meta.json", {"seconds": seconds, "models": [a, b]})
            shutil.rmtree(workdir / "ckpt" / _shard_name(a, b), ignore_errors=True)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(models_per_s=f"{n / seconds:.1f}")
            if stop["flag"]:
                raise _Stop()
    except _Stop:
        log(f"stopped by SIGTERM; state saved in {workdir}. Rerun the same command to resume.")
        raise SystemExit(143)
    finally:
        if bar is not None:
            bar.close()
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _train_chunk(trainer, cfg, rows, ids, ckpt_dir: Path, stop, sharding):
    """Train one chunk epoch by epoch (where SIGTERM can stop), checkpointing with orbax every
    ``checkpoint_every`` epochs and on SIGTERM."""
    import jax

    from jaxmem import checkpoint

    every = cfg.train.checkpoint_every or 1
    state, aux = trainer.init_chunk(ids, rows)
    epoch0, correct = 0, []
    mngr = None
    if cfg.train.checkpoint_every or ckpt_dir.exists():   # (also the checkpoint SIGTERM saved)
        mngr = checkpoint.manager(ckpt_dir)
        restored = checkpoint.restore(mngr, (state, aux))
        if restored is not None:
            epoch0, (state, aux), correct = restored
    if sharding is not None:
        state, aux = jax.device_put((state, aux), sharding)
        rows = jax.device_put(rows, sharding)
    while epoch0 < trainer.num_epochs:
        n = min(every, trainer.num_epochs - epoch0)
        state, aux, c = trainer.train_epochs(state, aux, rows, ids, epoch0, n)
        if c is not None:
            correct.append(c)            # stays on device until a checkpoint or the end
        epoch0 += n
        if cfg.train.checkpoint_every and epoch0 < trainer.num_epochs and \
                epoch0 % cfg.train.checkpoint_every == 0:
            checkpoint.save(mngr, epoch0, (state, aux), [np.asarray(x) for x in correct])
        if stop["flag"] and epoch0 < trainer.num_epochs:
            mngr = mngr or checkpoint.manager(ckpt_dir)
            if mngr.latest_step() != epoch0:
                checkpoint.save(mngr, epoch0, (state, aux), [np.asarray(x) for x in correct])
            mngr.close()
            raise _Stop()
    if mngr is not None:
        mngr.close()
    return state, aux, (np.concatenate([np.asarray(x) for x in correct], axis=1)
                        if correct else None)


def assemble(workdir: Path, num_models: int):
    """Concatenate the chunk shards into the run's arrays (memory-mapped, written atomically)."""
    from numpy.lib.format import open_memmap

    from jaxmem.io import atomic_path

    shard_dirs = sorted((workdir / "shards").glob("models-*"))
    spans = []
    for d in shard_dirs:
        a, b = (int(x) for x in d.name.split("-")[1:])
        spans.append((a, b, d))
    covered = np.zeros(num_models, bool)
    for a, b, _ in spans:
        if b <= num_models:
            covered[a:b] = True
    if not covered.all():
        missing = np.flatnonzero(~covered)
        raise RunError(f"{workdir}: models {missing[:5].tolist()}... have no shard yet")
    spans = [s for s in spans if s[1] <= num_models]
    names = ["logits.npy", "test_logits.npy", "diverged.npy", "final_loss.npy"]
    if all((d / "correct_by_epoch.npy").exists() for _, _, d in spans):
        names.append("correct_by_epoch.npy")
    stamp = json.dumps(sorted([a, b] for a, b, _ in spans))
    marker = workdir / ".assembled.json"
    if marker.exists() and marker.read_text() == stamp and all((workdir / n).exists() for n in names):
        return
    for name in names:
        first = load_npy(spans[0][2] / name, mmap=True)
        shape = (num_models,) + first.shape[1:]
        with atomic_path(workdir / name, ".npy") as tmp:
            out = open_memmap(tmp, mode="w+", dtype=first.dtype, shape=shape)
            for a, b, d in spans:
                out[a:b] = load_npy(d / name, mmap=True)
            out.flush()
            del out
    save_text(marker, stamp)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------

def score(workdir, *, log=print) -> dict:
    """Estimators and attacks on a finished run; writes results/ and summary.json."""
    from jaxmem import attacks, estimators

    workdir = Path(workdir)
    run = load_run(workdir)
    cfg = run.config
    keep, labels, test_labels = run.keep, run.labels, run.test_labels
    diverged = run.diverged
    ok = ~diverged
    res = workdir / "results"
    res.mkdir(exist_ok=True)
    rc = cfg.scoring.rmia
    p_fn = _rmia_p_fn(rc) if any(a.startswith("rmia") for a in cfg.scoring.attacks) else None
    want_loss = "loss" in cfg.scoring.attacks
    every_query = rc.aggregate == "vote"    # else p of the identity query
    want_phi = bool(cfg.scoring.attacks)
    sg = _signals(run.logits, labels, p_fn, want_loss, p_every_query=every_query,  # streamed
                  want_phi=want_phi)
    tsg = _signals(run.test_logits, test_labels, p_fn, False, want_query_average=True,
                   p_every_query=every_query, want_phi=False)
    correct, phi = sg["correct"], sg.get("phi")
    test_acc = tsg["correct"].mean(1) if len(test_labels) else np.full(len(keep), np.nan)
    test_acc_tta = (tsg["correct_query_average"].mean(1)
                    if len(test_labels) and "correct_query_average" in tsg else None)
    mem = estimators.memorization(keep, correct, model_mask=ok)
    ids = run.example_ids
    order = np.argsort(-np.nan_to_num(mem.mem, nan=-np.inf), kind="stable")
    lines = ["rank,example_id,index,label,mem,stderr,n_in,n_out"]
    for r, i in enumerate(order):
        lines.append(f"{r},{ids[i]},{i},{labels[i]},{mem.mem[i]:.6g},{mem.stderr[i]:.6g},"
                     f"{mem.n_in[i]},{mem.n_out[i]}")
    save_text(res / "memorization.csv", "\n".join(lines) + "\n")
    influence_summary = None
    if cfg.scoring.influence_top_k and len(test_labels):
        influence_summary = _influence_table(res / "influence.csv", keep, tsg["correct"], ok,
                                             cfg.scoring.influence_top_k, run, mem)

    targets = None
    if cfg.scoring.targets:
        targets = np.flatnonzero(ok)[: cfg.scoring.targets]
    attack_summary, curves = {}, {}
    if cfg.scoring.attacks:
        extra = {}
        rmia_kw = {}
        if p_fn is not None:
            extra["p"], extra["p_pop"] = sg["p"], tsg["p"]
            rmia_kw = dict(rmia_gamma=rc.gamma, rmia_aggregate=rc.aggregate, rmia_trim=rc.trim)
            if rc.a is not None:
                rmia_kw["rmia_a"] = rc.a
        if want_loss:
            extra["loss"] = sg["loss"]
        n_targets = len(targets) if targets is not None else int(ok.sum())
        keep_scores = n_targets * keep.shape[1] <= 50_000_000   # scores only for the ROC figure
        ev = attacks.evaluate(phi, keep, attacks=tuple(cfg.scoring.attacks), targets=targets,
                              model_mask=ok, signals=extra, return_scores=keep_scores, **rmia_kw)
        attack_summary = ev.summary()
        if ev.scores:
            for name, sc in ev.scores.items():
                curves[name] = [attacks.roc_curve(sc[j], keep[t])[:2]
                                for j, t in enumerate(ev.targets)]
        save_json(res / "attacks.json", {
            "targets": np.asarray(ev.targets).tolist(),
            "per_target": {a: {k: np.asarray(v).tolist() for k, v in ms.items()}
                           for a, ms in ev.metrics.items()},
            "params": ev.params,   # e.g. RMIA's offline a, tuned once
            "summary": attack_summary})
    figures = {}
    try:
        figures = _plots(res, mem, curves)
    except Exception as e:  # plotting is a convenience; never lose a scored run to it
        log(f"warning: plotting failed: {e}")

    shard_meta = [load_json(d / "meta.json") for d in sorted((workdir / "shards").glob("models-*"))
                  if (d / "meta.json").exists()]
    train_seconds = float(sum(m["seconds"] for m in shard_meta if m["models"][1] <= len(keep)))
    finite = np.isfinite(mem.mem)
    summary = {
        "name": cfg.name,
        "num_models": int(keep.shape[0]),
        "num_examples": int(keep.shape[1]),
        "num_test": int(len(test_labels)),
        "test_accuracy": float(test_acc[ok].mean()) if ok.any() else float("nan"),
        # test-time augmentation over the signal queries (identity + flip: airbench's mirror TTA)
        "test_accuracy_query_average": (float(test_acc_tta[ok].mean()) if test_acc_tta is not None
                                        and ok.any() else None),
        "train_accuracy_in": float((correct * keep)[ok].sum() / max((keep[ok]).sum(), 1)),
        "train_seconds": train_seconds,
        "models_per_second": float(keep.shape[0] / train_seconds) if train_seconds else None,
        "diverged": {"count": int(diverged.sum()), "models": np.flatnonzero(diverged).tolist()},
        "memorization": {
            "mean": float(np.nanmean(mem.mem)) if finite.any() else None,
            "mean_stderr": float(np.nanmean(mem.stderr)) if finite.any() else None,
            "top10": [int(ids[i]) for i in order[:10]],
            "top10_index": [int(i) for i in order[:10]],
            "num_nan": int((~finite).sum()),
        },
        "attacks": attack_summary,
        "files": {"memorization": str(res / "memorization.csv"), **figures},
    }
    if influence_summary is not None:
        summary["influence"] = influence_summary
        summary["files"]["influence"] = str(res / "influence.csv")
    if cfg.train.dp.enabled:
        from jaxmem.train import dp_epsilon

        n = keep.sum(1).mean()
        spe = math.ceil(n / cfg.train.batch_size)
        summary["dp"] = {"epsilon": dp_epsilon(cfg.train.dp.noise_multiplier,
                                               cfg.train.batch_size / n,
                                               int(round(cfg.train.epochs * spe)), cfg.train.dp.delta),
                         "delta": cfg.train.dp.delta}
    save_json(workdir / "summary.json", summary)
    return summary


def _influence_table(path: Path, keep, test_correct, ok, k: int, run, mem,
                     threshold: float = 0.15) -> dict:
    """Feldman & Zhang (2020) Eq. 2 on the test set: each test example's ``k`` most influential
    training examples (with standard errors) to ``path`` as CSV, and a summary: how many test
    examples have a training example of influence >= ``threshold`` (0.15, the level of their
    high-influence pairs, as we recall the paper: the text was not at hand to check), how many
    of those come from a training example memorized >= 0.25, and the 10 pairs of largest
    influence (the test examples ranked by their largest influence, as in their
    ``mnist_infl_mem.py`` demo)."""
    from jaxmem import estimators

    if k > keep.shape[1]:
        raise RunError(f"scoring.influence_top_k: {k} is more than the {keep.shape[1]} training "
                       f"examples")

    top = estimators.top_influencers(keep, test_correct, k, model_mask=ok, dtype="float32",
                                     return_stderr=True)
    ids, tids = run.example_ids, run.test_ids
    labels, tlabels = run.labels, run.test_labels
    lines = ["test_index,test_id,test_label,rank,train_index,train_id,train_label,influence,stderr,"
             "train_mem"]
    for j in range(top.indices.shape[0]):
        for r in range(k):
            i = int(top.indices[j, r])
            if i < 0:   # fewer than k training examples with an IN and an OUT model
                break
            lines.append(f"{j},{tids[j]},{tlabels[j]},{r},{i},{ids[i]},{labels[i]},"
                         f"{top.values[j, r]:.6g},{top.stderr[j, r]:.6g},{mem.mem[i]:.6g}")
    save_text(path, "\n".join(lines) + "\n")
    best = np.nan_to_num(top.values[:, 0], nan=-np.inf)
    strong = best >= threshold
    with np.errstate(invalid="ignore"):   # any of the k pairs over the threshold
        strong_mem = ((top.values >= threshold) & (mem.mem[top.indices] >= 0.25)
                      & (top.indices >= 0)).any(1)
    order = np.argsort(-best, kind="stable")[:10]
    return {"top_k": int(k), "threshold": threshold,
            "test_examples_with_a_pair": int(strong.sum()),
            "test_examples_with_a_pair_mem_0.25": int(strong_mem.sum()),
            "top10_pairs": [{"test_index": int(j), "train_index": int(top.indices[j, 0]),
                             "influence": float(top.values[j, 0])} for j in order if np.isfinite(best[j])]}


def _rmia_p_fn(rc):
    """RMIA's p(x) from logits [..., C] and labels (``scoring.rmia``): the true-class softmax
    of z / T, or the research code's soft-margin Taylor softmax."""
    from jaxmem import signals as sig

    if rc.signal == "taylor_soft_margin":
        return lambda z, y: sig.taylor_soft_margin_probability(
            z, y, order=rc.order, margin=rc.margin, temperature=rc.temperature)
    return lambda z, y: sig.true_class_probability(z / rc.temperature, y)


def _signals(logits, labels, p_fn=None, want_loss: bool = False, block: int = 0,
             want_query_average: bool = False, p_every_query: bool = False,
             want_phi: bool = True) -> dict:
    """Per-example signals from (memory-mapped) logits [M, N, A, C], streamed over blocks of
    models so that memory holds one block of logits: correctness [M, N] (identity query), φ
    [M, N, A] (computed in float64 as the LiRA reference code does, stored float32), with
    ``p_fn`` RMIA's p (``p_fn(z, labels)``; [M, N] of the identity query, or [M, N, A] with
    ``p_every_query``), on request the loss [M, N] (identity query), and with A > 1 the
    correctness of the logits averaged over the queries (test-time augmentation). Without φ,
    p of every query or the query average, only the identity query is read. ``block`` models at
    a time (0: as many as hold 2^26 float64 logits, 512 MB)."""
    from jaxmem import signals as sig

    M, N, A = logits.shape[:3]
    every = want_phi or want_query_average or (p_fn is not None and p_every_query)
    if not every:
        logits = _FirstQuery(logits)
    block = block or max(1, (1 << 26) // max(1, N * logits.shape[2] * logits.shape[3]))
    out = {"correct": np.zeros((M, N), np.float32)}
    if want_phi:
        out["phi"] = np.zeros((M, N, A), np.float32)
    if p_fn is not None:
        out["p"] = np.zeros((M, N, A) if p_every_query else (M, N), np.float32)
    if want_loss:
        out["loss"] = np.zeros((M, N), np.float32)
    if want_query_average and A > 1:
        out["correct_query_average"] = np.zeros((M, N), np.float32)
    for a in range(0, M, block):
        z = np.asarray(logits[a : a + block], dtype=np.float64)
        out["correct"][a : a + block] = sig.correctness(z[:, :, 0], labels[None])
        if "correct_query_average" in out:
            out["correct_query_average"][a : a + block] = sig.correctness(z.mean(2), labels[None])
        if want_phi:
            out["phi"][a : a + block] = sig.logit_scaled_confidence(z, labels[None, :, None])
        if p_fn is not None:
            out["p"][a : a + block] = (p_fn(z, labels[None, :, None]) if p_every_query
                                       else p_fn(z[:, :, 0], labels[None]))
        if want_loss:
            out["loss"][a : a + block] = sig.cross_entropy(z[:, :, 0], labels[None])
    return out


class _FirstQuery:
    """``logits[..., :1, :]`` of a memory-mapped [M, N, A, C] array, read a block of models at a
    time (slicing the view would be lazy too, but this keeps the reads to one query)."""

    def __init__(self, logits):
        self.logits = logits
        self.shape = logits.shape[:2] + (1,) + logits.shape[3:]

    def __getitem__(self, rows):
        return self.logits[rows, :, :1]


def _plots(res: Path, mem, curves) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxmem.io import atomic_path

    out = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    m = mem.mem[np.isfinite(mem.mem)]
    ax.hist(m, bins=40)
    ax.set_xlabel("Feldman–Zhang memorization")
    ax.set_ylabel("training examples")
    fig.tight_layout()
    with atomic_path(res / "memorization_hist.png", ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    out["memorization_hist"] = str(res / "memorization_hist.png")
    if curves:
        from jaxmem.attacks.plot import plot_roc

        plot_roc(curves, res / "roc.png")
        out["roc"] = str(res / "roc.png")
    return out


# ----------------------------------------------------------------------------------------------
# Runs from arrays trained elsewhere, and the LiRA reference layout
# ----------------------------------------------------------------------------------------------

def import_arrays(workdir, keep, logits, labels, *, test_logits=None, test_labels=None,
                  example_ids=None, name="imported", overrides=(), overwrite=False) -> Run:
    """Make a scoreable jaxmem run from arrays trained anywhere (PyTorch, the LiRA code, ...).

    ``keep`` [M, N] bool, ``logits`` [M, N, A, C] (or [M, N, C]), ``labels`` [N]; optionally the
    test set's ``test_logits`` [M, T, A, C] and ``test_labels`` [T] (needed for test accuracy and
    RMIA's population). The config records ``data.source = "external:NAME"``: such a run can be
    scored (``jaxmem score``) and reported, not trained. Then score it with :func:`score`.
    """
    workdir = Path(workdir)
    keep = np.asarray(keep)
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[:, :, None]
    labels = np.asarray(labels)
    if keep.dtype != bool or keep.ndim != 2:
        raise RunError(f"keep: expected a bool [M, N] array, got {keep.dtype} {keep.shape}")
    if logits.ndim != 4 or logits.shape[:2] != keep.shape:
        raise RunError(f"logits {logits.shape} do not match keep {keep.shape} (need [M, N, A, C])")
    if labels.shape != (keep.shape[1],) or not np.issubdtype(labels.dtype, np.integer):
        raise RunError(f"labels: expected integer [{keep.shape[1]}], got {labels.dtype} {labels.shape}")
    if not np.isfinite(logits).all():
        raise RunError("logits: hold non-finite values")
    M, N, A, C = logits.shape
    if test_logits is None:
        test_logits, test_labels = np.zeros((M, 0, A, C), logits.dtype), np.zeros(0, np.int64)
    test_logits = np.asarray(test_logits)
    if test_logits.ndim == 3:
        test_logits = test_logits[:, :, None]
    test_labels = np.asarray(test_labels)
    if test_logits.shape[0] != M or test_logits.shape[2:] != (A, C) or \
            test_labels.shape != test_logits.shape[1:2]:
        raise RunError(f"test_logits {test_logits.shape} / test_labels {test_labels.shape} do not "
                       f"match logits {logits.shape}")
    if (labels.min(initial=0) < 0 or labels.max(initial=0) >= C or
            test_labels.min(initial=0) < 0 or test_labels.max(initial=0) >= C):
        raise RunError(f"labels: out of range for {C} classes")
    attacks = [a for a in cfgmod.ATTACKS if not a.startswith("rmia") or test_labels.size]
    base = {"name": name, "data": {"source": f"external:{name}"},
            "subsets": {"num_models": int(M)}, "scoring": {"attacks": attacks}}
    cfg = cfgmod.from_dict(cfgmod.apply_overrides(base, overrides))
    if workdir.exists() and any(p for p in workdir.iterdir() if not p.name.startswith(".")):
        if not overwrite:
            raise RunError(f"{workdir}: exists and is not empty (pass --overwrite to replace a run)")
        _delete_run(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    save_json(workdir / "config.json", cfgmod.to_dict(cfg))
    save_json(workdir / "design.json", {"design": "external", "blocks": [
        {"first": 0, "count": int(M), "block": 0}]})
    save_json(workdir / "dataset.json", {"name": name, "num_classes": int(C), "num_train": int(N),
                                         "num_test": int(test_labels.size), "input_shape": [],
                                         "meta": {"source": f"external:{name}"}})
    ids = np.arange(N) if example_ids is None else np.asarray(example_ids)
    for fname, arr in (("keep.npy", keep), ("labels.npy", labels), ("example_ids.npy", ids),
                       ("test_labels.npy", test_labels), ("test_ids.npy", np.arange(test_labels.size)),
                       ("model_ratio.npy", keep.mean(1)), ("logits.npy", logits),
                       ("test_logits.npy", test_logits), ("diverged.npy", np.zeros(M, bool))):
        save_npy(workdir / fname, arr)
    return Run(workdir)


def import_lira(src, workdir, *, overwrite=False, epoch=None) -> Run:
    """A jaxmem run from a directory in the LiRA reference code's layout (tensorflow/privacy
    ``research/mi_lira_2021``: ``experiment-*/keep.npy``, ``experiment-*/logits/*.npy``)."""
    from jaxmem.attacks.interop import read_lira_layout

    try:
        arrays = read_lira_layout(src, epoch=epoch)
    except (ValueError, OSError) as e:
        raise RunError(f"{src}: {e}") from None
    if "logits" not in arrays or "y_train" not in arrays:
        raise RunError(f"{src}: needs experiment-*/logits/*.npy and y_train.npy to make a run")
    return import_arrays(workdir, arrays["keep"], arrays["logits"],
                         np.asarray(arrays["y_train"]).astype(np.int64), name="lira",
                         overwrite=overwrite)


def export_lira(workdir, dest) -> Path:
    """Write a jaxmem run's keep, logits and labels in the LiRA reference code's layout."""
    from jaxmem.attacks.interop import write_lira_layout

    run = load_run(workdir)
    return Path(write_lira_layout(dest, run.keep, np.asarray(run.logits), run.labels,
                                  hparams={"jaxmem_run": str(Path(workdir).resolve())}))
