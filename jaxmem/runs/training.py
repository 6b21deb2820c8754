"""Training a run's models chunk by chunk: every chunk without a finished shard (this process's
share of a multi-process run), epoch by epoch so that SIGTERM can stop it (orbax checkpoints),
each finished chunk written atomically as a shard with its checksums and provenance, with
progress (bars, or log lines with ``--no-progress``) and ETAs."""

from __future__ import annotations

import math
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from jaxmem.io import atomic_dir, save_json, save_npy
from jaxmem.runs.provenance import record
from jaxmem.runs.records import ChunkRecords, record_file
from jaxmem.runs.store import covered, shard_name
from jaxmem.runs.task import task_for

__all__ = ["train_models", "Interrupted", "default_chunk_size", "chunk_size", "chunks",
           "checkpoint_epoch"]


class Interrupted(Exception):
    """A run stopped by SIGTERM after saving its state; rerunning the same command resumes."""


class _Stop(Exception):
    pass


def default_chunk_size(num_models: int, num_devices: int = 1) -> int:
    import jax

    per_device = 16 if jax.default_backend() == "cpu" else 256
    return max(1, min(num_models, per_device * num_devices))


def chunk_size(cfg) -> int:
    """Models per jitted call: a multiple of the local device count (the model axis is sharded)."""
    import jax

    ndev = jax.local_device_count()
    K = cfg.train.chunk_size or default_chunk_size(cfg.subsets.num_models, ndev)
    return int(math.ceil(K / ndev) * ndev)


def chunks(blocks, size):
    """``[(first, end)]`` of each chunk of ``size`` models, block by block."""
    out = []
    for b in blocks:
        for s in range(b["first"], b["first"] + b["count"], size):
            out.append((s, min(s + size, b["first"] + b["count"])))
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


def checkpoint_epoch(ckpt_dir: Path):
    """The epoch of the latest committed orbax step in ``ckpt_dir`` (None if there is none)."""
    steps = [int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()] if ckpt_dir.is_dir() else []
    return max(steps) if steps else None


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else (f"{seconds / 60:.0f} min" if seconds < 7200
                                                     else f"{seconds / 3600:.1f} h")


class _Progress:
    """Progress of the models of this process: a tqdm bar over models and one over the epochs
    of the chunk in training (with ETAs), or, without bars, log lines: one per finished chunk
    and one a minute within a long chunk."""

    def __init__(self, total: int, done: int, bars: bool, log, num_epochs: int):
        self.total, self.done, self.log, self.num_epochs = total, done, log, num_epochs
        self.t0, self.trained = time.time(), 0
        self.bar = self.inner = None
        if bars:
            from tqdm.auto import tqdm

            self._tqdm = tqdm
            self.bar = tqdm(total=total, initial=done, unit="model", desc="training",
                            dynamic_ncols=True)

    def chunk_start(self, a, b, epoch0):
        self.chunk, self.tc, self.last, self.e0 = (a, b), time.time(), time.time(), epoch0
        if self.bar is not None:
            self.inner = self._tqdm(total=self.num_epochs, initial=epoch0, leave=False,
                                    dynamic_ncols=True, desc=f"  models {a}-{b - 1}",
                                    bar_format="{desc}: epoch {n_fmt} of {total_fmt} {bar} "
                                               "{elapsed}, ETA {remaining}")

    def epoch(self, e):
        if self.inner is not None:
            self.inner.update(e - self.inner.n)
        elif time.time() - self.last > 60:
            self.last = time.time()
            left = (time.time() - self.tc) / max(e - self.e0, 1) * (self.num_epochs - e)
            self.log(f"  models {self.chunk[0]}-{self.chunk[1] - 1}: epoch {e} of "
                     f"{self.num_epochs}, about {_eta(left)} left in this chunk")

    def chunk_end(self, n, seconds):
        self.done += n
        self.trained += n
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(models_per_s=f"{n / seconds:.1f}")
        else:
            rate = self.trained / max(time.time() - self.t0, 1e-9)
            self.log(f"trained models {self.chunk[0]}-{self.chunk[1] - 1} in {seconds:.1f} s: "
                     f"{self.done} of {self.total} done, about "
                     f"{_eta((self.total - self.done) / rate)} left")

    def close(self):
        for b in (self.inner, self.bar):
            if b is not None:
                b.close()


