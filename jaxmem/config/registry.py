"""Choices declared once: a registry per kind of choice (model family, optimizer, schedule, subset
design, augmentation, attack, analysis), each entry its name, its config class (its fields and
their defaults), its builder and its capabilities.

This module sits at the bottom of the package graph and imports nothing else of jaxmem: the
packages that own the choices fill the registries from their light registry modules
(``jaxmem.models.registry``, ``jaxmem.train.choices``, ``jaxmem.subsets``, ...), which the root
``jaxmem/__init__.py`` imports when a registry is first read (:func:`on_first_use`), so that
``import jaxmem.estimators`` alone still pulls in no training code.

A config names the choice and holds only that choice's fields::

    [model]                     # Config.model is an MLPConfig: name + its fields
    name = "mlp"
    hidden = [256]

    [train]
    optimizer = "adam"          # shorthand: the choice with its defaults
    [train.schedule]
    name = "triangle"
    warmup_epochs = 2.3

Adding a choice = one config class (a frozen dataclass deriving :class:`Choice`, ranges in
``check``) plus one :meth:`Registry.register` call beside the code that builds it.

Cross-choice checks that need a package's functions (does a data source exist, does a query
parse) are provided by the owning package (:func:`provide`) and asked for by validation
(:func:`provided`), so that config imports none of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional

__all__ = ["ConfigError", "Choice", "Entry", "Registry", "MODEL", "OPTIMIZER",
           "SCHEDULE", "LOOKAHEAD", "DESIGN", "AUGMENT", "ATTACK", "ANALYSIS", "choice_paths", "provide",
           "provided", "resolve", "on_first_use"]


class ConfigError(ValueError):
    """A configuration problem; the message names the field."""


@dataclass(frozen=True)
class Choice:
    """Base of a per-choice config class: ``name`` (the registered name) and, in subclasses,
    the choice's own fields with their defaults. ``check(path)`` raises :class:`ConfigError`
    naming ``path.FIELD`` for a value out of range."""

    name: str = ""

    def __post_init__(self):
        if not self.name and getattr(type(self), "_choice_name", None):
            object.__setattr__(self, "name", type(self)._choice_name)

    def check(self, path: str) -> None:
        """Ranges of this choice's fields (override); ``path`` is where it sits (``model``)."""

    def describe(self) -> str:
        """``name (field=value, ...)``, or the bare name of a choice without fields."""
        own = ", ".join(f"{f}={getattr(self, f)}" for f in self.field_names())
        return f"{self.name} ({own})" if own else self.name

    @classmethod
    def field_names(cls) -> tuple:
        """The choice's own fields (``name`` excluded)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "name")


class Entry(NamedTuple):
    """One registered choice: ``config`` (a :class:`Choice` subclass, or None for choices without
    fields of their own in the config, e.g. attacks), ``builder`` (a callable or a
    ``"module:attr"`` string imported when first used), ``capabilities`` (any object the owning
    package reads, e.g. :class:`jaxmem.models.registry.ModelSpec`), ``doc``."""

    name: str
    config: Optional[type]
    builder: Any = None
    capabilities: Any = None
    doc: str = ""


_FILLERS: list = []
_FILLED = [False]


def on_first_use(fill: Callable[[], None]) -> None:
    """Call ``fill`` (it imports the modules that register choices) before any registry is first
    read; the root package ``jaxmem`` passes the list of its light registry modules."""
    _FILLERS.append(fill)
    if _FILLED[0]:
        fill()


def _fill() -> None:
    if not _FILLED[0]:
        _FILLED[0] = True
        for fill in list(_FILLERS):
            fill()


def resolve(builder):
    """A builder: a callable as is, or ``"module:attr"`` imported."""
    if isinstance(builder, str):
        mod, _, attr = builder.partition(":")
        return getattr(importlib.import_module(mod), attr)
    return builder


class Registry:
    """The choices of one kind. ``kind``: what a choice is called in messages (``model``);
    ``path``: the config field that names it (``model``, ``train.optimizer``; None for choices
    named elsewhere, e.g. a list of attacks); ``default``: the choice a config takes by default."""

    def __init__(self, kind: str, path: Optional[str] = None, default: Optional[str] = None):
        self.kind, self.path, self.default = kind, path, default
        self.entries: dict[str, Entry] = {}

    def __contains__(self, name) -> bool:
        _fill()
        return name in self.entries

    def __iter__(self):
        _fill()
        return iter(self.entries)

    def names(self) -> tuple:
        _fill()
        return tuple(self.entries)

    def register(self, name: str, config_cls: Optional[type] = None, *, builder=None,
                 capabilities=None, doc: str = "", replace: bool = False) -> Entry:
        """Declare choice ``name``.

        Args:
          name: how a config names it.
          config_cls: its config class (a frozen :class:`Choice` subclass) or None.
          builder: what builds it (callable or ``"module:attr"``).
          capabilities: what the owning package reads about it.
          doc: one line.
          replace: allow re-registering ``name``.

        Returns:
          The :class:`Entry`.

        Raises:
          ValueError: ``name`` is taken (and not ``replace``), or ``config_cls`` is not a
            frozen dataclass deriving :class:`Choice`.
        """
        if name in self.entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is registered already")
        if config_cls is not None:
            if not (isinstance(config_cls, type) and issubclass(config_cls, Choice)
                    and dataclasses.is_dataclass(config_cls)
                    and config_cls.__dataclass_params__.frozen):
                raise ValueError(f"{self.kind} {name!r}: the config class must be a frozen dataclass "
                                 f"deriving jaxmem.config.registry.Choice")
            prev = config_cls.__dict__.get("_choice_name", name)
            config_cls._choice_name = name if prev == name else None   # shared: name it explicitly
        entry = Entry(name, config_cls, builder, capabilities, doc)
        self.entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a choice of their own)."""
        self.entries.pop(name, None)

    def get(self, name, field: Optional[str] = None) -> Entry:
        """The entry of ``name``.

        Raises:
          ConfigError: unknown name, naming ``field`` (default: the registry's path) and
            listing the choices.
        """
        _fill()
        if name not in self.entries:
            where = field or self.path or self.kind
            raise ConfigError(f"{where}: unknown {self.kind} {name!r} (choose from "
                              f"{', '.join(self.entries)})")
        return self.entries[name]

    def fields(self, name) -> tuple:
        e = self.get(name)
        return e.config.field_names() if e.config else ()

    def make(self, name: str, **fields) -> Choice:
        """The config of choice ``name`` with ``fields`` (others at their defaults)."""
        return self.get(name).config(name=name, **fields)

    def build(self, name: str):
        """The builder of ``name`` (imported when a string)."""
        return resolve(self.get(name).builder)

    def default_factory(self) -> Callable[[], Choice]:
        """For a dataclass field holding this registry's choice: its default choice."""
        return lambda: self.make(self.default)


