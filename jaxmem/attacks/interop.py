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

jaxmem's additions, which the reference code ignores (``jaxmem export-lira`` writes them, so that
``jaxmem import-lira`` gets back ids, the test set and every number)::

    <logdir>/example_ids.npy                    [N] int64 the training examples' ids
    <logdir>/y_test.npy, test_ids.npy           [T] test labels and ids
    <logdir>/x_test.npy                         [T, ...] test inputs
    <logdir>/experiment-<K>_<M>/test_logits/<epoch:010d>.npy   [T, 1, A, C] test-set logits

The layout of orientino/lira-pytorch (the PyTorch port) is read too: folders named by the shadow
id alone (``<savedir>/<K>/``), each with ``keep.npy`` [N] bool and one ``logits.npy``
[N, A, C] (``inference.py``: A augmented queries, no epoch; ``scores.npy`` [N, A]). It saves no
labels (its ``score.py`` reads CIFAR-10's): they must be given (``y_train.npy``, or the
``labels`` of :func:`jaxmem.runs.import_lira`). Its A queries are random crops and flips, none
of them the plain input.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import numpy as np

from jaxmem.signals.functions import check_labels

__all__ = ["read_lira_layout", "write_lira_layout", "lira_reference_scores", "to_numpy"]

_EXP = re.compile(r"^experiment-(\d+)(?:_(\d+))?$")
_PORT = re.compile(r"^\d+$")   # orientino/lira-pytorch: <savedir>/<shadow_id>/


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
    m = _EXP.match(name) or _PORT.match(name)
    return (0, int(m.group(1) if m.groups() else name), name) if m else (1, 0, name)


def _pick(folder, epoch):
    """The file for ``epoch`` in folder, or the lexicographically last .npy (plot.py's rule)."""
    if not os.path.isdir(folder):
        return None
    if epoch is not None:
        f = os.path.join(folder, "%010d.npy" % epoch)
        return f if os.path.exists(f) else None
    files = sorted(f for f in os.listdir(folder) if f.endswith(".npy"))
    return os.path.join(folder, files[-1]) if files else None


def to_numpy(x, name: str = "array") -> np.ndarray:
    """``x`` (a NumPy array, a list, a JAX array or a torch tensor) as a NumPy array.

    A torch tensor is detached and moved to the CPU first; bfloat16 (torch's or
    ``ml_dtypes.bfloat16``, which NumPy cannot save) becomes float32, exactly. Raises
    ValueError (one line naming ``name``) when it cannot be read (or is an object
    array). float16 and the other dtypes are kept.

    Example: ``logits = to_numpy(torch.stack(outputs))`` ([M, N, A, C] bfloat16 → float32)."""
    if x is None or isinstance(x, np.ndarray):
        arr = x
    else:
        t = x
        for step in ("detach", "cpu"):       # torch: a tensor that requires grad, or on a GPU
            if callable(getattr(t, step, None)):
                t = getattr(t, step)()
        if "bfloat16" in str(getattr(t, "dtype", "")) and callable(getattr(t, "float", None)):
            t = t.float()                    # torch has no NumPy bfloat16: float32 is exact
        try:
            arr = np.asarray(t)
        except (TypeError, RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{name}: cannot be read as a NumPy array ({msg}); pass "
                             f"x.detach().float().cpu().numpy()") from None
    if arr is None:
        return None
    if arr.dtype == object:
        raise ValueError(f"{name}: an object array (ragged or mixed values); pass a numeric "
                         f"array of one shape")
    if arr.dtype.name == "bfloat16":
        arr = arr.astype(np.float32)
    return arr


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

    labels = check_labels(labels, z.shape[-1])
    p = np.array(np.exp(z - z.max(axis=3, keepdims=True)), dtype=np.float64)
    p = p / p.sum(axis=3, keepdims=True)
    n = p.shape[0]
    y_true = p[np.arange(n), :, :, labels[:n]]  # [N, 1, A]
    p[np.arange(n), :, :, labels[:n]] = 0
    y_wrong = p.sum(axis=3)
    return np.log(y_true.mean(1) + 1e-45) - np.log(y_wrong.mean(1) + 1e-45)


