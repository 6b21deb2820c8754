"""Per-example results of a scored run: every target's attack score on every training example
(``results/scores/``), and everything a run knows about one example (``jaxmem show RUN
--example ID``).

Layout of ``results/scores/`` (plain ``.npy``; T targets, N training examples)::

    meta.json          {"attacks": [...], "dtype": ..., "num_targets": T, "num_examples": N}
    targets.npy        int64 [T]     the model id of each target (row t of the arrays below)
    example_ids.npy    int64 [N]     the example id of each column (str for an imported run's
                                     file-name ids)
    member.npy         bool [T, N]   whether target t trained on example i (rows of keep.npy)
    ATTACK.npy         [T, N]        the attack's membership score (higher = more likely a member;
                                     NaN where it could not score), one file per attack

The scores are stored in ``signals.dtype`` (float32, or float16 for runs that store their logits
in float16): 2,000 targets x 50,000 examples take 400 MB per attack in float32 (200 MB in
float16), against the 48 GB of such a run's logits (:func:`jaxmem.runs.workdir.storage_plan`
counts them). Rows are read as memory maps: one example's column does not load the rest.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from jaxmem.estimators.lm import text_groups
from jaxmem.io import RunError, atomic_dir, load_json, load_npy, save_json, save_npy
from jaxmem.runs.store import load_run, read_summary

__all__ = ["write_scores", "read_scores", "example_record", "score_bytes", "parse_id"]


def score_bytes(num_targets: int, num_examples: int, num_attacks: int, dtype: str) -> int:
    """Bytes of ``results/scores/`` (the member flags and one [T, N] array per attack)."""
    item = 2 if dtype == "float16" else 4
    return num_targets * num_examples * (1 + item * num_attacks) if num_attacks else 0


def write_scores(folder: Path, ev, example_ids, dtype: str = "float32") -> None:
    """Write an :class:`~jaxmem.attacks.evaluation.Evaluation`'s per-target scores (it must hold
    them: ``return_scores=True``) as ``folder`` (atomically: a folder rename)."""
    folder = Path(folder)
    dt = np.float16 if dtype == "float16" else np.float32
    shutil.rmtree(folder.with_name(folder.name + ".new"), ignore_errors=True)   # a killed swap
    with atomic_dir(folder.with_name(folder.name + ".new")) as tmp:
        save_npy(tmp / "targets.npy", np.asarray(ev.targets, np.int64))
        ids = np.asarray(example_ids)         # int64, or str (an imported run's file names)
        save_npy(tmp / "example_ids.npy", ids if ids.dtype.kind == "U" else ids.astype(np.int64))
        save_npy(tmp / "member.npy", np.asarray(ev.members, bool))
        for attack, sc in ev.scores.items():
            with np.errstate(over="ignore"):
                save_npy(tmp / f"{attack}.npy", np.asarray(sc).astype(dt))
        save_json(tmp / "meta.json", {"attacks": list(ev.scores), "dtype": np.dtype(dt).name,
                                      "num_targets": int(len(ev.targets)),
                                      "num_examples": int(len(example_ids))})
    # swap: the old folder goes only once the new one is complete
    if folder.exists():
        shutil.rmtree(folder)
    folder.with_name(folder.name + ".new").rename(folder)


def read_scores(folder: Path) -> dict:
    """``{"meta", "targets", "example_ids", "member", "scores": {attack: memmap [T, N]}}``."""
    folder = Path(folder)
    meta = load_json(folder / "meta.json")
    return {"meta": meta, "targets": load_npy(folder / "targets.npy"),
            "example_ids": load_npy(folder / "example_ids.npy"),
            "member": load_npy(folder / "member.npy", mmap=True),
            "scores": {a: load_npy(folder / f"{a}.npy", mmap=True) for a in meta["attacks"]}}


def _csv_rows(path: Path, key: str, value) -> list:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r[key] == str(value)]


def parse_id(text: str, ids):
    """An id read back from a CSV, typed as the run's ``ids`` (the array it came from) are: the
    string as written for string ids (file names; "007" stays "007"), else an int."""
    return str(text) if np.asarray(ids).dtype.kind == "U" else int(text)


def example_record(workdir, example_id) -> dict:
    """Everything stored about training example ``example_id`` (an id of ``example_ids.npy``)
    of a run: its index and label (a language-model run: its length in tokens, its text's first
    row ``text_index`` and ``copies``, the text, and why no per-example attack scores exist),
    memorization (estimate, stderr, rank, IN/OUT model counts; a language-model run: its text's),
    the test examples it influences most (``influence.csv``), and per attack the targets' scores
    on it, split by membership (count, mean, min, max; and each target's score)."""
    workdir = Path(workdir)
    run = load_run(workdir)
    read_summary(workdir)   # (refused when results/ and summary.json are different scorings')
    ids = np.asarray(run.example_ids)
    if ids.dtype.kind == "U":   # string ids (file names) of an imported run
        key = str(example_id)
    else:
        try:
            key = int(example_id)
        except (TypeError, ValueError):
            raise RunError(f"{workdir}: example ids are integers here, got {example_id!r}") from None
    hit = np.flatnonzero(ids == key)
    if not hit.size:
        where = (f"e.g. {ids[0].item()!r}" if ids.dtype.kind == "U" else
                 f"ids run from {ids.min()} to {ids.max()}")
        raise RunError(f"{workdir}: no training example with id {example_id} ({where}; "
                       f"{len(ids)} examples)")
    i = int(hit[0])
    keep, ok = np.asarray(run.keep[:, i]), ~np.asarray(run.diverged)
    out = {"example_id": ids[i].item(), "index": i, "label": int(run.labels[i]),
           "models_in": int((keep & ok).sum()), "models_out": int((~keep & ok).sum())}
    res = workdir / "results"
    row = i
    if run.is_lm:   # a sequence: its length (no label); its text's row (copies are one example)

        tg = text_groups(run.text["groups"])
        del out["label"]
        j = int(tg.text_of_row[i])
        row = int(tg.first[j])
        out.update(kind="language_model", length=int(run.labels[i]), text_index=row,
                   copies=int(tg.copies[j]), text=run.text["texts_train"][i])
    mem = _csv_rows(res / "memorization.csv", "index", row)
    if mem:
        r = mem[0]
        out["memorization"] = {"mem": float(r["mem"]), "stderr": float(r["stderr"]),
                               "rank": int(r["rank"]), "n_in": int(r["n_in"]),
                               "n_out": int(r["n_out"])}
    infl = _csv_rows(res / "influence.csv", "train_index", i)
    out["influence"] = [{"test_id": parse_id(r["test_id"], run.test_ids), "test_label": int(r["test_label"]),
                         "rank": int(r["rank"]), "influence": float(r["influence"]),
                         "stderr": float(r["stderr"])} for r in infl]
    if run.is_lm:
        out["attacks_not_stored"] = ("a language-model run's scoring stores per-target metrics "
                                     "(results/attacks.json), not per-example attack scores")
    elif (res / "scores" / "meta.json").exists():
        sc = read_scores(res / "scores")
        member = np.asarray(sc["member"][:, i])
        out["attacks"] = {}
        for a, arr in sc["scores"].items():
            col = np.asarray(arr[:, i], np.float64)
            row = {"targets": sc["targets"].tolist(), "member": member.tolist(),
                   "score": col.tolist()}
            for name, sel in (("in", member), ("out", ~member)):
                v = col[sel & np.isfinite(col)]
                row[name] = {"count": int(sel.sum()), "scored": int(v.size),
                             "mean": float(v.mean()) if v.size else float("nan"),
                             "min": float(v.min()) if v.size else float("nan"),
                             "max": float(v.max()) if v.size else float("nan")}
            out["attacks"][a] = row
    return out
