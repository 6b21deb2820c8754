"""Decision stability over target replicas (jaxmem.attacks.stability) against brute force."""

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from jaxmem.attacks.stability import coin_flip_cutoff, decision_stability, flip_rate, threshold_decisions


def _brute_decisions(scores, members, fpr):
    """Per replica: try every candidate threshold (each score, and +inf), call `score > t`
    members, keep those with FPR <= fpr and take the one of most positives (the lowest such
    threshold: most true positives, then most false positives within the FPR)."""
    out = np.zeros(scores.shape, bool)
    for r in range(scores.shape[0]):
        best, best_tp = None, -1
        for t in [*scores[r], np.inf]:
            d = scores[r] > t
            fp = (d & ~members).sum() / (~members).sum()
            tp = d.sum()
            if fp <= fpr + 1e-12 and tp > best_tp:
                best, best_tp = d, tp
        # also "everyone is a member" (threshold below all scores)
        d = np.ones(scores.shape[1], bool)
        if 1.0 <= fpr + 1e-12:
            best = d
        out[r] = best
    return out


@pytest.mark.parametrize("fpr", [0.0, 0.05, 0.2, 1.0])
def test_threshold_decisions_brute_force(rng, fpr):
    r, n = 5, 40
    scores = rng.integers(0, 8, (r, n)).astype(float)   # many ties
    members = rng.random(n) < 0.5
    members[:2] = [True, False]
    np.testing.assert_array_equal(threshold_decisions(scores, members, fpr),
                                  _brute_decisions(scores, members, fpr))


def test_stability_matches_brute_force(rng):
    r, n = int(rng.integers(6, 12)), 60
    scores = rng.normal(size=(r, n)) + rng.normal(size=n)     # per-example effect + seed noise
    members = rng.random(n) < 0.5
    members[:2] = [True, False]
    classes = rng.integers(0, 3, n)
    fprs = (0.1, 0.3)
    res = decision_stability(scores, members, fprs, classes=classes, alpha=0.05)
    for f in fprs:
        d = _brute_decisions(scores, members, f)
        got = res[f]
        tp = tp_coin = 0
        tp_c, coin_c = {}, {}
        for i in range(n):
            k = int(d[:, i].sum())
            assert got["positives"][i] == k
            if not members[i]:
                assert np.isnan(got["flip_rate"][i]) and not got["coin_flip"][i]
                continue
            pairs = [(a, b) for a in range(r) for b in range(a + 1, r)]
            fr = sum(d[a, i] != d[b, i] for a, b in pairs) / len(pairs)
            assert got["flip_rate"][i] == pytest.approx(fr, abs=1e-12)
            coin = binomtest(k, r, 0.5).pvalue > 0.05
            assert got["coin_flip"][i] == coin
            tp += k
            tp_coin += k * coin
            c = int(classes[i])
            tp_c[c] = tp_c.get(c, 0) + k
            coin_c[c] = coin_c.get(c, 0) + k * coin
        assert got["true_positives"] == tp
        if tp:
            assert got["coin_flip_tp_share"] == pytest.approx(tp_coin / tp)
        for c, v in tp_c.items():
            if v:
                assert got["by_class"][c] == pytest.approx(coin_c[c] / v)
        assert got["tpr"] == pytest.approx(d[:, members].mean())


def test_cutoff_is_hayes_et_al_at_127_replicas():
    # Hayes et al. 2025 (Sec. 6): flip rate >= 0.487 is a coin flip over 127 replicas at alpha 0.05
    cut, acc = coin_flip_cutoff(127, 0.05)
    assert round(cut, 3) == 0.487
    fr = flip_rate(np.arange(128)[None, :] > np.arange(127)[:, None])   # k = 0..127 positives
    np.testing.assert_array_equal(fr >= cut - 1e-12, acc)


def test_no_true_positive_is_nan_with_warning():
    scores = np.zeros((6, 6))
    members = np.array([1, 1, 1, 0, 0, 0], bool)
    with pytest.warns(UserWarning, match="no true positive"):
        res = decision_stability(scores, members, (0.0,))
    assert math.isnan(res[0.0]["coin_flip_tp_share"])


def test_bad_inputs():
    with pytest.raises(ValueError, match=">= 2 replicas"):
        decision_stability(np.zeros((1, 4)), np.array([1, 0, 1, 0], bool))
    with pytest.raises(ValueError, match="non-member"):
        threshold_decisions(np.zeros((2, 2)), np.ones(2, bool), 0.1)
    with pytest.raises(ValueError, match="fpr"):
        threshold_decisions(np.zeros((2, 2)), np.array([1, 0], bool), 1.5)


def test_nonfinite_examples_dropped(rng):
    scores = rng.normal(size=(4, 20))
    members = np.arange(20) % 2 == 0
    scores[1, 0] = np.nan
    with pytest.warns(UserWarning, match="non-finite"):
        res = decision_stability(scores, members, (0.2,))
    ref = decision_stability(scores[:, 1:], members[1:], (0.2,))
    assert res[0.2]["positives"][0] == -1 and np.isnan(res[0.2]["flip_rate"][0])
    np.testing.assert_array_equal(res[0.2]["positives"][1:], ref[0.2]["positives"])


def test_too_few_replicas_for_the_test_is_nan(rng):
    # 2 * 0.5**5 = 0.0625 > 0.05: with 5 replicas no count is rejected, so "coin flip" means nothing
    scores = rng.normal(size=(5, 30))
    members = np.arange(30) % 2 == 0
    with pytest.warns(UserWarning, match="rejects no count"):
        res = decision_stability(scores, members, (0.5,), classes=np.arange(30) % 3)
    assert math.isnan(res[0.5]["coin_flip_tp_share"])
    assert all(math.isnan(v) for v in res[0.5]["by_class"].values())
    res6 = decision_stability(rng.normal(size=(6, 30)), members, (0.5,))   # 2 * 0.5**6 < 0.05
    assert not math.isnan(res6[0.5]["coin_flip_tp_share"])
