"""Language-model memorization estimators: pure array functions (NumPy / SciPy).

* :func:`counterfactual_memorization_lm`: Zhang et al. (2021)'s counterfactual memorization of
  each sequence with its standard error, from a per-token metric [M, N, T] + mask (token accuracy
  by default: then ``mean_in`` is Tirumala et al. 2022's exact-match accuracy on training
  sequences) or any per-sequence metric [M, N]. It reduces tokens to sequences and calls
  :func:`jaxmem.estimators.counterfactual_memorization` (the one Feldman–Zhang estimator).
* :func:`text_groups`: the one per-text reduction of a language-model run: copies of a text (rows
  of one group: planted or natural duplicates) are ONE example wherever membership is evaluated
  (attacks, counterfactual memorization, extraction rates, exact match); every other estimator
  here is called on the texts' first rows (``TextGroups.first``).
* :func:`exact_match_accuracy`: Tirumala et al. (2022)'s M(f) per model, pooled over the tokens of
  the IN (training) and of the OUT sequences.
* :func:`extraction_rate_by_count`: the extraction rate per duplicate-count bucket, with a Wilson
  or Clopper–Pearson interval (Carlini et al. 2022; Kandpal et al. 2022).
* :func:`loglog_slope`, :func:`loglinear_slope` (:mod:`jaxmem.estimators.lm_trends`): trends
  against duplicate count (log-log, Kandpal et al. 2022) and against model size or prefix length
  (log-linear, Carlini et al. 2022), with bootstrap intervals.

Imports numpy, scipy (lazily), :mod:`jaxmem.estimators.memorization`,
:func:`jaxmem.estimators.intervals.clopper_pearson` and :func:`jaxmem.signals.lm.masked_mean` only.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Integer, Real, Shaped

from jaxmem.estimators._common import InsufficientModelsWarning
from jaxmem.estimators.intervals import INTERVALS
from jaxmem.estimators.lm_trends import LogLinearSlope, LogLogSlope, _buckets, loglinear_slope, loglog_slope
from jaxmem.estimators.memorization import (
    MemorizationResult,
    counterfactual_memorization,
)
from jaxmem.signals.lm import masked_mean

__all__ = [
    "TextGroups",
    "text_groups",
    "counterfactual_memorization_lm",
    "exact_match_accuracy",
    "ExactMatch",
    "RateTable",
    "extraction_rate_by_count",
    "LogLogSlope",
    "loglog_slope",
    "LogLinearSlope",
    "loglinear_slope",
]


class TextGroups(NamedTuple):
    first: Integer[np.ndarray, " G"]  # int64, increasing: the row of each text's first copy
    copies: Integer[np.ndarray, " G"]  # int64: rows (copies) of each text in the training set
    text_of_row: Integer[np.ndarray, " N"]  # int64: the text (0..G-1) of each row

    @property
    def num_texts(self) -> int:
        return int(len(self.first))

    @property
    def num_rows(self) -> int:
        return int(len(self.text_of_row))

    def unit(self) -> str:
        """The line every LM output carries: what one example is."""
        return (f"text group: {self.num_texts} texts, {self.num_rows} training sequences "
                f"({self.num_rows - self.num_texts} copies merged into their text)")


def text_groups(groups: Shaped[ArrayLike, " N"], keep: Bool[ArrayLike, "M N"] | None = None) -> TextGroups:
    """The texts of a language-model training set: each group of rows (a text and its copies,
    ``TextData.groups``: one id per distinct sequence) is one example. A text is represented by
    its first row: copies are the same token sequence, so every model gives them the same signals,
    and the design draws membership per text, so they share their keep column.

    Args:
      groups: [N] int, the text (group id) of every training row.
      keep: [M, N] bool, optional: checked to be equal across the copies of each text.

    Returns:
      :class:`TextGroups` (``first`` [G] in row order, ``copies`` [G], ``text_of_row`` [N]).

    Raises:
      ValueError: ``groups`` is not [N], or ``keep`` differs between copies of one text (copies
        that are IN and OUT of one model are not one example: such a design cannot be scored
        per text).
    """
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be [N], got shape {g.shape}")
    _, first, inv, copies = np.unique(g, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")        # texts in the order of their first row
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    tg = TextGroups(first[order].astype(np.int64), copies[order].astype(np.int64),
                    rank[inv.reshape(-1)].astype(np.int64))
    if keep is not None:
        k = np.asarray(keep, bool)
        if k.ndim != 2 or k.shape[1] != g.size:
            raise ValueError(f"keep must be [M, N = {g.size}], got {k.shape}")
        bad = np.flatnonzero(np.any(k != k[:, tg.first][:, tg.text_of_row], axis=0))
        if bad.size:
            raise ValueError(f"keep differs between copies of one text ({bad.size} rows, e.g. row "
                             f"{int(bad[0])}): membership must be drawn per text")
    return tg


def _per_sequence(metric, mask):
    metric = np.asarray(metric)
    if metric.ndim == 3:
        if mask is None:
            raise ValueError("a per-token metric [M, N, T] needs its target mask ([N, T] or [M, N, T])")
        m = np.asarray(mask, bool)
        if m.shape not in (metric.shape, metric.shape[1:]):
            raise ValueError(f"mask {m.shape} must be [N, T] = {metric.shape[1:]} or [M, N, T] = {metric.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            per = masked_mean(metric, m)
        empty = int(np.sum(np.broadcast_to(m, metric.shape).sum(-1) == 0))
        if empty:
            warnings.warn(f"{empty} (model, sequence) pairs have no target token; their metric is NaN",
                          InsufficientModelsWarning, stacklevel=3)
        return per
    if metric.ndim == 2:
        if mask is not None:
            raise ValueError("mask is for per-token metrics [M, N, T]; this metric is [M, N]")
        return metric
    raise ValueError(f"metric must be [M, N] (per sequence) or [M, N, T] (per token), got {metric.shape}")


def counterfactual_memorization_lm(
    keep: Bool[ArrayLike, "M N"],
    metric: Shaped[ArrayLike, "M N ..."],
    mask: Bool[ArrayLike, "*_M N L"] | None = None,
    *,
    model_mask: Bool[ArrayLike, " M"] | None = None,
    dtype=None,
    block: int | None = None,
) -> MemorizationResult:
    """Counterfactual memorization of each sequence (Zhang et al. 2021, "Counterfactual
    memorization in neural language models", Eq. 1):

        mem(x) = E_{S ∋ x}[M(f_S, x)] − E_{S ∌ x}[M(f_S, x)],

    estimated by the IN and OUT model means, with stderr sqrt(s²_in/n_in + s²_out/n_out).

    Args:
      keep: [M, N] bool, model m trained on sequence i.
      metric: [M, N, L] per-token metric with ``mask`` (Zhang et al. use per-token accuracy:
        ``TokenSignals.correct``; or ``TokenSignals.logp``), reduced to a per-sequence mean over
        the target tokens; or [M, N] any per-sequence metric (−NLL, token accuracy, extraction
        length), used as is.
      mask: [N, L] or [M, N, L] bool target mask, for a per-token metric only.
      model_mask, dtype, block: as :func:`jaxmem.estimators.memorization` (float64 when the
        metric is float64 NumPy).

    Returns:
      :class:`jaxmem.estimators.MemorizationResult` (``mem``, ``stderr``, ``n_in``, ``n_out``,
      ``mean_in``, ``mean_out``, each [N]). With token accuracy, ``mean_in`` is the exact-match
      token accuracy of the models that trained on the sequence (Tirumala et al. 2022) and
      ``mean_out`` that of the models that did not. NaN (with ``InsufficientModelsWarning``) for
      a sequence without an IN or an OUT model, or without target tokens.

    Raises:
      ValueError: ``metric`` neither [M, N] nor [M, N, L]; a per-token metric without ``mask``
        (or a per-sequence one with it); ``mask`` neither [N, L] nor [M, N, L]; the inputs of
        :func:`jaxmem.estimators.memorization`.

    References:
      Zhang et al. (2021), "Counterfactual memorization in neural language models", Eq. (1);
      Tirumala et al. (2022), "Memorization without overfitting".
    """
    per = _per_sequence(metric, mask)
    return counterfactual_memorization(keep, per, model_mask=model_mask, dtype=dtype, block=block)


class ExactMatch(NamedTuple):
    acc_in: Float[np.ndarray, " M"]  # correct / target tokens over the model's training (IN) sequences
    acc_out: Float[np.ndarray, " M"]  # the same over its held-out (OUT) sequences
    tokens_in: Integer[np.ndarray, " M"]  # int64 target tokens counted for acc_in
    tokens_out: Integer[np.ndarray, " M"]  # int64 target tokens counted for acc_out


def exact_match_accuracy(
    keep: Bool[ArrayLike, "M N"], correct: Real[ArrayLike, "M N L"], mask: Bool[ArrayLike, "*_M N L"]
) -> ExactMatch:
    """Exact-match memorization per model (Tirumala et al. 2022, "Memorization without overfitting"):
    M(f) = the fraction of (context, next token) pairs of the training set whose argmax
    prediction is the true next token, pooled over all target tokens of the IN sequences (and, for
    comparison, of the OUT sequences).

    Args:
      keep: [M, N] bool, True where model m trained on sequence i.
      correct: [M, N, L] 1.0/0.0 per token (``TokenSignals.correct``).
      mask: [N, L] or [M, N, L] bool target mask.

    Returns:
      :class:`ExactMatch` (``acc_in``, ``acc_out``, ``tokens_in``, ``tokens_out``, each [M]); NaN
      (with a warning) for a model without IN (or OUT) tokens or with a NaN among its counted
      tokens.

    Raises:
      ValueError: ``correct`` not [M, N, L] or ``keep`` not [M, N].

    References:
      Tirumala et al. (2022), "Memorization without overfitting: analyzing the training dynamics
      of large language models", NeurIPS.
    """
    keep = np.asarray(keep, bool)
    c = np.asarray(correct, np.float64)
    if c.ndim != 3 or keep.shape != c.shape[:2]:
        raise ValueError(f"correct must be [M, N, T] and keep [M, N]; got {c.shape} and {keep.shape}")
    m = np.broadcast_to(np.asarray(mask, bool), c.shape)
    res = []
    for member in (keep, ~keep):
        sel = m & member[..., None]
        n = sel.sum((1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.where(sel, c, 0.0).sum((1, 2)) / n
        res.append((np.where(n > 0, acc, np.nan), n.astype(np.int64)))
    bad = int(np.sum(~np.isfinite(res[0][0])) + np.sum(~np.isfinite(res[1][0])))
    if bad:
        warnings.warn(f"exact_match_accuracy: {bad} of {2 * c.shape[0]} accuracies are NaN (no IN/OUT "
                      "target token, or a NaN among them)", InsufficientModelsWarning, stacklevel=2)
    return ExactMatch(res[0][0], res[1][0], res[0][1], res[1][1])


class RateTable(NamedTuple):
    counts: Real[np.ndarray, " B"]  # bucket: the duplicate count (or the bucket's lower edge)
    trials: Integer[np.ndarray, " B"]  # int64 (model, sequence) pairs in the bucket
    successes: Integer[np.ndarray, " B"]  # int64 extracted pairs
    rate: Float[np.ndarray, " B"]  # successes / trials (NaN for an empty bucket)
    low: Float[np.ndarray, " B"]  # interval bounds at level 1 − alpha (NaN for an empty bucket)
    high: Float[np.ndarray, " B"]
    sequences: Integer[np.ndarray, " B"]  # int64 distinct sequences with at least one trial


def extraction_rate_by_count(extracted: Bool[ArrayLike, "*_M N"], counts: Real[ArrayLike, " N"], *,
                             keep: Bool[ArrayLike, "*_M N"] | None = None, members: bool = True,
                             valid: Bool[ArrayLike, "*_M N"] | None = None, bins=None,
                             method: str = "wilson", alpha: float = 0.05) -> RateTable:
    """Extraction rate per duplicate-count bucket (Carlini et al. 2022; Kandpal et al.
    2022), with a binomial interval.

    Each (model, sequence) pair is a trial: with ``keep`` only the pairs where the model trained on
    the sequence (``members=True``; ``members=False``: only held-out pairs, the baseline of
    sequences that are extractable without having been seen). The interval is Wilson's score
    interval (``method="wilson"``, scipy's ``binomtest(...).proportion_ci``) or the exact
    Clopper–Pearson interval (``"clopper_pearson"``, :func:`jaxmem.estimators.clopper_pearson`).
    Both treat the trials as independent; pairs of one sequence across models are not (a stratified
    bootstrap over sequences, :func:`loglog_slope`, accounts for that).

    Args:
      extracted: [M, N] or [N] bool (``Extraction.extracted`` per model).
      counts: [N] int, the duplicate count of each sequence (``jaxmem.data.text_transforms.duplicate_counts``).
      keep: [M, N] bool or None (every pair is a trial).
      valid: [N] or [M, N] bool, pairs that could be scored (``Extraction.valid``); others skipped.
      bins: None (one bucket per distinct count) or increasing lower edges (e.g. 1, 2, 4, 8, ...:
        bucket j holds edges[j] <= count < edges[j+1]; counts below edges[0] are skipped).
      members: with ``keep``, True counts the IN pairs, False the held-out ones.
      method: "wilson" or "clopper_pearson".
      alpha: 1 − the interval's level, in (0, 1).

    Returns:
      :class:`RateTable`, each field [B] (B buckets); an empty bucket has NaN rate and interval
      (with a warning).

    Raises:
      ValueError: an unknown ``method``, alpha outside (0, 1), or shapes that disagree.

    References:
      Carlini et al. (2022), "Quantifying memorization across neural language models"; Kandpal
      et al. (2022), "Deduplicating training data mitigates privacy risks in language models".
    """
    if method not in INTERVALS:
        raise ValueError(f"method must be one of {', '.join(map(repr, INTERVALS))}, got {method!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    x = np.asarray(extracted)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"extracted must be [M, N] or [N], got {np.shape(extracted)}")
    x = x.astype(bool)
    edges, b = _buckets(counts, bins)
    if len(b) != x.shape[1]:
        raise ValueError(f"counts has {len(b)} sequences, extracted {x.shape[1]}")
    use = np.ones(x.shape, bool)
    if keep is not None:
        k = np.asarray(keep, bool)
        if k.shape != x.shape:
            raise ValueError(f"keep {k.shape} must have the shape of extracted {x.shape}")
        use &= k if members else ~k
    if valid is not None:
        use &= np.broadcast_to(np.asarray(valid, bool), x.shape)
    use &= (b >= 0)[None]
    B = len(edges)
    bb = np.broadcast_to(b, x.shape)
    trials = np.bincount(bb[use], minlength=B)[:B].astype(np.int64)
    succ = np.bincount(bb[use & x], minlength=B)[:B].astype(np.int64)
    seqs = np.bincount(b[use.any(0)], minlength=B)[:B].astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(trials > 0, succ / np.maximum(trials, 1), np.nan)
    lo, hi = INTERVALS[method](succ, trials, alpha)
    lo, hi = np.where(trials > 0, lo, np.nan), np.where(trials > 0, hi, np.nan)
    empty = int(np.sum(trials == 0))
    if empty:
        warnings.warn(f"extraction_rate_by_count: {empty} of {B} buckets have no trial; their rate is NaN",
                      InsufficientModelsWarning, stacklevel=2)
    return RateTable(edges, trials, succ, rate, lo, hi, seqs)

