"""Read and write the directory layout of the LiRA reference code (Carlini et al. 2022,
tensorflow/privacy ``research/mi_lira_2021``), arrays only.

Layout (``train.py``, ``inference.py``, ``score.py``, ``plot.py`` there)::

    <logdir>/x_train.npy                        inputs, saved once by train.py (optional here)
    <logdir>/y_train.npy                        labels [N], read by inference.py and score.py
    <logdir>/experiment-<K>_<M>/hparams.json    train.py's hyperparameters
    <logdir>/experiment-<K>_<M>/keep.npy        [N] bool, True where model K trained on example i
    <logdir>/experiment-<K>_<M>/logits/<epoch:010d>.npy   [N, 1, A, C] logits (inference.py)
    <logdir>/experiment-<K>_<M>/scores/<epoch:010d>.npy   [N, A] LiRA scores (score.py)

``plot.py`` reads, for every ``experiment*`` folder with scores, the lexicographically last
scores file (the last epoch) and its ``keep.npy``, truncating keep to the scores' N. All files
are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np

__all__ = ["read_lira_layout", "write_lira_layout", "lira_reference_scores"]

_EXP = re.compile(r"^experiment-(\d+)(?:_(\d+))?$")


def _load(path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refuse them
        raise ValueError(f"{path}: refusing to load a pickled .npy ({e})") from None


def _save(path, arr):
    """np.save via a temporary file and os.replace, so readers never see half a file."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(arr), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _sort_key(name):
    m = _EXP.match(name)
    return (0, int(m.group(1)), name) if m else (1, 0, name)


def _pick(folder, epoch):
    """The file for ``epoch`` in folder, or the lexicographically last .npy (plot.py's rule)."""
    if not os.path.isdir(folder):
        return None
    if epoch is not None:
        f = os.path.join(folder, "%010d.npy" % epoch)
        return f if os.path.exists(f) else None
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    return os.path.join(folder, files[-1]) if files else None


def lira_reference_scores(logits, labels):
    """LiRA scores as the reference ``score.py`` computes them, in float64: [N, 1, A, C] → [N, A].

    log(p_y + 1e-45) − log(Σ_{j≠y} p_j + 1e-45) with p = softmax(logits); as there, the max is
    subtracted and exp taken in the logits' dtype before the cast to float64. A [N, A, C] input is
    treated as [N, 1, A, C]. The ``+ 1e-45`` floors |φ| at log(1e45) ≈ 103.6: a confident
    example's reference φ stops there, where :func:`jaxmem.signals.logit_scaled_confidence`
    (what a run computes, stably) keeps growing. Labels outside [0, C) raise a ValueError.
    """
    z = np.asarray(logits)
    if z.ndim == 3:
        z = z[:, None]
    if z.ndim != 4 or z.shape[1] != 1:
        raise ValueError(f"logits must be [N, 1, A, C] or [N, A, C], got {np.shape(logits)}")
    from jaxmem.signals.functions import check_labels

    labels = check_labels(labels, z.shape[-1])
    p = np.array(np.exp(z - z.max(axis=3, keepdims=True)), dtype=np.float64)
    p = p / p.sum(axis=3, keepdims=True)
    n = p.shape[0]
    y_true = p[np.arange(n), :, :, labels[:n]]  # [N, 1, A]
    p[np.arange(n), :, :, labels[:n]] = 0
    y_wrong = p.sum(axis=3)
    return np.log(y_true.mean(1) + 1e-45) - np.log(y_wrong.mean(1) + 1e-45)


