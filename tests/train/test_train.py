"""The stacked trainer: chunk independence, determinism, eval mode, divergence isolation, DP-SGD."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.config import load_config
from jaxmem.privacy import dp_epsilon
from jaxmem.subsets import balanced_keep
from jaxmem.train import Trainer, steps_per_epoch_max

RNG = np.random.default_rng


def _data(n=96, t=40, shape=(6, 6, 1), classes=3, seed=0):
    r = RNG(seed)
    centers = r.normal(size=(classes,) + shape).astype(np.float32)
    y = r.integers(0, classes, n + t).astype(np.int32)
    x = (centers[y] + 0.8 * r.normal(size=(n + t,) + shape)).astype(np.float32)
    return x[:n], y[:n], x[n:], y[n:]


_CACHE = {}


def _trainer(overrides, M=6, seed=0, data=None):
    key = (tuple(overrides), M, seed)
    if data is None and key in _CACHE:
        return _CACHE[key]
    out = _build(overrides, M, seed, data)
    if data is None:
        _CACHE[key] = out
    return out


def _build(overrides, M, seed, data):
    xtr, ytr, xte, yte = data or _data()
    cfg = load_config(None, [f"subsets.num_models={M}", "train.epochs=3", "train.batch_size=16", "train.learning_rate=0.01",
                             "model.hidden=[32]", f"seed={seed}", "scoring.attacks=[]",
                             *overrides])
    keep = balanced_keep(cfg.seed, M, len(ytr))
    tr = Trainer(cfg, jnp.asarray(xtr), jnp.asarray(ytr), 3, steps_per_epoch_max(keep, 16))
    return tr, keep, xte


def _train(tr, keep, ids):
    ids = np.asarray(ids)
    state, aux = tr.init_chunk(ids)
    state, aux, records = tr.train_epochs(state, aux, keep[ids], ids, 0, tr.num_epochs)
    return state, aux, records.get("correct")


def test_stacked_equals_one_by_one():
    tr, keep, xte = _trainer([])
    state, aux, _ = _train(tr, keep, np.arange(6))
    stacked = np.asarray(tr.logits(state, jnp.asarray(xte), ["identity"]))
    singles = []
    for m in range(6):
        s, _, _ = _train(tr, keep, [m])
        singles.append(np.asarray(tr.logits(s, jnp.asarray(xte), ["identity"]))[0])
    np.testing.assert_allclose(stacked, np.stack(singles), rtol=1e-5, atol=1e-5)
    # models differ from one another (different init, data order and subsets)
    assert np.abs(stacked[0] - stacked[1]).max() > 1e-2


def test_chunk_position_does_not_matter():
    """Model 4 trained in chunk [4, 5] equals model 4 trained in chunk [0..5]."""
    tr, keep, xte = _trainer(["model.dropout=0.2"])
    s_all, _, _ = _train(tr, keep, np.arange(6))
    s_two, _, _ = _train(tr, keep, [4, 5])
    a = np.asarray(tr.logits(s_all, jnp.asarray(xte), ["identity"]))[4:]
    b = np.asarray(tr.logits(s_two, jnp.asarray(xte), ["identity"]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_lax_map_groups_equal_vmap():
    tr, keep, xte = _trainer([])
    tr2, _, _ = _trainer(["train.vmap_size=2"])
    a = np.asarray(tr.logits(_train(tr, keep, range(6))[0], jnp.asarray(xte), ["identity"]))
    b = np.asarray(tr2.logits(_train(tr2, keep, range(6))[0], jnp.asarray(xte), ["identity"]))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_deterministic_and_seeded():
    tr, keep, xte = _trainer([])
    a = jax.tree.leaves(_train(tr, keep, range(6))[0].params)
    b = jax.tree.leaves(_train(tr, keep, range(6))[0].params)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    tr2, keep2, _ = _trainer([], seed=1)
    c = jax.tree.leaves(_train(tr2, keep2, range(6))[0].params)
    assert any(not np.array_equal(np.asarray(x), np.asarray(z)) for x, z in zip(a, c))


def test_training_learns_and_respects_keep():
    tr, keep, xte = _trainer([])
    state, aux, _ = _train(tr, keep, range(6))
    assert np.all(np.isfinite(np.asarray(aux[1])))
    assert np.all(np.asarray(aux[1]) < 0.6)          # final training loss dropped from ~1.1
    n_in, spe, total = tr.step_counts(keep)
    np.testing.assert_array_equal(n_in, keep.sum(1))
    np.testing.assert_array_equal(spe, -(-keep.sum(1) // 16))
    np.testing.assert_array_equal(total, 3 * spe)


def test_excluded_examples_do_not_influence_a_model():
    """Changing the inputs of examples a model does not train on leaves that model unchanged."""
    xtr, ytr, xte, yte = _data()
    tr, keep, _ = _trainer([], data=(xtr, ytr, xte, yte))
    s1 = _train(tr, keep, [0])[0]
    x2 = xtr.copy()
    x2[~keep[0]] = 123.0
    tr2, _, _ = _trainer([], data=(x2, ytr, xte, yte))
    s2 = _train(tr2, keep, [0])[0]
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_eval_mode_uses_running_statistics():
    tr, keep, xte = _trainer(["model.name=cnn", "model.batch_norm=true", "model.channels=[4, 8]"],
                             M=2)
    state, _, _ = _train(tr, keep, [0, 1])
    x = jnp.asarray(xte)
    full = np.asarray(tr.logits(state, x, ["identity"]))
    part = np.asarray(tr.logits(state, x[:5], ["identity"]))
    # eval mode: an example's logits do not depend on the rest of the batch
    np.testing.assert_allclose(full[:, :5], part, rtol=1e-5, atol=1e-5)
    params0 = jax.tree.map(lambda a: a[0], state.params)
    bs0 = jax.tree.map(lambda a: a[0], state.batch_stats)
    ref = tr.model.apply({"params": params0, "batch_stats": bs0}, x, train=False)
    np.testing.assert_allclose(full[0, :, 0], np.asarray(ref), rtol=1e-5, atol=1e-5)
    # and the running statistics are not the init values (they were updated in training)
    means = [np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(bs0) if "mean" in str(k)]
    assert means and all(np.abs(m).max() > 0 for m in means)
    train_mode, _ = tr.model.apply({"params": params0, "batch_stats": bs0}, x[:5], train=True,
                                   mutable=["batch_stats"])
    assert np.abs(np.asarray(train_mode) - part[0, :, 0]).max() > 1e-4


def test_diverging_model_is_frozen_and_others_unchanged():
    tr, keep, xte = _trainer([])
    ids = np.arange(6)
    state, aux = tr.init_chunk(ids)
    good, good_aux, _ = tr.train_epochs(state, aux, keep[ids], ids, 0, tr.num_epochs)
    state, aux = tr.init_chunk(ids)   # (the step donates its input state)
    first = jax.tree.leaves(state.params)[0]
    poisoned = jax.tree.map(lambda a: a.at[2].set(jnp.nan) if a is first else a, state.params)
    state = state._replace(params=poisoned)
    bad, bad_aux, _ = tr.train_epochs(state, aux, keep[ids], ids, 0, tr.num_epochs)
    np.testing.assert_array_equal(np.asarray(bad_aux[0]), [False, False, True, False, False, False])
    assert not np.asarray(good_aux[0]).any()
    for a, b in zip(jax.tree.leaves(good.params), jax.tree.leaves(bad.params)):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(np.delete(a, 2, 0), np.delete(b, 2, 0))


def test_host_step_loop_equals_the_xla_loop():
    """step_loop=host (CNNs on CPU, jax#12868) trains the same models as the scanned loop:
    BatchNorm, lookahead, forgetting records, a diverging model, epochs in two calls."""
    common = ["model.name=cnn", "model.batch_norm=true", "model.channels=[4]",
              "train.record_forgetting=true", "train.lookahead=ema", "train.lookahead.every=2",
              "train.lookahead.start_epochs=1", "train.epochs=2.5"]
    out = {}
    for loop in ("scan", "host"):
        tr, keep, xte = _trainer(common + [f"train.step_loop={loop}"], M=3)
        assert tr.host_steps == (loop == "host")
        ids = np.arange(3)
        state, aux = tr.init_chunk(ids)
        first = jax.tree.leaves(state.params)[0]
        state = state._replace(params=jax.tree.map(
            lambda a: a.at[1].set(jnp.inf) if a is first else a, state.params))
        state, aux, c1 = tr.train_epochs(state, aux, keep[ids], ids, 0, 1)
        state, aux, c2 = tr.train_epochs(state, aux, keep[ids], ids, 1, 2)
        out[loop] = (np.asarray(tr.logits(state, jnp.asarray(xte), ["identity"])),
                     np.asarray(aux[0]), np.asarray(aux[1]),
                     np.concatenate([np.asarray(c1["correct"]), np.asarray(c2["correct"])], axis=1))
    (la, da, fa, ca), (lb, db, fb, cb) = out["scan"], out["host"]
    np.testing.assert_array_equal(da, [False, True, False])
    np.testing.assert_array_equal(db, da)
    ok = ~da
    np.testing.assert_allclose(lb[ok], la[ok], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fb[ok], fa[ok], rtol=1e-4)
    assert ca.shape == cb.shape == (3, 3, keep.shape[1])
    assert (ca[ok] != cb[ok]).mean() < 0.02   # argmax ties aside, the same records


def test_training_data_is_an_argument_not_a_program_constant():
    """A closed-over array is embedded in the compiled program (CIFAR-10: 600 MB of HLO constant
    in every program); the trainer passes the data in as arguments."""
    from jaxmem.train import epoch_orders

    r = RNG(7)
    x = r.normal(size=(2048, 8, 8, 3)).astype(np.float32)      # 1.5 MB: ~3 MB as HLO hex text
    y = r.integers(0, 3, 2048).astype(np.int32)
    tr, keep, _ = _build(["train.epochs=1", "train.batch_size=256"], 2, 0, (x, y, x[:8], y[:8]))
    ids = np.arange(2)
    state, aux = tr.init_chunk(ids)
    c = tr._chunk(ids, keep)
    orders = epoch_orders(0, c["ids"], c["rows"], 0, 1)
    tr.train_epochs(state, aux, keep, ids, 0, 1)
    state, aux = tr.init_chunk(ids)
    fn = tr._train_fns[("train", 1)]
    text = fn.lower(state, aux, orders, *c["counts"], c["keys"], jnp.int32(0),
                    (tr.x_train, tr.y_train)).as_text()
    assert len(text) < 1_000_000, len(text)
    tr.logits(state, tr.x_train, ["identity"])
    (key,) = [k for k in tr._train_fns if k[0] == "logits"]
    assert len(tr._train_fns[key].lower(state, tr.x_train).as_text()) < 1_000_000


def test_record_forgetting_matches_final_correctness():
    tr, keep, _ = _trainer(["train.record_forgetting=true"])
    state, _, correct = _train(tr, keep, range(3))
    correct = np.asarray(correct)
    assert correct.shape == (3, tr.num_epochs, keep.shape[1]) and correct.dtype == bool
    logits = np.asarray(tr.logits(state, tr.x_train, ["identity"]))[:, :, 0]
    np.testing.assert_array_equal(correct[:, -1], logits.argmax(-1) == np.asarray(tr.y_train))


def test_dp_sgd_trains_and_noise_differs_per_model():
    tr, keep, xte = _trainer(["train.dp.enabled=true", "train.dp.noise_multiplier=0.5",
                              "train.optimizer=sgd", "train.learning_rate=0.1"], M=3)
    state, aux, _ = _train(tr, keep, range(3))
    assert np.all(np.isfinite(np.asarray(aux[1])))
    # noise=0 with clipping only differs from noise 0.5 (the noise is applied)
    tr0, _, _ = _trainer(["train.dp.enabled=true", "train.dp.noise_multiplier=0.0",
                          "train.optimizer=sgd", "train.learning_rate=0.1"], M=3)
    s0, _, _ = _train(tr0, keep, range(3))
    a, b = jax.tree.leaves(state.params)[0], jax.tree.leaves(s0.params)[0]
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4


def test_dp_epsilon_behaves():
    e1 = dp_epsilon(1.0, 0.01, 1000, 1e-5)
    assert np.isfinite(e1) and e1 > 0
    assert dp_epsilon(2.0, 0.01, 1000, 1e-5) < e1 < dp_epsilon(1.0, 0.01, 4000, 1e-5)
    # full-batch Gaussian mechanism: RDP eps(a) = T a / (2 s^2); the classic conversion
    # eps = min_a eps(a) + log(1/delta)/(a-1) is an upper bound on the accountant's answer
    T, s, d = 10, 4.0, 1e-5
    a = np.linspace(1.01, 200, 20000)
    classic = np.min(T * a / (2 * s * s) + np.log(1 / d) / (a - 1))
    got = dp_epsilon(s, 1.0, T, d)
    assert 0.7 * classic < got <= classic + 1e-9


def test_cpu_default_trains_a_model_bit_identically_in_any_chunk():
    """On CPU models train one at a time (train.vmap_size = 0): model m's parameters, loss and
    records are the same bits in a chunk of 1 as in a chunk of 6, whatever its position."""
    if jax.default_backend() != "cpu":
        return
    tr, keep, xte = _trainer(["model.dropout=0.2", "train.epochs=2.5",
                              "train.record_forgetting=true"])
    assert tr.group_size(6) == 1
    s_all, a_all, r_all = _train(tr, keep, np.arange(6))
    p_all = [np.asarray(a) for a in jax.tree.leaves(s_all.params)]
    for m in (0, 4):
        s1, a1, r1 = _train(tr, keep, [m])
        for a, b in zip(p_all, jax.tree.leaves(s1.params)):
            np.testing.assert_array_equal(a[m], np.asarray(b)[0])
        np.testing.assert_array_equal(np.asarray(a_all[1])[m], np.asarray(a1[1])[0])
        np.testing.assert_array_equal(np.asarray(r_all)[m], np.asarray(r1)[0])


def test_a_model_diverging_mid_epoch_is_flagged_and_reset_to_the_epoch_start():
    """A NaN training input makes the models that train on it diverge in the middle of their
    first epoch: they are flagged and keep their state from the start of that epoch (the
    per-model loop checks finiteness once per epoch); every other model trains as if nothing
    happened (bit for bit)."""
    xtr, ytr, xte, yte = _data()
    tr, keep, _ = _trainer([], data=(xtr, ytr, xte, yte))
    i = 7
    bad = keep[:, i]            # the models that train on example i (half of them)
    x2 = xtr.copy()
    x2[i] = np.nan
    tr2, _, _ = _trainer([], data=(x2, ytr, xte, yte))
    ids = np.arange(6)
    init, _ = tr2.init_chunk(ids)
    init = jax.tree.map(np.asarray, init.params)       # (training donates the state)
    good, _, _ = _train(tr, keep, ids)
    state, aux, _ = _train(tr2, keep, ids)
    np.testing.assert_array_equal(np.asarray(aux[0]), bad)
    assert np.isnan(np.asarray(aux[1])[bad]).all() and np.isfinite(np.asarray(aux[1])[~bad]).all()
    for a0, a, b in zip(jax.tree.leaves(init), jax.tree.leaves(state.params),
                        jax.tree.leaves(good.params)):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(a[bad], a0[bad])      # back to the start of epoch 0
        np.testing.assert_array_equal(a[~bad], b[~bad])     # the others untouched
