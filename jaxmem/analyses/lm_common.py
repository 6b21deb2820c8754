"""What the language-model analyses share: a scored LM run's per-sequence table (written by
:func:`jaxmem.runs.score_lm.score_lm`), extraction and memorization by count buckets, and a
run's parameter count."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np

from jaxmem.estimators.lm import extraction_rate_by_count, text_groups
from jaxmem.models import count_params, make_model
from jaxmem.runs.score_lm import extraction

__all__ = ["sequence_table", "texts", "by_count", "extraction_rates", "num_params", "mean_se"]


def texts(run):
    """The run's texts (:func:`jaxmem.estimators.lm.text_groups`: a text and its copies are one
    example), the same reduction the run's own scoring uses."""
    return text_groups(run.text["groups"], keep=run.keep)


def sequence_table(run) -> dict:
    """``results/memorization.csv`` of a scored LM run (one row per text) as columns in text order
    (of each text's first row): ``{column: array [G]}`` (numbers as float/int arrays, ``text`` as
    a list)."""
    with open(run.path / "results" / "memorization.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    out = {}
    for k in rows[0]:
        if k == "text":
            out[k] = [r[k] for r in rows]
        elif k in ("rank", "example_id", "index", "copies", "length", "suffix_length", "duplicate_count", "planted_count",
                   "n_in", "n_out"):
            out[k] = np.array([int(r[k]) for r in rows], np.int64)
        else:
            out[k] = np.array([float(r[k]) for r in rows])
    return out


def mean_se(x) -> tuple:
    """Mean and standard error (ddof 1) of the finite values; NaN when there are none (se: < 2)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if not x.size:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


def extraction_rates(run, k: int, s: int, counts, *, bins=None, select=None) -> list:
    """Extraction rate (Wilson 95%) of the IN and of the OUT (model, text) pairs per count
    bucket (:func:`jaxmem.estimators.lm.extraction_rate_by_count`), for the texts ``select``
    ([G] bool, per text of :func:`texts`; all by default; ``counts`` [G]): ``[{"count",
    "members", "trials", "extracted", "rate", "low", "high", "texts"}]`` (``texts``: the
    bucket's texts, each once)."""
    f = texts(run).first
    matched, valid = extraction(run, k, s)
    matched, valid = matched[:, f], valid[f]
    keep, ok = np.asarray(run.keep, bool)[:, f], ~np.asarray(run.diverged, bool)
    sel = np.ones(keep.shape[1], bool) if select is None else np.asarray(select, bool)
    use = (valid[None] & ok[:, None])[:, sel]
    out = []
    for members in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = extraction_rate_by_count((matched == s)[:, sel], np.asarray(counts)[sel], keep=keep[:, sel],
                                         members=members, valid=use, bins=bins)
        out += [{"count": int(c), "members": members, "trials": int(n), "extracted": int(e), "rate": float(r),
                 "low": float(lo), "high": float(hi), "texts": int(q)}
                for c, n, e, r, lo, hi, q in zip(*t)]
    return out


def by_count(table: dict, counts, select, bins, columns=("mem",)) -> list:
    """Mean ± standard error over texts of each ``columns`` of ``table`` (one row per text) per
    count bucket (``bins``: increasing lower edges), among the texts ``select``; ``texts``: how many."""
    counts = np.asarray(counts)
    rows = []
    for j, lo in enumerate(bins):
        hi = bins[j + 1] if j + 1 < len(bins) else None
        m = np.asarray(select, bool) & (counts >= lo) & ((counts < hi) if hi is not None else True)
        lo_, hi_ = (int(counts[m].min()), int(counts[m].max())) if m.any() else (int(lo), int(lo))
        row = {"count": lo_ if lo_ == hi_ else f"{lo_}-{hi_}", "texts": int(m.sum())}
        for c in columns:
            row[c], row[f"{c}_se"] = mean_se(np.asarray(table[c])[m])
        rows.append(row)
    return rows


def num_params(cfg, vocab_size: int, seq_len: int) -> int:
    """Trainable parameters of one model of ``cfg`` (no training: shapes only)."""
    import jax
    import jax.numpy as jnp

    model = make_model(cfg, vocab_size)
    v = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, seq_len), jnp.int32)), jax.random.key(0))
    return count_params(v)
