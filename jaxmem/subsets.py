"""Membership designs: which model trains on which example.

Every design returns ``keep``, a bool array ``[M, N]`` with ``keep[m, i]`` True when model ``m``
trains on example ``i``. Each is a pure function of its seed and arguments (NumPy's PCG64 seeded
with ``(seed, stream)``), so a stored run can always be checked against its design, and model ``m``'s
row depends only on ``(seed, m)`` where the design allows it (Bernoulli, fixed-ratio).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field

import numpy as np

from jaxmem.config.registry import DESIGN, Choice, ConfigError

__all__ = [
    "balanced_keep",
    "bernoulli_keep",
    "fixed_ratio_keep",
    "multi_ratio_keep",
    "leave_k_out_keep",
    "leave_group_out_keep",
    "replica_keep",
    "make_keep",
    "make_design",
    "PkeepDesign",
    "RatioDesign",
    "LeaveKOutDesign",
    "ReplicaDesign",
]

# Distinct stream ids so that designs never share random numbers.
_STREAM = {"balanced": 1, "bernoulli": 2, "ratio": 3, "multi_ratio": 4, "leave_k": 5, "group": 6,
           "replica": 7}


def _rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[stream], *map(int, extra)])


def _check(num_models: int, num_examples: int, pkeep: float | None = None):
    if num_models < 1:
        raise ValueError(f"num_models must be >= 1, got {num_models}")
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    if pkeep is not None and not 0.0 < pkeep < 1.0:
        raise ValueError(f"pkeep must be in (0, 1), got {pkeep}")


def balanced_keep(seed: int, num_models: int, num_examples: int, pkeep: float = 0.5, *,
                  block: int = 0) -> np.ndarray:
    """Every example is IN for exactly ``round(pkeep * M)`` of the ``M`` models.

    The LiRA construction (Carlini et al. 2022, reference code ``train.py``): draw uniform
    ``u[m, i]``, rank the models per example by ``u``, and keep the lowest ``round(pkeep * M)``.
    ``block`` numbers a further batch of models drawn later (growing a run): each block is balanced
    within itself.
    """
    _check(num_models, num_examples, pkeep)
    u = _rng(seed, "balanced", block).random((num_models, num_examples))
    order = np.argsort(u, axis=0, kind="stable")
    n_in = int(round(pkeep * num_models))
    keep = np.zeros((num_models, num_examples), dtype=bool)
    np.put_along_axis(keep, order[:n_in], True, axis=0)
    return keep


def bernoulli_keep(seed: int, num_models: int, num_examples: int, pkeep: float = 0.5, *,
                   first_model: int = 0) -> np.ndarray:
    """Each (model, example) is IN independently with probability ``pkeep``; row m depends on (seed, m)."""
    _check(num_models, num_examples, pkeep)
    rows = [_rng(seed, "bernoulli", first_model + m).random(num_examples) < pkeep
            for m in range(num_models)]
    return np.stack(rows)


def fixed_ratio_keep(seed: int, num_models: int, num_examples: int, ratio: float = 0.7, *,
                     first_model: int = 0) -> np.ndarray:
    """Each model trains on a uniformly random subset of exactly ``round(ratio * N)`` examples.

    Feldman & Zhang (2020) use ratio 0.7 with 2,000 models (Sec. 3). Row m depends on (seed, m).
    """
    _check(num_models, num_examples, ratio)
    size = int(round(ratio * num_examples))
    keep = np.zeros((num_models, num_examples), dtype=bool)
    for m in range(num_models):
        idx = _rng(seed, "ratio", first_model + m, int(round(ratio * 1e6))).permutation(num_examples)
        keep[m, idx[:size]] = True
    return keep


def multi_ratio_keep(seed: int, models_per_ratio: int, num_examples: int,
                     ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)):
    """Fixed-ratio subsets at several ratios in one run, for C-scores (Jiang et al. 2021).

    Returns ``(keep [R*K, N], ratio_of_model [R*K])``; models are grouped by ratio.
    """
    keeps, ratio_of = [], []
    for r in ratios:
        keeps.append(fixed_ratio_keep(seed, models_per_ratio, num_examples, r))
        ratio_of += [float(r)] * models_per_ratio
    return np.concatenate(keeps), np.asarray(ratio_of)


def leave_k_out_keep(seed: int, num_models: int, num_examples: int, k: int = 1) -> np.ndarray:
    """Each model leaves out ``k`` examples and trains on the rest.

    Examples are left out in a random order, cycling, so that with ``M*k >= N`` every example is
    left out by at least one model.
    """
    _check(num_models, num_examples)
    if not 1 <= k < num_examples:
        raise ValueError(f"k must be in [1, num_examples), got {k}")
    order = _rng(seed, "leave_k").permutation(num_examples)
    keep = np.ones((num_models, num_examples), dtype=bool)
    for m in range(num_models):
        keep[m, order[(m * k + np.arange(k)) % num_examples]] = False
    return keep


def leave_group_out_keep(seed: int, num_models: int, groups, pkeep: float = 0.5) -> np.ndarray:
    """Whole groups are kept or dropped together (leave-subset-out designs).

    ``groups`` is an int array ``[N]`` of group ids; a negative id marks examples that are always
    kept. Groups are balanced: each is IN for exactly ``round(pkeep * M)`` models.
    """
    groups = np.asarray(groups)
    ids = np.unique(groups[groups >= 0])
    gkeep = balanced_keep(seed + 7919, num_models, max(len(ids), 1), pkeep)
    keep = np.ones((num_models, groups.size), dtype=bool)
    for j, g in enumerate(ids):
        keep[:, groups == g] = gkeep[:, j : j + 1]
    return keep


def replica_keep(seed: int, num_models: int, num_examples: int, replicas: int,
                 pkeep: float = 0.5) -> np.ndarray:
    """R target replicas on the SAME data, then ``M − R`` reference models on random halves.

    Models ``0..R−1`` all train on one random subset of exactly ``round(pkeep · N)`` examples
    (they differ only by their seeds: every random stream of the trainer folds in the model id,
    :mod:`jaxmem.train.rng`); models ``R..M−1`` are a balanced design (each example IN for
    exactly ``round(pkeep · (M − R))`` of them, as :func:`balanced_keep`). Decision stability
    over replicas (Hayes et al. 2025, Sec. 6; :mod:`jaxmem.attacks.stability`) attacks each
    replica with the references as shadows.

    Raises:
      ValueError: unless 2 ≤ ``replicas`` < ``num_models`` (at least one reference).
    """
    _check(num_models, num_examples, pkeep)
    if not 2 <= replicas < num_models:
        raise ValueError(f"replicas must be in [2, num_models={num_models}), got {replicas}")
    idx = _rng(seed, "replica").permutation(num_examples)[: int(round(pkeep * num_examples))]
    target = np.zeros(num_examples, bool)
    target[idx] = True
    refs = num_models - replicas
    u = _rng(seed, "replica", 1).random((refs, num_examples))
    order = np.argsort(u, axis=0, kind="stable")
    ref = np.zeros((refs, num_examples), dtype=bool)
    np.put_along_axis(ref, order[: int(round(pkeep * refs))], True, axis=0)
    return np.concatenate([np.broadcast_to(target, (replicas, num_examples)), ref])


def _pkeep_check(path, pkeep):
    if not 0.0 < pkeep < 1.0:
        raise ConfigError(f"{path}.pkeep: must be in (0, 1), got {pkeep}")


@dataclass(frozen=True)
class PkeepDesign(Choice):
    """``balanced``, ``bernoulli``, ``leave_group_out``: each example (group) IN with
    probability ``pkeep``."""

    pkeep: float = 0.5

    def check(self, path):
        _pkeep_check(path, self.pkeep)


@dataclass(frozen=True)
class RatioDesign(Choice):
    """``ratio``: every model trains on a fixed fraction of the examples; several ratios make
    groups of models (C-scores)."""

    ratios: typing.List[float] = field(default_factory=lambda: [0.7])

    def check(self, path):
        for i, r in enumerate(self.ratios):
            if not 0.0 < r < 1.0:
                raise ConfigError(f"{path}.ratios[{i}]: must be in (0, 1), got {r}")
        if not self.ratios:
            raise ConfigError(f"{path}.ratios: needs at least one ratio")


@dataclass(frozen=True)
class LeaveKOutDesign(Choice):
    """``leave_k_out``: each model leaves out ``k`` examples."""

    k: int = 1

    def check(self, path):
        if self.k < 1:
            raise ConfigError(f"{path}.k: must be >= 1, got {self.k}")


@dataclass(frozen=True)
class ReplicaDesign(Choice):
    """``replica``: ``replicas`` target models on the same data, then references."""

    replicas: int = 2
    pkeep: float = 0.5

    def check(self, path):
        _pkeep_check(path, self.pkeep)


def _balanced(d, seed, num_models, num_examples, *, block=0, **_):
    return balanced_keep(seed, num_models, num_examples, d.pkeep, block=block), np.full(num_models, d.pkeep)


def _bernoulli(d, seed, num_models, num_examples, *, first_model=0, **_):
    return (bernoulli_keep(seed, num_models, num_examples, d.pkeep, first_model=first_model),
            np.full(num_models, d.pkeep))


def _ratio(d, seed, num_models, num_examples, *, first_model=0, **_):
    ratios = tuple(d.ratios)
    if len(ratios) == 1:
        return fixed_ratio_keep(seed, num_models, num_examples, ratios[0],
                                first_model=first_model), np.full(num_models, ratios[0])
    if num_models % len(ratios):
        raise ValueError(f"num_models ({num_models}) must be a multiple of len(ratios) ({len(ratios)})")
    return multi_ratio_keep(seed, num_models // len(ratios), num_examples, ratios)


def _leave_k_out(d, seed, num_models, num_examples, **_):
    keep = leave_k_out_keep(seed, num_models, num_examples, d.k)
    return keep, keep.mean(1)


def _leave_group_out(d, seed, num_models, num_examples, *, groups=None, **_):
    if groups is None:
        raise ValueError("leave_group_out needs groups")
    return leave_group_out_keep(seed, num_models, groups, d.pkeep), np.full(num_models, d.pkeep)


def _replica(d, seed, num_models, num_examples, *, block=0, first_model=0, **_):
    if block or first_model:
        raise ValueError("the replica design cannot grow (one block of models)")
    keep = replica_keep(seed, num_models, num_examples, d.replicas, d.pkeep)
    return keep, keep.mean(1)


# A design's builder: fn(design_cfg, seed, num_models, num_examples, *, groups, block,
# first_model) -> (keep [M, N], ratio [M]). ``grows``: more models can be drawn later (blocks).
DESIGN.register("balanced", PkeepDesign, builder=_balanced, capabilities={"grows": True},
                doc="each example IN for exactly round(pkeep M) models (LiRA)")
DESIGN.register("bernoulli", PkeepDesign, builder=_bernoulli, capabilities={"grows": True},
                doc="each (model, example) IN with probability pkeep")
DESIGN.register("ratio", RatioDesign, builder=_ratio, capabilities={"grows": True},
                doc="fixed-size random subsets (Feldman & Zhang; C-scores with several ratios)")
DESIGN.register("leave_k_out", LeaveKOutDesign, builder=_leave_k_out, capabilities={"grows": False},
                doc="each model leaves out k examples")
DESIGN.register("leave_group_out", PkeepDesign, builder=_leave_group_out,
                capabilities={"grows": False}, doc="whole groups IN or OUT together")
DESIGN.register("replica", ReplicaDesign, builder=_replica, capabilities={"grows": False},
                doc="replicas on the same data, then balanced references")


def make_keep(design, seed: int, num_models: int, num_examples: int, *, pkeep: float = 0.5,
              ratios=(0.7,), k: int = 1, groups=None, block: int = 0, first_model: int = 0,
              replicas: int = 2):
    """Build ``keep`` (and the per-model subset ratio) of a design: a design config
    (``cfg.subsets.design``) or a design name with its fields as keyword arguments.

    Raises:
      ValueError: an unknown design, or arguments it does not allow."""
    if isinstance(design, str):
        if design not in DESIGN:
            raise ValueError(f"unknown design {design!r}")
        given = {"pkeep": pkeep, "ratios": list(ratios), "k": k, "replicas": replicas}
        design = DESIGN.make(design, **{f: given[f] for f in DESIGN.fields(design) if f in given})
    return DESIGN.build(design.name)(design, seed, num_models, num_examples, groups=groups,
                                     block=block, first_model=first_model)


def make_design(cfg, blocks, num_examples, groups=None, units=None):
    """``keep`` [M, N] and each model's subset ratio [M] of a run's config (``cfg.subsets``), one
    block of models after another (``blocks``: ``[{"first", "count", "block"}]``, a run grown
    later adds one). ``units`` (int [N] in [0, U)): the design is drawn over the U units and every
    example takes its unit's row, so the examples of a unit are IN or OUT together (a text and
    its copies, :mod:`jaxmem.data.text_build`); the ratios are then fractions of units."""
    if units is not None:
        units = np.asarray(units, np.int64)
        if units.shape != (num_examples,) or (units.size and units.min() < 0):
            raise ValueError(f"units must be [N] = ({num_examples},) non-negative ints, got {units.shape}")
        keep, ratio = make_design(cfg, blocks, int(units.max(initial=-1)) + 1, groups)
        return keep[:, units], ratio
    s = cfg.subsets
    keeps, ratios = [], []
    for b in blocks:
        k, r = make_keep(s.design, cfg.seed, b["count"], num_examples, groups=groups,
                         block=b["block"], first_model=b["first"])
        keeps.append(k)
        ratios.append(r)
    return np.concatenate(keeps), np.concatenate(ratios)