def read_lira_layout(path, *, epoch=None):
    """Read a LiRA reference-code directory (or orientino/lira-pytorch's) into arrays.

    Folders named ``experiment*`` directly under ``path`` that hold a ``keep.npy`` are the models,
    ordered by the K of ``experiment-K_M`` (other names after, by name). ``epoch`` picks
    ``<epoch:010d>.npy``; None takes each model's last file (plot.py's rule). Without such
    folders, folders named by a number alone that hold ``keep.npy`` and ``logits.npy``
    [N, A, C] are read (orientino/lira-pytorch; ``epoch`` does not apply there).

    Returns a dict: ``keep`` [M, N] bool (truncated to the logits'/scores' N, as plot.py does),
    ``logits`` [M, N, A, C] and ``scores`` [M, N, A] when every model has them, ``test_logits``
    [M, T, A, C] when every model has them (jaxmem's export), ``x_train``, ``y_train``,
    ``example_ids``, ``x_test``, ``y_test``, ``test_ids`` when saved in ``path``,
    ``experiments`` (folder names), ``layout`` ("reference" or "lira-pytorch"), ``epochs`` [M]
    int (-1 where no file), ``hparams`` (list of dicts, {} where missing).
    Raises ValueError (one line, naming the file) when only some models have logits (or
    scores), or shapes disagree.
    """
    entries = sorted(os.listdir(path))
    names = sorted((n for n in entries if n.startswith("experiment")
                    and os.path.exists(os.path.join(path, n, "keep.npy"))), key=_sort_key)
    layout = "reference"
    if not names:
        names = sorted((n for n in entries if _PORT.match(n)
                        and os.path.exists(os.path.join(path, n, "keep.npy"))), key=_sort_key)
        layout = "lira-pytorch"
    if not names:
        raise ValueError(f"no experiment*/keep.npy (the LiRA reference code's layout) nor "
                         f"<id>/keep.npy (orientino/lira-pytorch's) under {path}")
    out = {"experiments": names, "layout": layout}
    keep = [np.asarray(_load(os.path.join(path, n, "keep.npy")), dtype=bool) for n in names]
    epochs = np.full(len(names), -1, np.int64)
    kinds = ("logits", "scores", "test_logits")
    for kind in kinds:
        if layout == "reference":
            files = [_pick(os.path.join(path, n, kind), epoch) for n in names]
        else:   # one <kind>.npy per model: [N, A, C] logits / [N, A] scores
            files = [os.path.join(path, n, kind + ".npy") for n in names]
            files = [f if os.path.isfile(f) else None for f in files]
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
        if kind != "scores" and layout == "reference":
            if arr.ndim != 5 or arr.shape[2] != 1:
                raise ValueError(f"{kind} files must be [N, 1, A, C], got {arr.shape[1:]} "
                                 f"({files[0]})")
            arr = arr[:, :, 0]
        elif kind != "scores" and arr.ndim != 4:
            raise ValueError(f"{kind}.npy must be [N, A, C] (orientino/lira-pytorch's inference.py), "
                             f"got {arr.shape[1:]} ({files[0]})")
        out[kind] = arr
        if layout == "reference" and (kind == "logits" or "logits" not in out):
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
    for name in ("x_train", "y_train", "example_ids", "x_test", "y_test", "test_ids"):
        f = os.path.join(path, name + ".npy")
        if os.path.exists(f):
            out[name] = _load(f)
    return out


