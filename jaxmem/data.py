"""Datasets for memorization experiments: loading, validation and recorded transforms.

Every dataset is held in memory as numpy arrays (`Dataset`). Each example carries a stable
integer id (its index in the source's split), so subsets, signals and reports can refer to
examples across runs. Transforms (`label_noise`, `long_tail`, `duplicate`, `insert_canaries`)
return new datasets and append a JSON-serializable record to ``meta["transforms"]``; examples
they add get fresh ids that continue after the largest id ever used (``meta["next_id"]``).

Sources (`load`):

* ``digits`` - scikit-learn's bundled 8x8 handwritten digits (1,797 images, no network), as
  ``[N, 8, 8, 1]`` float32. Fixed stratified split, independent of library versions: within
  each class, the ``round(0.2 * n_class)`` examples whose key ``sha256(f"digits:{index}")``
  is smallest form the test set (359 test / 1,438 train). Ids are indices into
  ``sklearn.datasets.load_digits()``.
* ``mnist1d`` - MNIST-1D (Greydanus 2020) generated offline by ``mnist1d.data.make_dataset``
  with its default arguments (seed 42): 4,000 train / 1,000 test signals ``[N, 40]``.
* ``tfds:NAME`` - any TFDS dataset with an image and a class-label feature (``tfds:mnist``,
  ``tfds:cifar10``, ...), read without TensorFlow through ``tfds.data_source`` from data
  prepared in the ``array_record`` format. Nothing is downloaded unless ``download=True``.

Images are scaled to [0, 1] and standardized per channel with the train split's mean and
standard deviation; 1-D signals are standardized with the train split's scalar mean and std.
The statistics are stored in ``meta["preprocessing"]``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import os
import random
from typing import Any, Sequence

import numpy as np

__all__ = [
    "DataError",
    "Dataset",
    "load",
    "validate",
    "dataset_fingerprint",
    "label_noise",
    "flipped_mask",
    "long_tail",
    "rare_mask",
    "duplicate",
    "duplicate_groups",
    "insert_canaries",
    "canary_mask",
    "digits_split",
    "DIGITS_TEST_FRACTION",
]

DIGITS_TEST_FRACTION = 0.2
_CHUNK = 4096  # rows per chunk when converting/standardizing, to bound float64 temporaries


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


# --------------------------------------------------------------------------- validation


def validate(ds: Dataset) -> None:
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


# --------------------------------------------------------------------------- preprocessing


def _chunks(n: int):
    for lo in range(0, n, _CHUNK):
        yield slice(lo, min(n, lo + _CHUNK))


def _standardize(x_train, x_test, *, scale: float, per_channel: bool):
    """(x * scale - mean) / std in float32, with float64 mean/std of the scaled train split.

    Statistics are per channel (last axis) or over all values. uint8/uint16 inputs use exact
    per-channel value histograms and a lookup table (no float64 copy of CIFAR-sized data);
    other inputs use two chunked float64 passes.
    """
    c = x_train.shape[-1] if per_channel else 1
    if x_train.dtype in (np.uint8, np.uint16) and x_test.dtype == x_train.dtype:
        return _standardize_lut(x_train, x_test, scale=scale, c=c, per_channel=per_channel)
    count = x_train.size // c
    total = np.zeros(c)
    for s in _chunks(len(x_train)):
        total += (x_train[s].astype(np.float64) * scale).reshape(-1, c).sum(axis=0)
    mean = total / count
    ss = np.zeros(c)
    for s in _chunks(len(x_train)):
        d = (x_train[s].astype(np.float64) * scale).reshape(-1, c) - mean
        ss += np.einsum("ij,ij->j", d, d)
    std = _safe_std(ss / count)

    def apply(x):
        out = np.empty(x.shape, np.float32)
        for s in _chunks(len(x)):
            z = (x[s].astype(np.float64) * scale).reshape(-1, c)
            out[s] = ((z - mean) / std).reshape(x[s].shape)
        return out

    return apply(x_train), apply(x_test), _stats(scale, per_channel, mean, std)


def _safe_std(var: np.ndarray) -> np.ndarray:
    std = np.sqrt(var)
    return np.where(std > 0, std, 1.0)


def _stats(scale, per_channel, mean, std) -> dict:
    return {
        "scale": float(scale),
        "per_channel": bool(per_channel),
        "mean": mean.tolist(),
        "std": std.tolist(),
    }


def _standardize_lut(x_train, x_test, *, scale: float, c: int, per_channel: bool):
    """Exact mean/std from per-channel histograms of integer values; apply by table lookup."""
    k = int(np.iinfo(x_train.dtype).max) + 1
    counts = np.zeros((k, c))
    for s in _chunks(len(x_train)):
        flat = x_train[s].reshape(-1, c)
        for j in range(c):
            counts[:, j] += np.bincount(flat[:, j], minlength=k)
    v = np.arange(k, dtype=np.float64)[:, None] * scale
    n = counts.sum(axis=0)
    mean = (counts * v).sum(axis=0) / n
    std = _safe_std((counts * (v - mean) ** 2).sum(axis=0) / n)
    lut = ((v - mean) / std).astype(np.float32)  # [k, c]

    def apply(x):
        out = np.empty(x.shape, np.float32)
        for s in _chunks(len(x)):
            flat, dst = x[s].reshape(-1, c), out[s].reshape(-1, c)
            for j in range(c):
                dst[:, j] = lut[:, j].take(flat[:, j])
        return out

    return apply(x_train), apply(x_test), _stats(scale, per_channel, mean, std)


def _images(x_train, x_test, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """NHWC images: multiply by `scale` (to [0, 1]), then standardize per channel."""
    xtr, xte, stats = _standardize(x_train, x_test, scale=scale, per_channel=True)
    return xtr, xte, {"kind": "image", **stats}


def _dataset(name, xtr, ytr, idtr, xte, yte, idte, num_classes, meta) -> Dataset:
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
    validate(ds)
    return ds


# --------------------------------------------------------------------------- sources


def digits_split(labels: np.ndarray, test_fraction: float = DIGITS_TEST_FRACTION) -> np.ndarray:
    """Boolean test mask: per class, the round(f * n_c) examples with smallest sha256 key."""
    digest = lambda i: hashlib.sha256(f"digits:{i}".encode()).hexdigest()  # noqa: E731
    keys = np.array([int(digest(i)[:15], 16) for i in range(len(labels))])
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(test_fraction * len(idx)))
        test[idx[np.argsort(keys[idx], kind="stable")[:k]]] = True
    return test


def _load_digits_tokens() -> Dataset:
    """The digits as token sequences for the transformer: the 64 raw pixel intensities (0..16,
    row-major) as int32 tokens, vocabulary 17; same split and ids as ``digits``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    tokens = np.asarray(bunch.data, np.int32)  # [N, 64], values 0..16
    labels = np.asarray(bunch.target, np.int64)
    test = digits_split(labels)
    ids = np.arange(len(labels))
    meta = {"source": "digits_tokens", "origin": "sklearn.datasets.load_digits",
            "raw_sha256": hashlib.sha256(tokens.tobytes() + labels.tobytes()).hexdigest()[:16],
            "vocab_size": 17, "preprocessing": "raw 0..16 pixel intensities as tokens"}
    tr, te = ~test, test
    return _dataset("digits_tokens", tokens[tr], labels[tr], ids[tr], tokens[te], labels[te],
                    ids[te], 10, meta)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, np.float64)[..., None]  # [N, 8, 8, 1], values 0..16
    labels = np.asarray(bunch.target, np.int64)
    raw = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    test = digits_split(labels)
    ids = np.arange(len(labels))
    xtr, xte, prep = _images(images[~test], images[test], scale=1.0 / 16.0)
    meta = {
        "source": "digits",
        "origin": "sklearn.datasets.load_digits",
        "raw_sha256": raw,
        "split": (
            f"stratified: per class, the round({DIGITS_TEST_FRACTION} * n_class) examples with the "
            "smallest sha256('digits:{index}') are test"
        ),
        "preprocessing": prep,
    }
    tr, te = ~test, test
    return _dataset("digits", xtr, labels[tr], ids[tr], xte, labels[te], ids[te], 10, meta)


