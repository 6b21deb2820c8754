"""Executing a run: check the workdir, build the data and the design, train every chunk of models
that has no shard yet (resumable; SIGTERM-safe with orbax checkpoints; one process's share of a
multi-process run), assemble the shards, score. Library code raises :class:`Interrupted` on
SIGTERM; the CLI maps it to exit status 143."""

from __future__ import annotations

import math
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import RunError, atomic_dir, load_json, load_npy, save_json, save_npy
from jaxmem.runs import workdir as W
from jaxmem.runs.store import assemble, covered, shard_name
from jaxmem.subsets import make_design

__all__ = ["execute", "train_models", "Interrupted", "default_chunk_size"]


class Interrupted(Exception):
    """A run stopped by SIGTERM after saving its state; rerunning the same command resumes."""


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


def default_chunk_size(num_models: int, num_devices: int = 1) -> int:
    import jax

    per_device = 16 if jax.default_backend() == "cpu" else 256
    return max(1, min(num_models, per_device * num_devices))


def execute(cfg: cfgmod.Config, workdir, *, overwrite: bool = False, progress: bool = True,
            process_id: int = 0, num_processes: int = 1, log=print) -> dict:
    """Train (or resume, or grow) the run in ``workdir``, then score it. Returns the summary."""
    workdir = Path(workdir)
    blocks = W.check_workdir(workdir, cfg, overwrite) if process_id == 0 else None
    if process_id != 0:  # the coordinator's design, once it covers this many models
        design = workdir / "design.json"
        W.wait_for(design, "the coordinator's design", ready=lambda: sum(
            b["count"] for b in load_json(design)["blocks"]) == cfg.subsets.num_models)
        blocks = load_json(design)["blocks"]
    from jaxmem.data import DataError, build_dataset
    from jaxmem.models.registry import spec

    try:
        ds = build_dataset(cfg)
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
    blocks = _design_blocks(cfg, blocks)
    groups = None
    if cfg.subsets.design == "leave_group_out":
        from jaxmem.data import duplicate_groups

        # an example and its duplicates form one group; with no duplicates, drop whole classes
        groups = duplicate_groups(ds) if cfg.data.duplicates else np.asarray(ds.y_train)
    # a text dataset's identical texts (natural and planted copies) are IN or OUT together
    keep, model_ratio = make_design(cfg, blocks, len(ds.y_train), groups, units=getattr(ds, "groups", None))
    if process_id == 0:
        M = keep.shape[0]
        done = 0 if overwrite else int(covered(workdir, M).sum())
        W.check_disk(workdir, W.storage_plan(cfg, M, len(ds.y_train), len(ds.y_test),
                                             int(ds.num_classes), done, not overwrite and
                                             (workdir / ".assembled.json").exists(),
                                             seq_len=int(ds.x_train.shape[1]) if spec(cfg.model.name).lm else 0),
                     log, freed=W.freed_bytes(workdir, overwrite, num_processes))
        from jaxmem.io import remove_stale_tmp

        if overwrite:   # only now that the config, data and design are known to be good
            W.delete_run(workdir)
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
        W.write_or_check(workdir / "labels.npy", np.asarray(ds.y_train))
        W.write_or_check(workdir / "example_ids.npy", np.asarray(ds.ids_train))
        W.write_or_check(workdir / "test_labels.npy", np.asarray(ds.y_test))
        W.write_or_check(workdir / "test_ids.npy", np.asarray(ds.ids_test))
        if hasattr(ds, "texts_train"):   # a text dataset: its texts and per-example facts
            from jaxmem.data.text_build import text_facts

            save_json(workdir / "text.json", text_facts(ds))
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
        W.wait_for(workdir / "keep.npy", "the coordinator's keep")

    train_models(cfg, ds, keep, blocks, workdir, progress=progress, process_id=process_id,
                 num_processes=num_processes, log=log)
    if process_id != 0:
        return {}
    if num_processes > 1:  # the other processes' shards
        W.wait_for(workdir / "shards", "the other processes' shards",
                   ready=lambda: covered(workdir, keep.shape[0]).all())
    assemble(workdir, keep.shape[0])
    from jaxmem.runs.score import score

    return score(workdir, log=log, dataset=ds)


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
    done = covered(workdir, keep.shape[0])
    todo = [c for c in chunks if not done[c[0]:c[1]].all()]
    if not todo:
        return
    # a chunk partly covered by shards of another chunk size: train only its uncovered runs
    todo = [r for a, b in todo for r in _runs(~done, a, b)]
    sharding = None
    if ndev > 1:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

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
            res = _train_chunk(trainer, cfg, rows, ids, workdir / "ckpt" / shard_name(a, b), stop,
                               sharding)
            if trainer.lm:   # per-token signals and extraction, never [K, N, L, V] logits
                from jaxmem.train.lm import chunk_signals

                arrays = chunk_signals(trainer, res.state, ds.x_train, ds.y_train, ds.x_test, ds.y_test)
            else:
                arrays = {"logits": trainer.logits(res.state, x_train, queries, out_dtype),
                          "test_logits": trainer.logits(res.state, x_test, queries, out_dtype)}
                jax.block_until_ready(arrays)
            seconds = time.time() - t0
            n = b - a
            with atomic_dir(workdir / "shards" / shard_name(a, b)) as tmp:
                for name, arr in arrays.items():
                    save_npy(tmp / f"{name}.npy", np.asarray(arr)[:n])
                save_npy(tmp / "diverged.npy", res.diverged[:n])
                save_npy(tmp / "final_loss.npy", res.final_loss[:n])
                for name, rec in res.records.items():    # e.g. correct_by_epoch.npy
                    save_npy(tmp / f"{name}_by_epoch.npy", rec[:n])
                save_json(tmp / "meta.json", {"seconds": seconds, "models": [a, b]})
            shutil.rmtree(workdir / "ckpt" / shard_name(a, b), ignore_errors=True)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(models_per_s=f"{n / seconds:.1f}")
            if stop["flag"]:
                raise _Stop()
    except _Stop:
        raise Interrupted(f"stopped by SIGTERM; state saved in {workdir}. Rerun the same command "
                          f"to resume.") from None
    finally:
        if bar is not None:
            bar.close()
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


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


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _train_chunk(trainer, cfg, rows, ids, ckpt_dir: Path, stop, sharding):
    """Train one chunk epoch by epoch (where SIGTERM can stop), checkpointing with orbax every
    ``checkpoint_every`` epochs and on SIGTERM. Returns a :class:`~jaxmem.train.ChunkResult`."""
    import jax

    from jaxmem.runs import checkpoint
    from jaxmem.train import ChunkResult

    every = cfg.train.checkpoint_every or 1
    state, status = trainer.init_chunk(ids, rows)
    epoch0, records = 0, {}
    mngr = None
    if cfg.train.checkpoint_every or ckpt_dir.exists():   # (also the checkpoint SIGTERM saved)
        mngr = checkpoint.manager(ckpt_dir)
        restored = checkpoint.restore(mngr, state, status, tuple(trainer.records))
        if restored is not None:
            epoch0, state, status, records = restored
    if sharding is not None:
        state, status = jax.device_put((state, status), sharding)
        rows = jax.device_put(rows, sharding)

    def host(recs):
        return {k: [np.asarray(x) for x in v] for k, v in recs.items()}

    while epoch0 < trainer.num_epochs:
        n = min(every, trainer.num_epochs - epoch0)
        state, status, new = trainer.train_epochs(state, status, rows, ids, epoch0, n)
        for k, v in new.items():
            records.setdefault(k, []).append(v)   # stays on device until a checkpoint or the end
        epoch0 += n
        if cfg.train.checkpoint_every and epoch0 < trainer.num_epochs and \
                epoch0 % cfg.train.checkpoint_every == 0:
            checkpoint.save(mngr, epoch0, state, status, host(records))
        if stop["flag"] and epoch0 < trainer.num_epochs:
            mngr = mngr or checkpoint.manager(ckpt_dir)
            if mngr.latest_step() != epoch0:
                checkpoint.save(mngr, epoch0, state, status, host(records))
            mngr.close()
            raise _Stop()
    if mngr is not None:
        mngr.close()
    return ChunkResult(state, np.asarray(status.diverged), np.asarray(status.loss),
                       {k: np.concatenate(v, axis=1) for k, v in host(records).items()})


class _Stop(Exception):
    pass
