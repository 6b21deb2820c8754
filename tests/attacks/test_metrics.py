"""Attack metrics against scikit-learn, scipy and brute force written here."""

import numpy as np
import numpy.testing as npt
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from jaxmem.attacks.metrics import (
    balanced_accuracy,
    epsilon_lower_bound,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)


def tied_scores(rng, n, levels):
    members = rng.random(n) < 0.4
    scores = rng.integers(0, levels, n) + 0.7 * members  # ties within and across labels
    return scores.astype(float), members


@pytest.mark.parametrize("n,levels,seed", [(50, 5, 0), (300, 20, 1), (1000, 1000, 2), (7, 2, 3)])
def test_roc_and_auc_match_sklearn(n, levels, seed):
    rng = np.random.default_rng(seed)
    s, m = tied_scores(rng, n, levels)
    if m.all() or (~m).all():
        m[0] = ~m[0]
    f, t, thr = roc_curve(s, m)
    fs, ts, thrs = sk_roc_curve(m, s, drop_intermediate=False)
    npt.assert_allclose(f, fs)
    npt.assert_allclose(t, ts)
    npt.assert_allclose(thr[1:], thrs[1:])
    npt.assert_allclose(roc_auc(s, m), roc_auc_score(m, s), rtol=1e-12)


def test_tpr_at_fpr_and_balanced_accuracy_brute_force():
    rng = np.random.default_rng(4)
    for n, levels in [(200, 10), (500, 500), (60, 3)]:
        s, m = tied_scores(rng, n, levels)
        s[rng.random(n) < 0.05] = np.nan
        ok = ~np.isnan(s)
        sc, mc = s[ok], m[ok]
        best_acc, best_tpr = 0.0, 0.0
        for t in np.r_[np.inf, np.unique(sc)]:
            pred = sc >= t
            tpr = (pred & mc).sum() / mc.sum()
            fpr = (pred & ~mc).sum() / (~mc).sum()
            best_acc = max(best_acc, (tpr + 1 - fpr) / 2)
            if fpr <= 0.05:
                best_tpr = max(best_tpr, tpr)
        npt.assert_allclose(balanced_accuracy(s, m), best_acc, rtol=1e-12)
        npt.assert_allclose(tpr_at_fpr(s, m, 0.05), best_tpr, rtol=1e-12)


@pytest.mark.parametrize("n,alpha,delta", [(100, 0.05, 0.0), (1000, 0.01, 0.0), (50, 0.05, 1e-3)])
def test_epsilon_lower_bound_perfect_separation_by_hand(n, alpha, delta):
    # Members all score 1, non-members all 0. The best test is the threshold between them:
    # TP = n, FP = 0, so TPR_lo = (alpha/2)^(1/n) and FPR_hi = 1 - (alpha/2)^(1/n).
    s = np.r_[np.ones(n), np.zeros(n)]
    m = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    q = (alpha / 2) ** (1 / n)
    want = np.log((q - delta) / (1 - q))
    npt.assert_allclose(epsilon_lower_bound(s, m, alpha=alpha, delta=delta), want, rtol=1e-10)


def test_epsilon_lower_bound_no_signal_is_zero():
    s = np.zeros(200)
    m = np.arange(200) % 2 == 0
    assert epsilon_lower_bound(s, m) == 0.0


@pytest.mark.parametrize("seed,two_sided,delta", [(0, False, 0.0), (1, True, 0.0), (2, False, 1e-2)])
def test_epsilon_lower_bound_brute_force(seed, two_sided, delta):
    rng = np.random.default_rng(seed)
    m = rng.random(150) < 0.5
    s = (rng.integers(0, 12, 150) + 5 * m).astype(float)  # strong signal, many ties
    alpha = 0.05
    P, N = m.sum(), (~m).sum()

    def cp(k, n):
        ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
        return ci.low, ci.high

    best = 0.0
    for t in np.r_[np.inf, np.unique(s)]:
        pred = s >= t
        tp, fp = (pred & m).sum(), (pred & ~m).sum()
        fn, tn = P - tp, N - fp
        pairs = [((tp, P), (fp, N)), ((tn, N), (fn, P))]
        if two_sided:
            pairs += [((fp, N), (tp, P)), ((fn, P), (tn, N))]
        for (k1, n1), (k0, n0) in pairs:
            lo, hi = cp(k1, n1)[0] - delta, cp(k0, n0)[1]
            if lo > 0:
                best = max(best, np.log(lo / hi))
    got = epsilon_lower_bound(s, m, alpha=alpha, delta=delta, two_sided=two_sided)
    assert best > 0
    npt.assert_allclose(got, best, rtol=1e-9)


# --- plot.py: mean ROC over targets, and the PNG itself ---------------------------------------

def test_mean_roc_against_brute_force():
    from jaxmem.attacks.plot import mean_roc, tpr_on_grid

    rng = np.random.default_rng(9)
    grid = np.logspace(-3, 0, 40)
    curves, aucs, lows, tprs = [], [], [], []
    for _ in range(4):
        s, m = tied_scores(rng, 3000, 200)
        f, t, _ = roc_curve(s, m)
        curves.append((f, t))
        aucs.append(roc_auc_score(m, s))
        lows.append(tpr_at_fpr(s, m, 1e-3))
        # brute force: best TPR over thresholds whose FPR <= g
        row = []
        for g in grid:
            best = 0.0
            for thr in np.r_[np.inf, np.unique(s)]:
                pred = s >= thr
                if (pred & ~m).sum() / (~m).sum() <= g:
                    best = max(best, (pred & m).sum() / m.sum())
            row.append(best)
        tprs.append(row)
        npt.assert_allclose(tpr_on_grid(f, t, grid), row)
    mean_t, auc, low = mean_roc(curves, grid)
    npt.assert_allclose(mean_t, np.mean(tprs, 0))
    npt.assert_allclose(auc, np.mean(aucs), rtol=1e-12)
    npt.assert_allclose(low, np.mean(lows))


