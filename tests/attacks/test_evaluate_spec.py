"""The audit specification (jaxmem.attacks.AuditSpec, issue #20 item 2): built from cfg.scoring,
it stands for the driver's options; RMIA's two tuning protocols are named, and per-target tuning
never reads the target's own membership (brute force: tests/attacks/test_evaluate.py)."""

import dataclasses
import warnings

import numpy as np
import pytest
from test_evaluate import brute_force_a

from jaxmem import config as cfgmod
from jaxmem.attacks import AuditSpec, FewShadowsWarning, UndefinedMetricWarning, evaluate
from jaxmem.attacks.spec import RMIA_TUNINGS


def world(rng, M, N, Z):
    """RMIA's p on N examples and Z population points; each model's members gain a different
    amount, so the best offline a depends on which model plays the target."""
    keep = rng.random((M, N)) < 0.5                    # Bernoulli: no balanced design, no pair out
    base, pop = rng.beta(2, 2, size=N), rng.beta(2, 2, size=Z)
    strength = rng.uniform(0.02, 0.5, size=(M, 1))
    p = np.clip(base + strength * keep + 0.08 * rng.normal(size=(M, N)), 1e-3, 1.0)
    p_pop = np.clip(pop + 0.08 * rng.normal(size=(M, Z)), 1e-3, 1.0)
    return keep, p, p_pop


