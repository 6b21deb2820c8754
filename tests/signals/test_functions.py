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
    one_based = y + 1
    one_based[0] = 3   # always one label out of range (y + 1 alone may stay in range)
    with pytest.raises(ValueError, match=r"^labels: must lie in \[0, 3\)"):
        compute_signals(logits, one_based, ["phi"])
    with pytest.raises(ValueError, match=r"^test_labels: must lie in \[0, 3\)"):
        compute_signals(logits, y, ["phi", "p_pop"], test_logits=logits[:, :4],
                        test_labels=np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"^labels: expected shape \(6,\)"):
        compute_signals(logits, y[:5], ["loss"])


# --- One shape convention (issue #27 item 4): [N, C], [M, N, C] (a missing query axis means
# A = 1) and [M, N, A, C], labels [N] aligned with the N axis, every shape error naming its axis.

RANKS = ["[N, C]", "[M, N, C]", "[M, N, A, C]"]


def _shape(rank, N, A, C, M=3):
    return {"[N, C]": (N, C), "[M, N, C]": (M, N, C), "[M, N, A, C]": (M, N, A, C)}[rank]


def _reference(name, z, y):
    """float64 numpy/scipy on flat rows [K, C], labels [K]: independent of the code under test."""
    from math import factorial

    from scipy.special import log_softmax, softmax

    rows = np.arange(len(y))
    if name == "logit_scaled_confidence":
        p = softmax(z, axis=-1)[rows, y]
        return np.log(p) - np.log1p(-p)
    if name == "true_class_probability":
        return softmax(z, axis=-1)[rows, y]
    if name == "cross_entropy":
        return -log_softmax(z, axis=-1)[rows, y]
    if name == "correctness":
        return (z.argmax(-1) == y).astype(np.float64)
    if name == "taylor_soft_margin_probability":   # order 4, margin 0.6, T 2: the defaults
        def t(u):
            return sum(u ** k / factorial(k) for k in range(4))
        u = z / 2.0
        num = t(u[rows, y] - 0.6)
        return num / (num + t(u).sum(-1) - t(u[rows, y]))
    raise AssertionError(name)


def _expected(name, z, y):
    """The reference on logits of any documented rank: labels [N] broadcast along the N axis."""
    yy = {2: y, 3: y[None], 4: y[None, :, None]}[z.ndim]
    yy = np.broadcast_to(yy, z.shape[:-1])
    return _reference(name, z.reshape(-1, z.shape[-1]), yy.reshape(-1)).reshape(z.shape[:-1])


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("rank", RANKS)
def test_every_documented_rank_matches_a_float64_reference(rng, fn, rank):
    N, A, C = 7, 2, 5
    z = rng.normal(0, 2, size=_shape(rank, N, A, C))
    y = rng.integers(0, C, N)
    want = _expected(fn.__name__, z, y)
    got = fn(z, y)                                           # labels [N], whatever the rank
    assert got.shape == z.shape[:-1] and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for full in {2: [y], 3: [y[None]], 4: [y[None, :, None], y[:, None]]}[z.ndim]:
        np.testing.assert_allclose(fn(z, full), want, rtol=1e-10, atol=1e-12)   # numpy's rule
    got_jax = fn(jnp.asarray(z, jnp.float32), jnp.asarray(y))    # JAX, concrete and under jit
    np.testing.assert_allclose(np.asarray(got_jax), want, rtol=2e-4, atol=2e-5)
    got_jit = jax.jit(fn)(jnp.asarray(z, jnp.float32), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got_jit), want, rtol=2e-4, atol=2e-5)


def test_labels_are_aligned_with_the_example_axis_even_when_A_equals_N(rng):
    """[M, N, A, C] with A == N: labels [N] must index the example axis, not the query axis
    (plain broadcasting would align them with A and give a silently wrong answer)."""
    N = A = 4
    z = rng.normal(size=(2, N, A, 4))
    y = rng.permutation(4)   # not all equal: aligned with A, the labels would differ
    want = _expected("cross_entropy", z, y)
    np.testing.assert_allclose(signals.cross_entropy(z, y), want, rtol=1e-12)
    assert not np.allclose(signals.cross_entropy(z, np.broadcast_to(y, (2, N, A))), want)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_shape_errors_name_the_axis(rng, fn):
    z4 = rng.normal(size=(3, 6, 2, 4))
    y = rng.integers(0, 4, 6)
    with pytest.raises(ValueError, match=r"^labels: expected \[N\] or a shape that broadcasts to "
                       r"logits \[M, N, A\]; axis N \(examples\) is 6 in logits \[M, N, A, C\] "
                       r"\(3, 6, 2, 4\) but 5 in labels$"):
        fn(z4, y[:5])
    with pytest.raises(ValueError, match=r"^labels: shape \(1, 6, 3\) does not broadcast to logits "
                       r"\[M, N, A, C\] \(3, 6, 2, 4\): axis A \(queries\) is 2 in logits but 3 "
                       r"in labels$"):
        fn(z4, np.broadcast_to(y[None, :, None], (1, 6, 3)))
    with pytest.raises(ValueError, match=r"^labels: shape \(1, 6\) does not broadcast to logits "
                       r"\[M, N, A, C\] \(3, 6, 2, 4\): axis A \(queries\) is 2 in logits but 6 "
                       r"in labels$"):
        fn(z4, y[None])                               # numpy's rule: trailing axes align
    with pytest.raises(ValueError, match=r"^labels: expected \[N\] or at most 3 axes for logits "
                       r"\[M, N, A, C\] \(3, 6, 2, 4\), got shape \(1, 1, 6, 1\)$"):
        fn(z4, y[None, None, :, None])
    with pytest.raises(ValueError, match=r"axis N \(examples\) is 2 in logits \[M, N, C\] "
                       r"\(6, 2, 4\) but 6 in labels; a 3-D array is \[M, N, C\] .*pass logits\[None\]"):
        fn(z4[0], y)                                  # one model's [N, A, C]
    with pytest.raises(ValueError, match=r"^labels: shape \(5,\) does not broadcast to logits "
                       r"\[N, C\] \(6, 4\): axis N \(examples\) is 6 in logits but 5 in labels$"):
        fn(z4[0, :, 0], y[:5])
    np.testing.assert_allclose(fn(z4[0][None], y)[0], fn(z4, y)[0])   # the advertised remedy


