"""Data sources and their registry.

* ``digits`` - scikit-learn's bundled 8x8 handwritten digits (1,797 images, no network), as
  ``[N, 8, 8, 1]`` float32. Fixed stratified split, independent of library versions: within
  each class, the ``round(0.2 * n_class)`` examples whose key ``sha256(f"digits:{index}")``
  is smallest form the test set (359 test / 1,438 train). Ids are indices into
  ``sklearn.datasets.load_digits()``.
* ``digits_tokens`` - the same digits as 64 pixel-intensity tokens (for the transformer).
* ``mnist1d`` - MNIST-1D (Greydanus 2020) generated offline by ``mnist1d.data.make_dataset``
  with its default arguments (seed 42): 4,000 train / 1,000 test signals ``[N, 40]``.
* ``tfds:NAME`` - :mod:`jaxmem.data.tfds`.
* ``fashion_mnist``, ``mnist``, ``kmnist``, ``idx:DIR`` - the original IDX files read from a user's
  folder (:mod:`jaxmem.data.idx`: where they are looked for, never downloaded).
* ``kjv``, ``austen``, ``python_text``, ``text:PATH`` - text corpora for causal language models,
  tokenized into sequences (:mod:`jaxmem.data.text`, :mod:`jaxmem.data.text_build`; a run's
  ``data.tokenizer``, ``data.max_len``, planted duplicates and canaries are applied by
  :func:`jaxmem.data.build_dataset`, ``load`` gives the defaults).
* ``external:NAME`` - a run imported from arrays (``jaxmem.runs.interop``): it names where the
  logits came from and cannot be loaded (such a run is scored, not trained).

Adding a source = one loader function (returning a validated :class:`Dataset`, e.g. with
:func:`jaxmem.data.dataset.make_dataset`) plus one line in :data:`SOURCES` (a fixed name) or
:data:`PREFIXES` (a family ``prefix:NAME``). This module imports numpy only: config
validation reads the registry.
"""

from __future__ import annotations

import functools
import hashlib
import random

import numpy as np

from jaxmem.config.registry import provide
from jaxmem.data.dataset import DataError, Dataset, make_dataset
from jaxmem.data.preprocess import images, standardize
from jaxmem.data.queries import parse_query
from jaxmem.data.text import TEXT_SOURCES
from jaxmem.data.text_transforms import SECRET_BYTES
from jaxmem.data.tokenizers import TOKENIZERS
from jaxmem.data.transforms import CANARY_KINDS, LABEL_NOISE_KINDS

__all__ = ["SOURCES", "PREFIXES", "load", "check_source", "is_text_source", "input_layout", "digits_split",
           "DIGITS_TEST_FRACTION"]

DIGITS_TEST_FRACTION = 0.2


def digits_split(labels: np.ndarray, test_fraction: float = DIGITS_TEST_FRACTION) -> np.ndarray:
    """Boolean test mask: per class, the round(f * n_c) examples with smallest sha256 key."""
    digest = lambda i: hashlib.sha256(f"digits:{i}".encode()).hexdigest()
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
    return make_dataset("digits_tokens", tokens[tr], labels[tr], ids[tr], tokens[te], labels[te],
                    ids[te], 10, meta)


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw_images = np.asarray(bunch.images, np.float64)[..., None]  # [N, 8, 8, 1], values 0..16
    labels = np.asarray(bunch.target, np.int64)
    raw = hashlib.sha256(raw_images.tobytes() + labels.tobytes()).hexdigest()[:16]
    test = digits_split(labels)
    ids = np.arange(len(labels))
    xtr, xte, prep = images(raw_images[~test], raw_images[test], scale=1.0 / 16.0)
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
    return make_dataset("digits", xtr, labels[tr], ids[tr], xte, labels[te], ids[te], 10, meta)


