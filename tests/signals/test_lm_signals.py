"""jaxmem.signals.lm against float64 Python loops over tokens and vocabulary, on fresh random
inputs: per-token log-probabilities, Min-K%++'s mu / sigma, argmax correctness, sequence
reductions, the batched model path, and greedy extraction on a hand-built lookup-table LM."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem.signals import lm as S


def _loop_reference(logits, tokens, mask):
    """Float64 loops: dict of [..., L-1] arrays (NaN outside the target mask / for NaN rows)."""
    lead, (L, V) = logits.shape[:-2], logits.shape[-2:]
    out = {k: np.full(lead + (L - 1,), np.nan) for k in ("logp", "mu", "sigma", "correct")}
    for idx in np.ndindex(*lead):
        for t in range(L - 1):
            if not (mask[idx + (t,)] and mask[idx + (t + 1,)]):
                continue
            z = [float(v) for v in logits[idx + (t,)]]
            if any(math.isnan(v) for v in z):
                continue
            m = max(z)
            lse = m + math.log(sum(math.exp(v - m) for v in z))
            lq = [v - lse for v in z]
            p = [math.exp(v) for v in lq]
            mu = sum(pi * li for pi, li in zip(p, lq) if pi > 0)
            var = sum(pi * (li - mu) ** 2 for pi, li in zip(p, lq) if pi > 0)
            y = int(tokens[idx + (t + 1,)])
            out["logp"][idx + (t,)] = lq[y]
            out["mu"][idx + (t,)] = mu
            out["sigma"][idx + (t,)] = math.sqrt(var)
            best = max(range(V), key=lambda v: (z[v], -v))  # first maximal id
            out["correct"][idx + (t,)] = float(best == y)
    return out


def _random_case(rng, lead=(3, 4), dtype=np.float32):
    L, V = int(rng.integers(2, 9)), int(rng.integers(2, 12))
    logits = (rng.normal(size=lead + (L, V)) * rng.uniform(0.5, 6)).astype(dtype)
    tokens = rng.integers(0, V, size=lead + (L,))
    mask = rng.random(lead + (L,)) < 0.8  # holes anywhere, some rows empty
    return logits, tokens, mask


def _close(a, b, tol):
    np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_token_signals_numpy_against_loops(rng, dtype):
    logits, tokens, mask = _random_case(rng, dtype=dtype)
    logits[0, 0, 0, 0] = np.nan  # a diverged row: every signal NaN there
    logits[1, 1, :, 1] = -np.inf  # probability 0 for token 1
    ref = _loop_reference(logits, tokens, mask)
    # blocks of one row at a time and one big block give the same values
    for block in (1, 1 << 24):
        sig = S.token_signals(logits, tokens, mask, block_elements=block)
        for k in ("logp", "mu", "sigma", "correct"):
            assert getattr(sig, k).dtype == np.float64
            _close(getattr(sig, k), ref[k], 1e-9)
        np.testing.assert_array_equal(sig.mask, mask[..., :-1] & mask[..., 1:])
    assert np.isnan(sig.logp[0, 0, 0])


def test_token_signals_jax_against_loops_under_jit_and_vmap(rng):
    logits, tokens, mask = _random_case(rng, lead=(5, 3))
    logits[2, 1, 0] = np.nan
    ref = _loop_reference(logits, tokens, mask)
    z, t, m = jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(mask)
    sig = S.token_signals(z, t, m, block_rows=4)  # 15 rows in blocks of 4: a remainder block
    for k in ("logp", "mu", "sigma", "correct"):
        assert isinstance(getattr(sig, k), jax.Array)
        _close(getattr(sig, k), ref[k], 2e-5)
    jitted = jax.jit(lambda a, b, c: S.token_signals(a, b, c, stats=("logp", "sigma")))(z, t, m)
    assert jitted.mu is None and jitted.correct is None
    _close(jitted.logp, ref["logp"], 2e-5)
    vm = jax.vmap(lambda a, b, c: S.token_signals(a, b, c).logp)(z, t, m)
    _close(vm, ref["logp"], 2e-5)
    bf = S.token_signals(z.astype(jnp.bfloat16), t, m, stats=("logp",))
    assert bf.logp.dtype == jnp.float32


def test_token_signals_reads_a_memmap_in_blocks(rng, tmp_path):
    logits, tokens, mask = _random_case(rng, lead=(2, 6), dtype=np.float16)
    mm = np.lib.format.open_memmap(tmp_path / "logits.npy", mode="w+", dtype=np.float16, shape=logits.shape)
    mm[:] = logits
    mm.flush()
    ro = np.load(tmp_path / "logits.npy", mmap_mode="r")
    a = S.token_signals(ro, tokens, mask, block_elements=ro.shape[-1] * ro.shape[-2], dtype=np.float32)
    b = S.token_signals(logits, tokens, mask)
    assert a.logp.dtype == np.float32
    _close(a.logp, b.logp, 1e-6)
    _close(a.sigma, b.sigma, 1e-6)


def test_degenerate_distributions_and_ties():
    V = 5
    logits = np.zeros((3, 2, V))
    logits[0, 0, 2] = 1e4  # one-hot at 2 (float64: the rest underflow to probability 0)
    tokens = np.array([[0, 2], [0, 3], [0, 0]])
    sig = S.token_signals(logits, tokens)
    assert sig.logp[0, 0] == 0.0 and sig.sigma[0, 0] == 0.0 and sig.mu[0, 0] == 0.0
    # uniform: mu = -log V, sigma = 0 (not NaN); all tied -> argmax is the lowest id (0)
    np.testing.assert_allclose(sig.mu[1:, 0], -math.log(V))
    assert np.all(sig.sigma[1:, 0] < 1e-12)
    assert sig.correct[1, 0] == 0.0 and sig.correct[2, 0] == 1.0
    js = S.token_signals(jnp.asarray(logits, jnp.float32), jnp.asarray(tokens))
    np.testing.assert_array_equal(np.asarray(js.correct), sig.correct)


def test_sequence_reductions_against_loops(rng):
    x = rng.normal(size=(4, 6, 9))
    mask = rng.random((4, 6, 9)) < 0.5
    mask[0, 0] = False
    x[~mask] = np.nan  # ignored outside the mask
    with pytest.warns(RuntimeWarning, match="no target token"):
        nll = S.sequence_nll(x, mask)
    for i in range(4):
        for j in range(6):
            sel = [x[i, j, t] for t in range(9) if mask[i, j, t]]
            if sel:
                assert abs(nll[i, j] + sum(sel) / len(sel)) < 1e-12
            else:
                assert np.isnan(nll[i, j])
    with pytest.warns(RuntimeWarning):
        acc = S.token_accuracy((x > 0).astype(float), mask)
    jx = S.masked_mean(jnp.asarray((x > 0).astype(np.float32)), jnp.asarray(mask))
    _close(jx, acc, 1e-6)
    assert np.isnan(np.asarray(jx)[0, 0])


def test_input_errors():
    with pytest.raises(ValueError, match="logits.shape"):
        S.token_signals(np.zeros((2, 3, 4)), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="L >= 2"):
        S.token_signals(np.zeros((2, 1, 4)), np.zeros((2, 1), int))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        S.token_signals(np.zeros((2, 3, 4)), np.full((2, 3), 4))
    with pytest.raises(ValueError, match="stats"):
        S.token_signals(np.zeros((2, 3, 4)), np.zeros((2, 3), int), stats=("entropy",))
    with pytest.raises(ValueError, match="mask"):
        S.token_signals(np.zeros((2, 3, 4)), np.zeros((2, 3), int), np.ones((2, 2), bool))


# ----------------------------------------------------------------------------- a lookup-table LM


def _table_lm(params, x):
    """A deterministic causal LM: the logits at t are table[x[t-1], x[t]] (x[-1] := 0)."""
    prev = jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    return params[prev, x]


def _greedy_loop(table, prefix, s):
    buf = [int(v) for v in prefix]
    for _ in range(s):
        t = len(buf) - 1
        z = table[buf[t - 1] if t > 0 else 0, buf[t]]
        buf.append(int(np.argmax(z)))  # numpy: first maximal id
    return buf[len(prefix):]


def test_lm_token_signals_equals_token_signals_on_full_logits(rng):
    V, N, L = 7, 11, 6
    table = jnp.asarray(rng.normal(size=(V, V, V)) * 2, jnp.float32)
    tokens = rng.integers(0, V, size=(N, L))
    mask = rng.random((N, L)) < 0.9
    full = S.token_signals(np.asarray(_table_lm(table, jnp.asarray(tokens)), np.float64), tokens, mask)
    got = S.lm_token_signals(_table_lm, table, tokens, mask, batch_size=4)  # 11 = 4 + 4 + 3 (padded)
    for k in ("logp", "mu", "sigma", "correct"):
        _close(getattr(got, k), getattr(full, k), 2e-5)
    np.testing.assert_array_equal(got.mask, full.mask)


def test_greedy_extraction_against_a_python_loop(rng):
    V, B = 9, 40
    k, s = int(rng.integers(1, 5)), int(rng.integers(1, 7))
    L = k + s + int(rng.integers(0, 3))
    table = rng.normal(size=(V, V, V)).astype(np.float32)
    seqs = rng.integers(0, V, size=(B, L))
    expect_matched = []
    for b in range(B):
        gen = _greedy_loop(table, seqs[b, :k], s)
        kind = b % 3
        if kind == 0:  # memorized: the true suffix is the model's own greedy continuation
            seqs[b, k:k + s] = gen
            expect_matched.append(s)
        elif kind == 1:  # first mismatch at a random position j
            j = int(rng.integers(0, s))
            seqs[b, k:k + s] = gen
            seqs[b, k + j] = (gen[j] + 1 + int(rng.integers(0, V - 1))) % V
            expect_matched.append(j)
        else:  # random suffix
            expect_matched.append(next((j for j in range(s) if gen[j] != seqs[b, k + j]), s))
    mask = np.ones((B, L), bool)
    mask[5, k + s - 1:] = False  # too short to score
    res = S.greedy_extraction(_table_lm, jnp.asarray(table), jnp.asarray(seqs), k, s, jnp.asarray(mask))
    for b in range(B):
        assert list(np.asarray(res.generated[b])) == _greedy_loop(table, seqs[b, :k], s)
    np.testing.assert_array_equal(np.asarray(res.matched), expect_matched)
    np.testing.assert_array_equal(np.asarray(res.extracted), np.asarray(expect_matched) == s)
    assert not bool(res.valid[5]) and int(np.asarray(res.valid).sum()) == B - 1
    # jit-able with the model, k and s static; the true suffix is never read by the decoder
    f = jax.jit(S.greedy_extraction, static_argnums=(0, 3, 4))
    other = seqs.copy()
    other[:, k:] = rng.integers(0, V, size=(B, L - k))
    np.testing.assert_array_equal(np.asarray(f(_table_lm, jnp.asarray(table), jnp.asarray(other), k, s).generated),
                                  np.asarray(res.generated))
    with pytest.raises(ValueError, match="prefix_len"):
        S.greedy_extraction(_table_lm, jnp.asarray(table), jnp.asarray(seqs), k, L)
    with pytest.raises(ValueError, match="prefix_len"):
        S.greedy_extraction(_table_lm, jnp.asarray(table), jnp.asarray(seqs), 0, 1)
