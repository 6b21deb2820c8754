"""jaxmem.train.records against float64 references: NumPy loops, jax.hessian, analytic gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem.train import records

D, HID, C = 5, 7, 3


def _mlp_params(rng, dtype=np.float64, d=D):
    return {
        "W1": rng.normal(size=(d, HID)).astype(dtype),
        "b1": rng.normal(size=HID).astype(dtype),
        "W2": rng.normal(size=(HID, C)).astype(dtype),
        "b2": rng.normal(size=C).astype(dtype),
    }


def _mlp(p, x):
    return jnp.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def _ref_records(z, y):
    """float64 loops: loss, margin, correct, p_true."""
    z = np.asarray(z, np.float64)
    out = {k: np.empty(len(y)) for k in ("loss", "margin", "correct", "p_true")}
    for i in range(len(y)):
        zi = z[i]
        m = zi.max()
        lse = m + np.log(np.sum(np.exp(zi - m)))
        out["loss"][i] = lse - zi[y[i]]
        out["p_true"][i] = np.exp(zi[y[i]] - lse)
        out["margin"][i] = zi[y[i]] - max(zi[j] for j in range(len(zi)) if j != y[i])
        out["correct"][i] = float(np.argmax(zi) == y[i])
    return out


def test_logit_records_match_float64_loops(rng):
    n, c = 50, 6
    z = rng.normal(scale=3, size=(n, c)).astype(np.float32)
    z[:5, 0] = z[:5, 1] = z[:5].max(axis=1) + 1  # the label ties the top other class: margin 0
    y = rng.integers(0, c, n)
    y[:5] = 0
    ref = _ref_records(z, y)
    r = records.logit_records(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(r.loss, ref["loss"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.p_true, ref["p_true"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.margin, ref["margin"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(r.correct), ref["correct"] > 0)
    assert r.correct.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(r.margin[:5]), 0.0)
    # float16 logits are computed in float32
    r16 = records.logit_records(jnp.asarray(z, jnp.float16), jnp.asarray(y))
    ref16 = _ref_records(z.astype(np.float16), y)
    assert r16.margin.dtype == jnp.float32
    np.testing.assert_allclose(r16.margin, ref16["margin"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        records.margin(jnp.zeros((3, 1)), jnp.zeros(3, int))


def test_epoch_records_over_batches_jit_vmap(rng):
    """Batched, jitted and model-vmapped records equal the direct computation."""
    n, m = 23, 3
    params = [_mlp_params(rng, np.float32) for _ in range(m)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    x = jnp.asarray(rng.normal(size=(n, D)), jnp.float32)
    y = jnp.asarray(rng.integers(0, C, n))

    def rec(p, bs):
        return records.over_batches(lambda xb, yb, ib: records.epoch_records(_mlp, p, xb, yb), x, y, batch_size=bs)

    for bs in (1, 5, 23, 64):
        got = jax.jit(jax.vmap(lambda p, bs=bs: rec(p, bs)))(stacked)
        for k in range(m):
            ref = _ref_records(_mlp(params[k], x), np.asarray(y))
            np.testing.assert_allclose(got.loss[k], ref["loss"], rtol=2e-5, atol=1e-6)
            np.testing.assert_allclose(got.margin[k], ref["margin"], rtol=2e-5, atol=1e-5)
            np.testing.assert_array_equal(np.asarray(got.correct[k]), ref["correct"] > 0)
    with pytest.raises(ValueError, match="batch_size"):
        records.over_batches(lambda *a: a[0], x, y, batch_size=0)


def _directions(key, index, k, shape, dtype):
    return np.stack(
        [
            np.asarray(jax.random.rademacher(jax.random.fold_in(jax.random.fold_in(key, int(i)), k), shape, dtype))
            for i in index
        ]
    )


def _exact_hessians(params, x, y, temperature=1.0):
    def loss(xi, yi):
        z = _mlp(params, xi[None])[0] / temperature
        return jax.nn.logsumexp(z) - z[yi]

    return np.asarray(jax.jit(jax.vmap(jax.hessian(loss)))(x, y))


def test_curvature_hvp_equals_hessian_and_finite_difference_within_h(rng):
    """With the same directions, method='hvp' equals the jax.hessian float64 reference to rounding,
    and the authors' finite differences converge to it at rate O(h)."""
    with jax.enable_x64(True):
        b, niter, temp = 6, 5, 1.7
        params = jax.tree_util.tree_map(jnp.asarray, _mlp_params(rng))
        x = jnp.asarray(rng.normal(size=(b, D)))
        y = jnp.asarray(rng.integers(0, C, b))
        key = jax.random.key(int(rng.integers(2**31)))
        index = np.asarray(rng.permutation(1000)[:b])
        hs = _exact_hessians(params, x, y, temp)
        v = np.stack([_directions(key, index, k, (D,), np.float64) for k in range(niter)])  # [n, B, D]
        hv = np.einsum("bij,kbj->kbi", hs, v)
        ref_trace = np.einsum("kbi,kbi->b", v, hv) / niter
        ref_sq = np.einsum("kbi,kbi->b", hv, hv) / niter
        for h in (1e-3,):
            ref_curv = np.linalg.norm(h * hv, axis=-1).mean(0)
            got = records.input_curvature(
                _mlp, params, x, y, key, h=h, niter=niter, temperature=temp, method="hvp", index=index
            )
            np.testing.assert_allclose(got.curvature, ref_curv, rtol=1e-10)
            np.testing.assert_allclose(got.trace, ref_trace, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(got.trace_sq, ref_sq, rtol=1e-10)
        errs = []
        for h in (1e-2, 1e-4):
            fd = records.input_curvature(_mlp, params, x, y, key, h=h, niter=niter, temperature=temp, index=index)
            ref_curv = np.linalg.norm(h * hv, axis=-1).mean(0)
            err = np.max(np.abs(np.asarray(fd.curvature) / ref_curv - 1))
            np.testing.assert_allclose(fd.trace_sq, ref_sq, rtol=50 * h)
            np.testing.assert_allclose(fd.trace, ref_trace, atol=50 * h * np.abs(hs).sum(axis=(1, 2)).max())
            assert err < 50 * h, (h, err)
            errs.append(err)
        assert errs[1] < errs[0] / 20  # first-order convergence in h


def test_hutchinson_trace_converges_to_exact_trace(rng):
    """The Hutchinson estimate of tr(H_x) (finite differences, the authors' h = 1e-3, float64)
    lies within 5 standard errors of the exact trace; Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for Rademacher v."""
    with jax.enable_x64(True):
        b, niter = 4, 3000
        params = jax.tree_util.tree_map(jnp.asarray, _mlp_params(rng))
        x = jnp.asarray(rng.normal(size=(b, D)))
        y = jnp.asarray(rng.integers(0, C, b))
        key = jax.random.key(int(rng.integers(2**31)))
        got = records.input_curvature(_mlp, params, x, y, key, niter=niter)
        hs = _exact_hessians(params, x, y)
        exact = np.trace(hs, axis1=1, axis2=2)
        off = hs * (1 - np.eye(D))
        se = np.sqrt(2 * (off**2).sum(axis=(1, 2)) / niter)
        assert np.all(np.abs(np.asarray(got.trace) - exact) < 5 * se + 1e-2 * np.abs(exact) + 1e-9), (
            got.trace,
            exact,
            se,
        )
        # ‖Hv‖² = vᵀH²v: the same bound with H² in place of H
        h2 = hs @ hs
        exact2 = np.trace(h2, axis1=1, axis2=2)
        se2 = np.sqrt(2 * ((h2 * (1 - np.eye(D))) ** 2).sum(axis=(1, 2)) / niter)
        assert np.all(np.abs(np.asarray(got.trace_sq) - exact2) < 5 * se2 + 1e-2 * exact2), (got.trace_sq, exact2, se2)


def test_curvature_float32_batching_invariant_and_vmapped(rng):
    """Directions depend on (key, example index, k) only: batch size does not change the result;
    vmapping over models with per-model keys equals a loop."""
    n, m = 13, 2
    params = [_mlp_params(rng, np.float32) for _ in range(m)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    x = jnp.asarray(rng.normal(size=(n, D)), jnp.float32)
    y = jnp.asarray(rng.integers(0, C, n))
    keys = jax.random.split(jax.random.key(int(rng.integers(2**31))), m)

    def run(p, key, bs):
        return records.over_batches(
            lambda xb, yb, ib: records.input_curvature(_mlp, p, xb, yb, key, niter=3, index=ib), x, y, batch_size=bs
        )

    a = jax.jit(jax.vmap(lambda p, k: run(p, k, 4)))(stacked, keys)
    for k in range(m):
        b_ = run(params[k], keys[k], 13)
        # same directions; float32 differences of gradients at h = 1e-3 differ by rounding
        # (~eps·‖∇ℓ‖/(h‖Hv‖) relative) when the batch shape changes the matmul order
        scale = float(np.max(np.asarray(b_.curvature)))
        np.testing.assert_allclose(a.curvature[k], b_.curvature, rtol=2e-3, atol=2e-3 * scale)
        np.testing.assert_allclose(
            a.trace_sq[k], b_.trace_sq, rtol=5e-3, atol=5e-3 * float(np.max(np.asarray(b_.trace_sq)))
        )
        assert a.curvature.dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(a.curvature[k])))
    with pytest.raises(ValueError, match="h must be > 0"):
        records.input_curvature(_mlp, params[0], x, y, keys[0], h=0.0)
    with pytest.raises(ValueError, match="method"):
        records.input_curvature(_mlp, params[0], x, y, keys[0], method="exact")


