"""jaxmem.estimators.label_noise against float64 loops and brute force; cleanlab when installed."""

import os
import sys

import numpy as np
import pytest

from jaxmem.analyses.label_noise import noise_auroc
from jaxmem.estimators import InsufficientModelsWarning
from jaxmem.estimators import label_noise as L
from jaxmem.estimators.proxies import UndefinedProxyWarning


def test_flag_precision_recall_counts_and_edge_cases(rng):
    n = 100
    flipped = rng.random(n) < 0.2
    flagged = rng.random(n) < 0.3
    tp = sum(1 for i in range(n) if flagged[i] and flipped[i])
    r = L.flag_precision_recall(flagged, flipped)
    assert r.precision == tp / flagged.sum() and r.recall == tp / flipped.sum()
    assert r.f1 == pytest.approx(2 * r.precision * r.recall / (r.precision + r.recall))
    assert (r.num_flagged, r.num_flipped, r.num_true_positive) == (flagged.sum(), flipped.sum(), tp)
    assert L.flag_precision_recall(np.flatnonzero(flagged), flipped) == r  # indices work too
    with pytest.warns(UndefinedProxyWarning, match="nothing is flagged"):
        r0 = L.flag_precision_recall(np.zeros(n, bool), flipped)
    assert np.isnan(r0.precision) and r0.recall == 0.0 and np.isnan(r0.f1)
    with pytest.warns(UndefinedProxyWarning, match="no label is flipped"):
        rn = L.flag_precision_recall(flagged, np.zeros(n, bool))
    assert rn.precision == 0.0 and np.isnan(rn.recall)
    ra = L.flag_precision_recall(flagged, np.ones(n, bool))  # all flipped
    assert ra.precision == 1.0 and ra.recall == flagged.mean()
    with pytest.raises(ValueError, match="indices"):
        L.flag_precision_recall([n], flipped)


