"""Influence standard errors (Feldman & Zhang 2020, Eq. 2 with Welch-style errors) against float64 loops."""

import subprocess
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest

import jaxmem.estimators as E


def ref_influence_se(keep, test, mask):
    """Mean IN − mean OUT and sqrt(var_in/n_in + var_out/n_out) (ddof=1) by explicit loops."""
    m_models, n = keep.shape
    t = test.shape[1]
    infl, se = np.full((n, t), np.nan), np.full((n, t), np.nan)
    n_in, n_out = np.zeros(n, int), np.zeros(n, int)
    for i in range(n):
        ins = [m for m in range(m_models) if mask[m] and keep[m, i]]
        outs = [m for m in range(m_models) if mask[m] and not keep[m, i]]
        n_in[i], n_out[i] = len(ins), len(outs)
        for j in range(t):
            a = [float(test[m, j]) for m in ins]
            b = [float(test[m, j]) for m in outs]
            if a and b:
                infl[i, j] = sum(a) / len(a) - sum(b) / len(b)
            if len(a) > 1 and len(b) > 1:
                ma, mb = sum(a) / len(a), sum(b) / len(b)
                va = sum((v - ma) ** 2 for v in a) / (len(a) - 1)
                vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1)
                se[i, j] = np.sqrt(va / len(a) + vb / len(b))
    return infl, se, n_in, n_out


def design(rng, m, n, metric, dtype):
    """keep with a column of each edge case among the used models, a mask, a metric."""
    keep = rng.random((m, n)) < rng.uniform(0.3, 0.7)
    mask = rng.random(m) < 0.85
    mask[:5] = True
    used = np.flatnonzero(mask)
    keep[used, 0] = True  # no OUT model
    keep[used, 1] = False  # one IN model
    keep[used[0], 1] = True
    keep[used, 2] = True  # one OUT model
    keep[used[1], 2] = False
    keep[used, 3] = False  # two IN models: the smallest side with a stderr
    keep[used[:2], 3] = True
    keep[:, 4] = ~mask  # only masked-out models train on 4: no IN model among the used ones
    keep[used[2], 5:] = True  # the other columns are random but keep both sides (with few models,
    keep[used[3], 5:] = False  # chance alone could empty one and change the warning's count)
    if metric == "binary":
        test = (rng.random((m, rng.integers(1, 12))) < 0.6).astype(np.float64)
    else:  # real-valued with a large offset: the second moments must not cancel
        test = 50.0 + rng.normal(size=(m, rng.integers(1, 12))) * rng.uniform(0.1, 3.0)
    test[~mask] = np.nan  # masked-out models must not leak in (diverged)
    if dtype == "float32":
        test = test.astype(np.float32)
    return keep, test, mask


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("metric", ["binary", "real"])
@pytest.mark.parametrize("m,n,block", [(9, 7, (3, 2)), (25, 13, (4, 5)), (40, 20, (4096, 4096))])
def test_influence_stderr_matches_loops(rng, dtype, metric, m, n, block):
    keep, test, mask = design(rng, m, n, metric, dtype)
    keep_in = jnp.asarray(keep) if dtype == "float32" else keep
    with pytest.warns(E.InsufficientModelsWarning, match="2 of"):  # columns 0 and 4
        res = E.influence(keep_in, test, model_mask=mask, dtype=dtype, block=block, return_stderr=True)
    infl, se, n_in, n_out = ref_influence_se(keep, test.astype(np.float64), mask)
    assert isinstance(res, E.InfluenceResult)
    assert res.influence.dtype == np.dtype(dtype) and res.stderr.dtype == np.dtype(dtype)
    assert res.stderr.shape == infl.shape
    npt.assert_array_equal(res.n_in, n_in)
    npt.assert_array_equal(res.n_out, n_out)
    npt.assert_array_equal(np.isnan(res.stderr), np.isnan(se))
    assert np.isnan(res.stderr[[0, 1, 2, 4]]).all() and np.isnan(res.influence[[0, 4]]).all()
    assert np.isfinite(res.influence[[1, 2, 3]]).all()  # one model on a side: mean but no stderr
    assert np.isfinite(res.stderr[3]).all()
    # float32: the metric is rounded to float32 before both; the rest is float32 arithmetic on
    # centred values (an offset of 50 would cost 50·2^-24 in a plain one-pass sum of squares).
    rtol, atol = (1e-12, 1e-12) if dtype == "float64" else (2e-5, 2e-5)
    # Variances (stderr²), not stderrs: sqrt is not Lipschitz at 0. Where one side's metric is
    # constant (binary metric, few models) the moments leave a rounding residue of a few
    # eps·max(xc²) in the variance, so ~sqrt(eps) in the stderr (4.3e-9 for an exact 0 in float64:
    # the 9-model binary cases failed a stderr tolerance in ~3% of runs). Bound: 16 eps·max(xc²)
    # (the residue measured at most 1.8 eps·max(xc²) in 3600 runs); rtol doubles with the square.
    used = test[mask].astype(np.float64)
    scale2 = np.max((used - used.mean(0)) ** 2)
    npt.assert_allclose(res.stderr.astype(np.float64) ** 2, se**2, rtol=2 * rtol,
                        atol=16 * np.finfo(dtype).eps * scale2, equal_nan=True)
    npt.assert_allclose(res.influence, infl, rtol=rtol, atol=atol * 10, equal_nan=True)