MODEL = Registry("model", "model", default="mlp")
OPTIMIZER = Registry("optimizer", "train.optimizer", default="adam")
SCHEDULE = Registry("schedule", "train.schedule", default="constant")
LOOKAHEAD = Registry("lookahead", "train.lookahead", default="none")
DESIGN = Registry("design", "subsets.design", default="balanced")
AUGMENT = Registry("augmentation", "train.augment")
ATTACK = Registry("attack", "scoring.attacks")
ANALYSIS = Registry("analysis", "experiment.kind", default="default")


def choice_paths() -> dict:
    """``{config path: registry}`` of the choices that sit in the config as a table with a
    ``name`` (``model``, ``train.optimizer``, ``train.schedule``, ``train.lookahead``,
    ``subsets.design``)."""
    return {r.path: r for r in (MODEL, OPTIMIZER, SCHEDULE, LOOKAHEAD, DESIGN)}


_PROVIDED: dict[str, Any] = {}


def provide(key: str, obj) -> None:
    """Offer ``obj`` (a function or a table) under ``key`` (``"data.check_source"``) for
    validation to ask for; the owning package calls this from its light registry module."""
    _PROVIDED[key] = obj


def provided(key: str):
    """What the owning package provided under ``key``.

    Raises:
      LookupError: nothing was provided (the owning module was not imported: ``import jaxmem``
        imports every registry module).
    """
    _fill()
    if key not in _PROVIDED:
        raise LookupError(f"{key}: not provided (import jaxmem first; its registry modules provide it)")
    return _PROVIDED[key]
