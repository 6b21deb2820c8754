"""taylor_soft_margin_probability against a float64 loop transcription of the RMIA authors' formula
(ml_privacy_meter research/2023_rmia/signals.py, convert_signals "taylor-soft-margin")."""

import math

import numpy as np
import numpy.testing as npt
import pytest

from jaxmem.signals import taylor_soft_margin_probability


def loop_reference(logits, labels, order, margin, temperature):
    """One example at a time, plain Python floats: t(u) = Σ_{k<order} u^k / k!."""
    def t(u):
        return sum(u ** k / math.factorial(k) for k in range(order))

    flat = logits.reshape(-1, logits.shape[-1])
    lab = np.broadcast_to(labels, logits.shape[:-1]).reshape(-1)
    out = np.empty(flat.shape[0])
    for i, (row, y) in enumerate(zip(flat, lab)):
        u = [float(v) / temperature for v in row]
        num = t(u[y] - margin)
        den = num + sum(t(v) for j, v in enumerate(u) if j != y)
        out[i] = num / den
    return out.reshape(logits.shape[:-1])


@pytest.mark.parametrize("shape,order,margin,temperature", [
    ((7, 10), 4, 0.6, 2.0),
    ((3, 5, 2, 10), 4, 0.6, 1.0),
    ((11, 100), 4, 0.6, 1.0),
    ((4, 6, 3), 6, 0.25, 1.5),
    ((2, 2), 2, 0.0, 0.7),
    ((9, 7), 5, -0.3, 3.0),
])
def test_matches_loop_transcription(shape, order, margin, temperature):
    rng = np.random.default_rng(sum(shape) * 10 + order)
    logits = rng.normal(scale=2.0, size=shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    got = taylor_soft_margin_probability(logits, labels, order=order, margin=margin, temperature=temperature)
    want = loop_reference(logits, labels, order, margin, temperature)
    assert got.shape == shape[:-1] and got.dtype == np.float64
    npt.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


def test_defaults_are_the_cifar10_config():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=3.0, size=(50, 10))  # includes negative-cubic values below u ≈ -1.596
    labels = rng.integers(0, 10, size=50)
    npt.assert_allclose(taylor_soft_margin_probability(logits, labels),
                        loop_reference(logits, labels, 4, 0.6, 2.0), rtol=1e-11, atol=1e-13)


def test_broadcast_labels_and_int_logits():
    rng = np.random.default_rng(6)
    logits = rng.integers(-3, 4, size=(4, 3, 6))
    labels = rng.integers(0, 6, size=(4, 1))
    got = taylor_soft_margin_probability(logits, labels, temperature=1.0)
    want = loop_reference(logits.astype(np.float64), np.broadcast_to(labels, (4, 3)), 4, 0.6, 1.0)
    npt.assert_allclose(got, want, rtol=1e-5)  # integers are computed in float32, as in _prepare


def test_large_order_without_margin_is_tempered_softmax():
    # exp's Taylor series converges everywhere, so order -> inf, m = 0 gives softmax(z / T)_y.
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(40, 10))
    labels = rng.integers(0, 10, size=40)
    for T in (1.0, 2.0):
        s = np.exp(logits / T - (logits / T).max(-1, keepdims=True))
        soft = s[np.arange(40), labels] / s.sum(-1)
        got = taylor_soft_margin_probability(logits, labels, order=60, margin=0.0, temperature=T)
        npt.assert_allclose(got, soft, rtol=1e-12)
        low = taylor_soft_margin_probability(logits, labels, order=4, margin=0.0, temperature=T)
        assert np.abs(low - soft).max() > 1e-3  # the truncation matters at order 4


def test_jax_input_and_jit():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(8)
    logits = rng.normal(size=(5, 8, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=(5, 8))
    want = loop_reference(logits.astype(np.float64), labels, 4, 0.6, 2.0)
    f = jax.jit(lambda z, y: taylor_soft_margin_probability(z, y))
    got = f(jnp.asarray(logits), jnp.asarray(labels))
    assert isinstance(got, jax.Array) and got.shape == (5, 8)
    npt.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=1e-6)


def test_bad_arguments():
    z, y = np.zeros((2, 3)), np.zeros(2, int)
    for order in (1, 0, 2.5):
        with pytest.raises(ValueError, match="order"):
            taylor_soft_margin_probability(z, y, order=order)
    with pytest.raises(ValueError, match="temperature"):
        taylor_soft_margin_probability(z, y, temperature=0.0)
