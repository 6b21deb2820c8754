"""Tests for jaxmem.models: shapes/dtypes, vmapped stacking, BatchNorm semantics, dropout,
WRN parameter count, bf16 compute, causal masking, FLOP count, airbench whitening/dirac init."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem.models import MODEL_NAMES, count_params, flops_per_example, get_model, whitening_kernel

C = 10
TINY_AIRBENCH = dict(widths=(8, 16, 16))
TINY_WRN = dict(depth=10, width=1)
TRANSFORMER = dict(vocab_size=17, max_len=12, d_model=16, num_layers=2, num_heads=2)
LM = dict(d_model=16, num_layers=2, num_heads=2)   # causal_lm: its num_classes is the vocabulary

# (name, kwargs, input shape, input kind)
CASES = {
    "mlp": ("mlp", {}, (3, 64), "float"),
    "mlp-img": ("mlp", dict(hidden=(16, 8)), (3, 8, 8, 1), "float"),
    "cnn-8x8": ("cnn", dict(channels=(4, 8)), (3, 8, 8, 1), "float"),
    "cnn-28x28": ("cnn", dict(channels=(4, 8)), (3, 28, 28, 1), "float"),
    "cnn-32x32x3-bn": ("cnn", dict(channels=(4, 8), batch_norm=True), (3, 32, 32, 3), "float"),
    "cnn-1d-bn": ("cnn", dict(channels=(4, 8), batch_norm=True), (3, 40), "float"),
    "airbench": ("resnet_airbench", TINY_AIRBENCH, (3, 12, 12, 3), "float"),
    "wrn": ("wrn", TINY_WRN, (3, 8, 8, 3), "float"),
    "transformer": ("transformer", TRANSFORMER, (3, 12), "tokens"),
    "transformer-causal": ("transformer", dict(TRANSFORMER, causal=True), (3, 9), "tokens"),
    "causal-lm": ("causal_lm", LM, (2, 12), "tokens"),
}


def _cases(*names, slow=()):
    """pytest params for CASES ``names``; those in ``slow`` (compile-heavy on CPU) marked slow."""
    return [pytest.param(*CASES[n], id=n, marks=[pytest.mark.slow] if n in slow else [])
            for n in (*names, *slow)]


def _input(key, shape, kind):
    if kind == "tokens":
        return jax.random.randint(key, shape, 0, C, jnp.int32)   # valid ids of both token families
    return jax.random.normal(key, shape, jnp.float32)


# Everything below runs jitted: on CPU one XLA compile per function is much cheaper than
# op-by-op dispatch of flax init/apply.
def _init(model, x, seed=0):
    return jax.jit(model.init)(jax.random.key(seed), x)


def _eval_fn(model):
    return jax.jit(lambda v, x: model.apply(v, x))


def _train_fn(model):
    """(variables, x, dropout key) -> (logits, {'batch_stats': updated})."""
    return jax.jit(lambda v, x, key: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                 rngs={"dropout": key}))


def test_model_names_and_unknown():
    assert set(MODEL_NAMES) == {"mlp", "cnn", "resnet_airbench", "wrn", "transformer", "causal_lm", "llama"}
    with pytest.raises(ValueError):
        get_model("vgg", C)


@pytest.mark.parametrize("name,kw,shape,kind", _cases(*[n for n in CASES if n != "causal-lm"]))
def test_shapes_and_dtypes(name, kw, shape, kind):
    model = get_model(name, C, **kw)
    x = _input(jax.random.key(1), shape, kind)
    out = _eval_fn(model)(_init(model, x), x)
    chex.assert_shape(out, (shape[0], C))
    assert out.dtype == jnp.float32
    chex.assert_tree_all_finite(out)


def test_airbench_default_widths_and_lm_shapes():
    model = get_model("resnet_airbench", C)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    out = jax.eval_shape(model.apply, variables, x)
    assert out.shape == (2, C) and out.dtype == jnp.float32
    lm = get_model("causal_lm", C, **LM)
    tok = jnp.zeros((2, 7), jnp.int32)
    v = _init(lm, tok)
    out = _eval_fn(lm)(v, tok)
    chex.assert_shape(out, (2, 7, C))
    assert out.dtype == jnp.float32
    assert v["params"]["pos_embedding"].shape == (7, LM["d_model"])   # positions of its init length
    chex.assert_shape(_eval_fn(lm)(v, tok[:, :4]), (2, 4, C))
    with pytest.raises(ValueError, match="positions"):
        lm.apply(v, jnp.zeros((1, 8), jnp.int32))


@pytest.mark.parametrize("name,kw,shape,kind", _cases(
    "mlp", "cnn-1d-bn", slow=("cnn-8x8", "airbench", "wrn", "transformer")))
def test_vmap_init_and_apply_match_separate_models(name, kw, shape, kind):
    K = 3
    model = get_model(name, C, **kw)
    keys = jax.random.split(jax.random.key(0), K)
    x0 = _input(jax.random.key(9), shape, kind)
    stacked = jax.jit(jax.vmap(lambda k: model.init(k, x0)))(keys)
    # K different parameter sets, each equal to a separate init with the same key.
    leaves = jax.tree_util.tree_leaves(stacked["params"])
    init = jax.jit(lambda k: model.init(k, x0))
    for i in range(K):
        single = init(keys[i])
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[i], stacked), single,
                                    rtol=1e-6, atol=1e-6)
        for j in range(i):
            assert any(not np.allclose(leaf[i], leaf[j]) for leaf in leaves)
    xs = jnp.stack([_input(jax.random.key(10 + i), shape, kind) for i in range(K)])
    out = jax.jit(jax.vmap(lambda v, x: model.apply(v, x)))(stacked, xs)
    apply = jax.jit(model.apply)
    for i in range(K):
        ref = apply(jax.tree_util.tree_map(lambda a: a[i], stacked), xs[i])
        np.testing.assert_allclose(out[i], ref, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name,kw,shape,kind", _cases(
    "cnn-1d-bn", slow=("cnn-32x32x3-bn", "airbench", "wrn")))
def test_batch_stats_are_per_model_under_vmap(name, kw, shape, kind):
    K = 3
    model = get_model(name, C, **kw)
    keys = jax.random.split(jax.random.key(0), K)
    x0 = _input(jax.random.key(9), shape, kind)
    stacked = jax.jit(jax.vmap(lambda k: model.init(k, x0)))(keys)
    # Different data per model, shifted so the statistics clearly differ.
    xs = jnp.stack([_input(jax.random.key(20 + i), shape, kind) * (1 + i) + i for i in range(K)])

    train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    out, upd = jax.jit(jax.vmap(train_apply))(stacked, xs)
    new, old = jax.tree_util.tree_leaves(upd["batch_stats"]), jax.tree_util.tree_leaves(stacked["batch_stats"])
    assert all(not np.allclose(a, b) for a, b in zip(new, old))  # every statistic updated
    for leaf in new:
        for i in range(K):
            for j in range(i):
                assert not np.allclose(leaf[i], leaf[j])
    for i in range(K):
        ref_out, ref_upd = train_apply(jax.tree_util.tree_map(lambda a: a[i], stacked), xs[i])
        np.testing.assert_allclose(out[i], ref_out, rtol=1e-4, atol=1e-4)
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[i], upd), ref_upd,
                                    rtol=1e-4, atol=1e-5)


def _conv1d_same(x, w):
    """float64 loop reference: x [B, L, Cin], w [k, Cin, Cout], SAME (pad (k-1)//2 before)."""
    k = w.shape[0]
    before = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (before, k - 1 - before), (0, 0)))
    out = np.zeros((x.shape[0], x.shape[1], w.shape[2]))
    for t in range(x.shape[1]):
        for s in range(k):
            out[:, t, :] += xp[:, t + s, :] @ w[s]
    return out


