"""Memorization proxies from one training run: pure functions of per-epoch training records.

Each proxy summarises a model's per-example training dynamics (``jaxmem.train.records``: loss,
margin, correctness, true-class probability per epoch; input-loss curvature and true-logit input
gradients at chosen epochs) into one number per example, as its paper defines it. Records are
``[E, N]`` (E epochs or records, N examples) or ``[M, E, N]`` (M stacked models); results are
``[N]`` or ``[M, N]`` float64 NumPy arrays. NumPy arrays (memmaps too), JAX arrays and any
float or bool dtype are accepted; reductions run in float64, blocked over examples so the
float64 temporaries stay small.

Sign convention. Every function returns its paper's statistic unchanged (so it can be checked
against the paper and its code). ``PROXIES`` records, in one place, each statistic's direction
``sign``: +1 when larger means more memorized/atypical (forgetting, CSL, curvature, VoG), −1
when larger means more typical (accuracy, confidence, AUM). :func:`memorization_score` returns
``sign × statistic``, the form in which every proxy reads "higher = more memorized/atypical";
rank metrics (Spearman, top-k, AUROC) are computed on that form.

Undefined values are NaN with a warning that says why (``UndefinedProxyWarning``): a NaN record
(a diverged model) makes that example's proxy NaN; a class whose VoG has zero spread cannot be
class-normalized.

Comparing a proxy with a reference score (Spearman, top-k precision, bootstrap intervals over
examples, averaging over M' models of a stack) is in ``jaxmem.estimators.agreement``; label-noise
helpers (flags against flipped labels, AUROC, cleanlab) are in ``jaxmem.estimators.label_noise``.

This module imports only numpy and jaxmem.estimators: no training, model or data code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jaxmem.estimators._common import is_jax
from jaxmem.estimators.forgetting import forgetting_events

__all__ = [
    "PROXIES",
    "Cartography",
    "ProxySpec",
    "UndefinedProxyWarning",
    "aum",
    "aum_flags",
    "cartography",
    "cartography_variability",
    "class_normalize",
    "cumulative_accuracy",
    "cumulative_confidence",
    "cumulative_sample_loss",
    "curvature_proxy",
    "forgetting",
    "memorization_score",
    "vog",
    "vog_from_moments",
]

# Examples per block: E × M × block float64 temporaries (E = 200, M = 1: 100 MB at 2^16).
_BLOCK = 1 << 16


class UndefinedProxyWarning(RuntimeWarning):
    """Some proxy values are undefined (NaN); the message says which and why."""


def _warn(msg: str) -> None:
    warnings.warn(msg, UndefinedProxyWarning, stacklevel=3)


def _as_array(x):
    if is_jax(x):
        return np.asarray(x)
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def _records(x, name: str):
    """``x`` as an array of shape [E, N] or [M, E, N] (not copied: memmaps stay on disk)."""
    x = _as_array(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be [E, N] or [M, E, N] (epochs, examples), got shape {x.shape}")
    if x.shape[-2] < 1:
        raise ValueError(f"{name} has no epochs (shape {x.shape})")
    if x.dtype.kind not in "fbiu":
        raise ValueError(f"{name} must be numeric or bool, got dtype {x.dtype}")
    return x


def _blocked(fn, x, n_out_lead):
    """Apply ``fn`` (float64 [..., E, b] → [..., b]) over blocks of the last axis."""
    n = x.shape[-1]
    out = np.empty(x.shape[:n_out_lead] + (n,), np.float64)
    for s in range(0, n, _BLOCK):
        blk = np.asarray(x[..., s : s + _BLOCK], dtype=np.float64)
        out[..., s : s + _BLOCK] = fn(blk)
    return out


def _warn_nan(result, what: str, why: str = "a NaN record (a diverged model?)"):
    bad = int(np.isnan(result).sum())
    if bad:
        _warn(f"{bad} of {result.size} {what} values are NaN: {why}")
    return result


def _epoch_mean(x, name, what):
    x = _records(x, name)
    res = _blocked(lambda b: b.mean(axis=-2), x, x.ndim - 2)
    return _warn_nan(res, what)


# --------------------------------------------------------------------------------------------
# Proxies


def cumulative_accuracy(correct) -> np.ndarray:
    """Learning speed as cumulative training accuracy (Jiang et al. 2021, "Characterizing
    structural regularities of labeled data in overparameterized models", Sec. 6, learning-speed
    proxies).

    acc_i = (1/E) Σ_{e=1..E} 1[ŷ_e(x_i) = y_i], the fraction of the E recorded epochs in which
    example i is classified correctly (Jiang et al. call 1 − acc the cumulative binary training
    loss; it had the highest rank correlation with the C-score, ρ ≈ 0.86 on CIFAR-10). Take the
    records up to epoch k (``correct[..., :k, :]``) for their "till epoch k" variant. It equals
    dataset cartography's *correctness* (Swayamdipta et al. 2020, their code stores the count
    E·acc). Sign −1: high accuracy = learned fast = regular.

    Args: correct: [E, N] or [M, E, N], bool or 0/1 (nonzero = correct; NaN → NaN with a
      warning).
    Returns: [N] or [M, N] float64 in [0, 1].
    """
    x = _records(correct, "correct")
    res = _blocked(lambda b: np.where(np.isnan(b).any(axis=-2), np.nan, (b != 0).mean(axis=-2)), x, x.ndim - 2)
    return _warn_nan(res, "cumulative accuracy")


def cumulative_confidence(p_true) -> np.ndarray:
    """Learning speed as cumulative softmax confidence (Jiang et al. 2021, Sec. 6):
    conf_i = (1/E) Σ_e p_e(y_i | x_i), the true-class softmax probability averaged over the
    recorded epochs. This is also dataset cartography's *confidence* μ_i (Swayamdipta et al.
    2020, Eq. 1, computed by ``np.mean`` in allenai/cartography). Sign −1.

    Args: p_true: [E, N] or [M, E, N] probabilities. NaN (diverged model) → NaN with a warning.
    Returns: [N] or [M, N] float64.
    """
    return _epoch_mean(p_true, "p_true", "cumulative confidence")


def forgetting(correct) -> np.ndarray:
    """Number of forgetting events (Toneva et al. 2019, Sec. 2), via
    ``jaxmem.estimators.forgetting_events``: transitions correct → incorrect between consecutive
    recorded epochs; an example never classified correctly counts E events (the most
    forgettable). Sign +1.

    Args: correct: [E, N] or [M, E, N] (nonzero = correct; NaN → NaN with a warning).
    Returns: [N] or [M, N] float64 counts in [0, E].
    """
    x = _records(correct, "correct")
    res = np.asarray(forgetting_events(x).forgetting, dtype=np.float64)
    if x.dtype.kind == "f":
        res[_blocked(lambda b: np.isnan(b).any(axis=-2), x, x.ndim - 2) > 0] = np.nan
    return _warn_nan(res, "forgetting")


def aum(margins, *, start: int = 0) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020, "Identifying mislabeled data using the area
    under the margin ranking", Eqs. 1–2).

    With the per-epoch margin M_e(x, y) = z_y^{(e)} − max_{j≠y} z_j^{(e)}
    (``jaxmem.train.records.margin``), AUM(x, y) = (1/T) Σ_{e} M_e(x, y) over the recorded epochs
    e = ``start`` … E−1 (T of them). Mislabeled examples have low (negative) AUM. Sign −1.

    Their code (asappresearch/aum ``AUMCalculator``) averages the margins of the training
    forward passes (train mode, augmented inputs, logits cast to float16) from the second epoch
    on, and trains for about the epochs before the first learning-rate drop (150 on CIFAR).
    jaxmem's records are taken after each epoch, so record 0 (after one epoch) already comes
    after their skipped first epoch; ``start`` drops more leading records.

    Flagging mislabeled examples in the paper uses *threshold samples*: N/(c+1) examples are
    given a fake extra class c+1 (one more output unit), the network is retrained, and an
    example is flagged when its AUM is below the 99th percentile of the threshold samples' AUMs
    (:func:`aum_flags`); the authors repeat this with a second disjoint set of threshold samples
    and keep the examples flagged in both runs. Training with a fake class is the trainer's
    business and is not implemented here.

    Args: margins: [E, N] or [M, E, N] float; start: first record used (0 ≤ start < E).
    Returns: [N] or [M, N] float64 (logit units). NaN records → NaN with a warning.
    """
    x = _records(margins, "margins")
    e = x.shape[-2]
    if int(start) != start or not 0 <= start < e:
        raise ValueError(f"start must be an integer in [0, {e}) (the number of records), got {start!r}")
    return _epoch_mean(x[..., int(start) :, :], "margins", "AUM")


