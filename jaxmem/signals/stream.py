"""The one signals computation: named per-model signals streamed from (memory-mapped) logits
``[M, N, A, C]`` (or ``[M, N, C]``: a missing query axis means A = 1, as everywhere in jaxmem, see
:mod:`jaxmem.signals.functions`), used by runs' scoring, the analyses and the report.

:func:`compute_signals` reads one block of models at a time (``block`` models; by default as many
as hold 2^26 float64 logits, 512 MB), computes every requested signal from the block in float64
(as the LiRA reference code computes φ) and stores it in ``dtype`` (float32 for a run's scores,
float64 for the analyses). Only what is asked is computed, and only the identity query is read
when no requested signal needs the others. Signals are registered in :data:`SIGNALS` by name;
a name ending in ``_pop`` is the same signal on the population (test) logits.

Adding a signal = one :class:`SignalSpec` line in :data:`SIGNALS` (a function of a float64 block
``z [b, N, A, C]`` and the labels ``[N]``, whether it reads every query, its trailing shape).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from jaxmem.signals import functions as F

__all__ = ["Signals", "SignalSpec", "SIGNALS", "compute_signals", "rmia_p_spec",
           "RMIA_RESEARCH_SIGNAL", "model_logits"]


class Signals(dict):
    """Named per-model signals: ``{name: [M, ...] array}``, with ``labels`` [N] of the examples
    (and ``pop_labels`` [Z] of the population) as attributes."""

    def __init__(self, arrays=(), labels=None, pop_labels=None):
        super().__init__(arrays)
        self.labels = labels
        self.pop_labels = pop_labels


class SignalSpec(NamedTuple):
    fn: Callable            # fn(z [b, N, A, C] float64, y [N]) -> [b, N, ...]
    every_query: bool       # reads all A queries (else only the identity query, a = 0)
    shape: Callable         # shape(N, A, C) -> the per-model shape [N, ...]


def _softmax(z):
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _identity(fn):
    return SignalSpec(lambda z, y: fn(z[:, :, 0], y[None]), False, lambda N, A, C: (N,))


def _per_query(fn):
    return SignalSpec(lambda z, y: fn(z, y[None, :, None]), True, lambda N, A, C: (N, A))


#: The RMIA research code's signal on CIFAR-10 (ml_privacy_meter research/2023_rmia configs).
RMIA_RESEARCH_SIGNAL = {"order": 4, "margin": 0.6, "temperature": 2.0}

SIGNALS: dict[str, SignalSpec] = {
    # 0/1 correctness of the identity query (Feldman & Zhang 2020's per-example metric)
    "correct": _identity(F.correctness),
    # correctness of the logits averaged over the queries (test-time augmentation)
    "correct_query_average": SignalSpec(lambda z, y: F.correctness(z.mean(2), y[None]), True,
                                        lambda N, A, C: (N,)),
    # logit-scaled confidence φ of every query (LiRA)
    "phi": _per_query(F.logit_scaled_confidence),
    # cross-entropy loss of the identity query (Yeom et al. 2018)
    "loss": _identity(F.cross_entropy),
    # softmax probabilities of the identity query (Shokri et al. 2017)
    "probs": SignalSpec(lambda z, y: _softmax(z[:, :, 0]), False, lambda N, A, C: (N, C)),
    # RMIA's p (ML Privacy Meter's default): true-class softmax of the identity query
    "p": _identity(F.true_class_probability),
    # RMIA's research-code signal (soft-margin Taylor softmax, T = 2) of every query
    "p_taylor": _per_query(lambda z, y: F.taylor_soft_margin_probability(z, y, **RMIA_RESEARCH_SIGNAL)),
}


def rmia_p_spec(signal="softmax", temperature=1.0, margin=0.6, order=4, every_query=False):
    """RMIA's p(x) as ``scoring.rmia`` configures it: the true-class softmax of z / T, or the
    research code's soft-margin Taylor softmax; of the identity query, or [N, A] of every query."""
    if signal == "taylor_soft_margin":
        def fn(z, y):
            return F.taylor_soft_margin_probability(z, y, order=order, margin=margin,
                                                    temperature=temperature)
    else:
        def fn(z, y):
            return F.true_class_probability(z / temperature, y)
    return _per_query(fn) if every_query else _identity(fn)


def model_logits(logits, name="logits", *, like=None, like_name="logits"):
    """Stacked models' logits as a 4-D ``[M, N, A, C]`` array, checked.

    Args:
      logits: ``[M, N, A, C]``, or ``[M, N, C]`` (a missing query axis means A = 1: a query axis
        of length 1 is added; a memmap stays a lazy view). Anything with a ``shape`` whose rank
        is 4 (e.g. a lazy reader) is passed through unread.
      name: the argument's name in error messages (``"test_logits"``: its example axis is Z).
      like: optional 4-D logits that ``logits`` must match on every axis but the example axis
        (M models, A queries, C classes), named ``like_name`` in errors.

    Returns:
      ``logits`` with 4 axes.

    Raises:
      ValueError: a rank other than 3 or 4 (naming the accepted shapes), or an axis that differs
        from ``like``'s, naming it: ``test_logits: expected [M, Z, A, C] matching logits
        [M, N, A, C]; axis A (queries) is 2 in logits but 1 in test_logits``.
    """
    ex = "Z" if name.startswith("test") else "N"
    shape = tuple(getattr(logits, "shape", np.shape(logits)))
    if len(shape) == 3:
        logits = (logits if isinstance(logits, np.ndarray) else np.asarray(logits))[:, :, None, :]
        shape = shape[:2] + (1,) + shape[2:]
    elif len(shape) != 4:
        raise ValueError(f"{name}: expected [M, {ex}, A, C] or [M, {ex}, C] (one query), got "
                         f"{len(shape)}-D shape {shape}"
                         + (f"; for one model pass {name}[None]" if len(shape) == 2 else ""))
    if like is not None:
        ref = tuple(like.shape)
        for i, letter in enumerate("MNAC"):
            if i != 1 and shape[i] != ref[i]:
                raise ValueError(
                    f"{name}: expected [M, {ex}, A, C] matching {like_name} [M, N, A, C]; axis "
                    f"{letter} ({F.AXES[letter]}) is {ref[i]} in {like_name} but {shape[i]} in {name}")
    return logits


