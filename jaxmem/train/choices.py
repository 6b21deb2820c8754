"""The trainer's choices declared once (light: no jax): optimizers (``train.optimizer``) and
learning-rate schedules (``train.schedule``), each its config class (its own fields and their
defaults) and its builder in :mod:`jaxmem.train.optim`, registered into
:mod:`jaxmem.config.registry`.

Adding an optimizer = its builder ``fn(opt_cfg, lr, wd) -> optax.GradientTransformation`` plus
one ``OPTIMIZER.register(name, ConfigClass, builder="module:fn")``; a schedule = its factor
``fn(sched_cfg, frac, schedule_epochs) -> multiplier of the peak rate`` plus one
``SCHEDULE.register(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxmem.config.registry import LOOKAHEAD, OPTIMIZER, SCHEDULE, Choice, ConfigError

__all__ = ["NoFields", "MomentumConfig", "WarmupConfig", "TriangleConfig", "EMAConfig"]


@dataclass(frozen=True)
class NoFields(Choice):
    """A choice with no fields of its own (``adam``, ``constant``)."""


@dataclass(frozen=True)
class MomentumConfig(Choice):
    """``sgd`` and ``nesterov``: SGD with (Nesterov) momentum."""

    momentum: float = 0.9

    def check(self, path):
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{path}.momentum: must be in [0, 1), got {self.momentum}")


@dataclass(frozen=True)
class WarmupConfig(Choice):
    """``linear_warmup_cosine``: linear from 0 to the peak over ``warmup_epochs``, then cosine."""

    warmup_epochs: float = 0.0

    def check(self, path):
        if self.warmup_epochs < 0:
            raise ConfigError(f"{path}.warmup_epochs: must be >= 0, got {self.warmup_epochs}")


@dataclass(frozen=True)
class TriangleConfig(Choice):
    """``triangle`` (airbench94): linear from ``start`` to the peak at ``warmup_epochs`` (inside
    training: validation checks it against ``train.epochs``), then linear to ``end``."""

    warmup_epochs: float = 0.0
    start: float = 0.0
    end: float = 0.0
    peak_inside = True              # (not a field) validation: 0 < warmup_epochs < train.epochs

    def check(self, path):
        for key in ("warmup_epochs", "start", "end"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class EMAConfig(Choice):
    """``ema``: airbench94's lookahead (from hlb-cifar10): every ``every`` steps from epoch
    ``start_epochs`` on, an average ``ema <- ema + (1 - rho)(theta - ema)`` with ``rho =
    decay**every * (step / total)**pow``, then ``theta <- ema`` (:mod:`jaxmem.train.steps`)."""

    every: int = 5
    start_epochs: int = 3
    decay: float = 0.95
    pow: float = 3.0

    def check(self, path):
        if self.every < 1:
            raise ConfigError(f"{path}.every: must be >= 1, got {self.every}")
        for key in ("start_epochs", "pow"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0, got {getattr(self, key)}")
        if not 0.0 < self.decay <= 1.0:
            raise ConfigError(f"{path}.decay: must be in (0, 1], got {self.decay}")


_O = "jaxmem.train.optim:"
OPTIMIZER.register("adam", NoFields, builder=_O + "adam", doc="Adam; weight decay added to the gradient")
OPTIMIZER.register("adamw", NoFields, builder=_O + "adamw", doc="AdamW (decoupled weight decay)")
OPTIMIZER.register("sgd", MomentumConfig, builder=_O + "sgd", doc="SGD with heavy-ball momentum")
OPTIMIZER.register("nesterov", MomentumConfig, builder=_O + "nesterov", doc="SGD with Nesterov momentum")
SCHEDULE.register("constant", NoFields, builder=_O + "constant_factor", doc="the peak rate throughout")
SCHEDULE.register("cosine", NoFields, builder=_O + "cosine_factor", doc="cosine from the peak to 0")
SCHEDULE.register("linear_warmup_cosine", WarmupConfig, builder=_O + "warmup_cosine_factor",
                  doc="linear warmup, then cosine to 0")
LOOKAHEAD.register("none", NoFields, doc="no parameter averaging")
LOOKAHEAD.register("ema", EMAConfig,   # applied by jaxmem.train.steps.ModelSteps._lookahead
                   doc="airbench94's lookahead: an EMA of the weights, copied back every few steps")
SCHEDULE.register("triangle", TriangleConfig, builder=_O + "triangle_factor",
                  doc="airbench94's triangle: start -> peak -> end, linearly")
