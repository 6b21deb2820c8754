"""A stored run: its file layout, reading it (:class:`Run`, :func:`load_run`), and assembling
the shards of a run into its arrays.

Layout of a run directory (plain formats: ``.npy`` without pickle, JSON, CSV, PNG)::

    config.json          the validated config (refused on resume if it differs)
    design.json          keep blocks: which models were drawn together (growing a run adds one)
    dataset.json         the dataset's source, transforms and fingerprint
    keep.npy             bool [M, N]           model m trained on example i
    model_ratio.npy      float [M]             subset ratio of each model (C-scores)
    labels.npy, example_ids.npy, test_labels.npy, test_ids.npy
    shards/models-A-B/   one finished chunk of models, written atomically (a folder rename)
    ckpt/models-A-B/     orbax checkpoints of the chunk in training (deleted when it is done)
    logits.npy           [M, N, A, C]   eval-mode logits on train examples, A augmentation queries
    test_logits.npy      [M, T, A, C]
    diverged.npy         bool [M]      models frozen because their loss/params became non-finite
    (a language-model run stores instead of logits: token_logp / token_mu / token_sigma /
    token_correct.npy [M, N, L-1], nll.npy [M, N], test_token_logp.npy [M, T, L-1],
    test_nll.npy [M, T] (jaxmem.train.lm); its labels.npy
    holds each sequence's length, and text.json its texts and per-example facts)
    results/             memorization.csv, attacks.json, roc.png, memorization_hist.png
    summary.json

Every stage is restartable: a killed run, rerun with the same command, skips what is done.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import RunError, load_json, load_npy, save_text

__all__ = ["Run", "load_run", "assemble", "RUN_ENTRIES", "LM_ARRAYS", "shard_name", "covered"]

# What jaxmem writes in a run directory (all that --overwrite deletes).
RUN_ENTRIES = ("config.json", "design.json", "dataset.json", "keep.npy", "model_ratio.npy",
               "labels.npy", "example_ids.npy", "test_labels.npy", "test_ids.npy", "logits.npy",
               "test_logits.npy", "diverged.npy", "final_loss.npy", "correct_by_epoch.npy",
               "summary.json", "report.html", ".assembled.json", "shards", "ckpt", "results",
               "variants", "text.json", "token_logp.npy", "token_mu.npy", "token_sigma.npy",
               "token_correct.npy", "nll.npy", "test_token_logp.npy", "test_nll.npy")
#: The arrays of a language-model run that stand in for logits.npy / test_logits.npy.
LM_ARRAYS = ("token_logp.npy", "token_mu.npy", "token_sigma.npy", "token_correct.npy", "nll.npy",
             "test_token_logp.npy", "test_nll.npy")


@dataclasses.dataclass
class Run:
    """A stored run. Arrays are read on first use; ``logits`` is memory-mapped."""

    path: Path

    def _npy(self, name, mmap=False):
        return load_npy(self.path / name, mmap=mmap)

    @property
    def config(self) -> cfgmod.Config:
        return cfgmod.from_dict(load_json(self.path / "config.json"))

    @property
    def keep(self):
        return self._npy("keep.npy")

    @property
    def labels(self):
        return self._npy("labels.npy")

    @property
    def test_labels(self):
        return self._npy("test_labels.npy")

    @property
    def example_ids(self):
        return self._npy("example_ids.npy")

    @property
    def test_ids(self):
        return self._npy("test_ids.npy")

    @property
    def model_ratio(self):
        return self._npy("model_ratio.npy")

    @property
    def logits(self):
        return self._npy("logits.npy", mmap=True)

    @property
    def test_logits(self):
        return self._npy("test_logits.npy", mmap=True)

    @property
    def diverged(self):
        return self._npy("diverged.npy")

    @property
    def correct_by_epoch(self):
        p = self.path / "correct_by_epoch.npy"
        return load_npy(p, mmap=True) if p.exists() else None

    @property
    def dataset(self) -> dict:
        return load_json(self.path / "dataset.json")

    @property
    def summary(self) -> dict:
        return load_json(self.path / "summary.json")

    @property
    def num_models(self) -> int:
        return int(self.keep.shape[0])

    @property
    def is_lm(self) -> bool:
        """A language-model run (per-token signals instead of logits)."""
        return (self.path / "nll.npy").exists() and not (self.path / "logits.npy").exists()

    def array(self, name: str, mmap: bool = True):
        """A stored array by file stem (``run.array("token_logp")``), memory-mapped."""
        return self._npy(f"{name}.npy", mmap=mmap)

    @property
    def text(self) -> dict:
        """A text run's texts and per-example facts (``text.json``, :func:`jaxmem.data.text_build.text_facts`)."""
        return load_json(self.path / "text.json")


