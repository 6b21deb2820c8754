"""Where memorization lives in a network (Maini et al. 2023, "Can neural network memorization be
localized?"), as pure functions of an MLP's weights: the forward pass with per-neuron ablation
masks, gradient-times-activation attributions, the greedy search for the fewest hidden neurons
whose ablation flips an example's prediction, and its brute-force counterpart (exact, for tiny
networks; the tests hold the greedy search against it), and layer rewinding.

An MLP is a list of layers ``[(W [d_in, d_out], b [d_out]), ...]``, ReLU after every layer but
the last (:class:`jaxmem.models.mlp.MLP` in eval mode, dropout off); inputs are flattened."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Integer

#: An MLP: ``[(W [d_in, d_out], b [d_out]), ...]``.
Layers = Sequence[tuple[Float[ArrayLike, "_din _dout"], Float[ArrayLike, " _dout"]]]

__all__ = ["mlp_layers", "mlp_forward", "margin", "attributions", "greedy_flip",
           "brute_force_flip", "rewind_layer"]


def mlp_layers(params) -> list:
    """``[(W, b), ...]`` of a flax MLP's params (``Dense_0``, ``Dense_1``, ... in order)."""
    names = sorted(params, key=lambda k: int(k.split("_")[-1]))
    return [(params[k]["kernel"], params[k]["bias"]) for k in names]


def mlp_forward(layers, x, masks=None):
    """Logits [B, C] of inputs ``x`` [B, ...]; ``masks``: one [B, h_l] (or [h_l]) multiplier per
    hidden layer (0 ablates a neuron; None keeps all)."""
    h = jnp.reshape(x, (x.shape[0], -1))
    for i, (W, b) in enumerate(layers):
        h = h @ W + b
        if i < len(layers) - 1:
            h = jax.nn.relu(h)
            if masks is not None:
                h = h * masks[i]
    return h


def margin(logits, label):
    """``logit[label] - max over the other classes`` per row: > 0 while ``label`` is predicted."""
    C = logits.shape[-1]
    own = jnp.take_along_axis(logits, label[:, None], 1)[:, 0]
    other = jnp.where(jax.nn.one_hot(label, C, dtype=bool), -jnp.inf, logits).max(-1)
    return own - other


def _split(flat, sizes):
    return [flat[..., a:b] for a, b in zip(np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes))]


def attributions(layers, x, label, flat_mask):
    """Gradient × activation of :func:`margin` for every hidden neuron, [B, H] (H = the hidden
    widths summed, layer by layer): the first-order drop of the margin when the neuron is
    ablated, ``a_j * d margin / d a_j``, with ``flat_mask`` [B, H] already applied."""
    sizes = [W.shape[1] for W, _ in layers[:-1]]

    def f(m):
        return margin(mlp_forward(layers, x, _split(m, sizes)), label).sum()

    # d margin / d mask_j = a_j * d margin / d a_j: the attribution itself (a_j the unmasked output)
    return jax.grad(f)(flat_mask) * flat_mask


def greedy_flip(
    layers: Layers, x: Float[ArrayLike, " N *features"], label: Integer[ArrayLike, " N"], max_neurons: int
) -> tuple[Float[np.ndarray, " N"], Integer[np.ndarray, "N _K"]]:
    """The fewest hidden neurons, greedily, whose ablation flips each example's prediction away
    from ``label``: ablate the neuron of largest gradient × activation (the largest first-order
    drop of the margin), recompute, repeat until the margin is negative.

    Args:
      layers: the MLP, ``[(W [d_in, d_out], b [d_out]), ...]`` (:func:`mlp_layers`).
      x: [N, ...] inputs (flattened to [N, d_in]).
      label: [N] int, the currently predicted class of each input.
      max_neurons: the budget K of neurons to ablate.

    Returns:
      (count float64 [N]: neurons ablated when the prediction first flipped, 0 if it was not
      ``label`` to begin with, ``inf`` if the budget did not suffice; order int [N, K]: the
      neurons (indices into the concatenated hidden layers) in the order ablated, -1 once flipped).

    References:
      Maini et al. (2023), "Can neural network memorization be localized?", ICML.
    """
    H = sum(W.shape[1] for W, _ in layers[:-1])
    sizes = [W.shape[1] for W, _ in layers[:-1]]
    B = x.shape[0]
    label = jnp.asarray(label)

    def step(carry, _):
        mask, done = carry
        att = attributions(layers, x, label, mask)
        j = jnp.argmax(jnp.where(mask > 0, att, -jnp.inf), axis=1)
        new = jnp.where(done[:, None], mask, mask.at[jnp.arange(B), j].set(0.0))
        flipped = margin(mlp_forward(layers, x, _split(new, sizes)), label) < 0
        return (new, done | flipped), (jnp.where(done, -1, j), done | flipped)

    m0 = margin(mlp_forward(layers, x), label) < 0
    (_, _), (order, flipped) = jax.lax.scan(step, (jnp.ones((B, H)), m0), None, length=max_neurons)
    flipped = np.asarray(flipped).T                  # [B, K]
    first = np.where(flipped.any(1), flipped.argmax(1) + 1.0, np.inf)
    return np.where(np.asarray(m0), 0.0, first), np.asarray(order).T


def brute_force_flip(
    layers: Layers, x: Float[ArrayLike, " N *features"], label: Integer[ArrayLike, " N"], max_neurons: int
) -> Float[np.ndarray, " N"]:
    """The exact minimum of :func:`greedy_flip`'s count per example by enumerating every set of
    hidden neurons by size (float64 numpy; for tiny networks).

    Args:
      layers, x, label, max_neurons: as :func:`greedy_flip`.

    Returns:
      float64 [N]: the smallest set size that flips the prediction (0 if not ``label`` to begin
      with, ``inf`` beyond ``max_neurons``).

    References:
      Maini et al. (2023), "Can neural network memorization be localized?", ICML.
    """
    L = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in layers]
    sizes = [W.shape[1] for W, _ in L[:-1]]
    H = sum(sizes)
    x = np.asarray(x, np.float64).reshape(len(label), -1)
    out = np.full(len(label), np.inf)

    def logits(xi, mask):
        h = xi
        for i, (W, b) in enumerate(L):
            h = h @ W + b
            if i < len(L) - 1:
                h = np.maximum(h, 0) * mask[sum(sizes[:i]):sum(sizes[:i + 1])]
        return h

    for n, (xi, y) in enumerate(zip(x, np.asarray(label))):
        for k in range(0, max_neurons + 1):
            for S in itertools.combinations(range(H), k):
                m = np.ones(H)
                m[list(S)] = 0
                z = logits(xi, m)
                if z[y] - np.max(np.delete(z, y)) < 0:
                    out[n] = k
                    break
            if np.isfinite(out[n]):
                break
    return out


def rewind_layer(layers: Layers, early_layers: Layers, index: int) -> list:
    """``layers`` with layer ``index`` replaced by its value in ``early_layers``: layer rewinding.

    Args:
      layers: the MLP, ``[(W, b), ...]``.
      early_layers: the same network at an earlier checkpoint.
      index: the layer to rewind.

    Returns:
      A new list of layers (the arrays are shared, not copied).

    References:
      Maini et al. (2023), "Can neural network memorization be localized?", ICML.
    """
    return [early_layers[i] if i == index else layer for i, layer in enumerate(layers)]
