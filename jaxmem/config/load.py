"""Reading a config: TOML experiment files (with includes), dotted overrides, dicts, variants.

A run is described by one :class:`~jaxmem.config.schema.Config`. It is read from a TOML file under
``experiments/`` (or the built-in default, the digits experiment), updated by dotted overrides
(``--set train.learning_rate=0.01``), validated field by field
(:func:`jaxmem.config.validate.validate`), and saved as ``config.json`` in the run directory. A
bad value raises :class:`ConfigError` naming the field, before any work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

from jaxmem.config.registry import Choice, choice_paths
from jaxmem.config.schema import Config, ConfigError, flatten, to_dict
from jaxmem.config.validate import validate

__all__ = ["ConfigError", "from_dict", "upgrade_stored", "to_dict", "apply_overrides", "load_config",
           "read_experiment", "resolve_experiment", "variant_configs", "flatten"]


def _check_value(path: str, value, tp):
    """Check ``value`` against the annotation ``tp`` and return it (ints promoted to floats)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_value(path, value, args[0])
    if origin in (dict, typing.Dict):
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{path}: expected a table with string keys, got {value!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: values must be plain numbers, strings, lists or tables") from None
        return dict(value)
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        (inner,) = typing.get_args(tp)
        return [_check_value(f"{path}[{i}]", v, inner) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(value, tp, path)
    raise TypeError(f"unsupported annotation {tp} at {path}")


#: Fields of the config before choices held their own fields (issue #20): where each went.
_MOVED = {
    "train.momentum": ("train.optimizer", "momentum", ("sgd", "nesterov")),
    "train.warmup_epochs": ("train.schedule", "warmup_epochs", ("linear_warmup_cosine", "triangle")),
    "train.schedule_start": ("train.schedule", "start", ("triangle",)),
    "train.schedule_end": ("train.schedule", "end", ("triangle",)),
    "train.whiten_bias_epochs": ("model", "whiten_bias_epochs", ("resnet_airbench",)),
    "train.lookahead_every": ("train.lookahead", "every", ("ema",)),
    "train.lookahead_start_epochs": ("train.lookahead", "start_epochs", ("ema",)),
    "train.lookahead_decay": ("train.lookahead", "decay", ("ema",)),
    "train.lookahead_pow": ("train.lookahead", "pow", ("ema",)),
    "subsets.pkeep": ("subsets.design", "pkeep", ("balanced", "bernoulli", "leave_group_out", "replica")),
    "subsets.ratios": ("subsets.design", "ratios", ("ratio",)),
    "subsets.k": ("subsets.design", "k", ("leave_k_out",)),
    "subsets.replicas": ("subsets.design", "replicas", ("replica",)),
}


def _name_of(value, reg) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("name", reg.default)
    return getattr(value, "name", reg.default)


def _moved_hint(where: str, value, d: dict) -> str:
    """The one-line error for an old-style field (``train.momentum``): where it lives now."""
    path, new, names = _MOVED[where]
    reg = choice_paths()[path]
    name = _name_of(d.get(path.split(".")[-1]), reg)
    name = name if name in names else names[0]
    v = json.dumps(value)
    return (f"{where}: moved into the {reg.kind} (a field of {' / '.join(names)}); write "
            f"[{path}] name = \"{name}\", {new} = {v} (or --set {path}.{new}={v})")


def _choice(path: str, value, reg):
    """The config of a choice from its table ``{name, fields...}``, a bare name (its defaults),
    or a config object; fields that the chosen entry does not have are refused."""
    if isinstance(value, Choice):
        value = dataclasses.asdict(value)
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a {reg.kind} name or a table with its name and fields, "
                          f"got {value!r}")
    name = value.get("name", reg.default)
    if not isinstance(name, str):
        raise ConfigError(f"{path}.name: expected a string, got {name!r}")
    cls = reg.get(name, f"{path}.name").config
    own = cls.field_names()
    for key in value:
        if key != "name" and key not in own:
            elsewhere = [n for n in reg if key in reg.fields(n)]
            raise ConfigError(f"{path}.{key}: not a field of {reg.kind} {name!r} "
                              f"({'its fields: ' + ', '.join(own) if own else 'it has no fields'})"
                              + (f"; {key} is a field of {' / '.join(elsewhere)}" if elsewhere else ""))
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_value(f"{path}.{k}", v, hints[k]) for k, v in value.items() if k != "name"}
    return cls(name=name, **kwargs)


