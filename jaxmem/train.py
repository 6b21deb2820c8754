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
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmem import signals as sig
from jaxmem.config import MODEL_FIELDS, Config, TrainConfig

__all__ = ["Trainer", "make_model", "make_optimizer", "model_keys", "dp_epsilon", "query_inputs"]

# Stream ids for fold_in(root, stream).
INIT, DATA, DROPOUT, AUGMENT, DP_NOISE, FLIP = 0, 1, 2, 3, 4, 5
WHITEN_IMAGES = 5000   # airbench94 whitens on 5,000 training images
CPU_VMAP_SIZE = 4      # models vmapped together on CPU when train.vmap_size = 0


def make_model(cfg: Config, num_classes: int, input_dtype=None):
    from jaxmem.models import get_model

    kwargs = {f: getattr(cfg.model, f) for f in MODEL_FIELDS[cfg.model.name]}
    for k in ("hidden", "channels"):
        if k in kwargs:
            kwargs[k] = tuple(kwargs[k])
    if cfg.train.compute_dtype == "bfloat16":
        kwargs["dtype"] = jnp.bfloat16
    return get_model(cfg.model.name, num_classes, **kwargs)


def _base_optimizer(t: TrainConfig, lr: float, wd: float) -> optax.GradientTransformation:
    if t.optimizer == "adam":
        base = optax.adam(lr)
        return optax.chain(optax.add_decayed_weights(wd), base) if wd else base
    if t.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=wd)
    base = optax.sgd(lr, momentum=t.momentum or None, nesterov=t.optimizer == "nesterov")
    return optax.chain(optax.add_decayed_weights(wd), base) if wd else base


def param_labels(params, whiten: bool = False):
    """Optimizer group of every parameter: ``'frozen'`` (the whitened airbench stem kernel),
    ``'bn_bias'`` (BatchNorm biases) or ``'other'``."""
    def label(path, _):
        names = [str(getattr(k, "key", k)) for k in path]
        if whiten and names[-2:] == ["stem", "kernel"]:
            return "frozen"
        if names[-1] == "bias" and any(n.startswith("BatchNorm") for n in names):
            return "bn_bias"
        return "other"
    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(t: TrainConfig, whiten: bool = False) -> optax.GradientTransformation:
    """The base optimizer at the peak learning rate; the schedule scales its updates per model.

    With ``t.bias_lr_scale = s != 1`` BatchNorm biases get learning rate ``lr * s`` and weight
    decay ``wd / s`` (the same decay per step under SGD), as in airbench94's ``bias_scaler``;
    ``whiten`` freezes the stem kernel (no update, no decay)."""
    base = _base_optimizer(t, t.learning_rate, t.weight_decay)
    if whiten or t.bias_lr_scale != 1.0:
        s = t.bias_lr_scale
        base = optax.multi_transform(
            {"other": base, "bn_bias": _base_optimizer(t, t.learning_rate * s, t.weight_decay / s),
             "frozen": optax.set_to_zero()},
            functools.partial(param_labels, whiten=whiten))
    if t.dp.enabled:
        # DP-SGD (Abadi et al. 2016): per-example clipping + Gaussian noise, optax's own transform.
        # Its noise key is replaced every step by fold_in(dp_key(model), step) for determinism.
        dp = optax.contrib.differentially_private_aggregate(t.dp.clip_norm, t.dp.noise_multiplier,
                                                           key=jax.random.key(0))
        return optax.chain(dp, base)
    return base


def schedule_factor(kind: str, frac, warmup_frac: float, start: float = 0.0, end: float = 0.0):
    """Multiplier of the peak learning rate at training progress ``frac`` ∈ [0, 1].

    ``triangle`` (airbench94): linear from ``start`` at 0 to 1 at ``warmup_frac``, then linear to
    ``end`` at 1."""
    if kind == "constant":
        return jnp.ones_like(frac)
    if kind == "cosine":
        return 0.5 * (1 + jnp.cos(jnp.pi * frac))
    w = max(warmup_frac, 1e-9)
    if kind == "triangle":
        up = start + (1.0 - start) * frac / w
        down = 1.0 + (end - 1.0) * (frac - w) / max(1 - w, 1e-9)
        return jnp.where(frac < w, up, down)
    cos = 0.5 * (1 + jnp.cos(jnp.pi * jnp.clip((frac - w) / max(1 - w, 1e-9), 0, 1)))
    return jnp.where(frac < w, frac / w, cos)


