"""Binomial proportion intervals, shared by the estimators (extraction rates,
:func:`jaxmem.estimators.extraction_rate_by_count`) and the attacks (the empirical ε lower bound of
a DP audit, :func:`jaxmem.attacks.epsilon_lower_bound`). It lives here, below the attacks, so
that the estimators never import attack code.

scipy is imported by :func:`clopper_pearson` only when called (it is not a core dependency, and
``import jaxmem.estimators`` stays free of ``scipy.stats``).
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float, Real

__all__ = ["clopper_pearson", "INTERVALS"]


def clopper_pearson(
    k: Real[ArrayLike, "*#batch"], n: Real[ArrayLike, "*#batch"], alpha: float = 0.05
) -> tuple[Float[np.ndarray, "*batch"], Float[np.ndarray, "*batch"]]:
    """Two-sided exact (Clopper–Pearson) interval for a binomial proportion k / n.

    Each tail gets ``alpha / 2``: lo = Beta⁻¹(α/2; k, n−k+1), hi = Beta⁻¹(1−α/2; k+1, n−k), with
    lo = 0 at k = 0 and hi = 1 at k = n (statsmodels ``proportion_confint(method="beta")``).
    Needs scipy.

    Args:
      k: [...] successes.
      n: [...] trials (broadcast against ``k``).
      alpha: 1 − the interval's level.

    Returns:
      (lo, hi), float64 arrays of the broadcast shape.

    Raises:
      ValueError: some k < 0 or k > n.

    References:
      Clopper & Pearson (1934), "The use of confidence or fiducial limits illustrated in the case
      of the binomial", Biometrika.

    Example:
      >>> lo, hi = clopper_pearson(0, 10)
      >>> float(lo), round(float(hi), 4)
      (0.0, 0.3085)
    """
    from scipy.stats import beta  # lazy: scipy is optional, and heavy to import

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n")
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
        hi = np.where(k < n, beta.isf(alpha / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    return lo, hi


def _wilson(k, n, alpha):
    """Wilson score interval per bucket (scipy's ``binomtest(...).proportion_ci``); NaN at n = 0."""
    from scipy.stats import binomtest  # lazy

    lo, hi = np.full(len(k), np.nan), np.full(len(k), np.nan)
    for j, (kj, nj) in enumerate(zip(k, n)):
        if nj > 0:
            ci = binomtest(int(kj), int(nj)).proportion_ci(confidence_level=1 - alpha, method="wilson")
            lo[j], hi[j] = ci.low, ci.high
    return lo, hi


#: The binomial intervals by name: ``fn(k, n, alpha) -> (lo, hi)``
#: (:func:`jaxmem.estimators.extraction_rate_by_count`'s ``method``).
INTERVALS = {"wilson": _wilson, "clopper_pearson": clopper_pearson}
