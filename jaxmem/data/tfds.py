"""``tfds:NAME`` sources: any TFDS dataset with an image and a class-label feature
(``tfds:mnist``, ``tfds:cifar10``, ...), read without TensorFlow through
``tfds.data_source`` from data prepared in the ``array_record`` format. Nothing is downloaded
unless ``download=True``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxmem.data.dataset import DataError, Dataset, make_dataset
from jaxmem.data.preprocess import images

__all__ = ["load_tfds"]


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
    except Exception:
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


def load_tfds(name: str, data_dir: str | None, download: bool) -> Dataset:
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
    except Exception as e:
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
    xtr, xte, prep = images(xtr, xte, scale=scale)
    meta = {
        "source": f"tfds:{name}",
        "origin": "tensorflow_datasets.data_source",
        "version": str(info.version),
        "data_dir": data_dir,
        "splits": {"train": "train", "test": "test"},
        "features": {"image": image_key, "label": label_key},
        "preprocessing": prep,
    }
    return make_dataset(
        f"tfds:{name}", xtr, ytr, np.arange(len(ytr)), xte, yte, np.arange(len(yte)),
        num_classes, meta,
    )