def aum_flags(aum_values, threshold_aum, *, percentile: float = 99.0) -> np.ndarray:
    """Flag examples whose AUM is below the threshold samples' ``percentile``-th percentile
    (Pleiss et al. 2020, Sec. 3.2, α = 99).

    As in their code (``generate_aum_details``: AUM_WTR), example i is flagged when the
    fraction of threshold samples with a larger AUM exceeds 1 − percentile/100:
    mean_j 1[aum_i < thr_j] > 0.01 for the 99th percentile.

    Args:
      aum_values: [N] (or [..., N]) AUMs of the real examples.
      threshold_aum: [T] AUMs of the threshold (fake-class) samples, T ≥ 1, all finite.
      percentile: in (0, 100].
    Returns: bool array shaped like ``aum_values`` (NaN AUMs are not flagged, with a warning).
    """
    thr = np.sort(np.asarray(threshold_aum, np.float64).ravel())
    if thr.size == 0 or not np.all(np.isfinite(thr)):
        raise ValueError("threshold_aum must be a non-empty array of finite AUMs")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    a = np.asarray(aum_values, np.float64)
    # number of threshold AUMs strictly greater than a
    greater = thr.size - np.searchsorted(thr, a, side="right")
    flags = greater / thr.size > 1.0 - percentile / 100.0
    nan = np.isnan(a)
    if nan.any():
        _warn(f"{int(nan.sum())} of {a.size} AUM values are NaN and are not flagged")
        flags &= ~nan
    return flags