def upgrade_stored(d: dict) -> dict:
    """A ``config.json`` written before issue #20 (every model field of every family side by
    side, ``train.momentum``, ``train.schedule`` a name, ``subsets.pkeep``...) in today's form:
    each choice keeps its own fields. Only a stored config (one holding every old model field)
    is upgraded; a user's old-style file gets a one-line error instead (:data:`_MOVED`)."""
    m = d.get("model")
    if not (isinstance(m, dict) and {"hidden", "channels", "depth", "d_model"} <= set(m)):
        return d
    d = json.loads(json.dumps(d))
    regs = choice_paths()
    reg = regs["model"]
    d["model"] = {k: v for k, v in m.items() if k == "name" or k in reg.fields(m.get("name", reg.default))}
    t = d.setdefault("train", {})
    if "whiten_bias_epochs" in t:
        wbe = t.pop("whiten_bias_epochs")
        if "whiten_bias_epochs" in reg.fields(d["model"].get("name", reg.default)):
            d["model"]["whiten_bias_epochs"] = wbe
    if "lookahead_every" in t:
        t["lookahead"] = "ema" if t["lookahead_every"] else "none"
    for table, key in (("train", "optimizer"), ("train", "schedule"), ("train", "lookahead"),
                       ("subsets", "design")):
        t = d.get(table, {})
        reg = regs[f"{table}.{key}"]
        name = t.get(key, reg.default)
        new = {"name": name}
        for old, (path, field, names) in _MOVED.items():
            if path == f"{table}.{key}" and old.split(".")[1] in t:
                v = t.pop(old.split(".")[1])
                if name in names and name in reg and field in reg.fields(name):
                    new[field] = v
        t[key] = new
    return d


def from_dict(d, cls=Config, path: str = ""):
    """Build a (nested) config dataclass from a dict, rejecting unknown keys and wrong types.

    A choice (``model``, ``train.optimizer``, ``train.schedule``, ``subsets.design``) is read
    by its registry: its own fields only. A ``config.json`` stored before choices held their own
    fields is upgraded; a user's old-style field gets a one-line error saying how to write it now.

    Raises:
      ConfigError: the first problem, naming the field.
    """
    if not isinstance(d, dict):
        raise ConfigError(f"{path or 'config'}: expected a table/dict, got {d!r}")
    if cls is Config:
        d = upgrade_stored(d)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in names:
            where = f"{path}.{key}" if path else key
            if where in _MOVED:
                raise ConfigError(_moved_hint(where, d[key], d))
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    choices = choice_paths()
    kwargs = {}
    for k, v in d.items():
        where = f"{path}.{k}" if path else k
        kwargs[k] = (_choice(where, v, choices[where]) if where in choices
                     else _check_value(where, v, hints[k]))
    obj = cls(**kwargs)
    if cls is Config:
        validate(obj)
    return obj


def _json_hint(key: str, text: str) -> str:
    """``--set 'key=VALUE'`` with the bare words of ``text`` in double quotes (the JSON spelling
    of what was probably meant)."""
    import re

    fixed = re.sub(r'(?<!")\b([A-Za-z_][\w:./-]*)\b(?!")',
                   lambda m: m.group(1) if m.group(1) in ("true", "false", "null") else f'"{m.group(1)}"',
                   text)
    return f"--set '{key}={fixed}'"


def _parse_value(text: str, key: str = "KEY"):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if text.strip()[:1] in "[{":
            raise ConfigError(f"--set {key}={text}: not valid JSON (--set values are JSON: strings "
                              f"inside lists and tables need double quotes, and the shell needs "
                              f"the whole argument quoted: {_json_hint(key, text)})") from None
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def _switch(table: dict, name, reg) -> None:
    """Choosing ``name`` in a choice's ``table``: the fields of the old choice that ``name``
    lacks are dropped (``--set model.name=cnn`` after an mlp drops ``hidden``)."""
    if isinstance(name, str) and name in reg and table.get("name", reg.default) != name:
        keep = set(reg.fields(name))
        for k in [k for k in table if k != "name" and k not in keep]:
            del table[k]


def apply_overrides(d: dict, overrides) -> dict:
    """Apply ``key.sub=value`` overrides to a config dict (values parsed as JSON, else strings).

    A choice's ``name`` switches the choice (the old one's fields that the new one lacks are
    dropped); a choice given by its bare name (``train.optimizer = "sgd"``) takes a field
    (``train.optimizer.momentum=0.8``) as ``{name, field}``."""
    d = json.loads(json.dumps(d))
    choices = choice_paths()
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for i, p in enumerate(parts[:-1]):
            if isinstance(node.get(p), str) and ".".join(parts[: i + 1]) in choices:
                node[p] = {"name": node[p]}
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {p} is not a table")
        value = _parse_value(text, key.strip())
        parent = ".".join(parts[:-1])
        if parts[-1] == "name" and parent in choices:
            _switch(node, value, choices[parent])
        node[parts[-1]] = value
    return d


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text: byte {e.object[e.start]:#04x} "
                          f"at offset {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None


def _experiment_dirs() -> list:
    """Where experiment files are looked up by name: ``./experiments``, the files shipped inside
    the installed package (``jaxmem.experiments``, the repository's ``experiments/`` folder
    mapped into the wheel), and the source checkout's ``experiments/``."""
    dirs = [Path("experiments")]
    try:
        from importlib.resources import files

        dirs.append(Path(str(files("jaxmem.experiments"))))
    except (ImportError, TypeError):   # a source checkout without the mapping
        pass
    dirs.append(Path(__file__).resolve().parent.parent.parent / "experiments")
    return dirs


def resolve_experiment(name: typing.Optional[str]) -> typing.Optional[Path]:
    """An experiment name or path → the TOML file (``experiments/NAME.toml``); None = default."""
    if name is None:
        return None
    p = Path(name)
    candidates = [p] + [d / c for d in _experiment_dirs() for c in (p, Path(f"{name}.toml"))]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"experiment {name!r}: no such file (looked for {', '.join(map(str, candidates))})")