@functools.lru_cache(maxsize=1)
def _mnist1d_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D with the package defaults; restores the global RNG states it reseeds."""
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in out:
        a.flags.writeable = False
    return out


def _load_mnist1d() -> Dataset:
    x, y, xt, yt = _mnist1d_raw()
    xtr, xte, stats = _standardize(x, xt, scale=1.0, per_channel=False)
    meta = {
        "source": "mnist1d",
        "origin": "mnist1d.data.make_dataset(get_dataset_args())",
        "split": "the package's own: first 4000 generated examples train, last 1000 test",
        "preprocessing": {"kind": "signal", **stats},
    }
    return _dataset(
        "mnist1d", xtr, y, np.arange(len(y)), xte, yt, np.arange(len(yt)), 10, meta
    )


def _tfds_help(name: str, data_dir: str | None) -> str:
    target = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    base = name.split(":")[0].split("/")[0]
    return (
        "prepare it on a machine with network and TensorFlow: python -c \"import "
        f"tensorflow_datasets as tfds; tfds.builder('{name}', file_format='array_record')"
        f".download_and_prepare()\", then copy ~/tensorflow_datasets/{base} into {target} "
        "(or point --set data.data_dir=PATH at its parent)"
    )


def _tfds_missing(tfds, name: str, data_dir: str | None, err: Exception) -> str:
    """One-line diagnosis of why prepared TFDS data could not be opened (download=False)."""
    try:
        where = str(tfds.builder(name, data_dir=data_dir).data_dir)
    except Exception:  # noqa: BLE001
        where = os.path.join(data_dir or "the default TFDS data dir", name)
    files = os.listdir(where) if os.path.isdir(where) else []
    if any(".tfrecord" in f for f in files):
        state = (
            f"is prepared at {where} in the TFRecord format, which needs TensorFlow to read; "
            "re-prepare it with file_format='array_record'"
        )
    elif "dataset_info.json" not in files:
        state = f"is not prepared at {where} (no dataset_info.json) and download=False"
    else:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        state = f"at {where} could not be opened ({type(err).__name__}: {first})"
    return f"TFDS dataset {name!r} {state}; " + _tfds_help(name, data_dir)


def _find_features(features) -> tuple[str, str]:
    """Pick the image and class-label keys of a TFDS FeaturesDict."""
    import tensorflow_datasets as tfds

    items = dict(features.items())
    labels = [k for k, f in items.items() if isinstance(f, tfds.features.ClassLabel)]
    images = [
        k
        for k, f in items.items()
        if isinstance(f, tfds.features.Image)
        or (isinstance(f, tfds.features.Tensor) and len(f.shape) == 3)
    ]
    label = "label" if "label" in labels else (labels[0] if len(labels) == 1 else None)
    image = "image" if "image" in images else (images[0] if len(images) == 1 else None)
    if label is None or image is None:
        raise DataError(
            f"need one image and one class-label feature, found features {sorted(items)}"
        )
    return image, label


def _records_to_arrays(src, image_key: str, label_key: str, chunk: int = 4096):
    n = len(src)
    images, labels = [], []
    for lo in range(0, n, chunk):
        keys = list(range(lo, min(n, lo + chunk)))
        try:
            recs = src.__getitems__(keys)
        except (AttributeError, TypeError):  # e.g. tfds.testing.mock_data's broken batch read
            recs = [src[i] for i in keys]
        images.extend(np.asarray(r[image_key]) for r in recs)
        labels.extend(int(r[label_key]) for r in recs)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"images of varying shapes {sorted(shapes)[:3]}; resize them first")
    return np.stack(images), np.asarray(labels, np.int64)


def _load_tfds(name: str, data_dir: str | None, download: bool) -> Dataset:
    import tensorflow_datasets as tfds

    if not name:
        raise DataError("empty TFDS dataset name; use e.g. 'tfds:cifar10'")
    kwargs: dict[str, Any] = {"data_dir": data_dir, "download": download}
    if download:
        kwargs["builder_kwargs"] = {"file_format": "array_record"}
        kwargs["download_and_prepare_kwargs"] = {}
    try:
        train, test = tfds.data_source(name, split=["train", "test"], **kwargs)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown TFDS dataset {name!r}") from None
    except Exception as e:  # noqa: BLE001 - TFDS raises many types for missing data
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if download:
            raise DataError(
                f"could not download/prepare TFDS dataset {name!r} ({type(e).__name__}: {first}); "
                "preparing images needs TensorFlow (pip install 'jaxmem[tf]') and network; or "
                + _tfds_help(name, data_dir)
            ) from e
        raise DataError(_tfds_missing(tfds, name, data_dir, e)) from e
    info = train.dataset_info
    image_key, label_key = _find_features(info.features)
    num_classes = int(info.features[label_key].num_classes)
    xtr, ytr = _records_to_arrays(train, image_key, label_key)
    xte, yte = _records_to_arrays(test, image_key, label_key)
    if xtr.ndim == 3:
        xtr, xte = xtr[..., None], xte[..., None]
    scale = 1.0 / np.iinfo(xtr.dtype).max if np.issubdtype(xtr.dtype, np.integer) else 1.0
    xtr, xte, prep = _images(xtr, xte, scale=scale)
    meta = {
        "source": f"tfds:{name}",
        "origin": "tensorflow_datasets.data_source",
        "version": str(info.version),
        "data_dir": data_dir,
        "splits": {"train": "train", "test": "test"},
        "features": {"image": image_key, "label": label_key},
        "preprocessing": prep,
    }
    return _dataset(
        f"tfds:{name}", xtr, ytr, np.arange(len(ytr)), xte, yte, np.arange(len(yte)),
        num_classes, meta,
    )


def load(source: str, *, data_dir: str | None = None, download: bool = False) -> Dataset:
    """Load `source` ('digits', 'mnist1d' or 'tfds:NAME') into memory, standardized and validated.

    `data_dir` and `download` apply to TFDS sources only. Without `download`, missing TFDS data
    raises `DataError` at once, naming how to prepare it elsewhere.
    """
    if source == "digits":
        return _load_digits()
    if source == "digits_tokens":
        return _load_digits_tokens()
    if source == "mnist1d":
        return _load_mnist1d()
    if source.startswith("tfds:"):
        return _load_tfds(source[len("tfds:"):], data_dir, download)
    raise DataError(f"unknown data source {source!r}; use 'digits', 'digits_tokens', 'mnist1d' or 'tfds:NAME'")


# --------------------------------------------------------------------------- transforms


def _ints(a) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def _replace(ds: Dataset, record: dict, *, next_id: int | None = None, **arrays) -> Dataset:
    meta = copy.deepcopy(ds.meta)
    meta.setdefault("transforms", []).append(record)
    if next_id is not None:
        meta["next_id"] = int(next_id)
    out = dataclasses.replace(ds, meta=meta, **arrays)
    validate(out)
    return out


def _new_ids(ds: Dataset, k: int) -> np.ndarray:
    start = max(int(ds.meta.get("next_id", 0)), int(ds.ids_train.max()) + 1,
                int(ds.ids_test.max()) + 1)
    return np.arange(start, start + k, dtype=np.int64)


def _recorded_ids(ds: Dataset, transform: str, key: str) -> np.ndarray:
    ids = [i for t in ds.meta.get("transforms", []) if t["name"] == transform for i in t[key]]
    return np.isin(ds.ids_train, np.asarray(ids, np.int64))


def _random_other_labels(rng: np.random.Generator, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Uniformly random labels different from `y` (y + U{1..C-1} mod C)."""
    shift = rng.integers(1, num_classes, size=len(y))
    return ((y.astype(np.int64) + shift) % num_classes).astype(np.int32)