@functools.lru_cache(maxsize=1)
def _mnist1d_raw() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate MNIST-1D with the package defaults; restores the global RNG states it reseeds."""
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset as make_mnist1d

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_mnist1d(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in out:
        a.flags.writeable = False
    return out


def _load_mnist1d() -> Dataset:
    x, y, xt, yt = _mnist1d_raw()
    xtr, xte, stats = standardize(x, xt, scale=1.0, per_channel=False)
    meta = {
        "source": "mnist1d",
        "origin": "mnist1d.data.make_dataset(get_dataset_args())",
        "split": "the package's own: first 4000 generated examples train, last 1000 test",
        "preprocessing": {"kind": "signal", **stats},
    }
    return make_dataset(
        "mnist1d", xtr, y, np.arange(len(y)), xte, yt, np.arange(len(yt)), 10, meta
    )


def _load_tfds(name: str, data_dir=None, download: bool = False) -> Dataset:
    from jaxmem.data.tfds import load_tfds

    return load_tfds(name, data_dir, download)


def _load_idx(source: str, data_dir=None) -> Dataset:
    """An IDX source (:mod:`jaxmem.data.idx`): images [N, 28, 28, 1] scaled by 1/255, then
    standardized per channel with the training set's statistics; ids are the row indices in the
    files; the files found, their sha256 and where they were found are in ``meta``."""
    from jaxmem.data.idx import load as load_idx

    r = load_idx(source, data_dir)
    xtr, xte, prep = images(r.x_train[..., None], r.x_test[..., None], scale=1.0 / 255.0)
    name = r.meta.get("source", source)
    meta = {**r.meta, "origin": "jaxmem.data.idx", "preprocessing": prep}
    return make_dataset(name, xtr, r.y_train, np.arange(len(r.y_train)), xte, r.y_test,
                        np.arange(len(r.y_test)), int(r.meta["num_classes"]), meta)


def _idx_dir(name: str, data_dir=None, download: bool = False) -> Dataset:
    return _load_idx(f"idx:{name}", data_dir)


def _load_text(source: str, data_dir=None) -> Dataset:
    from jaxmem.data.text_build import load_text_dataset

    return load_text_dataset(source, data_dir)


def _text_file(name: str, data_dir=None, download: bool = False) -> Dataset:
    return _load_text(f"text:{name}", data_dir)


def _external(name: str, data_dir=None, download: bool = False) -> Dataset:
    raise DataError(f"external:{name}: a run imported from arrays; its data cannot be loaded")


#: Fixed-name sources: name -> loader().
SOURCES = {"digits": _load_digits, "digits_tokens": _load_digits_tokens, "mnist1d": _load_mnist1d,
           "fashion_mnist": functools.partial(_load_idx, "fashion_mnist"),
           "mnist": functools.partial(_load_idx, "mnist"),
           "kmnist": functools.partial(_load_idx, "kmnist"),
           "kjv": functools.partial(_load_text, "kjv"), "austen": functools.partial(_load_text, "austen"),
           "python_text": functools.partial(_load_text, "python_text")}
#: Fixed-name sources that read files from ``data.data_dir`` (their loader takes it).
READS_DATA_DIR = {"fashion_mnist", "mnist", "kmnist", "kjv", "austen"}
#: Source families "prefix:NAME": prefix -> loader(NAME, data_dir, download).
PREFIXES = {"tfds": _load_tfds, "idx": _idx_dir, "external": _external, "text": _text_file}


#: What a source's inputs are, for what applies to them (training augmentations): ``image``
#: ``[H, W, C]``, ``signal`` (1-D), ``tokens``, ``text``; a family by its prefix.
LAYOUTS = {"digits": "image", "digits_tokens": "tokens", "mnist1d": "signal",
           "fashion_mnist": "image", "mnist": "image", "kmnist": "image", "idx": "image",
           "tfds": "image"}


def input_layout(source: str):
    """``"image"``, ``"signal"``, ``"tokens"`` or ``"text"`` for ``source``; None when not known
    before loading (``external:NAME``)."""
    if is_text_source(source):
        return "text"
    return LAYOUTS.get(source, LAYOUTS.get(source.partition(":")[0]) if ":" in source else None)


def is_text_source(source: str) -> bool:
    """Whether ``source`` is a text corpus (``kjv``, ``austen``, ``python_text``, ``text:PATH``)."""
    return source in TEXT_SOURCES or source.startswith("text:")


def check_source(source: str) -> None:
    """Raise ValueError unless ``source`` names a registered source (nothing is loaded)."""
    prefix, sep, rest = source.partition(":")
    if source in SOURCES or (sep and prefix in PREFIXES and rest):
        return
    raise ValueError(f"must be {', '.join(SOURCES)} or {' or '.join(p + ':NAME' for p in PREFIXES)}, "
                     f"got {source!r}")


def load(source: str, *, data_dir: str | None = None, download: bool = False) -> Dataset:
    """Load `source` (a name of :data:`SOURCES` or ``PREFIX:NAME``) into memory, standardized
    and validated. `data_dir` applies to TFDS and IDX sources, `download` to TFDS only. Without `download`,
    missing TFDS data raises `DataError` at once, naming how to prepare it elsewhere."""
    if source in SOURCES:
        return SOURCES[source](data_dir) if source in READS_DATA_DIR else SOURCES[source]()
    prefix, sep, rest = source.partition(":")
    if sep and prefix in PREFIXES:
        if not rest and prefix == "tfds":
            raise DataError("empty TFDS dataset name; use e.g. 'tfds:cifar10'")
        return PREFIXES[prefix](rest, data_dir, download)
    raise DataError(f"unknown data source {source!r}; use {', '.join(SOURCES)} or "
                    f"{' or '.join(p + ':NAME' for p in PREFIXES if p != 'external')}")


#: The ``data.*`` fields that only one kind of source reads (the others apply to both): a field of
#: the other kind, set away from its default, is refused at the door (config validation).
FIELDS_BY_KIND = {
    "image": ("label_noise", "noise_seed", "label_noise_kind", "duplicates", "duplicate_copies",
              "long_tail_classes", "long_tail_fraction"),
    "text": ("tokenizer", "bpe_vocab_size", "max_len", "text_column", "text_test_fraction",
             "text_offset", "plant_counts", "plant_per_count", "canary_counts", "canary_references"),
}

# What config validation asks of the data package (jaxmem.config.registry.provided).
for _key, _obj in {"data.check_source": check_source, "data.input_layout": input_layout,
                   "data.is_text_source": is_text_source, "data.parse_query": parse_query,
                   "data.tokenizers": TOKENIZERS, "data.canary_kinds": CANARY_KINDS,
                   "data.label_noise_kinds": LABEL_NOISE_KINDS,
                   "data.secret_bytes": SECRET_BYTES, "data.fields_by_kind": FIELDS_BY_KIND}.items():
    provide(_key, _obj)
