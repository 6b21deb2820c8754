"""Per-example training-dynamics records, computed in JAX from one model's parameters.

These are the signals that the memorization proxies of ``jaxmem.estimators.proxies`` are
functions of. Every function here is model-agnostic: it takes ``apply_fn(params, x) -> logits``
(logits ``[B, C]`` for inputs ``x`` ``[B, ...]``) and one model's ``params``, and is jit-able and
vmap-able over a leading model axis of ``params`` (and of ``key``). ``apply_fn`` must treat the
examples of a batch independently (inference mode: BatchNorm with running statistics, no
dropout); the input derivatives below are taken of the batch *sum* of per-example quantities,
which equals the per-example derivative only then.

What a trainer records (per model, per example) and what it costs (F = one forward pass of one
example, a backward pass about 2F; "measured" = one model, N = 60,000, MLP 784-512-10, float32,
batches of 1,024 under ``over_batches``, 2-core CPU, against a plain SGD training epoch at batch
128 that took 1.2 s):

=====================  =========================================  ================================
record                 what                                       cost per record (measured)
=====================  =========================================  ================================
``epoch_records``      loss, margin, correctness, p_true          1F: an inference pass (0.6 s,
                       (``EpochRecord``, four ``[N]`` arrays)     0.5 training epochs); 0 from
                                                                  logits the trainer already has
``input_curvature``    Garg et al. (2023) input-loss curvature    (niter + 1)·3F: 12 s = 10
                       (finite differences, ``Curvature``)        training epochs at niter = 10,
                                                                  1.9 s at niter = 2 (hvp: same)
``true_logit_input_    input gradient of the true-class logit     3F + an elementwise update:
gradient`` + ``vog_    for VoG (Agarwal et al. 2022), folded      2.4 s = 1.9 training epochs;
update``               into a running per-pixel variance          state 2 × [N, D] float32
=====================  =========================================  ================================

Storage: the ``EpochRecord`` of an epoch is 4 × N values, i.e. [E, N] per field per model
(N = 60,000: 240 kB per field per epoch in float32, 120 kB in float16); curvature is 3 × [N]
per chosen epoch; VoG's running state is 2 × [N, D] float32 per model (N = 60,000, D = 784:
376 MB), kept between the chosen epochs and reduced to [N] at the end.

Random directions derive only from the ``key`` passed in (the trainer folds in the stream,
model id and epoch) and the examples' global indices, so an example's directions do not depend
on the batch it is processed in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmem import signals

__all__ = [
    "Curvature",
    "EpochRecord",
    "VoGState",
    "epoch_records",
    "input_curvature",
    "logit_records",
    "margin",
    "over_batches",
    "true_logit_input_gradient",
    "vog_init",
    "vog_update",
]

ApplyFn = Callable[..., jax.Array]


class EpochRecord(NamedTuple):
    """Per-example signals of one model at one epoch; each field ``[B]`` (or ``[N]``)."""

    loss: jax.Array  # float32: cross-entropy −log softmax(z)_y (nats)
    margin: jax.Array  # float32: z_y − max_{j≠y} z_j (logit units)
    correct: jax.Array  # bool: argmax_j z_j == y
    p_true: jax.Array  # float32: softmax(z)_y in [0, 1]


def margin(logits, labels):
    """Assigned-logit margin M(x, y) = z_y − max_{j≠y} z_j, ``[..., C]`` → ``[...]``.

    Pleiss et al. (2020), "Identifying mislabeled data using the area under the margin ranking",
    Eq. 1 (the per-epoch margin whose average over epochs is the AUM). Positive when the assigned
    label is predicted, negative otherwise. Needs C ≥ 2 classes. float16/bfloat16 logits are
    computed in float32.
    """
    z = jnp.asarray(logits)
    if not jnp.issubdtype(z.dtype, jnp.floating) or z.dtype in (jnp.float16, jnp.bfloat16):
        z = z.astype(jnp.float32)
    if z.shape[-1] < 2:
        raise ValueError(f"margin needs at least 2 classes, got logits of shape {z.shape}")
    labels = jnp.broadcast_to(jnp.asarray(labels), z.shape[:-1])
    onehot = labels[..., None] == jnp.arange(z.shape[-1])
    z_y = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1)
    other = jnp.max(jnp.where(onehot, -jnp.inf, z), axis=-1)
    return z_y - other


def logit_records(logits, labels) -> EpochRecord:
    """The four per-epoch signals from logits ``[B, C]`` and integer labels ``[B]``.

    loss and p_true are ``jaxmem.signals.cross_entropy`` / ``true_class_probability`` (stable,
    float32), correct is argmax == label (first maximum on ties, as ``jnp.argmax``), margin is
    :func:`margin`. Costs nothing beyond the logits.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    return EpochRecord(
        loss=signals.cross_entropy(logits, labels),
        margin=margin(logits, labels),
        correct=signals.correctness(logits, labels) > 0,
        p_true=signals.true_class_probability(logits, labels),
    )