def label_noise(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """Flip round(fraction * N) distinct train labels, each to a uniformly random other class.

    Records the flipped ids with their original and new labels; `flipped_mask` reads them back.
    """
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"label noise fraction must be in [0, 1], got {fraction}")
    if ds.num_classes < 2:
        raise DataError("label noise needs at least 2 classes")
    rng = np.random.default_rng(seed)
    k = int(round(fraction * ds.num_train))
    rows = np.sort(rng.choice(ds.num_train, size=k, replace=False))
    y = ds.y_train.copy()
    new = _random_other_labels(rng, y[rows], ds.num_classes)
    record = {
        "name": "label_noise",
        "fraction": float(fraction),
        "seed": int(seed),
        "num_flipped": k,
        "flipped_ids": _ints(ds.ids_train[rows]),
        "original_labels": _ints(y[rows]),
        "new_labels": _ints(new),
    }
    y[rows] = new
    return _replace(ds, record, y_train=y)


def flipped_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples whose id was flipped by any `label_noise` transform."""
    return _recorded_ids(ds, "label_noise", "flipped_ids")


def long_tail(
    ds: Dataset,
    seed: int,
    *,
    classes: Sequence[int] | None = None,
    keep_fraction: float,
    profile: str = "step",
    groups: np.ndarray | None = None,
) -> Dataset:
    """Subsample train examples of some groups (classes by default) to make them rare.

    profile='step': each group in `classes` keeps round(keep_fraction * n_g) random examples.
    profile='exponential' (Cui et al. 2019, "Class-Balanced Loss", long-tailed CIFAR): the k-th of
    the K groups in `classes` (default: all classes in order) keeps round(n_g * keep_fraction **
    (k / (K - 1))): the first keeps all, the last a `keep_fraction` (imbalance 1/keep_fraction).
    `groups` ([num_train] ints) names subpopulations to subsample instead of classes
    (Feldman & Zhang 2020). Groups not listed are untouched; the test split is unchanged.
    Records per-group counts and the ids of kept examples in subsampled groups (`rare_mask`).
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise DataError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    g = ds.y_train.astype(np.int64) if groups is None else np.asarray(groups)
    if g.shape != (ds.num_train,) or not np.issubdtype(g.dtype, np.integer):
        raise DataError(f"groups must be an int array of shape ({ds.num_train},), got {g.shape}")
    if classes is None:
        if profile == "step":
            raise DataError("long_tail with profile='step' needs `classes` (groups to make rare)")
        classes = list(range(ds.num_classes)) if groups is None else _ints(np.unique(g))
    classes = _ints(classes)
    if len(set(classes)) != len(classes):
        raise DataError(f"classes must be distinct, got {classes}")
    if profile == "step":
        fractions = [keep_fraction] * len(classes)
    elif profile == "exponential":
        K = len(classes)
        fractions = [keep_fraction ** (k / (K - 1)) if K > 1 else keep_fraction for k in range(K)]
    else:
        raise DataError(f"unknown long_tail profile {profile!r}; use 'step' or 'exponential'")
    rng = np.random.default_rng(seed)
    keep = np.ones(ds.num_train, bool)
    rare = np.zeros(ds.num_train, bool)
    per_group = []
    for c, f in zip(classes, fractions):
        rows = np.flatnonzero(g == c)
        if len(rows) == 0:
            raise DataError(f"group {c} has no train examples")
        k = int(round(f * len(rows)))
        kept = rng.choice(rows, size=k, replace=False)
        keep[rows] = False
        keep[kept] = True
        if k < len(rows):
            rare[kept] = True
        per_group.append({"group": c, "keep_fraction": float(f), "original": len(rows), "kept": k})
    if not keep.any():
        raise DataError("long_tail would remove every train example")
    record = {
        "name": "long_tail",
        "seed": int(seed),
        "profile": profile,
        "keep_fraction": float(keep_fraction),
        "by": "label" if groups is None else "groups",
        "groups": per_group,
        "num_removed": int((~keep).sum()),
        "rare_ids": _ints(np.sort(ds.ids_train[rare])),
    }
    return _replace(
        ds, record, x_train=ds.x_train[keep], y_train=ds.y_train[keep], ids_train=ds.ids_train[keep]
    )


