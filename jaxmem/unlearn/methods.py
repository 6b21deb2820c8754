"""Unlearning methods: each is ONE registered choice (name -> frozen dataclass of its fields with
their defaults, and the objective it minimizes), validated at the door with one-line errors that
name the field.

A method's objective is written for ONE model on one step's batches (a retain batch and a forget
batch of ``batch_size`` examples each); :mod:`jaxmem.unlearn.stack` maps it over every model of a
stack the way the trainer maps training. The loss of a batch is the trainer's own
(:meth:`jaxmem.train.steps.ModelSteps.batch_loss`: cross-entropy, label smoothing, BatchNorm
statistics, dropout), so unlearning trains the network exactly as training did.

``budget``: the method's optimizer steps as a fraction of the steps that trained the model
(``train.epochs * ceil(n_in / batch_size)``; 1.0 = as many steps as retraining takes).

References:
    Kurmanji, Triantafillou, Hayes & Triantafillou (2023), "Towards Unbounded Machine Unlearning"
    (NegGrad+, SCRUB; fine-tuning and gradient ascent as baselines).
    Jia, Liu, Ram, Yao, Liu, Liu, Sharma & Liu (2023), "Model Sparsity Can Simplify Machine
    Unlearning" (L1-sparse unlearning: fine-tuning with an L1 penalty whose weight decays
    linearly to 0).
    Golatkar, Achille & Soatto (2020); Hayes et al. (2024): random relabeling of the forget set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

__all__ = ["Method", "METHODS", "make_method", "make_methods", "MethodError"]


class MethodError(ValueError):
    """A bad unlearning method spec (one line, naming the field)."""


@dataclass(frozen=True)
class Method:
    """Fields every method has.

    ``budget``: optimizer steps as a fraction of the model's training steps; ``learning_rate``:
    the (constant) learning rate of a fresh optimizer of the run's kind (``train.optimizer``);
    ``batch_size``: examples per batch (0: ``train.batch_size``)."""

    budget: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 0

    name: ClassVar[str] = ""
    uses: ClassVar[tuple] = ()   # which batches the objective reads: "retain", "forget"

    def check(self, where: str) -> None:
        if not (self.budget > 0):
            raise MethodError(f"{where}.budget: must be > 0 (a fraction of the training steps), got {self.budget!r}")
        if not (self.learning_rate > 0):
            raise MethodError(f"{where}.learning_rate: must be > 0, got {self.learning_rate!r}")
        if self.batch_size < 0:
            raise MethodError(f"{where}.batch_size: must be >= 0 (0: train.batch_size), got {self.batch_size!r}")

    def objective(self, loss: Callable, params, retain, forget, key, progress, num_classes):
        """The scalar minimized at one step, and the BatchNorm statistics to keep.

        Args:
            loss: ``loss(params, x, y) -> (mean loss, new batch_stats)`` (the trainer's).
            params: the model's parameters.
            retain / forget: ``(x, y)`` batches of the retain and forget sets.
            key: this step's key (random labels).
            progress: step / total steps in [0, 1) (decaying penalties).
            num_classes: C.
        Returns:
            ``(objective, batch_stats)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Finetune(Method):
    """Fine-tune on the retain set (catastrophic forgetting of the forget set)."""

    name: ClassVar[str] = "finetune"
    uses: ClassVar[tuple] = ("retain",)

    def objective(self, loss, params, retain, forget, key, progress, num_classes):
        return loss(params, *retain)


@dataclass(frozen=True)
class GradientAscent(Method):
    """Gradient ascent on the forget set: minimize ``-L_forget``."""

    name: ClassVar[str] = "gradient_ascent"
    uses: ClassVar[tuple] = ("forget",)
    learning_rate: float = 1e-4

    def objective(self, loss, params, retain, forget, key, progress, num_classes):
        lf, bs = loss(params, *forget)
        return -lf, bs


@dataclass(frozen=True)
class NegGradPlus(Method):
    """NegGrad+ (Kurmanji et al. 2023): ``L_retain - alpha * L_forget``. The paper writes
    ``beta * L_retain - (1 - beta) * L_forget``: the same objective up to the factor ``1 + alpha``
    with ``beta = 1 / (1 + alpha)`` (alpha 0.2: beta ~ 0.83), the same steps under Adam (scale
    invariant up to its epsilon), a learning rate ``1 + alpha`` times the paper's under SGD."""

    name: ClassVar[str] = "neggrad_plus"
    uses: ClassVar[tuple] = ("retain", "forget")
    alpha: float = 0.2

    def check(self, where):
        super().check(where)
        if not (self.alpha >= 0):
            raise MethodError(f"{where}.alpha: must be >= 0, got {self.alpha!r}")

    def objective(self, loss, params, retain, forget, key, progress, num_classes):
        lr_, bs = loss(params, *retain)
        lf, _ = loss(params, *forget)
        return lr_ - self.alpha * lf, bs


@dataclass(frozen=True)
class RandomLabel(Method):
    """Random relabeling: train on the forget set with labels drawn uniformly among the wrong
    classes (a fresh draw every step), plus ``retain_weight`` times the retain loss."""

    name: ClassVar[str] = "random_label"
    uses: ClassVar[tuple] = ("retain", "forget")
    retain_weight: float = 1.0

    def check(self, where):
        super().check(where)
        if not (self.retain_weight >= 0):
            raise MethodError(f"{where}.retain_weight: must be >= 0, got {self.retain_weight!r}")

    def objective(self, loss, params, retain, forget, key, progress, num_classes):
        xf, yf = forget
        shift = jax.random.randint(key, yf.shape, 1, num_classes)
        lf, bs = loss(params, xf, (yf + shift) % num_classes)
        if self.retain_weight:
            lr_, bs = loss(params, *retain)
            return lf + self.retain_weight * lr_, bs
        return lf, bs


@dataclass(frozen=True)
class L1Sparse(Method):
    """L1-sparse unlearning (Jia et al. 2023): fine-tune on the retain set with
    ``gamma * (1 - progress) * ||theta||_1`` over every parameter (the weight decays linearly to
    0, step by step). The authors' code decays it per epoch, ``gamma * (1 - epoch / E)``, so its
    last epoch keeps ``gamma / E`` and its mean weight is ``gamma (E + 1) / (2E)`` against
    ``gamma / 2`` here (0.55 vs 0.5 gamma for E = 10), with SGD (momentum 0.9) where this uses a
    fresh optimizer of the run's kind."""

    name: ClassVar[str] = "l1_sparse"
    uses: ClassVar[tuple] = ("retain",)
    gamma: float = 5e-4

    def check(self, where):
        super().check(where)
        if not (self.gamma >= 0):
            raise MethodError(f"{where}.gamma: must be >= 0, got {self.gamma!r}")

    def objective(self, loss, params, retain, forget, key, progress, num_classes):
        lr_, bs = loss(params, *retain)
        l1 = sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(params))
        return lr_ + self.gamma * (1.0 - progress) * l1, bs