def model_keys(seed: int, stream: int, model_ids):
    """Per-model keys ``fold_in(fold_in(key(seed), stream), m)``."""
    root = jax.random.fold_in(jax.random.key(seed), stream)
    return jax.vmap(lambda m: jax.random.fold_in(root, m))(jnp.asarray(model_ids, jnp.uint32))


def _shift(x, dx, dy):
    """Translate an NHWC batch by (dx, dy) pixels with reflect padding."""
    if x.ndim != 4:
        return x
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    H, W = x.shape[1], x.shape[2]
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return xp[:, p - dy : p - dy + H, p - dx : p - dx + W, :]


def query_inputs(x, query: str):
    """The input under an augmentation query: identity, flip (horizontal), shift:DX,DY."""
    if query == "identity":
        return x
    if query == "flip":
        return x[:, :, ::-1, :] if x.ndim == 4 else x
    dx, dy = (int(v) for v in query.split(":", 1)[1].split(","))
    return _shift(x, dx, dy)


def _augment(x, key, kind: str, pad: int = 2, *, idx=None, epoch=None, flip_key=None):
    """Flip and/or random translation (reflect-padded crop) per example, inside jit.

    ``flip``: each example flipped with probability 1/2 at every step. ``altflip`` (airbench94's
    alternating flip): example ``i`` is flipped in epoch ``e`` iff ``base(i) XOR (e odd)``, with
    ``base(i)`` a fair coin from ``fold_in(flip_key, i)`` drawn once per model."""
    if kind == "none" or x.ndim != 4:
        return x
    kf, kc = jax.random.split(key)
    B, H, W, C = x.shape
    if kind.startswith("altflip"):
        base = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(flip_key, i)))(idx)
        flip = base ^ (epoch % 2 == 1)
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    elif "flip" in kind:
        flip = jax.random.bernoulli(kf, 0.5, (B,))
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    if "crop" in kind:
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        off = jax.random.randint(kc, (B, 2), 0, 2 * pad + 1)
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(xp, off)
    return x


class ChunkResult(NamedTuple):
    variables: Any          # stacked {'params', 'batch_stats'}
    diverged: np.ndarray    # [K] bool
    final_loss: np.ndarray  # [K] mean training loss over the last epoch
    correct_by_epoch: Any   # [K, E, N] bool or None


