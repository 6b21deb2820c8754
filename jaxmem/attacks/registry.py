"""The attack registry: ``{name: Attack(call, needs, options)}``, one entry per attack name used
anywhere in jaxmem (runs' ``scoring.attacks``, the analyses, the report), and the view an attack
gets of one target. Light on purpose (numpy only; each attack's module is imported when it is
called): config validation reads the names.

An attack is a pure function of arrays. Its entry says which per-model signals it reads
(``needs``: keys of the signals mapping given to :func:`jaxmem.attacks.evaluate`; a population
signal, computed on points no model trained on, ends in ``_pop``) and how to call it on one
target with its shadow/reference models: ``call(view, **options) -> [N]`` float scores, higher
meaning "more likely a member". Adding an attack = one file with the function, plus one line
here (or :func:`register` at run time)::

    from jaxmem.attacks.registry import Attack, register, target_attack
    register("min_k", target_attack(my_module.min_k, "token_logprobs", "token_mask", k=0.2))

Entries with ``loo="lira"`` also have a batched leave-one-out kernel that
:func:`jaxmem.attacks.evaluate` uses when every other usable model is a shadow (same scores to
float64 rounding, one pass for all targets). ``family="rmia"`` entries get RMIA's offline
coefficient ``a`` chosen by the driver (given, tuned once, or tuned per target). Entries with
``pair_out=True`` (LiRA, RMIA, ``reference_out``: the attacks that compare the target with its
shadows' IN/OUT split) get ``view.drop`` on a balanced design, the model left out with the target
on each example, and must leave it out of their shadows (``_use`` below).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from jaxmem.config.registry import ATTACK, provide

__all__ = ["Attack", "TargetView", "ATTACKS", "DEFAULT_ATTACKS", "IMPORT_ATTACKS", "LM_ATTACKS", "LM_SIGNALS",
           "UNCHECKED_SIGNALS",
           "register", "target_attack", "shadow_attack", "get"]


class TargetView(NamedTuple):
    """What an attack sees of one target model ``t``: the signals of ``t`` and of its shadow
    (reference) models ``shadows`` (sorted model indices), their membership rows, the labels."""

    signals: Any            # mapping name -> [M, ...] per-model array
    keep: np.ndarray        # [M, N] bool
    t: int
    shadows: np.ndarray     # [S] int
    labels: Any = None      # [N] (attacks that read labels, e.g. Shokri)
    #: [N] the model left out with the target on each example (−1: none), when LiRA and RMIA
    #: leave a pair out on a balanced design (jaxmem.attacks.likelihood_ratio.pair_out); None: nothing
    drop: Any = None

    def target(self, name):
        return self.signals[name][self.t]

    def shadow(self, name):
        return self.signals[name][self.shadows]

    @property
    def shadow_keep(self):
        return self.keep[self.shadows]


class Attack(NamedTuple):
    call: Callable                 # call(view: TargetView, **options) -> [N] scores
    needs: tuple                   # signal names read
    options: dict = {}             # this entry's fixed keyword options
    loo: str | None = None         # "lira": evaluate's batched leave-one-out kernel applies
    family: str | None = None      # "rmia": the driver chooses the offline coefficient a
    #: compares the target's IN/OUT split with its shadows' (LiRA, RMIA, the OUT references' NLL):
    #: on a balanced design the driver leaves a pair out (TargetView.drop), so that the shadows'
    #: IN and OUT counts do not depend on the target's membership
    pair_out: bool = False


def target_attack(fn, *needs, **options) -> Attack:
    """An attack that reads only the target's signals: ``fn(*target arrays, **options)``."""
    return Attack(lambda v, **o: fn(*(v.target(n) for n in needs), **o), tuple(needs), options)


def shadow_attack(fn, *needs, **options) -> Attack:
    """``fn(*target arrays, *shadow arrays, shadow_keep, **options)`` (LiRA's argument order)."""
    return Attack(lambda v, **o: fn(*(v.target(n) for n in needs), *(v.shadow(n) for n in needs),
                                    v.shadow_keep, **o), tuple(needs), options)


# ------------------------------------------------------------------------------ the attacks

