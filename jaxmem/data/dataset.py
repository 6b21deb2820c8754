"""The in-memory dataset type, its validation and fingerprint.

Every dataset is held in memory as numpy arrays (`Dataset`). Each example carries a stable
integer id (its index in the source's split), so subsets, signals and reports can refer to
examples across runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

__all__ = ["DataError", "Dataset", "validate_dataset", "dataset_fingerprint", "make_dataset"]


class DataError(ValueError):
    """A dataset is missing, malformed, or a transform got invalid arguments."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """An in-memory classification dataset with stable example ids and a provenance record."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    ids_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ids_test: np.ndarray
    num_classes: int
    meta: dict

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.num_train}, test={self.num_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"transforms={[t['name'] for t in self.meta.get('transforms', [])]})"
        )


def validate_dataset(ds: Dataset) -> None:
    """Raise `DataError` naming the first problem found in `ds`; return None when it is sound."""
    if not isinstance(ds.num_classes, (int, np.integer)) or ds.num_classes < 1:
        raise DataError(f"num_classes must be a positive int, got {ds.num_classes!r}")
    for split in ("train", "test"):
        x, y, ids = (getattr(ds, f"{k}_{split}") for k in ("x", "y", "ids"))
        for k, a in (("x", x), ("y", y), ("ids", ids)):
            if not isinstance(a, np.ndarray):
                raise DataError(f"{k}_{split} must be a numpy array, got {type(a).__name__}")
        if not (len(x) == len(y) == len(ids)):
            raise DataError(
                f"mismatched lengths in {split}: x {len(x)}, y {len(y)}, ids {len(ids)}"
            )
        if len(x) == 0:
            raise DataError(f"empty {split} split")
        if y.ndim != 1 or ids.ndim != 1:
            raise DataError(f"y_{split} and ids_{split} must be 1-D, got {y.shape} and {ids.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"y_{split} must hold integer labels, got dtype {y.dtype}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise DataError(f"ids_{split} must hold integer ids, got dtype {ids.dtype}")
        bad = (y < 0) | (y >= ds.num_classes)
        if bad.any():
            raise DataError(
                f"{int(bad.sum())} labels in y_{split} out of [0, {ds.num_classes}), "
                f"e.g. {int(y[bad][0])} at row {int(np.flatnonzero(bad)[0])}"
            )
        if np.issubdtype(x.dtype, np.inexact) and not np.isfinite(x).all():
            rows = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
            raise DataError(f"non-finite inputs in x_{split} ({rows} rows)")
        if not (np.issubdtype(x.dtype, np.inexact) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"x_{split} must be float or integer, got dtype {x.dtype}")
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != len(ids):
            raise DataError(f"duplicate ids in ids_{split}, e.g. {int(uniq[counts > 1][0])}")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        raise DataError(
            f"mismatched input shapes: train {ds.x_train.shape[1:]}, test {ds.x_test.shape[1:]}"
        )
    try:
        json.dumps(ds.meta)
    except (TypeError, ValueError) as e:
        raise DataError(f"meta is not JSON-serializable: {e}") from None


def dataset_fingerprint(ds: Dataset) -> str:
    """Short sha256 (16 hex digits) of all arrays, their dtypes and shapes, and num_classes."""
    h = hashlib.sha256()
    h.update(f"num_classes={int(ds.num_classes)};".encode())
    for k in ("x_train", "y_train", "ids_train", "x_test", "y_test", "ids_test"):
        a = np.ascontiguousarray(getattr(ds, k))
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.data)
    return h.hexdigest()[:16]


def make_dataset(name, xtr, ytr, idtr, xte, yte, idte, num_classes, meta) -> Dataset:
    ids_train = np.asarray(idtr, np.int64)
    ids_test = np.asarray(idte, np.int64)
    meta = {
        **meta,
        "next_id": int(max(ids_train.max(initial=-1), ids_test.max(initial=-1)) + 1),
        "transforms": [],
    }
    ds = Dataset(
        name=name,
        x_train=xtr,
        y_train=np.asarray(ytr, np.int32),
        ids_train=ids_train,
        x_test=xte,
        y_test=np.asarray(yte, np.int32),
        ids_test=ids_test,
        num_classes=int(num_classes),
        meta=meta,
    )
    validate_dataset(ds)
    return ds