class Cartography(NamedTuple):
    confidence: np.ndarray  # [..., N] μ: mean true-class probability over epochs (sign −1)
    variability: np.ndarray  # [..., N] σ: its standard deviation over epochs, ddof=0 (sign +1)
    correctness: np.ndarray  # [..., N] fraction of epochs classified correctly (sign −1)


def cartography(p_true, correct) -> Cartography:
    """Dataset cartography coordinates (Swayamdipta et al. 2020, "Dataset cartography: mapping
    and diagnosing datasets with training dynamics", Sec. 2).

    μ_i = (1/E) Σ_e p_e(y_i | x_i) (confidence, Eq. 1), σ_i = sqrt((1/E) Σ_e (p_e − μ_i)²)
    (variability, Eq. 2; population std, ``np.std`` with ddof=0 as in allenai/cartography
    ``compute_train_dy_metrics``; 0 when E = 1), correctness = fraction of epochs with
    argmax = y (their code stores the count, E × this). Regions of the data map: easy-to-learn
    (high μ, low σ), ambiguous (high σ), hard-to-learn (low μ, low σ; where mislabeled examples
    concentrate). Variability is not monotone in memorization (examples learned mid-training
    have the largest σ); its sign +1 reads "more ambiguous".

    Args: p_true, correct: [E, N] or [M, E, N], same shape.
    Returns: ``Cartography`` of three [N] or [M, N] float64 arrays.
    """
    p = _records(p_true, "p_true")
    c = _records(correct, "correct")
    if p.shape != c.shape:
        raise ValueError(f"p_true {p.shape} and correct {c.shape} must have the same shape")
    return Cartography(cumulative_confidence(p), cartography_variability(p), cumulative_accuracy(c))


def cartography_variability(p_true) -> np.ndarray:
    """Dataset cartography's variability σ_i = sqrt((1/E) Σ_e (p_e(y_i|x_i) − μ_i)²)
    (Swayamdipta et al. 2020, Eq. 2; ddof=0 as ``np.std`` in their code): see
    :func:`cartography`. Args: p_true [E, N] or [M, E, N]. Returns: [N] or [M, N] float64."""
    p = _records(p_true, "p_true")
    return _warn_nan(_blocked(lambda b: b.std(axis=-2), p, p.ndim - 2), "cartography variability")


def cumulative_sample_loss(loss) -> np.ndarray:
    """Cumulative sample loss, CSL (Ravikumar, Soufleri, Hashemi & Roy 2025, "Towards
    memorization estimation: fast, formal and free", Eq. 5).

    CSL(z_i) = Σ_t ℓ(w_t, z_i): the *sum* (not the mean) of the example's loss over training.
    The paper sums over SGD iterations t; its code (DeepakTatachar/CSL-Mem) sums per-epoch
    losses of each epoch's checkpoint in eval mode, which is what per-epoch records give:
    CSL_i = Σ_{e=1..E} ℓ_e(x_i). (For a fixed E the sum and the mean rank identically.) Sign +1.

    Args: loss: [E, N] or [M, E, N] cross-entropy (nats).
    Returns: [N] or [M, N] float64. NaN records → NaN with a warning.
    """
    x = _records(loss, "loss")
    return _warn_nan(_blocked(lambda b: b.sum(axis=-2), x, x.ndim - 2), "cumulative sample loss")