def train_models(cfg, ds, keep, blocks, workdir: Path, *, progress=True, process_id=0,
                 num_processes=1, log=print):
    """Train every chunk of models that has no finished shard yet (this process's share)."""
    import jax
    import jax.numpy as jnp

    from jaxmem.train import Trainer, steps_per_epoch_max

    ndev = jax.local_device_count()
    K = chunk_size(cfg)
    mine = [c for i, c in enumerate(chunks(blocks, K)) if i % num_processes == process_id]
    done = covered(workdir, keep.shape[0])
    todo = [c for c in mine if not done[c[0]:c[1]].all()]
    for a, b in mine:    # a checkpoint left by a kill between a chunk's shard and its removal
        if done[a:b].all():
            for d in (workdir / "ckpt" / shard_name(a, b), workdir / "ckpt" / f"{shard_name(a, b)}.records"):
                if d.exists():
                    shutil.rmtree(d, ignore_errors=True)
    if not todo:
        return
    # a chunk partly covered by shards of another chunk size: train only its uncovered runs
    todo = [r for a, b in todo for r in _runs(~done, a, b)]
    n_done = sum(b - a for a, b in mine) - sum(b - a for a, b in todo)
    ckpt = [(a, b, checkpoint_epoch(workdir / "ckpt" / shard_name(a, b))) for a, b in todo]
    ckpt = [c for c in ckpt if c[2] is not None]
    if n_done or ckpt:
        log(f"resuming {workdir}: {n_done} of {sum(b - a for a, b in mine)} models already "
            f"trained{' by this process' if num_processes > 1 else ''}"
            + "".join(f"; models {a}-{b - 1} continue from their checkpoint at epoch {e}"
                      for a, b, e in ckpt))
    prov = record(process_id=process_id, num_processes=num_processes)
    sharding = None
    if ndev > 1:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        mesh = Mesh(np.array(jax.local_devices()), ("models",))
        sharding = NamedSharding(mesh, P("models"))
    x_train, y_train = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    trainer = Trainer(cfg, x_train, y_train, int(ds.num_classes),
                      steps_per_epoch_max(keep, cfg.train.batch_size))
    run_task = task_for(cfg.model.name)
    if cfg.train.records.vog_epochs:
        log(f"train.records.vog_epochs: VoG's running moments take {2 * K * x_train.size * 4 / 1e9:.2f} GB "
            f"for a chunk of {K} models (train.chunk_size), besides training")
    prog = _Progress(sum(b - a for a, b in mine), n_done, progress, log, trainer.num_epochs)
    stop = {"flag": False}
    prev = signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__("flag", True)) \
        if _main_thread() else None
    try:
        for a, b in todo:
            ids = np.arange(a, a + K)                      # padded to K: no recompiles
            rows = keep[np.minimum(ids, keep.shape[0] - 1)]
            t0 = time.time()
            res, recs = _train_chunk(trainer, cfg, rows, ids, workdir / "ckpt" / shard_name(a, b),
                                     stop, sharding, prog, (a, b))
            # the run task's outputs: logits, or an LM's per-token signals (jaxmem.runs.task)
            arrays = run_task.chunk_outputs(trainer, res.state, ds)
            seconds = time.time() - t0
            n = b - a
            with atomic_dir(workdir / "shards" / shard_name(a, b)) as tmp:
                sums = {f"{name}.npy": save_npy(tmp / f"{name}.npy", np.asarray(arr)[:n])
                        for name, arr in arrays.items()}
                sums["diverged.npy"] = save_npy(tmp / "diverged.npy", res.diverged[:n])
                sums["final_loss.npy"] = save_npy(tmp / "final_loss.npy", res.final_loss[:n])
                for name, rec in res.records.items():    # e.g. correct_by_epoch.npy
                    sums[record_file(name)] = save_npy(tmp / record_file(name), rec[:n])
                save_json(tmp / "meta.json", {"seconds": seconds, "models": [a, b],
                                              "provenance": prov, "checksums": sums})
            shutil.rmtree(workdir / "ckpt" / shard_name(a, b), ignore_errors=True)
            recs.remove()
            prog.chunk_end(n, seconds)
            if stop["flag"]:
                raise _Stop()
    except _Stop:
        raise Interrupted(f"stopped by SIGTERM; state saved in {workdir}. Rerun the same command "
                          f"to resume.") from None
    finally:
        prog.close()
        if prev is not None:
            signal.signal(signal.SIGTERM, prev)


def _main_thread():
    import threading

    return threading.current_thread() is threading.main_thread()


def _train_chunk(trainer, cfg, rows, ids, ckpt_dir: Path, stop, sharding, prog, span):
    """Train one chunk epoch by epoch (where SIGTERM can stop), checkpointing with orbax every
    ``checkpoint_every`` epochs and on SIGTERM; its records stream to files beside the
    checkpoints (:class:`~jaxmem.runs.records.ChunkRecords`). Returns a
    :class:`~jaxmem.train.ChunkResult` (its records memory-mapped from those files) and the
    :class:`~jaxmem.runs.records.ChunkRecords` (removed once the shard is written)."""
    import jax

    from jaxmem.runs import checkpoint
    from jaxmem.train import ChunkResult

    every = cfg.train.checkpoint_every or 1
    state, status = trainer.init_chunk(ids, rows)
    epoch0, mngr, restored = 0, None, None
    rec_dir = ckpt_dir.with_name(ckpt_dir.name + ".records")
    recs = ChunkRecords(trainer, rec_dir, len(ids))
    if cfg.train.checkpoint_every or ckpt_dir.exists():   # (also the checkpoint SIGTERM saved)
        mngr = checkpoint.manager(ckpt_dir)
        restored = checkpoint.restore(mngr, state, status, recs.aux())
    recs.open(resume=restored is not None)
    if restored is not None:
        epoch0, state, status, aux = restored
        recs.restore_aux(aux)
    if sharding is not None:
        state, status = jax.device_put((state, status), sharding)
        rows = jax.device_put(rows, sharding)

    def save():
        recs.flush()
        checkpoint.save(mngr, epoch0, state, status, recs.aux())

    prog.chunk_start(*span, epoch0)
    while epoch0 < trainer.num_epochs:
        n = min(every, recs.next_stop(epoch0, trainer.num_epochs) - epoch0)
        state, status, new = trainer.train_epochs(state, status, rows, ids, epoch0, n)
        recs.add(epoch0, n, new, state)
        epoch0 += n
        jax.block_until_ready(status.loss)        # (so that the progress shows finished epochs)
        prog.epoch(epoch0)
        if cfg.train.checkpoint_every and epoch0 < trainer.num_epochs and \
                epoch0 % cfg.train.checkpoint_every == 0:
            save()
        if stop["flag"] and epoch0 < trainer.num_epochs:
            mngr = mngr or checkpoint.manager(ckpt_dir)
            if mngr.latest_step() != epoch0:
                save()
            mngr.close()
            raise _Stop()
    if mngr is not None:
        mngr.close()
    return ChunkResult(state, np.asarray(status.diverged), np.asarray(status.loss), recs.results()), recs
