"""What the stacked trainer records about every training example while a chunk trains
(``train.records``, ``train.record_forgetting``), built from the model-agnostic functions of
:mod:`jaxmem.train.records`. Records are taken in eval mode (BatchNorm running statistics, no
dropout) on all N training examples (the models' IN and OUT examples alike).

* **per-epoch dynamics** — loss, margin, correct, p_true (``train.records.fields``; ``correct``
  also with ``record_forgetting``) from one inference pass after every ``every``-th epoch and
  after the last: an entry of the trainer's per-epoch record hook, inside the jitted epoch loop
  (several epochs per call need no host round trip; unrecorded epochs skip the pass under a
  ``lax.cond`` on the epoch number);
* **input-loss curvature** (Garg et al.; ``curvature``, ``curvature_trace``,
  ``curvature_trace_sq``) after the epochs of ``train.records.curvature_epochs``: also a hook
  entry under ``lax.cond``; example i's k-th direction at epoch e is drawn from
  ``fold_in(fold_in(fold_in(model_key(seed, CURVATURE, m), e), i), k)`` (e counted from 0);
* **VoG** (Agarwal et al.) after the epochs of ``train.records.vog_epochs``: the running
  per-pixel moments (:class:`~jaxmem.train.records.VoGState`, 2 × [N, *input] float32 per model)
  are updated between jitted training calls by :func:`vog_step` (one model at a time, so the
  temporaries are one model's gradients) and reduced to [N] when the chunk ends.

A hook entry is ``fn(state, (x, y), epoch, keys) -> {record: [N]}`` for one model (vmapped by the
trainer): ``epoch`` is the 0-based epoch that just ended (an int32 scalar), ``keys`` the model's
stream keys. The run stores each record as ``RECORD_by_epoch.npy`` [M, R, N] (R = the epochs it
was recorded after).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.train import records as R

__all__ = ["hooks", "record_dtypes", "vog_init", "vog_step", "CURVATURE_RECORDS"]

CURVATURE_RECORDS = ("curvature", "curvature_trace", "curvature_trace_sq")


def _fields(cfg) -> list:
    fields = list(cfg.train.records.fields)
    if cfg.train.record_forgetting and "correct" not in fields:
        fields.append("correct")
    return fields


def record_dtypes(cfg) -> dict:
    """Every per-epoch record the config asks for, ``{name: numpy dtype}`` (``correct`` is bool;
    loss, margin, p_true ``train.records.dtype``; curvature float32)."""
    rc = cfg.train.records
    out = {f: np.dtype(bool) if f == "correct" else np.dtype(rc.dtype) for f in _fields(cfg)}
    if rc.curvature_epochs:
        out.update({n: np.dtype(np.float32) for n in CURVATURE_RECORDS})
    return out


def _apply_fn(trainer, batch_stats):
    """``apply_fn(params, x) -> float32 logits`` of one model in eval mode (for jaxmem.train.records)."""
    def apply(params, xb):
        variables = trainer.variables(params, batch_stats)
        return trainer.model.apply(variables, xb, train=False).astype(jnp.float32)

    return apply


def _on_epochs(epochs_1based, num_epochs, compute, like):
    """``compute()`` after the given epochs (1-based), zeros shaped like ``like`` otherwise; a
    plain call when every epoch is recorded."""
    mask = np.zeros(num_epochs, bool)
    mask[np.asarray(epochs_1based, int) - 1] = True
    if mask.all():
        return lambda e: compute()
    table = jnp.asarray(mask)
    return lambda e: jax.lax.cond(table[e], compute, lambda: jax.tree.map(jnp.zeros_like, like()))


def hooks(trainer) -> tuple[dict, list]:
    """The trainer's per-epoch record hook entries ``{name: fn}`` and the names of the records
    they return, from ``trainer.cfg``."""
    cfg, n_ep = trainer.cfg, trainer.num_epochs
    rc = cfg.train.records
    dtypes = record_dtypes(cfg)
    out, names = {}, []
    fields = _fields(cfg)
    if fields:
        def dynamics(state, data, e, keys):
            x, y = data

            def compute():
                rec = R.logit_records(trainer.apply_eval(state.params, state.batch_stats, x), y)
                return {f: getattr(rec, f).astype(dtypes[f]) for f in fields}

            shapes = lambda: {f: jnp.zeros(y.shape, dtypes[f]) for f in fields}
            return _on_epochs(rc.dynamics_epochs(n_ep), n_ep, compute, shapes)(e)

        out["dynamics"] = dynamics
        names += fields
    if rc.curvature_epochs:
        def curvature(state, data, e, keys):
            x, y = data
            apply = _apply_fn(trainer, state.batch_stats)
            key = jax.random.fold_in(keys["curvature"], e)

            def compute():
                c = R.over_batches(
                    lambda xb, yb, ib: R.input_curvature(apply, state.params, xb, yb, key, h=rc.curvature_h,
                                                         niter=rc.curvature_niter, index=ib),
                    x, y, batch_size=rc.batch_size)
                return {n: v.astype(jnp.float32) for n, v in zip(CURVATURE_RECORDS, c)}

            shapes = lambda: {n: jnp.zeros(y.shape, jnp.float32) for n in CURVATURE_RECORDS}
            return _on_epochs(rc.curvature_epochs, n_ep, compute, shapes)(e)

        out["curvature"] = curvature
        names += list(CURVATURE_RECORDS)
    return out, names


def vog_init(num_models: int, x_shape) -> R.VoGState:
    """An empty stacked VoG state for ``num_models`` models and inputs ``x_shape`` [N, ...]."""
    shape = (num_models,) + tuple(x_shape)
    return R.VoGState(jnp.zeros(num_models, jnp.int32), jnp.zeros(shape, jnp.float32),
                      jnp.zeros(shape, jnp.float32))


def vog_step(trainer):
    """A jitted ``(state, vog, x, y) -> vog``: fold each model's true-logit input gradients
    (``true_logit_input_gradient``, eval mode, batches of ``train.records.batch_size``) into its
    running moments. Models are processed one at a time (``lax.map``): the temporaries are one
    model's [N, *input] gradients. ``vog`` is donated."""
    bs = trainer.cfg.train.records.batch_size

    def one(args, x, y):
        params, batch_stats, vog = args
        apply = _apply_fn(trainer, batch_stats)
        g = R.over_batches(lambda xb, yb, ib: R.true_logit_input_gradient(apply, params, xb, yb), x, y,
                           batch_size=bs)
        return R.vog_update(vog, g)

    def run(state, vog, x, y):
        return jax.lax.map(lambda a: one(a, x, y), (state.params, state.batch_stats, vog))

    return jax.jit(run, donate_argnums=(1,))
