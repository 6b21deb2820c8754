"""Issue #11 at the driver: undefined metrics are NaN (never 0 or 1) with one warning that says
how many targets and why, means over the defined targets with `n_targets` next to them, the
fraction of members / non-members scored, models with NaN/inf signals excluded and named, and
every attack run in blocks of targets. Checked against sklearn and brute force on fresh inputs."""

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxmem.attacks import (
    ATTACKS,
    Evaluation,
    FewScoredWarning,
    FewShadowsWarning,
    NonFiniteModelWarning,
    UndefinedMetricWarning,
    evaluate,
    lira,
    rmia,
    shokri,
)
from jaxmem.attacks.evaluation import aggregate, json_ready

# every attack but Shokri's (its per-target classifier training is slow; its function is tested
# directly below, and through the driver in the block test)
ALL = ("lira_online", "lira_online_fixed_variance", "lira_offline", "lira_offline_fixed_variance",
       "global_threshold", "loss", "rmia_offline", "rmia_online", "rmia_online_research")


def balanced(rng, M, N, k):
    """keep [M, N]: each example IN for exactly k of the M models."""
    keep = np.zeros((M, N), bool)
    for i in range(N):
        keep[rng.permutation(M)[:k], i] = True
    return keep


def world(rng, keep, C=4, Z=60):
    """Signals of every registered kind with a membership effect, from logits."""
    from jaxmem.signals import compute_signals

    M, N = keep.shape
    labels = rng.integers(0, C, N)
    logits = rng.normal(size=(M, N, 1, C))
    logits[np.arange(M)[:, None], np.arange(N)[None], 0, labels[None]] += 1.0 + 1.5 * keep
    test_logits = rng.normal(size=(M, Z, 1, C))
    test_labels = rng.integers(0, C, Z)
    sig = compute_signals(logits, labels, ["phi", "loss", "p", "probs", "p_pop", "p_taylor",
                                           "p_taylor_pop"], test_logits=test_logits,
                          test_labels=test_labels)
    return sig, labels


