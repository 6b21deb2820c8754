"""RMIA against float64 loop references written here (Zarifzadeh et al. 2024). The references
compare as the research code does: ratio_x * (1 / ratio_z) > gamma."""

import warnings

import numpy as np
import numpy.testing as npt
import pytest
from sklearn.metrics import roc_auc_score

from jaxmem.attacks.relative_membership import A_GRID, rmia, tune_rmia_a


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
        out[i] = sum(1 for r in rz if rx * (1 / r) > gamma) / Z
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


# ----------------------------------------------------------------------------- per-query options
# References below: scipy.stats.trim_mean for the trimmed means and explicit loops over (x, z, a)
# with torch.mode's rule for the vote (most frequent value, the smaller one on a tie).


def mode_bool(values):
    """torch.mode's rule on booleans: the most frequent value, the smallest (False) on a tie."""
    n_true = sum(1 for v in values if v)
    n_false = len(values) - n_true
    return n_true > n_false


def ref_mean(values, trim):
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(values, float), trim)) if trim > 0 else sum(values) / len(values)


def ref_P_trim(col_p, col_keep, online, a, trim):
    ins = [float(p) for p, k in zip(col_p, col_keep) if k]
    outs = [float(p) for p, k in zip(col_p, col_keep) if not k]
    if not outs or (online and not ins):
        return np.nan
    if online:
        if trim > 0:  # IN and OUT pooled, then trimmed (the research code)
            return ref_mean(ins + outs, trim)
        return (ref_mean(ins, 0) + ref_mean(outs, 0)) / 2
    return (1 + a) / 2 * ref_mean(outs, trim) + (1 - a) / 2


def ref_rmia_q(tp, rp, rk, tpz, rpz, online, a, gamma, aggregate, trim):
    """tp [N, A], rp [M, N, A], tpz [Z, A], rpz [M, Z, A]; loops over x, z and queries."""
    if aggregate == "mean":
        tp, rp, tpz, rpz = tp.mean(-1)[:, None], rp.mean(-1)[..., None], tpz.mean(-1)[:, None], rpz.mean(-1)[..., None]
    M, N, A = rp.shape
    Z = tpz.shape[0]
    rx = [[tp[i, q] / ref_P_trim(rp[:, i, q], rk[:, i], online, a, trim) for q in range(A)] for i in range(N)]
    rz = []
    for j in range(Z):
        row = []
        for q in range(A):
            m = ref_mean([float(v) for v in rpz[:, j, q]], trim)
            row.append(tpz[j, q] / (m if online else (1 + a) / 2 * m + (1 - a) / 2))
        rz.append(row)
    out = np.empty(N)
    for i in range(N):
        if any(np.isnan(v) for v in rx[i]):
            out[i] = np.nan
            continue
        wins = sum(1 for j in range(Z) if mode_bool([rx[i][q] * (1 / rz[j][q]) > gamma for q in range(A)]))
        out[i] = wins / Z
    return out


def world_q(rng, M, N, Z, A):
    """Per-query probabilities: an example's level plus per-model, per-query noise."""
    keep = rng.random((M, N)) < 0.5
    base = rng.beta(2, 2, size=(N, 1))
    rp = np.clip(base + 0.3 * keep[..., None] + 0.1 * rng.normal(size=(M, N, A)), 1e-3, 1)
    tk = rng.random(N) < 0.5
    tp = np.clip(base + 0.3 * tk[:, None] + 0.1 * rng.normal(size=(N, A)), 1e-3, 1)
    pop = rng.beta(2, 2, size=(Z, 1))
    rpz = np.clip(pop + 0.1 * rng.normal(size=(M, Z, A)), 1e-3, 1)
    tpz = np.clip(pop + 0.1 * rng.normal(size=(Z, A)), 1e-3, 1)
    return tp, rp, keep, tpz, rpz, tk


