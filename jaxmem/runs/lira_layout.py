"""The LiRA reference code's folder layout (tensorflow/privacy ``research/mi_lira_2021``, and
orientino/lira-pytorch's): :func:`import_lira` reads it into a run (through
:func:`jaxmem.runs.interop.import_arrays`), :func:`export_lira` writes a run in it with what a
round trip needs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from jaxmem.attacks.interop import read_lira_layout, write_lira_layout
from jaxmem.io import RunError, load_json, load_npy, save_json
from jaxmem.runs.interop import as_numpy, import_arrays, run_inputs
from jaxmem.runs.provenance import load
from jaxmem.runs.store import Run, load_run

__all__ = ["import_lira", "export_lira", "EXPORT_MARKER", "EXPORT_FILES"]


def _npy_arg(x, name):
    """An array, or the path of a .npy file holding one."""
    if isinstance(x, (str, Path)):
        try:
            return load_npy(Path(x))
        except (OSError, ValueError) as e:
            raise RunError(f"{name}: cannot read {x} ({e})") from None
    return x


def import_lira(src, workdir, *, labels=None, x_train=None, overwrite=False, epoch=None,
                delete_imported=False, name="lira", overrides=()) -> Run:
    """A jaxmem run from a folder in the LiRA reference code's layout (tensorflow/privacy
    ``research/mi_lira_2021``: ``experiment-*/keep.npy``, ``experiment-*/logits/*.npy``,
    ``y_train.npy``) or orientino/lira-pytorch's (``<id>/keep.npy``, ``<id>/logits.npy``); see
    :mod:`jaxmem.attacks.interop` for the files and shapes.

    Args:
      src: the folder.
      workdir: the new run's folder (as :func:`import_arrays`).
      labels: [N] labels (an array or a .npy path) when the folder has no ``y_train.npy``
        (lira-pytorch saves none); refused when both are there and differ.
      x_train: [N, ...] inputs (an array or a .npy path) when the folder has no ``x_train.npy``.
      epoch: which ``<epoch:010d>.npy`` to read (default: each model's last).
      name, overrides, overwrite, delete_imported: as :func:`import_arrays`.

    What the folder holds is kept: ``x_train.npy`` (the report's images), and what
    ``jaxmem export-lira`` adds: ``example_ids.npy``, the test set (``y_test.npy``,
    ``test_ids.npy``, ``x_test.npy``, ``experiment-*/test_logits/``) and, in each
    ``hparams.json``, the queries' names and whether the model diverged.

    Returns:
      the :class:`~jaxmem.runs.store.Run`.

    Raises:
      RunError: one line: the folder cannot be read, or labels are missing or disagree;
      ArrayInputError / ConfigError as :func:`import_arrays`.
    """
    try:
        arrays = read_lira_layout(src, epoch=epoch)
    except (ValueError, OSError) as e:
        raise RunError(f"{src}: {e}") from None
    if "logits" not in arrays:
        raise RunError(f"{src}: no logits (experiment-*/logits/<epoch>.npy, or <id>/logits.npy) "
                       f"to make a run of")
    y = arrays.get("y_train")
    if labels is not None:
        labels = as_numpy(_npy_arg(labels, "labels"), "labels")
        if y is not None and (np.shape(y) != labels.shape or (np.asarray(y) != labels).any()):
            raise RunError(f"{src}: y_train.npy differs from the labels given; give neither or "
                           f"the same")
        y = labels
    if y is None:
        raise RunError(f"{src}: no y_train.npy: give the N training labels (--labels FILE.npy; "
                       f"lira-pytorch saves none)")
    N = arrays["logits"].shape[1]
    if np.shape(y)[:1] != (N,):   # the reference code's rule: keep and labels cut to the logits' N
        if np.ndim(y) != 1 or len(y) < N:
            raise RunError(f"{src}: y_train.npy {np.shape(y)}: need [N] = [{N}] (logits axis 0)")
        y = np.asarray(y)[:N]
    x = arrays.get("x_train") if x_train is None else _npy_arg(x_train, "x_train")
    if x is not None and len(x) > N and arrays["layout"] == "reference" and x_train is None:
        x = x[:N]
    hp = arrays["hparams"]
    queries = hp[0].get("jaxmem_queries") if hp else None
    if queries is None and arrays["layout"] == "lira-pytorch":
        A = arrays["logits"].shape[2]
        queries = [f"external:random_augmentation_{a}" for a in range(A)]
        warnings.warn(f"{src}: lira-pytorch saves no plain-input query, so memorization, the loss "
                      f"and threshold attacks and correctness read query 0, a random augmentation "
                      f"of each input (its {A} queries are named {queries[0]}..)", stacklevel=2)
    diverged = np.array([bool(h.get("jaxmem_diverged", False)) for h in hp])
    # what the folder says of the training: the settings every model's hparams.json shares
    own = ("expid", "pkeep", "jaxmem_run", "jaxmem_queries", "jaxmem_diverged")
    shared = {k: v for k, v in (hp[0] if hp else {}).items()
              if k not in own and all(h.get(k) == v for h in hp)}
    training = {"layout": arrays["layout"], "hparams": shared,
                "epochs": sorted({int(e) for e in arrays["epochs"] if e >= 0})}
    test = {}
    if "test_logits" in arrays:
        if "y_test" not in arrays:
            raise RunError(f"{src}: experiment-*/test_logits/ without y_test.npy (their labels)")
        test = {"test_logits": arrays["test_logits"], "test_labels": arrays["y_test"],
                "test_ids": arrays.get("test_ids"), "x_test": arrays.get("x_test")}
    return import_arrays(workdir, arrays["keep"], arrays["logits"], y,
                         example_ids=arrays.get("example_ids"), x_train=x, queries=queries,
                         name=name, overrides=overrides, overwrite=overwrite,
                         delete_imported=delete_imported, source=Path(src).resolve(),
                         diverged=diverged, training=training, **test)


EXPORT_MARKER = "jaxmem_export.json"
#: What an export writes at the top of its folder (besides the experiment-* folders).
EXPORT_FILES = ("x_train.npy", "y_train.npy", "example_ids.npy", "x_test.npy", "y_test.npy",
                "test_ids.npy")


def export_lira(workdir, dest, *, log=None) -> Path:
    """Write a jaxmem run in the LiRA reference code's layout, with what a round trip needs.

    The reference files (``experiment-K_M/keep.npy``, ``logits/0000000000.npy`` [N, 1, A, C],
    ``scores/``, ``hparams.json``, ``y_train.npy``, and ``x_train.npy`` when the run's inputs are
    at hand) and jaxmem's additions (``example_ids.npy``, the test set: ``y_test.npy``,
    ``test_ids.npy``, ``x_test.npy``, ``experiment-K_M/test_logits/``; the queries' names and
    whether each model diverged in ``hparams.json``): ``jaxmem import-lira`` then gives back the
    same ids, labels, logits (same dtype), test set, inputs and diverged models. ``log`` is
    told what could not be carried (the inputs, when the data is not at hand).

    ``dest`` must be new, empty, or a previous export of the same run (``jaxmem_export.json``
    names the run), which is then replaced whole: exporting two runs into one folder would make
    one 'run' of both when it is read back.

    Raises:
      RunError: a language-model run, or ``dest`` holds something else.
    """
    import shutil

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
            if p.name.startswith("experiment") or p.name in EXPORT_FILES:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    x, xt = run_inputs(run)
    if x is None and log is not None:
        log(f"export-lira: {workdir}: the training inputs are not at hand (data not found); "
            f"x_train.npy is not written")
    diverged = np.asarray(run.diverged, bool)
    common = {"jaxmem_run": str(Path(workdir).resolve()),
              "jaxmem_queries": list(run.config.signals.queries)}
    hparams = [{**common, "jaxmem_diverged": bool(d)} for d in diverged]
    T = len(run.test_labels)
    out = Path(write_lira_layout(
        dest, run.keep, np.asarray(run.logits), run.labels, hparams=hparams, x=x,
        example_ids=run.example_ids,
        test_logits=np.asarray(run.test_logits) if T else None,
        test_labels=run.test_labels if T else None, test_ids=run.test_ids if T else None,
        x_test=xt if T and xt is not None else None))
    save_json(dest / EXPORT_MARKER, {"run_id": run_id, "run": str(Path(workdir).resolve()),
                                     "models": int(run.num_models)})
    return out
