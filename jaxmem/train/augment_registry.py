"""The training-augmentation registry: each augmentation declared once, with its name, its fields
(defaults and ranges), its builder and what it can do. Light on purpose (no jax): config
validation reads it; the builder (:mod:`jaxmem.train.augment`) is imported when a model trains.

``train.augment`` names one augmentation or a chain joined by ``+`` applied left to right
(``"flip_crop+mixup"``); ``train.augment_args`` overrides fields per name
(``{mixup = {alpha = 0.4}}``). Adding an augmentation = one builder in
:mod:`jaxmem.train.augment` plus one entry in :data:`AUGMENTATIONS` below.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxmem.config.registry import AUGMENT, provide

__all__ = ["AugmentSpec", "AUGMENTATIONS", "parse_chain", "resolve_args", "check_augment"]


class AugmentSpec(NamedTuple):
    """One augmentation.

    ``builder``: the name of its function in :mod:`jaxmem.train.augment`, called as
    ``fn(x, y1h, key, args, ctx) -> (x, y1h)`` (``y1h`` [B, C] float targets). ``fields``:
    ``{name: (default, low, high)}``, each value a number in ``[low, high]``. Capabilities:
    ``inputs`` — ``"image"`` (needs images ``[B, H, W, C]``) or ``"float"`` (any float input:
    images or 1-D signals, not tokens); ``mixes_labels`` — mixes examples (and their labels)
    across the batch: the loss takes soft targets, and DP-SGD's per-example clipping does not
    apply; ``per_example_key`` — needs the example ids, the epoch and a per-model key
    (airbench94's alternating flip).
    """

    builder: str
    fields: dict
    inputs: str = "image"
    mixes_labels: bool = False
    per_example_key: bool = False
    doc: str = ""


_PAD = {"pad": (2, 0, 64)}
_P = (1.0, 0.0, 1.0)

AUGMENTATIONS: dict[str, AugmentSpec] = {
    "flip": AugmentSpec("flip_crop", {}, doc="horizontal flip with probability 1/2"),
    "crop": AugmentSpec("flip_crop", _PAD, doc="random translation: reflect-pad by pad, crop back"),
    "flip_crop": AugmentSpec("flip_crop", _PAD, doc="flip, then crop"),
    "altflip": AugmentSpec("flip_crop", {}, per_example_key=True,
                           doc="airbench94's alternating flip (example i flipped in odd or even epochs)"),
    "altflip_crop": AugmentSpec("flip_crop", _PAD, per_example_key=True, doc="altflip, then crop"),
    "mixup": AugmentSpec("mixup", {"alpha": (1.0, 0.0, 100.0), "p": _P}, inputs="float",
                         mixes_labels=True,
                         doc="mixup (Zhang et al. 2018): with probability p per batch, "
                             "x <- lam x + (1 - lam) x[perm], same for the one-hot labels, "
                             "lam ~ Beta(alpha, alpha)"),
    "cutmix": AugmentSpec("cutmix", {"alpha": (1.0, 0.0, 100.0), "p": _P}, mixes_labels=True,
                          doc="CutMix (Yun et al. 2019): with probability p per batch, a box of "
                              "area 1 - lam from x[perm] pasted in, labels mixed by the box's area"),
    "erase": AugmentSpec("erase", {"p": (0.5, 0.0, 1.0), "area_min": (0.02, 0.0, 1.0),
                                   "area_max": (0.4, 0.0, 1.0), "ratio": (0.3, 0.01, 1.0)},
                         doc="random erasing (Zhong et al. 2020): per example with probability "
                             "p, a box of area in [area_min, area_max] and aspect ratio in "
                             "[ratio, 1/ratio] filled with N(0, 1) noise"),
    "randaugment": AugmentSpec("randaugment", {"num_ops": (2, 0, 8), "magnitude": (9.0, 0.0, 30.0)},
                               doc="RandAugment (Cubuk et al. 2020): num_ops ops per example, "
                                   "each uniform from identity, rotate, shear x/y, translate "
                                   "x/y, brightness, contrast, at magnitude/30 of their range"),
}


def parse_chain(augment: str) -> list:
    """The names of a ``train.augment`` value (``"none"`` -> ``[]``).

    Raises:
        ValueError: an unknown name, a repeated one, or "none" inside a chain."""
    if augment == "none":
        return []
    names = augment.split("+")
    for n in names:
        if n not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {n!r} (choose from none, "
                             f"{', '.join(AUGMENTATIONS)}, or a chain like flip_crop+mixup)")
    if len(set(names)) != len(names):
        raise ValueError(f"each augmentation once in a chain, got {augment!r}")
    return names


def resolve_args(augment: str, augment_args: dict) -> dict:
    """``{name: {field: value}}`` for every augmentation of the chain: the declared defaults
    overridden by ``augment_args`` (ints stay ints where the default is one).

    Raises:
        ValueError: an argument for an augmentation not in the chain, an unknown field, a
            value that is not a number or lies outside the declared range."""
    names = parse_chain(augment)
    for n in augment_args:
        if n not in names:
            raise ValueError(f"arguments for {n!r}, which train.augment ({augment!r}) does not use")
    out = {}
    for n in names:
        fields = AUGMENTATIONS[n].fields
        given = augment_args.get(n, {})
        if not isinstance(given, dict):
            raise ValueError(f"{n}: expected a table of fields, got {given!r}")
        vals = {}
        for f, (default, lo, hi) in fields.items():
            v = given.get(f, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{n}.{f}: expected a number, got {v!r}")
            if isinstance(default, int) and not float(v).is_integer():
                raise ValueError(f"{n}.{f}: expected an integer, got {v!r}")
            if not lo <= v <= hi:
                raise ValueError(f"{n}.{f}: must be in [{lo}, {hi}], got {v}")
            vals[f] = int(v) if isinstance(default, int) else float(v)
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ValueError(f"{n}: unknown field {unknown[0]!r} (fields: "
                             f"{', '.join(fields) or 'none'})")
        if n == "erase" and vals["area_min"] > vals["area_max"]:
            raise ValueError(f"erase.area_min: must be <= area_max, got {vals['area_min']} > "
                             f"{vals['area_max']}")
        out[n] = vals
    return out


def check_augment(augment: str, augment_args: dict, layout, dp: bool = False) -> None:
    """Whether the chain applies to the data: ``layout`` is the input's kind (``"image"``,
    ``"signal"``, ``"tokens"``, ``"text"`` or None when unknown until loaded).

    Raises:
        ValueError: the first reason it does not (one line)."""
    names = parse_chain(augment)
    resolve_args(augment, augment_args)
    if sum(AUGMENTATIONS[n].mixes_labels for n in names) > 1:
        raise ValueError(f"at most one label-mixing augmentation in a chain, got {augment!r}")
    for n in names:
        s = AUGMENTATIONS[n]
        if layout in ("tokens", "text"):
            raise ValueError(f"{n} needs float inputs; the data are {layout}")
        if s.inputs == "image" and layout not in ("image", None):
            raise ValueError(f"{n} needs images [H, W, C]; the data are 1-D {layout}s"
                             + (" (mixup applies to any float input)" if s.mixes_labels else ""))
        if dp and s.mixes_labels:
            raise ValueError(f"{n} mixes examples across the batch, which DP-SGD's per-example "
                             f"clipping (train.dp.enabled) does not allow")


# Declared into the config mechanism: each augmentation with its spec as capabilities (its
# fields are {name: (default, low, high)} under train.augment_args), and the checks validation asks.
for _name, _spec in AUGMENTATIONS.items():
    AUGMENT.register(_name, None, builder=f"jaxmem.train.augment:{_spec.builder}", capabilities=_spec,
                     doc=_spec.doc)
provide("train.augment.parse_chain", parse_chain)
provide("train.augment.resolve_args", resolve_args)
provide("train.augment.check", check_augment)
