"""Tests for jaxmem.estimators against independent float64 references (explicit loops, scipy)."""

import subprocess
import sys
import warnings

import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest
import scipy.stats

import jaxmem.estimators as E

# ---------------------------------------------------------------- independent references


def _mean_var(values):
    n = len(values)
    if n == 0:
        return np.nan, np.nan
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else np.nan
    return mean, var


def ref_memorization(keep, metric, mask):
    m_models, n = keep.shape
    mem, se, n_in, n_out = (np.full(n, np.nan) for _ in range(4))
    for i in range(n):
        ins = [float(metric[m, i]) for m in range(m_models) if mask[m] and keep[m, i]]
        outs = [float(metric[m, i]) for m in range(m_models) if mask[m] and not keep[m, i]]
        (mi, vi), (mo, vo) = _mean_var(ins), _mean_var(outs)
        mem[i] = mi - mo
        se[i] = np.sqrt(vi / len(ins) + vo / len(outs)) if ins and outs else np.nan
        n_in[i], n_out[i] = len(ins), len(outs)
    return mem, se, n_in, n_out


def ref_influence(keep, test, mask):
    m_models, n = keep.shape
    out = np.full((n, test.shape[1]), np.nan)
    for i in range(n):
        for j in range(test.shape[1]):
            ins = [test[m, j] for m in range(m_models) if mask[m] and keep[m, i]]
            outs = [test[m, j] for m in range(m_models) if mask[m] and not keep[m, i]]
            if ins and outs:
                out[i, j] = sum(ins) / len(ins) - sum(outs) / len(outs)
    return out


def ref_forgetting(acc):
    """acc [E, N] 0/1 -> forgetting, first learned, unforgettable, by hand."""
    e_count, n = acc.shape
    forg, first, unf = np.zeros(n, int), np.full(n, -1), np.zeros(n, bool)
    for i in range(n):
        count = 0
        for e in range(e_count):
            if acc[e, i] and first[i] < 0:
                first[i] = e
            if e > 0 and acc[e - 1, i] and not acc[e, i]:
                count += 1
        forg[i] = count if first[i] >= 0 else e_count
        unf[i] = first[i] >= 0 and count == 0
    return forg, first, unf


def _design(rng, m, n, p=0.5):
    keep = rng.random((m, n)) < p
    return keep


def _as(kind, a):
    return jnp.asarray(a) if kind == "jax" else a


# ---------------------------------------------------------------- memorization


