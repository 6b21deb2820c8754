"""Decision stability of a membership attack over target replicas (Hayes et al. 2025, Sec. 6).

T target models (replicas) are trained on the SAME data with different seeds (the ``replica`` design of
:mod:`jaxmem.subsets`). An attack thresholded at a fixed FPR decides "member" or not for each
member of each replica; a member whose decision is a coin flip over the replicas is a true
positive by luck of the seed, not because the attack finds it. Pure functions of arrays.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

__all__ = ["threshold_decisions", "flip_rate", "coin_flip_cutoff", "decision_stability"]


def threshold_decisions(scores: Real[ArrayLike, "T N"], members: Bool[ArrayLike, " N"], fpr: float) -> Bool[np.ndarray, "T N"]:
    """Each replica's decisions at its own threshold of FPR ≤ ``fpr``.

    The threshold of replica t is its k-th largest non-member score ``q_r``, k = floor(fpr ·
    n_out) + 1, and an example is called a member when its score is strictly above ``q_r``: at
    most floor(fpr · n_out) non-members are called members (ties kept together), and no lower
    threshold keeps FPR ≤ ``fpr`` (the ROC point of largest TPR at FPR ≤ ``fpr``, as
    :func:`jaxmem.attacks.metrics.tpr_at_fpr`).

    Args:
      scores: [T, N] float attack scores (higher = member) of T replicas; all finite.
      members: [N] bool, the replicas' common membership.
      fpr: the false-positive rate in [0, 1].

    Returns:
      [T, N] bool decisions.

    Raises:
      ValueError: on shapes, non-finite scores, an FPR outside [0, 1], or no non-member.
    """
    s = np.asarray(scores, np.float64)
    mb = np.asarray(members, bool)
    if s.ndim != 2 or mb.shape != (s.shape[1],):
        raise ValueError(f"scores must be [T, N] and members [N]; got {s.shape} and {mb.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (drop unscored examples first)")
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    n_out = int((~mb).sum())
    if n_out == 0:
        raise ValueError("members has no non-member: no threshold at a given FPR")
    k = math.floor(fpr * n_out + 1e-12) + 1
    if k > n_out:
        return np.ones_like(s, bool)
    out = -np.sort(-s[:, ~mb], axis=1)          # descending
    q = out[:, k - 1]
    return s > q[:, None]


def flip_rate(decisions: Bool[ArrayLike, "T N"]) -> Float[np.ndarray, " N"]:
    """Per example, the fraction of replica PAIRS whose decisions differ: 2k(T − k) / (T(T − 1))
    for k positive decisions out of T (0 when all agree, its maximum ≈ 1/2 at k = T/2).

    Args:
      decisions: [T, N] bool, T ≥ 2.

    Returns:
      [N] float64.

    Raises:
      ValueError: ``decisions`` not [T, N] with T >= 2.

    References:
      Hayes et al. 2025, "Strong membership inference attacks on massive datasets and
      (moderately) large language models", Sec. 6.

    Example:
      >>> flip_rate(np.array([[True, True], [False, True], [True, True]]))   # k = 2 of 3, 3 of 3
      array([0.66666667, 0.        ])
    """
    d = np.asarray(decisions, bool)
    if d.ndim != 2 or d.shape[0] < 2:
        raise ValueError(f"decisions must be [T, N] with T >= 2, got {d.shape}")
    r = d.shape[0]
    k = d.sum(0).astype(np.float64)
    return 2.0 * k * (r - k) / (r * (r - 1.0))


def coin_flip_cutoff(num_replicas: int, alpha: float = 0.05) -> tuple[float, np.ndarray]:
    """The flip-rate cutoff of a coin flip: the counts k of positives out of T that an exact
    two-sided binomial test of p = 1/2 does NOT reject at ``alpha``, and the smallest flip rate
    among them (flip rate ≥ cutoff ⇔ not rejected, since the flip rate grows as k nears T/2).

    Args:
      num_replicas: T ≥ 2.
      alpha: the test's level in (0, 1).

    Returns:
      ``(cutoff, accepted)``: the cutoff (NaN when every count is rejected) and a bool [T + 1]
      mask of the accepted counts.

    Raises:
      ValueError: ``num_replicas`` < 2 or ``alpha`` outside (0, 1).

    References:
      Hayes et al. 2025, "Strong membership inference attacks on massive datasets and
      (moderately) large language models", Sec. 6 (α = 0.05; cutoff 0.487 at T = 127).
    """
    from scipy.stats import binomtest

    if num_replicas < 2:
        raise ValueError(f"num_replicas must be >= 2, got {num_replicas}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    r = int(num_replicas)
    acc = np.array([binomtest(k, r, 0.5).pvalue > alpha for k in range(r + 1)])
    k = np.arange(r + 1, dtype=np.float64)
    fr = 2.0 * k * (r - k) / (r * (r - 1.0))
    return (float(fr[acc].min()) if acc.any() else float("nan")), acc


def decision_stability(scores: Real[ArrayLike, "T N"], members: Bool[ArrayLike, " N"], fprs=(0.001, 0.01), *,
                       classes: Real[ArrayLike, " N"] | None = None, alpha: float = 0.05) -> dict:
    """Per FPR: each member's flip rate over the replicas and the share of true positives that
    are coin flips, overall and by class.

    A true positive is a (replica, member) pair the attack calls a member; it is a coin flip when
    its member's count of positive decisions passes the two-sided binomial test of p = 1/2 at
    ``alpha`` (:func:`coin_flip_cutoff`). The share is (coin-flip true positives) / (true
    positives), NaN with a warning when there is none.

    Args:
      scores: [T, N] attack scores of T target replicas trained on the same data (T ≥ 2);
        examples with a non-finite score in any replica are dropped (with a warning).
      members: [N] bool membership shared by the replicas.
      fprs: FPRs of the thresholds (each replica thresholded on its own non-members).
      classes: optional [N] int labels for the by-class shares.
      alpha: the binomial test's level.

    Returns:
      ``{fpr: {"flip_rate" [N] (NaN for non-members and dropped examples), "positives" [N]
      (counts, −1 when dropped), "coin_flip" [N] bool (members only), "cutoff", "tpr" (mean over
      replicas), "true_positives", "coin_flip_tp_share", "coin_flip_members" (count), "by_class"
      {c: share}}}``. The shares are NaN (with a warning) when the test cannot reject any count
      (T ≤ 5 at α = 0.05): then every member would count as a coin flip.

    Raises:
      ValueError: ``scores`` not [T, N] with T >= 2, ``members`` or ``classes`` not [N], or an FPR
        outside [0, 1].

    References:
      Hayes et al. 2025 (arXiv 2505.18773), Sec. 6: 15.4 ± 0.6% of true positives at FPR 1e-3
      are coin flips over 127 replicas.
    """
    s = np.asarray(scores, np.float64)
    mb = np.asarray(members, bool)
    if s.ndim != 2 or mb.shape != (s.shape[1],):
        raise ValueError(f"scores must be [T, N] and members [N]; got {s.shape} and {mb.shape}")
    if s.shape[0] < 2:
        raise ValueError(f"decision stability needs >= 2 replicas, got {s.shape[0]}")
    if classes is not None:
        classes = np.asarray(classes)
        if classes.shape != mb.shape:
            raise ValueError(f"classes must be [N] = {mb.shape}, got {classes.shape}")
    fin = np.isfinite(s).all(0)
    if not fin.all():
        warnings.warn(f"decision_stability: {int((~fin).sum())} examples with a non-finite score "
                      "in some replica are left out", stacklevel=2)
    r, n = s.shape
    cutoff, accepted = coin_flip_cutoff(r, alpha)
    powerless = bool(accepted.all())
    if powerless:
        warnings.warn(f"decision_stability: with {r} replicas the binomial test at alpha={alpha} "
                      "rejects no count (it needs 2 * 0.5**T <= alpha): every member would be a "
                      "coin flip; the shares are undefined (NaN)", stacklevel=2)
    out = {}
    for f in fprs:
        d = threshold_decisions(s[:, fin], mb[fin], f)
        k = d.sum(0)
        pos = np.full(n, -1, np.int64)
        pos[fin] = k
        fr = np.full(n, np.nan)
        memb = fin & mb
        fr[memb] = flip_rate(d)[mb[fin]]
        coin = np.zeros(n, bool)
        coin[memb] = accepted[pos[memb]]
        tp = int(pos[memb].sum())
        tp_coin = int(pos[coin].sum())

        def share(a, b, what, f=f):
            if powerless:
                return float("nan")
            if b == 0:
                warnings.warn(f"decision_stability: no true positive at FPR {f}{what}: the "
                              "coin-flip share is undefined (NaN)", stacklevel=3)
                return float("nan")
            return a / b

        by_class = {}
        if classes is not None:
            for c in np.unique(classes[memb]):
                sel = memb & (classes == c)
                by_class[c.item()] = share(int(pos[sel & coin].sum()), int(pos[sel].sum()),
                                           f" in class {c}")
        out[f] = {"flip_rate": fr, "positives": pos, "coin_flip": coin, "cutoff": cutoff,
                  "tpr": float(k[mb[fin]].sum() / max(r * int(memb.sum()), 1)),
                  "true_positives": tp, "coin_flip_members": int(coin.sum()),
                  "coin_flip_tp_share": share(tp_coin, tp, ""), "by_class": by_class}
    return out
