"""Scoring a finished language-model run (:mod:`jaxmem.train.lm` stored per-token signals instead
of logits): counterfactual memorization of every sequence, exact-match accuracy, extraction rates
by duplicate count, the LM attacks through the one driver, written to ``results/`` and
``summary.json`` like :func:`jaxmem.runs.score` (which calls :func:`score_lm` for such runs):

    results/memorization.csv   every training text, ranked: counterfactual memorization of
                               token accuracy (Zhang et al. 2021) ± stderr, of the mean token
                               log-likelihood, IN/OUT accuracies and NLLs, copies, duplicate and
                               planted counts, per-prefix extraction rate over IN / OUT models
    results/extraction.csv     extraction rate (Wilson 95%) by duplicate count and by planted
                               count, per prefix and suffix length, members and non-members; one
                               trial per (model, text)
    results/attacks.json       per-target attack metrics and their summary (``unit``: texts)
    results/memorization_hist.png, results/roc.png

The unit is the text: a text and its copies (planted or natural duplicates, one group of
``text.json``'s ``groups``) are ONE example in every number here: attacks, memorization,
extraction rates and exact match (:func:`jaxmem.estimators.lm.text_groups`, which the
experiments' tables, :mod:`jaxmem.analyses.lm_common`, use too). Each output says so
(``unit``).

Memorization's metric is each sequence's exact-match token accuracy (the fraction of target
tokens whose argmax is the true next token; Tirumala et al. 2022); ``mem_loglik`` uses −NLL.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import numpy as np

from jaxmem.attacks import AuditSpec, evaluate
from jaxmem.attacks.registry import LM_SIGNALS, get
from jaxmem.config import ConfigError
from jaxmem.data.tokenizers import from_config
from jaxmem.estimators.lm import (
    counterfactual_memorization_lm,
    exact_match_accuracy,
    extraction_rate_by_count,
    text_groups,
)
from jaxmem.io import load_json, save_json, save_text
from jaxmem.runs.store import load_run
from jaxmem.signals.lm import sequence_nll

__all__ = ["score_lm", "lm_audit_spec", "lm_signals", "per_text_signals", "target_mask", "sequence_nlls", "per_sequence",
           "extraction", "suffix_length_used", "scored_tokens", "lm_attacks", "reference_nll"]

_BLOCK = 1 << 25   # per-token values read at a time (float64: 256 MB)


def suffix_length_used(cfg) -> int:
    """The extraction suffix length a run's scoring uses: ``scoring.suffix_length`` (Carlini et al.
    2022's 50 tokens by default), clipped to what the sequences allow, ``data.max_len`` − the
    longest of ``scoring.prefix_lengths`` (validation guarantees >= 1)."""
    sc = cfg.scoring
    return int(max(1, min(int(sc.suffix_length), int(cfg.data.max_len) - max(sc.prefix_lengths))))


def lm_attacks(cfg) -> list:
    """The attacks a language-model run is scored with: ``scoring.attacks``, and
    ``reference_model`` whenever an external reference NLL is given (``scoring.reference_nll``)."""
    attacks = list(cfg.scoring.attacks)
    if cfg.scoring.reference_nll and "reference_model" not in attacks:
        attacks.append("reference_model")
    return attacks


def lm_audit_spec(cfg) -> AuditSpec:
    """The audit specification of a language-model run (:meth:`AuditSpec.from_scoring` with the
    attacks of :func:`lm_attacks`): what its scoring and :mod:`jaxmem.analyses.lm_mia` pass to the
    driver."""
    return AuditSpec.from_scoring(cfg.scoring, attacks=tuple(lm_attacks(cfg)))


def scored_tokens(cfg) -> str:
    """What the per-sequence scores of a run count, in words (written into its outputs)."""
    sc = cfg.scoring
    first = "the first text token" + ("" if sc.score_first_token else " NOT")
    eos = "EOS" + ("" if sc.score_eos else " NOT")
    return (f"target tokens after BOS: {first} scored, {eos} scored (scoring.score_first_token="
            f"{str(sc.score_first_token).lower()}, scoring.score_eos={str(sc.score_eos).lower()})")


def _has_eos(run, lengths, texts) -> np.ndarray:
    """bool [N]: the sequence ends with its EOS (a text cut at data.max_len has none)."""
    L = run.array("token_logp").shape[-1] + 1
    has = np.asarray(lengths) < L
    cut = np.flatnonzero(~has)
    if cut.size:
        tok = from_config(run.text["tokenizer"])
        for i in cut:
            has[i] = len(tok.encode(texts[i])) + 2 == L
    return has


def target_mask(run, test: bool = False) -> np.ndarray:
    """bool [N, L − 1] (``test``: [T, L − 1]): the positions whose next token counts, i.e.
    t + 1 < the sequence's length, less position 0 (the first text token) unless
    ``scoring.score_first_token`` and the EOS position unless ``scoring.score_eos``."""
    T = run.array("token_logp").shape[-1]
    lengths = np.asarray(run.test_labels if test else run.labels, np.int64)
    pos, n = np.arange(T)[None], lengths[:, None]
    m = pos < n - 1
    sc = run.config.scoring
    if not sc.score_first_token:
        m &= pos > 0
    if not sc.score_eos:
        texts = run.text["texts_test" if test else "texts_train"]
        m &= ~((pos == n - 2) & _has_eos(run, lengths, texts)[:, None])
    return m


def sequence_nlls(run, test: bool = False) -> np.ndarray:
    """float64 [M, N] (``test``: [M, T]): each model's mean token NLL of each sequence over the
    scored tokens (:func:`target_mask`): the stored ``nll`` when every target token is scored,
    else :func:`jaxmem.signals.lm.sequence_nll` of the stored per-token log-probabilities."""
    sc = run.config.scoring
    if sc.score_first_token and sc.score_eos:
        return np.asarray(run.array("test_nll" if test else "nll"), np.float64)
    lp = run.array("test_token_logp" if test else "token_logp")
    tm = target_mask(run, test)
    M, N, T = lp.shape
    out = np.empty((M, N))
    step = max(1, _BLOCK // max(1, N * T))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # (no target token: NaN, counted below)
        for a in range(0, M, step):
            out[a:a + step] = sequence_nll(np.asarray(lp[a:a + step], np.float64), tm)
    empty = int((tm.sum(1) == 0).sum())
    if empty:
        warnings.warn(f"{empty} sequences have no scored token ({scored_tokens(run.config)}); their NLL "
                      "is NaN", RuntimeWarning, stacklevel=2)
    return out


def lm_signals(run, names=None) -> dict:
    """The signals of :data:`jaxmem.attacks.registry.LM_SIGNALS` for :func:`jaxmem.attacks.evaluate`
    (``names``: only those; per-token arrays stay memory-mapped, model-independent ones are
    broadcast views): ``loss`` = NLL [M, N], ``phi`` = −NLL [M, N, 1], ``zlib_entropy`` [M, N],
    ``token_logp`` / ``token_mu`` / ``token_sigma`` [M, N, L − 1], ``token_mask`` [M, N, L − 1]
    (the scored tokens: :func:`target_mask`), ``reference_nll`` [M, N] (an external reference
    model's NLL, ``scoring.reference_nll``; only when given)."""
    sc = run.config.scoring
    names = [n for n in LM_SIGNALS if n != "reference_nll" or sc.reference_nll] if names is None else names
    nll = sequence_nlls(run)
    M, N = nll.shape
    out = {}
    for n in names:
        if n == "loss":
            out[n] = nll
        elif n == "phi":
            out[n] = -nll[..., None]
        elif n == "zlib_entropy":
            out[n] = np.broadcast_to(np.asarray(run.text["zlib_entropy"], np.float64), (M, N))
        elif n == "token_mask":
            tm = target_mask(run)
            out[n] = np.broadcast_to(tm, (M,) + tm.shape)
        elif n == "reference_nll":
            out[n] = np.broadcast_to(reference_nll(run.config, N), (M, N))
        elif n.startswith("token_"):
            out[n] = run.array(n)
        else:
            raise ValueError(f"{n!r} is not a language-model signal ({', '.join(LM_SIGNALS)})")
    return out


def reference_nll(cfg, N) -> np.ndarray:
    """float64 [N]: ``scoring.reference_nll``, an external reference model's NLL of each of the
    run's N training sequences.

    Raises:
      ConfigError: (one line naming ``scoring.reference_nll``) none is given, or it does not hold
        N values (checked by :func:`jaxmem.runs.execute` as soon as the data is built, before
        any training)."""
    path = cfg.scoring.reference_nll
    if not path:
        raise ConfigError("scoring.reference_nll: the attack reference_model needs an external reference "
                          "model's NLL of every training sequence (a .npy file)")
    r = np.asarray(np.load(path, allow_pickle=False), np.float64)
    if r.shape != (N,):
        raise ConfigError(f"scoring.reference_nll: {path} holds {r.shape}, the run has N = {N} training "
                          f"sequences (one NLL each, in text.json's texts_train order)")
    return r


def per_sequence(run) -> np.ndarray:
    """float64 [M, N]: each model's exact-match token accuracy on each training sequence (the
    fraction of its target tokens whose argmax is the true next token), read in blocks of models;
    NaN for a sequence with no scored token (:func:`target_mask`; :func:`sequence_nlls` warns)."""
    corr = run.array("token_correct")
    M, N, T = corr.shape
    tm = target_mask(run)
    n = tm.sum(1)
    out = np.empty((M, N))
    step = max(1, _BLOCK // max(1, N * T))
    for a in range(0, M, step):
        c = np.asarray(corr[a:a + step], bool)
        out[a:a + step] = np.where(n > 0, (c & tm).sum(-1) / np.maximum(n, 1), np.nan)
    return out


def extraction(run, k: int, s: int):
    """Greedy extraction from the k-token prefix (BOS included) of every training sequence
    (Carlini et al. 2022's k-extractability with an s-token suffix), from the stored
    ``token_correct``: ``(matched int16 [M, N], valid bool [N])``. ``matched`` counts the leading
    suffix tokens greedy decoding reproduces: prompted with a true prefix, decoding stays on the
    true sequence while each next-token argmax given the true preceding tokens is right, so it is
    the run of ones of ``token_correct[..., k - 1 : k - 1 + s]`` (equal to decoding with
    :func:`jaxmem.signals.lm.greedy_extraction` up to argmax ties and float rounding; tested).
    ``matched == s``: extracted. ``valid``: the sequence has k + s real tokens (others: matched 0,
    and they are left out of rates)."""
    corr = run.array("token_correct")
    M, N, _ = corr.shape
    valid = np.asarray(run.labels, np.int64) >= k + s
    out = np.zeros((M, N), np.int16)
    step = max(1, _BLOCK // max(1, N * s))
    for a in range(0, M, step):
        c = np.asarray(corr[a:a + step, :, k - 1:k - 1 + s], bool)
        run_len = np.cumprod(c, axis=-1, dtype=np.int16).sum(-1, dtype=np.int16)
        out[a:a + step] = np.where(valid, run_len, 0)
    return out, valid


def _rate_rows(tables, k, s, by, members):
    """extraction.csv's rows: one trial per (model, text), a text's copies merged."""
    rows = []
    for c, tr, sc, r, lo, hi, nseq in zip(*tables):
        rows.append({"prefix_length": k, "suffix_length": s, "by": by, "members": members, "count": int(c),
                     "trials": int(tr), "extracted": int(sc), "rate": float(r), "low": float(lo),
                     "high": float(hi), "texts": int(nseq), "unit": "(model, text) pair"})
    return rows


def _columns(x, cols, n_rows):
    """``x[:, cols]`` for a per-model array [M, N, ...] (read in blocks of models; ``x`` itself,
    still memory-mapped, when ``cols`` is every row in order)."""
    if len(cols) == n_rows:
        return x
    M = x.shape[0]
    out = np.empty((M, len(cols)) + tuple(x.shape[2:]), x.dtype)
    per = max(1, int(np.prod(x.shape[1:], dtype=np.int64)))
    step = max(1, _BLOCK // per)
    for a in range(0, M, step):
        out[a:a + step] = np.asarray(x[a:a + step])[:, cols]
    return out


def per_text_signals(run, names, tg) -> dict:
    """:func:`lm_signals` of the texts only (``tg``: :func:`jaxmem.estimators.lm.text_groups`):
    every signal at each text's first row, so that a text and its copies are one example. Without
    copies the arrays stay memory-mapped; with copies each per-token array asked for is read into
    memory at its texts' rows ([M, G, L − 1] in its stored dtype)."""
    sig = lm_signals(run, names)
    return {n: _columns(v, tg.first, tg.num_rows) for n, v in sig.items()}


def _exact_match(run, keep, ok, tg):
    """Exact-match accuracy (:func:`jaxmem.estimators.lm.exact_match_accuracy`) of the usable
    models over the texts, read in blocks of models: ``(acc_in [M_ok], acc_out [M_ok])``."""
    corr = run.array("token_correct")
    M, _, T = corr.shape
    tm = target_mask(run)[tg.first]
    models = np.flatnonzero(ok)
    step = max(1, _BLOCK // max(1, tg.num_texts * T))
    a_in, a_out = [], []
    for a in range(0, len(models), step):
        m = models[a:a + step]
        c = np.asarray(corr[m[0]:m[-1] + 1], bool)[m - m[0]][:, tg.first]
        r = exact_match_accuracy(keep[m][:, tg.first], c, tm)
        a_in.append(r.acc_in)
        a_out.append(r.acc_out)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
    return cat(a_in), cat(a_out)


def score_lm(workdir, *, log=print) -> dict:
    """Estimators, extraction tables and attacks of a finished language-model run (module
    docstring); returns the summary, which :func:`jaxmem.runs.score` commits as ``summary.json``
    (results/ and the summary as one set). Every number counts each text once: a text
    and its copies (one group of ``text.json``'s ``groups``) are one example
    (:func:`jaxmem.estimators.lm.text_groups`), as in the experiments' tables."""
    workdir = Path(workdir)
    run = load_run(workdir)
    cfg = run.config
    keep_rows = np.asarray(run.keep, bool)
    ok = ~np.asarray(run.diverged, bool)
    res = workdir / "results"
    res.mkdir(exist_ok=True)
    facts = run.text
    tg = text_groups(facts["groups"], keep=keep_rows)
    f = tg.first
    unit = tg.unit()
    keep = keep_rows[:, f]
    dup = np.asarray(facts["duplicate_count"], np.int64)[f]
    planted = np.asarray(facts["planted_count"], np.int64)[f]
    acc = per_sequence(run)[:, f]
    nll = sequence_nlls(run)[:, f]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = counterfactual_memorization_lm(keep, acc, model_mask=ok)
        mem_ll = counterfactual_memorization_lm(keep, -nll, model_mask=ok)
    ks, s = list(cfg.scoring.prefix_lengths), suffix_length_used(cfg)
    ext_in, ext_out, tables = {}, {}, []
    for k in ks:
        matched, valid = extraction(run, k, s)
        x = (matched == s)[:, f]
        use = valid[f][None] & ok[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            ext_in[k] = (x & use & keep).sum(0) / (use & keep).sum(0)
            ext_out[k] = (x & use & ~keep).sum(0) / (use & ~keep).sum(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for members in (True, False):
                tables += _rate_rows(extraction_rate_by_count(x, dup, keep=keep, members=members, valid=use),
                                     k, s, "duplicate_count", members)
                if (planted > 0).any():
                    sel = planted > 0
                    tables += _rate_rows(extraction_rate_by_count(
                        x[:, sel], planted[sel], keep=keep[:, sel], members=members, valid=use[:, sel]),
                        k, s, "planted_count", members)
    order = np.argsort(-np.nan_to_num(mem.mem, nan=-np.inf), kind="stable")
    _memorization_csv(res / "memorization.csv", run, tg, order, mem, mem_ll, acc, nll, keep, ok, dup,
                      planted, ext_in, ext_out, facts["texts_train"], s)
    _csv(res / "extraction.csv", tables)
    attack_summary, curves = {}, {}
    attacks = lm_attacks(cfg)
    if attacks:
        spec = lm_audit_spec(cfg)          # the one audit policy (and jaxmem.analyses.lm_mia's)
        sig = per_text_signals(run, sorted({n for a in spec.attacks for n in get(a).needs}), tg)
        ev = evaluate(sig, keep, spec=spec, model_mask=ok)
        stored = {**ev.to_json(), "audit": spec.to_json()}   # the image runs' layout (NaN as null)
        stored["unit"] = unit
        stored["scored_tokens"] = scored_tokens(cfg)
        stored["num_texts"], stored["num_sequences"] = tg.num_texts, tg.num_rows
        attack_summary = stored["summary"]
        curves = ev.curves() if ev.scores else {}
        save_json(res / "attacks.json", stored)
    figures = {}
    try:
        from jaxmem.runs.score import _plots  # (score imports this module: not at the top)

        figures = _plots(res, mem, curves)
    except Exception as e:  # plotting is a convenience; never lose a scored run to it
        log(f"warning: plotting failed: {e}")
    em_in, em_out = _exact_match(run, keep_rows, ok, tg)
    summary = _summary(cfg, workdir, run, tg, keep, ok, em_in, em_out, nll, mem, mem_ll, ks, s, ext_in,
                       ext_out, order, attack_summary,
                       {"memorization": str(res / "memorization.csv"),
                        "extraction": str(res / "extraction.csv"), **figures})
    return summary   # (jaxmem.runs.score commits it as summary.json, stamped with its scoring id)


def _nanmean(x) -> float | None:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _summary(cfg, workdir, run, tg, keep, ok, em_in, em_out, nll, mem, mem_ll, ks, s, ext_in, ext_out, order,
             attacks, files) -> dict:
    shard_meta = [load_json(d / "meta.json") for d in sorted((workdir / "shards").glob("models-*"))
                  if (d / "meta.json").exists()]
    seconds = float(sum(m["seconds"] for m in shard_meta if m["models"][1] <= len(keep)))
    k_ok = keep[ok]
    test_nll = sequence_nlls(run, test=True)[ok]
    test_groups = run.text.get("test_groups")
    if test_groups is not None:   # each held-out text once (its copies merged), as the train texts
        test_nll = test_nll[:, np.unique(np.asarray(test_groups), return_index=True)[1]]
    ids = np.asarray(run.example_ids)[tg.first]
    return {
        "name": cfg.name, "kind": "language_model", "num_models": int(keep.shape[0]),
        # the unit of every number below: a text (its copies merged: jaxmem.estimators.lm.text_groups)
        "unit": tg.unit(), "num_examples": tg.num_texts, "num_texts": tg.num_texts,
        "num_sequences": tg.num_rows, "num_test": int(test_nll.shape[1]),
        "num_test_sequences": int(len(run.test_labels)),
        "scored_tokens": scored_tokens(cfg),
        # exact-match accuracy (Tirumala et al. 2022; jaxmem.estimators.lm.exact_match_accuracy):
        # per model, correct / target tokens pooled over its IN (OUT) texts; mean over models
        "exact_match_definition": "per model: correct argmax tokens / target tokens, pooled over its IN "
                                  "(OUT) texts (Tirumala et al. 2022); mean over usable models",
        "exact_match_in": _nanmean(em_in), "exact_match_out": _nanmean(em_out),
        "train_nll_in": _nanmean(nll[ok][k_ok]), "train_nll_out": _nanmean(nll[ok][~k_ok]),
        "test_nll": _nanmean(test_nll),
        "train_seconds": seconds, "models_per_second": float(keep.shape[0] / seconds) if seconds else None,
        "diverged": {"count": int((~ok).sum()), "models": np.flatnonzero(~ok).tolist()},
        "memorization": {"metric": "token accuracy", "mean": _nanmean(mem.mem),
                         "mean_stderr": _nanmean(mem.stderr), "mean_loglik": _nanmean(mem_ll.mem),
                         "top10": [int(ids[i]) for i in order[:10]],
                         "top10_index": [int(tg.first[i]) for i in order[:10]],
                         "num_nan": int((~np.isfinite(mem.mem)).sum())},
        "extraction": {f"k{k}": {"prefix_length": k, "suffix_length": s,
                                 "suffix_length_requested": int(cfg.scoring.suffix_length),
                                 "rate_in": _nanmean(ext_in[k]), "rate_out": _nanmean(ext_out[k]),
                                 "scored_texts": int(np.isfinite(ext_in[k]).sum())} for k in ks},
        "attacks": attacks, "files": files,
    }


def _csv(path: Path, rows: list) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    save_text(path, buf.getvalue())


def _memorization_csv(path, run, tg, order, mem, mem_ll, acc, nll, keep, ok, dup, planted, ext_in, ext_out,
                      texts, suffix) -> None:
    """One row per text (its first row's ``index`` and ``example_id``; ``copies``: its rows)."""
    f = tg.first
    ids, lengths = np.asarray(run.example_ids)[f], np.asarray(run.labels)[f]
    texts = [texts[i] for i in f]
    k_ok = keep & ok[:, None]
    o_ok = ~keep & ok[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):   # (a diverged model's NaN left out)
        nll_in = np.where(k_ok, nll, 0.0).sum(0) / k_ok.sum(0)
        nll_out = np.where(o_ok, nll, 0.0).sum(0) / o_ok.sum(0)
    g = lambda x: float(x)
    rows = []
    for r, i in enumerate(order):
        row = {"rank": r + 1, "example_id": int(ids[i]), "index": int(f[i]), "copies": int(tg.copies[i]),
               "length": int(lengths[i]), "duplicate_count": int(dup[i]), "planted_count": int(planted[i]), "mem": g(mem.mem[i]),
               "stderr": g(mem.stderr[i]), "n_in": int(mem.n_in[i]), "n_out": int(mem.n_out[i]),
               "acc_in": g(mem.mean_in[i]), "acc_out": g(mem.mean_out[i]), "mem_loglik": g(mem_ll.mem[i]),
               "nll_in": g(nll_in[i]), "nll_out": g(nll_out[i])}
        row["suffix_length"] = suffix
        for k in ext_in:
            row[f"extracted_in_k{k}"] = g(ext_in[k][i])
            row[f"extracted_out_k{k}"] = g(ext_out[k][i])
        row["text"] = texts[i]
        rows.append(row)
    _csv(path, rows)
