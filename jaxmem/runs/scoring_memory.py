"""Scoring's host memory (bytes by stage) for a classifier's run, scored from its stored logits
(:mod:`jaxmem.runs.score`): the estimate :mod:`jaxmem.runs.preflight` checks at the door and
before scoring, and the classification task's (:mod:`jaxmem.runs.task`)."""

from __future__ import annotations

import math

__all__ = ["scoring_bytes"]

#: Scoring's fixed cost on the host (plotting, XLA's compilations of the attack kernels).
_SCORING_FIXED = 256 << 20
#: Peak bytes of computing the signals of one streamed block, per float64 logit of the block
#: (the block itself, a softmax and the signal functions' temporaries; measured: 6.2x).
_SIGNAL_BLOCK_FACTOR = 7


def scoring_bytes(cfg, num_train: int, num_test: int, num_classes: int) -> dict:
    """Host bytes of scoring by stage: the signals it keeps ([M, N] float32 each; RMIA's p in
    float64), the peak of
    computing them from one streamed block of logits (:func:`jaxmem.signals.compute_signals`
    reads as many models as hold 2^26 float64 logits), the attacks' per-target scores ([T, N]
    float64 per attack, and their concatenation) and a fixed part. The stages follow each other:
    the peak is the kept signals plus the largest stage."""
    from jaxmem.attacks.registry import get
    from jaxmem.runs.score import _signal_names
    from jaxmem.signals.stream import SIGNALS

    M, N, T, A, C = (cfg.subsets.num_models, num_train, num_test, len(cfg.signals.queries),
                     num_classes)
    names = set(_signal_names(cfg))
    sig = 0
    for name in names:
        pop = name.endswith("_pop")
        spec = SIGNALS.get(name[:-4] if pop else name)
        per = math.prod(spec.shape(T if pop else N, A, C)) if spec else (T if pop else N) * A
        sig += M * per * (8 if (name[:-4] if pop else name) == "p" else 4)   # (RMIA's p: float64)
    every = A > 1 and any(SIGNALS[n].every_query for n in names if n in SIGNALS)
    per_model = max(N, T) * (A if every else 1) * C
    block = min(M, max(1, (1 << 26) // max(1, per_model))) * per_model * 8
    targets = min(cfg.scoring.targets or M, M)
    attacks = len(cfg.scoring.attacks)
    scores = targets * N * 8 * 2 * attacks
    phi = M * N * A * 4 if any("phi" in get(a).needs for a in cfg.scoring.attacks) else 0
    return {"fixed": _SCORING_FIXED, "keep": M * N, "signals": sig,
            "stage": max(_SIGNAL_BLOCK_FACTOR * block, scores + phi)}