def _merge(base: dict, top: dict, path: str = "") -> dict:
    """``top`` over ``base``, table by table (nested dicts merged, other values replaced). A
    choice's table naming another choice drops the old choice's fields that the new one lacks;
    a bare name under a table is read as ``{name}``."""
    out = dict(base)
    choices = choice_paths()
    for k, v in top.items():
        where = f"{path}.{k}" if path else k
        if where in choices and isinstance(v, dict) and isinstance(out.get(k), str):
            out[k] = {"name": out[k]}
        if where in choices and isinstance(v, dict) and isinstance(out.get(k), dict) and "name" in v:
            out[k] = dict(out[k])
            _switch(out[k], v["name"], choices[where])
        out[k] = (_merge(out[k], v, where) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else v)
    return out


def _includes(d: dict, key: str, where: Path) -> list:
    """The files named by ``d[key]`` (a path or a list of paths relative to ``where``)."""
    names = d.pop(key, [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{key}: expected a file name or a list of file names, got {names!r}")
    return [where / n for n in names]


def read_experiment(path: Path, seen=()) -> tuple:
    """Read an experiment file and resolve its includes: ``(table, full_tables)``.

    ``include = ["presets/airbench94.toml"]`` (top level; paths relative to the including file)
    reads those files first and lays this file's tables over them, table by table.
    ``[experiment] full_include = [...]`` names files laid over the config only in the full
    variant (``experiment.full = true``), before ``experiment.full_overrides``. Both keys are
    read here and are not part of the resolved config.
    """
    path = Path(path)
    if path.resolve() in seen:
        raise ConfigError(f"{path}: includes itself")
    seen = seen + (path.resolve(),)
    d = _read_toml(path)
    base: dict = {}
    for inc in _includes(d, "include", path.parent):
        if not inc.is_file():
            raise ConfigError(f"{path}: include {inc}: no such file")
        base = _merge(base, read_experiment(inc, seen)[0])
    full = [read_experiment(f, seen)[0] if f.is_file() else _missing(path, f)
            for f in _includes(d.get("experiment", {}), "full_include", path.parent)]
    return _merge(base, d), full


def _missing(path, f):
    raise ConfigError(f"{path}: experiment.full_include {f}: no such file")


def load_config(experiment: typing.Optional[str] = None, overrides=()) -> Config:
    """Read an experiment file (or the default digits config), apply overrides, validate."""
    path = resolve_experiment(experiment)
    base, full = read_experiment(path) if path is not None else ({}, [])
    d = apply_overrides(base, overrides)
    try:
        cfg = from_dict(d)
    except ConfigError as e:
        raise _with_set_hint(e, overrides) from None
    if cfg.experiment.full and (cfg.experiment.full_overrides or full):
        # The full variant: the full_include files and the file's full_overrides first, then the
        # user's own overrides again.
        for f in full:
            base = _merge(base, f)
        d = apply_overrides(apply_overrides(base, cfg.experiment.full_overrides), overrides)
        cfg = from_dict(d)
    return cfg


def _with_set_hint(err: ConfigError, overrides) -> ConfigError:
    """A type error in a value given with --set: say that --set values are JSON, and how the
    value is spelled in JSON."""
    msg = str(err)
    for item in overrides or ():
        key, _, text = item.partition("=")
        key = key.strip()
        if msg.startswith(f"{key}:") and "expected" in msg:
            hint = (_json_hint(key, text) if not text.strip().startswith(('"', "[", "{"))
                    or "got str" in msg else None)
            if "expected a string" in msg:
                hint = f"--set '{key}=\"{text}\"'"
            elif "expected a list" in msg and not text.strip().startswith("["):
                hint = _json_hint(key, f"[{text}]")
            if hint:
                return ConfigError(f"{msg} (--set values are JSON: {hint})")
    return err


def variant_configs(cfg: Config):
    """``[(name, Config)]`` for an experiment's variants (``[("main", cfg)]`` without any)."""
    e = cfg.experiment
    if not e.variants:
        return [("main", cfg)]
    names = e.variant_names or [f"v{i}" for i in range(len(e.variants))]
    if len(names) != len(e.variants):
        raise ConfigError("experiment.variant_names: must have one name per variant")
    base = to_dict(cfg)
    base["experiment"] = {**base["experiment"], "variants": [], "variant_names": []}
    out = []
    for name, ov in zip(names, e.variants):
        try:
            out.append((name, from_dict(apply_overrides(base, ov))))
        except ConfigError as err:
            raise ConfigError(f"experiment.variants[{name}]: {err}") from None
    return out

