"""Mid-chunk checkpoints of the stacked training state, with orbax-checkpoint.

A chunk's state (params, BatchNorm statistics, optimizer states, divergence flags, last loss, and
the per-epoch correctness record so far) is saved at epoch boundaries by a ``CheckpointManager``
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


def save(mngr, epoch: int, state_aux, correct_list) -> None:
    import orbax.checkpoint as ocp

    # orbax refuses zero-size arrays: without a correctness record, store a 1-element placeholder
    # and the number of recorded epochs (0), so save and restore keep one tree structure.
    if correct_list:
        correct = np.concatenate(correct_list, axis=1)
        epochs = correct.shape[1]
    else:
        correct, epochs = np.zeros((1,), bool), 0
    mngr.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_raw(state_aux)),
        correct=ocp.args.StandardSave({"c": correct, "epochs": np.asarray(epochs, np.int32)})),
        force=True)
    mngr.wait_until_finished()


def restore(mngr, template):
    """Return ``(epoch, state_aux, [correct])`` from the latest step, or None."""
    import orbax.checkpoint as ocp

    step = mngr.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), _to_raw(template))
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), correct=ocp.args.StandardRestore()))
    state = _from_raw(restored["state"], template)
    correct = np.asarray(restored["correct"]["c"])
    recorded = int(np.asarray(restored["correct"]["epochs"]))
    return int(step), state, ([correct] if recorded else [])
