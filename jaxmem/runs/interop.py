"""Runs from arrays trained elsewhere, and the LiRA reference code's layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import RunError, load_json, save_json, save_npy
from jaxmem.runs import integrity, provenance
from jaxmem.runs.lock import run_lock
from jaxmem.runs.store import Run, load_run
from jaxmem.runs.workdir import check_overwrite, delete_run

__all__ = ["import_arrays", "import_lira", "export_lira", "ArrayInputError", "EXPORT_MARKER"]


class ArrayInputError(RunError, ValueError):
    """An array given to :func:`import_arrays` is unusable (a RunError for the CLI, and a
    ValueError: a bad argument)."""


def import_arrays(workdir, keep, logits, labels, *, test_logits=None, test_labels=None,
                  example_ids=None, name="imported", overrides=(), overwrite=False,
                  delete_imported=False, source=None) -> Run:
    """Make a scoreable jaxmem run from arrays trained anywhere (PyTorch, the LiRA code, ...).

    ``keep`` [M, N] bool, ``logits`` [M, N, A, C] (or [M, N, C]), ``labels`` [N] integers in
    [0, C); optionally the test set's ``test_logits`` [M, T, A, C] and ``test_labels`` [T]
    (needed for test accuracy and RMIA's population). The config records ``data.source =
    "external:NAME"``: such a run can be scored (``jaxmem score``) and reported, not trained.
    Then score it with :func:`score`.

    Labels out of range (e.g. 1..C, or −1) raise :class:`ArrayInputError` (a ValueError and a
    RunError) naming the range. Models whose logits (or test logits) hold NaN/inf are marked
    diverged (``diverged.npy``), as ``jaxmem run`` marks its own, with a
    :class:`~jaxmem.attacks.NonFiniteModelWarning` naming them: scoring leaves them out of the
    estimators and the attacks.

    ``workdir`` must be new or empty; ``overwrite`` replaces a jaxmem run there, and a run
    imported before only with ``delete_imported`` too (its logits cannot be made again).
    ``source``: where the arrays came from, recorded in ``provenance.json``.
    """
    workdir = Path(workdir)
    keep = np.asarray(keep)
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[:, :, None]
    labels = np.asarray(labels)
    if keep.dtype != bool or keep.ndim != 2:
        raise RunError(f"keep: expected a bool [M, N] array, got {keep.dtype} {keep.shape}")
    if logits.ndim != 4 or logits.shape[:2] != keep.shape:
        raise RunError(f"logits {logits.shape} do not match keep {keep.shape} (need [M, N, A, C])")
    if labels.shape != (keep.shape[1],) or not np.issubdtype(labels.dtype, np.integer):
        raise RunError(f"labels: expected integer [{keep.shape[1]}], got {labels.dtype} {labels.shape}")
    M, N, A, C = logits.shape
    if test_logits is None:
        test_logits, test_labels = np.zeros((M, 0, A, C), logits.dtype), np.zeros(0, np.int64)
    test_logits = np.asarray(test_logits)
    if test_logits.ndim == 3:
        test_logits = test_logits[:, :, None]
    test_labels = np.asarray(test_labels)
    if test_logits.shape[0] != M or test_logits.shape[2:] != (A, C) or \
            test_labels.shape != test_logits.shape[1:2]:
        raise RunError(f"test_logits {test_logits.shape} / test_labels {test_labels.shape} do not "
                       f"match logits {logits.shape}")
    from jaxmem.signals.functions import check_labels

    for name, lab in (("labels", labels), ("test_labels", test_labels)):
        try:
            check_labels(lab, C, name=name)
        except ValueError as e:
            raise ArrayInputError(str(e).replace(f"{name}: must", f"{name}: out of range: must")) from None
    diverged = (~np.isfinite(logits).reshape(M, -1).all(1)) | (~np.isfinite(test_logits).reshape(M, -1).all(1))
    if diverged.all():
        raise ArrayInputError("logits: every model's logits hold NaN/inf values")
    if diverged.any():
        import warnings

        from jaxmem.attacks._checks import NonFiniteModelWarning

        warnings.warn(f"import_arrays: models {np.flatnonzero(diverged).tolist()} have NaN/inf logits; "
                      "they are marked diverged and left out of scoring", NonFiniteModelWarning,
                      stacklevel=2)
    from jaxmem.attacks.registry import ATTACKS, IMPORT_ATTACKS

    # RMIA needs a population: the test set
    attacks = [a for a in IMPORT_ATTACKS
               if not any(n.endswith("_pop") for n in ATTACKS[a].needs) or test_labels.size]
    base = {"name": name, "data": {"source": f"external:{name}"},
            "subsets": {"num_models": int(M)}, "scoring": {"attacks": attacks}}
    cfg = cfgmod.from_dict(cfgmod.apply_overrides(base, overrides))
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
        save_json(workdir / "config.json", cfgmod.to_dict(cfg))
        save_json(workdir / "design.json", {"design": "external", "blocks": [
            {"first": 0, "count": int(M), "block": 0}]})
        save_json(workdir / "dataset.json", {"name": name, "num_classes": int(C),
                                             "num_train": int(N), "num_test": int(test_labels.size),
                                             "input_shape": [],
                                             "meta": {"source": f"external:{name}"}})
        ids = np.arange(N) if example_ids is None else np.asarray(example_ids)
        sums = {}
        for fname, arr in (("keep.npy", keep), ("labels.npy", labels), ("example_ids.npy", ids),
                           ("test_labels.npy", test_labels),
                           ("test_ids.npy", np.arange(test_labels.size)),
                           ("model_ratio.npy", keep.mean(1)), ("logits.npy", logits),
                           ("test_logits.npy", test_logits), ("diverged.npy", diverged)):
            sums[fname] = save_npy(workdir / fname, arr)
        integrity.record(workdir, sums)
        provenance.start(workdir, provenance.record(devices=False), imported={
            "source": str(source) if source is not None else None, "name": name,
            "models": int(M), "examples": int(N)})
    return Run(workdir)


def import_lira(src, workdir, *, overwrite=False, epoch=None, delete_imported=False) -> Run:
    """A jaxmem run from a directory in the LiRA reference code's layout (tensorflow/privacy
    ``research/mi_lira_2021``: ``experiment-*/keep.npy``, ``experiment-*/logits/*.npy``)."""
    from jaxmem.attacks.interop import read_lira_layout

    try:
        arrays = read_lira_layout(src, epoch=epoch)
    except (ValueError, OSError) as e:
        raise RunError(f"{src}: {e}") from None
    if "logits" not in arrays or "y_train" not in arrays:
        raise RunError(f"{src}: needs experiment-*/logits/*.npy and y_train.npy to make a run")
    return import_arrays(workdir, arrays["keep"], arrays["logits"],
                         np.asarray(arrays["y_train"]).astype(np.int64), name="lira",
                         overwrite=overwrite, delete_imported=delete_imported,
                         source=Path(src).resolve())


EXPORT_MARKER = "jaxmem_export.json"


def export_lira(workdir, dest) -> Path:
    """Write a jaxmem run's keep, logits and labels in the LiRA reference code's layout.

    ``dest`` must be new, empty, or a previous export of the same run (``jaxmem_export.json``
    names the run), which is then replaced whole: exporting two runs into one folder would make
    one 'run' of both when it is read back."""
    import shutil

    from jaxmem.attacks.interop import write_lira_layout
    from jaxmem.runs.provenance import load

    run = load_run(workdir)
    if run.is_lm:
        raise RunError(f"{workdir}: a language-model run stores per-token signals, not the logits the "
                       f"LiRA layout holds")
    dest = Path(dest)
    run_id = load(workdir).get("run_id") or f"path:{Path(workdir).resolve()}"
    if dest.exists() and not dest.is_dir():
        raise RunError(f"{dest}: exists and is not a directory; choose a new folder to export to")
    if dest.exists() and any(dest.iterdir()):
        marker = dest / EXPORT_MARKER
        prev = load_json(marker).get("run_id") if marker.exists() else None
        if prev != run_id:
            what = ("an export of another run" if prev else "not an export of this run")
            raise RunError(f"{dest}: is not empty and is {what}; choose a new or empty folder "
                           f"(exporting into it would mix the runs' models)")
        marker.unlink()                    # (first: a killed re-export is not taken for whole)
        for p in dest.iterdir():
            if p.name.startswith("experiment") or p.name in ("x_train.npy", "y_train.npy"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    out = Path(write_lira_layout(dest, run.keep, np.asarray(run.logits), run.labels,
                                 hparams={"jaxmem_run": str(Path(workdir).resolve())}))
    save_json(dest / EXPORT_MARKER, {"run_id": run_id, "run": str(Path(workdir).resolve()),
                                     "models": int(run.num_models)})
    return out
