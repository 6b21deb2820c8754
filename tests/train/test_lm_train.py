"""The language-model path of the stacked trainer (jaxmem.train.lm): the next-token loss against
float64 NumPy, a model's training independent of its chunk, and the per-chunk signals against a
float64 recomputation from each trained model's logits (and greedy decoding)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest
from helpers_text import float64_signals

from jaxmem import config as cfgmod
from jaxmem.data import build_dataset
from jaxmem.runs.lm import CHUNK_ARRAYS
from jaxmem.runs.lm_signals import chunk_signals
from jaxmem.subsets import make_design
from jaxmem.train import Trainer, steps_per_epoch_max
from jaxmem.train.lm import next_token_loss

TINY = ['data.source="python_text"', 'model.name="causal_lm"', "scoring.attacks=[]", "data.max_len=24",
        "data.max_train=40", "data.text_test_fraction=0.1", "model.d_model=16", "model.num_layers=1",
        "model.num_heads=2", "train.batch_size=8", "train.epochs=3", "train.learning_rate=0.01",
        "subsets.num_models=3", "scoring.prefix_lengths=[2,6]", "scoring.suffix_length=6"]


def _ref_loss(z, tok, lengths, ls=0.0):
    z = np.asarray(z, np.float64)
    tot, cnt = 0.0, 0
    for b in range(z.shape[0]):
        for t in range(z.shape[1] - 1):
            if t + 1 < lengths[b]:
                logq = z[b, t] - z[b, t].max()
                logq = logq - np.log(np.exp(logq).sum())
                target = np.full(z.shape[-1], ls / z.shape[-1])
                target[tok[b, t + 1]] += 1 - ls
                tot -= (target * logq).sum()
                cnt += 1
    return tot / max(cnt, 1)


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_next_token_loss_matches_float64(rng, ls):
    B, L, V = 5, 9, 13
    z = rng.normal(size=(B, L, V)) * 3
    tok = rng.integers(0, V, (B, L))
    lengths = rng.integers(1, L + 1, B)
    lengths[0] = 1                                   # a sequence without target tokens
    got = float(next_token_loss(jnp.asarray(z, jnp.float32), jnp.asarray(tok), jnp.asarray(lengths), ls))
    npt.assert_allclose(got, _ref_loss(z, tok, lengths, ls), rtol=2e-6)
    assert float(next_token_loss(jnp.asarray(z, jnp.float32), jnp.asarray(tok), jnp.ones(B, int))) == 0.0


@pytest.fixture(scope="module")
def trained():
    cfg = cfgmod.load_config(None, TINY)
    ds = build_dataset(cfg)
    keep, _ = make_design(cfg, [{"first": 0, "count": 3, "block": 0}], ds.num_train, units=ds.groups)
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), ds.num_classes,
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    ids = np.arange(3)
    st, status = tr.init_chunk(ids, keep)
    st, status, _ = tr.train_epochs(st, status, keep, ids, 0, tr.num_epochs)
    return cfg, ds, keep, tr, st, status


def test_a_model_trains_the_same_in_any_chunk(trained):
    cfg, ds, keep, tr, st, _ = trained
    one, status = tr.init_chunk(np.array([1]), keep[1:2])
    one, status, _ = tr.train_epochs(one, status, keep[1:2], np.array([1]), 0, tr.num_epochs)
    # compared by their outputs: attention's key bias has an analytically zero gradient (softmax
    # ignores a constant added to every score), whose float noise Adam scales up to lr-sized steps
    apply = jax.jit(lambda p, x: tr.model.apply({"params": p}, x))
    x = jnp.asarray(ds.x_train)
    logits = [np.asarray(apply(jax.tree.map(lambda a: a[m], st.params), x)) for m in (0, 1)]
    alone = np.asarray(apply(jax.tree.map(lambda a: a[0], one.params), x))
    npt.assert_allclose(logits[1], alone, rtol=1e-4, atol=1e-4)
    assert np.abs(logits[0] - logits[1]).max() > 1e-2   # the models differ


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_chunk_signals_equal_a_float64_recomputation_from_logits(trained, dtype):
    import dataclasses

    cfg, ds, keep, tr, st, _ = trained
    if dtype == "float16":
        cfg = dataclasses.replace(cfg, signals=dataclasses.replace(cfg.signals, dtype="float16"))
        tr = Trainer(cfg, tr.x_train, tr.y_train, tr.num_classes, tr.steps_per_epoch_max)
    out = chunk_signals(tr, st, ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    assert set(out) == set(CHUNK_ARRAYS)
    from jaxmem.runs.store import LM_ARRAYS, RUN_ENTRIES  # what a run stores and assembles

    assert LM_ARRAYS == tuple(f"{n}.npy" for n in CHUNK_ARRAYS) and set(LM_ARRAYS) <= set(RUN_ENTRIES)
    N, L = ds.x_train.shape
    assert out["token_logp"].shape == (3, N, L - 1) and out["token_correct"].dtype == bool
    assert out["token_logp"].dtype == (np.float16 if dtype == "float16" else np.float32)
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == "float16" else dict(rtol=2e-5, atol=2e-5)
    apply = jax.jit(lambda p, x: tr.model.apply({"params": p}, x))
    for m in range(3):
        p = jax.tree.map(lambda a: a[m], st.params)
        z = np.asarray(apply(p, jnp.asarray(ds.x_train)))
        for i in range(N):
            ref, nll = float64_signals(z[i], ds.x_train[i], ds.y_train[i])
            for k in ("logp", "mu", "sigma"):
                npt.assert_allclose(out[f"token_{k}"][m, i].astype(np.float64), ref[k], **tol)
            fin = np.isfinite(ref["correct"])
            npt.assert_array_equal(out["token_correct"][m, i][fin], ref["correct"][fin] == 1)
            assert not out["token_correct"][m, i][~fin].any()
            npt.assert_allclose(out["nll"][m, i], nll, rtol=2e-5)
        zt = np.asarray(apply(p, jnp.asarray(ds.x_test)))
        for i in range(ds.num_test):
            ref, nll = float64_signals(zt[i], ds.x_test[i], ds.y_test[i])
            npt.assert_allclose(out["test_token_logp"][m, i].astype(np.float64), ref["logp"], **tol)
            npt.assert_allclose(out["test_nll"][m, i], nll, rtol=2e-5)


def test_extraction_from_token_correct_equals_greedy_decoding(trained, tmp_path):
    """Greedy decoding from a true prefix reproduces the suffix exactly as long as the
    teacher-forced argmax is right: the stored token_correct gives every prefix length's result
    (jaxmem.runs.score_lm.extraction), equal to decoding with signals.lm.greedy_extraction."""
    from jaxmem.runs.score_lm import extraction
    from jaxmem.signals.lm import greedy_extraction

    cfg, ds, keep, tr, st, _ = trained
    out = chunk_signals(tr, st, ds.x_train, ds.y_train, ds.x_test, ds.y_test)

    class FakeRun:   # the two arrays extraction() reads
        labels = ds.y_train

        @staticmethod
        def array(name):
            return out[name]

    apply = lambda p, x: tr.model.apply({"params": p}, x)
    seen = 0
    for k, s in ((2, 6), (6, 6), (1, 20)):
        matched, valid = extraction(FakeRun, k, s)
        npt.assert_array_equal(valid, ds.y_train >= k + s)
        rows = np.flatnonzero(valid)
        for m in range(3):
            p = jax.tree.map(lambda a: a[m], st.params)
            g = greedy_extraction(apply, p, jnp.asarray(ds.x_train[rows, : k + s]), k, s)
            npt.assert_array_equal(matched[m, rows], np.asarray(g.matched))
            seen += int(np.asarray(g.matched).sum())
        assert (matched[:, ~valid] == 0).all()
    assert seen > 0   # some tokens were reproduced: the comparison is not all zeros
