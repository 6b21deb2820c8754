"""Typed state of the stacked trainer (every field has a leading model axis K in a chunk)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["TrainState", "ChunkStatus", "ChunkResult", "Phase"]


class TrainState(NamedTuple):
    """One model's (or a chunk's stacked) training state."""

    params: Any             # flax params
    batch_stats: Any        # BatchNorm running statistics ({} without BatchNorm)
    opt_state: Any          # optax state
    ema: Any = None         # lookahead: {"params", "batch_stats"} averages (None when off)
    ema_on: Any = None      # lookahead: whether ema holds an average yet (None when off)

    def to_tree(self) -> dict:
        """The fields that are set, as a dict (what a checkpoint stores)."""
        return {k: v for k, v in self._asdict().items() if v is not None}

    @classmethod
    def from_tree(cls, tree: dict) -> TrainState:
        return cls(**tree)


class ChunkStatus(NamedTuple):
    diverged: Any           # [K] bool: frozen at its last finite state
    loss: Any               # [K] float32: mean training loss over the last epoch (NaN before)


class ChunkResult(NamedTuple):
    """A trained chunk: what a run's shard stores."""

    state: TrainState
    diverged: np.ndarray    # [K] bool
    final_loss: np.ndarray  # [K] mean training loss over the last epoch
    records: dict           # name -> [K, E, N] per-epoch records (e.g. "correct"), maybe empty


class Phase(NamedTuple):
    """A stretch of training on a per-example availability schedule (:func:`train_phases`)."""

    available: Any          # [K, N] bool: the examples each model trains on in this phase
    epochs: int             # epochs of the phase (0: only a point to look at the models)
