"""Baseline attacks: loss / confidence thresholds (Yeom et al. 2018) and the shadow-model attack of
Shokri et al. (2017), "Membership inference attacks against machine learning models".

Every score is "higher means more likely a member". The Shokri attack classifiers are small
logistic regressions or one-hidden-layer MLPs trained with plain JAX (full-batch Adam written out
in a jitted ``lax.scan``; no optax), one per class, all classes of a block trained at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from jaxmem.attacks._checks import drop_nonfinite_shadows
from jaxmem.signals.functions import check_labels

__all__ = ["loss_attack", "confidence_attack", "shokri", "sorted_probability_features"]


def _reduce(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1).mean(1) if x.ndim > 1 else x


def loss_attack(target_loss: Real[ArrayLike, " N *A"]) -> Float[np.ndarray, " N"]:
    """Yeom et al. (2018) loss attack: score = −loss (members have lower loss).

    In a run (and :func:`jaxmem.signals.compute_signals`) the ``loss`` signal is the
    cross-entropy of the identity query only, [M, N], so the registered ``loss`` attack scores
    one query, as Yeom et al. and ML Privacy Meter's LOSS attack do; give [N, A] losses to
    average over queries.

    Args:
      target_loss: [N], or [N, A] (then averaged over the A augmentation queries).

    Returns:
      float64 [N], higher = more likely a member.

    References:
      Yeom et al. (2018), "Privacy risk in machine learning: analyzing the connection to
      overfitting", IEEE CSF.

    Example:
      >>> loss_attack(np.array([0.1, 2.0]))
      array([-0.1, -2. ])
    """
    return -_reduce(target_loss)


def confidence_attack(target_confidence: Real[ArrayLike, " N *A"]) -> Float[np.ndarray, " N"]:
    """Confidence-threshold attack: score = confidence.

    Args:
      target_confidence: [N] or [N, A], e.g. the true-class probability or the logit-scaled
        confidence from ``jaxmem.signals`` (averaged over A).

    Returns:
      float64 [N], higher = more likely a member.

    References:
      Yeom et al. (2018), "Privacy risk in machine learning"; Salem et al. (2019), "ML-Leaks".
    """
    return _reduce(target_confidence)


def sorted_probability_features(probs: Real[ArrayLike, "*batch C"], top_k: int | None = None) -> Float[np.ndarray, "*batch _k"]:
    """Shokri et al.'s attack input: the probability vector sorted in decreasing order, first k.

    Args:
      probs: [..., C] probability vectors.
      top_k: keep the k largest (None: all C).

    Returns:
      float64 [..., k] (k = min(top_k, C), or C), decreasing along the last axis.

    References:
      Shokri et al. (2017), "Membership inference attacks against machine learning models",
      IEEE S&P; Salem et al. (2019), "ML-Leaks" (the top 3).

    Example:
      >>> sorted_probability_features(np.array([0.2, 0.7, 0.1]), top_k=2)
      array([0.7, 0.2])
    """
    probs = np.asarray(probs, dtype=np.float64)
    out = -np.sort(-probs, axis=-1)
    return out if top_k is None else out[..., :top_k]


def _init(key, d, hidden):
    if hidden == 0:
        return {"w": jnp.zeros((d, 1)), "b": jnp.zeros((1,))}
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (d, hidden)) / np.sqrt(d),
        "b1": jnp.zeros((hidden,)),
        "w2": jax.random.normal(k2, (hidden, 1)) / np.sqrt(hidden),
        "b2": jnp.zeros((1,)),
    }


def _apply(p, x):
    if "w" in p:
        return (x @ p["w"] + p["b"])[..., 0]
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return (h @ p["w2"] + p["b2"])[..., 0]


@functools.partial(jax.jit, static_argnames=("hidden", "steps"))
def _train_block(X, T, W, keys, *, hidden, steps, lr, l2):
    """Train K classifiers at once: X [K, S, d], labels T [K, S], sample weights W [K, S]."""
    d = X.shape[-1]
    params = jax.vmap(lambda k: _init(k, d, hidden))(keys)

    def loss(p, x, t, w):
        z = _apply(p, x)
        bce = jax.nn.softplus(z) - t * z  # −log-likelihood of a Bernoulli(sigmoid(z))
        reg = sum(jnp.sum(v**2) for k, v in p.items() if k.startswith("w"))
        return jnp.sum(w * bce) / jnp.maximum(jnp.sum(w), 1.0) + l2 * reg

    grad = jax.vmap(jax.grad(loss))
    b1, b2, eps = 0.9, 0.999, 1e-8

    def step(state, i):
        p, m, v = state
        g = grad(p, X, T, W)
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        t = i + 1.0
        p = jax.tree.map(
            lambda p, m, v: p - lr * (m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + eps), p, m, v)
        return (p, m, v), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (params, _, _), _ = jax.lax.scan(step, (params, zeros, zeros), jnp.arange(steps, dtype=jnp.float32))
    return params


def _apply_np(p, x):
    """Float64 numpy forward pass of one trained classifier."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}
    if "w" in p:
        return x @ p["w"][:, 0] + p["b"][0]
    return np.tanh(x @ p["w1"] + p["b1"]) @ p["w2"][:, 0] + p["b2"][0]