def test_first_bn_running_mean_update():
    """new running stats = 0.9 * old + 0.1 * batch stats of the conv output (float64 reference)."""
    model = get_model("cnn", C, channels=(3,), hidden=5, batch_norm=True)
    x = np.random.default_rng(0).normal(size=(6, 9, 2)) + 1.5
    v = _init(model, jnp.asarray(x, jnp.float32))
    _, upd = _train_fn(model)(v, jnp.asarray(x, jnp.float32), jax.random.key(0))
    h = _conv1d_same(x, np.asarray(v["params"]["Conv_0"]["kernel"], np.float64))
    bs = upd["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(bs["mean"], 0.1 * h.mean(axis=(0, 1)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bs["var"], 0.9 + 0.1 * h.var(axis=(0, 1)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("length", [8, 7])
def test_eval_mode_matches_float64_reference_with_running_stats(length):
    rng = np.random.default_rng(length)
    model = get_model("cnn", C, channels=(3,), hidden=5, batch_norm=True)
    x = rng.normal(size=(4, length, 2))
    v = _init(model, jnp.asarray(x, jnp.float32))
    # Random (non-default) running statistics and BN affine parameters.
    stats = dict(mean=rng.normal(size=3), var=rng.uniform(0.5, 2.0, size=3))
    bn = dict(scale=rng.uniform(0.5, 1.5, size=3), bias=rng.normal(size=3))
    v = jax.tree_util.tree_map(lambda a: a, v)
    v["batch_stats"]["BatchNorm_0"] = {k: jnp.asarray(a, jnp.float32) for k, a in stats.items()}
    v["params"]["BatchNorm_0"] = {k: jnp.asarray(a, jnp.float32) for k, a in bn.items()}
    out = _eval_fn(model)(v, jnp.asarray(x, jnp.float32))

    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v["params"])
    h = _conv1d_same(x, p["Conv_0"]["kernel"])
    h = (h - stats["mean"]) / np.sqrt(stats["var"] + 1e-5) * bn["scale"] + bn["bias"]
    h = np.maximum(h, 0.0)
    npool = -(-length // 2)  # SAME pooling: ceil(L / 2) windows, padding only at the end
    hp = np.pad(h, ((0, 0), (0, 2 * npool - length), (0, 0)), constant_values=-np.inf)
    h = hp.reshape(h.shape[0], npool, 2, 3).max(axis=2).reshape(h.shape[0], -1)
    h = np.maximum(h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0.0)
    ref = h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kw,shape,kind", _cases("cnn-1d-bn", "airbench", slow=("wrn",)))
def test_eval_is_per_example_train_is_not(name, kw, shape, kind):
    model = get_model(name, C, **kw)
    x = _input(jax.random.key(1), shape, kind)
    v = _init(model, x)
    train, ev = _train_fn(model), _eval_fn(model)
    # Non-trivial running statistics from one train step.
    _, upd = train(v, x * 2 + 1, jax.random.key(0))
    v = {**v, **upd}
    x_other = x.at[1:].set(_input(jax.random.key(5), shape, kind)[1:] * 3)
    np.testing.assert_allclose(ev(v, x)[0], ev(v, x_other)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ev(v, x)[:1], ev(v, x[:1]), rtol=1e-5, atol=1e-5)
    out, out_other = train(v, x, jax.random.key(0))[0], train(v, x_other, jax.random.key(0))[0]
    assert not np.allclose(out[0], out_other[0], rtol=1e-3, atol=1e-3)


DROPOUT_CASES = [
    pytest.param("mlp", dict(dropout=0.5), (4, 64), "float", id="mlp"),
    pytest.param("cnn", dict(channels=(4,), dropout=0.5), (4, 40), "float", id="cnn"),
    pytest.param("wrn", dict(TINY_WRN, dropout=0.5), (2, 8, 8, 3), "float", id="wrn",
                 marks=pytest.mark.slow),
    pytest.param("transformer", dict(TRANSFORMER, dropout=0.5), (4, 12), "tokens", id="transformer"),
]


@pytest.mark.parametrize("name,kw,shape,kind", DROPOUT_CASES)
def test_dropout_only_in_train_mode(name, kw, shape, kind):
    model = get_model(name, C, **kw)
    x = _input(jax.random.key(1), shape, kind)
    v = _init(model, x)
    train = _train_fn(model)
    evaluate = jax.jit(lambda v, x, key: model.apply(v, x, rngs={"dropout": key}))
    ev = evaluate(v, x, jax.random.key(1))
    np.testing.assert_array_equal(ev, evaluate(v, x, jax.random.key(2)))
    assert not np.allclose(train(v, x, jax.random.key(1))[0], train(v, x, jax.random.key(2))[0])
    if name != "wrn":  # without BN, train mode with rate 0 equals eval mode
        model0 = get_model(name, C, **{**kw, "dropout": 0.0})
        np.testing.assert_allclose(_train_fn(model0)(v, x, jax.random.key(1))[0], ev, rtol=1e-6)


def _wrn_param_count(depth, width, num_classes, in_ch=3):
    """Count by hand from Zagoruyko & Komodakis (2016), Table 1: conv weights (no bias),
    BN scale+bias, 1x1 projection shortcuts where the width changes, final BN and Dense."""
    n = (depth - 4) // 6
    total = 3 * 3 * in_ch * 16
    cin = 16
    for cout in (16 * width, 32 * width, 64 * width):
        for b in range(n):
            total += 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout
            if b == 0 and cin != cout:
                total += cin * cout
            cin = cout
    return total + 2 * cin + cin * num_classes + num_classes


@pytest.mark.parametrize("depth,width", [(28, 2), (16, 4), (10, 1), (22, 3)])
def test_wrn_param_count(depth, width):
    model = get_model("wrn", 10, depth=depth, width=width)
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert count_params(v) == _wrn_param_count(depth, width, 10)
    assert count_params(v["params"]) == count_params(v)  # BN running stats excluded
    if (depth, width) == (28, 2):
        assert abs(count_params(v) - 1.47e6) < 0.005 * 1.47e6  # the published ~1.47M


@pytest.mark.parametrize("name,kw,shape,kind", _cases(
    "mlp", "cnn-1d-bn", "airbench", "causal-lm", slow=("cnn-8x8", "wrn", "transformer")))
def test_bf16_compute_float32_params_and_logits(name, kw, shape, kind):
    x = _input(jax.random.key(1), shape, kind)
    m32 = get_model(name, C, **kw)
    m16 = get_model(name, C, dtype=jnp.bfloat16, **kw)
    v = _init(m16, x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(v))
    chex.assert_trees_all_equal_shapes(v, jax.eval_shape(m32.init, jax.random.key(0), x))
    out16, out32 = _eval_fn(m16)(v, x), _eval_fn(m32)(v, x)
    assert out16.dtype == jnp.float32
    chex.assert_tree_all_finite(out16)
    err = np.linalg.norm(np.asarray(out16) - np.asarray(out32)) / np.linalg.norm(out32)
    assert err < 0.05, err
    out_tr, upd = jax.eval_shape(_train_fn(m16), v, x, jax.random.key(0))
    assert out_tr.dtype == jnp.float32
    # Updated running statistics stay float32 (a training-loop carry must keep its dtype).
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(upd))


