"""jaxmem.estimators.proxies against float64 references written as plain loops."""

import warnings

import numpy as np
import pytest

from jaxmem.estimators import forgetting_events
from jaxmem.estimators import proxies as P
from jaxmem.estimators.proxies import UndefinedProxyWarning


def _dyn(rng, m, e, n):
    """Random records: correct [M, E, N] bool, p_true, loss, margins [M, E, N] float32."""
    correct = rng.random((m, e, n)) < 0.6
    p = rng.random((m, e, n)).astype(np.float32)
    loss = (-np.log(np.clip(p, 1e-6, 1))).astype(np.float32)
    margins = rng.normal(scale=2, size=(m, e, n)).astype(np.float32)
    return correct, p, loss, margins


def _loop_reduce(x, fn):
    """Apply fn to every example's list of per-epoch values, in float64 Python."""
    m, e, n = x.shape
    out = np.empty((m, n))
    for a in range(m):
        for i in range(n):
            out[a, i] = fn([float(x[a, t, i]) for t in range(e)])
    return out


def _mean(v):
    return sum(v) / len(v)


def _pstd(v):
    mu = _mean(v)
    return (sum((t - mu) ** 2 for t in v) / len(v)) ** 0.5


def _forget_loop(v):
    """Toneva et al.: 1→0 transitions; never learned counts len(v)."""
    if not any(v):
        return len(v)
    return sum(1 for t in range(len(v) - 1) if v[t] and not v[t + 1])


