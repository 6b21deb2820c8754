"""Membership-inference attacks on language models: pure array functions (NumPy float64). The
reference-free attacks live here; the reference-based ones (:func:`reference_ratio`,
:func:`reference_ratio_loo`, :func:`reference_model`, :func:`lm_lira`) in
:mod:`jaxmem.attacks.lm_reference`, on the warnings and float64 checks defined here.

Every score is "higher means more likely a member". Inputs are the per-token / per-sequence
signals of :mod:`jaxmem.signals.lm` (or the same arrays computed by any other code, e.g. from a
PyTorch / Hugging Face model), with the model axis first where shadow or reference models are
involved, like :func:`jaxmem.attacks.lira`:

=====================  ==================================================  ==========================
attack                 signals                                             reference
=====================  ==================================================  ==========================
:func:`lm_loss`        sequence NLL [..., N]                               Yeom et al. 2018; Carlini
                                                                           et al. 2021 (perplexity)
:func:`zlib_ratio`     sequence NLL [..., N], zlib entropy [N] (bytes)     Carlini et al. 2021
:func:`min_k`          token logp [..., N, L] + target mask                Shi et al. 2024
:func:`min_k_plus_plus` token logp, mu, sigma [..., N, L] + target mask    Zhang et al. 2024
:func:`reference_ratio` target NLL [N]; reference NLL [M, N] (+ keep)      Carlini et al. 2021
:func:`reference_ratio_loo` NLL [M, N], keep [M, N]: every model a target  (same)
:func:`reference_model` target NLL [..., N]; external reference NLL [N]      Carlini et al. 2021
:func:`lm_lira`        target NLL [N]; shadow NLL [M, N], keep [M, N]      Carlini et al. 2022
:func:`recall`         sequence NLL [..., N] and NLL after a non-member       Xie et al. 2024 (ReCaLL)
                       prefix [..., N]
=====================  ==================================================  ==========================

Two different "reference" attacks, named apart in the registry (:mod:`jaxmem.attacks.registry`):

* ``reference_out`` (older name ``reference``, kept as an alias): the reference of a text is the
  mean NLL of the target's *OUT models*, the other models of the stack that did not train on it
  (:func:`reference_ratio_loo`; score = reference − target NLL). It needs a stack of models
  trained on random subsets; with them it is Watson et al. 2022's difficulty calibration.
* ``reference_model``: one *external* reference model (MIMIR's "ref"; Carlini et al. 2021's
  smaller GPT-2 or zlib's stand-in), given as its NLL of each text (``scoring.reference_nll``),
  ranked by Carlini et al.'s ratio of log-perplexities, reference NLL / target NLL
  (:func:`reference_model`; ``mode="difference"`` gives MIMIR's ref − target).

The reference-free attacks (loss, zlib, Min-K%, Min-K%++) accept any leading axes, so a stack
``[M, N, L]`` scores every model as its own target in one call (``[M, N]``).

Undefined scores are NaN with a :class:`LMAttackWarning` saying why (a NaN signal, e.g. from a
diverged model; a sequence with fewer than 1/k target tokens for Min-K%; σ = 0 for Min-K%++; no
OUT reference model). They are never 0 or 1. ±inf signals give ±inf scores where the formula
does (a token of probability 0 makes Min-K% −inf: ranked as the least likely member).

This module imports numpy and jaxtyping (the shapes of its signatures) only.
"""

from __future__ import annotations

import warnings

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

__all__ = [
    "LMAttackWarning",
    "lm_loss",
    "zlib_ratio",
    "min_k",
    "min_k_plus_plus",
    "recall",
]


class LMAttackWarning(RuntimeWarning):
    """Some LM attack scores are undefined (NaN); the message says how many and why."""


def _warn(count: int, total: int, why: str, who: str) -> None:
    if count:
        warnings.warn(f"{who}: {count} of {total} scores are NaN: {why}", LMAttackWarning, stacklevel=3)


