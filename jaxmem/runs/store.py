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
    NAME_by_epoch.npy    [M, R, N]     training-dynamics records (train.records), e.g. loss, correct
    vog.npy              float32 [M, N] variance of gradients (train.records.vog_epochs)
    (a language-model run stores instead of logits: token_logp / token_mu / token_sigma /
    token_correct.npy [M, N, L-1], nll.npy [M, N], test_token_logp.npy [M, T, L-1],
    test_nll.npy [M, T] (jaxmem.runs.lm_signals); its labels.npy
    holds each sequence's length, and text.json its texts and per-example facts)
    results/             memorization.csv, attacks.json, roc.png, memorization_hist.png, and
                         scoring.json: the id of the scoring that is writing or wrote results/
    summary.json         its "scoring_id" is that id once the scoring has finished

Every stage is restartable: a killed run, rerun with the same command, skips what is done.

Scoring's outputs (``results/`` and ``summary.json``) commit as one set: a scoring first writes a
new id to ``results/scoring.json`` (:func:`begin_scoring`), then its results, and last
``summary.json`` carrying the same id (:func:`commit_scoring`). A scoring killed in between
leaves ids that differ, and the readers (:func:`read_summary`, ``Run.summary``, ``jaxmem show``,
``jaxmem report``) say so in one line instead of showing one scoring's summary beside another's
results; rerunning ``jaxmem score`` rewrites both.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import time
import uuid
from pathlib import Path

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import SEGMENT, Digest, HashingWriter, RunError, atomic_path, fmt_bytes, load_json, load_npy, save_json, save_text
from jaxmem.runs.provenance import mismatch
from jaxmem.runs.records import RECORD_FILES, record_epochs, record_file

__all__ = ["Run", "load_run", "assemble", "RUN_ENTRIES", "LM_ARRAYS", "shard_name", "covered",
           "shard_spans", "ASSEMBLED", "SCORING_MARK", "begin_scoring", "commit_scoring",
           "scoring_mismatch", "read_summary"]

#: The arrays of a language-model run that stand in for logits.npy / test_logits.npy: those of
#: jaxmem.runs.lm.CHUNK_ARRAYS (runs.lm imports this module through runs.workdir, so the names
#: are written out here; a test holds the two equal).
LM_ARRAYS = ("token_logp.npy", "token_mu.npy", "token_sigma.npy", "token_correct.npy", "nll.npy",
             "test_token_logp.npy", "test_nll.npy")
# What jaxmem writes in a run directory (all that --overwrite deletes).
RUN_ENTRIES = ("config.json", "design.json", "dataset.json", "keep.npy", "model_ratio.npy",
               "labels.npy", "example_ids.npy", "test_labels.npy", "test_ids.npy", "logits.npy",
               "test_logits.npy", "diverged.npy", "final_loss.npy", *RECORD_FILES,
               "summary.json", "report.html", ".assembled.json", "shards", "ckpt", "results",
               "variants", "checksums.json", "provenance.json", "text.json", "x_train.npy", "x_test.npy",
               *LM_ARRAYS)


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
        return self.record("correct")

    def record(self, name: str):
        """Training-dynamics record ``name`` (``train.records``), memory-mapped, or None when the
        run has none: [M, R, N] per-epoch records (``loss``, ``margin``, ``correct``, ``p_true``,
        ``curvature``, ``curvature_trace``, ``curvature_trace_sq``; R = :meth:`record_epochs`),
        or ``vog`` [M, N]."""
        p = self.path / record_file(name)
        return load_npy(p, mmap=True) if p.exists() else None

    def record_epochs(self, name: str) -> list:
        """The epochs (1 = after the first) that record ``name`` holds, along its second axis."""
        return record_epochs(self.config)[name]

    @property
    def dataset(self) -> dict:
        return load_json(self.path / "dataset.json")

    @property
    def summary(self) -> dict:
        """``summary.json``; :class:`~jaxmem.io.RunError` when it is missing or belongs to another
        scoring than ``results/`` (:func:`scoring_mismatch`)."""
        if not (self.path / "summary.json").exists():
            raise RunError(f"{self.path / 'summary.json'}: file not found (not scored yet: "
                           f"jaxmem score {self.path})")
        return read_summary(self.path)

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

    @functools.cached_property
    def text(self) -> dict:
        """A text run's texts and per-example facts (``text.json``, :func:`jaxmem.data.text_build.text_facts`);
        parsed once per ``Run`` (every text of both splits: scoring reads it for the facts and
        again for the zlib entropy)."""
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


#: Where a scoring records its id, first thing (relative to the run directory).
SCORING_MARK = "results/scoring.json"


def begin_scoring(workdir, settings=None) -> str:
    """Start a scoring of ``workdir``: write a new scoring id to ``results/scoring.json`` before
    anything else in ``results/`` changes (from here until :func:`commit_scoring`, readers see
    that ``summary.json`` and ``results/`` may come from different scorings).

    Args:
        workdir: the run directory (the caller holds its lock).
        settings: the ``scoring.*`` settings being applied (recorded for the reader's message).

    Returns:
        The new scoring id, to pass to :func:`commit_scoring`.
    """
    sid = uuid.uuid4().hex
    save_json(Path(workdir) / SCORING_MARK, {"id": sid, "started": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scoring": settings})
    return sid


def commit_scoring(workdir, summary: dict, sid: str) -> dict:
    """Finish the scoring ``sid`` (:func:`begin_scoring`): write ``summary.json`` (atomically)
    carrying the same id, which makes ``results/`` and the summary one set again.

    Args:
        workdir: the run directory.
        summary: the summary to write (``"scoring_id"`` is added to it).
        sid: the id :func:`begin_scoring` returned.

    Returns:
        ``summary`` (with its ``scoring_id``).
    """
    summary["scoring_id"] = sid
    save_json(Path(workdir) / "summary.json", summary)
    return summary


def scoring_mismatch(workdir):
    """One line saying why ``summary.json`` and ``results/`` are not one scoring's set (a scoring
    was killed, or is still running, after :func:`begin_scoring` and before
    :func:`commit_scoring`), or None when they are (or when the run was never scored, or was
    scored by a jaxmem that wrote no scoring ids)."""
    workdir = Path(workdir)
    mark = workdir / SCORING_MARK
    if not mark.exists():
        return None
    sid = load_json(mark).get("id")
    summary = workdir / "summary.json"
    if summary.exists() and load_json(summary).get("scoring_id") == sid:
        return None
    return (f"{workdir}: results/ and summary.json are from different scorings (a jaxmem score "
            f"begun at {load_json(mark).get('started')} was interrupted, or is still running); "
            f"rerun `jaxmem score {workdir}` (with the --set scoring.* settings you want) to "
            f"rewrite both")


def read_summary(workdir) -> dict:
    """``summary.json`` of a run, ``{}`` when it has not been scored.

    Raises:
        RunError: ``summary.json`` and ``results/`` come from different scorings
            (:func:`scoring_mismatch`).
    """
    workdir = Path(workdir)
    msg = scoring_mismatch(workdir)
    if msg:
        raise RunError(msg)
    return load_json(workdir / "summary.json") if (workdir / "summary.json").exists() else {}


def shard_name(a, b):
    return f"models-{a:06d}-{b:06d}"


def covered(workdir: Path, num_models: int) -> np.ndarray:
    """[M] bool: models that a finished shard holds."""
    done = np.zeros(num_models, bool)
    for d in (workdir / "shards").glob("models-*"):
        a, b = (int(x) for x in d.name.split("-")[1:])
        done[a:min(b, num_models)] = True
    return done


#: The arrays assemble() concatenates from the shards (those the shards hold).
ASSEMBLED = ("logits.npy", "test_logits.npy", "diverged.npy", "final_loss.npy") + LM_ARRAYS


def shard_spans(workdir: Path, num_models: int) -> list:
    """``[(a, b, folder)]`` of the finished shards inside the first ``num_models`` models."""
    spans = []
    for d in sorted((workdir / "shards").glob("models-*")):
        a, b = (int(x) for x in d.name.split("-")[1:])
        if b <= num_models:
            spans.append((a, b, d))
    return spans


def _mixed(workdir: Path, spans, allow: bool, log) -> list:
    """Refuse shards trained under different software or settings (unless ``allow``)."""
    recs = [(d, load_json(d / "meta.json").get("provenance")) for _, _, d in spans
            if (d / "meta.json").exists()]
    recs = [(d, r) for d, r in recs if r]
    for d, r in recs[1:]:
        diff = mismatch(recs[0][1], r)
        if diff:
            k = diff[0]
            msg = (f"{workdir}: shards were trained under different settings ({k}: "
                   f"{recs[0][1][k]!r} in {recs[0][0].name}, {r[k]!r} in {d.name}"
                   f"{' and more' if len(diff) > 1 else ''})")
            if not allow:
                raise RunError(f"{msg}; delete the shards of one kind (rm -r {d}) and rerun to "
                               f"retrain them, or pass --allow-mixed-shards to assemble them anyway")
            log(f"warning: {msg}; assembled anyway (--allow-mixed-shards)")
            return diff
    return []


def _copy_npy(src: Path, out, digest, want=None):
    """Append the data bytes of ``.npy`` file ``src`` to ``out`` (and to ``digest``); the whole
    file is hashed on the way and compared with ``want`` (its digest at write), if given.
    Returns the shard's (dtype, shape) and whether it matched."""
    mine = Digest()
    with open(src, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        head = f.tell()
        f.seek(0)
        mine.update(f.read(head))
        if fortran:
            raise RunError(f"{src}: Fortran-ordered array; cannot assemble it")
        while chunk := f.read(SEGMENT):
            mine.update(chunk)
            digest.update(chunk)
            out.write(chunk)
    ok = want is None or mine.result() == want
    return dtype, shape, ok


def assemble(workdir: Path, num_models: int, *, names=None, force: bool = False,
             allow_mixed: bool = False, log=print) -> list:
    """Concatenate the chunk shards into the run's arrays (``logits.npy``, ...), each written
    atomically and hashed on the way (its digest goes to ``checksums.json``); every shard is
    checked against the digest it was written with as it is read. Shards trained under
    different settings (:func:`jaxmem.runs.provenance.mismatch`) are refused unless
    ``allow_mixed``. ``names``: only these arrays; ``force``: even if already assembled.
    Returns the names (re)written."""
    from jaxmem.runs import integrity

    spans = shard_spans(workdir, num_models)
    covered = np.zeros(num_models, bool)
    for a, b, _ in spans:
        covered[a:b] = True
    if not covered.all():
        missing = np.flatnonzero(~covered)
        raise RunError(f"{workdir}: models {missing[:5].tolist()}... have no shard yet")
    # a run's shards hold logits, or a language-model run's per-token signals (LM_ARRAYS)
    all_names = [n for n in ASSEMBLED if (spans[0][2] / n).exists()]
    all_names += [f for f in RECORD_FILES if all((d / f).exists() for _, _, d in spans)]
    names = [n for n in (names or all_names) if n in all_names]
    stamp = json.dumps(sorted([a, b] for a, b, _ in spans))
    marker = workdir / ".assembled.json"
    if not force and marker.exists() and marker.read_text() == stamp and \
            all((workdir / n).exists() for n in names):
        return []
    mixed = _mixed(workdir, spans, allow_mixed, log)
    metas = {d: (load_json(d / "meta.json") if (d / "meta.json").exists() else {})
             for _, _, d in spans}
    for name in names:
        first = load_npy(spans[0][2] / name, mmap=True)
        shape = (num_models,) + first.shape[1:]
        digest = Digest()
        t0 = time.time()
        with atomic_path(workdir / name, ".npy") as tmp:
            with open(tmp, "wb") as out:
                header = {"descr": np.lib.format.dtype_to_descr(first.dtype),
                          "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(HashingWriter(out, digest), header)
                for a, b, d in spans:
                    want = metas[d].get("checksums", {}).get(name)
                    dtype, sh, ok = _copy_npy(d / name, out, digest, want)
                    if dtype != first.dtype or tuple(sh) != (b - a,) + first.shape[1:]:
                        raise RunError(f"{d / name}: {dtype} {sh} does not fit the run's "
                                       f"{first.dtype} [{b - a}, {', '.join(map(str, first.shape[1:]))}]")
                    if not ok:
                        raise RunError(f"{d / name}: damaged (it differs from the checksum it "
                                       f"was written with); delete {d} and rerun the run's "
                                       f"command to retrain its {b - a} models")
        integrity.record(workdir, {name: digest.result()})
        seconds = time.time() - t0
        if seconds > 5:
            log(f"assembled {name}: {fmt_bytes(digest.size)} in {seconds:.0f} s")
    if mixed:
        integrity.note_mixed(workdir, mixed)
    save_text(marker, stamp)
    return names
