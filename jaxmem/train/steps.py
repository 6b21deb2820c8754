"""The per-model half of the stacked trainer: one model's init, loss, optimizer step (DP-SGD,
schedule, lookahead), epoch end and epoch loop, written for one model and vmapped (or
``lax.map``ped) over a chunk by :class:`jaxmem.train.trainer.Trainer`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxmem.train.augment import augment_batch
from jaxmem.train.optim import lr_factor, set_dp_key
from jaxmem.train.state import ChunkStatus, TrainState

__all__ = ["ModelSteps", "all_finite"]


class ModelSteps:
    """One model's training, as methods of the trainer (they read ``self.cfg``, ``self.model``,
    ``self.tx``, ``self.has_bn``, ``self.records``, ``self.schedule_epochs``, ``self.task``)."""

    def _init_one(self, key, stem=None):
        sample = jnp.zeros((1,) + tuple(self.x_train.shape[1:]), self.x_train.dtype)
        variables = self.model.init({"params": key, "dropout": key}, sample, train=False)
        variables = dict(variables)
        params = variables.pop("params")
        if stem is not None:
            params = dict(params, stem=dict(params["stem"], kernel=stem))
        batch_stats = variables.get("batch_stats", {})
        ema = ema_on = None
        if self.cfg.train.lookahead.name == "ema":
            ema, ema_on = {"params": params, "batch_stats": batch_stats}, jnp.zeros((), bool)
        return TrainState(params, batch_stats, self.tx.init(params), ema, ema_on)

    def variables(self, params, batch_stats=None) -> dict:
        """One model's flax variables: its params, its BatchNorm statistics if any, and a LoRA
        run's frozen base (the jitted call's argument while traced, :meth:`Trainer._jit`)."""
        variables = {"params": params}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
        if self.frozen is not None:
            variables["frozen"] = self.frozen if self._frozen_in is None else self._frozen_in
        return variables

    def batch_loss(self, params, batch_stats, x, y, dropout_key):
        """One model's training loss on a batch, exactly as training computes it (cross-entropy
        with ``train.label_smoothing``, BatchNorm in train mode, dropout; an LM's next-token
        loss), for code that trains the network further (e.g. :mod:`jaxmem.unlearn`).

        Returns:
            ``(mean loss, new batch_stats)``."""
        return self._loss(params, batch_stats, x, y, dropout_key)

    def _loss(self, params, batch_stats, x, y, dropout_key):
        t = self.cfg.train
        variables = self.variables(params)
        rngs = {"dropout": dropout_key} if getattr(self.cfg.model, "dropout", 0.0) > 0 else {}
        if self.has_bn:
            variables["batch_stats"] = batch_stats
            logits, upd = self.model.apply(variables, x, train=True, mutable=["batch_stats"],
                                           rngs=rngs)
            new_bs = upd["batch_stats"]
        else:
            logits = self.model.apply(variables, x, train=True, rngs=rngs)
            new_bs = batch_stats
        logits = logits.astype(jnp.float32)
        # the task's loss (cross-entropy, or a causal LM's next-token loss: jaxmem.train.task)
        return self.task.loss(logits, x, y, t.label_smoothing, self.num_classes), new_bs

    def _step(self, state, x, y, t_global, total_steps, keys, epoch):
        """One optimizer step of one model. Returns (new_state, loss)."""
        tc = self.cfg.train
        dkey = jax.random.fold_in(keys["dropout"], t_global)
        if tc.dp.enabled:
            def per_example(p, xi, yi, i):
                return jax.value_and_grad(self._loss, has_aux=True)(
                    p, state.batch_stats, xi[None], yi[None], jax.random.fold_in(dkey, i))
            (losses, _), grads = jax.vmap(per_example, in_axes=(None, 0, 0, 0))(
                state.params, x, y, jnp.arange(x.shape[0]))
            loss, new_bs = losses.mean(), state.batch_stats
            opt_state = set_dp_key(state.opt_state, jax.random.fold_in(keys["dp"], t_global))
        else:
            (loss, new_bs), grads = jax.value_and_grad(self._loss, has_aux=True)(
                state.params, state.batch_stats, x, y, dkey)
            opt_state = state.opt_state
        updates, new_opt = self.tx.update(grads, opt_state, state.params)
        if tc.schedule.name != "constant":
            frac = t_global.astype(jnp.float32) / jnp.maximum(total_steps, 1).astype(jnp.float32)
            factor = lr_factor(tc.schedule, frac, self.schedule_epochs)
            updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
        wbe = getattr(self.cfg.model, "whiten_bias_epochs", 0.0)
        if wbe:   # airbench94 freezes the stem bias after a few epochs
            live = (epoch < wbe).astype(jnp.float32)
            updates = dict(updates, stem=dict(updates["stem"], bias=updates["stem"]["bias"] * live))
        new_params = optax.apply_updates(state.params, updates)
        new = state._replace(params=new_params, batch_stats=new_bs, opt_state=new_opt)
        if tc.lookahead.name == "ema":
            new = self._lookahead(new, t_global, total_steps, epoch)
        return new, loss

    def _lookahead(self, state, t_global, total_steps, epoch):
        """airbench94's lookahead (from hlb-cifar10): every ``n`` steps from epoch ``start`` on,
        ``ema ← ema + (1 − ρ)(θ − ema)`` with ``ρ = decay^n · (step / total)^pow`` over the
        parameters and BatchNorm statistics, then ``θ ← ema`` (the first time ``ema ← θ``)."""
        la = self.cfg.train.lookahead
        n = la.every
        cur = t_global + 1
        do = (epoch >= la.start_epochs) & (cur % n == 0)
        first = do & ~state.ema_on
        rho = (la.decay ** n) * (cur.astype(jnp.float32) /
                                 jnp.maximum(total_steps, 1).astype(jnp.float32)) ** la.pow
        net = {"params": state.params, "batch_stats": state.batch_stats}
        ema = jax.tree.map(lambda e, v: jnp.where(first, v, jnp.where(do, e + (1 - rho) * (v - e), e)),
                           state.ema, net)
        net = jax.tree.map(lambda e, v: jnp.where(do, e, v), ema, net)
        return state._replace(**net, ema=ema, ema_on=state.ema_on | do)

    def apply_eval(self, params, batch_stats, x, batch_size: int = 1024):
        """Eval-mode logits (BatchNorm running statistics, no dropout) of one model, batched."""
        variables = self.variables(params, batch_stats)
        n = x.shape[0]
        bs = min(batch_size, n)
        nb = -(-n // bs)
        xp = jnp.pad(x, [(0, nb * bs - n)] + [(0, 0)] * (x.ndim - 1))
        out = jax.lax.map(lambda xb: self.model.apply(variables, xb, train=False).astype(jnp.float32),
                          xp.reshape((nb, bs) + x.shape[1:]))
        return out.reshape((nb * bs,) + out.shape[2:])[:n]

    def _batch_step(self, data, state, perm, n_in, total_steps, keys, e, t_global, pos):
        """Optimizer step ``t_global`` (= position ``pos`` of epoch ``e``) of one model on its
        batch ``pos``: ``perm`` [N] is the epoch's visiting order of its IN examples, ``data`` =
        (x_train, y_train), an argument of the jitted call (a closed-over array would be embedded
        in the program as a constant). Returns (new_state, loss), unmasked."""
        tc = self.cfg.train
        B = tc.batch_size
        x_all, y_all = data
        x_flat = x_all.reshape(y_all.shape[0], -1)
        idx = perm[(pos * B + jnp.arange(B)) % jnp.maximum(n_in, 1)]
        x = x_flat[idx].reshape((B,) + x_all.shape[1:])  # row gather: fast on CPU too
        x, y = augment_batch(x, y_all[idx], jax.random.fold_in(keys["augment"], t_global),
                             tc.augment, tc.augment_args, self.num_classes, idx=idx, epoch=e,
                             flip_key=keys["flip"])
        return self._step(state, x, y, t_global, total_steps, keys, e)

    def _step_one(self, data, state, diverged, loss_sum, loss_cnt, perm, n_in, spe, total_steps,
                  keys, e, pos):
        """Step ``pos`` of epoch ``e`` of one model, masked: a no-op past its own steps or once
        diverged (the vmapped loop, whose scan runs the chunk's longest epoch for every model,
        and the host step loop)."""
        t_global = e * spe + pos
        active = (pos < spe) & (t_global < total_steps) & ~diverged & (n_in > 0)   # (a phase may give none)
        new_state, loss = self._batch_step(data, state, perm, n_in, total_steps, keys, e,
                                           t_global, pos)
        finite = all_finite(loss, new_state)
        take = active & finite
        state = jax.tree.map(lambda n_, o: jnp.where(take, n_, o), new_state, state)
        diverged = diverged | (active & ~finite)
        is_last_epoch = e == (total_steps - 1) // jnp.maximum(spe, 1)
        w = (take & is_last_epoch).astype(jnp.float32)
        return state, diverged, loss_sum + w * jnp.where(take, loss, 0.0), loss_cnt + w

    def _epoch_end(self, data, state, diverged, loss_sum, loss_cnt, prev_loss, e=None, keys=None):
        """After epoch ``e``'s steps: lookahead's θ ← ema, the last epoch's mean loss, and the
        per-epoch records (the hook :attr:`records`: ``fn(state, data, e, keys) -> {name: [N]}``,
        e.g. correctness on every training example; jaxmem.train.recording)."""
        if self.cfg.train.lookahead.name == "ema":   # the epoch ends with θ ← ema (airbench94)
            on = state.ema_on
            state = state._replace(**jax.tree.map(lambda e_, v: jnp.where(on, e_, v), state.ema,
                                                  {"params": state.params,
                                                   "batch_stats": state.batch_stats}))
        loss = jnp.where(loss_cnt > 0, loss_sum / jnp.maximum(loss_cnt, 1), prev_loss)
        out = {}
        for fn in self.records.values():
            out.update(fn(state, data, e, keys))
        return state, diverged, loss, out

    def _epoch_masked(self, data, state, diverged, perm, n_in, spe, total_steps, keys, e):
        """Epoch ``e``'s steps for a vmapped model: a scan over the chunk's longest epoch
        (``steps_per_epoch_max``), each step masked (:meth:`_step_one`). Returns (state, diverged,
        the last epoch's loss sum, its step count)."""
        def step_body(c, pos):
            return self._step_one(data, *c, perm, n_in, spe, total_steps, keys, e, pos), None

        (state, diverged, ls, lc), _ = jax.lax.scan(
            step_body, (state, diverged, jnp.float32(0), jnp.float32(0)),
            jnp.arange(self.steps_per_epoch_max))
        return state, diverged, ls, lc

    def _epoch_unmasked(self, data, state, diverged, perm, n_in, spe, total_steps, keys, e):
        """Epoch ``e``'s steps for a model trained on its own (``lax.map`` over the chunk's
        models, the CPU default): a loop over the model's own steps (no padded steps) with no
        per-step masking, and one finiteness check at the end of the epoch: a model whose loss or
        parameters are then not finite goes back to its state at the start of the epoch and is
        flagged diverged. The steps are :meth:`_epoch_masked`'s, so the two train the same model
        (to float rounding: here the products are unbatched)."""
        t0 = e * spe
        n = jnp.where((n_in > 0) & ~diverged, jnp.clip(total_steps - t0, 0, spe), 0)

        def step_body(pos, c):
            st, ls = c
            new, loss = self._batch_step(data, st, perm, n_in, total_steps, keys, e, t0 + pos, pos)
            return new, ls + loss

        new, ls = jax.lax.fori_loop(0, n, step_body, (state, jnp.float32(0)))
        finite = all_finite(ls, new)
        state = jax.tree.map(lambda n_, o: jnp.where(finite, n_, o), new, state)
        last = finite & (e == (total_steps - 1) // jnp.maximum(spe, 1))
        return (state, diverged | ~finite, jnp.where(last, ls, 0.0),
                jnp.where(last, n, 0).astype(jnp.float32))

    def _train_one(self, data, state, status, orders, n_in, spe, total_steps, keys, epoch0,
                   num_epochs, per_step_mask=True):
        """Train one model for epochs [epoch0, epoch0 + num_epochs) as one XLA loop. ``status``:
        its :class:`ChunkStatus`; ``orders`` [num_epochs, N]: each epoch's visiting order of its IN
        examples; ``per_step_mask``: :meth:`_epoch_masked` (vmapped models) or
        :meth:`_epoch_unmasked` (a model on its own)."""
        steps = self._epoch_masked if per_step_mask else self._epoch_unmasked

        def epoch_body(carry, e_perm):
            e, perm = e_perm
            state, diverged, prev_loss = carry
            state, diverged, ls, lc = steps(data, state, diverged, perm, n_in, spe, total_steps,
                                            keys, e)
            state, diverged, loss, out = self._epoch_end(data, state, diverged, ls, lc, prev_loss,
                                                         e, keys)
            return (state, diverged, loss), out

        diverged, prev_loss = status
        (state, diverged, loss), records = jax.lax.scan(
            epoch_body, (state, diverged, prev_loss), (epoch0 + jnp.arange(num_epochs), orders))
        return state, ChunkStatus(diverged, loss), records


def all_finite(loss, state):
    """One reduction: a NaN/inf anywhere in the loss or the parameters makes the sum non-finite
    (so does a sum past float32's range, which only a diverging model reaches)."""
    return jnp.isfinite(loss + sum(jnp.sum(a) for a in jax.tree.leaves(state.params)))