def test_causal_lm_logits_ignore_future_tokens():
    lm = get_model("causal_lm", C, **LM)
    tok = _input(jax.random.key(1), (3, 12), "tokens")
    v = _init(lm, tok)
    apply = _eval_fn(lm)
    a = apply(v, tok)
    for t in (0, 5, 10):
        changed = tok.at[:, t + 1:].set((tok[:, t + 1:] + 1) % C)
        b = apply(v, changed)
        np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], rtol=1e-6, atol=1e-6)
        assert not np.allclose(a[:, t + 1:], b[:, t + 1:])


def test_flops_per_example_analytic():
    # Dense layers: 2 * MACs, plus a few elementwise ops (bias, relu) that XLA also counts.
    mlp = get_model("mlp", 10)
    macs = 64 * 256 + 256 * 10
    f = flops_per_example(mlp, (64,))
    assert 2 * macs <= f <= 1.05 * 2 * macs
    cnn = get_model("cnn", 10, channels=(8, 16), hidden=32)
    macs = 40 * 3 * 1 * 8 + 20 * 3 * 8 * 16 + 10 * 16 * 32 + 32 * 10
    f = flops_per_example(cnn, (40,))
    assert 2 * macs <= f <= 1.25 * 2 * macs
    lm = get_model("causal_lm", C, **LM)
    assert flops_per_example(lm, (12,)) > 2 * 12 * LM["num_layers"] * 12 * 16 ** 2


