"""Carlini et al. (2019), "The secret sharer": exposure of inserted secrets grows with their number
of insertions."""

from __future__ import annotations

import time

import numpy as np

from jaxmem.analyses.common import figure, spearman, write_csv
from jaxmem.io import load_json, save_json


def _train_one(cfg, m, repetitions, per_level, num_references, log) -> list:
    """Train language model ``m`` on the corpus with its own canaries; its rows (one per canary)."""
    from jaxmem.estimators import exposure_rank, exposure_skewnorm
    from jaxmem.train import lm

    text, meta = lm.corpus()
    t = cfg.train
    seed = cfg.seed + 1000 * m
    can = lm.make_canaries(seed, repetitions, per_level)
    full = lm.insert_canaries(text, can, seed)
    vocab = lm.Vocab.of(full)
    tokens = vocab.encode(full)
    context = 32
    steps = max(1, int(round(t.epochs * len(tokens) / (t.batch_size * context))))
    t0 = time.time()
    model, params, losses = lm.train_lm(tokens, len(vocab.chars), cfg.model, steps=steps,
                                        batch_size=t.batch_size, context=context,
                                        learning_rate=t.learning_rate, seed=seed)
    cl, rl = lm.secret_losses(model, params, vocab, can.secrets, num_references=num_references,
                              seed=seed)
    er = exposure_rank(cl, rl[None].repeat(len(cl), 0))
    es = exposure_skewnorm(cl, rl).exposure
    log(f"  LM {m}: {steps} steps in {time.time() - t0:.0f} s, final loss {losses[-20:].mean():.3f}")
    return [{"model": m, "repetitions": int(r), "canary_loss": float(cl[j]),
             "exposure_rank": float(er[j]), "exposure_skewnorm": float(es[j]),
             "final_train_loss": float(losses[-20:].mean()), "steps": steps,
             "corpus_chars": meta["chars"], "corpus_sha256": meta["sha256"]}
            for j, r in enumerate(can.repetitions)]


def analyze(cfg, workdir, runs, log, repetitions=(1, 2, 4, 8, 16), per_level=2,
            num_references=2000):
    """Exposure of each canary (rank among ``num_references`` random secrets, and the skew-normal
    extrapolation) against its number of insertions, over ``subsets.num_models`` language models.

    Uses ``model.{d_model,num_layers,num_heads}``, ``train.{learning_rate,batch_size,epochs}``
    (epochs = passes over the corpus, in windows of 32 characters), ``subsets.num_models``
    (language models, each with its own secrets) and ``seed``. Each model's rows are stored
    atomically in ``lms/model-MMMM.json`` when it is done, so a rerun resumes after the last
    finished model, as a run resumes after its last finished chunk.
    """
    rows = []
    for m in range(cfg.subsets.num_models):
        path = workdir / "lms" / f"model-{m:04d}.json"
        if path.exists():
            rows += load_json(path)
            continue
        mine = _train_one(cfg, m, repetitions, per_level, num_references, log)
        save_json(path, mine)
        rows += mine
    by_rep = []
    for r in sorted({x["repetitions"] for x in rows}):
        xs = [x for x in rows if x["repetitions"] == r]
        by_rep.append({"repetitions": r, "canaries": len(xs),
                       "exposure_rank": float(np.mean([x["exposure_rank"] for x in xs])),
                       "exposure_skewnorm": float(np.mean([x["exposure_skewnorm"] for x in xs]))})

    def draw(ax):
        ax.scatter([x["repetitions"] for x in rows], [x["exposure_skewnorm"] for x in rows],
                   s=10, alpha=0.5, label="canaries (skew-normal)")
        ax.plot([x["repetitions"] for x in by_rep], [x["exposure_rank"] for x in by_rep], "o-",
                label="mean rank exposure")
        ax.axhline(np.log2(num_references + 1), ls="--", color="gray", lw=0.8,
                   label="rank exposure ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("insertions of the canary")
        ax.set_ylabel("exposure (bits)")
        ax.legend(fontsize=7)

    files = {"exposure": figure(workdir / "exposure.png", draw),
             "canaries": write_csv(workdir / "canaries.csv", rows)}
    return {"rows": by_rep, "exposure_by_repetitions": by_rep,
            "spearman_exposure_vs_repetitions": spearman([x["repetitions"] for x in rows],
                                                         [x["exposure_skewnorm"] for x in rows]),
            "num_references": num_references, "max_rank_exposure": float(np.log2(num_references + 1)),
            "files": files}