def write_lira_layout(path, keep, logits, labels=None, *, x=None, epoch=0, hparams=None,
                      example_ids=None, test_logits=None, test_labels=None, test_ids=None,
                      x_test=None):
    """Write arrays in the LiRA reference code's layout (see the module docstring).

    ``keep`` [M, N] bool, ``logits`` [M, N, A, C] (or [M, N, C], A = 1) are written as
    ``experiment-K_M/keep.npy`` and ``experiment-K_M/logits/<epoch:010d>.npy`` ([N, 1, A, C]);
    ``hparams.json`` gets expid, num_experiments, pkeep and ``hparams`` (a dict for every model,
    or a list of M dicts, one per model). With ``labels`` [N], ``y_train.npy`` and each model's
    ``scores/<epoch:010d>.npy`` ([N, A], ``score.py``'s formula) are written too; ``x`` [N, ...]
    goes to ``x_train.npy``. jaxmem's additions (the reference code ignores them):
    ``example_ids`` [N] → ``example_ids.npy``; ``test_logits`` [M, T, A, C] →
    ``experiment-K_M/test_logits/<epoch:010d>.npy``; ``test_labels``, ``test_ids`` [T] →
    ``y_test.npy``, ``test_ids.npy``; ``x_test`` → ``x_test.npy``. Arrays keep their dtype.
    Files are replaced atomically. Returns ``path``.
    """
    keep = np.asarray(keep, dtype=bool)
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[:, :, None]
    if keep.ndim != 2 or logits.ndim != 4 or logits.shape[:2] != keep.shape:
        raise ValueError(f"need keep [M, N] and logits [M, N, A, C]; got {keep.shape}, {logits.shape}")
    M, N = keep.shape
    if test_logits is not None:
        test_logits = np.asarray(test_logits)
        if test_logits.ndim == 3:
            test_logits = test_logits[:, :, None]
        if test_logits.ndim != 4 or test_logits.shape[0] != M or test_logits.shape[2:] != logits.shape[2:]:
            raise ValueError(f"test_logits must be [M, T, A, C] with M, A, C of logits "
                             f"{logits.shape}, got {test_logits.shape}")
    hp_list = hparams if isinstance(hparams, (list, tuple)) else [hparams or {}] * M
    if len(hp_list) != M:
        raise ValueError(f"hparams: a list must hold M = {M} dicts, got {len(hp_list)}")
    os.makedirs(path, exist_ok=True)
    for fname, arr, rows in (("y_train", labels, N), ("x_train", x, N), ("example_ids", example_ids, N),
                             ("y_test", test_labels, None), ("test_ids", test_ids, None),
                             ("x_test", x_test, None)):
        if arr is None:
            continue
        arr = np.asarray(arr)
        if rows is not None and (arr.ndim == 0 or arr.shape[0] != rows):
            raise ValueError(f"{fname}: must have N = {rows} rows, got {arr.shape}")
        _save(os.path.join(path, fname + ".npy"), arr)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (N,):
            raise ValueError(f"labels must be [{N}], got {labels.shape}")
    fname = "%010d.npy" % epoch
    for m in range(M):
        d = os.path.join(path, "experiment-%d_%d" % (m, M))
        os.makedirs(os.path.join(d, "logits"), exist_ok=True)
        hp = {"expid": m, "num_experiments": M, "pkeep": float(keep[m].mean()), **(hp_list[m] or {})}
        with open(os.path.join(d, "hparams.json"), "w") as fh:
            json.dump(hp, fh)
        _save(os.path.join(d, "keep.npy"), keep[m])
        z = logits[m][:, None]  # [N, 1, A, C], as inference.py saves it
        _save(os.path.join(d, "logits", fname), z)
        if test_logits is not None:
            os.makedirs(os.path.join(d, "test_logits"), exist_ok=True)
            _save(os.path.join(d, "test_logits", fname), test_logits[m][:, None])
        if labels is not None:
            os.makedirs(os.path.join(d, "scores"), exist_ok=True)
            _save(os.path.join(d, "scores", fname), lira_reference_scores(z, labels))
    return path