def test_airbench_dirac_init():
    model = get_model("resnet_airbench", C, **TINY_AIRBENCH)
    v = _init(model, jnp.zeros((1, 12, 12, 3)))
    w = np.asarray(v["params"]["_AirbenchGroup_1"]["Conv_0"]["kernel"])  # [3, 3, 8, 16]
    cin = w.shape[2]
    ident = np.zeros((3, 3, cin, cin))
    ident[1, 1] = np.eye(cin)
    np.testing.assert_array_equal(w[..., :cin], ident)
    assert np.std(w[..., cin:]) > 0


def test_whitening_kernel_whitens_patches():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, 3))
    imgs = rng.normal(size=(40, 10, 10, 3)) @ mix + 0.5  # correlated channels, non-zero mean
    imgs[:, 1:] += 0.7 * imgs[:, :-1]  # spatial correlation
    w = whitening_kernel(imgs, kernel_size=2, eps=1e-9)
    assert w.shape == (2, 2, 3, 24)
    # Apply the first half of the filter bank with XLA's conv (independent of the patch code):
    # the uncentred second moment of the outputs must be the identity.
    f = jax.lax.conv_general_dilated(jnp.asarray(imgs, jnp.float32), jnp.asarray(w[..., :12], jnp.float32),
                                     (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    f = np.asarray(f, np.float64).reshape(-1, 12)
    np.testing.assert_allclose(f.T @ f / f.shape[0], np.eye(12), atol=2e-3)
    np.testing.assert_array_equal(w[..., 12:], -w[..., :12])
    # It slots into the airbench stem.
    model = get_model("resnet_airbench", C, **TINY_AIRBENCH)
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert v["params"]["stem"]["kernel"].shape == w.shape