@pytest.mark.parametrize("shape,block", [((7, 13), None), ((40, 101), None), ((64, 600), 128), ((33, 257), 64)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("masked", [False, True])
def test_memorization_matches_loop_reference(rng, shape, block, dtype, masked):
    m, n = shape
    keep = _design(rng, m, n)
    correct = (rng.random((m, n)) < rng.random(n)).astype(np.float64)
    mask = rng.random(m) < 0.8 if masked else np.ones(m, bool)
    if masked:
        correct[~mask] = np.nan  # diverged models: their metric must never leak in
    inputs = (keep, correct) if dtype == "float64" else (jnp.asarray(keep), jnp.asarray(correct, jnp.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        res = E.memorization(*inputs, model_mask=mask if masked else None, block=block)
    mem, se, n_in, n_out = ref_memorization(keep, correct, mask)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    assert isinstance(res.mem, np.ndarray) and res.mem.dtype == np.dtype(dtype)
    npt.assert_allclose(res.mem, mem, equal_nan=True, **tol)
    npt.assert_allclose(res.stderr, se, equal_nan=True, **tol)
    npt.assert_array_equal(res.n_in, n_in)
    npt.assert_array_equal(res.n_out, n_out)


@pytest.mark.parametrize("dtype", [None, "float32"])
@pytest.mark.parametrize("offset", [0.0, 1000.0])  # a large offset: variances must not cancel in float32
def test_counterfactual_memorization_real_metric(rng, dtype, offset):
    m, n = 50, 80
    keep = _design(rng, m, n)
    neg_loss = offset - rng.gamma(2.0, 1.5, (m, n)) + 0.7 * keep
    res = E.counterfactual_memorization(keep, neg_loss, dtype=dtype)
    mem, se, _, _ = ref_memorization(keep, neg_loss, np.ones(m, bool))
    tol = 1e-12 if dtype is None else 2e-5 * (1 + offset)
    npt.assert_allclose(res.mem, mem, atol=tol)
    npt.assert_allclose(res.stderr, se, rtol=1e-12 if dtype is None else 1e-4)


def test_memorization_nan_and_warning(rng):
    keep = _design(rng, 12, 30)
    keep[0], keep[1] = True, False  # every other example has an IN and an OUT model
    keep[:, 3] = True
    keep[:, 7] = False
    keep[:, 9] = False
    correct = rng.random((12, 30)) < 0.6
    with pytest.warns(E.InsufficientModelsWarning, match="3 of 30"):
        res = E.memorization(keep, correct)
    assert np.isnan(res.mem[[3, 7, 9]]).all() and np.isnan(res.stderr[[3, 7, 9]]).all()
    assert np.isfinite(np.delete(res.mem, [3, 7, 9])).all()
    # a model mask that removes every OUT model of example 0 makes it NaN too
    keep2 = _design(rng, 10, 5)
    keep2[:5, 1:] = (np.arange(5) % 2 == 0)[:, None]  # examples 1-4: IN and OUT among models 0-4
    keep2[:5, 0] = True  # example 0: its OUT models are all masked out
    keep2[5:, 0] = False
    with pytest.warns(E.InsufficientModelsWarning, match="1 of 5"):
        r2 = E.memorization(keep2, rng.random((10, 5)), model_mask=np.arange(10) < 5)
    assert np.isnan(r2.mem[0]) and np.isfinite(r2.mem[1:]).all()


def test_memorization_null_and_planted_effect(rng):
    m, n = 200, 2000
    keep = _design(rng, m, n)
    p = rng.random(n)
    correct = (rng.random((m, n)) < p).astype(np.float64)  # independent of membership
    res = E.memorization(keep, correct)
    # mean over independent examples: |mean| within 5 standard errors of that mean (this z has
    # sd 1.008 over 2000 simulated designs: P(|z| > 5) ~ 7e-7 per run; 4 gave ~7e-5)
    assert abs(res.mem.mean()) < 5 * np.sqrt(np.sum(res.stderr**2)) / n
    planted = rng.random(n) < 0.2
    p_in = np.where(planted, np.minimum(p + 0.4, 1.0), p)
    correct = np.where(keep, rng.random((m, n)) < p_in, rng.random((m, n)) < p).astype(np.float64)
    res = E.memorization(keep, correct, dtype="float32")
    truth = p_in - p
    z = (res.mem - truth) / np.maximum(res.stderr, 1e-3)
    assert np.mean(np.abs(z) < 3) > 0.97
    assert res.mem[planted].mean() > 0.25 and abs(res.mem[~planted].mean()) < 0.02


# ---------------------------------------------------------------- influence


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,block", [((20, 15, 9), (4, 4)), ((31, 8, 12), (3, 5)), ((12, 6, 5), (4096, 4096))])
def test_influence_brute_force(rng, dtype, shape, block):
    m, n, t = shape
    keep = _design(rng, m, n)
    keep[0], keep[1] = True, False  # every example has an IN and an OUT model ...
    keep[:, 0] = True  # ... except example 0 (no OUT model: NaN row)
    test = (rng.random((m, t)) < 0.5).astype(np.float64)
    mask = rng.random(m) < 0.9
    mask[:2] = True
    kw = dict(model_mask=mask, block=block, dtype=dtype)
    with pytest.warns(E.InsufficientModelsWarning, match="1 of"):
        got = E.influence(_as("jax" if dtype == "float32" else "np", keep), test, **kw)
    want = ref_influence(keep, test, mask)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert got.shape == (n, t) and got.dtype == np.dtype(dtype)
    npt.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_influence_memmap_and_top_k_agree_with_dense(rng, tmp_path, dtype):
    m, n, t, k = 40, 300, 50, 7
    keep = _design(rng, m, n)
    keep[:, [5, 17]] = True  # NaN rows: never chosen
    test = rng.normal(size=(m, t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        dense = E.influence(keep, test, dtype=dtype)
        mm = E.influence(keep, test, dtype=dtype, block=(64, 16), out=tmp_path / "infl.npy")
        top = E.top_influencers(keep, test, k, dtype=dtype, block=(64, 16))
        bottom = E.top_influencers(keep, test, k, largest=False, dtype=dtype, block=(37, 11))
    assert isinstance(mm, np.memmap)
    npt.assert_allclose(np.asarray(mm), dense, rtol=1e-6, atol=1e-6, equal_nan=True)
    npt.assert_allclose(np.load(tmp_path / "infl.npy"), dense, rtol=1e-6, atol=1e-6, equal_nan=True)
    filled = np.where(np.isnan(dense), -np.inf, dense)
    want_idx = np.argsort(-filled, axis=0, kind="stable")[:k].T
    npt.assert_array_equal(top.indices, want_idx)
    npt.assert_allclose(top.values, np.take_along_axis(dense.T, want_idx, 1), rtol=1e-6)
    filled = np.where(np.isnan(dense), np.inf, dense)
    want_idx = np.argsort(filled, axis=0, kind="stable")[:k].T
    npt.assert_array_equal(bottom.indices, want_idx)
    npt.assert_allclose(bottom.values, np.take_along_axis(dense.T, want_idx, 1), rtol=1e-6)
    assert not np.isin(top.indices, [5, 17]).any()


_MEMORY_SCRIPT = """
import resource, sys, time, numpy as np
import jaxmem.estimators as E
rng = np.random.default_rng(0)
M, N, T = 200, 20_000, 5_000
keep = rng.random((M, N)) < 0.5
test = (rng.random((M, T)) < 0.7).astype(np.float32)
E.influence(keep[:, :50], test[:, :50], block=(2048, 2048))  # warm up imports/compilation
base = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])
t0 = time.perf_counter()
out = E.influence(keep, test, block=(2048, 2048), out=sys.argv[1])
secs = time.perf_counter() - t0
peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])
rows = rng.choice(N, 5, replace=False)
kin = keep[:, rows].T.astype(np.float64)
ref = (kin @ test) / kin.sum(1, keepdims=True) - ((1 - kin) @ test) / (1 - kin).sum(1, keepdims=True)
err = float(np.abs(np.asarray(out[rows]) - ref).max())
print(secs, (peak - base) / 1024, err)
"""


def test_influence_memmap_memory_bounded(tmp_path):
    """N=20,000 × T=5,000 (400 MB float32 result), M=200: peak RSS grows far less than the result."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "big.npy")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    secs, peak_growth_mb, err = map(float, proc.stdout.split())
    print(f"influence 20000x5000 M=200: {secs:.2f} s, peak RSS growth {peak_growth_mb:.0f} MB, err {err:.1e}")
    assert err < 1e-5
    assert peak_growth_mb < 250  # the dense result alone would be 400 MB (speed: benchmarks/)


# ---------------------------------------------------------------- C-score


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cscore_matches_loop_reference(rng, dtype):
    m, n = 60, 90
    ratio = rng.choice([0.1, 0.5, 0.9], m)
    keep = rng.random((m, n)) < ratio[:, None]
    keep[ratio == 0.9, 4] = True  # no hold-out model at ratio 0.9 for example 4
    correct = (rng.random((m, n)) < 0.7).astype(np.float64)
    mask = rng.random(m) < 0.9
    with pytest.warns(E.InsufficientModelsWarning, match="hold-out model at some ratio"):
        res = E.cscore(keep, correct, ratio, model_mask=mask, dtype=dtype)
    ratios = sorted(set(ratio[mask].tolist()))
    npt.assert_array_equal(res.ratios, ratios)
    table = np.full((len(ratios), n), np.nan)
    for r, rv in enumerate(ratios):
        for i in range(n):
            outs = [correct[mm, i] for mm in range(m) if mask[mm] and ratio[mm] == rv and not keep[mm, i]]
            if outs:
                table[r, i] = sum(outs) / len(outs)
    score = np.array([np.mean([v for v in table[:, i] if not np.isnan(v)]) for i in range(n)])
    tol = 1e-12 if dtype == "float64" else 1e-6
    npt.assert_allclose(res.per_ratio, table, rtol=tol, atol=tol, equal_nan=True)
    npt.assert_allclose(res.score, score, rtol=tol, atol=tol)


# ---------------------------------------------------------------- leave-subset-out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_leave_subset_out_matches_loops_and_planted_effect(rng, dtype):
    m, g, n, k = 300, 6, 50, 4
    gk = rng.random((m, g)) < 0.5
    ids = rng.integers(0, g, n)
    ids[:g] = np.arange(g)  # every group present
    keep = gk[:, ids]
    found = E.group_keep_from_ids(keep, ids * 10 + 3)
    npt.assert_array_equal(found.groups, np.arange(g) * 10 + 3)
    npt.assert_array_equal(found.group_keep, gk)
    metric = rng.normal(size=(m, k)) + 100.0  # large offset: variances must not cancel
    metric[:, 1] += 1.0 * gk[:, 2]  # planted effect of group 2 on column 1
    mask = rng.random(m) < 0.95
    res = E.leave_subset_out(found.group_keep, metric, model_mask=mask, dtype=dtype, block=3)
    eff, se = np.zeros((g, k)), np.zeros((g, k))
    for gi in range(g):
        for j in range(k):
            mi, vi = _mean_var([metric[mm, j] for mm in range(m) if mask[mm] and gk[mm, gi]])
            mo, vo = _mean_var([metric[mm, j] for mm in range(m) if mask[mm] and not gk[mm, gi]])
            eff[gi, j] = mi - mo
            se[gi, j] = np.sqrt(vi / (gk[mask, gi]).sum() + vo / (~gk[mask, gi]).sum())
    tol = 1e-10 if dtype == "float64" else 2e-4
    npt.assert_allclose(res.effect, eff, rtol=tol, atol=tol)
    npt.assert_allclose(res.stderr, se, rtol=tol, atol=tol)
    npt.assert_array_equal(res.n_in, (gk & mask[:, None]).sum(0))
    # stderr ~0.12 (about 140 models a side): within 5 stderr of the planted 1.0 fails by chance with
    # P ~ 1e-6 (t, 280 df; 4 stderr of a planted 0.5 gave ~8e-5 per dtype), and an effect of 0 still fails
    assert abs(res.effect[2, 1] - 1.0) < 5 * res.stderr[2, 1]
    one = E.leave_subset_out(found.group_keep, metric[:, 1], model_mask=mask, dtype=dtype)
    npt.assert_allclose(one.effect, res.effect[:, 1], rtol=1e-5)


def test_group_keep_from_ids_rejects_split_groups(rng):
    gk = rng.random((10, 3)) < 0.5
    ids = np.array([0, 0, 1, 1, 1, 2])
    keep = gk[:, ids]
    keep[4, 1] = ~keep[4, 1]
    with pytest.raises(ValueError, match="1 \\(model, group\\) pairs"):
        E.group_keep_from_ids(keep, ids)


# ---------------------------------------------------------------- forgetting


@pytest.mark.parametrize("shape,block", [((9, 40), None), ((3, 7, 25), None), ((5, 12, 300), 64)])
def test_forgetting_events_against_loops(rng, shape, block):
    acc = rng.random(shape) < rng.random(shape[-1])
    acc[..., 0] = False  # never learned
    acc[..., 1] = True  # learned at epoch 0, never forgotten
    res = E.forgetting_events(acc.astype(np.float32) if len(shape) == 2 else acc, block=block)
    flat = acc.reshape((-1,) + shape[-2:])
    refs = [ref_forgetting(a) for a in flat]
    lead = shape[:-2]
    npt.assert_array_equal(res.forgetting, np.stack([r[0] for r in refs]).reshape(lead + shape[-1:]))
    npt.assert_array_equal(res.first_learned, np.stack([r[1] for r in refs]).reshape(lead + shape[-1:]))
    npt.assert_array_equal(res.unforgettable, np.stack([r[2] for r in refs]).reshape(lead + shape[-1:]))
    assert (res.forgetting[..., 0] == shape[-2]).all() and res.unforgettable[..., 1].all()
    npt.assert_array_equal(res.total_forgetting, np.stack([r[0] for r in refs]).sum(0))
    if len(shape) == 3:
        mask = np.arange(shape[0]) != 1
        masked = E.forgetting_events(jnp.asarray(acc), model_mask=mask)
        npt.assert_array_equal(masked.total_forgetting, sum(refs[i][0] for i in range(shape[0]) if mask[i]))
        npt.assert_array_equal(masked.num_unforgettable, sum(refs[i][2].astype(int) for i in range(shape[0]) if mask[i]))


# ---------------------------------------------------------------- exposure


def test_exposure_rank_brute_force(rng):
    c, r = 6, 40
    refs = rng.integers(0, 30, (c, r)).astype(float)  # integer losses: ties happen
    canary = rng.integers(0, 30, c).astype(float)
    canary[0] = -1.0  # lowest loss: maximal exposure
    got = E.exposure_rank(canary, refs)
    for ci in range(c):
        cands = sorted([(x, 0) for x in refs[ci]] + [(canary[ci], 1)])  # ties: references first
        rank = cands.index((canary[ci], 1)) + 1
        npt.assert_allclose(got[ci], np.log2(r + 1) - np.log2(rank))
    npt.assert_allclose(got[0], np.log2(r + 1))
    npt.assert_allclose(E.exposure_rank(canary[1], refs[1]), got[1])


def test_exposure_skewnorm_against_scipy(rng):
    refs = scipy.stats.skewnorm.rvs(3.0, loc=2.0, scale=1.5, size=(2, 3000), random_state=rng)
    canary = np.quantile(refs, 0.05, axis=1)
    res = E.exposure_skewnorm(canary, refs)
    for i in range(2):
        a, loc, scale = scipy.stats.skewnorm.fit(refs[i])
        npt.assert_allclose([res.shape[i], res.loc[i], res.scale[i]], [a, loc, scale], rtol=1e-6)
        npt.assert_allclose(res.exposure[i], -np.log2(scipy.stats.skewnorm.cdf(canary[i], a, loc, scale)), rtol=1e-6)
    # agrees with the rank exposure where ranks are well resolved (~log2 20)
    # (fit minus rank exposure: sd 0.065 bits, normal tails, over 3000 simulated fits; atol 0.35
    # fails by chance with P ~ 1e-7 per run, 0.3 gave ~7e-6; ln for log2 would be off by 1.3)
    npt.assert_allclose(res.exposure, E.exposure_rank(canary, refs), atol=0.35)


# ---------------------------------------------------------------- convergence and bootstrap


def test_convergence_table(rng):
    m, n = 128, 400
    keep = _design(rng, m, n)
    p = rng.random(n)
    p_in = np.minimum(p + 0.5 * (rng.random(n) < 0.3), 1)
    correct = np.where(keep, rng.random((m, n)) < p_in, rng.random((m, n)) < p).astype(np.float64)
    tab = E.convergence(keep, correct, seed=1)
    npt.assert_array_equal(tab["sizes"], [8, 16, 32, 64, 128])
    npt.assert_allclose(tab["spearman"][-1], 1.0)
    assert tab["rmse"][-1] == 0
    assert np.all(np.diff(tab["mean_stderr"]) < 0)
    assert tab["spearman"][0] < tab["spearman"][-2] < 1
    # spearman at 32 models matches scipy on the same nested subset
    perm = np.random.default_rng(1).permutation(m)
    idx = np.sort(perm[:32])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", E.InsufficientModelsWarning)
        sub = ref_memorization(keep[idx], correct[idx], np.ones(32, bool))[0]
    full = ref_memorization(keep, correct, np.ones(m, bool))[0]
    ok = np.isfinite(sub)
    npt.assert_allclose(tab["spearman"][2], scipy.stats.spearmanr(sub[ok], full[ok]).statistic, rtol=1e-10)
    # other estimators and extra per-model arrays (C-score with its ratio column)
    ratio = rng.choice([0.25, 0.75], m)
    tab2 = E.convergence(keep, correct, ratio, estimator=E.cscore, sizes=[16, 64])
    assert tab2["spearman"].shape == (2,) and np.isnan(tab2["mean_stderr"]).all()


def test_bootstrap_ci_coverage(rng):
    m, n = 80, 600
    keep = _design(rng, m, n)
    p_out = rng.uniform(0.2, 0.8, n)
    p_in = np.clip(p_out + rng.uniform(0, 0.2, n), 0, 1)
    correct = np.where(keep, rng.random((m, n)) < p_in, rng.random((m, n)) < p_out).astype(np.float64)
    ci = E.bootstrap_ci(E.memorization, keep, correct, num_bootstrap=150, alpha=0.1, seed=3)
    npt.assert_allclose(ci.estimate, ref_memorization(keep, correct, np.ones(m, bool))[0], atol=1e-12)
    coverage = np.mean((ci.low <= p_in - p_out) & (p_in - p_out <= ci.high))
    # nominal 0.90; the percentile bootstrap covers 0.886 here (sd 0.013 over 1000 simulated designs,
    # binomial): outside [0.82, 0.95] by chance with P ~ 1e-6 (n=300 in [0.82, 0.97] failed with ~3e-4)
    assert 0.82 <= coverage <= 0.95, coverage
    assert np.all(ci.num_valid == 150)
    # model_mask drops models before resampling; extra positional arrays follow the models
    mask = np.arange(m) >= 10
    ci2 = E.bootstrap_ci(E.cscore, keep, correct, np.full(m, 0.5), num_bootstrap=5, model_mask=mask)
    npt.assert_allclose(ci2.estimate, E.cscore(keep[10:], correct[10:], np.full(m - 10, 0.5)).score)


# ---------------------------------------------------------------- API hygiene


def test_jax_inputs_return_numpy(rng):
    keep = jnp.asarray(_design(rng, 16, 20))
    res = E.memorization(keep, jnp.asarray(rng.random((16, 20)), jnp.float32))
    assert all(type(a) is np.ndarray for a in res)
    assert type(E.influence(keep, jnp.ones((16, 3)))) is np.ndarray


def test_import_is_pure():
    code = (
        "import sys, jaxmem.estimators\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'orbax', 'tensorflow_datasets')"
        " or m in ('jaxmem.train', 'jaxmem.models', 'jaxmem.data')"
        " or m.startswith(('jaxmem.train.', 'jaxmem.models.', 'jaxmem.data.'))]\n"
        "print(bad); assert not bad, bad\n"
        "assert 'scipy.stats' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