@pytest.mark.parametrize("e", [1, 7])
def test_epoch_statistics_match_loops(rng, e):
    m, n = 3, 40
    correct, p, loss, margins = _dyn(rng, m, e, n)
    np.testing.assert_allclose(P.cumulative_accuracy(correct), _loop_reduce(correct, _mean), rtol=1e-15)
    np.testing.assert_allclose(P.cumulative_confidence(p), _loop_reduce(p, _mean), rtol=1e-12)
    np.testing.assert_allclose(P.cumulative_sample_loss(loss), _loop_reduce(loss, sum), rtol=1e-12)
    np.testing.assert_allclose(P.aum(margins), _loop_reduce(margins, _mean), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P.curvature_proxy(np.abs(margins)), _loop_reduce(np.abs(margins), _mean), rtol=1e-12)
    np.testing.assert_array_equal(P.forgetting(correct), _loop_reduce(correct, _forget_loop))
    np.testing.assert_array_equal(P.forgetting(correct), forgetting_events(correct).forgetting)
    carto = P.cartography(p, correct)
    np.testing.assert_allclose(carto.confidence, _loop_reduce(p, _mean), rtol=1e-12)
    np.testing.assert_allclose(carto.variability, _loop_reduce(p, _pstd), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(carto.correctness, _loop_reduce(correct, _mean), rtol=1e-15)
    if e == 1:
        np.testing.assert_array_equal(carto.variability, 0.0)
    if e > 2:
        np.testing.assert_allclose(P.aum(margins, start=2), _loop_reduce(margins[:, 2:], _mean), rtol=1e-12, atol=1e-15)
    # one model given as [E, N]: the same numbers without the model axis
    np.testing.assert_allclose(P.cumulative_sample_loss(loss[1]), P.cumulative_sample_loss(loss)[1], rtol=1e-15)
    np.testing.assert_array_equal(P.forgetting(correct[0]), P.forgetting(correct)[0])
    # a stack of one model
    np.testing.assert_allclose(P.aum(margins[:1]), P.aum(margins)[:1], rtol=1e-15)
    # int 0/1 and float records of correctness read the same
    np.testing.assert_array_equal(P.cumulative_accuracy(correct.astype(np.int8)), P.cumulative_accuracy(correct))


def test_blocking_memmap_and_jax_inputs(rng, tmp_path, monkeypatch):
    """Blocked float64 reductions over a memmap (or a JAX array) equal the unblocked result."""
    import jax.numpy as jnp

    _, p, loss, _ = _dyn(rng, 2, 5, 1000)
    mm = np.lib.format.open_memmap(tmp_path / "loss.npy", mode="w+", dtype=np.float16, shape=loss.shape)
    mm[:] = loss
    mm.flush()
    full = P.cumulative_sample_loss(np.asarray(mm))
    monkeypatch.setattr(P, "_BLOCK", 77)
    np.testing.assert_allclose(
        P.cumulative_sample_loss(np.load(tmp_path / "loss.npy", mmap_mode="r")), full, rtol=1e-15
    )
    np.testing.assert_allclose(P.cartography_variability(jnp.asarray(p)), _loop_reduce(p, _pstd), rtol=1e-9, atol=1e-12)


def test_nan_records_from_a_diverged_model(rng):
    """A diverged model's NaN records give NaN for that model only, with a warning."""
    m, e, n = 3, 4, 20
    correct, p, loss, margins = _dyn(rng, m, e, n)
    loss[1, 2:] = np.nan
    margins[1, 2:] = np.nan
    p[1, 2:] = np.nan
    cf = correct.astype(np.float32)
    cf[1, 2:] = np.nan
    for fn, x in [
        (P.cumulative_sample_loss, loss),
        (P.aum, margins),
        (P.cumulative_confidence, p),
        (P.cartography_variability, p),
        (P.cumulative_accuracy, cf),
        (P.forgetting, cf),
    ]:
        with pytest.warns(UndefinedProxyWarning, match="NaN"):
            out = fn(x)
        assert np.isnan(out[1]).all()
        assert np.isfinite(out[[0, 2]]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.cumulative_sample_loss(loss[[0, 2]])  # no NaN, no warning


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match=r"\[E, N\] or \[M, E, N\]"):
        P.cumulative_sample_loss(np.zeros(5))
    with pytest.raises(ValueError, match="start"):
        P.aum(np.zeros((3, 4)), start=3)
    with pytest.raises(ValueError, match="same shape"):
        P.cartography(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown proxy"):
        P.memorization_score("nope", np.zeros((2, 3)))


def test_aum_flags_match_reference_definition(rng):
    n, t = 200, 37
    a = rng.normal(size=n)
    a[:5] = np.nan
    thr = rng.normal(loc=-1, size=t)
    a[5:10] = thr[:5]  # exact ties with threshold AUMs
    for pct in (99.0, 90.0, 50.0, 100.0):
        with pytest.warns(UndefinedProxyWarning, match="NaN"):
            got = P.aum_flags(a, thr, percentile=pct)
        ref = np.zeros(n, bool)
        for i in range(n):
            if np.isnan(a[i]):
                continue
            frac = sum(1 for j in range(t) if a[i] < thr[j]) / t  # asappresearch/aum AUM_WTR
            ref[i] = frac > 1 - pct / 100
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="threshold_aum"):
        P.aum_flags(a, [])


def _vog_loop(g):
    """g [K, N, P]: mean over pixels of sqrt((1/K) Σ_t (g_t − mean)²) per example."""
    k, n, p = g.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for q in range(p):
            vals = [float(g[t, i, q]) for t in range(k)]
            acc += _pstd(vals)
        out[i] = acc / p
    return out


def _class_norm_loop(s, labels):
    out = np.empty(len(s))
    for i in range(len(s)):
        grp = [s[j] for j in range(len(s)) if labels[j] == labels[i]]
        out[i] = (s[i] - _mean(grp)) / _pstd(grp)
    return out


def test_vog_raw_and_class_normalized_match_loops(rng):
    import jax
    import jax.numpy as jnp

    from jaxmem.train import records

    m, k, n, h, w = 2, 5, 30, 3, 4
    g = rng.normal(size=(m, k, n, h, w)).astype(np.float32) * rng.random((1, 1, n, 1, 1)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    ref = np.stack([_vog_loop(g[a].reshape(k, n, h * w)) for a in range(m)])
    np.testing.assert_allclose(P.vog(g, pixel_ndim=2), ref, rtol=1e-9)
    np.testing.assert_allclose(P.vog(g[1].reshape(k, n, h * w)), ref[1], rtol=1e-9)
    refn = np.stack([_class_norm_loop(ref[a], labels) for a in range(m)])
    np.testing.assert_allclose(P.vog(g, pixel_ndim=2, labels=labels, normalize=True), refn, rtol=1e-8, atol=1e-12)
    # the running (Welford) state of jaxmem.train.records gives the same VoG
    state = records.vog_init((n, h, w))
    for t in range(k):
        state = jax.jit(records.vog_update)(state, jnp.asarray(g[0, t]))
    np.testing.assert_allclose(P.vog_from_moments(state.m2, state.count, pixel_ndim=2), ref[0], rtol=1e-4)
    m2 = np.stack([np.asarray(state.m2)] * 2)  # [M, N, H, W], reduced in blocks of examples
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "_BLOCK", 25)
        np.testing.assert_allclose(P.vog_from_moments(m2, k, pixel_ndim=2)[1], ref[0], rtol=1e-4)
        np.testing.assert_allclose(P.vog(g, pixel_ndim=2), ref, rtol=1e-9)
    # one checkpoint: every VoG is 0, and class normalization is undefined (NaN, warning)
    np.testing.assert_array_equal(P.vog(g[0, :1], pixel_ndim=2), 0.0)
    with pytest.warns(UndefinedProxyWarning, match="zero spread"):
        out = P.vog(g[0, :1], pixel_ndim=2, labels=labels, normalize=True)
    assert np.isnan(out).all()
    with pytest.raises(ValueError, match="labels"):
        P.vog(g, pixel_ndim=2, normalize=True)


def test_class_normalize_single_example_class_and_nan(rng):
    s = rng.normal(size=12)
    labels = np.array([0] * 5 + [1] * 6 + [2])  # class 2 has one example
    s[0] = np.nan
    with pytest.warns(UndefinedProxyWarning, match=r"classes \[2\]"):
        out = P.class_normalize(s, labels)
    assert np.isnan(out[11]) and np.isnan(out[0])
    ref1 = _class_norm_loop(s[5:11], labels[5:11])
    np.testing.assert_allclose(out[5:11], ref1, rtol=1e-12)
    ref0 = _class_norm_loop(s[1:5], labels[1:5])  # NaN left out of class 0's statistics
    np.testing.assert_allclose(out[1:5], ref0, rtol=1e-12)


def test_memorization_score_signs(rng):
    correct, p, loss, margins = _dyn(rng, 2, 6, 15)
    np.testing.assert_array_equal(P.memorization_score("aum", margins), -P.aum(margins))
    np.testing.assert_array_equal(P.memorization_score("cumulative_accuracy", correct), -P.cumulative_accuracy(correct))
    np.testing.assert_array_equal(P.memorization_score("cumulative_sample_loss", loss), P.cumulative_sample_loss(loss))
    np.testing.assert_array_equal(
        P.memorization_score("cartography_variability", p), P.cartography(p, correct).variability
    )
    assert {s.sign for s in P.PROXIES.values()} == {-1, 1}
    # a model that learns example 0 late and example 1 early: every oriented proxy ranks 0 higher
    e = 10
    c = np.zeros((e, 2), bool)
    c[8:, 0] = True
    c[1:, 1] = True
    pt = np.where(c, 0.9, 0.1).astype(np.float32)
    mg = np.where(c, 2.0, -2.0)
    lo = -np.log(pt)
    for name, rec in [
        ("cumulative_accuracy", c),
        ("cumulative_confidence", pt),
        ("aum", mg),
        ("cumulative_sample_loss", lo),
        ("forgetting", c),
    ]:
        s = P.memorization_score(name, rec)
        assert s[0] >= s[1], name
