"""Optimizers and learning-rate schedules of the stacked trainer (optax), DP-SGD included."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxmem.config import TrainConfig

__all__ = ["make_optimizer", "param_labels", "schedule_factor", "set_dp_key"]


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


def set_dp_key(opt_state, key):
    """The optimizer state with DP-SGD's noise key (the ``rng_key`` field of optax's
    ``differentially_private_aggregate`` state, found by name wherever it sits) set to ``key``."""
    return optax.tree_utils.tree_set(opt_state, rng_key=key)
