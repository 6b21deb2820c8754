"""Labels out of range (issue #11 item 4): every signal function, the streamed computation and
the driver refuse labels outside [0, C) with a ValueError naming the range; under jit the
documented contract holds (not checked; the value is computed as if z_y were 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem import signals
from jaxmem.signals import check_labels, compute_signals

FUNCTIONS = [signals.logit_scaled_confidence, signals.true_class_probability,
             signals.cross_entropy, signals.correctness, signals.taylor_soft_margin_probability]


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shift", ["one_based", "minus_one"])
def test_out_of_range_labels_raise_naming_the_range(rng, fn, shift):
    z = rng.normal(size=(7, 10))
    y = rng.integers(0, 10, 7)
    y = y + 1 if shift == "one_based" else np.r_[y[:-1], -1]   # 1..10, or a −1
    if shift == "one_based":
        y[0] = 10
    with pytest.raises(ValueError, match=r"labels: must lie in \[0, 10\) for 10 classes; got values in"):
        fn(z, y)
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):   # concrete JAX arrays too
        fn(jnp.asarray(z), jnp.asarray(y))
    ok = np.clip(y, 0, 9)
    np.testing.assert_allclose(fn(z, ok.astype(np.float64)), fn(z, ok))   # integral floats pass


def test_labels_under_jit_follow_the_documented_contract(rng):
    """Traced labels cannot be read: an out-of-range label matches no class, z_y is taken as 0."""
    z = rng.normal(size=(5, 4))
    y = np.array([0, 1, 4, 3, 2])
    got = jax.jit(signals.cross_entropy)(jnp.asarray(z), jnp.asarray(y))
    want = np.log(np.exp(z).sum(-1)) - np.where(y < 4, z[np.arange(5), np.minimum(y, 3)], 0.0)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    assert float(jax.jit(signals.correctness)(jnp.asarray(z), jnp.asarray(y))[2]) == 0.0


def test_check_labels():
    np.testing.assert_array_equal(check_labels([0, 2.0, 1], 3), [0, 2, 1])
    for bad, msg in [([0, 1.5], "non-integer"), ([True, False], "integer class labels"),
                     (["a"], "integer class labels"), ([0, np.nan], "non-integer"),
                     ([0, 3], r"\[0, 3\)"), ([-2, 1], r"\[0, 3\)")]:
        with pytest.raises(ValueError, match=msg):
            check_labels(bad, 3)
    with pytest.raises(ValueError, match=r"must lie in \[0, ∞\)"):
        check_labels([-1, 5])
    with pytest.raises(ValueError, match=r"y: expected shape \(3,\)"):
        check_labels([1, 2], 3, shape=(3,), name="y")


def test_compute_signals_checks_labels_and_test_labels(rng):
    logits = rng.normal(size=(2, 6, 1, 3))
    y = rng.integers(0, 3, 6)
    with pytest.raises(ValueError, match=r"^labels: must lie in \[0, 3\)"):
        compute_signals(logits, y + 1 + (y == 0), ["phi"])
    with pytest.raises(ValueError, match=r"^test_labels: must lie in \[0, 3\)"):
        compute_signals(logits, y, ["phi", "p_pop"], test_logits=logits[:, :4],
                        test_labels=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"^labels: expected shape \(6,\)"):
        compute_signals(logits, y[:5], ["loss"])