def load_run(path) -> Run:
    """Open a finished run directory (see the module docstring for its files)."""
    path = Path(path)
    outputs = "nll.npy" if (path / "nll.npy").exists() else "logits.npy"   # a language model's
    for f in ("config.json", "keep.npy", "labels.npy", outputs):
        if not (path / f).exists():
            raise RunError(f"{path}: not a finished jaxmem run ({f} is missing)")
    run = Run(path)
    keep, out = run.keep, run._npy(outputs, mmap=True)
    if keep.dtype != bool or keep.ndim != 2:
        raise RunError(f"{path / 'keep.npy'}: expected a bool [M, N] array, got {keep.dtype} {keep.shape}")
    if out.shape[:2] != keep.shape:
        raise RunError(f"{path}: {outputs[:-4]} {out.shape} do not match keep {keep.shape}")
    return run


def shard_name(a, b):
    return f"models-{a:06d}-{b:06d}"


def covered(workdir: Path, num_models: int) -> np.ndarray:
    """[M] bool: models that a finished shard holds."""
    done = np.zeros(num_models, bool)
    for d in (workdir / "shards").glob("models-*"):
        a, b = (int(x) for x in d.name.split("-")[1:])
        done[a:min(b, num_models)] = True
    return done


def assemble(workdir: Path, num_models: int):
    """Concatenate the chunk shards into the run's arrays (memory-mapped, written atomically)."""
    from numpy.lib.format import open_memmap

    from jaxmem.io import atomic_path

    shard_dirs = sorted((workdir / "shards").glob("models-*"))
    spans = []
    for d in shard_dirs:
        a, b = (int(x) for x in d.name.split("-")[1:])
        spans.append((a, b, d))
    covered = np.zeros(num_models, bool)
    for a, b, _ in spans:
        if b <= num_models:
            covered[a:b] = True
    if not covered.all():
        missing = np.flatnonzero(~covered)
        raise RunError(f"{workdir}: models {missing[:5].tolist()}... have no shard yet")
    spans = [s for s in spans if s[1] <= num_models]
    outputs = (["logits.npy", "test_logits.npy"] if (spans[0][2] / "logits.npy").exists()
               else list(LM_ARRAYS))
    names = outputs + ["diverged.npy", "final_loss.npy"]
    if all((d / "correct_by_epoch.npy").exists() for _, _, d in spans):
        names.append("correct_by_epoch.npy")
    stamp = json.dumps(sorted([a, b] for a, b, _ in spans))
    marker = workdir / ".assembled.json"
    if marker.exists() and marker.read_text() == stamp and all((workdir / n).exists() for n in names):
        return
    for name in names:
        first = load_npy(spans[0][2] / name, mmap=True)
        shape = (num_models,) + first.shape[1:]
        with atomic_path(workdir / name, ".npy") as tmp:
            out = open_memmap(tmp, mode="w+", dtype=first.dtype, shape=shape)
            for a, b, d in spans:
                out[a:b] = load_npy(d / name, mmap=True)
            out.flush()
            del out
    save_text(marker, stamp)
