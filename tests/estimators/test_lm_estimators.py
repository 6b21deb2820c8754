"""jaxmem.estimators.lm against float64 loops, scipy's binomial quantiles / linregress, and a Monte
Carlo of fresh data sets for the bootstrap interval, on fresh random inputs."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from jaxmem.estimators import InsufficientModelsWarning, counterfactual_memorization
from jaxmem.estimators import lm as E


def mean(v):
    return sum(v) / len(v) if v else math.nan


def var(v):
    return sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1) if len(v) > 1 else math.nan


def _design(rng, M, N):
    keep = rng.random((M, N)) < 0.5
    keep[:, 0] = True  # no OUT model
    return keep


def test_counterfactual_memorization_lm_against_loops(rng):
    M, N, T = int(rng.integers(3, 10)), 25, int(rng.integers(1, 12))
    keep = _design(rng, M, N)
    correct = (rng.random((M, N, T)) < 0.5).astype(np.float64)
    mask = rng.random((N, T)) < 0.8
    mask[3] = False  # a sequence without target tokens
    with pytest.warns(InsufficientModelsWarning):
        res = E.counterfactual_memorization_lm(keep, correct, mask)
    for i in range(N):
        toks = [t for t in range(T) if mask[i, t]]
        per = [sum(correct[m, i, t] for t in toks) / len(toks) if toks else math.nan for m in range(M)]
        ins = [per[m] for m in range(M) if keep[m, i]]
        outs = [per[m] for m in range(M) if not keep[m, i]]
        mem = mean(ins) - mean(outs)
        se = math.sqrt(var(ins) / len(ins) + var(outs) / len(outs)) if len(ins) > 1 and len(outs) > 1 else math.nan
        np.testing.assert_allclose(res.mem[i], mem, rtol=1e-12, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(res.stderr[i], se, rtol=1e-12, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(res.mean_in[i], mean(ins), rtol=1e-12, equal_nan=True)
        assert res.n_in[i] == len(ins) and res.n_out[i] == len(outs)
    # a per-model mask [M, N, T] and a per-sequence metric [M, N] (used as is)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsufficientModelsWarning)
        full = E.counterfactual_memorization_lm(keep, correct, np.broadcast_to(mask, (M, N, T)))
        np.testing.assert_array_equal(full.mem, res.mem)
        per = rng.normal(size=(M, N))
        np.testing.assert_array_equal(E.counterfactual_memorization_lm(keep, per).mem,
                                      counterfactual_memorization(keep, per).mem)
    with pytest.raises(ValueError, match="needs its target mask"):
        E.counterfactual_memorization_lm(keep, correct)
    with pytest.raises(ValueError, match="per-token"):
        E.counterfactual_memorization_lm(keep, per, mask)


def test_exact_match_accuracy_pools_tokens(rng):
    M, N, T = 4, 9, 6
    keep = rng.random((M, N)) < 0.5
    keep[3] = True  # model 3 has no OUT sequence
    correct = (rng.random((M, N, T)) < 0.4).astype(float)
    mask = rng.random((M, N, T)) < 0.7
    with pytest.warns(InsufficientModelsWarning, match="1 of 8"):
        r = E.exact_match_accuracy(keep, correct, mask)
    for m in range(M):
        for member, acc, cnt in ((True, r.acc_in, r.tokens_in), (False, r.acc_out, r.tokens_out)):
            vals = [correct[m, i, t] for i in range(N) for t in range(T) if keep[m, i] == member and mask[m, i, t]]
            assert cnt[m] == len(vals)
            np.testing.assert_allclose(acc[m], sum(vals) / len(vals) if vals else math.nan, equal_nan=True)


def _wilson(k, n, alpha):
    z = stats.norm.ppf(1 - alpha / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_extraction_rate_by_count_against_loops(rng):
    M, N = 6, 120
    counts = rng.choice([1, 2, 3, 5, 8, 40], size=N)
    extracted = rng.random((M, N)) < 0.1 * np.log2(1 + counts)[None]
    keep = rng.random((M, N)) < 0.5
    valid = rng.random(N) < 0.9
    alpha = float(rng.choice([0.05, 0.1, 0.32]))
    for members in (True, False):
        t = E.extraction_rate_by_count(extracted, counts, keep=keep, members=members, valid=valid, alpha=alpha)
        cp = E.extraction_rate_by_count(extracted, counts, keep=keep, members=members, valid=valid, alpha=alpha,
                                        method="clopper_pearson")
        np.testing.assert_array_equal(t.counts, np.unique(counts))
        for j, c in enumerate(t.counts):
            pairs = [(m, i) for m in range(M) for i in range(N)
                     if counts[i] == c and valid[i] and keep[m, i] == members]
            k = sum(extracted[m, i] for m, i in pairs)
            assert t.trials[j] == len(pairs) and t.successes[j] == k
            assert t.sequences[j] == len({i for _, i in pairs})
            np.testing.assert_allclose(t.rate[j], k / len(pairs))
            np.testing.assert_allclose((t.low[j], t.high[j]), _wilson(k, len(pairs), alpha), rtol=1e-9, atol=1e-12)
            lo = stats.beta.ppf(alpha / 2, k, len(pairs) - k + 1) if k > 0 else 0.0
            hi = stats.beta.ppf(1 - alpha / 2, k + 1, len(pairs) - k) if k < len(pairs) else 1.0
            np.testing.assert_allclose((cp.low[j], cp.high[j]), (lo, hi), rtol=1e-9, atol=1e-12)
    # bins by lower edges; [N] input = one model; an empty bucket is NaN with a warning
    with pytest.warns(InsufficientModelsWarning, match="1 of 4 buckets"):
        b = E.extraction_rate_by_count(extracted[0], counts, bins=[2, 4, 16, 1000])
    for j, (lo_e, hi_e) in enumerate([(2, 4), (4, 16), (16, 1000), (1000, np.inf)]):
        sel = (counts >= lo_e) & (counts < hi_e)
        assert b.trials[j] == sel.sum() and b.successes[j] == extracted[0, sel].sum()
    assert np.isnan(b.rate[3]) and np.isnan(b.low[3])
    with pytest.raises(ValueError, match="method"):
        E.extraction_rate_by_count(extracted, counts, method="agresti")


def test_loglog_slope_point_estimate_and_degenerate_cases(rng):
    c = np.repeat([1, 2, 4, 8, 16, 32], 30)
    b_true = float(rng.uniform(0.5, 2.0))
    exact = 0.01 * c ** b_true
    r = E.loglog_slope(c, exact, num_bootstrap=200, seed=3)
    np.testing.assert_allclose(r.slope, b_true, rtol=1e-10)
    np.testing.assert_allclose((r.low, r.high), b_true, rtol=1e-10)  # no noise: no spread
    noisy = exact * rng.lognormal(0, 0.7, c.size)
    r = E.loglog_slope(c, noisy, num_bootstrap=300, seed=5)
    means = np.array([noisy[c == k].mean() for k in np.unique(c)])
    lr = stats.linregress(np.log(np.unique(c)), np.log(means))
    np.testing.assert_allclose((r.slope, r.intercept), (lr.slope, lr.intercept), rtol=1e-10)
    assert r.low < r.slope < r.high and r.num_valid == 300
    again = E.loglog_slope(c, noisy, num_bootstrap=300, seed=5)
    assert (again.low, again.high, again.stderr) == (r.low, r.high, r.stderr)  # seeded
    # a bucket with mean <= 0 is dropped from the fit
    v = noisy.copy()
    v[c == 4] = 0.0
    with pytest.warns(RuntimeWarning, match="1 of 6 buckets have a mean <= 0"):
        d = E.loglog_slope(c, v, num_bootstrap=50)
    keepb = np.unique(c) != 4
    lr = stats.linregress(np.log(np.unique(c)[keepb]), np.log(means[keepb]))
    np.testing.assert_allclose(d.slope, lr.slope, rtol=1e-10)
    assert not d.used[2] and d.used.sum() == 5
    # geometric-mean x per bin
    g = E.loglog_slope(c, noisy, bins=[1, 4, 16], num_bootstrap=0)
    np.testing.assert_allclose(g.counts, [math.sqrt(2), math.sqrt(32), math.sqrt(512)])
    with pytest.warns(RuntimeWarning, match="fewer than two buckets"):
        one = E.loglog_slope(np.ones(10), rng.random(10), num_bootstrap=20)
    assert np.isnan(one.slope) and np.isnan(one.low)
    with pytest.raises(ValueError, match="counts must be > 0"):
        E.loglog_slope(np.zeros(3), np.ones(3))


def test_loglog_slope_bootstrap_spread_matches_fresh_data_sets(rng):
    """The stratified bootstrap's standard error of the slope against the spread of the slope
    over fresh data sets drawn from the same model (an independent Monte Carlo)."""
    c = np.repeat([1, 2, 4, 8, 16], 40)

    def draw():
        return 0.01 * c ** 1.3 * rng.lognormal(0, 1.0, c.size)

    mc = np.array([E.loglog_slope(c, draw(), num_bootstrap=0).slope for _ in range(400)])
    boot_se = np.array([E.loglog_slope(c, draw(), num_bootstrap=400, seed=s).stderr for s in range(8)])
    ratio = np.median(boot_se) / np.std(mc, ddof=1)
    assert 0.65 < ratio < 1.3, ratio  # measured 0.80-1.05 (mean 0.90) over 40 seeds
    assert abs(np.mean(mc) - 1.3) < 4 * np.std(mc) / math.sqrt(len(mc)) + 0.02


def test_loglinear_slope_against_polyfit_and_a_bootstrap_loop(rng):
    from jaxmem.estimators import loglinear_slope

    G, N = int(rng.integers(2, 5)), int(rng.integers(20, 60))
    x = np.sort(rng.choice([10, 100, 1_000, 5_000, 20_000, 1e6], size=G, replace=False))
    v = 0.2 + 0.03 * np.log10(x)[:, None] + rng.normal(0, 0.1, (G, N))
    v[rng.random((G, N)) < 0.1] = np.nan             # not scored in that group
    r = loglinear_slope(x, v, num_bootstrap=200, seed=7)
    means = np.array([np.nanmean(row) for row in v])
    b, a = np.polyfit(np.log10(x), means, 1)
    np.testing.assert_allclose([r.slope, r.intercept], [b, a], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.means, means, rtol=1e-12)
    draws = np.random.default_rng(7).integers(0, N, size=(200, N))   # the same paired resamples
    boots = []
    for idx in draws:
        m = np.array([np.nanmean(row[idx]) for row in v])
        boots.append(np.polyfit(np.log10(x), m, 1)[0])
    np.testing.assert_allclose([r.low, r.high], np.percentile(boots, [2.5, 97.5]), rtol=1e-9)
    np.testing.assert_allclose(r.stderr, np.std(boots, ddof=1), rtol=1e-9)
    with pytest.warns(RuntimeWarning, match="fewer than two"):
        one = loglinear_slope(x[:1], v[:1])
    assert np.isnan(one.slope) and np.isnan(one.low)
    with pytest.raises(ValueError, match="> 0"):
        loglinear_slope(np.zeros(G), v)


def test_text_groups_against_loops_and_copies_do_not_inflate_counts(rng):
    """Issue 21 item 1: a text and its copies are one example. text_groups finds each group's
    first row by a loop's rule; membership checked per text; and an extraction table over the
    texts has one trial per (model, text): the rows of a text copied c times would count c."""
    N, M = 40, 6
    groups = rng.integers(0, 15, N) * 7 - 3          # arbitrary ids (negative too), unsorted
    tg = E.text_groups(groups)
    seen, first = {}, []
    for i, g in enumerate(groups):
        if g not in seen:
            seen[g] = len(first)
            first.append(i)
    np.testing.assert_array_equal(tg.first, first)
    np.testing.assert_array_equal(tg.text_of_row, [seen[g] for g in groups])
    np.testing.assert_array_equal(tg.copies, [int(np.sum(groups == groups[i])) for i in first])
    assert tg.num_texts == len(first) and tg.num_rows == N and f"{len(first)} texts" in tg.unit()
    keep = (rng.random((M, tg.num_texts)) < 0.5)[:, tg.text_of_row]   # drawn per text
    assert E.text_groups(groups, keep=keep).first.tolist() == first
    dup = [i for i in range(N) if tg.copies[tg.text_of_row[i]] > 1]
    bad = keep.copy()
    bad[0, dup[-1]] = ~bad[0, dup[-1]]                 # one copy IN, its twin OUT
    with pytest.raises(ValueError, match="keep differs between copies"):
        E.text_groups(groups, keep=bad)
    x = rng.random((M, N)) < 0.3
    x = x[:, tg.first][:, tg.text_of_row]              # copies: the same outcome (same tokens)
    counts = tg.copies[tg.text_of_row]
    per_text = E.extraction_rate_by_count(x[:, tg.first], counts[tg.first], keep=keep[:, tg.first])
    for c, n in zip(per_text.counts, per_text.trials):
        assert n == sum(keep[m, i] for m in range(M) for i in first if counts[i] == c)
    per_row = E.extraction_rate_by_count(x, counts, keep=keep)
    multi = per_text.counts > 1
    assert multi.any() and np.all(per_row.trials[multi] == per_text.trials[multi] * per_text.counts[multi])
