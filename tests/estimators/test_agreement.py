"""jaxmem.estimators.agreement against float64 references: rank loops, brute force over
tie-breaks, a bootstrap loop, averages over models as loops."""

import itertools

import numpy as np
import pytest

from jaxmem.estimators import agreement as A
from jaxmem.estimators.proxies import UndefinedProxyWarning


def _mean(v):
    return sum(v) / len(v)


def _avg_ranks(x):
    x = list(x)
    r = [0.0] * len(x)
    for i in range(len(x)):
        less = sum(1 for v in x if v < x[i])
        eq = sum(1 for v in x if v == x[i])
        r[i] = less + (eq + 1) / 2
    return r


def _pearson(a, b):
    ma, mb = _mean(a), _mean(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    den = (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
    return num / den


def test_spearman_matches_rank_loop_with_ties_nan_inf(rng):
    n = 60
    a = rng.integers(0, 8, n).astype(float)  # many ties
    b = a + rng.normal(size=n)
    b[3] = np.inf
    a[7] = np.nan
    ok = ~np.isnan(a)
    ref = _pearson(_avg_ranks(a[ok]), _avg_ranks(b[ok]))
    with pytest.warns(UndefinedProxyWarning, match="1 of 60"):
        got = A.spearman(a, b)
    assert got == pytest.approx(ref, rel=1e-12)
    with pytest.warns(UndefinedProxyWarning, match="undefined"):
        assert np.isnan(A.spearman(np.ones(10), b[:10]))
    with pytest.warns(UndefinedProxyWarning, match="undefined"):
        assert np.isnan(A.spearman([1.0, 2.0], [2.0, 1.0]))


def _topk_brute(a, b, k):
    """Average overlap over every tie-breaking of the two top-k sets (each uniformly at random)."""

    def sets(s):
        t = sorted(s, reverse=True)[k - 1]
        above = [i for i in range(len(s)) if s[i] > t]
        tied = [i for i in range(len(s)) if s[i] == t]
        return [set(above) | set(c) for c in itertools.combinations(tied, k - len(above))]

    sa, sb = sets(list(a)), sets(list(b))
    return sum(len(x & y) for x in sa for y in sb) / (len(sa) * len(sb) * k)


def test_top_k_precision_matches_brute_force_over_tie_breaks(rng):
    for _ in range(5):
        n = 12
        a = rng.integers(0, 4, n).astype(float)
        b = rng.integers(0, 4, n).astype(float)
        for k in (1, 3, 6, 12):
            assert A.top_k_precision(a, b, k) == pytest.approx(_topk_brute(a, b, k), rel=1e-12)
    a = rng.normal(size=50)
    b = rng.normal(size=50)
    k = 10
    plain = len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k
    assert A.top_k_precision(a, b, k) == pytest.approx(plain, rel=1e-15)
    assert A.top_k_precision(a, a, k) == 1.0
    with pytest.raises(ValueError, match="k must be"):
        A.top_k_precision(a, b, 51)
    a[0] = np.nan
    with pytest.warns(UndefinedProxyWarning, match="NaN"), pytest.raises(ValueError, match=r"\[1, 49\]"):
        A.top_k_precision(a, b, 50)


def test_bootstrap_over_examples_matches_loop(rng):
    from scipy.stats import spearmanr

    n = 80
    a = rng.normal(size=n)
    b = a + rng.normal(size=n)
    ci = A.bootstrap_over_examples(A.spearman, a, b, num_bootstrap=200, seed=3)
    r = np.random.default_rng(3)
    samples = []
    for _ in range(200):
        idx = r.integers(0, n, n)
        samples.append(spearmanr(a[idx], b[idx]).statistic)
    assert ci.estimate == pytest.approx(spearmanr(a, b).statistic, rel=1e-12)
    assert ci.low == pytest.approx(np.percentile(samples, 2.5), rel=1e-12)
    assert ci.high == pytest.approx(np.percentile(samples, 97.5), rel=1e-12)
    assert ci.stderr == pytest.approx(np.std(samples, ddof=1), rel=1e-12)
    assert ci.num_valid == 200 and ci.low <= ci.estimate <= ci.high
    tk = A.bootstrap_over_examples(A.top_k_precision, a, b, num_bootstrap=50, k=10)
    assert 0 <= tk.low <= tk.high <= 1
    with pytest.warns(UndefinedProxyWarning, match="every bootstrap sample"):
        const = A.bootstrap_over_examples(A.spearman, np.ones(5), b[:5], num_bootstrap=20)
    assert const.num_valid == 0 and np.isnan(const.low)


def test_average_over_models_matches_loop(rng):
    m, n = 6, 25
    p = rng.normal(size=(m, n))
    keep = rng.random((m, n)) < 0.5
    keep[:, 0] = False  # example 0: no IN model
    p[4] = np.nan  # a diverged model
    mask = np.ones(m, bool)
    mask[4] = False

    def loop(models, use_keep):
        out = np.empty(n)
        for i in range(n):
            vals = [p[a, i] for a in models if (keep[a, i] or not use_keep) and not np.isnan(p[a, i])]
            out[i] = _mean(vals) if vals else np.nan
        return out

    with pytest.warns(UndefinedProxyWarning, match="none of the chosen"):
        got = A.average_over_models(p, keep=keep, model_mask=mask)
    np.testing.assert_allclose(got, loop([0, 1, 2, 3, 5], True), rtol=1e-12)
    np.testing.assert_allclose(A.average_over_models(p, models=3, model_mask=mask), loop([0, 1, 2], False), rtol=1e-12)
    np.testing.assert_allclose(
        A.average_over_models(p, models=[5, 1], model_mask=mask), loop([5, 1], False), rtol=1e-12
    )
    single = A.average_over_models(p, models=1)
    np.testing.assert_array_equal(single, p[0])
    with pytest.warns(UndefinedProxyWarning, match="NaN"):
        A.average_over_models(p)  # the diverged model's NaN are left out, with a warning
    with pytest.raises(ValueError, match="unmasked"):
        A.average_over_models(p, models=[4], model_mask=mask)
    with pytest.raises(ValueError, match="models must be an integer"):
        A.average_over_models(p, models=6, model_mask=mask)
