"""Label-noise detection helpers: flags and scores against the truly flipped labels, out-of-sample
predicted probabilities from a stack of models, and cleanlab's confident learning.

Scores follow the proxies' convention: higher = more likely mislabeled / more memorized (orient a
proxy with ``jaxmem.estimators.proxies.memorization_score`` first). ``flipped`` is a bool [N]
array, True where the planted noise changed the label.

cleanlab (Northcutt, Jiang & Chuang 2021, "Confident learning: estimating uncertainty in dataset
labels") is an optional dependency, imported only by :func:`cleanlab_flags` and
:func:`cleanlab_scores` (``pip install 'jaxmem[cleanlab]'``).

Imports only numpy and jaxmem.estimators (cleanlab lazily). The AUROC of a score for the flipped
labels, an attack metric, is :func:`jaxmem.analyses.label_noise.noise_auroc`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from jaxmem.estimators._common import InsufficientModelsWarning, as_model_mask, is_jax
from jaxmem.estimators.proxies import UndefinedProxyWarning

__all__ = [
    "PrecisionRecall",
    "cleanlab_flags",
    "cleanlab_scores",
    "flag_precision_recall",
    "flag_top_k",
    "out_of_sample_probs",
    "out_of_sample_votes",
]

# float64 elements of one block of models' probabilities in out_of_sample_probs (256 MB).
_OOS_BLOCK_ELEMENTS = 1 << 25


def _warn(msg: str) -> None:
    warnings.warn(msg, UndefinedProxyWarning, stacklevel=3)


def _flipped(flipped, n=None):
    f = np.asarray(flipped)
    if f.ndim != 1 or (n is not None and f.size != n):
        raise ValueError(
            f"flipped must be a bool array [N]{'' if n is None else f' with N = {n}'}, got shape {f.shape}"
        )
    return f.astype(bool)


class PrecisionRecall(NamedTuple):
    precision: float  # true positives / flagged (NaN when nothing is flagged)
    recall: float  # true positives / flipped (NaN when no label is flipped)
    f1: float  # 2PR / (P + R) (NaN when either is NaN; 0 when both are 0)
    num_flagged: int
    num_flipped: int
    num_true_positive: int


def flag_precision_recall(flagged, flipped) -> PrecisionRecall:
    """Precision and recall of a set of flagged examples against the truly flipped labels.

    Args: flagged, flipped: bool [N] (flagged may also be an index array of flagged examples).
    Returns: ``PrecisionRecall``; precision is NaN (with a warning) when nothing is flagged,
    recall is NaN (with a warning) when no label is flipped.
    """
    f = _flipped(flipped)
    fl = np.asarray(flagged)
    if fl.dtype != bool:
        idx = fl.astype(np.int64).ravel()
        if np.any(idx < 0) or np.any(idx >= f.size):
            raise ValueError(f"flagged indices must lie in [0, {f.size})")
        fl = np.zeros(f.size, bool)
        fl[idx] = True
    if fl.shape != f.shape:
        raise ValueError(f"flagged {fl.shape} and flipped {f.shape} differ in shape")
    nf, nt, tp = int(fl.sum()), int(f.sum()), int((fl & f).sum())
    if nf == 0:
        _warn("flag_precision_recall: nothing is flagged; precision is NaN")
    if nt == 0:
        _warn("flag_precision_recall: no label is flipped; recall is NaN")
    p = tp / nf if nf else np.nan
    r = tp / nt if nt else np.nan
    f1 = np.nan if np.isnan(p) or np.isnan(r) else (0.0 if p + r == 0 else 2 * p * r / (p + r))
    return PrecisionRecall(float(p), float(r), float(f1), nf, nt, tp)


def flag_top_k(score, k: int) -> np.ndarray:
    """Flag the k highest-scoring examples (e.g. k = the expected number of flipped labels).

    Ties at the k-th value are all flagged, so more than k may be flagged; NaN scores are never
    flagged. Args: score [N] (higher = more suspect), 1 ≤ k ≤ #non-NaN. Returns: bool [N].
    """
    s = np.asarray(score, np.float64).ravel()
    ok = ~np.isnan(s)
    if int(k) != k or not 1 <= k <= ok.sum():
        raise ValueError(f"k must be an integer in [1, {int(ok.sum())}] (examples with a score), got {k!r}")
    t = np.sort(s[ok])[::-1][int(k) - 1]
    return ok & (s >= t)


def _softmax64(z):
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _out_blocks(outputs, keep, model_mask, block_models, name, softmax=False):
    """Check ``outputs`` [M, N, C] against ``keep`` [M, N] and iterate over blocks of usable
    models: yields ``(block [b, N, C] float64, use [b, N])`` where ``use`` marks the OUT and
    finite (model, example) rows. Returns ``(N, C, blocks, dropped)``; ``dropped[0]`` counts the
    non-finite OUT rows left out once the blocks are consumed."""
    x = outputs if not is_jax(outputs) else np.asarray(outputs)
    if getattr(x, "ndim", None) != 3:
        raise ValueError(f"{name} must be [M, N, C], got shape {np.shape(x)}")
    m, n, c = x.shape
    kp = np.asarray(keep).astype(bool)
    if kp.shape != (m, n):
        raise ValueError(f"keep must be [{m}, {n}] to match {name} [M, N, C], got {kp.shape}")
    mask = as_model_mask(model_mask, m)
    if block_models is None:
        block_models = max(1, _OOS_BLOCK_ELEMENTS // max(1, n * c))
    if int(block_models) != block_models or block_models < 1:
        raise ValueError(f"block_models must be a positive integer, got {block_models!r}")
    dropped = [0]

    def blocks():
        for s in range(0, m, int(block_models)):
            rows = np.arange(s, min(s + int(block_models), m))
            rows = rows[mask[rows]]
            if rows.size == 0:
                continue
            blk = np.asarray(x[rows], dtype=np.float64)  # [b, N, C]
            if softmax:
                with np.errstate(invalid="ignore", over="ignore"):
                    blk = _softmax64(blk)
            finite = np.isfinite(blk).all(axis=-1)
            use = ~kp[rows]
            dropped[0] += int((use & ~finite).sum())
            yield np.where(finite[..., None], blk, 0.0), use & finite

    return n, c, blocks(), dropped


def _warn_out(fn: str, dropped: int, none, what: str) -> None:
    if dropped:
        warnings.warn(f"{fn}: {dropped} non-finite (model, example) outputs left out (diverged model? pass model_mask)",
                      UndefinedProxyWarning, stacklevel=3)
    if none.any():
        warnings.warn(f"{int(none.sum())} of {none.size} examples have no OUT model; {what}",
                      InsufficientModelsWarning, stacklevel=3)


def out_of_sample_probs(
    outputs, keep, *, from_logits: bool = True, model_mask=None, block_models: int | None = None
) -> np.ndarray:
    """Out-of-sample predicted probabilities from a stack: for each example, the mean softmax of
    the models that did NOT train on it (``keep[m, i] == False``).

    This is what confident learning needs (Northcutt et al. 2021, Sec. 3: p̂(ỹ = j; x, θ)
    out of sample, usually by K-fold cross-validation); a stack's OUT models give it for free
    (each example is held out by about half the models of a balanced design).

    The models are streamed in blocks of ``block_models`` (default: as many as keep one block's
    float64 probabilities under 256 MB; N = 60,000, C = 10: 55 models), so ``outputs`` can be a
    memmap of the run's logits and all models' float64 probabilities never exist at once.
    (model, example) rows that are not finite (a diverged model) are left out, with a warning;
    pass ``model_mask`` to drop such models entirely.

    Args:
      outputs: [M, N, C] logits (``from_logits=True``) or probabilities (rows summing to 1),
        any float dtype (float16 logits are fine); for stored logits with augmentation queries
        [M, N, A, C], pass the identity query ``[:, :, 0]``.
      keep: bool [M, N].
      model_mask: bool [M] models to use (default all).
    Returns:
      [N, C] float64; rows of examples that no (usable) model held out are NaN, with an
      ``InsufficientModelsWarning``.
    """
    n, c, blocks, dropped = _out_blocks(outputs, keep, model_mask, block_models, "outputs", softmax=from_logits)
    total = np.zeros((n, c))
    count = np.zeros(n)
    for blk, use in blocks:
        total += np.einsum("bn,bnc->nc", use.astype(np.float64), blk)
        count += use.sum(axis=0)
    none = count == 0
    _warn_out("out_of_sample_probs", dropped[0], none, "their out-of-sample probabilities are NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(none[:, None], np.nan, total / np.maximum(count, 1)[:, None])


def out_of_sample_votes(logits, keep, *, model_mask=None, block_models: int | None = None) -> np.ndarray:
    """For each example, how many of the models that did NOT train on it predict each class:
    ``votes[i, c] = #{m : keep[m, i] == False, argmax_j z_m[i, j] == c}`` (first maximum on
    ties, as ``np.argmax``). ``votes.argmax(1)`` is the OUT-majority prediction used to relabel
    suspected label errors (ties to the lowest class); ``votes.sum(1)`` the number of OUT models.

    (model, example) rows with a non-finite logit (a diverged model) are left out, with a
    warning; pass ``model_mask`` to drop such models entirely. Streamed over blocks of models
    like :func:`out_of_sample_probs` (memmaps and float16 logits are fine).

    Args: logits: [M, N, C] (the identity query ``[:, :, 0]`` of stored [M, N, A, C] logits);
      keep: bool [M, N]; model_mask: bool [M].
    Returns: int64 [N, C]; examples that no usable model held out have a zero row, with an
    ``InsufficientModelsWarning``.
    """
    n, c, blocks, dropped = _out_blocks(logits, keep, model_mask, block_models, "logits")
    votes = np.zeros((n, c), np.int64)
    for blk, use in blocks:
        pred = np.argmax(blk, axis=-1)   # [b, N]
        for u, pr in zip(use, pred):
            np.add.at(votes, (np.flatnonzero(u), pr[u]), 1)
    _warn_out("out_of_sample_votes", dropped[0], votes.sum(1) == 0, "they have no votes")
    return votes


def _check_pred_probs(pred_probs, labels):
    p = np.asarray(pred_probs, np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"pred_probs must be [N, C], got shape {p.shape}")
    if y.shape != (p.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers [N] with N = {p.shape[0]}, got shape {y.shape}, dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]}) (C = {p.shape[1]} classes)")
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        raise ValueError(
            f"pred_probs has {int(bad.sum())} rows with NaN/inf (examples without an OUT model?); drop them first"
        )
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("pred_probs rows must be probabilities (non-negative, summing to 1)")
    return p, y.astype(np.int64)


def _cleanlab():
    try:
        import cleanlab
        import cleanlab.filter
        import cleanlab.rank
    except ImportError as e:
        raise ImportError(
            "cleanlab is needed for confident learning: pip install 'jaxmem[cleanlab]' (or pip install cleanlab)"
        ) from e
    return cleanlab


def cleanlab_flags(
    pred_probs, labels, *, filter_by: str = "prune_by_noise_rate", n_jobs: int = 1, **kwargs
) -> np.ndarray:
    """Confident-learning label-issue flags: ``cleanlab.filter.find_label_issues``.

    Northcutt et al. (2021), Sec. 3: estimate the confident joint of noisy and true labels from
    out-of-sample predicted probabilities (per-class thresholds t_j = mean p̂_j over examples
    labelled j) and prune the off-diagonal mass; ``filter_by`` picks the pruning rule
    (cleanlab's default ``"prune_by_noise_rate"``; also ``"prune_by_class"``, ``"both"``,
    ``"confident_learning"``, ``"predicted_neq_given"``); other keyword arguments go to
    ``find_label_issues`` unchanged. ``n_jobs`` defaults to 1 (cleanlab's default forks one
    worker per core, and forking a process in which JAX has started its threads can deadlock).

    Args:
      pred_probs: [N, C] out-of-sample probabilities (e.g. :func:`out_of_sample_probs`), every row
        finite and summing to 1.
      labels: int [N] in [0, C) — the given (possibly noisy) labels.
    Returns: bool [N], True for a suspected label issue.
    """
    cl = _cleanlab()
    p, y = _check_pred_probs(pred_probs, labels)
    flags = cl.filter.find_label_issues(labels=y, pred_probs=p, filter_by=filter_by, n_jobs=n_jobs, **kwargs)
    return np.asarray(flags, dtype=bool)


def cleanlab_scores(pred_probs, labels, *, method: str = "self_confidence", **kwargs) -> np.ndarray:
    """1 − cleanlab's label quality score (``cleanlab.rank.get_label_quality_scores``): higher =
    more likely mislabeled, for AUROC comparisons with the proxies. ``method``:
    "self_confidence" (1 − p̂_y), "normalized_margin" or "confidence_weighted_entropy".

    Returns: [N] float64.
    """
    cl = _cleanlab()
    p, y = _check_pred_probs(pred_probs, labels)
    q = cl.rank.get_label_quality_scores(labels=y, pred_probs=p, method=method, **kwargs)
    return 1.0 - np.asarray(q, np.float64)
