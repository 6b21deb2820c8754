"""jaxmem.attacks.lm against the authors' reference formulas written out in float64 loops, on fresh
random inputs: Min-K% (swj0419/detect-pretrain-code), Min-K%++ (zjysteven/mink-plus-plus, from
logits), zlib ratio, loss, reference-model ratio (per target and leave-one-out) and LiRA."""

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxmem.attacks import lira
from jaxmem.attacks import lm as A
from jaxmem.attacks import lm_reference as AR
from jaxmem.signals import lm as signals_lm


def _ref_min_k(values, ratio):
    """The authors' code: k_length = int(len(all_prob) * ratio); mean of np.sort(...)[:k_length]."""
    k_length = int(len(values) * ratio)
    if k_length == 0:
        return float("nan")
    return float(np.mean(np.sort(np.asarray(values, np.float64))[:k_length]))


RATIOS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_min_k_against_the_reference_rule(rng):
    M, N, T = 3, 8, int(rng.integers(1, 30))
    logp = np.log(rng.random((M, N, T)))
    logp[0, 0, : min(T, 3)] = logp[0, 0, 0]  # ties
    logp[1, 1, 0] = -np.inf  # a token of probability 0
    mask = rng.random((M, N, T)) < 0.85
    logp[~mask & (rng.random((M, N, T)) < 0.5)] = np.nan  # NaN outside the mask is ignored
    ratio = float(rng.choice(RATIOS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.LMAttackWarning)
        got = A.min_k(logp, mask, ratio)
        got1 = A.min_k(logp, mask, ratio, at_least_one=True)
    assert got.shape == (M, N)
    for m in range(M):
        for n in range(N):
            vals = [logp[m, n, t] for t in range(T) if mask[m, n, t]]
            ref = _ref_min_k(vals, ratio)
            if math.isnan(ref):
                assert np.isnan(got[m, n])
            else:
                np.testing.assert_allclose(got[m, n], ref, rtol=1e-12)
            ref1 = float(np.mean(np.sort(vals)[: max(1, int(len(vals) * ratio))])) if vals else float("nan")
            np.testing.assert_allclose(got1[m, n], ref1, rtol=1e-12, equal_nan=True)


def test_min_k_undefined_cases_warn_and_give_nan():
    logp = np.log(np.full((4, 5), 0.5))
    mask = np.ones((4, 5), bool)
    mask[1] = False  # no target token
    mask[2, 1:] = False  # one token, k = 0.2 -> floor(0.2) = 0 tokens
    logp[3, 2] = np.nan
    with pytest.warns(A.LMAttackWarning, match=r"2 of 4 scores are NaN: fewer than 1/k = 5"):
        with pytest.warns(A.LMAttackWarning, match="1 of 4 scores are NaN: a target token's logp is NaN"):
            s = A.min_k(logp, mask, 0.2)
    np.testing.assert_allclose(s[0], math.log(0.5))
    assert np.isnan(s[1:]).all()
    with pytest.raises(ValueError, match="k must be a fraction"):
        A.min_k(logp, mask, 0)
    with pytest.raises(ValueError, match="k must be a fraction"):
        A.min_k(logp, mask, 20)


def test_min_k_plus_plus_from_logits_against_the_reference_code(rng):
    """zjysteven/mink-plus-plus run.py, written out per sequence in float64 numpy from logits."""
    N, L, V = 6, int(rng.integers(3, 25)), int(rng.integers(3, 40))
    logits = rng.normal(size=(N, L, V)) * rng.uniform(0.5, 4)
    tokens = rng.integers(0, V, size=(N, L))
    lengths = rng.integers(2, L + 1, size=N)
    mask = np.arange(L)[None] < lengths[:, None]
    ratio = float(rng.choice(RATIOS))
    sig = signals_lm.token_signals(logits, tokens, mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.LMAttackWarning)
        got = A.min_k_plus_plus(sig.logp, sig.mu, sig.sigma, sig.mask, ratio)
        got_mink = A.min_k(sig.logp, sig.mask, ratio)
    for i in range(N):
        z = logits[i, : lengths[i] - 1]  # logits[0, :-1] of the sequence
        ids = tokens[i, 1: lengths[i]]
        zmax = z.max(-1, keepdims=True)
        log_probs = z - zmax - np.log(np.exp(z - zmax).sum(-1, keepdims=True))
        probs = np.exp(log_probs)
        token_log_probs = log_probs[np.arange(len(ids)), ids]
        mu = (probs * log_probs).sum(-1)
        sigma = (probs * np.square(log_probs)).sum(-1) - np.square(mu)
        mink_plus = (token_log_probs - mu) / np.sqrt(sigma)
        np.testing.assert_allclose(got[i], _ref_min_k(mink_plus, ratio), rtol=1e-8, equal_nan=True)
        np.testing.assert_allclose(got_mink[i], _ref_min_k(token_log_probs, ratio), rtol=1e-12, equal_nan=True)


def test_min_k_plus_plus_sigma_zero_is_nan_with_a_warning():
    lp = np.array([[-1.0, -2.0], [-1.0, -2.0]])
    mu = np.array([[-0.5, -1.0], [-0.5, -1.0]])
    sd = np.array([[1.0, 2.0], [0.0, 2.0]])
    with pytest.warns(A.LMAttackWarning, match="1 of 2 scores are NaN: a target token has sigma = 0"):
        s = A.min_k_plus_plus(lp, mu, sd, np.ones((2, 2), bool), k=1.0)
    np.testing.assert_allclose(s[0], np.mean([-0.5, -0.5]))
    assert np.isnan(s[1])
    # outside the mask sigma = 0 does not matter
    s2 = A.min_k_plus_plus(lp, mu, sd, np.array([[True, True], [False, True]]), k=1.0)
    np.testing.assert_allclose(s2, [-0.5, -0.5])


def test_loss_and_zlib_ratio(rng):
    nll = rng.uniform(0.01, 5, size=(3, 50))
    z = rng.integers(10, 200, size=50)
    np.testing.assert_array_equal(A.lm_loss(nll), -nll)
    s = A.zlib_ratio(nll, z)
    np.testing.assert_allclose(s, -nll / z, rtol=1e-15)
    # ranks exactly as Carlini et al.'s code sorts (zlib / log-perplexity, descending)
    for m in range(3):
        carlini = z / nll[m]
        np.testing.assert_array_equal(np.argsort(-s[m], kind="stable"), np.argsort(-carlini, kind="stable"))
    assert A.zlib_ratio(np.array([0.0]), np.array([8]))[0] == 0.0
    with pytest.raises(ValueError, match="zlib_entropy must be > 0"):
        A.zlib_ratio(nll[0], np.zeros(50))
    nll[0, 3] = np.nan
    with pytest.warns(A.LMAttackWarning, match="1 of 150 scores are NaN: their NLL is NaN"):
        A.lm_loss(nll)


def _loop_reference_score(t, refs, out, mode, min_out=1):
    vals = [refs[r] for r in range(len(refs)) if out[r]]
    if len(vals) < min_out:
        return float("nan")
    ref = sum(vals) / len(vals)
    return ref - t if mode == "difference" else (ref / t if t != 0 else math.copysign(math.inf, ref))


@pytest.mark.parametrize("mode", ["difference", "ratio"])
def test_reference_ratio_against_loops(rng, mode):
    R, N = int(rng.integers(1, 7)), 40
    target = rng.uniform(0.1, 4, N)
    refs = rng.uniform(0.1, 4, (R, N))
    keep = rng.random((R, N)) < 0.5
    keep[:, 0] = True  # no OUT reference
    with pytest.warns(A.LMAttackWarning, match="fewer than 1 OUT reference"):
        got = AR.reference_ratio(target, refs, keep, mode=mode)
    for i in range(N):
        ref = _loop_reference_score(target[i], refs[:, i], ~keep[:, i], mode)
        np.testing.assert_allclose(got[i], ref, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(AR.reference_ratio(target, refs[0], mode=mode),
                               [_loop_reference_score(target[i], refs[:1, i], [True], mode) for i in range(N)],
                               rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.LMAttackWarning)
        g3 = AR.reference_ratio(target, refs, keep, mode=mode, min_out=3)
    for i in range(N):
        assert np.isnan(g3[i]) == ((~keep[:, i]).sum() < 3)


@pytest.mark.parametrize("mode", ["difference", "ratio"])
def test_reference_ratio_loo_equals_per_target_calls(rng, mode):
    M, N = int(rng.integers(2, 9)), 60
    nll = rng.uniform(0.1, 4, (M, N))
    keep = rng.random((M, N)) < 0.5
    nll[0, 5] = np.nan  # a diverged value: it poisons only the references that include it
    use = rng.random(M) < 0.8
    use[0] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", A.LMAttackWarning)
        got = AR.reference_ratio_loo(nll, keep, mode=mode, model_mask=use)
        for t in range(M):
            others = [m for m in range(M) if m != t and use[m]]
            if others:
                want = AR.reference_ratio(nll[t], nll[others], keep[others], mode=mode)
            else:
                want = np.full(N, np.nan)
            np.testing.assert_allclose(got[t], want, rtol=1e-10, equal_nan=True)


def test_reference_calibration_beats_the_loss_attack_under_varying_difficulty(rng):
    """Sanity of direction: when per-example difficulty varies more than the membership effect,
    calibrating by OUT references recovers membership that the raw loss misses."""
    M, N = 16, 2000
    keep = np.argsort(rng.random((M, N)), axis=0) < M // 2  # balanced: every example IN for 8 models
    difficulty = rng.uniform(0.5, 5, N)
    nll = difficulty[None] + rng.normal(0, 0.05, (M, N)) - 0.2 * keep
    loo = AR.reference_ratio_loo(nll, keep)
    auc_ref = np.mean([roc_auc_score(keep[t], loo[t]) for t in range(M)])
    auc_loss = np.mean([roc_auc_score(keep[t], A.lm_loss(nll[t])) for t in range(M)])
    assert auc_ref > 0.95 and auc_loss < 0.6


def test_lm_lira_is_lira_on_minus_nll(rng):
    M, N = 12, 80
    keep = np.argsort(rng.random((M + 1, N)), axis=0) < (M + 1) // 2  # >= 5 IN and OUT shadows each
    nll = rng.uniform(0.5, 3, N)[None] + rng.normal(0, 0.1, (M + 1, N)) - 0.3 * keep
    got = AR.lm_lira(nll[0], nll[1:], keep[1:])
    np.testing.assert_array_equal(got, lira(-nll[0], -nll[1:], keep[1:]))
    off = AR.lm_lira(nll[0], nll[1:], keep[1:], online=False)
    np.testing.assert_array_equal(off, lira(-nll[0], -nll[1:], keep[1:], online=False))
    assert roc_auc_score(keep[0], got) > 0.9


@pytest.mark.parametrize("mode", ["ratio", "difference"])
def test_reference_model_is_carlinis_ratio_of_an_external_models_nll(rng, mode):
    """Issue 21: an external reference model's NLL (MIMIR's "ref"; Carlini et al. 2021 rank by
    log-ppl_ref / log-ppl_target) is its own attack, apart from reference_out (the target's OUT
    models); through the one driver it runs on the signal "reference_nll"."""
    from jaxmem.attacks import evaluate

    M, N = 8, 30
    nll = rng.gamma(2.0, 1.0, (M, N))
    ext = rng.gamma(2.0, 1.0, N)
    got = AR.reference_model(nll, ext, mode=mode)
    for m in range(M):
        for i in range(N):
            want = ext[i] / nll[m, i] if mode == "ratio" else ext[i] - nll[m, i]
            assert math.isclose(got[m, i], want, rel_tol=1e-12)
    with pytest.warns(A.LMAttackWarning, match="1 of 30"):
        e2 = ext.copy()
        e2[3] = np.nan
        assert np.isnan(AR.reference_model(nll[0], e2)[3])
    with pytest.raises(ValueError, match="reference_nll must be"):
        AR.reference_model(nll, ext[:-1])
    keep = rng.random((M, N)) < 0.5
    sig = {"loss": nll, "reference_nll": np.broadcast_to(ext, (M, N))}
    ev = evaluate(sig, keep, attacks=["reference_model", "reference_out", "reference"], return_scores=True)
    for t in range(M):
        np.testing.assert_allclose(ev.metrics["reference_model"]["auc"][t],
                                   roc_auc_score(keep[t], ext / nll[t]), rtol=1e-12)
    # reference_out is the OUT-models attack under its new name; "reference" stays its alias
    np.testing.assert_array_equal(ev.scores["reference_out"], ev.scores["reference"])
    np.testing.assert_allclose(ev.scores["reference_out"], AR.reference_ratio_loo(nll, keep), rtol=1e-12)


def test_recall_is_xie_et_al_ratio(rng):
    """ReCaLL (Xie et al. 2024): LL(x|P) / LL(x) with LL = mean token log-likelihood, lower =
    member in the authors' code; jaxmem's score is its negation. Checked from per-token
    log-probabilities in float64, through evaluate's registry entry too; NLL(x) = 0 is NaN."""
    import warnings

    from jaxmem.attacks import evaluate
    from jaxmem.attacks.lm import LMAttackWarning, recall

    M, N, T = 4, 30, 7
    logp = -rng.exponential(1.0, (M, N, T))            # log p(x_t | x_<t)
    logp_pre = logp - rng.exponential(0.5, (M, N, T))  # the same tokens after a non-member prefix
    ll, ll_pre = logp.mean(-1), logp_pre.mean(-1)      # LL(x), LL(x | P)
    want = -(ll_pre / ll)
    np.testing.assert_allclose(recall(-ll, -ll_pre), want, rtol=1e-12)
    keep = rng.random((M, N)) < 0.5
    keep[:, :2] = [True, False]
    ev = evaluate({"loss": -ll, "prefixed_loss": -ll_pre}, keep, ["recall"], return_scores=True)
    np.testing.assert_allclose(ev.scores["recall"], want, rtol=1e-12)
    nll = -ll[0].copy()
    nll[3] = 0.0
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = recall(nll, -ll_pre[0])
    assert np.isnan(s[3]) and np.isfinite(np.delete(s, 3)).all()
    assert any(issubclass(x.category, LMAttackWarning) and "NLL is 0" in str(x.message) for x in w)
    with pytest.raises(ValueError, match="differ"):
        recall(nll, nll[:5])