class _FirstQuery:
    """``logits[..., :1, :]`` of a memory-mapped [M, N, A, C] array, read a block of models at a
    time (slicing the view would be lazy too, but this keeps the reads to one query)."""

    def __init__(self, logits):
        self.logits = logits
        self.shape = logits.shape[:2] + (1,) + logits.shape[3:]

    def __getitem__(self, rows):
        return self.logits[rows, :, :1]


def _stream(logits, labels, names, specs, dtype, block, exact=()):
    M, N, A, C = logits.shape
    specs = {n: specs[n] for n in names}
    if A == 1 or not any(s.every_query for s in specs.values()):
        logits = _FirstQuery(logits)
    block = block or max(1, (1 << 26) // max(1, N * logits.shape[2] * logits.shape[3]))
    out = {n: np.zeros((M,) + tuple(s.shape(N, A, C)), np.float64 if n in exact else dtype)
           for n, s in specs.items()}
    labels = np.asarray(labels)
    for a in range(0, M, block):
        z = np.asarray(logits[a : a + block], dtype=np.float64)
        for n, s in specs.items():
            out[n][a : a + block] = s.fn(z, labels)
    return out


def compute_signals(logits, labels, names, *, test_logits=None, test_labels=None,
                    dtype=np.float32, specs=None, block: int = 0, exact=()) -> Signals:
    """Per-example signals of M models from their logits, streamed over blocks of models.

    Args:
      logits: [M, N, A, C], or [M, N, C] (a missing query axis means A = 1); a memmap is read a
        block at a time. ``labels`` [N] int in [0, C) (a ValueError names the range otherwise;
        likewise ``test_labels``).
      names: signal names (keys of :data:`SIGNALS` or ``specs``); ``NAME_pop`` computes NAME on
        ``test_logits`` [M, Z, A, C] (or [M, Z, C]; M, A and C as in ``logits``) / ``test_labels``
        [Z]. ``correct_query_average`` is left out
        when A = 1 (it would equal ``correct``).
      dtype: of the stored signals (computed in float64).
      specs: signal definitions that replace or add to :data:`SIGNALS` (e.g. ``{"p":
        rmia_p_spec(...)}``).
      block: models per block (0: as many as hold 2^26 float64 logits).
      exact: names of signals stored in float64 whatever ``dtype`` says (and their ``_pop``
        twins): RMIA's ``p``, whose 1 − p float32 cannot resolve below ~6e-8 (per-example RMIA
        scores moved by up to 0.0117 against float64).

    Returns:
      :class:`Signals`: ``{name: [M, N, ...]}`` with ``labels`` (and ``pop_labels``).

    Raises:
      ValueError: an unknown signal name; logits of another rank, ``test_logits`` that differ
        from ``logits`` in M, A or C, or labels that do not match the example axis (each naming
        the axis, see :func:`model_logits`); labels out of [0, C).
    """
    specs = {**SIGNALS, **(specs or {})}
    names = list(dict.fromkeys(names))
    train = [n for n in names if not n.endswith("_pop")]
    pop = [n[: -len("_pop")] for n in names if n.endswith("_pop")]
    for n in train + pop:
        if n not in specs:
            raise ValueError(f"unknown signal {n!r}; known: {', '.join(specs)}")
    logits = model_logits(logits)
    if test_logits is not None:
        test_logits = model_logits(test_logits, "test_logits", like=logits)
    out = Signals(labels=np.asarray(labels), pop_labels=test_labels)
    for group, lg, lab, suffix in ((train, logits, labels, ""), (pop, test_logits, test_labels, "_pop")):
        if not group:
            continue
        if lg is None:
            raise ValueError(f"signals {[n + suffix for n in group]} need test_logits and test_labels")
        lname, ex = ("test_labels", "Z") if suffix else ("labels", "N")
        if np.shape(lab) != tuple(lg.shape[1:2]):
            raise ValueError(f"{lname}: expected shape {tuple(lg.shape[1:2])}, the axis {ex} "
                             f"({F.AXES['N']}) of {'test_' if suffix else ''}logits "
                             f"[M, {ex}, A, C] {tuple(lg.shape)}; got {np.shape(lab)}")
        F.check_labels(lab, lg.shape[-1], name=lname)
        if lg.shape[2] == 1:
            group = [n for n in group if n != "correct_query_average"]
        out.update({n + suffix: v for n, v in _stream(lg, lab, group, specs, dtype, block, exact).items()})
    return out
