"""A run's dataset from its config: the source, then the configured transforms in a fixed order."""

from __future__ import annotations

import dataclasses

from jaxmem.data import sources, transforms
from jaxmem.data.dataset import DataError, validate_dataset
from jaxmem.data.text_build import build_text_dataset

__all__ = ["build_dataset"]


def build_dataset(cfg):
    """Load ``cfg.data.source`` and apply the configured transforms, in a fixed order: the first
    ``max_train`` / ``max_test`` examples, long tail, duplicates, canaries, label noise. A text
    source is built by :func:`jaxmem.data.text_build.build_text_dataset` (its own steps)."""
    d = cfg.data
    if sources.is_text_source(d.source):
        return build_text_dataset(cfg)
    if d.source.startswith("external:"):
        raise DataError(f"data.source={d.source!r}: this run was imported from arrays; it can be "
                        f"scored (jaxmem score) and reported, not trained")
    ds = sources.load(d.source, data_dir=d.data_dir)
    if d.max_train or d.max_test:
        ds = dataclasses.replace(
            ds,
            x_train=ds.x_train[: d.max_train or None], y_train=ds.y_train[: d.max_train or None],
            ids_train=ds.ids_train[: d.max_train or None],
            x_test=ds.x_test[: d.max_test or None], y_test=ds.y_test[: d.max_test or None],
            ids_test=ds.ids_test[: d.max_test or None],
            meta={**ds.meta, "max_train": d.max_train, "max_test": d.max_test})
    if d.long_tail_classes and d.long_tail_fraction < 1.0:
        ds = transforms.long_tail(ds, cfg.seed, classes=d.long_tail_classes,
                                  keep_fraction=d.long_tail_fraction)
    if d.duplicates:
        ds = transforms.duplicate(ds, cfg.seed, num=d.duplicates, copies=d.duplicate_copies)
    if d.canaries:
        ds = transforms.insert_canaries(ds, cfg.seed, num=d.canaries, kind=d.canary_kind)
    if d.label_noise:
        ds = transforms.label_noise(ds, d.label_noise, d.noise_seed, kind=d.label_noise_kind)
    validate_dataset(ds)
    return ds