def epoch_records(apply_fn: ApplyFn, params, x, labels) -> EpochRecord:
    """:func:`logit_records` of ``apply_fn(params, x)``: one inference forward pass (1F)."""
    return logit_records(apply_fn(params, x), labels)


def _loss_sum(apply_fn, params, labels, temperature):
    def f(xb):
        z = apply_fn(params, xb)
        z = z.astype(jnp.promote_types(z.dtype, jnp.float32)) / temperature
        return jnp.sum(signals.cross_entropy(z, labels))

    return f


def _rademacher(key, index, k, shape, dtype):
    """±1 directions [B, *shape] for iteration k: one stream per (key, global example index, k)."""

    def one(i):
        return jax.random.rademacher(jax.random.fold_in(jax.random.fold_in(key, i), k), shape, dtype)

    return jax.vmap(one)(index)


class Curvature(NamedTuple):
    """Input-loss curvature estimates per example, each ``[B]`` (Garg et al. 2023)."""

    curvature: jax.Array  # (1/n) Σ_k ‖∇ℓ(x + h v_k) − ∇ℓ(x)‖₂ — the authors' score (∝ h)
    trace: jax.Array  # (1/n) Σ_k v_kᵀ(∇ℓ(x + h v_k) − ∇ℓ(x)) / h → tr(H_x) (Hutchinson)
    trace_sq: jax.Array  # (1/n) Σ_k ‖∇ℓ(x + h v_k) − ∇ℓ(x)‖² / h² → tr(H_x²) = ‖H_x‖_F²