def _f64(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    return x


def _warn_nan_input(x, who, what):
    _warn(int(np.sum(np.isnan(x))), x.size, f"their {what} is NaN", who)


# ----------------------------------------------------------------------------- reference-free


def lm_loss(target_nll: Real[ArrayLike, "*batch N"]) -> Float[np.ndarray, "*batch N"]:
    """Loss attack on sequences: score = −NLL (Yeom et al. 2018, "Privacy risk in machine learning",
    threshold on the loss; Carlini et al. 2021, "Extracting training data from large language
    models", Sec. 5.2, rank by perplexity; log-perplexity = NLL).

    Args:
      target_nll: [..., N] mean token NLL (nats) of each sequence under the target model
        (:func:`jaxmem.signals.lm.sequence_nll`).

    Returns:
      float64 [..., N]; NaN (with :class:`LMAttackWarning`) where the NLL is NaN.

    Raises:
      ValueError: a scalar ``target_nll``.

    References:
      Yeom et al. (2018), "Privacy risk in machine learning"; Carlini et al. (2021), "Extracting
      training data from large language models", USENIX Security, Sec. 5.2.
    """
    nll = _f64(target_nll, "target_nll")
    _warn_nan_input(nll, "lm_loss", "NLL")
    return -nll


def zlib_ratio(target_nll: Real[ArrayLike, "*batch N"], zlib_entropy: Real[ArrayLike, " N"]) -> Float[np.ndarray, "*batch N"]:
    """zlib ratio attack (Carlini et al. 2021, Sec. 5.2, "Comparing to zlib compression"):
    score = −NLL / zlib entropy.

    Carlini et al. rank by the ratio of the log-perplexity (= NLL, nats) to the zlib entropy; their
    code sorts ``zlib / log(ppl)`` descending, Shi et al. (2024) and Zhang et al. (2024) score
    ``log-likelihood / zlib``. For NLL > 0 all three rank sequences identically; −NLL / zlib is
    also defined at NLL = 0 (where zlib / NLL is +inf for every such sequence).

    Args:
      target_nll: [..., N] mean token NLL of each sequence.
      zlib_entropy: [N] (broadcast against ``target_nll``), bytes of ``zlib.compress`` of the
        UTF-8 text (:func:`jaxmem.data.text_transforms.zlib_entropy`); must be > 0.

    Returns:
      float64 [..., N].

    Raises:
      ValueError: a zlib entropy <= 0 (zlib output is never empty: 8 bytes for an empty string).

    References:
      Carlini et al. (2021), "Extracting training data from large language models", Sec. 5.2.
    """
    nll = _f64(target_nll, "target_nll")
    z = np.asarray(zlib_entropy, dtype=np.float64)
    if np.any(~(z > 0)):
        raise ValueError("zlib_entropy must be > 0 (the byte length of zlib.compress of the text)")
    _warn_nan_input(nll, "zlib_ratio", "NLL")
    return -nll / z


def _min_k_core(x, mask, k, at_least_one, who, what, warned=None):
    if not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1], got {k!r}")
    x = _f64(x, what)
    mask = np.broadcast_to(np.asarray(mask, bool), x.shape)
    n = mask.sum(-1)
    # the reference code's count: int(len(token_log_probs) * ratio), a float64 product truncated
    count = np.floor(n.astype(np.float64) * float(k)).astype(np.int64)
    if at_least_one:
        count = np.where(n > 0, np.maximum(count, 1), 0)
    has_nan = np.any(mask & np.isnan(x), axis=-1)
    srt = np.sort(np.where(mask, x, np.inf), axis=-1)  # masked-out positions last
    take = np.arange(x.shape[-1]) < count[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(take, srt, 0.0).sum(-1) / count
    s = np.where(count > 0, s, np.nan)
    s = np.where(has_nan, np.nan, s)
    warned = np.zeros(s.shape, bool) if warned is None else warned
    few = (count == 0) & ~has_nan & ~warned
    _warn(int(few.sum()), few.size,
          f"fewer than 1/k = {1 / k:g} target tokens (floor(k·n) = 0 tokens to average)", who)
    _warn(int((has_nan & ~warned).sum()), has_nan.size, f"a target token's {what} is NaN", who)
    return s


def min_k(target_logp: Real[ArrayLike, "*batch L"], mask: Bool[ArrayLike, "*#batch L"], k: float = 0.2, *,
          at_least_one: bool = False) -> Float[np.ndarray, "*batch"]:
    """Min-K% Prob (Shi et al. 2024, "Detecting pretraining data from large language models"):
    the mean of the k% lowest token log-probabilities of the sequence,

        Min-K%(x) = (1 / |min-k(x)|) Σ_{x_i ∈ min-k(x)} log p(x_i | x_1..x_{i−1}).

    Count rule of the authors' code (``swj0419/detect-pretrain-code`` ``src/run.py``, and
    ``zjysteven/mink-plus-plus`` ``run.py``; MIMIR ``min_k.py`` likewise): the floor(n · k) lowest
    of the n target tokens (``int(len(all_prob) * ratio)``, a float64 product truncated), so a
    sequence with n · k < 1 has no token to average: its score is NaN here (the reference code
    returns ``np.mean([])`` = NaN with a RuntimeWarning). ``at_least_one=True`` uses
    max(1, floor(n · k)) instead (a common reimplementation choice, not the authors'). The
    authors' code scores ``-mean`` as "lower = member" in one repository and ``mean`` in the
    other; here the score is the mean itself (higher = member).

    Args:
      target_logp: [..., L] token log-probabilities (``TokenSignals.logp``), e.g. [M, N, L].
      mask: [..., L] bool target mask (``TokenSignals.mask``; broadcast, e.g. [N, L]); NaN outside
        it is ignored.
      k: the fraction in (0, 1] (the papers report k = 0.2 as a good default).
      at_least_one: average at least one token (not the authors' rule).

    Returns:
      float64 [...]. NaN (with :class:`LMAttackWarning`) where floor(n·k) = 0 (n target tokens)
      or a target token's logp is NaN.

    Raises:
      ValueError: ``k`` outside (0, 1], or a scalar ``target_logp``.

    References:
      Shi et al. (2024), "Detecting pretraining data from large language models", ICLR.
    """
    return _min_k_core(target_logp, mask, k, at_least_one, "min_k", "logp")


def min_k_plus_plus(target_logp: Real[ArrayLike, "*batch L"], mu: Real[ArrayLike, "*#batch L"],
                    sigma: Real[ArrayLike, "*#batch L"], mask: Bool[ArrayLike, "*#batch L"], k: float = 0.2, *,
                    at_least_one: bool = False) -> Float[np.ndarray, "*batch"]:
    """Min-K%++ (Zhang et al. 2024, "Min-K%++: improved baseline for detecting pre-training data
    from large language models"): per token

        s_t = (log p(x_t | x_<t) − μ_t) / σ_t,   μ_t = E_{z~p(·|x_<t)}[log p(z | x_<t)],
        σ_t = sqrt(E_{z~p(·|x_<t)}[(log p(z | x_<t) − μ_t)²]),

    then the mean of the k% lowest s_t, with the count rule of :func:`min_k` (floor(n · k); the
    authors' ``run.py`` and MIMIR's ``min_k_plus_plus.py``). Their code computes σ² as
    E[(log p)²] − μ²; :func:`jaxmem.signals.lm.token_signals` computes the same variance centred
    (no cancellation). Here the score is the mean itself (higher = member).

    Args:
      target_logp, mu, sigma: [..., L] (``TokenSignals.logp``, ``.mu``, ``.sigma``).
      mask: [..., L] bool target mask.
      k: the fraction in (0, 1].
      at_least_one: as :func:`min_k`.

    Returns:
      float64 [...]. NaN (with :class:`LMAttackWarning`) where floor(n·k) = 0, or where a target
      token has σ = 0 (a one-hot or uniform next-token distribution: s_t is 0/0 or ±x/0,
      undefined) or a NaN signal.

    Raises:
      ValueError: ``k`` outside (0, 1], or a scalar input.

    References:
      Zhang et al. (2024), "Min-K%++: improved baseline for detecting pre-training data from
      large language models".
    """
    lp = _f64(target_logp, "target_logp")
    mu = np.broadcast_to(_f64(mu, "mu"), lp.shape)
    sd = np.broadcast_to(_f64(sigma, "sigma"), lp.shape)
    mask = np.broadcast_to(np.asarray(mask, bool), lp.shape)
    zero_sd = np.any(mask & (sd == 0), axis=-1)  # NaN sigma: counted as a NaN signal below
    _warn(int(zero_sd.sum()), zero_sd.size,
          "a target token has sigma = 0 (one-hot or uniform next-token distribution)", "min_k_plus_plus")
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (lp - mu) / sd, np.nan)
    return _min_k_core(z, mask, k, at_least_one, "min_k_plus_plus", "standardized log-probability", zero_sd)