def _use(v):
    """[S, N] bool: False where shadow s is the model left out with the target on example i."""
    return None if v.drop is None else v.shadows[:, None] != np.asarray(v.drop)[None, :]


def _lira(v, **o):
    from jaxmem.attacks.likelihood_ratio import lira

    return lira(v.target("phi"), v.shadow("phi"), v.shadow_keep, shadow_use=_use(v), **o)


def _global_threshold(v):
    from jaxmem.attacks.likelihood_ratio import global_threshold

    return global_threshold(v.target("phi"))


def _loss(v):
    from jaxmem.attacks.threshold import loss_attack

    return loss_attack(v.target("loss"))


def _shokri(v, **o):
    from jaxmem.attacks.threshold import shokri

    return shokri(v.target("probs"), v.labels, v.shadow("probs"), v.shadow_keep, **o)


def _rmia(v, *, p="p", p_pop="p_pop", **o):
    from jaxmem.attacks.relative_membership import rmia

    return rmia(v.target(p), v.shadow(p), v.shadow_keep, v.target(p_pop), v.shadow(p_pop),
                ref_use=_use(v), **o)


# the language-model attacks: reference-free ones of jaxmem.attacks.lm, reference-based ones of
# jaxmem.attacks.lm_reference
def _zlib(v):
    from jaxmem.attacks.lm import zlib_ratio

    return zlib_ratio(v.target("loss"), v.target("zlib_entropy"))


def _min_k(v, **o):
    from jaxmem.attacks.lm import min_k

    return min_k(v.target("token_logp"), v.target("token_mask"), **o)


def _min_k_plus_plus(v, **o):
    from jaxmem.attacks.lm import min_k_plus_plus

    return min_k_plus_plus(*(v.target(f"token_{s}") for s in ("logp", "mu", "sigma", "mask")), **o)


def _recall(v):
    from jaxmem.attacks.lm import recall

    return recall(v.target("loss"), v.target("prefixed_loss"))


def _reference_model(v, **o):
    from jaxmem.attacks.lm_reference import reference_model

    return reference_model(v.target("loss"), v.target("reference_nll"), **o)


def _reference_out(v, **o):
    from jaxmem.attacks.lm_reference import reference_ratio

    return reference_ratio(v.target("loss"), v.shadow("loss"), v.shadow_keep, reference_use=_use(v), **o)


def _lira_entry(online, fixed):
    return Attack(_lira, ("phi",), {"online": online, "fixed_variance": fixed}, loo="lira", pair_out=True)


def _rmia_entry(p, **options):
    return Attack(_rmia, (p, p + "_pop"), {"p": p, "p_pop": p + "_pop", **options}, family="rmia",
                  pair_out=True)


#: The RMIA research code's signal on CIFAR-10 (ml_privacy_meter research/2023_rmia configs):
#: the soft-margin Taylor softmax, computed as the signal ``p_taylor`` (:mod:`jaxmem.signals`).
RMIA_RESEARCH = {"online": True, "gamma": 2.0, "aggregate": "vote", "trim": 0.2}

