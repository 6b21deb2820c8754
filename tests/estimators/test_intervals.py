"""The binomial intervals of jaxmem.estimators.intervals against scipy."""

import numpy as np
import numpy.testing as npt
import pytest
from scipy.stats import binomtest

from jaxmem.estimators import clopper_pearson


@pytest.mark.parametrize("n", [1, 5, 37, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.3])
def test_clopper_pearson_matches_scipy_binomtest(n, alpha):
    ks = np.unique(np.r_[0, n, np.linspace(0, n, 7).astype(int)])
    lo, hi = clopper_pearson(ks, n, alpha)
    for k, l, h in zip(ks, lo, hi):
        ci = binomtest(int(k), n).proportion_ci(confidence_level=1 - alpha, method="exact")
        npt.assert_allclose([l, h], [ci.low, ci.high], rtol=1e-9, atol=1e-14)
