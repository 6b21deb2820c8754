"""Optimizers and learning-rate schedules of the stacked trainer (optax), DP-SGD included."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxmem.config import TrainConfig
from jaxmem.config.registry import OPTIMIZER, SCHEDULE

__all__ = ["make_optimizer", "param_labels", "schedule_factor", "lr_factor", "set_dp_key", "adam",
           "adamw", "sgd", "nesterov", "constant_factor", "cosine_factor", "warmup_cosine_factor",
           "triangle_factor"]


def _with_decay(base, wd):
    return optax.chain(optax.add_decayed_weights(wd), base) if wd else base


def adam(o, lr: float, wd: float) -> optax.GradientTransformation:
    """``adam``: Adam, weight decay ``wd`` added to the gradient first."""
    return _with_decay(optax.adam(lr), wd)


def adamw(o, lr: float, wd: float) -> optax.GradientTransformation:
    """``adamw``: AdamW (decoupled weight decay ``wd``)."""
    return optax.adamw(lr, weight_decay=wd)


def sgd(o, lr: float, wd: float) -> optax.GradientTransformation:
    """``sgd``: SGD with momentum ``o.momentum`` (0: none), weight decay added to the gradient."""
    return _with_decay(optax.sgd(lr, momentum=o.momentum or None, nesterov=False), wd)


def nesterov(o, lr: float, wd: float) -> optax.GradientTransformation:
    """``nesterov``: SGD with Nesterov momentum ``o.momentum``."""
    return _with_decay(optax.sgd(lr, momentum=o.momentum or None, nesterov=True), wd)


def _base_optimizer(t: TrainConfig, lr: float, wd: float) -> optax.GradientTransformation:
    return OPTIMIZER.build(t.optimizer.name)(t.optimizer, lr, wd)


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


def constant_factor(c, frac, schedule_epochs: float):
    """``constant``: 1 throughout."""
    return jnp.ones_like(frac)


def cosine_factor(c, frac, schedule_epochs: float):
    """``cosine``: from 1 at ``frac`` = 0 to 0 at 1."""
    return 0.5 * (1 + jnp.cos(jnp.pi * frac))


def warmup_cosine_factor(c, frac, schedule_epochs: float):
    """``linear_warmup_cosine``: linear from 0 to 1 over ``c.warmup_epochs``, then cosine to 0."""
    w = max(c.warmup_epochs / schedule_epochs, 1e-9)
    cos = 0.5 * (1 + jnp.cos(jnp.pi * jnp.clip((frac - w) / max(1 - w, 1e-9), 0, 1)))
    return jnp.where(frac < w, frac / w, cos)


def triangle_factor(c, frac, schedule_epochs: float):
    """``triangle`` (airbench94): linear from ``c.start`` at 0 to 1 at ``c.warmup_epochs``, then
    linear to ``c.end`` at the last step."""
    w = max(c.warmup_epochs / schedule_epochs, 1e-9)
    up = c.start + (1.0 - c.start) * frac / w
    down = 1.0 + (c.end - 1.0) * (frac - w) / max(1 - w, 1e-9)
    return jnp.where(frac < w, up, down)


def lr_factor(schedule, frac, schedule_epochs: float):
    """Multiplier of the peak learning rate at training progress ``frac`` ∈ [0, 1] under the
    schedule config ``schedule`` (``cfg.train.schedule``), whose warmup is counted in epochs of
    ``schedule_epochs``.

    Raises:
      ConfigError: an unregistered schedule (never a silent fallback)."""
    return SCHEDULE.build(schedule.name)(schedule, frac, schedule_epochs)


def schedule_factor(kind: str, frac, warmup_frac: float, start: float = 0.0, end: float = 0.0):
    """:func:`lr_factor` by name, the warmup as a fraction of training (``warmup_frac``)."""
    fields = {"warmup_epochs": warmup_frac, "start": start, "end": end}
    c = SCHEDULE.make(kind, **{k: v for k, v in fields.items() if k in SCHEDULE.fields(kind)})
    return lr_factor(c, frac, 1.0)


def set_dp_key(opt_state, key):
    """The optimizer state with DP-SGD's noise key (the ``rng_key`` field of optax's
    ``differentially_private_aggregate`` state, found by name wherever it sits) set to ``key``."""
    return optax.tree_utils.tree_set(opt_state, rng_key=key)
