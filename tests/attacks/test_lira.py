"""LiRA and the exact masked order statistics, against float64 numpy/scipy loop references."""

import warnings

import numpy as np
import pytest
from scipy.stats import norm

from jaxmem.attacks import FewShadowsWarning, global_threshold, lira
from jaxmem.attacks._select import masked_median, order_statistics_two_groups

# ----------------------------------------------------------------------------- references


def ref_lira(t, phi, keep, *, online=True, fixed=False, variant="one_sided", location="median",
             min_in=2, min_out=2, eps=1e-30):
    """Loop over examples, float64, np.median / np.std / scipy.stats.norm."""
    t = np.asarray(t, np.float64).reshape(phi.shape[1], -1)
    phi = np.asarray(phi, np.float64).reshape(phi.shape[0], phi.shape[1], -1)
    M, N, A = phi.shape
    loc = np.median if location == "median" else np.mean
    sets = {"in": [phi[keep[:, i], i] for i in range(N)], "out": [phi[~keep[:, i], i] for i in range(N)]}
    pooled = {}
    for h, xs in sets.items():
        num = sum(((x - x.mean(0)) ** 2).sum(0) for x in xs if len(x))
        pooled[h] = np.sqrt(num / max(sum(len(x) for x in xs), 1))
    if fixed == "in":
        pooled["out"] = pooled["in"]
    out = np.full(N, np.nan)
    for i in range(N):
        xi, xo = sets["in"][i], sets["out"][i]
        if len(xo) < min_out or (online and len(xi) < min_in):
            continue
        so = (pooled["out"] if fixed else xo.std(0)) + eps
        mo = loc(xo, 0)
        if online:
            si = (pooled["in"] if fixed else xi.std(0)) + eps
            out[i] = np.mean(norm.logpdf(t[i], loc(xi, 0), si) - norm.logpdf(t[i], mo, so))
        elif variant == "one_sided":
            out[i] = np.mean(norm.logcdf((t[i] - mo) / so))
        else:
            out[i] = -np.mean(norm.logpdf(t[i], mo, so))
    return out


