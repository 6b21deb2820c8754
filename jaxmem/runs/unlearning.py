"""An unlearning run: one stack holding models that train on a forget set and are then unlearned
by each method, and models that never see it (the retrain oracle), trained and unlearned chunk by
chunk, resumable after a kill (orbax checkpoints at epoch and step-block boundaries; each finished
(chunk, stage) written atomically), bit-identical to an uninterrupted run.

Layout of ``workdir``::

    unlearning.json            what the run is (config, forget set, methods): a rerun must match
    keep.npy forget.npy unlearned.npy labels.npy test_labels.npy     the stored design
    out/CHUNK/STAGE/           logits.npy [n, N, C], test_logits.npy [n, N_test, C],
                               diverged.npy [n], meta.json (seconds, steps)
                               STAGE: "trained" (every chunk), then each method (unlearned chunks)
    ckpt/CHUNK/train|METHOD/   orbax checkpoints of the chunk in progress: training's every
                               ``train.checkpoint_every`` epochs (0: once, the trained state the
                               methods start from), a method's after each ``block_steps`` block

:func:`load_unlearning` gathers the stages over chunks.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.data import build_dataset
from jaxmem.io import RunError, atomic_dir, load_json, load_npy, save_json, save_npy
from jaxmem.runs import checkpoint
from jaxmem.runs.training import checkpoint_epoch, chunk_size
from jaxmem.train import Trainer, steps_per_epoch_max
from jaxmem.unlearn import Unlearner, index_rows, make_methods, unlearn_steps, unlearning_design

__all__ = ["unlearn_run", "load_unlearning", "TRAINED"]

TRAINED = "trained"


def _chunks(unlearned: np.ndarray, K: int):
    """Chunks of at most K models that never mix roles: ``[(a, b)]``."""
    M = unlearned.shape[0]
    n_u = int(unlearned.sum())
    out = []
    for lo, hi in ((0, n_u), (n_u, M)):
        out += [(s, min(s + K, hi)) for s in range(lo, hi, K)]
    return out


def _cname(a, b):
    return f"models-{a:06d}-{b:06d}"


def _write_stage(path: Path, trainer, state, status, n: int, x_train, x_test, meta: dict):
    import jax

    lg = trainer.logits(state, x_train, ["identity"])[:, :, 0]
    tl = trainer.logits(state, x_test, ["identity"])[:, :, 0]
    jax.block_until_ready((lg, tl))
    with atomic_dir(path) as tmp:
        save_npy(tmp / "logits.npy", np.asarray(lg)[:n])
        save_npy(tmp / "test_logits.npy", np.asarray(tl)[:n])
        save_npy(tmp / "diverged.npy", np.asarray(status.diverged)[:n])
        save_json(tmp / "meta.json", meta)


def unlearn_run(cfg: cfgmod.Config, workdir, *, methods, forget, retain_fraction: float = 1.0,
                unlearned_fraction: float = 0.5, block_steps: int = 0, dataset=None, log=print) -> dict:
    """Train (or resume) the unlearning stack in ``workdir`` and return :func:`load_unlearning`.

    Args:
        cfg: the run config (data, model, train, seed, ``subsets.num_models`` = M).
        workdir: the run's folder.
        methods: method specs (:func:`jaxmem.unlearn.make_methods`).
        forget: [N] bool, the forget set (:func:`jaxmem.unlearn.forget_set`).
        retain_fraction / unlearned_fraction: :func:`jaxmem.unlearn.unlearning_design`.
        block_steps: unlearning steps per jitted call; a checkpoint is saved after each block
            (0: one block, no mid-method checkpoint).
        dataset: the built dataset (default: built from ``cfg``).
    Returns:
        the run's arrays (:func:`load_unlearning`).
    Raises:
        RunError: ``workdir`` holds a different unlearning run."""
    import jax
    import jax.numpy as jnp

    methods = make_methods(methods)
    workdir = Path(workdir)
    ds = dataset if dataset is not None else build_dataset(cfg)
    forget = np.asarray(forget, bool)
    if forget.shape != (len(ds.y_train),):
        raise RunError(f"forget: mask of shape {forget.shape}, the data has {len(ds.y_train)} training examples")
    M = cfg.subsets.num_models
    try:
        keep, unlearned = unlearning_design(cfg.seed, M, forget, retain_fraction=retain_fraction,
                                            unlearned_fraction=unlearned_fraction)
    except ValueError as e:
        raise RunError(str(e)) from None
    spec = {"config": cfgmod.to_dict(cfg), "forget": np.flatnonzero(forget).tolist(),
            "methods": [{"name": m.name, **dataclasses.asdict(m)} for m in methods],
            "retain_fraction": retain_fraction, "unlearned_fraction": unlearned_fraction,
            "block_steps": block_steps}
    spec = json.loads(json.dumps(spec))          # as stored (tuples -> lists)
    marker = workdir / "unlearning.json"
    if marker.exists():
        if load_json(marker) != spec:
            raise RunError(f"{workdir}: holds a different unlearning run (config, forget set or methods "
                           f"differ); use another folder")
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        for name, arr in (("keep", keep), ("forget", forget), ("unlearned", unlearned),
                          ("labels", ds.y_train), ("test_labels", ds.y_test)):
            save_npy(workdir / f"{name}.npy", np.asarray(arr))
        save_json(marker, spec)

    x_train, y_train, x_test = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), jnp.asarray(ds.x_test)
    trainer = Trainer(cfg, x_train, y_train, int(ds.num_classes),
                      steps_per_epoch_max(keep, cfg.train.batch_size))
    _, _, train_total = trainer.step_counts(keep)
    train_steps = int(train_total[unlearned].max())
    unlearners = {m.name: Unlearner(trainer, m, unlearn_steps(m, train_steps)) for m in methods}
    fidx, fn = index_rows(forget[None])
    fidx, fn = fidx[0], int(fn[0])
    K = chunk_size(cfg)
    every = cfg.train.checkpoint_every or trainer.num_epochs   # (0: one checkpoint, the trained state)
    for a, b in _chunks(unlearned, K):
        out = workdir / "out" / _cname(a, b)
        stages = [TRAINED] + ([m.name for m in methods] if unlearned[a] else [])
        if all((out / s / "meta.json").exists() for s in stages):
            shutil.rmtree(workdir / "ckpt" / _cname(a, b), ignore_errors=True)   # (a kill before its removal)
            continue
        ids = np.arange(a, a + K)
        rows = keep[np.minimum(ids, b - 1)]       # padded with the chunk's last model's row
        n = b - a
        ck = workdir / "ckpt" / _cname(a, b)
        # training, epoch by epoch, checkpointed (the final epoch's checkpoint is the trained
        # state the methods start from, kept until the chunk is done)
        t0 = time.time()
        state, status = trainer.init_chunk(ids, rows)
        mngr = checkpoint.manager(ck / "train")
        epoch = 0
        if checkpoint_epoch(ck / "train") is not None:
            epoch, state, status, _ = checkpoint.restore(mngr, state, status)
            log(f"  models {a}-{b - 1}: resuming training at epoch {epoch}")
        while epoch < trainer.num_epochs:
            k = min(every, trainer.num_epochs - epoch)
            state, status, _ = trainer.train_epochs(state, status, rows, ids, epoch, k)
            epoch += k
            checkpoint.save(mngr, epoch, state, status)
        mngr.close()
        train_seconds = time.time() - t0
        if not (out / TRAINED / "meta.json").exists():
            _write_stage(out / TRAINED, trainer, state, status, n, x_train, x_test,
                         {"seconds": train_seconds, "steps": train_steps, "models": [a, b]})
        trained = checkpoint.manager(ck / "train")
        for name in stages[1:]:
            if (out / name / "meta.json").exists():
                continue
            u = unlearners[name]
            st0, s0 = trainer.init_chunk(ids, rows)
            _, st0, s0, _ = checkpoint.restore(trained, st0, s0)
            state, status = u.init(st0)
            ridx, rn = index_rows(rows & ~forget[None])
            keys = u.keys(ids)
            m_mngr = checkpoint.manager(ck / name)
            done = 0
            if checkpoint_epoch(ck / name) is not None:
                done, state, status, _ = checkpoint.restore(m_mngr, state, status)
                log(f"  models {a}-{b - 1}: resuming {name} at step {done}")
            t1 = time.time()
            for s, k in u.blocks(block_steps):
                if s < done:
                    continue
                state, status = u.run_block(state, status, ridx, rn, fidx, fn, keys, s, k)
                if s + k < u.total_steps:
                    checkpoint.save(m_mngr, s + k, state, status)
            jax.block_until_ready(status.loss)
            m_mngr.close()
            _write_stage(out / name, trainer, state, status, n, x_train, x_test,
                         {"seconds": time.time() - t1, "steps": u.total_steps, "models": [a, b],
                          "cost_vs_retrain": u.cost(train_steps, cfg.train.batch_size)})
            shutil.rmtree(ck / name, ignore_errors=True)
        trained.close()
        shutil.rmtree(ck, ignore_errors=True)
        log(f"  models {a}-{b - 1}: trained{' and unlearned' if unlearned[a] else ''}")
    return load_unlearning(workdir)


def load_unlearning(workdir) -> dict:
    """A finished unlearning run's arrays: ``keep``, ``forget``, ``unlearned``, ``labels``,
    ``test_labels``, and per stage (``"trained"`` for every model; each method for the
    unlearned models): ``logits`` {stage: [M_stage, N, C]}, ``test_logits``, ``diverged``,
    ``seconds`` (summed over chunks), ``meta`` (the first chunk's)."""
    workdir = Path(workdir)
    spec = load_json(workdir / "unlearning.json")
    arr = {k: load_npy(workdir / f"{k}.npy") for k in ("keep", "forget", "unlearned", "labels", "test_labels")}
    unlearned = arr["unlearned"]
    stages = [TRAINED] + [m["name"] for m in spec["methods"]]
    K = chunk_size(cfgmod.from_dict(spec["config"]))
    out = {**arr, "spec": spec, "logits": {}, "test_logits": {}, "diverged": {}, "seconds": {}, "meta": {}}
    for s in stages:
        parts = [(a, b) for a, b in _chunks(unlearned, K) if s == TRAINED or unlearned[a]]
        dirs = [workdir / "out" / _cname(a, b) / s for a, b in parts]
        missing = [str(d) for d in dirs if not (d / "meta.json").exists()]
        if missing:
            raise RunError(f"{missing[0]}: missing; rerun the unlearning to finish it")
        for key in ("logits", "test_logits", "diverged"):
            out[key][s] = np.concatenate([load_npy(d / f"{key}.npy") for d in dirs])
        metas = [load_json(d / "meta.json") for d in dirs]
        out["seconds"][s] = float(sum(m["seconds"] for m in metas))
        out["meta"][s] = metas[0]
    return out