def curvature_proxy(curvature) -> np.ndarray:
    """Input-loss curvature averaged over training (Garg, Ravikumar & Roy 2023/2024, Sec. 3):
    Curv_i = (1/K) Σ_{k} curv_k(x_i) over the K epochs at which ``jaxmem.train.records.
    input_curvature`` was recorded (its ``curvature`` field, the authors' per-epoch score, or
    ``trace_sq`` for the paper's squared form). The authors record every epoch (every 4th for
    ImageNet). Sign +1.

    Args: curvature: [K, N] or [M, K, N].
    Returns: [N] or [M, N] float64.
    """
    return _epoch_mean(curvature, "curvature", "curvature")


def class_normalize(score, labels) -> np.ndarray:
    """(s_i − μ_c) / σ_c with μ_c, σ_c the mean and population std (ddof=0) of the scores of
    the examples labelled c — VoG's class normalization (Agarwal et al. 2022, Sec. 2; chirag126/VOG
    uses ``np.mean`` / ``np.std``). Computed per model row; NaN scores are left out of the class
    statistics. A class with σ_c = 0 (e.g. a single example) gives NaN with a warning.

    Args: score: [N] or [M, N]; labels: int [N].
    Returns: float64, shaped like ``score``.
    """
    s = np.asarray(score, np.float64)
    lab = np.asarray(labels)
    if lab.shape != s.shape[-1:]:
        raise ValueError(f"labels must be [{s.shape[-1]}], got {lab.shape}")
    out = np.full(s.shape, np.nan)
    undefined = []
    for c in np.unique(lab):
        sel = lab == c
        sub = s[..., sel]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mu = np.nanmean(sub, axis=-1, keepdims=True)
            sd = np.nanstd(sub, axis=-1, keepdims=True)
        ok = np.isfinite(sd) & (sd > 0)
        if not ok.all():
            undefined.append(int(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[..., sel] = np.where(ok, (sub - mu) / np.where(ok, sd, 1.0), np.nan)
    if undefined:
        _warn(f"class-normalized scores are NaN for classes {undefined[:10]}: zero spread (one example or all equal)")
    return out


def _vog_reduce(var_blk, pixel_axes):
    """Per-pixel variance → VoG: mean over pixels of the per-pixel standard deviation."""
    return np.sqrt(var_blk).mean(axis=pixel_axes)


def vog(grads, *, pixel_ndim: int = 1, labels=None, normalize: bool = False) -> np.ndarray:
    """Variance of gradients, VoG (Agarwal, D'souza & Hooker 2022, "Estimating example
    difficulty using variance of gradients", Eq. 2).

    With S_t ∈ R^P the input gradient of the true-class pre-softmax logit at checkpoint
    t = 1..K (``jaxmem.train.records.true_logit_input_gradient``) and μ = (1/K) Σ_t S_t,

        VoG_p = sqrt((1/K) Σ_t (S_{t,p} − μ_p)²),   VoG = (1/P) Σ_p VoG_p,

    the per-pixel standard deviation (ddof=0) averaged over pixels, as in chirag126/VOG
    (``np.mean(np.sqrt(sum((g − mean)²) / K))``). ``normalize=True`` returns the class-normalized
    score (VoG − μ_c)/σ_c (:func:`class_normalize`), the paper's default. Larger = harder /
    more atypical (sign +1); with K = 1 every VoG is 0.

    Args:
      grads: [K, N, *P] or [M, K, N, *P]; ``pixel_ndim`` = len(P) (1 for flat inputs, 2 for
        channel-averaged images [H, W], 3 for [H, W, C]).
      labels: int [N], needed when ``normalize``.
    Returns: [N] or [M, N] float64.

    For N = 60,000 and K checkpoints, storing [K, N, P] gradients is K × 188 MB at P = 784 per
    model; ``jaxmem.train.records.vog_update`` folds them into running moments instead, and
    :func:`vog_from_moments` finishes the score.
    """
    g = _as_array(grads)
    if int(pixel_ndim) != pixel_ndim or pixel_ndim < 1:
        raise ValueError(f"pixel_ndim must be a positive integer, got {pixel_ndim!r}")
    lead = g.ndim - pixel_ndim - 2
    if lead not in (0, 1):
        raise ValueError(f"grads must be [K, N, *P] or [M, K, N, *P] with {pixel_ndim} pixel axes, got shape {g.shape}")
    k_axis = lead
    n = g.shape[lead + 1]
    pixel_axes = tuple(range(-pixel_ndim, 0))
    out = np.empty(g.shape[:lead] + (n,), np.float64)
    step = max(1, _BLOCK // max(1, int(np.prod(g.shape[lead + 2 :]))))
    for s in range(0, n, step):
        blk = np.asarray(g[(slice(None),) * (lead + 1) + (slice(s, s + step),)], dtype=np.float64)
        var = blk.var(axis=k_axis)  # [..., b, *P], ddof=0
        out[..., s : s + step] = _vog_reduce(var, pixel_axes)
    _warn_nan(out, "VoG")
    return _finish_vog(out, labels, normalize)


def vog_from_moments(m2, count, *, pixel_ndim: int = 1, labels=None, normalize: bool = False) -> np.ndarray:
    """VoG (:func:`vog`) from the running moments of ``jaxmem.train.records.VoGState``: the per-pixel
    variance is m2 / count (Welford), then the same pixel mean and optional class normalization.

    Args: m2: [N, *P] or [M, N, *P]; count: K, the number of checkpoints folded in (≥ 1).
    Returns: [N] or [M, N] float64.
    """
    m2 = _as_array(m2)
    k = int(np.asarray(count))
    if k < 1:
        raise ValueError(f"count must be >= 1 (checkpoints folded in), got {k}")
    lead = m2.ndim - pixel_ndim - 1
    if lead not in (0, 1):
        raise ValueError(f"m2 must be [N, *P] or [M, N, *P] with {pixel_ndim} pixel axes, got shape {m2.shape}")
    pixel_axes = tuple(range(-pixel_ndim, 0))
    n = m2.shape[lead]
    out = np.empty(m2.shape[:lead] + (n,), np.float64)
    step = max(1, _BLOCK // max(1, int(np.prod(m2.shape[lead + 1 :]))))
    for s in range(0, n, step):
        blk = np.asarray(m2[(slice(None),) * lead + (slice(s, s + step),)], dtype=np.float64)
        out[..., s : s + step] = _vog_reduce(np.maximum(blk, 0.0) / k, pixel_axes)  # m2 can round to −0
    _warn_nan(out, "VoG")
    return _finish_vog(out, labels, normalize)


def _finish_vog(out, labels, normalize):
    if not normalize:
        return out
    if labels is None:
        raise ValueError("normalize=True needs labels [N]")
    return class_normalize(out, labels)


# --------------------------------------------------------------------------------------------
# One table of names and directions


class ProxySpec(NamedTuple):
    record: str  # the input it needs (a jaxmem.train.records.EpochRecord field, or what else)
    fn: Callable  # the statistic, as its paper defines it
    sign: int  # +1: larger = more memorized/atypical; −1: larger = more typical
    paper: str


PROXIES: dict[str, ProxySpec] = {
    "cumulative_accuracy": ProxySpec(
        "correct", cumulative_accuracy, -1, "Jiang et al. 2021 (= cartography correctness)"
    ),
    "cumulative_confidence": ProxySpec(
        "p_true", cumulative_confidence, -1, "Jiang et al. 2021 (= cartography confidence)"
    ),
    "cartography_variability": ProxySpec("p_true", cartography_variability, +1, "Swayamdipta et al. 2020"),
    "forgetting": ProxySpec("correct", forgetting, +1, "Toneva et al. 2019"),
    "aum": ProxySpec("margin", aum, -1, "Pleiss et al. 2020"),
    "cumulative_sample_loss": ProxySpec("loss", cumulative_sample_loss, +1, "Ravikumar et al. 2025"),
    "curvature": ProxySpec("curvature (jaxmem.train.records.input_curvature)", curvature_proxy, +1, "Garg et al. 2024"),
    "vog": ProxySpec("true-logit input gradients [K, N, *P]", vog, +1, "Agarwal et al. 2022"),
}


def memorization_score(name: str, *args, **kwargs) -> np.ndarray:
    """``PROXIES[name].sign × PROXIES[name].fn(*args, **kwargs)``: the proxy oriented so that
    higher = more memorized/atypical (e.g. ``memorization_score("aum", margins)`` = −AUM)."""
    if name not in PROXIES:
        raise ValueError(f"unknown proxy {name!r}; known: {sorted(PROXIES)}")
    spec = PROXIES[name]
    return spec.sign * np.asarray(spec.fn(*args, **kwargs), dtype=np.float64)
