"""RMIA against float64 loop references written here (Zarifzadeh et al. 2024)."""

import warnings

import numpy as np
import numpy.testing as npt
import pytest
from sklearn.metrics import roc_auc_score

from jaxmem.attacks.rmia import A_GRID, rmia, tune_rmia_a


def ref_P(col_p, col_keep, online, a):
    """P(x) for one example from its reference models, by explicit loops."""
    ins = [float(p) for p, k in zip(col_p, col_keep) if k]
    outs = [float(p) for p, k in zip(col_p, col_keep) if not k]
    if not outs or (online and not ins):
        return np.nan
    mean_out = sum(outs) / len(outs)
    if online:
        return (sum(ins) / len(ins) + mean_out) / 2
    return (1 + a) / 2 * mean_out + (1 - a) / 2


def ref_rmia(tp, rp, rk, tpz, rpz, online, a, gamma):
    M, N = rp.shape
    Z = tpz.shape[0]
    rz = []
    for j in range(Z):
        col = rpz[:, j]
        if online:
            P = sum(float(v) for v in col) / M
        else:
            P = (1 + a) / 2 * (sum(float(v) for v in col) / M) + (1 - a) / 2
        rz.append(tpz[j] / P)
    out = np.empty(N)
    for i in range(N):
        P = ref_P(rp[:, i], rk[:, i], online, a)
        if np.isnan(P):
            out[i] = np.nan
            continue
        rx = tp[i] / P
        out[i] = sum(1 for r in rz if rx / r > gamma) / Z
    return out


def world(rng, M, N, Z, p_keep=0.5):
    keep = rng.random((M, N)) < p_keep
    base = rng.beta(2, 2, size=N)
    ref_p = np.clip(base + 0.3 * keep + 0.05 * rng.normal(size=(M, N)), 1e-4, 1)
    tgt_keep = rng.random(N) < 0.5
    target_p = np.clip(base + 0.3 * tgt_keep + 0.05 * rng.normal(size=N), 1e-4, 1)
    pop = rng.beta(2, 2, size=Z)
    ref_p_pop = np.clip(pop + 0.05 * rng.normal(size=(M, Z)), 1e-4, 1)
    target_p_pop = np.clip(pop + 0.05 * rng.normal(size=Z), 1e-4, 1)
    return target_p, ref_p, keep, target_p_pop, ref_p_pop, tgt_keep


@pytest.mark.parametrize("M,N,Z,online,a,gamma", [
    (4, 30, 25, False, 0.3, 1.0),
    (8, 17, 40, False, 0.0, 2.0),
    (3, 50, 11, False, 1.0, 1.0),
    (6, 40, 33, True, None, 1.0),
    (10, 23, 19, True, None, 2.0),
])
def test_rmia_matches_loops(M, N, Z, online, a, gamma):
    rng = np.random.default_rng(M * 1000 + N + Z)
    tp, rp, rk, tpz, rpz, _ = world(rng, M, N, Z)
    rk[:, 0] = True  # example 0 has no OUT model -> NaN
    with pytest.warns(RuntimeWarning, match="lack"):
        got = rmia(tp, rp, rk, tpz, rpz, online=online, a=a, gamma=gamma)
    want = ref_rmia(tp, rp, rk, tpz, rpz, online, a, gamma)
    assert got.shape == (N,)
    assert np.isnan(got[0])
    npt.assert_array_equal(np.isnan(got), np.isnan(want))
    npt.assert_allclose(got, want, atol=0, rtol=0, equal_nan=True)


def test_rmia_ties_are_strict():
    # Quarter-valued probabilities make P and the ratios exact, so many ratios tie exactly.
    rng = np.random.default_rng(0)
    M, N, Z = 2, 40, 40
    q = np.array([0.25, 0.5, 0.75, 1.0])
    rp = rng.choice(q, size=(M, N))
    rk = np.zeros((M, N), bool)
    tp = rng.choice(q, size=N)
    tpz, rpz = tp.copy(), rp.copy()  # population = the same values -> every x ties with some z
    for gamma in (1.0, 2.0, 0.5):
        got = rmia(tp, rp, rk, tpz, rpz, a=0.0, gamma=gamma)
        want = ref_rmia(tp, rp, rk, tpz, rpz, False, 0.0, gamma)
        npt.assert_array_equal(got, want)
    # with ">" an example never beats the z equal to itself: the top ratio scores (Z - ties) / Z
    got = rmia(tp, rp, rk, tpz, rpz, a=0.0)
    r = tp / (rp.mean(0) / 2 + 0.5)
    top = r == r.max()
    npt.assert_allclose(got[top], (Z - top.sum()) / Z)


def test_tune_a_brute_force():
    rng = np.random.default_rng(7)
    M, N, Z = 6, 80, 60
    tp, rp, rk, tpz, rpz, _ = world(rng, M, N, Z)
    # brute force: model 0 is the temporary target, models 1..M-1 its references
    aucs = []
    for a in A_GRID:
        s = ref_rmia(rp[0], rp[1:], rk[1:], rpz[0], rpz[1:], False, a, 1.0)
        ok = ~np.isnan(s)
        aucs.append(roc_auc_score(rk[0][ok], s[ok]))
    best = A_GRID[int(np.argmax(aucs))]
    assert tune_rmia_a(rp, rk, rpz) == pytest.approx(best)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = rmia(tp, rp, rk, tpz, rpz)  # a tuned
    npt.assert_array_equal(got, ref_rmia(tp, rp, rk, tpz, rpz, False, best, 1.0))


def test_rmia_accepts_jax_and_separates_members():
    import jax.numpy as jnp

    rng = np.random.default_rng(3)
    tp, rp, rk, tpz, rpz, tk = world(rng, 8, 400, 300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s_np = rmia(tp, rp, rk, tpz, rpz, a=0.5)
        s_j = rmia(*(jnp.asarray(v) for v in (tp, rp, rk, tpz, rpz)), a=0.5)
    npt.assert_allclose(s_np, s_j, atol=1.0 / 300 + 1e-12)  # float32 inputs may move a tie
    ok = ~np.isnan(s_np)
    assert roc_auc_score(tk[ok], s_np[ok]) > 0.8


@pytest.mark.filterwarnings("ignore:RMIA")
def test_rmia_tuning_needs_two_models():
    rng = np.random.default_rng(1)
    tp, rp, rk, tpz, rpz, _ = world(rng, 1, 10, 10)
    with pytest.raises(ValueError, match="a"):
        rmia(tp, rp, rk, tpz, rpz)
