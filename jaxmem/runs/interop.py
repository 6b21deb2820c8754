"""Runs from arrays trained elsewhere: :func:`import_arrays` and its checks at the door (ids,
dtypes, shapes, RMIA's population), and :func:`run_inputs`. The LiRA reference code's folder
layout is :mod:`jaxmem.runs.lira_layout`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.attacks import NonFiniteModelWarning
from jaxmem.attacks.interop import to_numpy
from jaxmem.attacks.registry import ATTACKS, IMPORT_ATTACKS
from jaxmem.data import build_dataset
from jaxmem.io import RunError, load_npy, save_json, save_npy
from jaxmem.runs import integrity, provenance
from jaxmem.runs.lock import run_lock
from jaxmem.runs.store import Run
from jaxmem.runs.workdir import check_overwrite, delete_run
from jaxmem.signals.functions import check_labels
from jaxmem.signals.stream import model_logits

__all__ = ["import_arrays", "ArrayInputError", "as_numpy", "check_ids", "check_population",
           "population_attacks", "run_inputs"]


class ArrayInputError(RunError, ValueError):
    """An array given to :func:`import_arrays` is unusable (a RunError for the CLI, and a
    ValueError: a bad argument)."""


def as_numpy(x, name: str) -> np.ndarray:
    """:func:`jaxmem.attacks.to_numpy`, its ValueError an :class:`ArrayInputError`."""
    try:
        return to_numpy(x, name)
    except ValueError as e:
        raise ArrayInputError(str(e)) from None


def _bool_array(x, name):
    """keep as bool: a bool array, or integers / floats that are all 0 or 1."""
    arr = as_numpy(x, name)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise ArrayInputError(f"{name}: expected bool (or 0/1) values, got dtype {arr.dtype}"
                              + ("" if arr.dtype.kind not in "iuf" else " with values other than 0 "
                                 "and 1"))
    return arr.astype(bool)


def _float_array(x, name):
    arr = as_numpy(x, name)
    if arr.dtype.kind != "f":
        raise ArrayInputError(f"{name}: expected floating-point logits, got dtype {arr.dtype}; "
                              f"pass .astype(np.float32)")
    return arr


def check_ids(ids, n: int, name: str = "example_ids") -> np.ndarray:
    """Example ids as [n] unique values: integers (int64; an integral float dtype is accepted) or
    strings such as file names (stored as NumPy unicode; not empty, without commas, quotes or
    line breaks, which the results' CSV files could not hold). Raises :class:`ArrayInputError`
    (one line naming ``name``) otherwise."""
    if not callable(getattr(ids, "detach", None)):
        raw = np.asarray(ids)          # (a list or pandas column of str: object dtype)
        if raw.dtype == object and raw.size and all(isinstance(v, str) for v in raw.ravel()):
            ids = raw.astype(str)
        elif raw.dtype.kind == "S":
            try:
                ids = raw.astype(str)
            except UnicodeDecodeError:
                raise ArrayInputError(f"{name}: bytes that are not ASCII; pass str ids") from None
    arr = as_numpy(ids, name)
    if arr.shape != (n,):
        raise ArrayInputError(f"{name}: expected [{n}] (one id per example), got shape {arr.shape}")
    if arr.dtype.kind == "U":
        bad = [v for v in arr.tolist() if not v or v != v.strip() or any(c in v for c in ',"\n\r')]
        if bad:
            raise ArrayInputError(f"{name}: string ids must be non-empty, without commas, quotes, "
                                  f"line breaks or surrounding spaces; got {bad[0]!r}")
        out = arr
    else:
        if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
            raise ArrayInputError(f"{name}: ids must be integers or strings, got non-integer values")
        if arr.dtype.kind not in "iuf" or (arr.size and arr.dtype.kind == "u"
                                           and arr.max() > np.iinfo(np.int64).max):
            raise ArrayInputError(f"{name}: ids must be integers that fit int64, or strings; got "
                                  f"dtype {arr.dtype}")
        out = arr.astype(np.int64)
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ArrayInputError(f"{name}: ids must be unique; {dup.size} repeated (e.g. id "
                              f"{dup[0].item()!r} {int(counts[counts > 1][0])} times): one column "
                              f"per example")
    return out


def _inputs(x, rows, name, like=None):
    """x_train / x_test: [rows, ...] numbers, images [rows, H, W(, C)] channels last."""
    arr = as_numpy(x, name)
    if arr is None:
        return None
    if arr.ndim < 2 or arr.shape[0] != rows:
        raise ArrayInputError(f"{name}: expected [{rows}, ...] (one row per example), got shape "
                              f"{arr.shape}")
    if arr.dtype.kind not in "iufb":
        raise ArrayInputError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[1] in (1, 3) and arr.shape[3] not in (1, 3):
        raise ArrayInputError(f"{name}: looks channels-first {arr.shape} (PyTorch's [N, C, H, W]); "
                              f"images are [N, H, W, C]: pass x.transpose(0, 2, 3, 1)")
    if like is not None and arr.shape[1:] != like.shape[1:]:
        raise ArrayInputError(f"{name}: rows of shape {arr.shape[1:]} differ from x_train's "
                              f"{like.shape[1:]}")
    return arr


def population_attacks(attacks) -> list:
    """The attacks of ``attacks`` that need population signals (RMIA: ``p_pop``)."""
    return [a for a in attacks if a in ATTACKS and any(n.endswith("_pop") for n in ATTACKS[a].needs)]


def check_population(attacks, num_test: int) -> None:
    """Refuse (one line) attacks that need a population when the run has no test set."""
    need = population_attacks(attacks)
    if need and not num_test:
        raise cfgmod.ConfigError(
            f"scoring.attacks: {need} need a population (points no model trained on): this run "
            f"has no test set; import test_logits/test_labels (the population), or leave them out")


def import_arrays(workdir, keep, logits, labels, *, test_logits=None, test_labels=None,
                  example_ids=None, test_ids=None, x_train=None, x_test=None, queries=None,
                  name="imported", overrides=(), overwrite=False, delete_imported=False,
                  source=None, diverged=None, training=None) -> Run:
    """Make a scoreable jaxmem run from arrays trained anywhere (PyTorch, the LiRA code, ...).

    Args:
      workdir: a new or empty folder (``overwrite`` replaces a jaxmem run there, and a run
        imported before only with ``delete_imported`` too: its logits cannot be made again).
      keep: [M, N] bool (or 0/1 integers): model m trained on example i.
      logits: [M, N, A, C] floats (or [M, N, C], A = 1): M models on N training examples under A
        queries (query 0 the plain input: memorization and test accuracy read it), C classes.
        float16 is kept (``signals.dtype = "float16"``), bfloat16 becomes float32 (exactly).
      labels: [N] integers in [0, C).
      test_logits, test_labels: [M, T, A, C] and [T]: T test points no model trained on: test
        accuracy, influence, and the population RMIA needs (without them RMIA is refused).
      example_ids: [N] unique integers or strings (file names; default 0..N-1): the ids
        ``jaxmem show --example ID``, ``memorization.csv`` and ``examples.csv`` use (see
        :func:`check_ids`). test_ids: [T] likewise (default 0..T-1).
      x_train: [N, ...] the training inputs (images [N, H, W] or [N, H, W, C], channels last),
        shown in the report's most-memorized grid; x_test: [T, ...] kept with the run.
      queries: A names of the queries (``"identity"``, ``"flip"``, ``"shift:DX,DY"``); default
        ``"identity"`` then ``"external:1"``... (recorded in the config, nothing else is).
      name: the run's name (``config.name`` and ``data.source = "external:NAME"``).
      overrides: ``--set`` style settings (``scoring.*``).
      source: where the arrays came from, recorded in ``provenance.json``.
      diverged: [M] bool, models to mark diverged besides those with NaN/inf logits.
      training: a JSON-able dict of what is known of how the models were trained (e.g. a LiRA
        folder's shared ``hparams.json`` settings), recorded in ``provenance.json``.

    Any array may be a NumPy array, a JAX array or a torch tensor (detached, moved to the CPU;
    bfloat16 → float32). Such a run can be scored (:func:`score`, ``jaxmem score``) and
    reported, not trained (``data.source = "external:NAME"``).

    Returns:
      the :class:`~jaxmem.runs.store.Run`.

    Raises:
      ArrayInputError (a ValueError and a RunError): one line naming the array: wrong shape or
      dtype, labels out of range, ids repeated, of the wrong length or not integers, every model
      NaN. ConfigError: a bad override, or RMIA asked for without test arrays. RunError: the
      workdir is not empty.

    Models whose logits (or test logits) hold NaN/inf are marked diverged (``diverged.npy``), as
    ``jaxmem run`` marks its own, with a :class:`~jaxmem.attacks.NonFiniteModelWarning` naming
    them: scoring leaves them out of the estimators and the attacks.
    """
    workdir = Path(workdir)
    keep = _bool_array(keep, "keep")
    logits = _float_array(logits, "logits")
    if logits.ndim == 3:
        logits = logits[:, :, None]
    labels = as_numpy(labels, "labels")
    if keep.ndim != 2:
        raise ArrayInputError(f"keep: expected a bool [M, N] array, got shape {keep.shape}")
    if logits.ndim != 4 or logits.shape[:2] != keep.shape:
        raise ArrayInputError(f"logits {logits.shape} do not match keep {keep.shape} (need "
                              f"[M, N, A, C]: axes 0 and 1 are keep's)")
    M, N, A, C = logits.shape
    if labels.shape != (N,):
        raise ArrayInputError(f"labels: expected [N] = [{N}], got shape {labels.shape}")
    if test_logits is None:
        for field, arr in (("test_labels", test_labels), ("test_ids", test_ids), ("x_test", x_test)):
            if arr is not None:
                raise ArrayInputError(f"{field}: given without test_logits (the test set's [M, T, A, C] "
                                      f"logits)")
        test_logits, test_labels = np.zeros((M, 0, A, C), logits.dtype), np.zeros(0, np.int64)
    test_logits = _float_array(test_logits, "test_logits")
    if test_labels is None:
        raise ArrayInputError("test_labels: test_logits need their labels [T]")
    test_labels = as_numpy(test_labels, "test_labels")
    try:   # the one check of stacked logits: the error names the axis that differs
        test_logits = model_logits(test_logits, "test_logits", like=logits)
    except ValueError as e:
        raise ArrayInputError(str(e)) from None
    T = test_logits.shape[1]
    if test_labels.shape != (T,):
        raise ArrayInputError(f"test_labels: expected [T] = [{T}] (test_logits axis 1), got shape "
                              f"{test_labels.shape}")
    if test_logits.dtype != logits.dtype:
        test_logits = test_logits.astype(np.result_type(logits, test_logits))
        logits = logits.astype(test_logits.dtype)

    checked = []
    for field, lab in (("labels", labels), ("test_labels", test_labels)):
        try:
            checked.append(check_labels(lab, C, name=field))
        except ValueError as e:
            raise ArrayInputError(str(e).replace(f"{field}: must", f"{field}: out of range: must")) from None
    labels, test_labels = checked
    ids = np.arange(N, dtype=np.int64) if example_ids is None else check_ids(example_ids, N)
    tids = np.arange(T, dtype=np.int64) if test_ids is None else check_ids(test_ids, T, "test_ids")
    x_train = _inputs(x_train, N, "x_train")
    x_test = _inputs(x_test, T, "x_test", like=x_train)
    if queries is None:
        queries = ["identity"] + [f"external:{a}" for a in range(1, A)]
    queries = [str(q) for q in queries]
    if len(queries) != A:
        raise ArrayInputError(f"queries: expected A = {A} names (logits axis 2), got {len(queries)}")
    bad = (~np.isfinite(logits).reshape(M, -1).all(1)) | (~np.isfinite(test_logits).reshape(M, -1).all(1))
    if diverged is not None:
        extra = _bool_array(diverged, "diverged")
        if extra.shape != (M,):
            raise ArrayInputError(f"diverged: expected [M] = [{M}], got shape {extra.shape}")
        bad = bad | extra
    if bad.all():
        raise ArrayInputError("logits: every model's logits hold NaN/inf values (or every model "
                              "is marked diverged)")
    if bad.any():
        import warnings

        warnings.warn(f"import_arrays: models {np.flatnonzero(bad).tolist()} have NaN/inf logits "
                      "(or are marked diverged); they are left out of scoring",
                      NonFiniteModelWarning, stacklevel=2)

    # RMIA needs a population: the test set
    attacks = [a for a in IMPORT_ATTACKS if T or not population_attacks([a])]
    # only what is known: the arrays' queries and dtype; nothing about models or training
    base = {"name": name, "data": {"source": f"external:{name}"},
            "subsets": {"num_models": int(M)},
            "signals": {"queries": queries,
                        "dtype": "float16" if logits.dtype == np.float16 else "float32"},
            "scoring": {"attacks": attacks}}
    stored = cfgmod.apply_overrides(base, overrides)
    cfg = cfgmod.from_dict(stored)
    check_population(cfg.scoring.attacks, T)
    with run_lock(workdir):
        if any(p for p in workdir.iterdir() if not p.name.startswith(".")):
            if not overwrite:
                raise RunError(f"{workdir}: exists and is not empty; choose another --workdir "
                               f"(--overwrite replaces a run there)")
            if not (workdir / "config.json").exists():
                raise RunError(f"{workdir}: not a jaxmem run; refusing to delete it (choose "
                               f"another --workdir)")
            check_overwrite(workdir, delete_imported)
            delete_run(workdir)
        save_json(workdir / "config.json", stored)
        save_json(workdir / "design.json", {"design": "external", "blocks": [
            {"first": 0, "count": int(M), "block": 0}]})
        save_json(workdir / "dataset.json", {"name": name, "num_classes": int(C),
                                             "num_train": int(N), "num_test": int(T),
                                             "input_shape": ([] if x_train is None
                                                             else list(x_train.shape[1:])),
                                             "meta": {"source": f"external:{name}"}})
        sums = {}
        for fname, arr in (("keep.npy", keep), ("labels.npy", labels), ("example_ids.npy", ids),
                           ("test_labels.npy", test_labels), ("test_ids.npy", tids),
                           ("model_ratio.npy", keep.mean(1)), ("logits.npy", logits),
                           ("test_logits.npy", test_logits), ("diverged.npy", bad),
                           ("x_train.npy", x_train), ("x_test.npy", x_test)):
            if arr is not None:
                sums[fname] = save_npy(workdir / fname, arr)
        integrity.record(workdir, sums)
        provenance.start(workdir, provenance.record(devices=False), imported={
            "source": str(source) if source is not None else None, "name": name,
            "models": int(M), "examples": int(N),
            **({"training": training} if training else {})})
    return Run(workdir)


def run_inputs(run):
    """``(x_train, x_test)`` of a run: its stored ``x_train.npy`` / ``x_test.npy`` (an imported
    run), else its dataset rebuilt from the config when the data is at hand, else None."""
    p = Path(run.path)
    if (p / "x_train.npy").exists():
        return (load_npy(p / "x_train.npy", mmap=True),
                load_npy(p / "x_test.npy", mmap=True) if (p / "x_test.npy").exists() else None)
    if run.config.data.source.startswith("external:"):
        return None, None
    try:
        ds = build_dataset(run.config)
    except Exception:  # the data may be unavailable where the run is exported
        return None, None
    x, xt = np.asarray(ds.x_train), np.asarray(ds.x_test)
    return (x if len(x) == len(run.labels) else None,
            xt if len(xt) == len(run.test_labels) else None)