@pytest.mark.parametrize("rank", ["[M, N, C]", "[M, N, A, C]"])
@pytest.mark.parametrize("memmap", [False, True])
def test_compute_signals_accepts_every_documented_rank(rng, tmp_path, rank, memmap):
    M, N, Z, A, C = 3, 7, 5, 2, 4
    z = rng.normal(0, 2, size=_shape(rank, N, A, C))
    tz = rng.normal(0, 2, size=(M, Z) + z.shape[2:])
    y, ty = rng.integers(0, C, N), rng.integers(0, C, Z)
    if memmap:
        np.save(tmp_path / "z.npy", z)
        z = np.load(tmp_path / "z.npy", mmap_mode="r")
    names = ["phi", "loss", "p", "correct", "probs", "p_taylor", "correct_query_average",
             "loss_pop", "phi_pop"]
    s = compute_signals(z, y, names, test_logits=tz, test_labels=ty, dtype=np.float64, block=2)
    z4 = np.asarray(z).reshape(M, N, -1, C)
    tz4 = tz.reshape(M, Z, -1, C)
    A = z4.shape[2]
    np.testing.assert_allclose(s["phi"], _expected("logit_scaled_confidence", z4, y), rtol=1e-10)
    np.testing.assert_allclose(s["phi_pop"], _expected("logit_scaled_confidence", tz4, ty), rtol=1e-10)
    np.testing.assert_allclose(s["loss"], _expected("cross_entropy", z4[:, :, 0], y), rtol=1e-10)
    np.testing.assert_allclose(s["loss_pop"], _expected("cross_entropy", tz4[:, :, 0], ty), rtol=1e-10)
    np.testing.assert_allclose(s["p"], _expected("true_class_probability", z4[:, :, 0], y), rtol=1e-10)
    np.testing.assert_allclose(s["correct"], _expected("correctness", z4[:, :, 0], y))
    np.testing.assert_allclose(s["p_taylor"], _expected("taylor_soft_margin_probability", z4, y),
                               rtol=1e-10)
    from scipy.special import softmax
    np.testing.assert_allclose(s["probs"], softmax(z4[:, :, 0], -1), rtol=1e-10)
    assert s["phi"].shape == (M, N, A)
    if A > 1:
        np.testing.assert_allclose(s["correct_query_average"],
                                   _expected("correctness", z4.mean(2), y))
    else:
        assert "correct_query_average" not in s   # equal to correct with one query


def test_compute_signals_shape_errors_name_the_axis(rng):
    z = rng.normal(size=(3, 6, 2, 4))
    y = rng.integers(0, 4, 6)
    tz = rng.normal(size=(3, 5, 2, 4))
    ty = rng.integers(0, 4, 5)
    compute_signals(z, y, ["phi", "p_pop"], test_logits=tz, test_labels=ty)   # fits
    for bad, letter, a, b in [(tz[:, :, :1], "A", 2, 1), (tz[:2], "M", 3, 2), (tz[..., :3], "C", 4, 3)]:
        name = {"A": "queries", "M": "models", "C": "classes"}[letter]
        with pytest.raises(ValueError, match=rf"^test_logits: expected \[M, Z, A, C\] matching logits "
                           rf"\[M, N, A, C\]; axis {letter} \({name}\) is {a} in logits but {b} in "
                           rf"test_logits$"):
            compute_signals(z, y, ["phi", "p_pop"], test_logits=bad, test_labels=ty)
    with pytest.raises(ValueError, match=r"^test_labels: expected shape \(5,\), the axis Z \(examples\) "
                       r"of test_logits \[M, Z, A, C\] \(3, 5, 2, 4\); got \(4,\)$"):
        compute_signals(z, y, ["p_pop"], test_logits=tz, test_labels=ty[:4])
    with pytest.raises(ValueError, match=r"^logits: expected \[M, N, A, C\] or \[M, N, C\] \(one "
                       r"query\), got 2-D shape \(6, 4\); for one model pass logits\[None\]$"):
        compute_signals(z[0, :, 0], y, ["phi"])
    with pytest.raises(ValueError, match=r"^logits: expected \[M, N, A, C\] or \[M, N, C\] \(one "
                       r"query\), got 5-D shape"):
        compute_signals(z[None], y, ["phi"])
    # a test set with one query next to training logits with one: [M, Z, C] is [M, Z, 1, C]
    s = compute_signals(z[:, :, :1], y, ["phi", "phi_pop"], test_logits=tz[:, :, 0], test_labels=ty)
    assert s["phi_pop"].shape == (3, 5, 1)
