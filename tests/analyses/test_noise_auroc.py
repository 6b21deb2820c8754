"""jaxmem.analyses.label_noise.noise_auroc (the AUROC of a score for the flipped labels) against a
pairwise brute force."""

import numpy as np
import pytest

from jaxmem.analyses.label_noise import noise_auroc
from jaxmem.estimators.proxies import UndefinedProxyWarning


def test_noise_auroc_matches_pairwise_brute_force(rng):
    n = 70
    flipped = rng.random(n) < 0.3
    s = np.round(rng.normal(size=n) + flipped, 1)  # rounding makes ties
    s[2] = np.nan
    ok = ~np.isnan(s)
    pos = [s[i] for i in range(n) if ok[i] and flipped[i]]
    neg = [s[i] for i in range(n) if ok[i] and not flipped[i]]
    ref = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
    with pytest.warns(UndefinedProxyWarning, match="NaN score"):
        got = noise_auroc(s, flipped)
    assert got == pytest.approx(ref, rel=1e-12)
    for f in (np.ones(n, bool), np.zeros(n, bool)):
        with pytest.warns(UndefinedProxyWarning, match="AUROC is NaN"):
            assert np.isnan(noise_auroc(np.nan_to_num(s), f))