def read_lira_layout(path, *, epoch=None):
    """Read a LiRA reference-code directory into arrays.

    Folders named ``experiment*`` directly under ``path`` that hold a ``keep.npy`` are the models,
    ordered by the K of ``experiment-K_M`` (other names after, by name). ``epoch`` picks
    ``<epoch:010d>.npy``; None takes each model's last file (plot.py's rule).

    Returns a dict: ``keep`` [M, N] bool (truncated to the logits'/scores' N, as plot.py does),
    ``logits`` [M, N, A, C] and ``scores`` [M, N, A] when every model has them, ``x_train`` and
    ``y_train`` when saved in ``path``, ``experiments`` (folder names), ``epochs`` [M] int
    (-1 where no file), ``hparams`` (list of dicts, {} where missing).
    Raises ValueError when only some models have logits (or scores), or shapes disagree.
    """
    names = sorted((n for n in os.listdir(path) if n.startswith("experiment")
                    and os.path.exists(os.path.join(path, n, "keep.npy"))), key=_sort_key)
    if not names:
        raise ValueError(f"no experiment*/keep.npy under {path}")
    out = {"experiments": names}
    keep = [np.asarray(_load(os.path.join(path, n, "keep.npy")), dtype=bool) for n in names]
    epochs = np.full(len(names), -1, np.int64)
    for kind in ("logits", "scores"):
        files = [_pick(os.path.join(path, n, kind), epoch) for n in names]
        have = [f is not None for f in files]
        if not any(have):
            continue
        if not all(have):
            missing = [n for n, h in zip(names, have) if not h]
            raise ValueError(f"{kind} missing for {missing}")
        arrs = [_load(f) for f in files]
        if len({a.shape for a in arrs}) != 1:
            raise ValueError(f"{kind} shapes differ across models: {sorted({a.shape for a in arrs})}")
        arr = np.stack(arrs)
        if kind == "logits":
            if arr.ndim != 5 or arr.shape[2] != 1:
                raise ValueError(f"logits files must be [N, 1, A, C], got {arr.shape[1:]}")
            arr = arr[:, :, 0]
        out[kind] = arr
        if kind == "logits" or "logits" not in out:
            epochs = np.array([int(os.path.basename(f)[:-4]) if os.path.basename(f)[:-4].isdigit()
                               else -1 for f in files])
    n_sig = [out[k].shape[1] for k in ("logits", "scores") if k in out]
    if len(set(n_sig)) > 1:
        raise ValueError(f"logits and scores disagree on N: {n_sig}")
    N = n_sig[0] if n_sig else min(k.size for k in keep)
    if any(k.size < N for k in keep):
        raise ValueError("keep.npy shorter than the saved logits/scores")
    out["keep"] = np.stack([k[:N] for k in keep])
    out["epochs"] = epochs
    out["hparams"] = []
    for n in names:
        f = os.path.join(path, n, "hparams.json")
        out["hparams"].append(json.load(open(f)) if os.path.exists(f) else {})
    for name in ("x_train", "y_train"):
        f = os.path.join(path, name + ".npy")
        if os.path.exists(f):
            out[name] = _load(f)
    return out


def write_lira_layout(path, keep, logits, labels=None, *, x=None, epoch=0, hparams=None):
    """Write arrays in the LiRA reference code's layout (see the module docstring).

    ``keep`` [M, N] bool, ``logits`` [M, N, A, C] (or [M, N, C], A = 1) are written as
    ``experiment-K_M/keep.npy`` and ``experiment-K_M/logits/<epoch:010d>.npy`` ([N, 1, A, C]);
    ``hparams.json`` gets expid, num_experiments, pkeep and ``hparams``. With ``labels`` [N],
    ``y_train.npy`` and each model's ``scores/<epoch:010d>.npy`` ([N, A], ``score.py``'s
    formula) are written too; ``x`` [N, ...] goes to ``x_train.npy``. Files are replaced
    atomically. Returns ``path``.
    """
    keep = np.asarray(keep, dtype=bool)
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[:, :, None]
    if keep.ndim != 2 or logits.ndim != 4 or logits.shape[:2] != keep.shape:
        raise ValueError(f"need keep [M, N] and logits [M, N, A, C]; got {keep.shape}, {logits.shape}")
    M, N = keep.shape
    os.makedirs(path, exist_ok=True)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (N,):
            raise ValueError(f"labels must be [{N}], got {labels.shape}")
        _save(os.path.join(path, "y_train.npy"), labels)
    if x is not None:
        x = np.asarray(x)
        if x.shape[0] != N:
            raise ValueError(f"x must have N={N} rows, got {x.shape}")
        _save(os.path.join(path, "x_train.npy"), x)
    fname = "%010d.npy" % epoch
    for m in range(M):
        d = os.path.join(path, "experiment-%d_%d" % (m, M))
        os.makedirs(os.path.join(d, "logits"), exist_ok=True)
        hp = {"expid": m, "num_experiments": M, "pkeep": float(keep[m].mean()), **(hparams or {})}
        with open(os.path.join(d, "hparams.json"), "w") as fh:
            json.dump(hp, fh)
        _save(os.path.join(d, "keep.npy"), keep[m])
        z = logits[m][:, None]  # [N, 1, A, C], as inference.py saves it
        _save(os.path.join(d, "logits", fname), z)
        if labels is not None:
            os.makedirs(os.path.join(d, "scores"), exist_ok=True)
            _save(os.path.join(d, "scores", fname), lira_reference_scores(z, labels))
    return path
