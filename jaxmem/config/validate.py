"""Validation of a :class:`~jaxmem.config.schema.Config`: ranges, consistency, and names checked
against the registries of :mod:`jaxmem.config.registry` (model families, optimizers, schedules,
designs, augmentations, attacks, analyses), which the owning packages fill; what needs a
package's own functions (data sources, queries, checkpoints) is asked of what that package
provided (:func:`jaxmem.config.registry.provided`). Imports no other jaxmem package. A bad value
raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import math

from jaxmem.config.registry import ANALYSIS, ATTACK, MODEL, choice_paths, provided
from jaxmem.config.schema import Config, ConfigError, DataConfig, flatten, to_dict

__all__ = ["validate", "RECORD_FIELDS"]

_CHOICES = {
    "train.compute_dtype": {"float32", "bfloat16"},
    "train.step_loop": {"auto", "scan", "host"},
    "signals.dtype": {"float32", "float16"},
    "scoring.rmia.signal": {"softmax", "taylor_soft_margin"},
    "scoring.rmia.aggregate": {"mean", "vote"},
    "train.records.dtype": {"float32", "float16"},
}
#: Per-epoch record fields (the fields of jaxmem.train.records.EpochRecord; a test keeps them equal).
RECORD_FIELDS = ("loss", "margin", "correct", "p_true")


def _positive(path, v, strict=True):
    if (v <= 0) if strict else (v < 0):
        raise ConfigError(f"{path}: must be {'> 0' if strict else '>= 0'}, got {v}")


def validate(cfg: Config) -> None:
    """Range and consistency checks; raises ConfigError naming the field."""
    flat = flatten(to_dict(cfg))
    choices = {**_CHOICES, "data.canary_kind": set(provided("data.canary_kinds")) | {"secret"},
               "data.label_noise_kind": set(provided("data.label_noise_kinds")),
               "data.tokenizer": set(provided("data.tokenizers"))}
    for key, allowed in choices.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}: must be one of {sorted(allowed)}, got {flat[key]!r}")
    for path, reg in choice_paths().items():   # each choice: a registered name, its own ranges
        node = cfg
        for p in path.split("."):
            node = getattr(node, p)
        reg.get(node.name, f"{path}.name")
        node.check(path)
    s, t, d = cfg.subsets, cfg.train, cfg.data
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed: must be in [0, 2**32), got {cfg.seed}")
    for a in cfg.scoring.attacks:
        ATTACK.get(a)
    if not cfg.signals.queries:
        raise ConfigError('signals.queries: needs at least one query (e.g. ["identity"])')
    if s.num_models < 1:
        raise ConfigError(f"subsets.num_models: must be >= 1, got {s.num_models}")
    if cfg.scoring.attacks and s.num_models < 3:
        raise ConfigError(f"subsets.num_models: attacks need >= 3 models (a target and shadows "
                          f"with and without each example), got {s.num_models}")
    if s.design.name == "replica" and not 2 <= s.design.replicas < s.num_models:
        raise ConfigError(f"subsets.design.replicas: must be in [2, subsets.num_models={s.num_models}) "
                          f"(the replicas and at least one reference), got {s.design.replicas}")
    if s.design.name == "replica" and cfg.scoring.attacks:
        raise ConfigError("scoring.attacks: must be [] with subsets.design = 'replica' (the other "
                          "replicas would be shadows trained on the target's data; the "
                          "reference_scaling analysis attacks each replica with the references)")
    if s.design.name == "ratio" and len(s.design.ratios) > 1 and s.num_models % len(s.design.ratios):
        raise ConfigError(f"subsets.num_models: must be a multiple of len(subsets.design.ratios)="
                          f"{len(s.design.ratios)}, got {s.num_models}")
    _positive("train.learning_rate", t.learning_rate)
    _positive("train.batch_size", t.batch_size)
    _positive("train.epochs", t.epochs)
    _positive("train.weight_decay", t.weight_decay, strict=False)
    _positive("train.chunk_size", t.chunk_size, strict=False)
    _positive("train.vmap_size", t.vmap_size, strict=False)
    _positive("train.checkpoint_every", t.checkpoint_every, strict=False)
    _positive("signals.batch_size", cfg.signals.batch_size)
    _positive("train.bias_lr_scale", t.bias_lr_scale)
    sched = t.schedule
    if getattr(sched, "peak_inside", False) and not 0.0 < sched.warmup_epochs < t.epochs:
        raise ConfigError(f"train.schedule.warmup_epochs: the {sched.name} schedule peaks there; must "
                          f"be in (0, train.epochs={t.epochs}), got {sched.warmup_epochs}")
    m = cfg.model
    spec = MODEL.get(m.name).capabilities
    _validate_pretrained(cfg, spec)
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing: must be in [0, 1), got {t.label_smoothing}")
    if t.dp.enabled:
        if spec.uses_batch_norm(m):
            raise ConfigError(f"train.dp.enabled: DP-SGD needs per-example gradients, which "
                              f"BatchNorm does not allow; model {cfg.model.name!r} uses it")
        _positive("train.dp.clip_norm", t.dp.clip_norm)
        _positive("train.dp.noise_multiplier", t.dp.noise_multiplier, strict=False)
        if not 0.0 < t.dp.delta < 1.0:
            raise ConfigError(f"train.dp.delta: must be in (0, 1), got {t.dp.delta}")
    if not 0.0 <= d.label_noise < 1.0:
        raise ConfigError(f"data.label_noise: must be in [0, 1), got {d.label_noise}")
    if not 0.0 < d.long_tail_fraction <= 1.0:
        raise ConfigError(f"data.long_tail_fraction: must be in (0, 1], got {d.long_tail_fraction}")
    for key in ("duplicates", "canaries", "max_train", "max_test"):
        _positive(f"data.{key}", getattr(d, key), strict=False)
    _positive("data.duplicate_copies", d.duplicate_copies)
    try:
        provided("data.check_source")(d.source)
    except ValueError as e:
        raise ConfigError(f"data.source: {e}") from None
    _validate_text(cfg, spec)
    _validate_source_kind(d)
    _validate_augment(cfg, spec)
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
    RMIA_TUNINGS = provided("attacks.rmia_tunings")
    if r.tuning not in RMIA_TUNINGS:
        raise ConfigError(f"scoring.rmia.tuning: must be one of {', '.join(RMIA_TUNINGS)}, got {r.tuning!r}")
    if r.a is not None and not 0.0 <= r.a <= 1.0:
        raise ConfigError(f"scoring.rmia.a: must be in [0, 1] (or unset to tune it), got {r.a}")
    for q in cfg.signals.queries:
        try:
            provided("data.parse_query")(q)
        except ValueError as e:
            raise ConfigError(f"signals.queries: {e}") from None
        if q.startswith("external") and not cfg.data.source.startswith("external:"):
            raise ConfigError(f"signals.queries: {q!r} names a view made outside jaxmem; only an "
                              f"imported run (data.source = external:NAME) has one")
    _validate_records(cfg, spec)
    ANALYSIS.get(cfg.experiment.kind)


def _validate_augment(cfg: Config, spec) -> None:
    """``train.augment`` / ``train.augment_args``, asked of the augmentation registry: known
    names and fields, and whether each applies to the data (images, 1-D signals, tokens)."""
    parse_chain, resolve_args, check_augment = (provided("train.augment.parse_chain"),
                                                 provided("train.augment.resolve_args"),
                                                 provided("train.augment.check"))
    input_layout = provided("data.input_layout")
    t = cfg.train
    for field, check in (("train.augment", lambda: parse_chain(t.augment)),
                         ("train.augment_args", lambda: resolve_args(t.augment, t.augment_args)),
                         ("train.augment", lambda: check_augment(
                             t.augment, t.augment_args,
                             "tokens" if spec.tokens else input_layout(cfg.data.source),
                             dp=t.dp.enabled))):
        try:
            check()
        except ValueError as e:
            raise ConfigError(f"{field}: {e}") from None


def _validate_records(cfg: Config, spec) -> None:
    """``train.records``: known fields, epochs within training, positive sizes; curvature and VoG
    need float inputs (input gradients), VoG at least two checkpoints."""
    r, epochs = cfg.train.records, math.ceil(cfg.train.epochs)
    for f in r.fields:
        if f not in RECORD_FIELDS:
            raise ConfigError(f"train.records.fields: unknown record {f!r} (choose from {', '.join(RECORD_FIELDS)})")
    if len(set(r.fields)) != len(r.fields):
        raise ConfigError(f"train.records.fields: each record once, got {r.fields}")
    _positive("train.records.every", r.every)
    if cfg.train.record_forgetting and r.every != 1:
        raise ConfigError(f"train.records.every: forgetting events (train.record_forgetting) need "
                          f"the correctness after every epoch; every must be 1, got {r.every}")
    _positive("train.records.curvature_niter", r.curvature_niter)
    _positive("train.records.curvature_h", r.curvature_h)
    _positive("train.records.batch_size", r.batch_size)
    for key in ("curvature_epochs", "vog_epochs"):
        ep = getattr(r, key)
        if any(not 1 <= e <= epochs for e in ep) or list(ep) != sorted(set(ep)):
            raise ConfigError(f"train.records.{key}: increasing epochs in [1, {epochs}] (after that "
                              f"epoch; train.epochs = {cfg.train.epochs}), got {ep}")
    if len(r.vog_epochs) == 1:
        raise ConfigError("train.records.vog_epochs: VoG is a variance over checkpoints; give at "
                          f"least 2 epochs, got {r.vog_epochs}")
    if (r.curvature_epochs or r.vog_epochs) and spec.tokens:
        raise ConfigError(f"train.records: curvature and VoG are input gradients; model "
                          f"{cfg.model.name!r} takes integer tokens")


def _validate_source_kind(d) -> None:
    """A ``data.*`` field that only the other kind of source (image / text) reads, set away from
    its default, is refused (the data package declares which fields each kind reads)."""
    kind = "text" if provided("data.is_text_source")(d.source) else "image"
    default = DataConfig()
    for other, fields in provided("data.fields_by_kind").items():
        for f in fields if other != kind else ():
            if getattr(d, f) != getattr(default, f):
                raise ConfigError(f"data.{f}: a field of {other} sources; data.source = {d.source!r} "
                                  f"is a{'n' if kind == 'image' else ''} {kind} source (leave it unset)")


def _validate_text(cfg, spec) -> None:
    """Text sources and causal language models come together; what applies to either."""
    LM_SIGNALS = provided("attacks.lm_signals")
    is_text_source = provided("data.is_text_source")

    def get(a):
        return ATTACK.get(a).capabilities

    d, t, sg, sc = cfg.data, cfg.train, cfg.signals, cfg.scoring
    text, lm = is_text_source(d.source), spec.lm
    if lm and not text:
        raise ConfigError(f"data.source: model {cfg.model.name!r} is a language model; it needs a text "
                          f"source (kjv, austen, python_text, text:PATH), got {d.source!r}")
    if text and not lm:
        raise ConfigError(f"model.name: data.source={d.source!r} is a text source; it needs a language "
                          f"model (causal_lm), got {cfg.model.name!r}")
    if d.canary_kind == "secret" and not text:
        raise ConfigError("data.canary_kind: secret canaries are for text sources")
    if not text:
        if sc.reference_nll:
            raise ConfigError("scoring.reference_nll: an external reference model's NLL is for language-model runs")
        for key in ("score_first_token", "score_eos"):
            if not getattr(sc, key):
                raise ConfigError(f"scoring.{key}: which tokens are scored is for language-model runs "
                                  f"(an image run has no tokens)")
        for a in cfg.scoring.attacks:
            only = [n for n in get(a).needs if n in LM_SIGNALS and n not in ("loss", "phi")]
            if only:
                raise ConfigError(f"scoring.attacks: {a!r} needs {only}, which only a language model run has")
        return
    for key, bad in (("label_noise", d.label_noise), ("duplicates", d.duplicates),
                     ("long_tail_classes", d.long_tail_classes)):
        if bad:
            raise ConfigError(f"data.{key}: not for text sources (plant duplicates with "
                              f"data.plant_counts and data.plant_per_count)")
    if d.canaries and d.canary_kind != "secret":
        raise ConfigError(f'data.canary_kind: text sources insert secret canaries ("secret"), got '
                          f"{d.canary_kind!r}")
    if d.max_len < 4:
        raise ConfigError(f"data.max_len: must be >= 4 tokens (BOS, text, EOS), got {d.max_len}")
    if d.canaries and d.tokenizer == "bytes":   # other tokenizers: checked once trained (text_build)
        SECRET_BYTES = provided("data.secret_bytes")
        if d.max_len < SECRET_BYTES + 2:
            raise ConfigError(
                f"data.max_len: secret canaries (data.canaries = {d.canaries}, data.canary_kind = "
                f"\"secret\") are {SECRET_BYTES + 2} byte tokens with BOS and EOS; data.max_len = "
                f"{d.max_len} would cut their digits (raise it to >= {SECRET_BYTES + 2})")
    if d.bpe_vocab_size < 259:
        raise ConfigError(f"data.bpe_vocab_size: must be >= 259 (bytes + PAD/BOS/EOS), got {d.bpe_vocab_size}")
    if not 0.0 <= d.text_test_fraction < 1.0:
        raise ConfigError(f"data.text_test_fraction: must be in [0, 1), got {d.text_test_fraction}")
    for key in ("plant_counts", "canary_counts"):
        c = getattr(d, key)
        if any(v < 1 for v in c) or len(set(c)) != len(c):
            raise ConfigError(f"data.{key}: must be distinct integers >= 1, got {c}")
    _positive("data.plant_per_count", d.plant_per_count, strict=False)
    _positive("data.text_offset", d.text_offset, strict=False)
    if d.plant_per_count and not d.plant_counts:
        raise ConfigError("data.plant_counts: data.plant_per_count needs the counts to plant at")
    if d.canaries and not d.canary_counts:
        raise ConfigError("data.canary_counts: secret canaries need their insertion counts")
    _positive("data.canary_references", d.canary_references)
    if cfg.subsets.design.name == "leave_group_out":
        raise ConfigError("subsets.design: leave_group_out is not for text sources (every design "
                          "already keeps the copies of a text IN or OUT together)")
    for key, bad in (("train.record_forgetting", t.record_forgetting),
                     ("train.records", bool(t.records.fields or t.records.curvature_epochs or t.records.vog_epochs)),
                     ("train.augment", t.augment != "none"),
                     ("model.whiten", getattr(cfg.model, "whiten", False)),
                     ("scoring.influence_top_k", cfg.scoring.influence_top_k),
                     ("signals.queries", list(sg.queries) != ["identity"])):
        if bad:
            raise ConfigError(f"{key}: not for language models")
    if not sc.prefix_lengths:
        raise ConfigError("scoring.prefix_lengths: needs at least one prefix length k")
    if sc.suffix_length < 1 or any(k < 1 for k in sc.prefix_lengths):
        raise ConfigError(f"scoring.prefix_lengths / suffix_length: must be >= 1, got "
                          f"{sc.prefix_lengths} / {sc.suffix_length}")
    if max(sc.prefix_lengths) >= d.max_len:   # (suffix_length is clipped to what is left)
        raise ConfigError(f"scoring.prefix_lengths: the longest prefix must leave a suffix token within "
                          f"data.max_len = {d.max_len}, got {max(sc.prefix_lengths)}")
    _lm_scoring(sc)
    for a in cfg.scoring.attacks:
        missing = [n for n in get(a).needs if n not in LM_SIGNALS]
        if missing:
            raise ConfigError(f"scoring.attacks: {a!r} needs {missing}, which a language model run does "
                              f"not have (it has {', '.join(LM_SIGNALS)})")


def _lm_scoring(sc) -> None:
    """A language-model run's scoring fields (issue 21: reference_model, scored tokens)."""
    import numpy as np

    if "reference_model" in sc.attacks and not sc.reference_nll:
        raise ConfigError("scoring.reference_nll: the attack reference_model needs an external reference "
                          "model's NLL of every training sequence (a .npy file)")
    if sc.reference_nll:
        try:
            r = np.load(sc.reference_nll, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"scoring.reference_nll: cannot read {sc.reference_nll!r} as .npy ({e})") from None
        if r.ndim != 1 or not np.issubdtype(r.dtype, np.floating):
            raise ConfigError(f"scoring.reference_nll: must be a float array [N] (one NLL per training "
                              f"sequence), got {r.dtype} {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ConfigError(f"scoring.reference_nll: {int(np.sum(~np.isfinite(r)))} NLLs are NaN or inf")


def _validate_pretrained(cfg, spec) -> None:
    """``data.tokenizer = "pretrained"`` needs a pretrained checkpoint (the family's own fields
    are checked by its config class: :class:`jaxmem.models.registry.LlamaConfig`)."""
    if cfg.data.tokenizer == "pretrained" and not getattr(cfg.model, "checkpoint", ""):
        raise ConfigError("data.tokenizer: \"pretrained\" is the tokenizer of model.checkpoint, which is not "
                          "set (a pretrained llama model)")
    if getattr(cfg.model, "checkpoint", "") and cfg.data.tokenizer != "pretrained":
        raise ConfigError(f"data.tokenizer: a pretrained model.checkpoint reads its texts with its own "
                          f"tokenizer (data.tokenizer = \"pretrained\"), got {cfg.data.tokenizer!r}")