def shokri(target_probs: Real[ArrayLike, "N C"], target_labels: Real[ArrayLike, " N"],
           shadow_probs: Real[ArrayLike, "M N C"], shadow_keep: Bool[ArrayLike, "M N"], *,
           top_k: int | None = None, hidden: int = 32, steps: int = 300, lr: float = 0.01, l2: float = 1e-4,
           max_samples: int = 5000, min_per_class: int = 20, class_block: int = 16,
           seed: int = 0) -> Float[np.ndarray, " N"]:
    """Shokri et al. (2017) shadow-model attack: per-class classifiers on sorted probability vectors.

    Args:
      target_probs: [N, C] target model's softmax outputs; ``target_labels`` [N] true labels.
      shadow_probs: [M, N, C] shadow models' outputs on the same N examples; ``shadow_keep``
        [M, N] True where shadow m trained on example i (the attack's "in" label).
      top_k: keep the k largest probabilities (Salem et al. 2019 use 3); None keeps all C.
      hidden: hidden units of the attack MLP; 0 gives logistic regression.
      steps, lr, l2: full-batch Adam steps, step size and L2 penalty on the weights.
      max_samples: shadow (model, example) pairs per class, subsampled uniformly beyond that.
      min_per_class: a class with fewer "in" or "out" shadow pairs uses one attack model trained
        on all classes instead.
      class_block: attack classifiers trained at once (vmapped); only those that score some
        example are trained (the usable classes present in ``target_labels``, and the all-class
        one only when a present class is not usable). Each classifier's training is independent
        of the others', so the block size changes nothing but speed.

    Features are standardized with the training pairs' mean and std. Shadow models whose
    probabilities hold NaN/inf are left out (a :class:`~jaxmem.attacks.NonFiniteModelWarning`
    names them).

    Returns:
      float64 [N], the attack classifier's logit for "member".

    Raises:
      ValueError: shapes that disagree, labels outside [0, C) (naming the range), or too few in/out
        shadow pairs to train an attack model.

    References:
      Shokri et al. (2017), "Membership inference attacks against machine learning models",
      IEEE S&P; Salem et al. (2019), "ML-Leaks" (top-k features).
    """
    tp = np.asarray(target_probs, dtype=np.float64)
    sp = np.asarray(shadow_probs)
    keep = np.asarray(shadow_keep, dtype=bool)
    M, N, C = sp.shape
    y = np.asarray(target_labels)
    if tp.shape != (N, C) or y.shape != (N,) or keep.shape != (M, N):
        raise ValueError(f"shapes disagree: target {tp.shape}, labels {y.shape}, "
                         f"shadow {sp.shape}, keep {keep.shape}")
    y = check_labels(y, C, name="target_labels")
    (sp,), keep = drop_nonfinite_shadows("shokri", [sp], keep)
    M = sp.shape[0]
    rng = np.random.default_rng(seed)
    # training sets: one per class, then one over all classes (the fallback), as (m, i) pairs
    groups = [np.flatnonzero(y == c) for c in range(C)] + [np.arange(N)]
    pairs = []
    for idx in groups:
        total = M * idx.size
        flat = rng.choice(total, max_samples, replace=False) if total > max_samples else np.arange(total)
        pairs.append((flat // max(idx.size, 1), idx[flat % max(idx.size, 1)]))
    d = C if top_k is None else min(top_k, C)
    K = len(groups)
    usable = np.zeros(K, bool)
    for k, (m_idx, i_idx) in enumerate(pairs):
        if m_idx.size:
            n_in = int(keep[m_idx, i_idx].sum())
            usable[k] = min(n_in, m_idx.size - n_in) >= min_per_class
    if not usable[-1]:
        raise ValueError("too few in/out shadow pairs to train an attack model")
    # train only the classifiers that score something: the classes present whose own classifier
    # is usable, and the all-class one when some present class is not (each classifier's
    # training is independent of the others: the same results as training all of them)
    present = np.zeros(K, bool)
    present[np.unique(y)] = True
    need = np.flatnonzero(present[:-1] & usable[:-1]).tolist()
    if (present[:-1] & ~usable[:-1]).any():
        need.append(K - 1)
    S = max(max(pairs[k][0].size for k in need), 1)
    X = np.zeros((len(need), S, d), np.float32)
    T = np.zeros((len(need), S), np.float32)
    W = np.zeros((len(need), S), np.float32)
    mu = np.zeros((K, d))
    sd = np.ones((K, d))
    for j, k in enumerate(need):
        m_idx, i_idx = pairs[k]
        n = m_idx.size
        f = sorted_probability_features(sp[m_idx, i_idx], top_k)
        mu[k], sd[k] = f.mean(0), f.std(0) + 1e-12
        X[j, :n] = (f - mu[k]) / sd[k]
        T[j, :n] = keep[m_idx, i_idx]
        W[j, :n] = 1.0
    keys = jax.random.split(jax.random.PRNGKey(seed), K)[np.asarray(need)]
    params = {}
    B = min(class_block, len(need))
    for s in range(0, len(need), B):  # fixed block size: one compilation
        sl = np.arange(s, s + B) % len(need)
        p = _train_block(jnp.asarray(X[sl]), jnp.asarray(T[sl]), jnp.asarray(W[sl]), keys[sl],
                         hidden=int(hidden), steps=int(steps), lr=float(lr), l2=float(l2))
        p = jax.device_get(p)
        params.update({need[s + j]: {n: v[j] for n, v in p.items()} for j in range(min(B, len(need) - s))})
    feats = sorted_probability_features(tp, top_k)
    scores = np.empty(N)
    for c in range(C):
        sel = y == c
        if not sel.any():
            continue
        k = c if usable[c] else K - 1
        scores[sel] = _apply_np(params[k], (feats[sel] - mu[k]) / sd[k])
    return scores