#: name -> the method's dataclass (its fields and defaults; its objective).
METHODS: dict = {c.name: c for c in (Finetune, GradientAscent, NegGradPlus, RandomLabel, L1Sparse)}


def make_method(spec, where: str = "method") -> Method:
    """A validated :class:`Method` from a name or a dict ``{"name": ..., field: value}``.

    Raises:
        MethodError: one line naming the bad field (unknown name, unknown field, bad value)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise MethodError(f"{where}: expected a method name or a table with a 'name', got {spec!r}")
    spec = dict(spec)
    name = spec.pop("name")
    if name not in METHODS:
        raise MethodError(f"{where}.name: unknown unlearning method {name!r} (known: {', '.join(METHODS)})")
    cls = METHODS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in spec.items():
        if k not in fields:
            raise MethodError(f"{where}.{k}: not a field of {name} (fields: {', '.join(fields)})")
        want = float if fields[k].type in ("float", float) else int
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (want is int and not isinstance(v, int)):
            raise MethodError(f"{where}.{k}: expected {want.__name__}, got {v!r}")
    m = cls(**{k: (float(v) if fields[k].type in ("float", float) else v) for k, v in spec.items()})
    m.check(f"{where}")
    return m


def make_methods(specs, where: str = "methods") -> list:
    """:func:`make_method` for each spec; names must be distinct (a method's results are stored
    under its name)."""
    if not isinstance(specs, (list, tuple)) or not specs:
        raise MethodError(f"{where}: expected a non-empty list of methods, got {specs!r}")
    out = [make_method(s, f"{where}[{i}]") for i, s in enumerate(specs)]
    names = [m.name for m in out]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise MethodError(f"{where}[{i}].name: {n!r} appears twice")
    return out