@pytest.mark.filterwarnings("ignore:RMIA")
@pytest.mark.parametrize("M,N,Z,A,online,a,gamma,aggregate,trim", [
    (10, 30, 25, 2, False, 0.33, 2.0, "vote", 0.2),
    (12, 25, 30, 3, False, 0.6, 1.0, "vote", 0.2),
    (9, 20, 22, 4, True, None, 1.0, "vote", 0.2),
    (7, 26, 18, 5, True, None, 1.1, "vote", 0.0),
    (8, 21, 27, 2, False, 0.0, 1.0, "vote", 0.0),
    (11, 24, 20, 1, False, 0.2, 2.0, "vote", 0.25),
    (10, 30, 25, 3, False, 0.33, 2.0, "mean", 0.2),
    (13, 19, 23, 2, True, None, 1.0, "mean", 0.3),
])
def test_per_query_options_match_loops(M, N, Z, A, online, a, gamma, aggregate, trim):
    rng = np.random.default_rng(M * 7919 + N * 31 + Z + A)
    tp, rp, rk, tpz, rpz, _ = world_q(rng, M, N, Z, A)
    rk[:, 0] = True  # no OUT model -> NaN
    got = rmia(tp, rp, rk, tpz, rpz, online=online, a=a, gamma=gamma, aggregate=aggregate, trim=trim)
    want = ref_rmia_q(tp, rp, rk, tpz, rpz, online, a, gamma, aggregate, trim)
    assert got.shape == (N,) and np.isnan(got[0])
    assert np.unique(got[1:]).size > 3  # not a degenerate case
    npt.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore:RMIA")
def test_vote_tie_loses_and_blocks_are_exact(monkeypatch):
    import importlib

    rm = importlib.import_module("jaxmem.attacks.rmia_counting")
    rng = np.random.default_rng(11)
    tp, rp, rk, tpz, rpz, _ = world_q(rng, 6, 70, 45, 2)
    want = ref_rmia_q(tp, rp, rk, tpz, rpz, False, 0.5, 1.0, "vote", 0.0)
    # With 2 queries the vote is "both queries agree": it must differ from "either" somewhere.
    either = np.array([np.mean([any(tp[i, q] / ref_P(rp[:, i, q], rk[:, i], False, 0.5)
                                    > tpz[j, q] / ((1.5 * rpz[:, j, q].mean()) / 2 + 0.25) for q in range(2))
                                for j in range(45)]) for i in range(70)])
    assert (either > want).any()
    for block in (1, 45, 100, 45 * 8 + 3):  # one x per block, ..., ragged last block
        monkeypatch.setattr(rm, "_VOTE_BLOCK", block)
        npt.assert_array_equal(rmia(tp, rp, rk, tpz, rpz, a=0.5, aggregate="vote"), want)


def test_mode_rule_is_torchs():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    for A in (2, 3, 4, 6):
        v = rng.random((A, 200)) < 0.5
        got = torch.mode(torch.from_numpy(v), 0).values.numpy()
        npt.assert_array_equal(got, [mode_bool(v[:, k]) for k in range(200)])


@pytest.mark.filterwarnings("ignore:RMIA")
def test_vote_with_one_query_is_the_mean_path():
    rng = np.random.default_rng(13)
    tp, rp, rk, tpz, rpz, _ = world_q(rng, 8, 300, 200, 1)
    for online, trim in ((False, 0.0), (True, 0.0), (False, 0.2)):
        for gamma in (1.0, 2.0):
            m = rmia(tp[:, 0], rp[..., 0], rk, tpz[:, 0], rpz[..., 0], online=online, a=0.3, gamma=gamma, trim=trim)
            v = rmia(tp, rp, rk, tpz, rpz, online=online, a=0.3, gamma=gamma, trim=trim, aggregate="vote")
            npt.assert_array_equal(m, v)


