"""Recorded dataset transforms: label noise, long tail, duplicates, canaries.

Transforms return new datasets and append a JSON-serializable record to ``meta["transforms"]``;
examples they add get fresh ids that continue after the largest id ever used
(``meta["next_id"]``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import numpy as np

from jaxmem.data.dataset import DataError, Dataset, validate_dataset

__all__ = ["label_noise", "flipped_mask", "LABEL_NOISE_KINDS", "long_tail", "rare_mask", "duplicate",
           "duplicate_groups", "insert_canaries", "canary_mask", "CANARY_KINDS"]

#: Kinds of inserted canaries (``data.canary_kind``).
CANARY_KINDS = ("random_label", "random_input")


def _ints(a) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def _replace(ds: Dataset, record: dict, *, next_id: int | None = None, **arrays) -> Dataset:
    meta = copy.deepcopy(ds.meta)
    meta.setdefault("transforms", []).append(record)
    if next_id is not None:
        meta["next_id"] = int(next_id)
    out = dataclasses.replace(ds, meta=meta, **arrays)
    validate_dataset(out)
    return out


def _new_ids(ds: Dataset, k: int) -> np.ndarray:
    start = max(int(ds.meta.get("next_id", 0)), int(ds.ids_train.max()) + 1,
                int(ds.ids_test.max()) + 1)
    return np.arange(start, start + k, dtype=np.int64)


def _recorded_ids(ds: Dataset, transform: str, key: str) -> np.ndarray:
    ids = [i for t in ds.meta.get("transforms", []) if t["name"] == transform for i in t[key]]
    return np.isin(ds.ids_train, np.asarray(ids, np.int64))


def _random_other_labels(rng: np.random.Generator, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Uniformly random labels different from `y` (y + U{1..C-1} mod C)."""
    shift = rng.integers(1, num_classes, size=len(y))
    return ((y.astype(np.int64) + shift) % num_classes).astype(np.int32)


#: Kinds of planted label noise (``data.label_noise_kind``).
LABEL_NOISE_KINDS = ("uniform", "class_conditional")