@dataclasses.dataclass
class Trainer:
    """Trains chunks of models on one dataset; the static pieces are built once and jitted once."""

    cfg: Config
    x_train: Any            # [N, ...] on device
    y_train: Any            # [N] int32 on device
    num_classes: int
    steps_per_epoch_max: int  # static scan length: max over ALL models of the run (chunk-independent)

    def __post_init__(self):
        t = self.cfg.train
        self.model = make_model(self.cfg, self.num_classes)
        self.whiten = self.cfg.model.whiten
        if self.whiten and len(self.x_train.shape) != 4:
            raise ValueError(f"model.whiten: needs images [N, H, W, C], got inputs of shape "
                             f"{tuple(self.x_train.shape)}")
        self.tx = make_optimizer(t, whiten=self.whiten)
        # convolution gradients in an XLA:CPU loop body are slow (jax#12868): loop on the host
        self.host_steps = t.step_loop == "host" or (
            t.step_loop == "auto" and jax.default_backend() == "cpu"
            and self.cfg.model.name in ("cnn", "resnet_airbench", "wrn"))
        self.num_epochs = int(math.ceil(t.epochs))
        sample = jnp.zeros((1,) + tuple(self.x_train.shape[1:]), self.x_train.dtype)
        self._template = jax.eval_shape(lambda k: self.model.init({"params": k, "dropout": k},
                                                                  sample, train=False),
                                        jax.random.key(0))
        self.has_bn = "batch_stats" in self._template
        if t.dp.enabled and self.has_bn:
            raise ValueError("train.dp.enabled: DP-SGD needs per-example gradients, which BatchNorm "
                             "does not allow; choose a model without batch_norm")
        self._train_fns: dict = {}
        self._cache: dict = {}   # the chunk in training (see _chunk)

    # ----- one model ------------------------------------------------------------------------
    def _init_one(self, key, stem=None):
        sample = jnp.zeros((1,) + tuple(self.x_train.shape[1:]), self.x_train.dtype)
        variables = self.model.init({"params": key, "dropout": key}, sample, train=False)
        variables = dict(variables)
        params = variables.pop("params")
        if stem is not None:
            params = dict(params, stem=dict(params["stem"], kernel=stem))
        state = {"params": params, "batch_stats": variables.get("batch_stats", {}),
                 "opt_state": self.tx.init(params)}
        if self.cfg.train.lookahead_every:
            state["ema"] = {"params": params, "batch_stats": state["batch_stats"]}
            state["ema_on"] = jnp.zeros((), bool)
        return state

    def _loss(self, params, batch_stats, x, y, dropout_key):
        t = self.cfg.train
        variables = {"params": params}
        rngs = {"dropout": dropout_key} if self.cfg.model.dropout > 0 else {}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
            logits, upd = self.model.apply(variables, x, train=True, mutable=["batch_stats"],
                                           rngs=rngs)
            new_bs = upd["batch_stats"]
        else:
            logits = self.model.apply(variables, x, train=True, rngs=rngs)
            new_bs = batch_stats
        logits = logits.astype(jnp.float32)
        if t.label_smoothing:
            labels = optax.smooth_labels(jax.nn.one_hot(y, self.num_classes), t.label_smoothing)
            loss = optax.softmax_cross_entropy(logits, labels).mean()
        else:  # (the one-hot form ran ~3x slower per step on CPU for small MLPs)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, new_bs

    def _step(self, state, x, y, t_global, total_steps, keys, epoch):
        """One optimizer step of one model. Returns (new_state, loss)."""
        tc = self.cfg.train
        dkey = jax.random.fold_in(keys["dropout"], t_global)
        if tc.dp.enabled:
            def per_example(p, xi, yi, i):
                return jax.value_and_grad(self._loss, has_aux=True)(
                    p, state["batch_stats"], xi[None], yi[None], jax.random.fold_in(dkey, i))
            (losses, _), grads = jax.vmap(per_example, in_axes=(None, 0, 0, 0))(
                state["params"], x, y, jnp.arange(x.shape[0]))
            loss, new_bs = losses.mean(), state["batch_stats"]
            opt_state = state["opt_state"]
            dp_state = opt_state[0]._replace(rng_key=jax.random.fold_in(keys["dp"], t_global))
            opt_state = (dp_state,) + tuple(opt_state[1:])
        else:
            (loss, new_bs), grads = jax.value_and_grad(self._loss, has_aux=True)(
                state["params"], state["batch_stats"], x, y, dkey)
            opt_state = state["opt_state"]
        updates, new_opt = self.tx.update(grads, opt_state, state["params"])
        if tc.schedule != "constant":
            frac = t_global.astype(jnp.float32) / jnp.maximum(total_steps, 1).astype(jnp.float32)
            factor = schedule_factor(tc.schedule, frac, tc.warmup_epochs / tc.epochs,
                                     tc.schedule_start, tc.schedule_end)
            updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
        if tc.whiten_bias_epochs:   # airbench94 freezes the stem bias after a few epochs
            live = (epoch < tc.whiten_bias_epochs).astype(jnp.float32)
            updates = dict(updates, stem=dict(updates["stem"], bias=updates["stem"]["bias"] * live))
        new_params = optax.apply_updates(state["params"], updates)
        new = dict(state, params=new_params, batch_stats=new_bs, opt_state=new_opt)
        if tc.lookahead_every:
            new = self._lookahead(new, t_global, total_steps, epoch)
        return new, loss

    def _lookahead(self, state, t_global, total_steps, epoch):
        """airbench94's lookahead (from hlb-cifar10): every ``n`` steps from epoch ``start`` on,
        ``ema ← ema + (1 − ρ)(θ − ema)`` with ``ρ = decay^n · (step / total)^pow`` over the
        parameters and BatchNorm statistics, then ``θ ← ema`` (the first time ``ema ← θ``)."""
        tc = self.cfg.train
        n = tc.lookahead_every
        cur = t_global + 1
        do = (epoch >= tc.lookahead_start_epochs) & (cur % n == 0)
        first = do & ~state["ema_on"]
        rho = (tc.lookahead_decay ** n) * (cur.astype(jnp.float32) /
                                           jnp.maximum(total_steps, 1).astype(jnp.float32)) ** tc.lookahead_pow
        net = {"params": state["params"], "batch_stats": state["batch_stats"]}
        ema = jax.tree.map(lambda e, v: jnp.where(first, v, jnp.where(do, e + (1 - rho) * (v - e), e)),
                           state["ema"], net)
        net = jax.tree.map(lambda e, v: jnp.where(do, e, v), ema, net)
        return dict(state, **net, ema=ema, ema_on=state["ema_on"] | do)

    def _eval_correct(self, state, x_all, y_all):
        """Eval-mode correctness of one model on every training example: [N] bool."""
        logits = self.apply_eval(state["params"], state["batch_stats"], x_all)
        return jnp.argmax(logits, -1) == y_all

    def apply_eval(self, params, batch_stats, x, batch_size: int = 1024):
        """Eval-mode logits (BatchNorm running statistics, no dropout) of one model, batched."""
        variables = {"params": params}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
        n = x.shape[0]
        bs = min(batch_size, n)
        nb = -(-n // bs)
        xp = jnp.pad(x, [(0, nb * bs - n)] + [(0, 0)] * (x.ndim - 1))
        out = jax.lax.map(lambda xb: self.model.apply(variables, xb, train=False).astype(jnp.float32),
                          xp.reshape((nb, bs) + x.shape[1:]))
        return out.reshape((nb * bs,) + out.shape[2:])[:n]

    def _step_one(self, data, state, diverged, loss_sum, loss_cnt, perm, n_in, spe, total_steps,
                  keys, e, pos):
        """Step ``pos`` of epoch ``e`` of one model (a no-op past its own steps or once diverged).
        ``data`` = (x_train, y_train), an argument of the jitted call (a closed-over array would
        be embedded in the program as a constant); ``perm`` [N]: the epoch's visiting order of
        the model's IN examples."""
        tc = self.cfg.train
        B = tc.batch_size
        x_all, y_all = data
        x_flat = x_all.reshape(y_all.shape[0], -1)
        t_global = e * spe + pos
        active = (pos < spe) & (t_global < total_steps) & ~diverged
        idx = perm[(pos * B + jnp.arange(B)) % jnp.maximum(n_in, 1)]
        x = x_flat[idx].reshape((B,) + x_all.shape[1:])  # row gather: fast on CPU too
        x = _augment(x, jax.random.fold_in(keys["augment"], t_global), tc.augment,
                     idx=idx, epoch=e, flip_key=keys["flip"])
        new_state, loss = self._step(state, x, y_all[idx], t_global, total_steps, keys, e)
        # one reduction: a NaN/inf anywhere makes the sum non-finite (so does a sum past float32's
        # range, which only a diverging model reaches)
        finite = jnp.isfinite(loss + sum(jnp.sum(a) for a in jax.tree.leaves(new_state["params"])))
        take = active & finite
        state = jax.tree.map(lambda n_, o: jnp.where(take, n_, o), new_state, state)
        diverged = diverged | (active & ~finite)
        is_last_epoch = e == (total_steps - 1) // jnp.maximum(spe, 1)
        w = (take & is_last_epoch).astype(jnp.float32)
        return state, diverged, loss_sum + w * jnp.where(take, loss, 0.0), loss_cnt + w

    def _epoch_end(self, data, state, diverged, loss_sum, loss_cnt, prev_loss):
        """After an epoch's steps: lookahead's θ ← ema, the last epoch's mean loss, and (with
        ``record_forgetting``) correctness on every training example."""
        if self.cfg.train.lookahead_every:   # the epoch ends with θ ← ema (airbench94)
            on = state["ema_on"]
            state = dict(state, **jax.tree.map(lambda e_, v: jnp.where(on, e_, v), state["ema"],
                                               {"params": state["params"],
                                                "batch_stats": state["batch_stats"]}))
        loss = jnp.where(loss_cnt > 0, loss_sum / jnp.maximum(loss_cnt, 1), prev_loss)
        out = (self._eval_correct(state, *data) if self.cfg.train.record_forgetting else None)
        return state, diverged, loss, out

    def _train_one(self, data, state, aux, orders, n_in, spe, total_steps, keys, epoch0,
                   num_epochs):
        """Train one model for epochs [epoch0, epoch0 + num_epochs) as one XLA loop. ``aux`` =
        (diverged, loss); ``orders`` [num_epochs, N]: each epoch's visiting order of its IN
        examples."""
        def epoch_body(carry, e_perm):
            e, perm = e_perm
            state, diverged, prev_loss = carry

            def step_body(c, pos):
                return self._step_one(data, *c, perm, n_in, spe, total_steps, keys, e, pos), None

            (state, diverged, ls, lc), _ = jax.lax.scan(
                step_body, (state, diverged, jnp.float32(0), jnp.float32(0)),
                jnp.arange(self.steps_per_epoch_max))
            state, diverged, loss, out = self._epoch_end(data, state, diverged, ls, lc, prev_loss)
            return (state, diverged, loss), out

        diverged, prev_loss = aux
        (state, diverged, loss), correct = jax.lax.scan(
            epoch_body, (state, diverged, prev_loss), (epoch0 + jnp.arange(num_epochs), orders))
        return state, (diverged, loss), correct

    def _train_host_loop(self, state, aux, orders, n_in, spe, total, keys, epoch0, num_epochs):
        """The same training with the step loop on the host: one jitted (vmapped) call per step.
        XLA's CPU backend runs convolution gradients inside a loop body ~10x slower than outside
        one (jax#12868: ~15x here), so CNNs on CPU train this way; a dispatch costs < 1 ms."""
        step = self._train_fns.get("host_step")
        if step is None:
            step = self._train_fns["host_step"] = jax.jit(
                jax.vmap(self._step_one, in_axes=(None,) + (0,) * 9 + (None, None)),
                donate_argnums=(1,))
            self._train_fns["host_end"] = jax.jit(
                jax.vmap(self._epoch_end, in_axes=(None,) + (0,) * 5))
        end = self._train_fns["host_end"]
        data = (self.x_train, self.y_train)
        diverged, loss = aux
        outs = []
        for j in range(num_epochs):
            e = jnp.int32(epoch0 + j)
            perm = orders[:, j] if isinstance(orders, jax.Array) else jnp.asarray(orders[:, j])
            zero = jnp.zeros_like(loss)
            st = (state, diverged, zero, zero)
            for pos in range(self.steps_per_epoch_max):
                st = step(data, *st, perm, n_in, spe, total, keys, e, jnp.int32(pos))
            state, diverged, loss, out = end(data, *st, loss)
            outs.append(out)
        correct = jnp.stack(outs, axis=1) if self.cfg.train.record_forgetting else None
        return state, (diverged, loss), correct

    # ----- chunks -----------------------------------------------------------------------------
    def _map_models(self, fn, *args):
        """vmap ``fn`` over the leading model axis, in groups of ``vmap_size`` via lax.map.

        ``vmap_size = 0`` vmaps the whole chunk, except on CPU, where groups of 4 stay in cache
        (8-10% faster for MLPs; no group of one, whose unbatched products round differently)."""
        vs = self.cfg.train.vmap_size
        K = jax.tree.leaves(args)[0].shape[0]
        if vs <= 0 and jax.default_backend() == "cpu" and K % CPU_VMAP_SIZE != 1:
            vs = CPU_VMAP_SIZE
        if vs <= 0 or vs >= K:
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
            from jaxmem.models import whitening_kernels

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
        aux = (jnp.zeros(K, bool), jnp.full(K, jnp.nan, jnp.float32))
        return state, aux

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
                            ("dp", DP_NOISE), ("flip", FLIP))})
        return c

    def train_epochs(self, state, aux, keep_rows, model_ids, epoch0: int, num_epochs: int):
        """Train a stacked chunk for ``num_epochs`` epochs starting at ``epoch0`` (jitted once per
        ``num_epochs``). ``keep_rows`` is ``[K, N]`` bool (a sharded array shards the orders too)."""
        c = self._chunk(model_ids, keep_rows)
        orders = epoch_orders(self.cfg.seed, c["ids"], c["rows"], epoch0, num_epochs)
        if isinstance(keep_rows, jax.Array) and hasattr(keep_rows.sharding, "spec"):
            orders = jax.device_put(orders, keep_rows.sharding)
        if self.host_steps:
            return self._train_host_loop(state, aux, orders, *c["counts"], c["keys"], epoch0,
                                         num_epochs)
        fn = self._train_fns.get(("train", num_epochs))
        if fn is None:
            def run(state, aux, orders, n_in, spe, total, keys, epoch0, data):
                one = functools.partial(self._train_one, data, epoch0=epoch0, num_epochs=num_epochs)
                return self._map_models(one, state, aux, orders, n_in, spe, total, keys)
            fn = self._train_fns[("train", num_epochs)] = jax.jit(run, donate_argnums=(0,))
        return fn(state, aux, orders, *c["counts"], c["keys"], jnp.int32(epoch0),
                  (self.x_train, self.y_train))

    def step_counts(self, keep_rows: np.ndarray):
        """Per model: examples IN, steps per epoch ceil(n_in / B), total steps round(epochs * S)."""
        n_in = keep_rows.sum(1).astype(np.int32)
        spe = np.maximum(-(-n_in // self.cfg.train.batch_size), 1).astype(np.int32)
        total = np.round(self.cfg.train.epochs * spe).astype(np.int32)
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

                return self._map_models(one, st["params"], st["batch_stats"])

            fn = self._train_fns[key] = jax.jit(run)
        return fn(state, x)


def epoch_orders(seed: int, model_ids, keep_rows: np.ndarray, epoch0: int, num_epochs: int):
    """[K, E, N] int32: model m's visiting order of its IN examples in epoch e (first n_in
    entries; the rest pads), a pure function of (seed, model id, epoch): a uniform permutation from
    NumPy's PCG64 seeded with (seed, DATA, m, e). Drawn on the host, where sorting is fast (XLA's
    CPU sort is ~30x slower than NumPy's), the same on every backend and chunking."""
    K, N = keep_rows.shape
    out = np.zeros((K, num_epochs, N), np.int32)
    for k, m in enumerate(np.asarray(model_ids)):
        idx = np.flatnonzero(keep_rows[k]).astype(np.int32)
        for j in range(num_epochs):
            rng = np.random.default_rng([int(seed), DATA, int(m), int(epoch0 + j)])
            out[k, j, : idx.size] = rng.permutation(idx)
    return out


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


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of DP-SGD at ``delta`` from Google's RDP accountant (Poisson-subsampled Gaussian,
    Mironov 2017; Abadi et al. 2016). jaxmem samples by shuffling, as most DP-SGD code does; the
    Poisson accounting is the customary approximation and is reported as such."""
    import dp_accounting

    if noise_multiplier <= 0:
        return float("inf")
    acc = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(sample_rate,
                                                dp_accounting.GaussianDpEvent(noise_multiplier))
    acc.compose(event, int(steps))
    return float(acc.get_epsilon(delta))
