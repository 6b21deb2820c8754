"""The run configuration's schema: nested, frozen dataclasses (change one with
``dataclasses.replace``). Each table of a TOML experiment file (``[data]``, ``[train]``, ...) is
one of these; every field is a ``--set key=value`` key (``train.epochs``, ``model.hidden``).
A choice (``model``, ``train.optimizer``, ``train.schedule``, ``subsets.design``) is a table
``{name, <that choice's fields>}``: the config class registered under ``name`` in
:mod:`jaxmem.config.registry` (filled by the packages that own the choices), so that a field that
does not apply to the chosen family is refused at the door. What each name may be is checked
against the registries by :func:`jaxmem.config.validate.validate`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from jaxmem.config.registry import DESIGN, LOOKAHEAD, MODEL, OPTIMIZER, SCHEDULE, Choice, ConfigError

__all__ = ["ConfigError", "to_dict", "flatten", "Config", "DataConfig", "SubsetConfig", "Choice", "DPConfig", "TrainConfig",
           "RecordsConfig",
           "SignalsConfig", "RMIAConfig", "ScoringConfig", "ExperimentConfig"]


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"          # digits | digits_tokens | mnist1d | tfds:NAME | kjv | austen | python_text | text:PATH
    data_dir: typing.Optional[str] = None
    label_noise: float = 0.0        # fraction of train labels flipped to another class
    noise_seed: int = 0
    label_noise_kind: str = "uniform"  # uniform (any other class) | class_conditional (class c -> pi(c))
    duplicates: int = 0             # number of train examples duplicated ...
    duplicate_copies: int = 1       # ... this many extra times each
    canaries: int = 0               # inserted canaries (random-label or random-input examples)
    canary_kind: str = "random_label"  # random_label | random_input | secret (text: canaries per count)
    long_tail_classes: typing.List[int] = field(default_factory=list)
    long_tail_fraction: float = 1.0  # fraction of the listed classes' train examples kept
    max_train: int = 0              # 0 = all; else the first max_train train examples (quick runs)
    max_test: int = 0
    # text sources, for causal language models (jaxmem.data.text_build)
    tokenizer: str = "bytes"        # bytes | bpe (trained on the training texts) | gpt2
    bpe_vocab_size: int = 4096
    max_len: int = 128              # tokens per sequence, BOS and EOS included
    text_column: typing.Optional[str] = None  # text:FILE.tsv: the column holding the texts
    text_test_fraction: float = 0.05  # held out by text hash (copies of a text stay together)
    text_offset: int = 0            # skip this many training texts (file order) before max_train
    plant_counts: typing.List[int] = field(default_factory=list)  # planted duplicate counts ...
    plant_per_count: int = 0        # ... and texts planted at each count (Kandpal et al. 2022)
    canary_counts: typing.List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # secrets: insertions
    canary_references: int = 1000   # secrets: random reference secrets (exposure ranks among them)


@dataclass(frozen=True)
class SubsetConfig:
    # a design of jaxmem.subsets (balanced | bernoulli | ratio | leave_k_out | leave_group_out |
    # replica) with its own fields (pkeep, ratios, k, replicas): [subsets.design] name = ...
    design: typing.Any = field(default_factory=DESIGN.default_factory())
    num_models: int = 64


@dataclass(frozen=True)
class DPConfig:
    enabled: bool = False
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    delta: float = 1e-5


@dataclass(frozen=True)
class RecordsConfig:
    """Per-example training dynamics recorded by the trainer (jaxmem.train.records), stored with
    the run as NAME_by_epoch.npy [M, R, N]; epochs count from 1 (record "after epoch e")."""

    fields: typing.List[str] = field(default_factory=list)  # loss | margin | correct | p_true
    every: int = 1                  # ... after every k-th epoch (and after the last)
    dtype: str = "float32"          # float32 | float16: loss, margin, p_true on disk
    curvature_epochs: typing.List[int] = field(default_factory=list)  # input-loss curvature after these
    curvature_niter: int = 10       # Rademacher directions (Garg et al.: 10)
    curvature_h: float = 1e-3       # finite-difference step, in (standardized) input units
    vog_epochs: typing.List[int] = field(default_factory=list)  # VoG checkpoints (>= 2 epochs)
    batch_size: int = 1024          # examples per batch of the curvature and VoG passes

    def dynamics_epochs(self, num_epochs: int) -> typing.List[int]:
        """The epochs (1 = after the first) after which the per-epoch fields are recorded: every
        ``every``-th and the last, ``num_epochs`` (= ceil(train.epochs))."""
        return [e for e in range(1, num_epochs + 1) if e % self.every == 0 or e == num_epochs]


@dataclass(frozen=True)
class TrainConfig:
    # an optimizer of jaxmem.train.choices (adam | adamw | sgd | nesterov) with its own fields
    # (sgd/nesterov: momentum): [train.optimizer] name = "sgd" momentum = 0.9, or "adam"
    optimizer: typing.Any = field(default_factory=OPTIMIZER.default_factory())
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # a learning-rate schedule of jaxmem.train.choices (constant | cosine | linear_warmup_cosine |
    # triangle) with its own fields (warmup_epochs, start, end)
    schedule: typing.Any = field(default_factory=SCHEDULE.default_factory())
    bias_lr_scale: float = 1.0      # BatchNorm biases: learning rate x this, weight decay / this
    # parameter averaging of jaxmem.train.choices: "none" | [train.lookahead] name = "ema" with
    # every, start_epochs, decay, pow (airbench94's lookahead)
    lookahead: typing.Any = field(default_factory=LOOKAHEAD.default_factory())
    batch_size: int = 128
    epochs: float = 20.0
    label_smoothing: float = 0.0
    augment: str = "none"           # a name of jaxmem.train.augment_registry, or a chain a+b
    augment_args: typing.Dict[str, typing.Any] = field(default_factory=dict)  # {name: {field: v}}
    dp: DPConfig = field(default_factory=DPConfig)
    record_forgetting: bool = False  # per-epoch correctness on every train example
    records: RecordsConfig = field(default_factory=RecordsConfig)  # training dynamics (proxies)
    chunk_size: int = 0             # models per jitted call; 0 = choose automatically
    vmap_size: int = 0              # models vmapped together inside a chunk (lax.map); 0 = auto
    step_loop: str = "auto"         # scan | host (a jitted call per step) | auto: host for CNNs on CPU
    compute_dtype: str = "float32"  # float32 | bfloat16 (params stay float32)
    checkpoint_every: int = 0       # epochs between mid-chunk checkpoints; 0 = only per chunk


@dataclass(frozen=True)
class SignalsConfig:
    queries: typing.List[str] = field(default_factory=lambda: ["identity"])  # identity, flip, shift±k
    dtype: str = "float32"          # float32 | float16
    batch_size: int = 1024


@dataclass(frozen=True)
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
    a: typing.Optional[float] = None  # offline coefficient; None = tuned by `tuning`
    # how a is tuned (jaxmem.attacks.spec.RMIA_TUNINGS): per_target = on each target's shadows only
    # (unbiased); once = one a on every usable model (targets' membership among its references)
    tuning: str = "per_target"


@dataclass(frozen=True)
class ScoringConfig:
    attacks: typing.List[str] = field(default_factory=lambda: ["lira_online", "lira_offline",
                                                              "lira_online_fixed_variance",
                                                              "global_threshold"])
    targets: int = 0                # 0 = every model takes its turn as the target; else the first K
    influence_top_k: int = 0        # >0: the k most influential training examples of each test example
    rmia: RMIAConfig = field(default_factory=RMIAConfig)
    # language models: is the suffix of suffix_length tokens greedily extractable from a prefix
    # of k tokens (BOS included), for each k (Carlini et al. 2022)
    prefix_lengths: typing.List[int] = field(default_factory=lambda: [32])
    # Carlini et al. 2022's 50 tokens; clipped to data.max_len − max(prefix_lengths) (the length
    # used is written beside every extraction number: jaxmem.runs.score_lm.suffix_length_used)
    suffix_length: int = 50
    # language models: the target tokens every per-sequence score counts (NLL, token accuracy,
    # Min-K%, memorization, exact match). Default: all, as Hugging Face's labels=input_ids loss with
    # BOS and EOS; MIMIR with a BOS-less tokenizer and no EOS scores neither of these two.
    score_first_token: bool = True  # the first text token (predicted from BOS alone)
    score_eos: bool = True          # the EOS token (a sequence cut at data.max_len has none)
    # language models: .npy float [N], an external reference model's mean token NLL of each training
    # sequence (row order of text.json's texts_train); given: the attack reference_model runs
    reference_nll: str = ""


@dataclass(frozen=True)
class ExperimentConfig:
    """What an experiment file adds to a single run: variants (a sweep) and an analysis."""

    kind: str = "default"           # the analysis run after training (jaxmem.analyses.registry)
    variants: typing.List[typing.List[str]] = field(default_factory=list)  # overrides per variant
    variant_names: typing.List[str] = field(default_factory=list)
    full: bool = False              # apply full_overrides (the faithful, accelerator-sized variant)
    full_overrides: typing.List[str] = field(default_factory=list)
    params: typing.Dict[str, typing.Any] = field(default_factory=dict)  # the analysis' parameters


@dataclass(frozen=True)
class Config:
    name: str = "digits"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    subsets: SubsetConfig = field(default_factory=SubsetConfig)
    model: typing.Any = field(default_factory=MODEL.default_factory())  # a family of jaxmem.models
    train: TrainConfig = field(default_factory=TrainConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)



def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out

