"""Unlearning every model of a stack at once: one model's update (:meth:`Unlearner._block_one`),
mapped over a chunk's leading model axis by the trainer's own ``map_models`` (``vmap``, or
``lax.map`` over groups of ``train.vmap_size`` models), in one jitted call per block of steps, so
that a run can checkpoint between blocks and resume bit-identically.

Step ``t`` of model ``m`` draws its retain and forget batches uniformly with replacement from the
model's own retain set (``keep[m] & ~forget``) and from the forget set, with keys
``fold_in(fold_in(fold_in(key(seed), stream(method)), m), t)``: a model's result depends on neither
its chunk nor the blocking of its steps. No augmentation; a fresh optimizer of the run's kind
(``train.optimizer``) at the method's constant learning rate, no weight decay. A model whose
parameters become non-finite in a block goes back to its state at the start of the block and is
flagged diverged (its later blocks are no-ops), as in training.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmem.config.schema import DPConfig
from jaxmem.train.optim import make_optimizer
from jaxmem.train.rng import model_keys
from jaxmem.train.state import ChunkStatus, TrainState
from jaxmem.train.steps import all_finite

__all__ = ["Unlearner", "unlearn_steps", "method_stream", "index_rows"]


def method_stream(name: str) -> int:
    """The random stream id of a method (fold_in data): stable across runs and registries."""
    return 1000 + zlib.crc32(name.encode()) % (1 << 30)


def unlearn_steps(method, train_steps: int) -> int:
    """``max(1, round(method.budget * train_steps))``: the method's optimizer steps."""
    return max(1, int(round(method.budget * train_steps)))


def index_rows(mask_rows: np.ndarray):
    """``([K, N] int32 indices of each row's True entries, padded with 0; [K] int32 counts)``."""
    mask_rows = np.asarray(mask_rows, bool)
    K, N = mask_rows.shape
    idx = np.zeros((K, max(N, 1)), np.int32)
    for k in range(K):
        i = np.flatnonzero(mask_rows[k])
        idx[k, : i.size] = i
    return idx, mask_rows.sum(1).astype(np.int32)


@dataclasses.dataclass
class Unlearner:
    """Applies one :class:`~jaxmem.unlearn.methods.Method` to chunks of trained models.

    ``trainer``: the run's :class:`jaxmem.train.Trainer` (its model, loss, data and model
    mapping); ``total_steps``: the method's steps (:func:`unlearn_steps`), a run constant."""

    trainer: object
    method: object
    total_steps: int

    def __post_init__(self):
        tc = self.trainer.cfg.train
        self.batch_size = self.method.batch_size or tc.batch_size
        self.tx = make_optimizer(dataclasses.replace(tc, learning_rate=self.method.learning_rate,
                                                     weight_decay=0.0, dp=DPConfig()),
                                 whiten=self.trainer.whiten)
        self._fns: dict = {}

    def keys(self, model_ids):
        return model_keys(self.trainer.cfg.seed, method_stream(self.method.name), np.asarray(model_ids))

    def init(self, state: TrainState):
        """The trained chunk's parameters and statistics with a fresh optimizer state (and no
        lookahead averages), and a clean status."""
        fn = self._fns.get("init")
        if fn is None:
            fn = self._fns["init"] = jax.jit(lambda p: self.trainer.map_models(self.tx.init, p))
        K = jax.tree.leaves(state.params)[0].shape[0]
        st = TrainState(state.params, state.batch_stats, fn(state.params))
        return st, ChunkStatus(jnp.zeros(K, bool), jnp.full(K, jnp.nan, jnp.float32))

    def _block_one(self, data, state, diverged, ridx, nr, key, fidx, nf, t0, n):
        """Steps ``[t0, t0 + n)`` of ONE model. ``ridx`` [N] / ``nr``: its retain indices and
        count; ``fidx`` [N] / ``nf``: the forget set's. Returns (state, diverged, mean objective)."""
        tr, m = self.trainer, self.method
        x_all, y_all = data
        N = y_all.shape[0]
        x_flat = x_all.reshape(N, -1)
        shape = x_all.shape[1:]
        B = self.batch_size
        total = jnp.float32(self.total_steps)

        def body(t, carry):
            st, acc = carry
            kr, kf, kd, kl = jax.random.split(jax.random.fold_in(key, t), 4)
            r = ridx[jax.random.randint(kr, (B,), 0, jnp.maximum(nr, 1))]
            f = fidx[jax.random.randint(kf, (B,), 0, jnp.maximum(nf, 1))]
            retain = (x_flat[r].reshape((B,) + shape), y_all[r])
            forget = (x_flat[f].reshape((B,) + shape), y_all[f])
            loss = lambda p, x, y: tr.batch_loss(p, st.batch_stats, x, y, kd)
            obj = lambda p: m.objective(loss, p, retain, forget, kl, t.astype(jnp.float32) / total,
                                        tr.num_classes)
            (val, bs), g = jax.value_and_grad(obj, has_aux=True)(st.params)
            upd, opt = self.tx.update(g, st.opt_state, st.params)
            st = st._replace(params=optax.apply_updates(st.params, upd), batch_stats=bs, opt_state=opt)
            return st, acc + val

        n = jnp.where(diverged, 0, n)
        new, acc = jax.lax.fori_loop(t0, t0 + n, body, (state, jnp.float32(0)))
        finite = all_finite(acc, new)
        state = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        return state, diverged | ~finite, acc / jnp.maximum(n, 1).astype(jnp.float32)

    def run_block(self, state, status, retain_idx, retain_n, forget_idx, forget_n, keys, t0: int, n: int):
        """Steps ``[t0, t0 + n)`` of every model of a chunk (one jitted call, compiled once).

        Args:
            state / status: the chunk's stacked :class:`TrainState` and :class:`ChunkStatus`.
            retain_idx [K, N] int32 / retain_n [K]: each model's retain indices and count.
            forget_idx [N] int32 / forget_n: the forget set's indices and count.
            keys: [K] per-model keys (:meth:`keys`).
        Returns:
            ``(state, status)``; ``status.loss`` is the mean objective over the block."""
        fn = self._fns.get("block")
        if fn is None:
            def run(state, diverged, ridx, nr, keys, fidx, nf, t0, n, data):
                one = functools.partial(self._block_one, data, fidx=fidx, nf=nf, t0=t0, n=n)
                return self.trainer.map_models(one, state, diverged, ridx, nr, keys)
            fn = self._fns["block"] = jax.jit(run, donate_argnums=(0,))
        tr = self.trainer
        state, diverged, loss = fn(state, status.diverged, jnp.asarray(retain_idx), jnp.asarray(retain_n),
                                   keys, jnp.asarray(forget_idx), jnp.int32(forget_n), jnp.int32(t0),
                                   jnp.int32(n), (tr.x_train, tr.y_train))
        return state, ChunkStatus(diverged, loss)

    def blocks(self, block_steps: int = 0):
        """``[(t0, n)]``: the method's steps in blocks of ``block_steps`` (0: one block)."""
        T = self.total_steps
        b = T if block_steps <= 0 else block_steps
        return [(t, min(b, T - t)) for t in range(0, T, b)]

    def cost(self, train_steps: int, train_batch: int) -> float:
        """Gradient evaluations of the method relative to retraining: steps x batches read per
        step x batch size over training's steps x batch size (retraining = 1)."""
        per = len(self.method.uses) * self.batch_size
        return self.total_steps * per / max(1, train_steps * train_batch)