def test_plot_roc_writes_png(tmp_path):
    import matplotlib.image

    from jaxmem.attacks.plot import plot_roc

    rng = np.random.default_rng(0)
    curves = {}
    for name, shift in [("strong", 2.0), ("weak", 0.3)]:
        curves[name] = []
        for _ in range(3):
            m = rng.random(500) < 0.5
            f, t, _ = roc_curve(rng.normal(size=500) + shift * m, m)
            curves[name].append((f, t))
    out = tmp_path / "sub" / "roc.png"
    assert plot_roc(curves, out, title="test") == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert [p.name for p in out.parent.iterdir()] == ["roc.png"]  # no temp file left


# --- issue #11: undefined metrics are NaN with a warning, never 0 or 1; ties at ±inf ----------

@pytest.mark.parametrize("case", ["all_members", "no_members", "all_nan", "members_nan", "empty"])
def test_metrics_without_both_classes_are_nan_with_a_warning(rng, case):
    from jaxmem.attacks import UndefinedMetricWarning

    n = 50
    s = rng.normal(size=n)
    m = rng.random(n) < 0.5
    if case == "all_members":
        m[:] = True
    elif case == "no_members":
        m[:] = False
    elif case == "all_nan":
        s[:] = np.nan
    elif case == "members_nan":     # only non-members were scored
        s[m] = np.nan
    else:
        s, m = s[:0], m[:0]
    for fn in (roc_auc, lambda s, m: tpr_at_fpr(s, m, 0.001), balanced_accuracy, epsilon_lower_bound):
        with pytest.warns(UndefinedMetricWarning, match="undefined"):
            assert np.isnan(fn(s, m))
    with pytest.warns(UndefinedMetricWarning):
        f, t, _ = roc_curve(s, m)
    ok = ~np.isnan(s)
    if m[ok].any() or not ok.any():      # sklearn agrees where it draws a curve at all
        assert np.isnan(f).all() or np.isnan(t).all()
    if case == "no_members":
        with pytest.warns(Warning):     # sklearn: UndefinedMetricWarning, TPR NaN
            fs, ts, _ = sk_roc_curve(m, s, drop_intermediate=False)
        npt.assert_array_equal(np.isnan(t), np.isnan(ts))
        npt.assert_allclose(f, fs)


def test_all_scores_tied_at_inf_separate_nothing():
    """Issue #11 item 2: 400 scores all +inf (or all −inf), half members, members first or
    last: AUC 0.5, TPR@0.1% 0, ε lower bound 0, balanced accuracy 0.5."""
    for value in (np.inf, -np.inf):
        for first in (True, False):
            m = (np.arange(400) < 200) if first else (np.arange(400) >= 200)
            s = np.full(400, value)
            assert roc_auc(s, m) == 0.5
            assert tpr_at_fpr(s, m, 0.001) == 0.0
            assert epsilon_lower_bound(s, m) == 0.0
            assert balanced_accuracy(s, m) == 0.5


def test_infinite_and_nan_scores_against_brute_force(rng):
    """±inf ties mixed with finite scores and NaNs (dropped): AUC, TPR@FPR, balanced accuracy by
    brute force over the scored pairs and thresholds."""
    for _ in range(4):
        n = 120
        s = np.round(rng.normal(size=n), 1)
        m = rng.random(n) < 0.5
        u = rng.random(n)
        s[u < 0.15] = np.inf
        s[(u >= 0.15) & (u < 0.25)] = -np.inf
        s[(u >= 0.25) & (u < 0.3)] = np.nan
        ok = ~np.isnan(s)
        si, so = s[ok & m][:, None], s[ok & ~m][None, :]
        npt.assert_allclose(roc_auc(s, m), ((si > so) + 0.5 * (si == so)).mean(), rtol=1e-12)
        sc, mc = s[ok], m[ok]
        best_tpr, best_acc = 0.0, 0.0
        for t in np.r_[np.unique(sc), np.nan]:   # NaN threshold: predict nothing
            pred = sc >= t
            tpr, fpr = (pred & mc).sum() / mc.sum(), (pred & ~mc).sum() / (~mc).sum()
            best_acc = max(best_acc, (tpr + 1 - fpr) / 2)
            if fpr <= 0.1:
                best_tpr = max(best_tpr, tpr)
        npt.assert_allclose(tpr_at_fpr(s, m, 0.1), best_tpr, rtol=1e-12)
        npt.assert_allclose(balanced_accuracy(s, m), best_acc, rtol=1e-12)


def test_batched_roc_metrics_in_blocks_equal_one_block(rng):
    from jaxmem.attacks.roc import roc_metrics

    s = np.round(rng.normal(size=(9, 70)), 1)
    m = rng.random((9, 70)) < 0.4
    s[2, m[2]] = np.nan   # undefined row
    s[4] = np.inf
    a = roc_metrics(s, m, (0.01, 0.2), return_counts=True)
    b = roc_metrics(s, m, (0.01, 0.2), return_counts=True, block_elems=70)
    for x, y in zip(a, b):
        npt.assert_array_equal(x, y)
    assert np.isnan(a[0][2]) and np.isnan(a[1][:, 2]).all()
    npt.assert_array_equal(a[2], (m & ~np.isnan(s)).sum(1))
    npt.assert_array_equal(a[3], (~m & ~np.isnan(s)).sum(1))