def _derangement(rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """A uniformly random permutation of the classes without a fixed point (rejection sampling)."""
    while True:
        p = rng.permutation(num_classes)
        if not np.any(p == np.arange(num_classes)):
            return p


def label_noise(ds: Dataset, fraction: float, seed: int, kind: str = "uniform") -> Dataset:
    """Plant label noise in the train labels; the test split is unchanged.

    ``kind="uniform"`` (symmetric noise): flip round(fraction * N) distinct train labels, each to
    a uniformly random other class. ``kind="class_conditional"``: draw a random derangement π of
    the classes and, in every class c, flip round(fraction * n_c) of its examples to π(c) — the
    sparsest class-conditional noise, transition matrix T = (1 − fraction)·I + fraction·P_π
    (one off-diagonal entry per row: the "pair"/asymmetric noise of e.g. Patrini et al. 2017 and
    the class-conditional setting of confident learning, Northcutt et al. 2021, Sec. 2).

    Records the kind, the flipped ids with their original and new labels (and π as
    ``class_map``); `flipped_mask` reads them back.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"label noise fraction must be in [0, 1], got {fraction}")
    if ds.num_classes < 2:
        raise DataError("label noise needs at least 2 classes")
    if kind not in LABEL_NOISE_KINDS:
        raise DataError(f"unknown label noise kind {kind!r}; use one of {', '.join(LABEL_NOISE_KINDS)}")
    rng = np.random.default_rng(seed)
    y = ds.y_train.copy()
    extra = {}
    if kind == "uniform":
        k = int(round(fraction * ds.num_train))
        rows = np.sort(rng.choice(ds.num_train, size=k, replace=False))
        new = _random_other_labels(rng, y[rows], ds.num_classes)
    else:
        pi = _derangement(rng, ds.num_classes)
        picked = []
        for c in range(ds.num_classes):
            members = np.flatnonzero(y == c)
            picked.append(rng.choice(members, size=int(round(fraction * members.size)), replace=False))
        rows = np.sort(np.concatenate(picked)).astype(np.int64)
        new = pi[y[rows]].astype(np.int32)
        extra = {"class_map": _ints(pi)}
    record = {
        "name": "label_noise",
        "kind": kind,
        "fraction": float(fraction),
        "seed": int(seed),
        "num_flipped": int(rows.size),
        "flipped_ids": _ints(ds.ids_train[rows]),
        "original_labels": _ints(y[rows]),
        "new_labels": _ints(new),
        **extra,
    }
    y[rows] = new
    return _replace(ds, record, y_train=y)


def flipped_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples whose id was flipped by any `label_noise` transform."""
    return _recorded_ids(ds, "label_noise", "flipped_ids")


def long_tail(
    ds: Dataset,
    seed: int,
    *,
    classes: Sequence[int] | None = None,
    keep_fraction: float,
    profile: str = "step",
    groups: np.ndarray | None = None,
) -> Dataset:
    """Subsample train examples of some groups (classes by default) to make them rare.

    profile='step': each group in `classes` keeps round(keep_fraction * n_g) random examples.
    profile='exponential' (Cui et al. 2019, "Class-Balanced Loss", long-tailed CIFAR): the k-th of
    the K groups in `classes` (default: all classes in order) keeps round(n_g * keep_fraction **
    (k / (K - 1))): the first keeps all, the last a `keep_fraction` (imbalance 1/keep_fraction).
    `groups` ([num_train] ints) names subpopulations to subsample instead of classes
    (Feldman & Zhang 2020). Groups not listed are untouched; the test split is unchanged.
    Records per-group counts and the ids of kept examples in subsampled groups (`rare_mask`).
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise DataError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    g = ds.y_train.astype(np.int64) if groups is None else np.asarray(groups)
    if g.shape != (ds.num_train,) or not np.issubdtype(g.dtype, np.integer):
        raise DataError(f"groups must be an int array of shape ({ds.num_train},), got {g.shape}")
    if classes is None:
        if profile == "step":
            raise DataError("long_tail with profile='step' needs `classes` (groups to make rare)")
        classes = list(range(ds.num_classes)) if groups is None else _ints(np.unique(g))
    classes = _ints(classes)
    if len(set(classes)) != len(classes):
        raise DataError(f"classes must be distinct, got {classes}")
    if profile == "step":
        fractions = [keep_fraction] * len(classes)
    elif profile == "exponential":
        K = len(classes)
        fractions = [keep_fraction ** (k / (K - 1)) if K > 1 else keep_fraction for k in range(K)]
    else:
        raise DataError(f"unknown long_tail profile {profile!r}; use 'step' or 'exponential'")
    rng = np.random.default_rng(seed)
    keep = np.ones(ds.num_train, bool)
    rare = np.zeros(ds.num_train, bool)
    per_group = []
    for c, f in zip(classes, fractions):
        rows = np.flatnonzero(g == c)
        if len(rows) == 0:
            raise DataError(f"group {c} has no train examples")
        k = int(round(f * len(rows)))
        kept = rng.choice(rows, size=k, replace=False)
        keep[rows] = False
        keep[kept] = True
        if k < len(rows):
            rare[kept] = True
        per_group.append({"group": c, "keep_fraction": float(f), "original": len(rows), "kept": k})
    if not keep.any():
        raise DataError("long_tail would remove every train example")
    record = {
        "name": "long_tail",
        "seed": int(seed),
        "profile": profile,
        "keep_fraction": float(keep_fraction),
        "by": "label" if groups is None else "groups",
        "groups": per_group,
        "num_removed": int((~keep).sum()),
        "rare_ids": _ints(np.sort(ds.ids_train[rare])),
    }
    return _replace(
        ds, record, x_train=ds.x_train[keep], y_train=ds.y_train[keep], ids_train=ds.ids_train[keep]
    )


def rare_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples in a group subsampled by any `long_tail` transform."""
    return _recorded_ids(ds, "long_tail", "rare_ids")


def duplicate(ds: Dataset, seed: int, *, num: int, copies: int) -> Dataset:
    """Append `copies` exact copies of each of `num` distinct random train examples, with new ids.

    Records original id -> duplicate ids; `duplicate_groups` gives the group array for
    leave-group-out designs (an example and its copies share a group).
    """
    if not 0 <= num <= ds.num_train:
        raise DataError(f"duplicate num must be in [0, {ds.num_train}], got {num}")
    if copies < 1:
        raise DataError(f"duplicate copies must be >= 1, got {copies}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(ds.num_train, size=num, replace=False))
    src = np.repeat(rows, copies)
    new_ids = _new_ids(ds, len(src))
    record = {
        "name": "duplicate",
        "seed": int(seed),
        "num": int(num),
        "copies": int(copies),
        "original_ids": _ints(ds.ids_train[rows]),
        "duplicate_ids": [_ints(r) for r in new_ids.reshape(num, copies)],
    }
    return _replace(
        ds,
        record,
        next_id=int(new_ids[-1]) + 1 if len(new_ids) else None,
        x_train=np.concatenate([ds.x_train, ds.x_train[src]]),
        y_train=np.concatenate([ds.y_train, ds.y_train[src]]),
        ids_train=np.concatenate([ds.ids_train, new_ids]),
    )


def duplicate_groups(ds: Dataset) -> np.ndarray:
    """int64 [num_train]: the id of each train example's original (its own id if not a copy)."""
    root = {}
    for t in ds.meta.get("transforms", []):
        if t["name"] == "duplicate":
            for orig, dups in zip(t["original_ids"], t["duplicate_ids"]):
                for d in dups:
                    root[d] = root.get(orig, orig)
    return np.array([root.get(int(i), int(i)) for i in ds.ids_train], np.int64)


def _random_inputs(ds: Dataset, rng: np.random.Generator, num: int) -> tuple[np.ndarray, str]:
    """Noise inputs: uniform raw pixels/values, preprocessed like the real data."""
    shape = (num, *ds.input_shape)
    prep = ds.meta.get("preprocessing", {})
    if np.issubdtype(ds.x_train.dtype, np.integer):
        lo, hi = int(ds.x_train.min()), int(ds.x_train.max())
        x = rng.integers(lo, hi + 1, size=shape).astype(ds.x_train.dtype)
        return x, f"uniform ints [{lo}, {hi}]"
    if prep.get("kind") == "image":
        u = rng.uniform(0.0, 1.0, size=shape)
        x = (u - np.asarray(prep["mean"])) / np.asarray(prep["std"])
        return x.astype(ds.x_train.dtype), "uniform [0, 1] pixels, standardized like train"
    lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
    return rng.uniform(lo, hi, size=shape).astype(ds.x_train.dtype), f"uniform [{lo:.4g}, {hi:.4g}]"


def insert_canaries(ds: Dataset, seed: int, *, num: int, kind: str = "random_label") -> Dataset:
    """Append `num` canary train examples with new ids.

    kind='random_label': copies of `num` distinct random train inputs, each with a uniformly
    random wrong label (the originals stay, correctly labeled). kind='random_input': uniform
    noise inputs (see `_random_inputs`) with uniformly random labels. `canary_mask` reads them back.
    """
    if num < 1:
        raise DataError(f"canary num must be >= 1, got {num}")
    rng = np.random.default_rng(seed)
    if kind == "random_label":
        if num > ds.num_train:
            raise DataError(f"canary num must be <= num_train={ds.num_train}, got {num}")
        if ds.num_classes < 2:
            raise DataError("random_label canaries need at least 2 classes")
        rows = np.sort(rng.choice(ds.num_train, size=num, replace=False))
        x = ds.x_train[rows]
        y = _random_other_labels(rng, ds.y_train[rows], ds.num_classes)
        extra = {"source_ids": _ints(ds.ids_train[rows]), "source_labels": _ints(ds.y_train[rows])}
    elif kind == "random_input":
        x, how = _random_inputs(ds, rng, num)
        y = rng.integers(0, ds.num_classes, size=num).astype(np.int32)
        extra = {"inputs": how}
    else:
        raise DataError(f"unknown canary kind {kind!r}; use 'random_label' or 'random_input'")
    new_ids = _new_ids(ds, num)
    record = {
        "name": "insert_canaries",
        "kind": kind,
        "seed": int(seed),
        "num": int(num),
        "canary_ids": _ints(new_ids),
        "labels": _ints(y),
        **extra,
    }
    return _replace(
        ds,
        record,
        next_id=int(new_ids[-1]) + 1,
        x_train=np.concatenate([ds.x_train, x]),
        y_train=np.concatenate([ds.y_train, y.astype(ds.y_train.dtype)]),
        ids_train=np.concatenate([ds.ids_train, new_ids]),
    )


def canary_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples inserted by any `insert_canaries` transform."""
    return _recorded_ids(ds, "insert_canaries", "canary_ids")
