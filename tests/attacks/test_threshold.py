"""Loss/confidence threshold attacks and the Shokri et al. (2017) shadow attack."""

import numpy as np
import numpy.testing as npt
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from jaxmem.attacks.threshold import confidence_attack, loss_attack, shokri


def test_loss_and_confidence_attacks():
    rng = np.random.default_rng(0)
    loss = rng.exponential(size=(40, 3))
    npt.assert_allclose(loss_attack(loss), [-sum(r) / 3 for r in loss])
    npt.assert_allclose(loss_attack(loss[:, 0]), -loss[:, 0])
    conf = rng.random((40, 5))
    npt.assert_allclose(confidence_attack(conf), [sum(r) / 5 for r in conf])
    # members (lower loss) rank higher
    members = rng.random(40) < 0.5
    l1 = rng.exponential(size=40) * np.where(members, 0.2, 1.0)
    assert roc_auc_score(members, loss_attack(l1)) > 0.7


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def world(rng, M, N, C, boost):
    """Shadow/target outputs; a member's true-class logit is raised by ``boost``."""
    y = rng.integers(0, C, N)
    hard = rng.normal(0, 1.0, N)  # per-example difficulty shared by all models

    def outputs(keep):
        z = rng.normal(0, 1.0, keep.shape + (C,))
        true = np.eye(C, dtype=bool)[y]
        z = z + true * (1.0 + hard + boost * keep)[..., None]
        return softmax(z)

    keep = rng.random((M, N)) < 0.5
    tkeep = rng.random(N) < 0.5
    return outputs(tkeep), y, outputs(keep), keep, tkeep


@pytest.mark.parametrize("C,hidden,top_k", [(4, 16, None), (10, 0, 3)])
def test_shokri_finds_signal(C, hidden, top_k):
    rng = np.random.default_rng(C)
    tp, y, sp, keep, tkeep = world(rng, 8, 1500, C, boost=2.5)
    s = shokri(tp, y, sp, keep, hidden=hidden, top_k=top_k, steps=200, max_samples=2000)
    assert s.shape == (1500,) and np.isfinite(s).all()
    assert roc_auc_score(tkeep, s) > 0.7


def test_shokri_at_chance_without_signal():
    rng = np.random.default_rng(11)
    tp, y, sp, keep, tkeep = world(rng, 8, 3000, 5, boost=0.0)
    s = shokri(tp, y, sp, keep, hidden=16, steps=200, max_samples=2000)
    assert abs(roc_auc_score(tkeep, s) - 0.5) < 0.05


def test_shokri_logistic_regression_matches_sklearn():
    # hidden=0 is L2-regularized logistic regression: mean log-loss + l2·|w|², i.e. sklearn's
    # C = 1 / (2·n·l2). Compare the per-class decision functions on standardized sorted features.
    rng = np.random.default_rng(5)
    M, N, C, l2 = 4, 300, 3, 1e-3
    tp, y, sp, keep, _ = world(rng, M, N, C, boost=1.5)
    got = shokri(tp, y, sp, keep, hidden=0, l2=l2, steps=3000, lr=0.02, max_samples=10**6,
                 min_per_class=1)
    want = np.empty(N)
    for c in range(C):
        i = np.flatnonzero(y == c)
        f = -np.sort(-sp[:, i].reshape(-1, C), axis=-1)
        t = keep[:, i].reshape(-1)
        mu, sd = f.mean(0), f.std(0)
        clf = LogisticRegression(C=1 / (2 * len(t) * l2), tol=1e-10, max_iter=10000)
        clf.fit((f - mu) / sd, t)
        want[i] = clf.decision_function((-np.sort(-tp[i], axis=-1) - mu) / sd)
    npt.assert_allclose(got, want, atol=0.02)


def test_shokri_rejects_bad_shapes():
    rng = np.random.default_rng(0)
    tp, y, sp, keep, _ = world(rng, 3, 20, 3, boost=1.0)
    with pytest.raises(ValueError):
        shokri(tp[:10], y, sp, keep)
    with pytest.raises(ValueError):
        shokri(tp, y + 3, sp, keep)


def test_the_loss_attack_of_a_run_is_the_identity_querys_loss(rng):
    """Code and docs agree (issue #27): a run's loss attack scores −cross-entropy of the identity
    query (Yeom et al.), float64 numpy reference; averaging happens only for [N, A] inputs."""
    from jaxmem.attacks import evaluate
    from jaxmem.signals import compute_signals

    M, N, A, C = 5, 60, 3, 4
    logits = rng.normal(size=(M, N, A, C)) * 3
    labels = rng.integers(0, C, size=N)
    keep = rng.random((M, N)) < 0.5
    sig = compute_signals(logits, labels, ["loss"], dtype=np.float64)
    ev = evaluate(sig, keep, attacks=("loss",), return_scores=True)
    z = logits[:, :, 0]
    ce = np.log(np.exp(z).sum(-1)) - np.take_along_axis(z, labels[None, :, None], -1)[..., 0]
    np.testing.assert_allclose(ev.scores["loss"], -ce, rtol=1e-12, atol=1e-12)
    per_query = np.log(np.exp(logits).sum(-1)) - np.take_along_axis(logits, labels[None, :, None, None], -1)[..., 0]
    np.testing.assert_allclose(loss_attack(per_query[0]), -per_query[0].mean(-1), rtol=1e-12)


def test_shokri_trains_only_what_it_uses_and_blocks_change_nothing(rng, monkeypatch):
    """A class too thin for its own classifier uses the all-class one, a class absent from the
    targets gets none; the classifiers trained are exactly those used, and training them in
    blocks of 1 or all at once gives the same scores (each classifier trains independently)."""
    from jaxmem.attacks import threshold as th

    tp, y, sp, keep, _ = world(rng, 6, 400, 5, boost=1.0)
    y = y.copy()
    y[y == 4] = 3                       # class 4 absent
    y[np.flatnonzero(y == 2)[3:]] = 1   # class 2: 3 examples, too few pairs for its own model
    trained = []
    real = th._train_block
    monkeypatch.setattr(th, "_train_block", lambda X, *a, **k: trained.append(X.shape[0]) or real(X, *a, **k))
    kw = dict(hidden=8, steps=60, max_samples=1500, min_per_class=20)
    one = th.shokri(tp, y, sp, keep, class_block=1, **kw)
    assert trained == [1] * 4           # classes 0, 1, 3 and the all-class fallback
    trained.clear()
    allk = th.shokri(tp, y, sp, keep, class_block=16, **kw)
    assert trained == [4]
    np.testing.assert_allclose(one, allk, rtol=1e-5, atol=1e-5)
