"""Typed run configuration, validated at the door.

A run is described by one :class:`Config` (nested dataclasses). It is read from a TOML file under
``experiments/`` (or the built-in default, the digits experiment), updated by dotted overrides
(``--set train.learning_rate=0.01``), validated field by field, and saved as ``config.json`` in
the run directory. A bad value raises :class:`ConfigError` naming the field, before any work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Config", "ConfigError", "load_config", "from_dict", "to_dict", "apply_overrides",
           "variant_configs"]


class ConfigError(ValueError):
    """A configuration problem; the message names the field."""


@dataclass
class DataConfig:
    source: str = "digits"          # digits | digits_tokens | mnist1d | tfds:NAME
    data_dir: typing.Optional[str] = None
    label_noise: float = 0.0        # fraction of train labels flipped to another class
    noise_seed: int = 0
    duplicates: int = 0             # number of train examples duplicated ...
    duplicate_copies: int = 1       # ... this many extra times each
    canaries: int = 0               # inserted canaries (random-label or random-input examples)
    canary_kind: str = "random_label"
    long_tail_classes: typing.List[int] = field(default_factory=list)
    long_tail_fraction: float = 1.0  # fraction of the listed classes' train examples kept
    max_train: int = 0              # 0 = all; else the first max_train train examples (quick runs)
    max_test: int = 0


@dataclass
class SubsetConfig:
    design: str = "balanced"        # balanced | bernoulli | ratio | leave_k_out | leave_group_out
    num_models: int = 64
    pkeep: float = 0.5
    ratios: typing.List[float] = field(default_factory=lambda: [0.7])
    k: int = 1


@dataclass
class ModelConfig:
    name: str = "mlp"               # mlp | cnn | resnet_airbench | wrn | transformer
    hidden: typing.List[int] = field(default_factory=lambda: [256])
    channels: typing.List[int] = field(default_factory=lambda: [32, 64])
    batch_norm: bool = False
    dropout: float = 0.0
    depth: int = 16
    width: int = 4
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    bn_momentum: float = 0.9        # BatchNorm running-statistics decay (PyTorch: 1 - momentum)
    bn_eps: float = 1e-5
    whiten: bool = False            # resnet_airbench: stem = frozen patch whitening of own data


# Which ModelConfig fields each model takes (others are ignored for that model).
MODEL_FIELDS = {
    "mlp": ("hidden", "dropout"),
    "cnn": ("channels", "batch_norm", "dropout", "bn_momentum", "bn_eps"),
    "resnet_airbench": ("bn_momentum", "bn_eps"),
    "wrn": ("depth", "width", "dropout", "bn_momentum", "bn_eps"),
    "transformer": ("d_model", "num_layers", "num_heads", "dropout"),
}


@dataclass
class DPConfig:
    enabled: bool = False
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5


@dataclass
class TrainConfig:
    optimizer: str = "adam"         # adam | adamw | sgd | nesterov
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"      # constant | cosine | linear_warmup_cosine | triangle
    warmup_epochs: float = 0.0      # (triangle: where the peak is)
    schedule_start: float = 0.0     # triangle: factor at the first step ...
    schedule_end: float = 0.0       # ... and at the last
    bias_lr_scale: float = 1.0      # BatchNorm biases: learning rate x this, weight decay / this
    whiten_bias_epochs: float = 0.0  # resnet_airbench: train the stem bias this long (0 = always)
    lookahead_every: int = 0        # airbench lookahead/EMA every n steps (0 = off) ...
    lookahead_start_epochs: int = 3  # ... from this epoch on ...
    lookahead_decay: float = 0.95   # ... with decay decay**every * (step / total)**pow
    lookahead_pow: float = 3.0
    batch_size: int = 128
    epochs: float = 20.0
    label_smoothing: float = 0.0
    augment: str = "none"           # none | flip | crop | flip_crop | altflip | altflip_crop
    dp: DPConfig = field(default_factory=DPConfig)
    record_forgetting: bool = False  # per-epoch correctness on every train example
    chunk_size: int = 0             # models per jitted call; 0 = choose automatically
    vmap_size: int = 0              # models vmapped together inside a chunk (lax.map); 0 = auto
    step_loop: str = "auto"         # scan | host (a jitted call per step) | auto: host for CNNs on CPU
    compute_dtype: str = "float32"  # float32 | bfloat16 (params stay float32)
    checkpoint_every: int = 0       # epochs between mid-chunk checkpoints; 0 = only per chunk


@dataclass
class SignalsConfig:
    queries: typing.List[str] = field(default_factory=lambda: ["identity"])  # identity, flip, shift±k
    dtype: str = "float32"          # float32 | float16
    batch_size: int = 1024


@dataclass
class RMIAConfig:
    """RMIA's options (Zarifzadeh et al. 2024; jaxmem.attacks.rmia). The defaults are ML Privacy
    Meter's; the authors' research code (CIFAR-10) is signal = "taylor_soft_margin",
    temperature = 2, aggregate = "vote", trim = 0.2, gamma = 2, a = 0.33."""

    signal: str = "softmax"         # softmax | taylor_soft_margin: p(x) of the true label
    temperature: float = 1.0        # logits divided by T first
    margin: float = 0.6             # taylor_soft_margin: soft margin m on the true class
    order: int = 4                  # taylor_soft_margin: terms of the Taylor series of exp
    aggregate: str = "mean"         # mean: identity query | vote: majority over signals.queries
    trim: float = 0.0               # trimmed means over reference models (fraction per end)
    gamma: float = 1.0              # likelihood-ratio threshold
    a: typing.Optional[float] = None  # offline coefficient; None = tuned once on a reference model


@dataclass
class ScoringConfig:
    attacks: typing.List[str] = field(default_factory=lambda: ["lira_online", "lira_offline",
                                                              "lira_online_fixed_variance",
                                                              "global_threshold"])
    targets: int = 0                # 0 = every model takes its turn as the target; else the first K
    influence_top_k: int = 0        # >0: the k most influential training examples of each test example
    rmia: RMIAConfig = field(default_factory=RMIAConfig)


@dataclass
class ExperimentConfig:
    """What an experiment file adds to a single run: variants (a sweep) and an analysis."""

    kind: str = "default"           # the analysis run after training (jaxmem.experiments)
    variants: typing.List[typing.List[str]] = field(default_factory=list)  # overrides per variant
    variant_names: typing.List[str] = field(default_factory=list)
    full: bool = False              # apply full_overrides (the faithful, accelerator-sized variant)
    full_overrides: typing.List[str] = field(default_factory=list)
    params: typing.Dict[str, typing.Any] = field(default_factory=dict)  # the analysis' parameters


@dataclass
class Config:
    name: str = "digits"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    subsets: SubsetConfig = field(default_factory=SubsetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)


# The attack names of jaxmem.attacks.evaluate (kept in sync by a test; config imports no jax).
ATTACKS = ("lira_online", "lira_online_fixed_variance", "lira_offline",
           "lira_offline_fixed_variance", "global_threshold", "loss", "rmia_offline", "rmia_online")

_CHOICES = {
    "subsets.design": {"balanced", "bernoulli", "ratio", "leave_k_out", "leave_group_out"},
    "model.name": set(MODEL_FIELDS),
    "train.optimizer": {"adam", "adamw", "sgd", "nesterov"},
    "train.schedule": {"constant", "cosine", "linear_warmup_cosine", "triangle"},
    "train.augment": {"none", "flip", "crop", "flip_crop", "altflip", "altflip_crop"},
    "train.compute_dtype": {"float32", "bfloat16"},
    "train.step_loop": {"auto", "scan", "host"},
    "signals.dtype": {"float32", "float16"},
    "scoring.rmia.signal": {"softmax", "taylor_soft_margin"},
    "scoring.rmia.aggregate": {"mean", "vote"},
    "data.canary_kind": {"random_label", "random_input"},
}


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


def from_dict(d, cls=Config, path: str = ""):
    """Build a (nested) config dataclass from a dict, rejecting unknown keys and wrong types."""
    if not isinstance(d, dict):
        raise ConfigError(f"{path or 'config'}: expected a table/dict, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in d:
        if key not in names:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(names))})")
    kwargs = {k: _check_value(f"{path}.{k}" if path else k, v, hints[k]) for k, v in d.items()}
    obj = cls(**kwargs)
    if cls is Config:
        validate(obj)
    return obj


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _positive(path, v, strict=True):
    if (v <= 0) if strict else (v < 0):
        raise ConfigError(f"{path}: must be {'> 0' if strict else '>= 0'}, got {v}")


def validate(cfg: Config) -> None:
    """Range and consistency checks; raises ConfigError naming the field."""
    flat = _flatten(to_dict(cfg))
    for key, allowed in _CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}: must be one of {sorted(allowed)}, got {flat[key]!r}")
    s, t, d = cfg.subsets, cfg.train, cfg.data
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed: must be in [0, 2**32), got {cfg.seed}")
    for a in cfg.scoring.attacks:
        if a not in ATTACKS:
            raise ConfigError(f"scoring.attacks: unknown attack {a!r} (choose from {', '.join(ATTACKS)})")
    if not cfg.signals.queries:
        raise ConfigError('signals.queries: needs at least one query (e.g. ["identity"])')
    if not 0.0 < s.pkeep < 1.0:
        raise ConfigError(f"subsets.pkeep: must be in (0, 1), got {s.pkeep}")
    for i, r in enumerate(s.ratios):
        if not 0.0 < r < 1.0:
            raise ConfigError(f"subsets.ratios[{i}]: must be in (0, 1), got {r}")
    if s.num_models < 1:
        raise ConfigError(f"subsets.num_models: must be >= 1, got {s.num_models}")
    if cfg.scoring.attacks and s.num_models < 3:
        raise ConfigError(f"subsets.num_models: attacks need >= 3 models (a target and shadows "
                          f"with and without each example), got {s.num_models}")
    if s.design == "ratio" and len(s.ratios) > 1 and s.num_models % len(s.ratios):
        raise ConfigError(f"subsets.num_models: must be a multiple of len(subsets.ratios)="
                          f"{len(s.ratios)}, got {s.num_models}")
    _positive("train.learning_rate", t.learning_rate)
    _positive("train.batch_size", t.batch_size)
    _positive("train.epochs", t.epochs)
    _positive("train.weight_decay", t.weight_decay, strict=False)
    _positive("train.chunk_size", t.chunk_size, strict=False)
    _positive("train.vmap_size", t.vmap_size, strict=False)
    _positive("train.checkpoint_every", t.checkpoint_every, strict=False)
    _positive("train.warmup_epochs", t.warmup_epochs, strict=False)
    _positive("signals.batch_size", cfg.signals.batch_size)
    if not 0.0 <= t.momentum < 1.0:
        raise ConfigError(f"train.momentum: must be in [0, 1), got {t.momentum}")
    _positive("train.schedule_start", t.schedule_start, strict=False)
    _positive("train.schedule_end", t.schedule_end, strict=False)
    _positive("train.bias_lr_scale", t.bias_lr_scale)
    _positive("train.whiten_bias_epochs", t.whiten_bias_epochs, strict=False)
    _positive("train.lookahead_every", t.lookahead_every, strict=False)
    _positive("train.lookahead_start_epochs", t.lookahead_start_epochs, strict=False)
    _positive("train.lookahead_pow", t.lookahead_pow, strict=False)
    if not 0.0 < t.lookahead_decay <= 1.0:
        raise ConfigError(f"train.lookahead_decay: must be in (0, 1], got {t.lookahead_decay}")
    if t.schedule == "triangle" and not 0.0 < t.warmup_epochs < t.epochs:
        raise ConfigError(f"train.warmup_epochs: the triangle schedule peaks there; must be in "
                          f"(0, train.epochs={t.epochs}), got {t.warmup_epochs}")
    m = cfg.model
    if not 0.0 <= m.bn_momentum < 1.0:
        raise ConfigError(f"model.bn_momentum: must be in [0, 1), got {m.bn_momentum}")
    _positive("model.bn_eps", m.bn_eps)
    if m.dropout and "dropout" not in MODEL_FIELDS[m.name]:
        raise ConfigError(f"model.dropout: model {m.name!r} has no dropout layers (models with "
                          f"dropout: {', '.join(k for k, v in MODEL_FIELDS.items() if 'dropout' in v)})")
    if m.batch_norm and "batch_norm" not in MODEL_FIELDS[m.name]:
        raise ConfigError(f"model.batch_norm: only the cnn's BatchNorm can be switched, "
                          f"model.name is {m.name!r}")
    if m.whiten and m.name != "resnet_airbench":
        raise ConfigError(f"model.whiten: only the resnet_airbench stem can be whitened, "
                          f"model.name is {m.name!r}")
    if t.whiten_bias_epochs and m.name != "resnet_airbench":
        raise ConfigError(f"train.whiten_bias_epochs: only for resnet_airbench's stem, "
                          f"model.name is {m.name!r}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing: must be in [0, 1), got {t.label_smoothing}")
    if t.dp.enabled:
        if cfg.model.name in ("resnet_airbench", "wrn") or (cfg.model.name == "cnn" and
                                                            cfg.model.batch_norm):
            raise ConfigError(f"train.dp.enabled: DP-SGD needs per-example gradients, which "
                              f"BatchNorm does not allow; model {cfg.model.name!r} uses it")
        _positive("train.dp.clip_norm", t.dp.clip_norm)
        _positive("train.dp.noise_multiplier", t.dp.noise_multiplier, strict=False)
        if not 0.0 < t.dp.delta < 1.0:
            raise ConfigError(f"train.dp.delta: must be in (0, 1), got {t.dp.delta}")
    if not 0.0 <= cfg.model.dropout < 1.0:
        raise ConfigError(f"model.dropout: must be in [0, 1), got {cfg.model.dropout}")
    if not 0.0 <= d.label_noise < 1.0:
        raise ConfigError(f"data.label_noise: must be in [0, 1), got {d.label_noise}")
    if not 0.0 < d.long_tail_fraction <= 1.0:
        raise ConfigError(f"data.long_tail_fraction: must be in (0, 1], got {d.long_tail_fraction}")
    for key in ("duplicates", "canaries", "max_train", "max_test"):
        _positive(f"data.{key}", getattr(d, key), strict=False)
    _positive("data.duplicate_copies", d.duplicate_copies)
    if not (d.source in ("digits", "digits_tokens", "mnist1d") or d.source.startswith("tfds:")
            or d.source.startswith("external:")):
        raise ConfigError(f"data.source: must be digits, digits_tokens, mnist1d or tfds:NAME, "
                          f"got {d.source!r}")
    if cfg.scoring.targets < 0 or cfg.scoring.targets > s.num_models:
        raise ConfigError(f"scoring.targets: must be in [0, num_models], got {cfg.scoring.targets}")
    if cfg.scoring.influence_top_k < 0:
        raise ConfigError(f"scoring.influence_top_k: must be >= 0, got {cfg.scoring.influence_top_k}")
    r = cfg.scoring.rmia
    _positive("scoring.rmia.temperature", r.temperature)
    _positive("scoring.rmia.gamma", r.gamma)
    _positive("scoring.rmia.margin", r.margin, strict=False)
    if r.order < 2:
        raise ConfigError(f"scoring.rmia.order: must be >= 2 terms, got {r.order}")
    if not 0.0 <= r.trim < 0.5:
        raise ConfigError(f"scoring.rmia.trim: must be in [0, 0.5), got {r.trim}")
    if r.a is not None and not 0.0 <= r.a <= 1.0:
        raise ConfigError(f"scoring.rmia.a: must be in [0, 1] (or unset to tune it), got {r.a}")
    if any(h <= 0 for h in cfg.model.hidden) or any(c <= 0 for c in cfg.model.channels):
        raise ConfigError("model.hidden/model.channels: layer sizes must be > 0")
    for q in cfg.signals.queries:
        if q not in ("identity", "flip") and not (q.startswith("shift") and _is_shift(q)):
            raise ConfigError(f"signals.queries: unknown query {q!r} (identity, flip, shift:DX,DY)")


def _is_shift(q: str) -> bool:
    try:
        dx, dy = q.split(":", 1)[1].split(",")
        int(dx), int(dy)
        return True
    except (ValueError, IndexError):
        return False


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def apply_overrides(d: dict, overrides) -> dict:
    """Apply ``key.sub=value`` overrides to a config dict (values parsed as JSON, else strings)."""
    d = json.loads(json.dumps(d))
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = d
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {p} is not a table")
        node[parts[-1]] = _parse_value(text)
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


def resolve_experiment(name: typing.Optional[str]) -> typing.Optional[Path]:
    """An experiment name or path → the TOML file (``experiments/NAME.toml``); None = default."""
    if name is None:
        return None
    p = Path(name)
    candidates = [p, Path("experiments") / p, Path("experiments") / f"{name}.toml",
                  Path(__file__).resolve().parent.parent / "experiments" / f"{name}.toml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"experiment {name!r}: no such file (looked for {', '.join(map(str, candidates))})")


def load_config(experiment: typing.Optional[str] = None, overrides=()) -> Config:
    """Read an experiment file (or the default digits config), apply overrides, validate."""
    path = resolve_experiment(experiment)
    base = _read_toml(path) if path is not None else {}
    d = apply_overrides(base, overrides)
    cfg = from_dict(d)
    if cfg.experiment.full and cfg.experiment.full_overrides:
        # The full variant: the file's full_overrides first, then the user's own overrides again.
        d = apply_overrides(apply_overrides(base, cfg.experiment.full_overrides), overrides)
        cfg = from_dict(d)
    return cfg


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