def old_rmia(target_p, ref_p, ref_keep, target_p_pop, ref_p_pop, online, a, gamma):
    """The computation before the per-query options (commit 5b72c45), copied as it was. Its
    comparison, ratio_z < ratio_x / gamma, is the research code's ratio_x * (1/ratio_z) > gamma
    for positive ratios except at exact float ties (none in these seeds); not for negative ones
    (test_comparison_is_the_research_codes below)."""
    keep = np.asarray(ref_keep, bool)
    n_out, n_in = (~keep).sum(0), keep.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_out = np.where(~keep, ref_p, 0.0).sum(0) / n_out
        if online:
            P_x = (np.where(keep, ref_p, 0.0).sum(0) / n_in + mean_out) / 2.0
        else:
            P_x = (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0
        ratio_x = target_p / P_x
        mean = ref_p_pop.mean(0)
        P = mean if online else (1.0 + a) / 2.0 * mean + (1.0 - a) / 2.0
        ratio_z = np.sort(target_p_pop / P)
        ratio_z = ratio_z[~np.isnan(ratio_z)]
        counts = np.searchsorted(ratio_z, ratio_x / gamma, side="left")
        return np.where(np.isnan(ratio_x), np.nan, counts / ratio_z.size)


def old_tune(ref_p, keep, ref_p_pop, gamma):
    from jaxmem.attacks.metrics import roc_auc

    rest = np.arange(ref_p.shape[0]) != 0
    aucs = []
    for a in A_GRID:
        s = old_rmia(ref_p[0], ref_p[rest], keep[rest], ref_p_pop[0], ref_p_pop[rest], False, float(a), gamma)
        aucs.append(roc_auc(s, keep[0]) if np.isfinite(s).any() else -np.inf)
    return float(A_GRID[int(np.argmax(aucs))])


@pytest.mark.filterwarnings("ignore:RMIA")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_defaults_reproduce_the_old_results_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    M, N, Z, A = int(rng.integers(3, 12)), int(rng.integers(50, 400)), int(rng.integers(20, 300)), 3
    tp, rp, rk, tpz, rpz, _ = world_q(rng, M, N, Z, A)
    rk[:, : 2] = True
    for gamma in (1.0, 2.0, 0.7):
        a = old_tune(rp.mean(-1), rk, rpz.mean(-1), gamma)
        assert tune_rmia_a(rp.mean(-1), rk, rpz.mean(-1), gamma=gamma) == a
        assert tune_rmia_a(rp, rk, rpz, gamma=gamma) == a  # per-query input, averaged first
        for online in (False, True):
            want = old_rmia(tp.mean(-1), rp.mean(-1), rk, tpz.mean(-1), rpz.mean(-1), online, a, gamma)
            npt.assert_array_equal(rmia(tp.mean(-1), rp.mean(-1), rk, tpz.mean(-1), rpz.mean(-1),
                                        online=online, a=a, gamma=gamma), want)
            npt.assert_array_equal(rmia(tp, rp, rk, tpz, rpz, online=online, a=a, gamma=gamma,
                                        aggregate="mean", trim=0.0), want)
        npt.assert_array_equal(rmia(tp.mean(-1), rp.mean(-1), rk, tpz.mean(-1), rpz.mean(-1), gamma=gamma),
                               old_rmia(tp.mean(-1), rp.mean(-1), rk, tpz.mean(-1), rpz.mean(-1), False, a, gamma))


@pytest.mark.filterwarnings("ignore:RMIA")
def test_tune_a_passes_the_options():
    rng = np.random.default_rng(14)
    M, N, Z, A = 9, 40, 30, 2
    tp, rp, rk, tpz, rpz, _ = world_q(rng, M, N, Z, A)
    aucs = []
    for a in A_GRID:
        s = ref_rmia_q(rp[0], rp[1:], rk[1:], rpz[0], rpz[1:], False, a, 2.0, "vote", 0.2)
        ok = ~np.isnan(s)
        aucs.append(roc_auc_score(rk[0][ok], s[ok]))
    best = A_GRID[int(np.argmax(aucs))]
    assert tune_rmia_a(rp, rk, rpz, gamma=2.0, aggregate="vote", trim=0.2) == pytest.approx(best)
    got = rmia(tp, rp, rk, tpz, rpz, gamma=2.0, aggregate="vote", trim=0.2)  # a tuned the same way
    npt.assert_array_equal(got, ref_rmia_q(tp, rp, rk, tpz, rpz, False, best, 2.0, "vote", 0.2))


def test_per_query_bad_arguments():
    rng = np.random.default_rng(15)
    tp, rp, rk, tpz, rpz, _ = world_q(rng, 4, 10, 8, 2)
    with pytest.raises(ValueError, match="aggregate"):
        rmia(tp, rp, rk, tpz, rpz, a=0.5, aggregate="median")
    for trim in (0.5, -0.1):
        with pytest.raises(ValueError, match="trim"):
            rmia(tp, rp, rk, tpz, rpz, a=0.5, trim=trim)
    with pytest.raises(ValueError, match="queries"):
        rmia(tp, rp, rk, tpz[:, :1], rpz[..., :1], a=0.5, aggregate="vote")
    with pytest.raises(ValueError, match="dims"):
        rmia(tp, rp[..., 0], rk, tpz, rpz, a=0.5)


@pytest.mark.filterwarnings("ignore:RMIA", "ignore::RuntimeWarning")
def test_evaluate_passes_the_options_to_rmia():
    from jaxmem.attacks.driver import evaluate

    rng = np.random.default_rng(16)
    M, N, Z, A = 7, 60, 50, 2
    keep = rng.random((M, N)) < 0.5
    p = np.clip(0.5 + 0.3 * keep[..., None] + 0.15 * rng.normal(size=(M, N, A)), 1e-3, 1)
    p_pop = np.clip(0.5 + 0.15 * rng.normal(size=(M, Z, A)), 1e-3, 1)
    phi = np.zeros((M, N, A), np.float32)
    mask = np.ones(M, bool)
    mask[0] = False
    targets = [1, 3, 6]
    sig = {"p": p, "p_pop": p_pop}
    attacks = ("rmia_offline", "rmia_online")
    base = evaluate({"phi": phi, **sig}, keep, attacks, targets, model_mask=mask, return_scores=True, rmia_gamma=2.0,
                    rmia_tune="once")
    same = evaluate({"phi": phi, **sig}, keep, attacks, targets, model_mask=mask, return_scores=True, rmia_gamma=2.0,
                    rmia_aggregate="mean", rmia_trim=0.0, rmia_tune="once")
    for k in attacks:
        npt.assert_array_equal(base.scores[k], same.scores[k])
    assert same.params["rmia_offline"] == dict(base.params["rmia_offline"], aggregate="mean", trim=0.0)
    assert "rmia_online" not in base.params and same.params["rmia_online"] == {"aggregate": "mean", "trim": 0.0}

    usable = np.flatnonzero(mask)
    for aggregate, trim in (("vote", 0.2), ("mean", 0.2), ("vote", 0.0)):
        ev = evaluate({"phi": phi, **sig}, keep, attacks, targets, model_mask=mask, return_scores=True,
                      rmia_gamma=2.0, rmia_aggregate=aggregate, rmia_trim=trim, rmia_tune="once")
        prm = ev.params["rmia_offline"]
        assert prm["aggregate"] == aggregate and prm["trim"] == trim and prm["a_source"] == "tuned_once"
        assert ev.params["rmia_online"] == {"aggregate": aggregate, "trim": trim}
        a = tune_rmia_a(p[usable], keep[usable], p_pop[usable], gamma=2.0, aggregate=aggregate, trim=trim)
        assert prm["a"] == a
        for j, t in enumerate(targets):
            ref = mask.copy()
            ref[t] = False
            for online in (False, True):
                want = rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], online=online, a=a, gamma=2.0,
                            aggregate=aggregate, trim=trim)
                npt.assert_array_equal(ev.scores["rmia_online" if online else "rmia_offline"][j], want)

    per = evaluate({"phi": phi, **sig}, keep, ("rmia_offline",), [2, 5], model_mask=mask, return_scores=True,
                   rmia_aggregate="vote", rmia_trim=0.2, rmia_tune="per_target")
    for j, t in enumerate([2, 5]):
        ref = mask.copy()
        ref[t] = False
        npt.assert_array_equal(per.scores["rmia_offline"][j],
                               rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], aggregate="vote", trim=0.2))