def input_curvature(
    apply_fn: ApplyFn,
    params,
    x,
    labels,
    key,
    *,
    h: float = 1e-3,
    niter: int = 10,
    temperature: float = 1.0,
    method: str = "finite_difference",
    index=None,
) -> Curvature:
    """Input-loss curvature of each example (Garg, Ravikumar & Roy 2023/ICML 2024, "Memorization
    through the lens of curvature of loss function around samples", Sec. 3).

    With ℓ(x) = CE(f(x)/T, y) (T = ``temperature``), H_x = ∇²_x ℓ the Hessian of the loss with
    respect to the input, and v_k ∈ {−1, +1}^D Rademacher directions (E[v vᵀ] = I), the paper
    estimates tr(H_x²) = E_v ‖H_x v‖² (Hutchinson) with the finite step
    H_x v ≈ (∇ℓ(x + h v) − ∇ℓ(x)) / h (as in CURE, Moosavi-Dezfooli et al. 2019). Their released
    code (purdue-nrl/Memorization-Curvature ``score_*_checkpoint.py``, and the same function in
    DeepakTatachar/Privacy-Memorization-Curvature and CSL-Mem ``scores.py``) scores an example by

        curvature = (1/n) Σ_{k=1..n} ‖∇ℓ(x + h v_k) − ∇ℓ(x)‖₂

    — the *unsquared* norm, not divided by h — and that is ``Curvature.curvature`` here, with
    their defaults h = 1e-3, n = ``niter`` = 10, T = 1 (their ImageNet script passes h = 1e-4).
    The same gradient differences also give ``trace`` = (1/n) Σ v_kᵀ Δg_k / h, the Hutchinson
    estimate of tr(H_x) (their code's ``eigs`` = (1/n) Σ (h v_k)ᵀ Δg_k, divided by h²), and ``trace_sq`` =
    (1/n) Σ ‖Δg_k‖² / h², the paper's tr(H_x²). Differences from their code, none of which
    changes a ranking within a batch size: their direction is h·(v + 1e-7) (here h·v), and most
    of their scripts take the gradient of the batch-*mean* loss, so their scores are these
    divided by the batch size (CSL-Mem ``scores.py`` sums, as here). The paper's memorization
    score averages ``curvature`` over training epochs (``jaxmem.estimators.proxies.
    curvature_proxy``).

    ``method="finite_difference"`` (default, the authors' estimator) costs (niter + 1) gradient
    evaluations per example, ≈ (niter + 1)·3F. ``method="hvp"`` replaces each difference by the
    exact h·H_x v_k (forward-over-reverse Hessian-vector product; about the same time on CPU for
    an MLP), which is the h → 0 limit of the same three numbers; finite differences differ from it by O(h²)
    relative for smooth losses (and more where a ReLU kink lies within h of x).

    Args:
      apply_fn, params: the model (see the module docstring; inference mode).
      x: inputs ``[B, ...]`` (float; the derivative is taken in x's dtype).
      labels: int ``[B]``.
      key: a PRNG key; example i's k-th direction is drawn from
        ``fold_in(fold_in(key, index[i]), k)``.
      h: finite-difference step (> 0), in input units (after any normalisation in apply_fn's
        input).
      niter: number of directions n (≥ 1).
      temperature: T > 0.
      method: "finite_difference" or "hvp".
      index: int ``[B]`` global example indices (default ``arange(B)``); pass them when the data
        is processed in batches so the directions do not depend on the batching.

    Returns:
      ``Curvature`` of three ``[B]`` arrays in x's floating dtype.
    """
    if not h > 0:
        raise ValueError(f"h must be > 0, got {h!r}")
    if int(niter) != niter or niter < 1:
        raise ValueError(f"niter must be an integer >= 1, got {niter!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if method not in ("finite_difference", "hvp"):
        raise ValueError(f"method must be 'finite_difference' or 'hvp', got {method!r}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    b = x.shape[0]
    index = jnp.arange(b) if index is None else jnp.asarray(index)
    grad_fn = jax.grad(_loss_sum(apply_fn, params, labels, temperature))
    feat_axes = tuple(range(1, x.ndim))
    hh = jnp.asarray(h, x.dtype)
    g0 = grad_fn(x) if method == "finite_difference" else None

    def body(k, acc):
        v = _rademacher(key, index, k, x.shape[1:], x.dtype)
        if method == "finite_difference":
            dg = grad_fn(x + hh * v) - g0
        else:
            dg = hh * jax.jvp(grad_fn, (x,), (v,))[1]
        sq = jnp.sum(dg * dg, axis=feat_axes)
        return (acc[0] + jnp.sqrt(sq), acc[1] + jnp.sum(v * dg, axis=feat_axes), acc[2] + sq)

    zero = jnp.zeros((b,), x.dtype)
    norm, vdg, sq = jax.lax.fori_loop(0, int(niter), body, (zero, zero, zero))
    n = jnp.asarray(niter, x.dtype)
    return Curvature(curvature=norm / n, trace=vdg / (n * hh), trace_sq=sq / (n * hh * hh))


def true_logit_input_gradient(apply_fn: ApplyFn, params, x, labels, *, channel_axis: int | None = None):
    """S = ∂z_y / ∂x, the input gradient of the true-class pre-softmax logit (VoG's signal).

    Agarwal, D'souza & Hooker (2022), "Estimating example difficulty using variance of
    gradients", Eq. 1: S_t = ∂A^p_l / ∂X at checkpoint t, A^p_l the pre-softmax activation of
    the true label l. Their ImageNet code (chirag126/VOG ``imagenet/train_get_gradients.py``)
    averages the gradient over colour channels before the variance; pass ``channel_axis`` (the
    axis of one example's input, e.g. -1 for HWC or 0 for CHW) to do the same. Cost: one
    forward and one backward pass (3F).

    Args:
      x: ``[B, ...]`` inputs; labels: int ``[B]``.
    Returns:
      ``[B, ...]`` gradients in x's floating dtype (``[B, ...]`` without the channel axis when
      ``channel_axis`` is given).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    labels = jnp.asarray(labels)

    def true_logit_sum(xb):
        z = apply_fn(params, xb)
        return jnp.sum(jnp.take_along_axis(z, labels[:, None], axis=-1).astype(x.dtype))

    g = jax.grad(true_logit_sum)(x)
    if channel_axis is not None:
        ax = channel_axis if channel_axis < 0 else channel_axis + 1
        g = jnp.mean(g, axis=ax)
    return g


class VoGState(NamedTuple):
    """Running per-pixel moments of the VoG gradients (Welford 1962)."""

    count: jax.Array  # int32 scalar: checkpoints folded in (K)
    mean: jax.Array  # [N, ...] running mean of S_t
    m2: jax.Array  # [N, ...] running Σ_t (S_t − mean)²


def vog_init(grad_shape, dtype=jnp.float32) -> VoGState:
    """An empty :class:`VoGState` for gradients of shape ``grad_shape`` (e.g. ``(N, 28, 28)``)."""
    return VoGState(jnp.zeros((), jnp.int32), jnp.zeros(grad_shape, dtype), jnp.zeros(grad_shape, dtype))


def vog_update(state: VoGState, grad) -> VoGState:
    """Fold one checkpoint's gradients S_t ``[N, ...]`` into the running moments.

    Welford's update (numerically stable in float32, no E[S²] − E[S]² cancellation):
    mean += (S − mean)/k; m2 += (S − mean_old)(S − mean_new). After K checkpoints the per-pixel
    VoG variance of Agarwal et al. (2022) Eq. 2 is m2 / K; ``jaxmem.estimators.proxies.
    vog_from_moments`` turns the state into the per-example score. Elementwise: jit- and
    vmap-able.
    """
    g = jnp.asarray(grad, state.mean.dtype)
    count = state.count + 1
    delta = g - state.mean
    mean = state.mean + delta / count.astype(g.dtype)
    m2 = state.m2 + delta * (g - mean)
    return VoGState(count, mean, m2)


def over_batches(fn, x, labels, *, batch_size: int):
    """Apply ``fn(x_b, labels_b, index_b)`` to consecutive batches and concatenate the results.

    Runs ``lax.map`` over ⌈N / batch_size⌉ batches (memory: one batch's intermediates), so a
    record over N = 60,000 examples is one jit-able call. The last batch is padded by repeating
    the last example (its outputs are dropped). ``fn`` returns a pytree of arrays with a leading
    batch axis; ``index_b`` holds the global example indices (for :func:`input_curvature`).
    """
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = jnp.asarray(x)
    labels = jnp.asarray(labels)
    n = x.shape[0]
    if labels.shape[:1] != (n,):
        raise ValueError(f"labels must be [{n}], got {labels.shape}")
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    index = jnp.arange(n)
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
        labels = jnp.concatenate([labels, jnp.repeat(labels[-1:], pad)])
        index = jnp.concatenate([index, jnp.repeat(index[-1:], pad)])
    xs = x.reshape((nb, batch_size) + x.shape[1:])
    ys = labels.reshape((nb, batch_size) + labels.shape[1:])
    idx = index.reshape(nb, batch_size)
    out = jax.lax.map(lambda a: fn(*a), (xs, ys, idx))
    return jax.tree_util.tree_map(lambda o: o.reshape((nb * batch_size,) + o.shape[2:])[:n], out)
