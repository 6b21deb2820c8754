"""Mid-chunk checkpoints of the stacked training state, with orbax-checkpoint.

A chunk's state (params, BatchNorm statistics, optimizer states, divergence flags, last loss, and
the per-epoch records so far, e.g. correctness) is saved at epoch boundaries by a ``CheckpointManager``
that keeps the latest step only. Orbax commits a step by renaming its temporary folder, so a kill
during a save leaves the previous step readable. Typed PRNG keys (DP-SGD's noise key) are stored
as their raw key data.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np


def manager(directory: Path):
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    return ocp.CheckpointManager(directory, options=options)


def _is_key(x):
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_raw(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _from_raw(tree, template):
    return jax.tree.map(lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t))
                        if _is_key(t) else x, tree, template)


def _records_tree(names, records):
    """Each record's epochs so far as one array (orbax refuses zero-size arrays: without any, a
    1-element placeholder and the number of recorded epochs, 0), under the record's name.
    ``correct`` is always stored, so that every checkpoint has one tree structure."""
    out = {}
    for name in sorted(set(names) | {"correct"}):
        parts = records.get(name) or []
        if parts:
            arr = np.concatenate(parts, axis=1)
            out[name] = {"c": arr, "epochs": np.asarray(arr.shape[1], np.int32)}
        else:
            out[name] = {"c": np.zeros((1,), bool), "epochs": np.asarray(0, np.int32)}
    return out


def save(mngr, epoch: int, state, status, records: dict) -> None:
    """Save a chunk at an epoch boundary: its :class:`~jaxmem.train.state.TrainState` (as the dict
    of its set fields), its :class:`~jaxmem.train.state.ChunkStatus` and the per-epoch
    records so far (``{name: [arrays [K, e, N]]}``)."""
    import orbax.checkpoint as ocp

    tree = _to_raw((state.to_tree(), tuple(status)))
    items = {"state": ocp.args.StandardSave(tree)}
    for name, rec in _records_tree(records, records).items():
        items[name] = ocp.args.StandardSave(rec)
    mngr.save(epoch, args=ocp.args.Composite(**items), force=True)
    mngr.wait_until_finished()


def restore(mngr, state, status, record_names=()):
    """``(epoch, state, status, records)`` from the latest step (``records``: ``{name: [array]}``
    of the recorded names), or None. ``state`` / ``status`` give the structure to restore."""
    import orbax.checkpoint as ocp

    step = mngr.latest_step()
    if step is None:
        return None
    template = (state.to_tree(), tuple(status))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _to_raw(template))
    names = sorted(set(record_names) | {"correct"})
    items = {"state": ocp.args.StandardRestore(abstract)}
    items.update({n: ocp.args.StandardRestore() for n in names})
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    tree, stat = _from_raw(restored["state"], template)
    records = {}
    for n in record_names:
        if int(np.asarray(restored[n]["epochs"])):
            records[n] = [np.asarray(restored[n]["c"])]
    return int(step), type(state).from_tree(tree), type(status)(*stat), records
