"""Datasets for memorization experiments: sources (a registry), preprocessing, recorded
transforms, test-time queries, and a run's dataset built from its config. numpy only at import.

* :mod:`jaxmem.data.dataset` - :class:`Dataset`, :func:`validate_dataset`, :func:`dataset_fingerprint`
* :mod:`jaxmem.data.sources` - the source registry and :func:`load` (``digits``, ``mnist1d``, ...)
* :mod:`jaxmem.data.tfds` - ``tfds:NAME`` without TensorFlow
* :mod:`jaxmem.data.preprocess` - standardization
* :mod:`jaxmem.data.transforms` - label noise, long tail, duplicates, canaries
* :mod:`jaxmem.data.queries` - test-time augmentation queries
* :mod:`jaxmem.data.build` - :func:`build_dataset` (a run's data from its config)
* :mod:`jaxmem.data.text` - text corpora (``kjv``, ``austen``, ``python_text``, ``text:PATH``)
* :mod:`jaxmem.data.tokenizers` - bytes, BPE (Hugging Face ``tokenizers``), GPT-2 (``tiktoken``)
* :mod:`jaxmem.data.text_transforms` - encoding, duplicate counts, zlib entropy, planted
  duplicates, secret canaries
"""

from jaxmem.data.build import build_dataset
from jaxmem.data.dataset import DataError, Dataset, dataset_fingerprint, validate_dataset
from jaxmem.data.sources import DIGITS_TEST_FRACTION, SOURCES, digits_split, load
from jaxmem.data.transforms import (
    canary_mask,
    duplicate,
    duplicate_groups,
    flipped_mask,
    insert_canaries,
    label_noise,
    long_tail,
    rare_mask,
)

__all__ = [
    "DataError", "Dataset", "load", "SOURCES", "validate_dataset", "dataset_fingerprint", "build_dataset",
    "label_noise", "flipped_mask", "long_tail", "rare_mask", "duplicate", "duplicate_groups",
    "insert_canaries", "canary_mask", "digits_split", "DIGITS_TEST_FRACTION",
]