def test_true_logit_gradient_linear_model_is_analytic(rng):
    """For z = flatten(x) W + b, ∂z_y/∂x = W[:, y] reshaped; channel averaging averages it."""
    hgt, wid, ch, n = 4, 3, 2, 7
    w = rng.normal(size=(hgt * wid * ch, C))
    bias = rng.normal(size=C)
    x = rng.normal(size=(n, hgt, wid, ch)).astype(np.float32)
    y = rng.integers(0, C, n)

    def apply(p, xb):
        return xb.reshape(xb.shape[0], -1) @ p[0] + p[1]

    p = (jnp.asarray(w, jnp.float32), jnp.asarray(bias, jnp.float32))
    g = records.true_logit_input_gradient(apply, p, jnp.asarray(x), jnp.asarray(y))
    ref = np.stack([w[:, y[i]].reshape(hgt, wid, ch) for i in range(n)])
    np.testing.assert_allclose(g, ref, rtol=1e-6)
    g2 = records.true_logit_input_gradient(apply, p, jnp.asarray(x), jnp.asarray(y), channel_axis=-1)
    np.testing.assert_allclose(g2, ref.mean(-1), rtol=1e-6, atol=1e-6)  # float32 weights and mean
    g3 = records.true_logit_input_gradient(apply, p, jnp.asarray(x), jnp.asarray(y), channel_axis=2)
    np.testing.assert_allclose(g3, ref.mean(-1), rtol=1e-6, atol=1e-6)