def caught(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        out = fn()
    return out, got


def test_one_model_trained_on_everything_one_on_nothing(rng):
    """Issue #11 item 1: 16 models, balanced over the other 14; model 0 trained on every
    example, model 1 on none. Their metrics are NaN (not AUC 0, TPR 1), one warning per attack
    says so, and the means are those of the 14 defined targets (sklearn on the same scores)."""
    M, N = 16, 60
    keep = np.zeros((M, N), bool)
    keep[2:] = balanced(rng, 14, N, 7)
    keep[0] = True
    sig, labels = world(rng, keep)
    attacks = ("lira_online", "lira_offline", "global_threshold", "loss", "rmia_online")
    ev, got = caught(lambda: evaluate(sig, keep, attacks=attacks, return_scores=True, rmia_a=0.3,
                                      labels=labels))
    for a in attacks:
        mine = [str(w.message) for w in got if issubclass(w.category, UndefinedMetricWarning)
                and f"evaluate[{a}]" in str(w.message)]
        assert len(mine) == 1, (a, mine)
        assert "undefined (NaN) for 2 of them: 1 with no non-member (keep row all True); 1 with no " \
               "member (keep row all False)" in mine[0]
        for metric, v in ev[a].items():
            assert np.isnan(v[:2]).all() and not np.isnan(v[2:]).any(), (a, metric)
        aucs = [roc_auc_score(keep[t], ev.scores[a][t]) for t in range(2, M)]
        np.testing.assert_allclose(ev[a]["auc"][2:], aucs, rtol=1e-12)
        s = ev.summary()[a]
        assert s["n_targets"] == 14 and s["n_targets_undefined"] == 2
        np.testing.assert_allclose(s["auc"], np.mean(aucs), rtol=1e-12)
        np.testing.assert_allclose(s["auc_std"], np.std(aucs), rtol=1e-9)
        np.testing.assert_allclose(s["tpr_at_0.001_fpr"], np.mean(ev[a]["tpr_at_0.001_fpr"][2:]))
        fr = ev.scored_fraction(a)
        assert np.isnan(fr["non_members"][0]) and np.isnan(fr["members"][1])


def test_too_few_shadows_for_non_members_is_undefined_not_perfect():
    """`jaxmem run --set subsets.num_models=4` in arrays: offline LiRA leaves out one model per
    target, so only the target's members have 2 OUT shadows; they alone are scored and the
    metrics are undefined (it printed AUC 0.0000, TPR 1.0000). Leaving a pair out (the default
    on a balanced design, issue #21) leaves members 1 OUT shadow as well: nothing is scored.
    RMIA offline at M = 2 likewise."""
    rng = np.random.default_rng(4)
    M, N = 4, 200
    keep = balanced(rng, M, N, 2)
    phi = rng.normal(size=(M, N, 1)).astype(np.float32)
    for pair, why, members in ((False, "4 with no non-member scored. 400 of 800", 1.0),
                               (True, "4 with no non-member scored; 4 with no member scored. "
                                      "800 of 800", 0.0)):
        ev, got = caught(lambda: evaluate(phi, keep, attacks=("lira_offline", "lira_online"),
                                          pair_out=pair))
        msgs = [str(w.message) for w in got]
        assert any("evaluate[lira_offline] (4 targets): AUC and TPR@FPR are undefined (NaN) for 4 "
                   f"of them: {why} scores are NaN (fewer than 2 OUT shadow models)" in m
                   for m in msgs), msgs
        assert len([m for m in msgs if "evaluate[lira_offline]" in m]) == 1   # one warning
        for a in ("lira_offline", "lira_online"):
            for v in ev[a].values():
                assert np.isnan(v).all()
            s = ev.summary()[a]
            assert s["n_targets"] == 0 and np.isnan(s["auc"]) and np.isnan(s["tpr_at_0.001_fpr"])
        np.testing.assert_array_equal(ev.scored_fraction("lira_offline")["members"], members)
        np.testing.assert_array_equal(ev.scored_fraction("lira_offline")["non_members"], 0.0)
        np.testing.assert_array_equal(ev.scored_fraction("lira_online")["members"], 0.0)

    keep2 = np.zeros((2, N), bool)
    keep2[0, : N // 2] = True
    keep2[1, N // 2:] = True   # a balanced design on 2 models: complementary
    p = rng.uniform(0.1, 0.9, size=(2, N))
    pop = rng.uniform(0.1, 0.9, size=(2, 50))
    ev, got = caught(lambda: evaluate({"p": p, "p_pop": pop}, keep2, attacks=("rmia_offline",)))
    assert np.isnan(ev["rmia_offline"]["auc"]).all() and ev.summary()["rmia_offline"]["n_targets"] == 0
    assert np.isnan(ev.params["rmia_offline"]["a"]).all()   # no model has a defined tuning AUC
    assert any(issubclass(w.category, UndefinedMetricWarning) and "pass rmia_a" in str(w.message)
               for w in got)


def test_scored_fractions_and_the_few_scored_warning(rng):
    """Per target, the fraction of members and non-members scored equals a count of the non-NaN
    scores; a target left with fewer than 10 scored non-members is named in one warning."""
    M, N = 12, 80
    keep = balanced(rng, M, N, 6)
    keep[0] = np.arange(N) >= 7      # target 0: 7 non-members
    keep[1:, 0] = True               # example 0: no OUT shadow for target 0 (NaN): 6 scored
    phi = (rng.normal(size=(M, N, 1)) + keep[..., None]).astype(np.float32)
    ev, got = caught(lambda: evaluate(phi, keep, attacks=("lira_offline",), return_scores=True))
    sc = ev.scores["lira_offline"]
    ok = ~np.isnan(sc)
    np.testing.assert_array_equal(ev.scored["lira_offline"]["members"], (ok & keep).sum(1))
    np.testing.assert_array_equal(ev.scored["lira_offline"]["non_members"], (ok & ~keep).sum(1))
    fr = ev.scored_fraction("lira_offline")
    np.testing.assert_allclose(fr["members"], (ok & keep).sum(1) / keep.sum(1))
    np.testing.assert_allclose(fr["non_members"], (ok & ~keep).sum(1) / (~keep).sum(1))
    few = [str(w.message) for w in got if issubclass(w.category, FewScoredWarning)]
    n_few = int((np.minimum((ok & keep).sum(1), (ok & ~keep).sum(1)) < 10).sum())
    assert (ok & ~keep)[0].sum() == 6 and n_few >= 1 and len(few) == 1
    assert f"evaluate[lira_offline]: {n_few} of {M} targets have fewer than 10 scored" in few[0]
    assert ev.summary()["lira_offline"]["n_targets_few_scored"] == n_few
    _, got = caught(lambda: evaluate(phi, keep, attacks=("lira_offline",), min_scored=1))
    assert not [w for w in got if issubclass(w.category, FewScoredWarning)]


def test_summary_table_and_json_over_defined_targets(rng):
    """One aggregation: summary(), table(subset) and to_json() agree with a brute force over the
    defined targets; JSON holds null (never NaN) and parses strictly."""
    T, N = 5, 90
    members = rng.random((T, N)) < 0.5
    scores = rng.normal(size=(T, N)) + members
    scores[0, members[0]] = np.nan          # target 0: no member scored
    scores[1] = np.nan                      # target 1: nothing scored
    scores[2, rng.random(N) < 0.3] = np.nan
    scores[3, :4] = np.inf                  # ±inf are scores like any other
    from jaxmem.attacks.roc import roc_metrics

    auc, tprs, sm, sn = roc_metrics(scores, members, (0.001, 0.01), return_counts=True)
    assert np.isnan(auc[:2]).all() and np.isnan(tprs[:, :2]).all()
    ok = ~np.isnan(scores)
    finite = np.nan_to_num(scores, nan=np.nan, posinf=1e300, neginf=-1e300)   # same ranks, for sklearn
    want = [roc_auc_score(members[t][ok[t]], finite[t][ok[t]]) for t in range(2, T)]
    np.testing.assert_allclose(auc[2:], want, rtol=1e-12)
    ev = Evaluation(targets=np.arange(T), metrics={"a": {"auc": auc, "tpr_at_0.001_fpr": tprs[0],
                                                         "tpr_at_0.01_fpr": tprs[1]}},
                    scores={"a": scores}, members=members,
                    scored={"a": {"members": sm, "non_members": sn}},
                    n_members=members.sum(1), n_non_members=(~members).sum(1))
    s = ev.summary()["a"]
    assert s["n_targets"] == 3 and s["n_targets_undefined"] == 2
    np.testing.assert_allclose(s["auc"], np.mean(want), rtol=1e-12)
    np.testing.assert_allclose(s["scored_fraction_members"], np.mean((ok & members).sum(1) / members.sum(1)))
    t = ev.table()["a"]
    assert t["n_targets"] == 3 and t["auc"] == pytest.approx(s["auc"], rel=1e-12)
    np.testing.assert_allclose(t["scored_fraction"], ok.mean(1).mean())
    none = ev.table(np.zeros(N, bool))["a"]      # an empty subset: nothing defined
    assert none["n_targets"] == 0 and np.isnan(none["auc"]) and np.isnan(none["auc_std"])
    sub = members[4]                             # target 4 has no non-member in this subset
    got = ev.table(sub)["a"]
    defined = [t for t in range(T) if (ok[t] & sub & members[t]).any() and (ok[t] & sub & ~members[t]).any()]
    assert 4 not in defined and got["n_targets"] == len(defined)
    want_sub = [roc_auc_score(members[t][ok[t] & sub], finite[t][ok[t] & sub]) for t in defined]
    np.testing.assert_allclose(got["auc"], np.mean(want_sub) if defined else np.nan, rtol=1e-12)
    text = json.dumps(ev.to_json(), allow_nan=False)    # raises on NaN / inf
    back = json.loads(text)
    assert back["per_target"]["a"]["auc"][:2] == [None, None]
    assert back["summary"]["a"]["n_targets"] == 3
    assert json_ready({"x": [np.nan, np.float32(1.5), np.inf], "n": np.int64(3)}) == \
        {"x": [None, 1.5, None], "n": 3}
    zero = aggregate({"auc": np.zeros(0)}, np.zeros(0, int), np.zeros(0, int), np.zeros(0, int),
                     np.zeros(0, int))
    assert zero["n_targets"] == 0 and np.isnan(zero["auc"]) and np.isnan(zero["auc_std"])


@pytest.mark.parametrize("bad", ["nan_model", "one_nan", "inf"])
def test_a_non_finite_model_is_excluded_and_named(rng, bad):
    """Issue #11 item 3: one model's signals NaN (all, or one value) or inf, no model_mask: every
    attack gives what it gives with that model masked out, and the model is named once."""
    M, N = 10, 60
    keep = balanced(rng, M, N, 5)
    sig, labels = world(rng, keep, Z=40)
    clean = {k: v.copy() for k, v in sig.items()}
    if bad == "nan_model":
        for k in sig:
            sig[k][3] = np.nan
    elif bad == "one_nan":
        sig["phi"][3, 7] = np.nan
    else:
        sig["p_pop"][3, 0] = np.inf
    mask = np.arange(M) != 3
    kw = dict(attacks=ALL, return_scores=True, labels=labels, rmia_a=0.4)
    ev, got = caught(lambda: evaluate(sig, keep, **kw))
    ref, got_ref = caught(lambda: evaluate(clean, keep, model_mask=mask, **kw))
    named = [str(w.message) for w in got if issubclass(w.category, NonFiniteModelWarning)]
    assert len(named) == 1 and "models [3]" in named[0]
    assert not [w for w in got_ref if issubclass(w.category, NonFiniteModelWarning)]
    assert ev.excluded_models == [3] and ref.excluded_models == []
    np.testing.assert_array_equal(ev.targets, np.flatnonzero(mask))
    for a in ALL:
        np.testing.assert_array_equal(ev.scores[a], ref.scores[a], err_msg=a)
        for metric in ev[a]:
            np.testing.assert_array_equal(ev[a][metric], ref[a][metric])
    # the run's diverged mask keeps working: a masked model is not read, nor reported
    ev2, got2 = caught(lambda: evaluate(sig, keep, model_mask=mask, targets=[0, 4], **kw))
    assert ev2.excluded_models == [] and not [w for w in got2 if issubclass(w.category, NonFiniteModelWarning)]
    # asking for the bad model as a target: it is dropped (and named)
    ev3, _ = caught(lambda: evaluate(sig, keep, targets=[3, 5], rmia_a=0.4,
                                     attacks=("global_threshold", "rmia_offline")))
    np.testing.assert_array_equal(ev3.targets, [5])


def test_per_target_functions_leave_non_finite_shadows_out(rng):
    M, N, Z = 9, 50, 30
    keep = balanced(rng, M, N, 4)
    phi = (rng.normal(size=(M, N, 2)) + keep[..., None]).astype(np.float32)
    p, pop = rng.uniform(0.1, 0.9, (M, N)), rng.uniform(0.1, 0.9, (M, Z))
    probs = rng.dirichlet(np.ones(3), size=(M, N))
    y = rng.integers(0, 3, N)
    phi[4, 2, 1], p[4, 0], probs[4, 1, 0] = np.nan, np.inf, np.nan
    sh = np.arange(1, M)
    ok = sh != 4
    with pytest.warns(NonFiniteModelWarning, match=r"lira: shadow/reference models \[3\]"):
        got = lira(phi[0], phi[sh], keep[sh])
    np.testing.assert_array_equal(got, lira(phi[0], phi[sh][ok], keep[sh][ok]))
    with pytest.warns(NonFiniteModelWarning, match=r"rmia: .*\[3\]"):
        got = rmia(p[0], p[sh], keep[sh], pop[0], pop[sh], a=0.3)
    np.testing.assert_array_equal(got, rmia(p[0], p[sh][ok], keep[sh][ok], pop[0], pop[sh][ok], a=0.3))
    with pytest.warns(NonFiniteModelWarning, match=r"shokri: .*\[3\]"):
        got = shokri(probs[0], y, probs[sh], keep[sh], steps=20, min_per_class=1)
    np.testing.assert_array_equal(got, shokri(probs[0], y, probs[sh][ok], keep[sh][ok], steps=20,
                                              min_per_class=1))


def test_every_attack_runs_in_blocks_of_targets(rng):
    """Blocks of one target give what one block of all targets gives (issue #11 item 5)."""
    M, N = 5, 40
    keep = balanced(rng, M, N, 3)
    sig, labels = world(rng, keep, Z=30)
    L = 6                                  # and the language-model attacks' per-token signals
    mask = np.arange(L)[None] < rng.integers(1, L + 1, N)[:, None]
    lp = rng.normal(-2, 1, (M, N, L)) + 0.5 * keep[..., None]
    lp[:, ~mask] = -np.inf                 # padding: outside the mask, and not a diverged model
    sig = {**sig, "token_logp": lp, "token_mu": lp - 0.3,
           "token_sigma": rng.uniform(0.5, 1.5, (M, N, L)),
           "token_mask": np.broadcast_to(mask, (M, N, L)),
           "zlib_entropy": np.broadcast_to(rng.uniform(20, 80, N), (M, N))}
    if "recall" in ATTACKS:                # ReCaLL's NLL after a non-member prefix
        sig["prefixed_loss"] = sig["loss"] + rng.uniform(0.1, 0.5, sig["loss"].shape)
    if "reference_model" in ATTACKS:       # an external reference model's NLL, one per example
        sig["reference_nll"] = np.broadcast_to(rng.uniform(0.5, 3.0, N), (M, N))
    kw = dict(attacks=tuple(ATTACKS), return_scores=True, labels=labels, rmia_a=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = evaluate(sig, keep, target_block_elems=N, **kw)
        all_ = evaluate(sig, keep, **kw)
    assert one.excluded_models == [] and len(one.targets) == M
    for a in ATTACKS:   # (XLA may round a block of 1 and of 7 targets differently)
        np.testing.assert_allclose(one.scores[a], all_.scores[a], rtol=1e-12, atol=0, err_msg=a)
        for m in one[a]:
            np.testing.assert_allclose(one[a][m], all_[a][m], rtol=0, atol=1e-12)


def test_labels_out_of_range_are_refused_by_evaluate(rng):
    M, N = 6, 30
    keep = balanced(rng, M, N, 3)
    probs = rng.dirichlet(np.ones(4), size=(M, N))
    for y in (np.r_[rng.integers(0, 4, N - 1), 4], np.r_[rng.integers(1, 4, N - 1), -1]):
        with pytest.raises(ValueError, match=r"labels: must lie in \[0, 4\) for 4 classes"):
            evaluate({"probs": probs}, keep, attacks=("shokri",), labels=y)
    with pytest.raises(ValueError, match=r"labels: expected shape \(30,\)"):
        evaluate({"probs": probs}, keep, attacks=("shokri",), labels=np.zeros(29, int))


def test_few_shadows_warning_category_for_partial_nan(rng):
    """NaN scores without an undefined target: one FewShadowsWarning (per-target path too)."""
    M, N = 8, 60
    keep = balanced(rng, M, N, 4)
    keep[:, 0] = False
    keep[0, 0] = True
    phi = (rng.normal(size=(M, N, 1)) + keep[..., None]).astype(np.float32)
    _, got = caught(lambda: evaluate(phi, keep, attacks=("lira_online",), num_shadows=6))
    few = [str(w.message) for w in got if issubclass(w.category, FewShadowsWarning)]
    assert len(few) == 1 and few[0].startswith("evaluate[lira_online] (8 targets): ")