def test_the_spec_is_cfg_scoring():
    cfg = cfgmod.from_dict({"subsets": {"num_models": 6}, "scoring": {
        "attacks": ["rmia_offline", "lira_online"], "targets": 3,
        "rmia": {"gamma": 2.0, "aggregate": "vote", "trim": 0.2, "a": 0.3, "tuning": "once"}}})
    s = AuditSpec.from_scoring(cfg.scoring)
    assert (s.attacks, s.targets, s.rmia_gamma, s.rmia_aggregate, s.rmia_trim, s.rmia_a, s.rmia_tuning) == \
        (("rmia_offline", "lira_online"), 3, 2.0, "vote", 0.2, 0.3, "once")
    d = AuditSpec.from_scoring(cfgmod.from_dict({}).scoring)
    assert d.rmia_tuning == RMIA_TUNINGS[0] == "per_target" and d.rmia_a is None
    assert d.warnings == "metrics" and d.keep_scores and d.targets == 0
    assert d == AuditSpec.from_scoring(cfgmod.from_dict({}).scoring)    # a value: equal specs compare equal
    assert hash(d) == hash(AuditSpec.from_scoring(cfgmod.from_dict({}).scoring))
    assert d.replace(attacks=["loss"]).attacks == ("loss",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.rmia_tuning = "once"
    assert s.to_json()["rmia_tuning"] == "once" and s.to_json()["attacks"] == ["rmia_offline", "lira_online"]
    # refused at the door, one line naming the field
    with pytest.raises(cfgmod.ConfigError, match=r"^scoring\.rmia\.tuning: must be one of per_target, once"):
        cfgmod.from_dict({"scoring": {"rmia": {"tuning": "twice"}}})
    for bad, field in (({"rmia_tuning": "twice"}, "rmia_tuning"), ({"warnings": "none"}, "warnings"),
                       ({"targets": -1}, "targets"), ({"rmia_a": 1.5}, "rmia_a"),
                       ({"pair_out": "yes"}, "pair_out")):
        with pytest.raises(ValueError, match=f"AuditSpec.{field}"):
            AuditSpec(**bad)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_evaluate_under_a_spec_is_evaluate_with_its_options(rng):
    M, N, Z = 8, 60, 40
    keep, p, p_pop = world(rng, M, N, Z)
    phi = (rng.normal(size=(M, N, 1)) + 0.5 * keep[..., None]).astype(np.float32)
    sig = {"phi": phi, "p": p, "p_pop": p_pop}
    mask = np.ones(M, bool)
    mask[1] = False
    spec = AuditSpec(attacks=("lira_online", "rmia_offline", "rmia_online"), targets=3, rmia_gamma=2.0,
                     rmia_trim=0.1, rmia_tuning="once", num_shadows=5, shadow_seed=4)
    got = evaluate(sig, keep, spec=spec, model_mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = evaluate(sig, keep, ("lira_online", "rmia_offline", "rmia_online"), [0, 2, 3],
                        model_mask=mask, return_scores=True, rmia_gamma=2.0, rmia_trim=0.1, rmia_aggregate="mean",
                        rmia_tune="once", num_shadows=5, shadow_seed=4)
    np.testing.assert_array_equal(got.targets, [0, 2, 3])   # the first 3 usable models
    for a in spec.attacks:
        np.testing.assert_array_equal(got.scores[a], want.scores[a])
    assert got.params == want.params
    # an explicit target list wins over the spec's count
    np.testing.assert_array_equal(evaluate(sig, keep, targets=[4, 5], spec=spec, model_mask=mask).targets, [4, 5])
    # options beside a spec are refused: the spec is the one place
    for kw in ({"attacks": ("loss",)}, {"rmia_a": 0.2}, {"num_shadows": 3}, {"return_scores": False}):
        with pytest.raises(TypeError, match="belong in the AuditSpec"):
            evaluate(sig, keep, spec=spec, **kw)
    # scores kept up to max_kept_scores (targets x examples); the metrics all the same
    small = evaluate(sig, keep, spec=spec.replace(max_kept_scores=3 * N - 1), model_mask=mask)
    assert small.scores is None
    np.testing.assert_array_equal(small.metrics["rmia_offline"]["auc"], got.metrics["rmia_offline"]["auc"])
    assert evaluate(sig, keep, spec=spec.replace(keep_scores=False), model_mask=mask).scores is None


def test_the_warnings_policy():
    """"metrics": the per-example chatter (few shadows) is silenced, an undefined metric is not;
    "all": both come through."""
    rng = np.random.default_rng(3)
    M, N = 5, 40
    keep = rng.random((M, N)) < 0.5                    # 4 shadows: some examples lack 2 IN ones
    phi = rng.normal(size=(M, N, 1)).astype(np.float32)
    undefined = keep.copy()
    undefined[2] = True                                # target 2 has no non-member: AUC undefined

    def kinds(k, policy):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            evaluate(phi, k, spec=AuditSpec(attacks=("lira_online",), warnings=policy))
        return {w.category for w in got}

    assert FewShadowsWarning in kinds(keep, "all") and FewShadowsWarning not in kinds(keep, "metrics")
    assert UndefinedMetricWarning in kinds(undefined, "all") and UndefinedMetricWarning in kinds(undefined, "metrics")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_per_target_tuning_never_reads_the_targets_membership(rng, gamma):
    """Per target: a is the brute-force grid search with the target's first shadow as the pseudo-
    target and its other shadows as references, so permuting the target's own keep row leaves it
    unchanged. Once: one a, tuned with the first usable model as pseudo-target on all the others:
    for that model it is chosen on its own members, and it moves when they are permuted."""
    M, N, Z = 7, 120, 80
    keep, p, p_pop = world(rng, M, N, Z)
    sig = {"p": p, "p_pop": p_pop}
    spec = AuditSpec(attacks=("rmia_offline",), rmia_gamma=gamma, pair_out=False)
    per = evaluate(sig, keep, spec=spec)
    once = evaluate(sig, keep, spec=spec.replace(rmia_tuning="once"))
    a_per = np.asarray(per.params["rmia_offline"]["a"])
    a_once = once.params["rmia_offline"]["a"]
    assert per.params["rmia_offline"]["a_source"] == "tuned_per_target"
    assert once.params["rmia_offline"]["a_source"] == "tuned_once" and once.params["rmia_offline"]["tune_model"] == 0

    def check(got, aucs):   # the best AUC (the first best unless near-tied)
        assert aucs[int(round(got * 10))] >= aucs.max() - 1e-12

    for t in range(M):
        others = np.flatnonzero(np.arange(M) != t)
        check(a_per[t], brute_force_a(p, keep, p_pop, others[0], others[1:], gamma)[1])
    check(a_once, brute_force_a(p, keep, p_pop, 0, np.arange(1, M), gamma)[1])
    # the protocols differ where they should: each target's own pseudo-target vs one for all
    assert len(set(a_per.tolist())) > 1 or a_per[0] != a_once

    moved = False
    for seed in range(6):
        k2 = keep.copy()
        k2[0] = np.random.default_rng(seed).permutation(k2[0])   # target 0's own membership
        per2 = evaluate(sig, k2, targets=[0], spec=spec)
        assert per2.params["rmia_offline"]["a"] == [a_per[0]]          # never read
        np.testing.assert_array_equal(per2.scores["rmia_offline"][0], per.scores["rmia_offline"][0])
        moved |= evaluate(sig, k2, targets=[0], spec=spec.replace(rmia_tuning="once")).params["rmia_offline"]["a"] != a_once
    assert moved   # the once protocol chose a on target 0's own members


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_per_target_tuning_without_two_shadows_is_nan_with_one_warning(rng):
    M, N, Z = 5, 50, 30
    keep, p, p_pop = world(rng, M, N, Z)
    spec = AuditSpec(attacks=("rmia_offline",), num_shadows=1)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        ev = evaluate({"p": p, "p_pop": p_pop}, keep, spec=spec)
    assert np.isnan(ev.params["rmia_offline"]["a"]).all() and np.isnan(ev.scores["rmia_offline"]).all()
    msgs = [str(w.message) for w in got if "tuning a per target is undefined" in str(w.message)]
    assert len(msgs) == 1 and "5 of 5 targets" in msgs[0] and "pass rmia_a" in msgs[0]
    given = evaluate({"p": p, "p_pop": p_pop}, keep, spec=spec.replace(rmia_a=0.5))
    assert given.params["rmia_offline"] == {"a": 0.5, "a_source": "given", "aggregate": "mean", "trim": 0.0}