ATTACKS: dict[str, Attack] = {
    "lira_online": _lira_entry(True, False),
    "lira_online_fixed_variance": _lira_entry(True, True),
    "lira_offline": _lira_entry(False, False),
    "lira_offline_fixed_variance": _lira_entry(False, True),
    "global_threshold": Attack(_global_threshold, ("phi",)),
    "loss": Attack(_loss, ("loss",)),
    "rmia_offline": _rmia_entry("p", online=False),
    "rmia_online": _rmia_entry("p", online=True),
    "shokri": Attack(_shokri, ("probs",)),
    # the research code's online RMIA: its signal per query, a vote over queries, 20%-trimmed
    # means, γ = 2 (jaxmem.attacks.relative_membership lists the differences from ML Privacy Meter)
    "rmia_online_research": _rmia_entry("p_taylor", **RMIA_RESEARCH),
    # language models (jaxmem.attacks.lm): "loss" is the per-sequence NLL, "phi" = -NLL (LiRA);
    # the per-token signals are [M, N, L - 1] with the target mask (jaxmem.runs.score_lm)
    "zlib": Attack(_zlib, ("loss", "zlib_entropy")),
    "min_k": Attack(_min_k, ("token_logp", "token_mask"), {"k": 0.2}),
    "min_k_plus_plus": Attack(_min_k_plus_plus, ("token_logp", "token_mu", "token_sigma", "token_mask"),
                              {"k": 0.2}),
    # the mean NLL of the target's OUT models (the other models of the stack that did not train on
    # the text): reference_out; "reference" is its older name (the same attack)
    "reference_out": Attack(_reference_out, ("loss",), {"mode": "difference"}, pair_out=True),
    "reference": Attack(_reference_out, ("loss",), {"mode": "difference"}, pair_out=True),
    # an external reference model's NLL (scoring.reference_nll: MIMIR's "ref"), ranked by Carlini
    # et al. 2021's ratio of log-perplexities
    "reference_model": Attack(_reference_model, ("loss", "reference_nll"), {"mode": "ratio"}),
    # ReCaLL (Xie et al. 2024): "prefixed_loss" = the NLL of x after a non-member prefix, a signal
    # the caller computes (a stacked run does not store it; bring-your-own arrays)
    "recall": Attack(_recall, ("loss", "prefixed_loss")),
}
DEFAULT_ATTACKS = ("lira_online", "lira_online_fixed_variance", "lira_offline",
                   "lira_offline_fixed_variance", "global_threshold")
#: What a run imported from arrays is scored with (jaxmem.runs.import_arrays): every attack that
#: needs only the logits (RMIA: and a test set as its population); Shokri's classifiers and
#: RMIA's research variant are one --set scoring.attacks away.
IMPORT_ATTACKS = DEFAULT_ATTACKS + ("loss", "rmia_offline", "rmia_online")
#: The signals a language-model run gives its attacks (jaxmem.runs.score_lm): "loss" = the mean
#: token NLL of each sequence, "phi" = -NLL (LiRA's statistic), "zlib_entropy" [M, N] (the same
#: row for every model), per-token "token_logp" / "token_mu" / "token_sigma" and the target
#: mask "token_mask" [M, N, L - 1] (the mask the same for every model).
LM_SIGNALS = ("loss", "phi", "zlib_entropy", "token_logp", "token_mu", "token_sigma", "token_mask",
              "reference_nll")
#: "reference_nll" [M, N] (the same row for every model): an external reference model's NLL of each
#: sequence, given by the user (scoring.reference_nll); a run has it only then.
#: Signals that may hold ±inf or NaN by design, so that a model is not judged diverged by them
#: (evaluate's non-finite check skips them): per-token values (a token of probability 0 has log-
#: probability −inf, padding positions are outside the mask). A diverged language model shows in
#: its sequence NLL ("loss", "phi"), which is checked.
UNCHECKED_SIGNALS = ("token_logp", "token_mu", "token_sigma", "token_mask")
#: Every attack a language-model run can take: reference-free (loss, zlib, Min-K%, Min-K%++) and
#: reference-based (the OUT models' NLL: reference_out, alias reference; an external reference model's
#: NLL: reference_model, when scoring.reference_nll is given; LiRA with the other models as shadows).
LM_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference_out", "reference", "reference_model",
              "lira_online", "lira_offline", "lira_online_fixed_variance", "lira_offline_fixed_variance")


def register(name: str, attack: Attack, *, replace: bool = False) -> None:
    """Add an attack under ``name`` (``replace=True`` to overwrite one)."""
    if name in ATTACKS and not replace:
        raise ValueError(f"attack {name!r} is registered already")
    if not isinstance(attack, Attack):
        raise TypeError("register an Attack (see target_attack / shadow_attack)")
    ATTACKS[name] = attack
    ATTACK.register(name, None, capabilities=attack, replace=True)


def get(name: str) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {tuple(ATTACKS)}")
    return ATTACKS[name]


# Declared into the config mechanism (jaxmem.config.registry): validation asks these, not this module.
for _name, _attack in ATTACKS.items():
    ATTACK.register(_name, None, capabilities=_attack, replace=True)
provide("attacks.lm_signals", LM_SIGNALS)
