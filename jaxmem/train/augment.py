"""Training-time augmentation inside jit: flips (random or airbench94's alternating flip) and
random translations. (Test-time queries are :mod:`jaxmem.data.queries`.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["augment"]


def augment(x, key, kind: str, pad: int = 2, *, idx=None, epoch=None, flip_key=None):
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
