"""Stacked many-model training: K models on a leading axis, one jitted program.

Each model ``m`` trains on the examples with ``keep[m] == True``. Its parameters, BatchNorm
statistics and optimizer state live on a leading model axis; one jitted call trains a *chunk* of
models for a block of epochs (``vmap`` over models — or ``lax.map`` over groups of ``vmap_size``
models — around ``lax.scan`` over epochs and steps). Every random stream is derived by
``fold_in`` from ``(seed, stream, model id, epoch or step)``, so a model's result does not depend on
the chunk it trained in.

Data order: in epoch ``e`` model ``m`` visits its own IN examples in a uniformly random order
drawn from ``(seed, model id, epoch)`` (:func:`epoch_orders`); it takes
``S_m = ceil(n_in_m / B)`` steps of ``B`` examples (the last batch wraps around to the start of
the epoch's order). The learning-rate schedule runs over each model's own ``epochs * S_m`` steps.
Models whose loss or parameters become non-finite are frozen at their last finite state and flagged.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.config import Config
from jaxmem.data.queries import query_inputs
from jaxmem.models import make_model, whitening_kernels
from jaxmem.models.registry import spec
from jaxmem.train import recording
from jaxmem.train.lora import frozen_base
from jaxmem.train.optim import make_optimizer
from jaxmem.train.rng import AUGMENT, CURVATURE, DATA, DP_NOISE, DROPOUT, FLIP, INIT, epoch_orders, model_keys
from jaxmem.train.state import ChunkStatus
from jaxmem.train.steps import ModelSteps
from jaxmem.train.task import task_for

__all__ = ["Trainer", "train_phases", "steps_per_epoch_max", "WHITEN_IMAGES", "CPU_VMAP_SIZE",
           "group_size", "host_step_loop"]

WHITEN_IMAGES = 5000   # airbench94 whitens on 5,000 training images
CPU_VMAP_SIZE = 1      # models vmapped together on CPU when train.vmap_size = 0 (1: one at a time)


def group_size(cfg, K: int, backend=None) -> int:
    """Models vmapped together (trained and evaluated at once) in a chunk of ``K``:
    ``train.vmap_size``, or when 0, the whole chunk, except on CPU, where models go one at a
    time (:data:`CPU_VMAP_SIZE`). ``backend``: JAX's default backend unless given. The memory
    check at the door (:mod:`jaxmem.runs.preflight`) counts the activations of this many."""
    vs = cfg.train.vmap_size
    if vs <= 0:
        backend = jax.default_backend() if backend is None else backend
        vs = CPU_VMAP_SIZE if backend == "cpu" else K
    return min(vs, K)


def host_step_loop(cfg, backend=None) -> bool:
    """Whether training steps loop on the host (one jitted call per step, every model of the
    chunk vmapped together: :meth:`Trainer._train_host_loop`): ``train.step_loop = "host"``, or
    "auto" for a convolutional model on CPU (jax#12868)."""
    t = cfg.train
    backend = jax.default_backend() if backend is None else backend
    return t.step_loop == "host" or (t.step_loop == "auto" and backend == "cpu"
                                     and spec(cfg.model.name).convolutional)


@dataclasses.dataclass
class Trainer(ModelSteps):
    """Trains chunks of models on one dataset; the static pieces are built once and jitted once.

    ``schedule_epochs``: the length of the training schedule in epochs, for the per-model step
    bookkeeping (total steps, the learning-rate schedule); ``train.epochs`` by default, the total
    of the phases for :func:`train_phases`.
    """

    cfg: Config
    x_train: Any            # [N, ...] on device
    y_train: Any            # [N] int32 on device
    num_classes: int
    steps_per_epoch_max: int  # static scan length: max over ALL models of the run (chunk-independent)
    schedule_epochs: float | None = None

    def __post_init__(self):
        t = self.cfg.train
        self.model = make_model(self.cfg, self.num_classes)
        # what the model learns (classification, or a causal LM's next tokens: train/task.py)
        self.task = task_for(self.cfg.model.name)
        self.whiten = getattr(self.cfg.model, "whiten", False)
        if self.whiten and len(self.x_train.shape) != 4:
            raise ValueError(f"model.whiten: needs images [N, H, W, C], got inputs of shape "
                             f"{tuple(self.x_train.shape)}")
        self.tx = make_optimizer(t, whiten=self.whiten)
        # convolution gradients in an XLA:CPU loop body are slow (jax#12868): loop on the host
        self.host_steps = host_step_loop(self.cfg)
        if self.schedule_epochs is None:
            self.schedule_epochs = t.epochs
        self.num_epochs = int(math.ceil(t.epochs))
        sample = jnp.zeros((1,) + tuple(self.x_train.shape[1:]), self.x_train.dtype)
        self._template = jax.eval_shape(lambda k: self.model.init({"params": k, "dropout": k},
                                                                  sample, train=False),
                                        jax.random.key(0))
        self.has_bn = "batch_stats" in self._template
        # LoRA (jaxmem.train.lora): the models are adapters over one frozen base, held here and
        # passed to every jitted call once (self._jit), never replicated per model
        self.frozen, self._frozen_in = None, None
        if "frozen" in self._template:
            self.frozen = frozen_base(self.cfg, self.model, sample)
        if t.dp.enabled and self.has_bn:
            raise ValueError("train.dp.enabled: DP-SGD needs per-example gradients, which BatchNorm "
                             "does not allow; choose a model without batch_norm")
        # per-epoch record hook: name -> fn(state, (x, y), epoch, keys) -> {record: [N]} (one
        # model, eval mode; jaxmem.train.recording); record_names: what the entries return
        self.records, self.record_names = recording.hooks(self)
        self._train_fns: dict = {}
        #: host arrays put on the device once per trainer, by name (e.g. the test inputs of every chunk)
        self.device_arrays: dict = {}
        self._cache: dict = {}   # the chunk in training (see _chunk)

    def _train_host_loop(self, state, status, orders, n_in, spe, total, keys, epoch0, num_epochs):
        """The same training with the step loop on the host: one jitted (vmapped) call per step.
        XLA's CPU backend runs convolution gradients inside a loop body ~10x slower than outside
        one (jax#12868: ~15x here), so CNNs on CPU train this way; a dispatch costs < 1 ms."""
        step = self._train_fns.get("host_step")
        if step is None:
            step = self._train_fns["host_step"] = self._jit(
                jax.vmap(self._step_one, in_axes=(None,) + (0,) * 9 + (None, None)),
                donate_argnums=(1,))
            self._train_fns["host_end"] = self._jit(
                jax.vmap(self._epoch_end, in_axes=(None,) + (0,) * 5 + (None, 0)))
        end = self._train_fns["host_end"]
        data = (self.x_train, self.y_train)
        diverged, loss = status
        outs = []
        for j in range(num_epochs):
            e = jnp.int32(epoch0 + j)
            perm = orders[:, j] if isinstance(orders, jax.Array) else jnp.asarray(orders[:, j])
            zero = jnp.zeros_like(loss)
            st = (state, diverged, zero, zero)
            for pos in range(self.steps_per_epoch_max):
                st = step(data, *st, perm, n_in, spe, total, keys, e, jnp.int32(pos))
            state, diverged, loss, out = end(data, *st, loss, e, keys)
            outs.append(out)
        records = {k: jnp.stack([o[k] for o in outs], axis=1) for k in self.record_names}
        return state, ChunkStatus(diverged, loss), records

    def group_size(self, K: int) -> int:
        """Models vmapped together in a chunk of ``K`` (:func:`group_size`)."""
        return group_size(self.cfg, K)

    def map_models(self, fn, *args):
        """Map one model's ``fn`` over the leading model axis of ``args`` the way training does
        (:meth:`_map_models`: a model's result does not depend on its chunk)."""
        return self._map_models(fn, *args)

    def _map_models(self, fn, *args):
        """Map ``fn`` over the leading model axis: ``vmap``, in groups of :meth:`group_size` via
        ``lax.map``, or (a group of one) ``lax.map`` over single, unbatched models: the same
        program whatever the chunk size, so a model's result does not depend on its chunk."""
        K = jax.tree.leaves(args)[0].shape[0]
        vs = self.group_size(K)
        if vs == 1:
            return jax.lax.map(lambda a: fn(*a), args)
        if vs >= K:
            return jax.vmap(fn)(*args)
        return jax.lax.map(lambda a: fn(*a), args, batch_size=vs)

    def init_chunk(self, model_ids, keep_rows=None):
        """Stacked initial state for the given model ids (plus per-model bookkeeping).
        ``keep_rows`` [K, N] is needed by ``model.whiten`` (each stem is whitened on the first
        WHITEN_IMAGES of the model's own training examples, in dataset order)."""
        keys = model_keys(self.cfg.seed, INIT, model_ids)
        if self.whiten:
            if keep_rows is None:
                raise ValueError("model.whiten: init_chunk needs the chunk's keep rows")
            index, weight = _first_in(np.asarray(keep_rows), WHITEN_IMAGES)
            fn = self._train_fns.get("init_w")
            if fn is None:
                k = self.model.whiten_kernel_size
                fn = self._train_fns["init_w"] = jax.jit(lambda keys, i, w, x: self._map_models(
                    self._init_one, keys, whitening_kernels(x, i, w, k)))
            state = fn(keys, jnp.asarray(index), jnp.asarray(weight), self.x_train)
        else:
            fn = self._train_fns.get("init")
            if fn is None:
                fn = self._train_fns["init"] = jax.jit(
                    lambda keys: self._map_models(self._init_one, keys))
            state = fn(keys)
        K = len(model_ids)
        return state, ChunkStatus(jnp.zeros(K, bool), jnp.full(K, jnp.nan, jnp.float32))

    def _chunk(self, model_ids, keep_rows):
        """What stays fixed while a chunk trains epoch by epoch, computed once per chunk: the
        host copy of its keep rows, the per-model step counts (on device) and stream keys."""
        ids = tuple(int(m) for m in np.asarray(model_ids))
        c = self._cache
        same_rows = c.get("rows_in") is keep_rows or (
            isinstance(keep_rows, np.ndarray) and "rows" in c and
            np.array_equal(c["rows"], keep_rows))        # (a device array is not copied back)
        if c.get("ids") != ids or not same_rows:
            rows = np.asarray(keep_rows)
            c.clear()
            c.update(ids=ids, rows_in=keep_rows, rows=rows,
                     counts=tuple(jnp.asarray(a) for a in self.step_counts(rows)),
                     keys={name: model_keys(self.cfg.seed, s, np.asarray(ids)) for name, s in
                           (("data", DATA), ("dropout", DROPOUT), ("augment", AUGMENT),
                            ("dp", DP_NOISE), ("flip", FLIP), ("curvature", CURVATURE))})
        return c

    def train_epochs(self, state, status, keep_rows, model_ids, epoch0: int, num_epochs: int):
        """Train a stacked chunk for ``num_epochs`` epochs starting at ``epoch0`` (jitted once per
        ``num_epochs``). ``keep_rows`` is ``[K, N]`` bool (a sharded array shards the orders too)."""
        c = self._chunk(model_ids, keep_rows)
        orders = epoch_orders(self.cfg.seed, c["ids"], c["rows"], epoch0, num_epochs)
        if isinstance(keep_rows, jax.Array) and hasattr(keep_rows.sharding, "spec"):
            orders = jax.device_put(orders, keep_rows.sharding)
        if self.host_steps:
            return self._train_host_loop(state, status, orders, *c["counts"], c["keys"], epoch0,
                                         num_epochs)
        fn = self._train_fns.get(("train", num_epochs))
        if fn is None:
            def run(state, status, orders, n_in, spe, total, keys, epoch0, data):
                # one model at a time: its own step count per epoch, no per-step masking
                one = functools.partial(self._train_one, data, epoch0=epoch0, num_epochs=num_epochs,
                                        per_step_mask=self.group_size(n_in.shape[0]) != 1)
                return self._map_models(one, state, status, orders, n_in, spe, total, keys)
            fn = self._train_fns[("train", num_epochs)] = self._jit(run, donate_argnums=(0,))
        return fn(state, status, orders, *c["counts"], c["keys"], jnp.int32(epoch0),
                  (self.x_train, self.y_train))

    def step_counts(self, keep_rows: np.ndarray):
        """Per model: examples IN, steps per epoch ceil(n_in / B), total steps
        round(schedule_epochs * S) (schedule_epochs = train.epochs unless a phase schedule)."""
        n_in = keep_rows.sum(1).astype(np.int32)
        spe = np.maximum(-(-n_in // self.cfg.train.batch_size), 1).astype(np.int32)
        total = np.round(self.schedule_epochs * spe).astype(np.int32)
        return n_in, spe, total

    def logits(self, state, x, queries, out_dtype=jnp.float32):
        """Eval-mode logits of every model of a chunk on ``x`` under each query: [K, n, A, C]."""
        key = ("logits", tuple(queries), x.shape, jnp.dtype(out_dtype).name)
        fn = self._train_fns.get(key)
        if fn is None:
            bs = self.cfg.signals.batch_size

            def run(st, x):
                def one(params, batch_stats):
                    outs = [self.apply_eval(params, batch_stats, query_inputs(x, q), bs)
                            for q in queries]
                    return jnp.stack(outs, axis=1).astype(out_dtype)

                return self._map_models(one, st.params, st.batch_stats)

            fn = self._train_fns[key] = self._jit(run)
        return fn(state, x)

    def _jit(self, fn, donate_argnums=()):
        """``jax.jit(fn)``, and with a frozen base (LoRA) the base passed as one extra, unbatched
        argument of the compiled call (not a compiled-in constant, not copied per model): the
        returned function has ``fn``'s signature; while ``fn`` is traced, :meth:`variables`
        reads the base's tracer."""
        if self.frozen is None:
            return jax.jit(fn, donate_argnums=donate_argnums)

        def with_base(frozen, *args):
            prev, self._frozen_in = self._frozen_in, frozen
            try:
                return fn(*args)
            finally:
                self._frozen_in = prev

        jitted = jax.jit(with_base, donate_argnums=tuple(i + 1 for i in donate_argnums))
        return lambda *args: jitted(self.frozen, *args)


def train_phases(trainer: Trainer, model_ids, phases, *, init_rows=None):
    """Train a chunk through a per-example availability schedule: yield ``(state, status)``
    after each :class:`Phase` (``available`` [K, N] bool: the examples each model trains on then;
    ``epochs``; a 0-epoch phase only marks a point to look at the models). The phases' epochs
    follow each other (epoch numbers, and so data orders and keys, continue), and the trainer's
    ``schedule_epochs`` should be their total. ``init_rows`` [K, N]: the rows a whitened stem is
    computed from (default: the first phase's). Each yielded state is donated to the next phase:
    use it (or copy it to the host) before advancing the generator."""
    phases = list(phases)
    rows = phases[0].available if init_rows is None else init_rows
    state, status = trainer.init_chunk(model_ids, rows)
    epoch = 0
    for ph in phases:
        if ph.epochs:
            state, status, _ = trainer.train_epochs(state, status, ph.available, model_ids, epoch,
                                                    ph.epochs)
            epoch += ph.epochs
        yield state, status


def _first_in(keep_rows: np.ndarray, n: int):
    """[K, n] indices of each row's first ``n`` True entries (padded with 0) and their weights."""
    K = keep_rows.shape[0]
    index, weight = np.zeros((K, n), np.int32), np.zeros((K, n), np.float32)
    for k in range(K):
        i = np.flatnonzero(keep_rows[k])[:n]
        index[k, : i.size], weight[k, : i.size] = i, 1.0
    return index, weight


def steps_per_epoch_max(keep: np.ndarray, batch_size: int) -> int:
    return int(max(1, -(-int(keep.sum(1).max()) // batch_size)))
