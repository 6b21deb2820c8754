"""Leaving a pair out on balanced designs (issue #21): which model is left out, that evaluate's
batched kernel and its per-target calls equal brute-force LiRA / RMIA on the same shadow sets,
and that it is applied exactly where the design couples shadow counts to membership."""

import warnings

import numpy as np
import pytest

from jaxmem.attacks import LIRA_ATTACKS, evaluate, lira, rmia
from jaxmem.attacks.likelihood_ratio import balanced_design, pair_out
from jaxmem.attacks.lm_reference import reference_ratio
from jaxmem.subsets import balanced_keep, bernoulli_keep, fixed_ratio_keep, leave_group_out_keep


def test_balanced_design_tells_the_designs_apart(rng):
    s = int(rng.integers(1000))
    assert balanced_design(balanced_keep(s, 8, 300))
    assert balanced_design(balanced_keep(s, 10, 300, pkeep=0.7))
    grown = np.concatenate([balanced_keep(s, 4, 300), balanced_keep(s, 6, 300, block=1)])
    assert balanced_design(grown)
    groups = rng.integers(-1, 20, size=300)   # −1: always kept (ignored)
    assert balanced_design(leave_group_out_keep(s, 8, groups))
    assert not balanced_design(bernoulli_keep(s, 8, 300))
    assert not balanced_design(fixed_ratio_keep(s, 8, 300, 0.7))
    assert not balanced_design(np.ones((5, 20), bool))


def test_pair_out_leaves_out_one_model_of_the_opposite_membership_uniformly(rng):
    M, N = 9, 4000
    keep = balanced_keep(int(rng.integers(1000)), M, N, pkeep=0.4)
    keep[:, :3] = True                                    # no opposite model for a member
    targets = np.array([0, 4, 8])
    d = pair_out(keep, targets, seed=3)
    assert d.shape == (3, N)
    np.testing.assert_array_equal(d[:, :3], -1)
    for j, t in enumerate(targets):
        dj = d[j, 3:]
        assert (dj != t).all() and (keep[dj, np.arange(3, N)] != keep[t, 3:]).all()
        np.testing.assert_array_equal(pair_out(keep, [t], seed=3)[0], d[j])   # per target
        # uniform among the candidates: each model's count against its expectation
        cand = keep[:, 3:] != keep[t, 3:]
        expect = (cand / cand.sum(0)).sum(1)
        got = np.bincount(dj, minlength=M)
        assert (np.abs(got - expect) <= 5 * np.sqrt(expect) + 1).all(), (got, expect)
    assert not np.array_equal(pair_out(keep, targets, seed=4), d)


@pytest.mark.parametrize("masked", [False, True])
def test_kernel_and_per_target_calls_equal_brute_force_on_the_pair_out_sets(rng, masked):
    M, N, A, Z = 10, 120, 2, 40
    keep = balanced_keep(int(rng.integers(1000)), M, N)
    phi = (rng.normal(size=(M, N, A)) + rng.normal(size=(1, N, 1)) + 0.5 * keep[..., None]).astype(np.float32)
    p = rng.uniform(0.05, 1, size=(M, N))
    p_pop = rng.uniform(0.05, 1, size=(M, Z))
    mask = np.ones(M, bool)
    if masked:
        mask[[2, 7]] = False
    nll = np.exp(rng.normal(size=(M, N)) - 0.5 * keep)
    sig = {"phi": phi, "p": p, "p_pop": p_pop, "loss": nll}
    attacks = tuple(LIRA_ATTACKS) + ("rmia_online", "rmia_offline", "reference_out")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate(sig, keep, attacks=attacks, model_mask=mask, return_scores=True, rmia_a=0.3,
                      shadow_seed=5)
        sub = evaluate(sig, keep, attacks=("lira_online",), model_mask=mask, return_scores=True,
                       num_shadows=4, shadow_seed=5)
        off = evaluate(sig, keep, attacks=("lira_online",), model_mask=mask, return_scores=True,
                       pair_out=False)
    assert all(ev.params[a]["pair_out"] for a in attacks) and "lira_online" not in off.params
    d = pair_out(keep, ev.targets, seed=5)
    for j, t in enumerate(ev.targets):
        assert (keep[d[j], np.arange(N)] != keep[t]).all()
        sh = np.flatnonzero(mask & (np.arange(M) != t))
        use = sh[:, None] != d[j][None, :]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, (online, fixed) in LIRA_ATTACKS.items():
                want = lira(phi[t], phi[sh], keep[sh], online=online, fixed_variance=fixed, shadow_use=use)
                # (rtol 1e-6: with 2-3 shadows a per-example std can be tiny and the score ~1e6, where
                # the kernel's leave-one-out sums and the direct variance differ by ~1e-7 relative)
                np.testing.assert_allclose(ev.scores[name][j], want, rtol=1e-6, atol=1e-8, err_msg=name)
            for online in (True, False):
                want = rmia(p[t], p[sh], keep[sh], p_pop[t], p_pop[sh], online=online, a=0.3, ref_use=use)
                np.testing.assert_array_equal(ev.scores["rmia_online" if online else "rmia_offline"][j], want)
            # the OUT references' mean NLL, brute force in float64 over the same sets
            ref = np.array([nll[[m for m in sh if not keep[m, i] and m != d[j][i]], i].mean() for i in range(N)])
            np.testing.assert_allclose(ev.scores["reference_out"][j], ref - nll[t], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(ev.scores["reference_out"][j],
                                          reference_ratio(nll[t], nll[sh], keep[sh], reference_use=use))
            want = lira(phi[t], phi[sh], keep[sh])   # pair_out=False: every other model
            np.testing.assert_allclose(off.scores["lira_online"][j], want, rtol=1e-6, atol=1e-8)
            # shadow subsets: the subset's models minus the one left out on each example
            ss = sub_shadows = np.sort(np.array([m for m in np.random.default_rng(5).permutation(M)
                                                 if m != t and mask[m]])[:4])
            want = lira(phi[t], phi[ss], keep[ss], shadow_use=ss[:, None] != d[j][None, :])
            np.testing.assert_allclose(sub.scores["lira_online"][j], want, rtol=1e-9, atol=1e-9)
            assert sub_shadows.size == 4
    # members and non-members of every target see the same IN / OUT counts
    for j, t in enumerate(ev.targets):
        sh = mask & (np.arange(M) != t)
        use = sh[:, None] & (np.arange(M)[:, None] != d[j][None, :])
        n_in, n_out = (keep & use).sum(0), (~keep & use).sum(0)
        if not masked:
            assert len(set(zip(n_in, n_out))) == 1


def test_pair_out_option_is_checked():
    keep = balanced_keep(0, 4, 30)
    with pytest.raises(ValueError, match="pair_out"):
        evaluate(np.zeros((4, 30), np.float32), keep, attacks=("lira_offline",), pair_out="yes")
