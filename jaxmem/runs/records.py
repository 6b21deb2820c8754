"""The training-dynamics records of the chunk in training (``train.records``,
``train.record_forgetting``; :mod:`jaxmem.train.recording`): streamed to memory-mapped ``.npy``
files beside the chunk's checkpoints, so memory holds one training call's records whatever the
number of epochs, and resumable with the chunk.

Layout: ``ckpt/models-A-B.records/NAME_by_epoch.npy`` [K, R, N] for each per-epoch record (R =
the epochs it is recorded after), written after every jitted training call and flushed before
every checkpoint; VoG's running moments stay on device and are checkpointed with the chunk
(``checkpoint.save(..., aux=...)``). When the chunk ends, the shard gets ``NAME_by_epoch.npy``
and ``vog.npy`` [K, N] (VoG of Agarwal et al. 2022 from the moments,
``jaxmem.estimators.proxies.vog_from_moments``, unnormalized).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from jaxmem.estimators.proxies import vog_from_moments
from jaxmem.io import RunError
from jaxmem.train.recording import CURVATURE_RECORDS, record_dtypes, vog_init, vog_step

__all__ = ["ChunkRecords", "record_epochs", "record_layout", "record_file", "RECORD_FILES"]

#: Every record file a run may hold (what --overwrite deletes, what assembly concatenates).
RECORD_FILES = ("loss_by_epoch.npy", "margin_by_epoch.npy", "correct_by_epoch.npy", "p_true_by_epoch.npy",
                "curvature_by_epoch.npy", "curvature_trace_by_epoch.npy", "curvature_trace_sq_by_epoch.npy",
                "vog.npy")


def record_file(name: str) -> str:
    """The file of record ``name`` in a shard or run: ``vog.npy``, else ``NAME_by_epoch.npy``."""
    return "vog.npy" if name == "vog" else f"{name}_by_epoch.npy"


def record_epochs(cfg) -> dict:
    """``{record: [epochs]}``: the epochs (1 = after the first) each per-epoch record holds, in
    the order of its second axis."""
    rc, n_ep = cfg.train.records, math.ceil(cfg.train.epochs)
    return {name: list(rc.curvature_epochs) if name in CURVATURE_RECORDS else rc.dynamics_epochs(n_ep)
            for name in record_dtypes(cfg)}


def record_layout(cfg, num_train: int) -> dict:
    """``{record: (shape per model, dtype)}`` of every record the run stores (VoG as ``vog``)."""
    out = {name: ((len(ep), num_train), record_dtypes(cfg)[name]) for name, ep in record_epochs(cfg).items()}
    if cfg.train.records.vog_epochs:
        out["vog"] = ((num_train,), np.dtype(np.float32))
    return out


class ChunkRecords:
    """The records of one chunk of ``K`` models while it trains (see the module docstring)."""

    def __init__(self, trainer, folder: Path, num_models: int):
        cfg = trainer.cfg
        self.trainer, self.folder, self.K = trainer, Path(folder), num_models
        self.epochs = record_epochs(cfg)
        self.vog_epochs = list(cfg.train.records.vog_epochs)
        self.files = {}
        self.vog = None
        if self.vog_epochs:
            self.vog = vog_init(num_models, trainer.x_train.shape)

    def open(self, *, resume: bool) -> None:
        """Create the record files (``resume``: reopen those of the restored checkpoint)."""
        from numpy.lib.format import open_memmap

        n = int(self.trainer.y_train.shape[0])
        layout = {k: v for k, v in record_layout(self.trainer.cfg, n).items() if k != "vog"}
        if layout:
            self.folder.mkdir(parents=True, exist_ok=True)
        for name, (shape, dtype) in layout.items():
            path, full = self.folder / record_file(name), (self.K,) + shape
            if resume:
                try:
                    mm = open_memmap(path, mode="r+")
                except (OSError, ValueError):
                    mm = None
                if mm is None or mm.shape != full or mm.dtype != dtype:
                    raise RunError(f"{path}: missing or not the records of this chunk's checkpoint; "
                                   f"delete {self.folder.parent} to retrain the chunk")
            else:
                mm = open_memmap(path, mode="w+", dtype=dtype, shape=full)
            self.files[name] = mm

    def next_stop(self, epoch: int, num_epochs: int) -> int:
        """The next epoch after ``epoch`` at which training must return to the host (a VoG epoch)."""
        return min([e for e in self.vog_epochs if e > epoch] + [num_epochs])

    def add(self, epoch0: int, n: int, new: dict, state) -> None:
        """Store a training call's records ``{name: [K, n, N]}`` (epochs epoch0+1 .. epoch0+n),
        then update VoG if the call ended at a VoG epoch (``state``: the chunk after it)."""
        for name, rec in new.items():
            rows = self.epochs[name]
            rec = np.asarray(rec)
            for j in range(rec.shape[1]):
                if epoch0 + 1 + j in rows:
                    self.files[name][:, rows.index(epoch0 + 1 + j)] = rec[:, j]
        if self.vog is not None and epoch0 + n in self.vog_epochs:
            fn = self.trainer._train_fns.get("vog")
            if fn is None:
                fn = self.trainer._train_fns["vog"] = vog_step(self.trainer)
            self.vog = fn(state, self.vog, self.trainer.x_train, self.trainer.y_train)

    def flush(self) -> None:
        for mm in self.files.values():
            mm.flush()

    def aux(self) -> dict:
        """What a checkpoint must keep besides the files: VoG's running moments."""
        return {} if self.vog is None else {"vog": tuple(self.vog)}

    def restore_aux(self, aux: dict) -> None:
        if self.vog is not None:
            self.vog = type(self.vog)(*aux["vog"])

    def results(self) -> dict:
        """``{name: [K, ...]}``: the per-epoch records (memory-mapped) and VoG ``[K, N]``."""
        self.flush()
        out = dict(self.files)
        if self.vog is not None:
            count = np.asarray(self.vog.count)
            m2 = np.asarray(self.vog.m2)
            pixel_ndim = m2.ndim - 2
            out["vog"] = np.stack([vog_from_moments(m2[k], int(count[k]), pixel_ndim=pixel_ndim)
                                   for k in range(self.K)]).astype(np.float32)
        return out

    def remove(self) -> None:
        self.files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