def test_flag_top_k_ties_and_nan():
    s = np.array([0.1, 0.9, 0.5, 0.5, np.nan, 0.2])
    np.testing.assert_array_equal(L.flag_top_k(s, 1), [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(L.flag_top_k(s, 2), [0, 1, 1, 1, 0, 0])  # the tie is flagged whole
    np.testing.assert_array_equal(L.flag_top_k(s, 5), [1, 1, 1, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        L.flag_top_k(s, 6)


def _oos_loop(logits, keep, models):
    _, n, c = logits.shape
    out = np.full((n, c), np.nan)
    for i in range(n):
        rows = []
        for a in models:
            if keep[a, i]:
                continue
            z = [float(v) for v in logits[a, i]]
            if not all(np.isfinite(z)):
                continue
            mx = max(z)
            e = [np.exp(v - mx) for v in z]
            rows.append([v / sum(e) for v in e])
        if rows:
            out[i] = [sum(r[j] for r in rows) / len(rows) for j in range(c)]
    return out


def test_out_of_sample_probs_matches_loop_streamed(rng, tmp_path):
    m, n, c = 7, 30, 4
    logits = rng.normal(scale=3, size=(m, n, c)).astype(np.float16)
    keep = rng.random((m, n)) < 0.5
    keep[0] = False  # every example has an OUT model ...
    keep[:, 0] = True  # ... but example 0
    ref = _oos_loop(logits, keep, range(m))
    for block in (1, 3, None):
        with pytest.warns(InsufficientModelsWarning, match="1 of 30"):
            got = L.out_of_sample_probs(logits, keep, block_models=block)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    assert np.isnan(got[0]).all()
    np.testing.assert_allclose(got[1:].sum(1), 1.0, rtol=1e-12)
    # a memmap of stored logits, and probabilities instead of logits
    mm = np.lib.format.open_memmap(tmp_path / "logits.npy", mode="w+", dtype=np.float16, shape=logits.shape)
    mm[:] = logits
    mm.flush()
    keep[:, 0] = False
    ref = _oos_loop(logits, keep, range(m))
    np.testing.assert_allclose(
        L.out_of_sample_probs(np.load(tmp_path / "logits.npy", mmap_mode="r"), keep, block_models=2), ref, rtol=1e-12
    )
    z = logits.astype(np.float64)
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(L.out_of_sample_probs(probs, keep, from_logits=False), ref, rtol=1e-12)


def test_out_of_sample_probs_diverged_model(rng):
    m, n, c = 4, 10, 3
    logits = rng.normal(size=(m, n, c))
    keep = np.zeros((m, n), bool)
    logits[2] = np.nan
    with pytest.warns(UndefinedProxyWarning, match="non-finite"):
        got = L.out_of_sample_probs(logits, keep)
    np.testing.assert_allclose(got, _oos_loop(logits, keep, [0, 1, 3]), rtol=1e-12)
    np.testing.assert_allclose(L.out_of_sample_probs(logits, keep, model_mask=[1, 1, 0, 1]), got, rtol=1e-12)
    with pytest.raises(ValueError, match="keep must be"):
        L.out_of_sample_probs(logits, keep[:, :5])


def _needs_cleanlab():
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("cleanlab is not installed (it belongs to the test extra)")
        pytest.skip("cleanlab is not installed (pip install cleanlab)")


def _noisy_problem(rng, n=600, c=4, noise=0.15):
    """Out-of-sample probabilities of a decent classifier of the TRUE labels, and noisy labels."""
    true = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), true] += 3.0
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    flipped = rng.random(n) < noise
    given = true.copy()
    given[flipped] = (true[flipped] + rng.integers(1, c, flipped.sum())) % c
    return p, given, flipped


def test_cleanlab_flags_and_scores(rng):
    _needs_cleanlab()
    import cleanlab.filter
    import cleanlab.rank

    p, given, flipped = _noisy_problem(rng)
    flags = L.cleanlab_flags(p, given)
    np.testing.assert_array_equal(flags, cleanlab.filter.find_label_issues(labels=given, pred_probs=p, n_jobs=1))
    pr = L.flag_precision_recall(flags, flipped)
    assert pr.precision > 0.7 and pr.recall > 0.7, pr
    both = L.cleanlab_flags(p, given, filter_by="both")
    np.testing.assert_array_equal(
        both, cleanlab.filter.find_label_issues(labels=given, pred_probs=p, filter_by="both", n_jobs=1)
    )
    s = L.cleanlab_scores(p, given)
    np.testing.assert_allclose(s, [1 - p[i, given[i]] for i in range(len(given))], rtol=1e-12)
    assert noise_auroc(s, flipped) > 0.9
    s2 = L.cleanlab_scores(p, given, method="normalized_margin")
    np.testing.assert_allclose(
        s2, 1 - cleanlab.rank.get_label_quality_scores(given, p, method="normalized_margin"), rtol=1e-12
    )


def test_cleanlab_input_errors_and_missing_dependency(rng, monkeypatch):
    p, given, _ = _noisy_problem(rng, n=50)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        L._check_pred_probs(p, given + 1)  # labels 1..C
    bad = p.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="1 rows with NaN"):
        L._check_pred_probs(bad, given)
    with pytest.raises(ValueError, match="summing to 1"):
        L._check_pred_probs(p * 2, given)
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    with pytest.raises(ImportError, match=r"jaxmem\[cleanlab\]"):
        L.cleanlab_flags(p, given)


def test_out_of_sample_votes_match_a_loop(rng):
    """Votes of the OUT models' argmax, as a loop; diverged rows left out; no OUT model: zeros."""
    m, n, c = 7, 40, 4
    z = rng.normal(size=(m, n, c)).astype(np.float16)
    z[2, :, 1] = z[2, :, 0]                     # ties: the first maximum wins
    keep = rng.random((m, n)) < 0.5
    keep[:, 0] = True                          # example 0: no OUT model
    z[5, 3] = np.nan                           # one diverged (model, example) row
    ref = np.zeros((n, c), int)
    for a in range(m):
        for i in range(n):
            if not keep[a, i] and np.isfinite(z[a, i]).all():
                ref[i, int(np.argmax(z[a, i]))] += 1
    with pytest.warns(InsufficientModelsWarning, match="no OUT model"):
        got = L.out_of_sample_votes(z, keep, block_models=3)
    if not keep[5, 3]:
        with pytest.warns(UndefinedProxyWarning, match="non-finite"):
            L.out_of_sample_votes(z, keep)
    np.testing.assert_array_equal(got, ref)
    assert got[0].sum() == 0
    mask = np.ones(m, bool)
    mask[5] = False
    with pytest.warns(InsufficientModelsWarning):
        masked = L.out_of_sample_votes(z, keep, model_mask=mask)
    ref5 = ref.copy()
    for i in range(n):
        if not keep[5, i] and np.isfinite(z[5, i]).all():
            ref5[i, int(np.argmax(z[5, i]))] -= 1
    np.testing.assert_array_equal(masked, ref5)
    with pytest.raises(ValueError, match="keep"):
        L.out_of_sample_votes(z, keep[:, :5])
