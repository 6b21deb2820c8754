"""The augmentation analysis' statistics: t-intervals against scipy, the memorization summary
against numpy, the bootstrap over models reproducible and centred on the estimate."""

import warnings

import numpy as np
import pytest
from scipy import stats

from jaxmem.analyses.augmentation import jackknife_models, mean_interval, memorization_summary


def test_mean_interval_matches_scipy(rng):
    v = rng.normal(size=int(rng.integers(3, 30)))
    m, lo, hi = mean_interval(np.append(v, np.nan))
    want = stats.t.interval(0.95, v.size - 1, loc=v.mean(), scale=stats.sem(v))
    assert m == pytest.approx(v.mean(), rel=1e-12)
    assert (lo, hi) == pytest.approx(want, rel=1e-10)
    assert np.isnan(mean_interval([1.0])[1])
    with pytest.warns(UserWarning, match="undefined"):
        assert np.isnan(mean_interval([np.nan])[0])


def test_memorization_summary_matches_numpy(rng):
    m = rng.uniform(-0.2, 1.0, 500)
    m[:7] = np.nan
    s = memorization_summary(m)
    f = m[np.isfinite(m)]
    assert s["mem_mean"] == pytest.approx(f.mean())
    assert s["mem_p99"] == pytest.approx(np.quantile(f, 0.99))
    assert s["share_mem_gt_0.5"] == pytest.approx((f > 0.5).mean())


def test_jackknife_over_models_matches_direct_formula(rng):
    from jaxmem.estimators import memorization

    M, N = 10, 200
    keep = rng.random((M, N)) < 0.5
    hard = rng.random(N) < 0.2                  # memorized: right only when IN
    correct = np.where(hard, keep, rng.random((M, N)) < 0.95).astype(float)
    ok = np.ones(M, bool)
    ok[4] = False                               # a diverged model is left out everywhere
    got = jackknife_models(keep, correct, ok)
    use = np.flatnonzero(ok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = memorization(keep[use], correct[use]).mem
        loo = np.array([np.nanmean(memorization(np.delete(keep[use], i, 0),
                                                np.delete(correct[use], i, 0)).mem)
                        for i in range(len(use))])
    n = len(use)
    se = np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum())
    est = np.nanmean(t)
    assert got["mem_mean"] == pytest.approx((est - 1.959964 * se, est + 1.959964 * se), rel=1e-5)
    lo, hi = got["share_mem_gt_0.5"]
    share = (t[np.isfinite(t)] > 0.5).mean()
    assert lo <= share <= hi