def recall(target_nll: Real[ArrayLike, "*batch N"], prefixed_nll: Real[ArrayLike, "*batch N"]) -> Float[np.ndarray, "*batch N"]:
    """ReCaLL (Xie et al. 2024, "ReCaLL: Membership Inference via Relative Conditional
    Log-Likelihoods", Eq. 1): ReCaLL(x) = LL(x | P) / LL(x), the log-likelihood of x conditioned on
    a prefix P of NON-member texts relative to its unconditional log-likelihood (LL = −NLL, so the
    ratio is NLL(x | P) / NLL(x)). The authors' code (ruoyuxie/recall, ``ll_nonmember / ll``) and
    MIMIR take a lower ratio as "member" (their ROC negates it); jaxmem's score is −ratio
    (higher = member).

    Args:
      target_nll: [..., N] mean token NLL of each sequence x (nats).
      prefixed_nll: [..., N] mean token NLL of the same tokens of x after the prefix P (only x's
        tokens counted), under the same model.

    Returns:
      float64 [..., N]; NaN (with a warning) where NLL(x) = 0 (the ratio is undefined) or an
      input is NaN.

    Raises:
      ValueError: ``target_nll`` and ``prefixed_nll`` differ in shape.

    References:
      Xie et al. (2024), "ReCaLL: membership inference via relative conditional log-likelihoods",
      Eq. 1.
    """
    nll = _f64(target_nll, "target_nll")
    pre = _f64(prefixed_nll, "prefixed_nll")
    if nll.shape != pre.shape:
        raise ValueError(f"target_nll {nll.shape} and prefixed_nll {pre.shape} differ")
    _warn_nan_input(nll, "recall", "NLL")
    _warn_nan_input(pre, "recall", "prefixed NLL")
    zero = nll == 0
    _warn(int(zero.sum()), nll.size, "their NLL is 0 (LL(x|P) / LL(x) is undefined)", "recall")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(zero, np.nan, -pre / np.where(zero, 1.0, nll))