def rare_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples in a group subsampled by any `long_tail` transform."""
    return _recorded_ids(ds, "long_tail", "rare_ids")


def duplicate(ds: Dataset, seed: int, *, num: int, copies: int) -> Dataset:
    """Append `copies` exact copies of each of `num` distinct random train examples, with new ids.

    Records original id -> duplicate ids; `duplicate_groups` gives the group array for
    leave-group-out designs (an example and its copies share a group).
    """
    if not 0 <= num <= ds.num_train:
        raise DataError(f"duplicate num must be in [0, {ds.num_train}], got {num}")
    if copies < 1:
        raise DataError(f"duplicate copies must be >= 1, got {copies}")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(ds.num_train, size=num, replace=False))
    src = np.repeat(rows, copies)
    new_ids = _new_ids(ds, len(src))
    record = {
        "name": "duplicate",
        "seed": int(seed),
        "num": int(num),
        "copies": int(copies),
        "original_ids": _ints(ds.ids_train[rows]),
        "duplicate_ids": [_ints(r) for r in new_ids.reshape(num, copies)],
    }
    return _replace(
        ds,
        record,
        next_id=int(new_ids[-1]) + 1 if len(new_ids) else None,
        x_train=np.concatenate([ds.x_train, ds.x_train[src]]),
        y_train=np.concatenate([ds.y_train, ds.y_train[src]]),
        ids_train=np.concatenate([ds.ids_train, new_ids]),
    )


def duplicate_groups(ds: Dataset) -> np.ndarray:
    """int64 [num_train]: the id of each train example's original (its own id if not a copy)."""
    root = {}
    for t in ds.meta.get("transforms", []):
        if t["name"] == "duplicate":
            for orig, dups in zip(t["original_ids"], t["duplicate_ids"]):
                for d in dups:
                    root[d] = root.get(orig, orig)
    return np.array([root.get(int(i), int(i)) for i in ds.ids_train], np.int64)


