"""Mid-chunk checkpoints of the stacked training state, with orbax-checkpoint.

A chunk's state (params, BatchNorm statistics, optimizer states, divergence flags, last loss, and
the running state of its records, e.g. VoG's moments) is saved at epoch boundaries by a ``CheckpointManager``
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


def save(mngr, epoch: int, state, status, aux: dict | None = None) -> None:
    """Save a chunk at an epoch boundary: its :class:`~jaxmem.train.state.TrainState` (as the dict
    of its set fields), its :class:`~jaxmem.train.state.ChunkStatus` and ``aux``, the running
    state of its records (e.g. VoG's moments; the per-epoch records themselves are files beside
    the checkpoint, :class:`jaxmem.runs.records.ChunkRecords`, flushed before this)."""
    import orbax.checkpoint as ocp

    items = {"state": ocp.args.StandardSave(_to_raw((state.to_tree(), tuple(status))))}
    if aux:
        items["aux"] = ocp.args.StandardSave(aux)
    mngr.save(epoch, args=ocp.args.Composite(**items), force=True)
    mngr.wait_until_finished()


def restore(mngr, state, status, aux: dict | None = None):
    """``(epoch, state, status, aux)`` from the latest step, or None. ``state``, ``status`` and
    ``aux`` (the chunk's freshly initialized ones) give the structure to restore."""
    import orbax.checkpoint as ocp

    step = mngr.latest_step()
    if step is None:
        return None
    template = (state.to_tree(), tuple(status))
    shape_of = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
    items = {"state": ocp.args.StandardRestore(shape_of(_to_raw(template)))}
    if aux:
        items["aux"] = ocp.args.StandardRestore(shape_of(aux))
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    tree, stat = _from_raw(restored["state"], template)
    return int(step), type(state).from_tree(tree), type(status)(*stat), restored["aux"] if aux else {}