def test_default_return_type_unchanged_and_stderr_agrees_with_memorization(rng):
    m, n = 30, 12
    keep = rng.random((m, n)) < 0.5
    keep[:2, :] = [[True], [False]]
    x = rng.normal(size=(m, n))
    for dtype in ("float64", "float32"):
        plain = E.influence(keep, x, dtype=dtype)
        assert type(plain) is np.ndarray and plain.shape == (n, n)
        res = E.influence(keep, x, dtype=dtype, return_stderr=True)
        tol = 1e-12 if dtype == "float64" else 1e-5
        npt.assert_allclose(res.influence, plain, rtol=tol, atol=tol)
        # the diagonal of influence on the training set itself is memorization (Eq. 1)
        mem = E.memorization(keep, x, dtype=dtype)
        npt.assert_allclose(np.diag(res.stderr), mem.stderr, rtol=tol, atol=tol)
        npt.assert_allclose(np.diag(res.influence), mem.mem, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stderr_memmap_and_top_k(rng, tmp_path, dtype):
    m, n, k = 30, 70, 4
    keep, test, mask = design(rng, m, n, "real", dtype)
    t = test.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        dense = E.influence(keep, test, model_mask=mask, dtype=dtype, return_stderr=True)
        mm = E.influence(keep, test, model_mask=mask, dtype=dtype, block=(16, 5),
                         out=tmp_path / "i.npy", stderr_out=tmp_path / "s.npy")  # stderr_out implies stderr
        only_se = E.influence(keep, test, model_mask=mask, dtype=dtype, block=(9, 7), stderr_out=tmp_path / "s2.npy")
        top = E.top_influencers(keep, test, k, model_mask=mask, dtype=dtype, block=(16, 5), return_stderr=True)
        bottom = E.top_influencers(keep, test, k, largest=False, model_mask=mask, dtype=dtype, return_stderr=True)
        plain_top = E.top_influencers(keep, test, k, model_mask=mask, dtype=dtype)
    assert isinstance(mm.influence, np.memmap) and isinstance(mm.stderr, np.memmap)
    assert type(only_se.influence) is np.ndarray and isinstance(only_se.stderr, np.memmap)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for r in (mm, only_se):
        npt.assert_allclose(np.asarray(r.influence), dense.influence, rtol=tol, atol=tol, equal_nan=True)
        npt.assert_allclose(np.asarray(r.stderr), dense.stderr, rtol=tol, atol=tol, equal_nan=True)
    npt.assert_allclose(np.load(tmp_path / "s.npy"), dense.stderr, rtol=tol, atol=tol, equal_nan=True)
    _, se, _, _ = ref_influence_se(keep, test.astype(np.float64), mask)
    assert plain_top.stderr is None
    for tk in (top, bottom):
        assert tk.stderr.shape == (t, k) and tk.stderr.dtype == np.dtype(dtype)
        want = np.take_along_axis(se.T, tk.indices, 1)
        npt.assert_allclose(tk.stderr, want, rtol=tol, atol=tol, equal_nan=True)
    # k larger than the number of finite rows: missing values and their stderr are NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        full = E.top_influencers(keep, test, n, model_mask=mask, dtype=dtype, return_stderr=True)
    assert np.isnan(full.values[:, -2:]).all() and np.isnan(full.stderr[:, -2:]).all()
    assert (full.indices[:, -2:] == -1).all() and (full.indices[:, :-2] >= 0).all()
    for j in range(t):   # the finite ones: every training example with a value, once each
        npt.assert_array_equal(np.sort(full.indices[j, :-2]), np.flatnonzero(np.isfinite(dense.influence[:, j])))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_leave_subset_out_stderr_nan_below_two_models(rng, dtype):
    m = 12
    gk = rng.random((m, 4)) < 0.5
    gk[:, 0] = False
    gk[5, 0] = True  # one model keeps group 0
    gk[:, 1] = True
    gk[2, 1] = False  # one model drops group 1
    gk[:4, 2:] = [[True], [False], [True], [False]]  # groups 2, 3: two models a side at least (chance
    # alone left one side with a single model in ~2.5e-3 of draws, seed 36)
    x = rng.normal(size=(m, 3)) + 20
    res = E.leave_subset_out(gk, x, dtype=dtype)
    assert np.isfinite(res.effect).all()
    assert np.isnan(res.stderr[:2]).all() and np.isfinite(res.stderr[2:]).all()
    _, se, _, _ = ref_influence_se(gk, x, np.ones(m, bool))
    npt.assert_allclose(res.stderr, se, rtol=1e-4, equal_nan=True)


_MEMORY_SCRIPT = """
import sys, time, numpy as np
import jaxmem.estimators as E
rng = np.random.default_rng(0)
M, N, T = 100, 16_000, 2_500
keep = rng.random((M, N)) < 0.5
test = (rng.normal(size=(M, T)) + 3).astype(np.float32)
E.influence(keep[:, :1024], test[:, :1024], block=(1024, 1024), return_stderr=True)  # compile
base = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])
t0 = time.perf_counter()
r = E.influence(keep, test, block=(1024, 1024), out=sys.argv[1] + "/i.npy", stderr_out=sys.argv[1] + "/s.npy")
secs = time.perf_counter() - t0
peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])
rows = rng.choice(N, 4, replace=False)
x = test.astype(np.float64)
err = 0.0
for i in rows:
    a, b = x[keep[:, i]], x[~keep[:, i]]
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    err = max(err, float(np.abs(np.asarray(r.stderr[i]) - se).max()))
print(secs, (peak - base) / 1024, err)
"""


def test_stderr_memmap_memory_bounded(tmp_path):
    """N=16,000 × T=2,500: influence + stderr are 320 MB as float32; peak RSS must grow far less."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    secs, growth_mb, err = map(float, proc.stdout.split())
    print(f"influence+stderr 16000x2500 M=100: {secs:.2f} s, peak RSS growth {growth_mb:.0f} MB, err {err:.1e}")
    assert err < 1e-5
    assert growth_mb < 160  # the two dense results would be 320 MB


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_top_influencers_break_ties_lowest_index_first(rng, dtype):
    """Exact ties (every example has 16 IN and 16 OUT models and a 0/1 metric, so each influence
    is a multiple of 1/16 whatever the summation order; duplicated keep columns add more): both
    paths pick and order tied entries lowest training index first, like a stable sort of the
    dense matrix, whatever the blocking."""
    m, n, t = 32, 300, 7
    keep = np.argsort(rng.random((m, n)), axis=0) < m // 2
    keep[:, rng.choice(n, 20)] = keep[:, rng.choice(n, 20)]
    test = (rng.random((m, t)) < 0.6).astype(np.float64)
    dense = np.asarray(E.influence(keep, test, dtype=dtype))
    npt.assert_array_equal(dense * 16, np.round(dense * 16))     # exact: ties are real ties
    want = np.argsort(-dense.T, axis=1, kind="stable")
    for k, block in [(1, (7, 4)), (5, (64, 3)), (9, (4096, 4096)), (12, (299, 7))]:
        got = E.top_influencers(keep, test, k, dtype=dtype, block=block)
        npt.assert_array_equal(got.indices, want[:, :k])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_masked_out_models_with_nan_metrics_do_not_leak(rng, dtype):
    """A diverged model's metric may be NaN: with model_mask it must not reach any influence
    (the plain, non-stderr path multiplied it by a zero weight: 0 · NaN = NaN everywhere)."""
    m, n = 30, 50
    keep, test, mask = design(rng, m, n, "binary", dtype)
    infl, _, _, _ = ref_influence_se(keep, test.astype(np.float64), mask)
    tol = 1e-12 if dtype == "float64" else 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        for block in [(7, 3), (4096, 4096)]:
            got = E.influence(keep, test, model_mask=mask, dtype=dtype, block=block)
            npt.assert_allclose(got, infl, rtol=tol, atol=tol, equal_nan=True)
            top = E.top_influencers(keep, test, 3, model_mask=mask, dtype=dtype, block=block)
            want = -np.sort(-np.nan_to_num(infl.T, nan=-np.inf), axis=1)[:, :3]
            npt.assert_allclose(top.values, want, rtol=tol, atol=tol)