def test_vog_welford_matches_numpy_variance(rng):
    k, n, p = 6, 9, 4
    grads = (rng.normal(size=(k, n, p)) * 0.1 + 50.0).astype(np.float32)  # large mean: cancellation-prone
    state = records.vog_init((n, p))
    upd = jax.jit(records.vog_update)
    for t in range(k):
        state = upd(state, jnp.asarray(grads[t]))
    assert int(state.count) == k
    g64 = grads.astype(np.float64)
    np.testing.assert_allclose(state.mean, g64.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.m2) / k, g64.var(0), rtol=2e-3, atol=1e-7)


def test_vog_of_a_linear_model_across_checkpoints_is_analytic(rng):
    """Linear checkpoints z = x W_t: S_t = W_t[:, y], so VoG_i = mean_p std_t(W_t[p, y_i]) exactly."""
    from jaxmem.estimators import proxies

    k, d, n = 5, 6, 11
    ws = rng.normal(size=(k, d, C))
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    y = rng.integers(0, C, n)
    state = records.vog_init((n, d))
    grads = []
    for t in range(k):
        g = records.true_logit_input_gradient(lambda w, xb: xb @ w, jnp.asarray(ws[t], jnp.float32), x, jnp.asarray(y))
        grads.append(np.asarray(g))
        state = records.vog_update(state, g)
    ref = np.array([np.mean([np.std([ws[t, p, y[i]] for t in range(k)]) for p in range(d)]) for i in range(n)])
    np.testing.assert_allclose(proxies.vog(np.stack(grads)), ref, rtol=1e-5)
    np.testing.assert_allclose(proxies.vog_from_moments(state.m2, state.count), ref, rtol=1e-4)
