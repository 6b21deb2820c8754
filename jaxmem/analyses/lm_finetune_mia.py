"""Membership inference on fine-tuned pretrained language models with ground truth: M LoRA
adapters of one frozen pretrained model (SmolLM2-135M by default; :mod:`jaxmem.train.lora`),
each fine-tuned on a random half of a corpus, every adapter the target in turn. Members and
non-members are random halves of one corpus (no distribution shift: Duan et al. 2024), so the
question "do reference-based attacks beat reference-free ones on fine-tuned models?" has an
answer that is not an artefact of the split.

Attacks: reference-free (loss, zlib, Min-K%, Min-K%++: :data:`jaxmem.analyses.lm_mia.REFERENCE_FREE`),
the pretrained base as an EXTERNAL reference model (Carlini et al. 2021: the ratio of the target's
log-perplexity to the base's, and the difference; :func:`jaxmem.attacks.lm_reference.reference_ratio` with
every reference OUT), and the other adapters as shadows: their OUT mean NLL ("reference"), LiRA
(Carlini et al. 2022) and RMIA (Zarifzadeh et al. 2024; p(x | θ) = exp(−mean token NLL), the
held-out texts as its population). Per text: counterfactual memorization (Zhang et al. 2021; the
run's ``results/memorization.csv``), with the base's NLL beside it.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from jaxmem.analyses.common import rmia_tuning, spearman, write_csv
from jaxmem.analyses.lm_common import sequence_table
from jaxmem.analyses.lm_mia import REFERENCE_FREE
from jaxmem.attacks import AuditSpec, evaluate
from jaxmem.attacks.lm_reference import reference_ratio
from jaxmem.attacks.registry import get
from jaxmem.data import build_dataset
from jaxmem.io import save_text
from jaxmem.runs.lm_signals import base_nll
from jaxmem.runs.score_lm import lm_signals

__all__ = ["analyze", "external_reference_scores", "lm_rmia_signals", "EXTERNAL", "RMIA"]

#: The pretrained base as an external reference model (Carlini et al. 2021), two calibrations.
EXTERNAL = ("base_reference_ratio", "base_reference_difference")
#: RMIA on sequence likelihoods, the other adapters as reference models.
RMIA = ("rmia_offline", "rmia_online")


def external_reference_scores(target_nll, base_nll, mode: str = "ratio") -> np.ndarray:
    """Scores [T, N] (higher = member) of each target's NLL calibrated by ONE external reference
    model's NLL (the pretrained base, which trained on none of the fine-tuning texts):
    :func:`jaxmem.attacks.lm_reference.reference_ratio` with ``reference_keep=None`` per target row
    (``mode="ratio"``: NLL_base / NLL_target, Carlini et al. 2021's ratio of log-perplexities;
    ``"difference"``: NLL_base − NLL_target).

    Args:
      target_nll: [T, N] mean token NLL of each target on each text.
      base_nll: [N] the same under the base model.
    """
    t = np.asarray(target_nll, np.float64)
    return np.stack([reference_ratio(row, base_nll, None, mode=mode) for row in t]) if t.size else t


def lm_rmia_signals(nll, test_nll) -> dict:
    """RMIA's signals for a language-model stack: ``p`` [M, N] = exp(−NLL) (the geometric-mean
    probability of a text's tokens, length-normalized so that texts of different lengths compare)
    and ``p_pop`` [M, Z] the same on the held-out texts (the population no model trained on)."""
    return {"p": np.exp(-np.asarray(nll, np.float64)), "p_pop": np.exp(-np.asarray(test_nll, np.float64))}


def _kind(a):
    if a in REFERENCE_FREE:
        return "reference-free"
    return "external reference (base)" if a in EXTERNAL else "shadow adapters"


def analyze(cfg, workdir, runs, log):
    """Per variant and attack: AUC and TPR at 0.1% / 1% FPR (means over every usable adapter as
    the target; each distinct text counted once), and per text counterfactual memorization beside
    the base model's NLL (``texts.csv``)."""
    attacks = list(cfg.scoring.attacks)
    rows, text_rows = [], []
    for name, run in runs.items():
        rcfg = run.config
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        log(f"{name}: the base model's NLL on the {keep.shape[1]} training texts (external reference)")
        ds = build_dataset(rcfg)      # the run's token sequences (the same config, the same data)
        if not np.array_equal(np.asarray(ds.y_train), np.asarray(run.labels)):
            raise ValueError(f"{name}: the rebuilt data differ from the run's (lengths)")
        base = base_nll(rcfg, int(ds.num_classes), ds.x_train, ds.y_train)
        nll = np.asarray(run.array("nll"), np.float64)
        # the run's audit spec (its scoring's: targets, RMIA's a tuned per target by default),
        # with RMIA on sequence likelihoods added to its attacks
        spec = AuditSpec.from_scoring(rcfg.scoring, attacks=tuple(attacks) + RMIA)
        sig = lm_signals(run, sorted({n for a in attacks for n in get(a).needs}))
        sig.update(lm_rmia_signals(nll, run.array("test_nll")))
        ev = evaluate(sig, keep, spec=spec, model_mask=ok)
        for mode, a in zip(("ratio", "difference"), EXTERNAL):
            ev.scores[a] = external_reference_scores(nll[ev.targets], base, mode)
        groups = np.asarray(run.text["groups"])
        first = np.zeros(len(groups), bool)
        first[np.unique(groups, return_index=True)[1]] = True
        for a, m in ev.table(first).items():
            rows.append({"variant": name, "attack": a, "kind": _kind(a), **m,
                         "rmia_tuning": rmia_tuning(ev, a)})
        seq = sequence_table(run)
        idx = np.asarray(seq["index"])
        for j, i in enumerate(idx):
            if first[i]:
                text_rows.append({"variant": name, "index": int(i), "mem": seq["mem"][j],
                                  "mem_loglik": seq["mem_loglik"][j], "nll_in": seq["nll_in"][j],
                                  "nll_out": seq["nll_out"][j], "nll_base": float(base[i]),
                                  "text": seq["text"][j]})
    files = {"attacks": write_csv(workdir / "attacks.csv", rows),
             "texts": _write_texts(workdir / "texts.csv", text_rows)}
    best = {}
    for name in runs:
        for kind in ("reference-free", "external reference (base)", "shadow adapters"):
            rs = [r for r in rows if r["variant"] == name and r["kind"] == kind]
            if rs:
                top = max(rs, key=lambda r: np.nan_to_num(r["auc"], nan=-1))
                best[f"{name}/{kind}"] = {"attack": top["attack"], "auc": top["auc"],
                                          "tpr_at_0.01_fpr": top["tpr_at_0.01_fpr"]}
    mem = {}
    for name in runs:
        m = np.array([r["mem_loglik"] for r in text_rows if r["variant"] == name], float)
        b = np.array([r["nll_base"] for r in text_rows if r["variant"] == name], float)
        fin = np.isfinite(m)
        mem[name] = {"texts": int(fin.sum()), "mean_mem_loglik": float(m[fin].mean()) if fin.any() else float("nan"),
                     "spearman_mem_loglik_vs_base_nll": spearman(m, b)}
    return {"rows": [{k: r[k] for k in ("variant", "attack", "kind", "auc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr")}
                     for r in rows],
            "attacks": rows, "best_by_kind": best, "memorization": mem, "files": files}



def _write_texts(path, rows) -> str:
    """``rows`` as CSV with quoting (the texts hold commas and quotes)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["variant"])
    w.writeheader()
    w.writerows(rows)
    save_text(path, buf.getvalue())
    return str(path)