def world(rng, M, N, A, p=0.5, ties=False):
    phi = rng.normal(size=(M, N, A)).astype(np.float32) * 2
    if ties:
        phi[:, : N // 3] = np.round(phi[:, : N // 3])
    keep = rng.random((M, N)) < p
    t = rng.normal(size=(N, A)).astype(np.float32) * 2
    return t, phi, keep


# ----------------------------------------------------------------------------- order statistics


@pytest.mark.parametrize("R,M", [(1, 1), (37, 5), (300, 64), (129, 257)])
def test_masked_median_equals_np_median(R, M):
    rng = np.random.default_rng(R * 1000 + M)
    x = rng.normal(size=(R, M)).astype(np.float32)
    x[: R // 3] = np.round(x[: R // 3] * 2)  # ties
    x[R // 3: R // 3 + 2] = -0.0
    if R > 10:
        x[5, :2] = [np.inf, -np.inf]
    mask = rng.random((R, M)) < rng.uniform(0.05, 0.95, size=(R, 1))
    mask[0] = True
    if R > 1:
        mask[1] = False
    got = np.asarray(masked_median(x, mask))
    ref = np.array([np.median(x[r][mask[r]]) if mask[r].any() else np.nan for r in range(R)], np.float32)
    np.testing.assert_array_equal(got, ref)
    counts = mask.sum(1)
    if R > 10:  # both parities exercised
        assert (counts % 2 == 0).any() and (counts % 2 == 1).any()


@pytest.mark.parametrize("R,M,n_next", [(50, 9, 2), (200, 40, 1), (64, 130, 3)])
def test_order_statistics_two_groups_against_sort(R, M, n_next):
    rng = np.random.default_rng(M)
    x = np.round(rng.normal(size=(R, M)) * 3).astype(np.float32)  # many ties
    g = rng.integers(-1, 2, size=(R, M))  # -1 neither, 0 IN, 1 OUT
    im, om = g == 0, g == 1
    j_in = np.array([rng.integers(0, max(im[r].sum() - n_next, 1)) for r in range(R)])
    j_out = np.array([rng.integers(0, max(om[r].sum() - n_next, 1)) for r in range(R)])
    v_in, v_out = order_statistics_two_groups(x, im, om, j_in, j_out, n_next=n_next, rows_per_pass=16)
    for r in range(R):
        for vals, m, j in ((v_in, im, j_in), (v_out, om, j_out)):
            s = np.sort(x[r][m[r]])
            k = min(len(s) - j[r], n_next + 1)
            np.testing.assert_array_equal(np.asarray(vals)[r, :k], s[j[r]: j[r] + k])


# ----------------------------------------------------------------------------- LiRA vs reference


@pytest.mark.parametrize("M,N,A", [(8, 60, 1), (33, 200, 3), (24, 101, 2)])
@pytest.mark.parametrize("location", ["median", "mean"])
def test_lira_matches_reference(M, N, A, location):
    rng = np.random.default_rng(M + N + A)
    t, phi, keep = world(rng, M, N, A, ties=True)
    cases = [dict(online=True), dict(online=False), dict(online=False, variant="two_sided_density"),
             dict(online=True, fixed=True), dict(online=False, fixed=True), dict(online=True, fixed="in")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewShadowsWarning)
        for c in cases:
            got = lira(t, phi, keep, online=c["online"], fixed_variance=c.get("fixed", False),
                       offline_variant=c.get("variant", "one_sided"), location=location)
            ref = ref_lira(t, phi, keep, location=location, **c)
            assert got.shape == (N,) and got.dtype == np.float64
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6, err_msg=str(c))


def test_lira_accepts_1d_and_jax_inputs():
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    t, phi, keep = world(rng, 20, 50, 1)
    ref = ref_lira(t, phi, keep)
    np.testing.assert_allclose(lira(t[:, 0], phi[..., 0], keep), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lira(jnp.asarray(t), jnp.asarray(phi), jnp.asarray(keep)), ref, rtol=1e-6, atol=1e-6)


def test_few_shadows_give_nan_and_a_warning_with_the_count():
    rng = np.random.default_rng(1)
    t, phi, keep = world(rng, 10, 40, 2)
    keep[:, 4:] = (np.arange(10) % 2 == 0)[:, None]  # 5 IN, 5 OUT
    keep[:, 0] = False          # no IN: NaN online, fine offline
    keep[:, 1] = True           # no OUT: NaN for both
    keep[:, 2] = False
    keep[0, 2] = True           # one IN
    keep[:, 3] = True
    keep[:3, 3] = False         # three OUT: fine with min_out=2, NaN with min_out=4
    with pytest.warns(FewShadowsWarning, match=r"3 of 40 scores come from fewer than 2 IN or 2 OUT"):
        s = lira(t, phi, keep)
    assert np.isnan(s[:3]).all() and np.isfinite(s[3:]).all()
    with pytest.warns(FewShadowsWarning, match=r"2 of 40 scores come from fewer than 4 OUT"):
        s = lira(t, phi, keep, online=False, min_out=4)
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(s)), [1, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(lira(t[4:], phi[:, 4:], keep[:, 4:])).all()


def test_constant_phi_is_finite():
    M, N, A = 12, 20, 2
    rng = np.random.default_rng(2)
    keep = rng.random((M, N)) < 0.5
    keep[:2], keep[2:4] = True, False
    phi = np.full((M, N, A), 1.5, np.float32)
    t = np.full((N, A), 1.5, np.float32)
    t[10:] = 4.0
    for kw in (dict(online=True), dict(online=False), dict(online=False, offline_variant="two_sided_density"),
               dict(online=True, fixed_variance=True)):
        s = lira(t, phi, keep, **kw)
        assert np.isfinite(s).all(), kw
    s = lira(t, phi, keep)
    np.testing.assert_array_equal(s[:10], 0.0)  # equal to both locations: no evidence either way
    off = lira(t, phi, keep, online=False)
    assert (off[10:] > off[:10]).all()  # above the OUT location: more member-like


def test_lira_online_reaches_the_analytic_auc_in_a_gaussian_world():
    """φ_in ~ N(μ_i + d, σ), φ_out ~ N(μ_i, σ): the optimal test has AUC Φ(d / (σ√2))."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    M, N, d, sigma = 128, 20000, 1.0, 1.0
    mu = rng.normal(0, 3, size=N)
    keep = rng.random((M, N)) < 0.5
    phi = (mu + d * keep + sigma * rng.normal(size=(M, N))).astype(np.float32)
    member = rng.random(N) < 0.5
    t = (mu + d * member + sigma * rng.normal(size=N)).astype(np.float32)
    analytic = norm.cdf(d / (sigma * np.sqrt(2)))
    auc = roc_auc_score(member, lira(t, phi, keep))
    assert abs(auc - analytic) < 0.015, (auc, analytic)
    # the offline test is one-sided in the same statistic: same optimal AUC here
    auc_off = roc_auc_score(member, lira(t, phi, keep, online=False))
    assert abs(auc_off - analytic) < 0.015, (auc_off, analytic)
    # the global threshold ignores μ_i and is far weaker
    assert roc_auc_score(member, global_threshold(t)) < analytic - 0.1


def test_global_threshold_is_the_query_mean():
    rng = np.random.default_rng(4)
    t = rng.normal(size=(30, 4)).astype(np.float32)
    np.testing.assert_allclose(global_threshold(t), t.astype(np.float64).mean(1), rtol=1e-12)
    np.testing.assert_array_equal(global_threshold(t[:, 0]), t[:, 0].astype(np.float64))


def test_bad_options_raise():
    t, phi, keep = world(np.random.default_rng(5), 4, 5, 1)
    with pytest.raises(ValueError):
        lira(t, phi, keep, location="mode")
    with pytest.raises(ValueError):
        lira(t, phi, keep, offline_variant="two")
    with pytest.raises(ValueError):
        lira(t[:3], phi, keep)


@pytest.mark.parametrize("location", ["median", "mean"])
def test_medians_and_distances_are_float64(rng, location):
    """φ close to 1 with its spread at float32's last bits: a float32 median of two middle values
    or a float32 φ − μ rounds by a large fraction of σ; the float64 numpy reference does not
    (issue #21: LiRA subtracted the median in float32). Per target and in evaluate's kernel."""
    from jaxmem.attacks import evaluate

    M, N, A = 11, 200, 2
    phi = (1.0 + rng.integers(0, 64, size=(M, N, A)) * 2.0**-23).astype(np.float32)
    keep = rng.random((M, N)) < 0.5
    t = phi[0]
    for c in [dict(online=True), dict(online=False), dict(online=True, fixed=True)]:
        got = lira(t, phi[1:], keep[1:], online=c["online"], fixed_variance=c.get("fixed", False),
                   location=location)
        ref = ref_lira(t, phi[1:], keep[1:], location=location, **c)
        # (rtol 1e-7: two float64 orders of summation differ by ~1e-9 relative where σ is a few
        # float32 ulps and a score reaches ~25 (seed 3036393829: 1.4e-9); a float32 median or
        # φ − μ is off by a large fraction of σ, i.e. O(1) relative)
        np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-9, err_msg=str(c))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(phi, keep, attacks=("lira_online", "lira_offline"), targets=[0, 5],
                      return_scores=True, location=location, pair_out=False)
    for j, tg in enumerate([0, 5]):
        sh = np.arange(M) != tg
        for name, online in (("lira_online", True), ("lira_offline", False)):
            ref = ref_lira(phi[tg], phi[sh], keep[sh], location=location, online=online)
            # (rtol 1e-5: the batched kernel's leave-one-out sums differ from the direct variance
            # by ~1e-7 relative where σ is tiny and a score reaches ~500; a float32 median or
            # φ − μ would be off by a large fraction of σ, i.e. O(1) relative)
            np.testing.assert_allclose(ev.scores[name][j], ref, rtol=1e-5, atol=1e-7, err_msg=name)
