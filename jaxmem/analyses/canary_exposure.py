"""Carlini et al. (2019), "The secret sharer": exposure of inserted secrets grows with their number
of insertions. The language models are a run of the stacked trainer (causal LMs on a text with
secret canaries, ``data.canary_kind = "secret"``; :func:`jaxmem.data.text_transforms.insert_secrets`),
so each canary is IN for some models and OUT for the others: the OUT models give the exposure of
a secret the model never saw, the baseline the IN exposure is read against."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import figure, spearman, write_csv
from jaxmem.estimators import exposure_rank, exposure_skewnorm


def _sequence_losses(token_logp, lengths, rows) -> np.ndarray:
    """float64 [M, len(rows)]: −Σ_t log p over each sequence's target tokens (nats): the
    log-perplexity of the whole line (BOS-conditioned, its EOS included). Every candidate shares
    the prefix ``"my secret number is "``, so the ranking is the secret's."""
    lp = np.asarray(token_logp[:, rows], np.float64)
    n = np.asarray(lengths)[rows] - 1
    mask = np.arange(lp.shape[-1])[None] < n[:, None]
    return -np.where(mask, lp, 0.0).sum(-1)


def analyze(cfg, workdir, runs, log):
    """Exposure of every (model, canary) pair: rank among the run's reference secrets (Def. 4) and
    the skew-normal extrapolation (Sec. 4.3), against the canary's number of insertions, for the
    models that trained on it (IN) and those that did not (OUT)."""
    name, run = next(iter(runs.items()))
    facts = run.text
    count, which = np.asarray(facts["secret_count"]), np.asarray(facts["secret_index"])
    tref = np.asarray(facts["test_secret_index"])
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    secrets = np.unique(which[which >= 0])
    first = np.array([np.flatnonzero(which == j)[0] for j in secrets])
    refs = np.flatnonzero(tref <= -2)
    can = _sequence_losses(run.array("token_logp"), run.labels, first)          # [M, J]
    ref = _sequence_losses(run.array("test_token_logp"), run.test_labels, refs)  # [M, R]
    er = exposure_rank(can, ref[:, None, :])
    es = np.stack([exposure_skewnorm(can[m], ref[m]).exposure for m in range(len(can))])
    rows = [{"model": int(m), "secret": int(j), "repetitions": int(count[r]), "member": bool(keep[m, r]),
             "canary_loss": float(can[m, q]), "exposure_rank": float(er[m, q]),
             "exposure_skewnorm": float(es[m, q])}
            for m in np.flatnonzero(ok) for q, (j, r) in enumerate(zip(secrets, first))]
    by_rep = []
    for c in sorted({x["repetitions"] for x in rows}):
        row = {"repetitions": c}
        for side, member in (("in", True), ("out", False)):
            xs = [x for x in rows if x["repetitions"] == c and x["member"] == member]
            row[f"pairs_{side}"] = len(xs)
            row[f"exposure_rank_{side}"] = float(np.mean([x["exposure_rank"] for x in xs])) if xs else None
            row[f"exposure_skewnorm_{side}"] = float(np.mean([x["exposure_skewnorm"] for x in xs])) if xs else None
        by_rep.append(row)
    R = len(refs)
    inside = [x for x in rows if x["member"]]

    def draw(ax):
        for member, mk in ((True, "o-"), (False, "s--")):
            ys = [r[f"exposure_rank_{'in' if member else 'out'}"] for r in by_rep]
            ax.plot([r["repetitions"] for r in by_rep], [np.nan if y is None else y for y in ys], mk,
                    label=f"mean rank exposure, {'IN' if member else 'OUT'} models")
        ax.scatter([x["repetitions"] for x in inside], [x["exposure_skewnorm"] for x in inside], s=10, alpha=0.4,
                   label="IN pairs (skew-normal)")
        ax.axhline(np.log2(R + 1), ls="--", color="gray", lw=0.8, label="rank exposure ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("insertions of the canary")
        ax.set_ylabel("exposure (bits)")
        ax.legend(fontsize=7)

    files = {"exposure": figure(workdir / "exposure.png", draw),
             "canaries": write_csv(workdir / "canaries.csv", rows)}
    return {"rows": by_rep, "exposure_by_repetitions": by_rep,
            "spearman_exposure_vs_repetitions": spearman([x["repetitions"] for x in inside],
                                                         [x["exposure_skewnorm"] for x in inside]),
            "num_references": R, "max_rank_exposure": float(np.log2(R + 1)), "files": files}
