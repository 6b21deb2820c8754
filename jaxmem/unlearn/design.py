"""Unlearning designs: a forget set and one stack holding both the models that train on it (and
are then unlearned) and the models that never see it (the retrain-from-scratch oracle).

The design is three arrays, stored with the run: ``forget`` [N] bool (the forget set F),
``unlearned`` [M] bool (the models that train on F and are then unlearned; the others are the
retrained models, whose keep row excludes F), and ``keep`` [M, N] bool (each model's training set:
F for the unlearned models, plus its retain part, drawn the same way for both roles). Because both
roles draw their retain part from one distribution, a retrained model is distributed exactly as
"trained from scratch without F", which is what an unlearned model should be indistinguishable
from (Hayes et al. 2024; the NeurIPS 2023 unlearning competition).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FORGET_KINDS", "forget_set", "unlearning_design"]

FORGET_KINDS = ("random", "class", "memorized")


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 0x0F0E, *stream])


def forget_set(kind: str, seed: int, labels, size: int, *, forget_class: int = 0, scores=None) -> np.ndarray:
    """The forget set F as an [N] bool mask.

    Args:
        kind: ``random`` (``size`` examples uniformly), ``class`` (``size`` examples of class
            ``forget_class`` drawn uniformly; all of it when ``size`` is 0 or exceeds it) or
            ``memorized`` (the ``size`` examples of highest ``scores``, e.g. Feldman-Zhang
            memorization from an earlier run; NaN scores are never chosen).
        seed: the run seed (the draw is a function of it).
        labels: [N] int labels.
        size: examples in F.
        forget_class: the class of ``class``.
        scores: [N] float, for ``memorized``.
    Returns:
        [N] bool.
    Raises:
        ValueError: a bad kind, size, class or missing scores (one line naming it)."""
    labels = np.asarray(labels)
    N = labels.shape[0]
    if kind not in FORGET_KINDS:
        raise ValueError(f"forget_kind: unknown {kind!r} (known: {', '.join(FORGET_KINDS)})")
    if size < 0 or size >= N:
        raise ValueError(f"forget_size: must be in [0, {N}) examples, got {size}")
    out = np.zeros(N, bool)
    if kind == "random":
        if size == 0:
            raise ValueError("forget_size: a random forget set needs at least one example")
        out[_rng(seed, 1).choice(N, size, replace=False)] = True
    elif kind == "class":
        pool = np.flatnonzero(labels == forget_class)
        if pool.size == 0:
            raise ValueError(f"forget_class: no training example has class {forget_class}")
        take = pool if size == 0 or size >= pool.size else _rng(seed, 2, forget_class).choice(pool, size, replace=False)
        out[take] = True
    else:
        if scores is None:
            raise ValueError("forget_kind: 'memorized' needs memorization scores from an earlier run")
        s = np.asarray(scores, np.float64)
        if s.shape != (N,):
            raise ValueError(f"forget_kind: memorization scores have shape {s.shape}, expected ({N},)")
        fin = np.flatnonzero(np.isfinite(s))
        if size == 0 or size > fin.size:
            raise ValueError(f"forget_size: {size} examples asked, {fin.size} have a finite memorization score")
        order = fin[np.argsort(-s[fin], kind="stable")]
        out[order[:size]] = True
    return out


def unlearning_design(seed: int, num_models: int, forget, *, retain_fraction: float = 1.0,
                      unlearned_fraction: float = 0.5):
    """The stack's keep matrix and roles.

    Args:
        seed: the run seed.
        num_models: M.
        forget: [N] bool, the forget set.
        retain_fraction: each model trains on this fraction of the other examples (1.0: all of
            them), drawn independently per model (the same distribution for both roles).
        unlearned_fraction: the first ``round(M * unlearned_fraction)`` models train on F and
            are unlearned; the rest never see F.
    Returns:
        ``(keep [M, N] bool, unlearned [M] bool)``.
    Raises:
        ValueError: too few models of a role (each needs >= 3: U-LiRA's leave-one-out
            Gaussians, :func:`jaxmem.attacks.unlearning.ulira`)."""
    forget = np.asarray(forget, bool)
    N = forget.shape[0]
    n_u = int(round(num_models * unlearned_fraction))
    if n_u < 3 or num_models - n_u < 3:
        raise ValueError(f"num_models: {num_models} models give {n_u} unlearned and {num_models - n_u} "
                         f"retrained; each role needs at least 3 (U-LiRA's leave-one-out Gaussians)")
    if not (0 < retain_fraction <= 1):
        raise ValueError(f"retain_fraction: must be in (0, 1], got {retain_fraction}")
    unlearned = np.arange(num_models) < n_u
    if retain_fraction >= 1:
        keep = np.broadcast_to(~forget, (num_models, N)).copy()
    else:
        u = _rng(seed, 3).random((num_models, N))
        keep = (u < retain_fraction) & ~forget[None]
    keep[unlearned] |= forget[None]
    return keep, unlearned