# --- issue #11 item 6: the research code's comparison, ratio_x * (1/ratio_z) > gamma -------------

def brute_pairs(rx, rz, gamma):
    """[N, Z] wins, evaluated as the research code does (float64, torch.outer of the reciprocals)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rx[:, None] * (1.0 / rz)[None, :]) > gamma


def test_negative_population_ratio_never_beats_gamma():
    """The issue's input: p_x = 0.5, one IN and one OUT reference at 0.5, one population point
    with p = -0.5 and P(z) = 0.5, gamma = 2: the research code gives 0 (jaxmem gave 1)."""
    got = rmia(np.array([0.5]), np.array([[0.5], [0.5]]), np.array([[True], [False]]),
               np.array([-0.5]), np.array([[0.5], [0.5]]), online=True, gamma=2.0)
    assert got.tolist() == [0.0]


@pytest.mark.filterwarnings("ignore:RMIA")
@pytest.mark.parametrize("aggregate,A", [("mean", 1), ("vote", 3), ("vote", 2)])
@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5])
def test_comparison_is_the_research_codes(rng, aggregate, A, gamma):
    """Signed probabilities (the Taylor signal goes negative), exact zeros (ratio_z = 0: 1/0 =
    inf), -0.0, ties: counts equal the N x Z brute force of the research rule, per query and
    majority-voted (a tie loses)."""
    M, N, Z = 6, 80, 70
    keep = rng.random((M, N)) < 0.5
    grid = np.array([-0.5, -0.25, -0.0, 0.0, 0.25, 0.5, 0.75, 1.0])   # exact, many ties
    tp = rng.choice(grid, size=(N, A)) + (rng.random((N, A)) < 0.5) * rng.normal(size=(N, A))
    rp = rng.uniform(0.2, 1.0, size=(M, N, A))
    tpz = rng.choice(grid, size=(Z, A)) + (rng.random((Z, A)) < 0.5) * rng.normal(size=(Z, A))
    rpz = rng.uniform(0.2, 1.0, size=(M, Z, A))
    tpz[:3] = 0.0
    tpz[3:5] = -0.0
    tp[:2] = 0.0
    kw = dict(online=False, a=0.3, gamma=gamma, aggregate=aggregate)
    got = rmia(tp if A > 1 else tp[:, 0], rp if A > 1 else rp[..., 0], keep,
               tpz if A > 1 else tpz[:, 0], rpz if A > 1 else rpz[..., 0], **kw)
    from jaxmem.attacks.relative_membership import _population_ratio, rmia_reference_mean

    rx = tp / rmia_reference_mean(rp, keep, a=0.3)
    rz = _population_ratio(tpz, rpz, False, 0.3)
    assert (rz < 0).any() and (rz == 0).any() and (rx < 0).any()
    wins = np.stack([brute_pairs(rx[:, q], rz[:, q], gamma) for q in range(A)])   # [A, N, Z]
    want = np.where(np.isnan(rx).any(1), np.nan, (wins.sum(0) > A // 2).mean(1))   # no OUT model: NaN
    npt.assert_array_equal(got, want)
    # the old rule counted z with ratio_z < ratio_x / gamma: a negative ratio_z always "won"
    if A == 1:
        old = (rz[None, :, 0] < rx[:, None, 0] / gamma).mean(1)
        assert (old != want).any()


def test_zero_and_infinite_ratios_follow_ieee_as_torch():
    """ratio_z = +0: every x with ratio_x > 0 wins (x * inf = inf), ratio_x = 0 does not
    (0 * inf = NaN), ratio_x < 0 does not (-inf); ratio_z = -0 the reverse. NaN ratio_z (0/0)
    is dropped from Z."""
    from jaxmem.attacks.rmia_counting import fraction_winning as _fraction_winning
    from jaxmem.attacks.rmia_counting import reciprocals as _reciprocals

    rz = np.array([0.0, -0.0, 1.0, -2.0, np.nan])
    rx = np.array([3.0, 0.0, -3.0, np.inf, -np.inf, np.nan])
    got = _fraction_winning(rx, _reciprocals(rz), 2.0)
    want = brute_pairs(rx, rz[:4], 2.0).mean(1)
    want[-1] = np.nan
    npt.assert_array_equal(got, want)
    assert got[:5].tolist() == [0.5, 0.0, 0.25, 0.5, 0.5]   # -3: only -0 (-3 * -inf = inf) wins


def test_evaluate_scores_rmia_in_float64_on_p_near_one(rng):
    """p within 1e-12..1e-6 of 1 (confident models): evaluate's RMIA equals the float64 loop
    reference; p rounded to float32 (which cannot resolve 1 − p below 6e-8) does not (issue #27:
    pass p in float64, compute_signals(..., dtype=np.float64))."""
    from jaxmem.attacks import evaluate

    M, N, Z = 6, 40, 30
    keep = rng.random((M, N)) < 0.5
    p = 1 - 10 ** rng.uniform(-12, -6, size=(M, N)) * np.where(keep, 0.3, 1.0)
    p_pop = 1 - 10 ** rng.uniform(-12, -6, size=(M, Z))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate({"p": p, "p_pop": p_pop}, keep, attacks=("rmia_online", "rmia_offline"),
                      return_scores=True, rmia_a=0.5)
        ev32 = evaluate({"p": p.astype(np.float32), "p_pop": p_pop.astype(np.float32)}, keep,
                        attacks=("rmia_online",), return_scores=True)
    for j, t in enumerate(ev.targets):
        sh = np.arange(M) != t
        for online in (True, False):
            want = ref_rmia(p[t], p[sh], keep[sh], p_pop[t], p_pop[sh], online, 0.5, 1.0)
            npt.assert_array_equal(ev.scores["rmia_online" if online else "rmia_offline"][j], want)
    assert np.nanmax(np.abs(ev32.scores["rmia_online"] - ev.scores["rmia_online"])) > 0.05
