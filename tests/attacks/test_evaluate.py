"""evaluate (every model as the target) against brute-force per-target attack calls and sklearn."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxmem.attacks import (
    LIRA_ATTACKS,
    FewShadowsWarning,
    evaluate,
    lira,
    loss_attack,
    rmia,
    tpr_at_fpr,
)
from jaxmem.attacks.roc import roc_metrics as batched_roc_metrics


def stack(rng, M, N, A, ties=True):
    phi = (rng.normal(size=(M, N, A)) + rng.normal(size=(1, N, 1)) * 2).astype(np.float32)
    keep = rng.random((M, N)) < 0.5
    phi += 0.7 * keep[..., None]
    if ties:
        phi[:, : N // 4] = np.round(phi[:, : N // 4])
        phi[:, N // 4: N // 4 + 3] = 0.25  # constant columns
    return phi, keep


@pytest.mark.parametrize("M,N,A,masked", [(7, 90, 2, False), (11, 64, 1, True)])
@pytest.mark.parametrize("location", ["median", "mean"])
def test_leave_one_out_equals_brute_force_lira(M, N, A, masked, location):
    rng = np.random.default_rng(M * N + A)
    phi, keep = stack(rng, M, N, A)
    mask = np.ones(M, bool)
    if masked:
        mask[[1, 5]] = False
        phi[1] = np.nan  # a diverged model must not leak into anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewShadowsWarning)
        ev = evaluate(phi, keep, attacks=tuple(LIRA_ATTACKS), model_mask=mask, return_scores=True,
                      location=location)
        np.testing.assert_array_equal(ev.targets, np.flatnonzero(mask))
        for name, (online, fixed) in LIRA_ATTACKS.items():
            for j, t in enumerate(ev.targets):
                ref = mask.copy()
                ref[t] = False
                want = lira(phi[t], phi[ref], keep[ref], online=online, fixed_variance=fixed, location=location)
                got = ev.scores[name][j]
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
                np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"{name} target {t}")


def test_metrics_agree_with_sklearn_and_metrics_module():
    rng = np.random.default_rng(0)
    M, N, A = 9, 300, 2
    phi, keep = stack(rng, M, N, A, ties=False)
    phi += 1.3 * keep[..., None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewShadowsWarning)
        ev = evaluate(phi, keep, return_scores=True, fprs=(0.001, 0.01, 0.1))
    for name, s in ev.scores.items():
        for j, t in enumerate(ev.targets):
            ok = ~np.isnan(s[j])
            assert ev[name]["auc"][j] == pytest.approx(roc_auc_score(keep[t][ok], s[j][ok]), abs=1e-12)
            for f in (0.001, 0.01, 0.1):
                assert ev[name][f"tpr_at_{f}_fpr"][j] == tpr_at_fpr(s[j], keep[t], f)
    summ = ev.summary()
    for name in ev.metrics:
        for metric, v in ev[name].items():
            assert summ[name][metric] == pytest.approx(np.mean(v))
            assert summ[name][metric + "_std"] == pytest.approx(np.std(v))
        assert summ[name]["n_targets"] == M
    # the members really are detectable: LiRA online beats chance on every target
    assert (ev["lira_online"]["auc"] > 0.6).all()


def test_batched_roc_metrics_with_ties_and_nans():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=(6, 400)), 1)
    m = rng.random((6, 400)) < 0.3
    s[0, :50] = np.nan
    s[1] = 0.0  # one tie group
    auc, tprs = batched_roc_metrics(s, m, (0.01, 0.2))
    for r in range(6):
        ok = ~np.isnan(s[r])
        assert auc[r] == pytest.approx(roc_auc_score(m[r][ok], s[r][ok]), abs=1e-12)
        assert tprs[0, r] == tpr_at_fpr(s[r], m[r], 0.01)
        assert tprs[1, r] == tpr_at_fpr(s[r], m[r], 0.2)


@pytest.mark.filterwarnings("ignore::jaxmem.attacks.FewShadowsWarning", "ignore::RuntimeWarning")
def test_targets_subset_and_signal_attacks_match_direct_calls():
    rng = np.random.default_rng(2)
    M, N, Z, A = 8, 120, 150, 2
    phi, keep = stack(rng, M, N, A, ties=False)
    loss = rng.exponential(size=(M, N, A)) - 0.3 * keep[..., None]
    p = rng.uniform(0.05, 0.95, size=(M, N, A))
    p_pop = rng.uniform(0.05, 0.95, size=(M, Z, A))
    mask = np.ones(M, bool)
    mask[6] = False
    targets = [0, 3, 7]
    ev = evaluate({"phi": phi, "loss": loss, "p": p, "p_pop": p_pop}, keep,
                  attacks=("lira_online", "global_threshold", "loss", "rmia_offline", "rmia_online"),
                  targets=targets, model_mask=mask, return_scores=True, rmia_a=0.3, rmia_gamma=1.5)
    np.testing.assert_array_equal(ev.targets, targets)
    pm, pz = p.mean(-1), p_pop.mean(-1)
    for j, t in enumerate(targets):
        ref = mask.copy()
        ref[t] = False
        np.testing.assert_allclose(ev.scores["global_threshold"][j], phi[t].astype(np.float64).mean(-1))
        np.testing.assert_allclose(ev.scores["loss"][j], loss_attack(loss[t]))
        for online in (False, True):
            want = rmia(pm[t], pm[ref], keep[ref], pz[t], pz[ref], online=online, a=0.3, gamma=1.5)
            got = ev.scores["rmia_online" if online else "rmia_offline"][j]
            np.testing.assert_allclose(got, want)
        assert ev["loss"]["auc"][j] == pytest.approx(roc_auc_score(keep[t], ev.scores["loss"][j]))


def test_few_shadows_warn_once_with_the_count_and_bad_inputs_raise():
    rng = np.random.default_rng(3)
    M, N = 6, 40
    phi, keep = stack(rng, M, N, 1, ties=False)
    for i in range(2, N):  # 3 IN, 3 OUT: 2 left on one side, 3 on the other
        keep[:, i] = np.isin(np.arange(M), rng.permutation(M)[:3])
    keep[:, 0] = False
    keep[0, 0] = True  # one IN model: NaN online for the other 5 targets, and for target 0 (zero IN)
    keep[:, 1] = [True, True, False, False, False, False]  # 2 IN: NaN online for targets 0, 1
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ev = evaluate(phi, keep, attacks=("lira_online",), return_scores=True)
    assert [str(w.message) for w in got if issubclass(w.category, FewShadowsWarning)] == [
        "evaluate[lira_online] (6 targets): 8 of 240 scores are NaN (fewer than 2 IN or 2 OUT shadow "
        "models)"]   # once, with the count; every target still has scored members and non-members
    assert not np.isnan(ev["lira_online"]["auc"]).any()
    assert np.isnan(ev.scores["lira_online"][:, 0]).all()
    np.testing.assert_array_equal(np.isnan(ev.scores["lira_online"][:, 1]), [True, True, False, False, False, False])
    with pytest.raises(ValueError, match="unknown attacks"):
        evaluate(phi, keep, attacks=("lira",))
    with pytest.raises(ValueError, match="model_mask"):
        evaluate(phi, keep, targets=[2], model_mask=np.arange(M) != 2)
    with pytest.raises(ValueError, match="loss"):
        evaluate(phi, keep, attacks=("loss",))
    with pytest.raises(TypeError):
        evaluate(phi, keep, colour="red")


# ----------------------------------------------------------------------------- RMIA offline a, tuned once


def brute_force_a(p, keep, p_pop, pseudo, refs, gamma):
    """ML Privacy Meter's grid search by brute force: model ``pseudo`` is attacked by ``refs`` with
    each a in 0, 0.1, ..., 1 (N × Z pairwise comparisons, sklearn AUC); the first best a wins."""
    grid = [round(0.1 * i, 10) for i in range(11)]
    aucs = []
    out = ~keep[refs]
    mean_out = (p[refs] * out).sum(0) / out.sum(0)
    mean_pop = p_pop[refs].mean(0)
    for a in grid:
        rx = p[pseudo] / ((1 + a) / 2 * mean_out + (1 - a) / 2)
        rz = p_pop[pseudo] / ((1 + a) / 2 * mean_pop + (1 - a) / 2)
        s = (rx[:, None] / rz[None, :] > gamma).mean(1)
        ok = np.isfinite(rx)
        aucs.append(roc_auc_score(keep[pseudo][ok], s[ok]))
    return grid[int(np.argmax(aucs))], np.array(aucs)


def rmia_world(rng, M, N, Z):
    keep = rng.random((M, N)) < 0.5
    base, pop = rng.beta(2, 2, size=N), rng.beta(2, 2, size=Z)
    strength = rng.uniform(0.05, 0.4)  # how much members gain: moves the best a around the grid
    p = np.clip(base + strength * keep + 0.08 * rng.normal(size=(M, N)), 1e-3, 1.0)
    p_pop = np.clip(pop + 0.08 * rng.normal(size=(M, Z)), 1e-3, 1.0)
    return keep, p, p_pop


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("M,N,Z,gamma", [(7, 150, 90, 1.0), (10, 80, 120, 2.0)])
def test_rmia_offline_a_tuned_once(rng, M, N, Z, gamma):
    keep, p, p_pop = rmia_world(rng, M, N, Z)
    mask = np.ones(M, bool)
    mask[0] = False  # the first usable model, 1, plays the pseudo-target
    phi = np.zeros((M, N, 1), np.float32)
    ev = evaluate({"phi": phi, "p": p[..., None], "p_pop": p_pop[..., None]}, keep,
                  attacks=("rmia_offline", "rmia_online"), model_mask=mask, return_scores=True, rmia_gamma=gamma,
                  rmia_tune="once")
    prm = ev.params["rmia_offline"]
    assert prm["a_source"] == "tuned_once" and prm["tune_model"] == 1
    want_a, aucs = brute_force_a(p, keep, p_pop, 1, np.arange(2, M), gamma)
    a = prm["a"]
    assert isinstance(a, float)
    assert aucs[int(round(a * 10))] >= aucs.max() - 1e-12  # the best AUC (equal unless near-tied)
    if np.sort(aucs)[-2] < aucs.max() - 1e-9:
        assert a == pytest.approx(want_a, abs=1e-12)
    assert "rmia_online" not in ev.params  # online uses no a
    for j, t in enumerate(ev.targets):
        ref = mask.copy()
        ref[t] = False
        want = rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], a=a, gamma=gamma)
        np.testing.assert_array_equal(ev.scores["rmia_offline"][j], want)
        want = rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], online=True, gamma=gamma)
        np.testing.assert_array_equal(ev.scores["rmia_online"][j], want)

    # the default protocol: every target tunes a among its own references
    old = evaluate({"phi": phi, "p": p, "p_pop": p_pop}, keep, attacks=("rmia_offline",), model_mask=mask,
                   targets=[1, 4], return_scores=True, rmia_gamma=gamma)
    assert old.params["rmia_offline"]["a_source"] == "tuned_per_target"
    for j, t in enumerate([1, 4]):
        ref = mask.copy()
        ref[t] = False
        np.testing.assert_array_equal(old.scores["rmia_offline"][j],
                                      rmia(p[t], p[ref], keep[ref], p_pop[t], p_pop[ref], gamma=gamma))
        refs = np.flatnonzero(ref)
        _, aucs = brute_force_a(p, keep, p_pop, refs[0], refs[1:], gamma)
        assert aucs[int(round(old.params["rmia_offline"]["a"][j] * 10))] >= aucs.max() - 1e-12

    fixed = evaluate({"phi": phi, **{"p": p, "p_pop": p_pop}}, keep, attacks=("rmia_offline",), targets=[2], rmia_a=0.4)
    assert fixed.params["rmia_offline"] == {"a": 0.4, "a_source": "given"}
    with pytest.raises(ValueError, match="rmia_tune"):
        evaluate({"phi": phi, **{"p": p, "p_pop": p_pop}}, keep, attacks=("rmia_offline",), rmia_tune="twice")


def test_a_new_attack_is_one_function_and_one_registry_line(rng):
    """An attack registered at run time (a pure function of the target's signals) runs through
    the one driver like the built-in ones; here -loss twice over, which ranks as the loss attack."""
    from jaxmem.attacks.registry import ATTACKS, register, target_attack

    M, N = 6, 40
    keep = rng.random((M, N)) < 0.5
    loss = rng.exponential(size=(M, N)) + ~keep
    register("double_loss", target_attack(lambda x: -2.0 * np.asarray(x, np.float64), "loss"))
    try:
        ev = evaluate({"loss": loss}, keep, attacks=("double_loss", "loss"), return_scores=True)
    finally:
        del ATTACKS["double_loss"]
    np.testing.assert_array_equal(ev.scores["double_loss"], 2 * ev.scores["loss"])
    np.testing.assert_array_equal(ev.metrics["double_loss"]["auc"], ev.metrics["loss"]["auc"])
    for t in range(M):
        ref = roc_auc_ref(-loss[t], keep[t])
        np.testing.assert_allclose(ev.metrics["double_loss"]["auc"][t], ref, rtol=1e-12)


def roc_auc_ref(scores, members):
    """P(s_in > s_out) + ½ P(tie) by brute force over all pairs."""
    s_in, s_out = scores[members][:, None], scores[~members][None, :]
    return float(((s_in > s_out) + 0.5 * (s_in == s_out)).mean())


def test_roc_groups_infinite_ties(rng):
    """Issue #11 item 2: ties found by equality (inf − inf is NaN): 400 scores all +inf, half
    members, give AUC 0.5; finite and ±inf mixes against the brute force."""
    from jaxmem.attacks.metrics import roc_auc, roc_curve, tpr_at_fpr

    members = np.arange(400) < 200
    s = np.full(400, np.inf)
    assert roc_auc(s, members) == 0.5
    assert batched_roc_metrics(s[None], members[None])[0][0] == 0.5
    fpr, tpr, thr = roc_curve(s, members)
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])
    assert tpr_at_fpr(s, members, 0.01) == 0.0
    for _ in range(5):
        s = rng.normal(size=300)
        m = rng.random(300) < 0.5
        s[rng.random(300) < 0.1] = np.inf
        s[rng.random(300) < 0.1] = -np.inf
        np.testing.assert_allclose(roc_auc(s, m), roc_auc_ref(s, m), rtol=1e-12)
        np.testing.assert_allclose(batched_roc_metrics(s[None], m[None])[0][0], roc_auc_ref(s, m), rtol=1e-12)