def _random_inputs(ds: Dataset, rng: np.random.Generator, num: int) -> tuple[np.ndarray, str]:
    """Noise inputs: uniform raw pixels/values, preprocessed like the real data."""
    shape = (num, *ds.input_shape)
    prep = ds.meta.get("preprocessing", {})
    if np.issubdtype(ds.x_train.dtype, np.integer):
        lo, hi = int(ds.x_train.min()), int(ds.x_train.max())
        x = rng.integers(lo, hi + 1, size=shape).astype(ds.x_train.dtype)
        return x, f"uniform ints [{lo}, {hi}]"
    if prep.get("kind") == "image":
        u = rng.uniform(0.0, 1.0, size=shape)
        x = (u - np.asarray(prep["mean"])) / np.asarray(prep["std"])
        return x.astype(ds.x_train.dtype), "uniform [0, 1] pixels, standardized like train"
    lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
    return rng.uniform(lo, hi, size=shape).astype(ds.x_train.dtype), f"uniform [{lo:.4g}, {hi:.4g}]"


def insert_canaries(ds: Dataset, seed: int, *, num: int, kind: str = "random_label") -> Dataset:
    """Append `num` canary train examples with new ids.

    kind='random_label': copies of `num` distinct random train inputs, each with a uniformly
    random wrong label (the originals stay, correctly labeled). kind='random_input': uniform
    noise inputs (see `_random_inputs`) with uniformly random labels. `canary_mask` reads them back.
    """
    if num < 1:
        raise DataError(f"canary num must be >= 1, got {num}")
    rng = np.random.default_rng(seed)
    if kind == "random_label":
        if num > ds.num_train:
            raise DataError(f"canary num must be <= num_train={ds.num_train}, got {num}")
        if ds.num_classes < 2:
            raise DataError("random_label canaries need at least 2 classes")
        rows = np.sort(rng.choice(ds.num_train, size=num, replace=False))
        x = ds.x_train[rows]
        y = _random_other_labels(rng, ds.y_train[rows], ds.num_classes)
        extra = {"source_ids": _ints(ds.ids_train[rows]), "source_labels": _ints(ds.y_train[rows])}
    elif kind == "random_input":
        x, how = _random_inputs(ds, rng, num)
        y = rng.integers(0, ds.num_classes, size=num).astype(np.int32)
        extra = {"inputs": how}
    else:
        raise DataError(f"unknown canary kind {kind!r}; use 'random_label' or 'random_input'")
    new_ids = _new_ids(ds, num)
    record = {
        "name": "insert_canaries",
        "kind": kind,
        "seed": int(seed),
        "num": int(num),
        "canary_ids": _ints(new_ids),
        "labels": _ints(y),
        **extra,
    }
    return _replace(
        ds,
        record,
        next_id=int(new_ids[-1]) + 1,
        x_train=np.concatenate([ds.x_train, x]),
        y_train=np.concatenate([ds.y_train, y.astype(ds.y_train.dtype)]),
        ids_train=np.concatenate([ds.ids_train, new_ids]),
    )


def canary_mask(ds: Dataset) -> np.ndarray:
    """bool [num_train]: train examples inserted by any `insert_canaries` transform."""
    return _recorded_ids(ds, "insert_canaries", "canary_ids")
