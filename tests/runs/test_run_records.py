"""Training-dynamics records stored by a run (train.records) against a direct float64
recomputation from the models' parameters after each epoch (a NumPy forward pass and analytic
input gradients of the MLP, no JAX model code) and from the run's saved logits; their storage
plan; a killed run resumes to the same records."""

from __future__ import annotations

import json
import signal

import helpers_run as H
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem import runs as R
from jaxmem.runs import workdir as W

SETS = ["subsets.num_models=3", "train.chunk_size=2", "train.epochs=3", "train.batch_size=32",
        "train.learning_rate=0.01", "data.max_train=120", "data.max_test=40", "model.hidden=[16]",
        "scoring.attacks=[]", "train.checkpoint_every=1",
        'train.records.fields=["loss","margin","p_true","correct"]', "train.records.every=2",
        "train.records.curvature_epochs=[1,3]", "train.records.curvature_niter=3",
        "train.records.vog_epochs=[1,2,3]", "train.records.batch_size=50"]


def _relu_mlp(p, x):
    """float64 forward pass of jaxmem's MLP (one hidden layer): pre-activations and logits."""
    x = x.reshape(x.shape[0], -1)
    a = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    return a, np.maximum(a, 0) @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


def _ref_records(z, y):
    """loss, margin, correct, p_true from logits, float64."""
    n = len(y)
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    zy = z[np.arange(n), y]
    other = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1)
    return {"loss": lse - zy, "margin": zy - other, "correct": z.argmax(1) == y, "p_true": np.exp(zy - lse)}


def _loss_grad(p, x, y):
    """∂CE/∂x of the MLP, analytic, float64: W1 (relu'(a) ⊙ W2 (softmax(z) − e_y))."""
    a, z = _relu_mlp(p, x)
    s = np.exp(z - z.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    s[np.arange(len(y)), y] -= 1
    return ((s @ p["Dense_1"]["kernel"].T) * (a > 0)) @ p["Dense_0"]["kernel"].T


def _logit_grad(p, x, y):
    """∂z_y/∂x of the MLP, analytic, float64."""
    a, _ = _relu_mlp(p, x)
    return ((p["Dense_1"]["kernel"][:, y].T) * (a > 0)) @ p["Dense_0"]["kernel"].T


def _directions(key, n, k, d):
    """The documented stream: example i's k-th direction = rademacher(fold_in(fold_in(key, i), k))."""
    return np.stack([np.asarray(jax.random.rademacher(jax.random.fold_in(jax.random.fold_in(key, i), k), (d,),
                                                      jnp.float32), np.float64) for i in range(n)])


def _replay(cfg, keep):
    """Per model: float64 params after each epoch, retrained with the trainer's own chunking."""
    from jaxmem.data import build_dataset
    from jaxmem.runs.training import chunk_size as _chunk_size
    from jaxmem.runs.training import chunks as _chunks
    from jaxmem.train import Trainer, steps_per_epoch_max

    ds = build_dataset(cfg)
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    K, M = _chunk_size(cfg), keep.shape[0]
    params = {m: [] for m in range(M)}
    for a, b in _chunks([{"first": 0, "count": M}], K):
        ids = np.arange(a, a + K)
        rows = keep[np.minimum(ids, M - 1)]
        state, status = tr.init_chunk(ids, rows)
        for e in range(tr.num_epochs):
            state, status, _ = tr.train_epochs(state, status, rows, ids, e, 1)
            host = jax.tree.map(lambda v: np.asarray(v, np.float64), state.params)
            for j, m in enumerate(range(a, b)):
                params[m].append(jax.tree.map(lambda v, j=j: v[j], host))
    return ds, tr, params


def test_stored_records_equal_a_float64_recomputation_from_params_and_logits(tmp_path):
    cfg = cfgmod.load_config(None, SETS)
    wd = tmp_path / "run"
    R.execute(cfg, wd, progress=False, log=lambda *a: None)
    run = R.load_run(wd)
    keep = np.asarray(run.keep)
    M, N = keep.shape
    ds, tr, params = _replay(cfg, keep)
    x = np.asarray(ds.x_train, np.float64).reshape(N, -1)
    y = np.asarray(ds.y_train)
    assert run.record_epochs("loss") == [2, 3] and run.record_epochs("curvature") == [1, 3]
    for name in ("loss", "margin", "p_true", "correct"):
        rec = run.record(name)
        assert rec.shape == (M, 2, N), name
        for m in range(M):
            for r, e in enumerate(run.record_epochs(name)):
                ref = _ref_records(_relu_mlp(params[m][e - 1], x)[1], y)[name]
                if name == "correct":
                    margin = _ref_records(_relu_mlp(params[m][e - 1], x)[1], y)["margin"]
                    sure = np.abs(margin) > 1e-4          # argmax of float32 logits: ties aside
                    np.testing.assert_array_equal(rec[m, r][sure], ref[sure])
                else:
                    np.testing.assert_allclose(rec[m, r], ref, rtol=2e-4, atol=2e-5, err_msg=name)
    # the last record equals the one computed from the saved logits (the same eval pass)
    z = np.asarray(run.logits[:, :, 0], np.float64)
    for m in range(M):
        ref = _ref_records(z[m], y)
        for name in ("loss", "margin", "p_true"):
            np.testing.assert_allclose(run.record(name)[m, -1], ref[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(run.record("correct")[m, -1], ref["correct"])
    # curvature (Garg et al.): the authors' finite differences along the documented directions
    from jaxmem.train.rng import CURVATURE, model_keys

    h, niter = cfg.train.records.curvature_h, cfg.train.records.curvature_niter
    keys = model_keys(cfg.seed, CURVATURE, np.arange(M))
    for m in range(M):
        for r, e in enumerate(run.record_epochs("curvature")):
            p = params[m][e - 1]
            key = jax.random.fold_in(keys[m], e - 1)
            g0 = _loss_grad(p, x, y)
            norm = np.zeros(N)
            vdg = np.zeros(N)
            sq = np.zeros(N)
            for k in range(niter):
                v = _directions(key, N, k, x.shape[1])
                dg = _loss_grad(p, x + h * v, y) - g0
                norm += np.linalg.norm(dg, axis=1) / niter
                vdg += (v * dg).sum(1) / (niter * h)
                sq += (dg * dg).sum(1) / (niter * h * h)
            # float32 gradients differenced at h = 1e-3 carry ~eps·|g|/h of rounding; a ReLU kink
            # within rounding of x + h·v can fall on the other side in float32 (rare)
            for name, ref in (("curvature", norm), ("curvature_trace", vdg), ("curvature_trace_sq", sq)):
                got = run.record(name)[m, r]
                close = np.isclose(got, ref, rtol=2e-2, atol=2e-2 * np.abs(ref).max())
                assert close.mean() > 0.97, (name, m, e, close.mean())
    # VoG (Agarwal et al.): per-pixel std over the checkpoints of ∂z_y/∂x, mean over pixels
    vog = run.record("vog")
    for m in range(M):
        g = np.stack([_logit_grad(params[m][e - 1], x, y) for e in cfg.train.records.vog_epochs])
        np.testing.assert_allclose(vog[m], g.std(axis=0).mean(axis=1), rtol=2e-3, atol=1e-6)
    # every proxy of the stored records equals a plain float64 loop over them
    from jaxmem.estimators.proxies import PROXIES, memorization_score

    def loop(name, v):   # v: one example's records over epochs, Python floats
        mean = sum(v) / len(v)
        return {"cumulative_accuracy": -sum(1.0 for t in v if t) / len(v),
                "forgetting": float(len(v)) if not any(v) else float(sum(1 for a, b in zip(v, v[1:]) if a and not b)),
                "cumulative_confidence": -mean, "aum": -mean, "curvature": mean, "cumulative_sample_loss": sum(v),
                "cartography_variability": (sum((t - mean) ** 2 for t in v) / len(v)) ** 0.5}[name]

    source = {"cumulative_accuracy": "correct", "forgetting": "correct", "cumulative_confidence": "p_true",
              "cartography_variability": "p_true", "aum": "margin", "cumulative_sample_loss": "loss",
              "curvature": "curvature"}
    assert set(source) | {"vog"} == set(PROXIES)
    for name, rec in source.items():
        got = memorization_score(name, run.record(rec))
        stored = np.asarray(run.record(rec))
        ref = [[loop(name, [float(t) for t in stored[m, :, i]]) for i in range(N)] for m in range(M)]
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=name)
    # the storage plan counts every record file
    files = [f for d in [wd, *(wd / "shards").iterdir()] for f in d.glob("*.npy")
             if f.name not in ("keep.npy", "labels.npy", "example_ids.npy", "test_labels.npy", "test_ids.npy",
                               "model_ratio.npy")]
    plan = W.storage_plan(cfg, M, N, len(run.test_labels), int(ds.num_classes))
    assert plan["total"] == sum(np.load(f, mmap_mode="r").nbytes for f in files)
    assert not (wd / "ckpt").exists() or not any((wd / "ckpt").iterdir()), "records left behind"


def test_killed_run_resumes_to_the_same_records():
    sets = SETS + ["train.records.dtype=float16"]
    ref = H.finished_reference(tuple(sets))
    wd = H.fresh_dir("records-kill")
    p = H.start(wd, sets)
    assert H.kill_when(p, lambda: H.ckpt_steps(wd) and max(H.ckpt_steps(wd)) >= 2, sig=signal.SIGTERM)
    assert p.returncode == 143, H.log_text(p)[-3000:]
    r = H.run_here(wd, sets)
    assert r.returncode == 0, r.stderr[-3000:]
    H.assert_same_run(ref, wd)
    cfg = cfgmod.from_dict(json.loads((ref / "config.json").read_text()))
    names = ["vog.npy"] + [f"{n}_by_epoch.npy" for n in ("loss", "margin", "p_true", "correct", "curvature")]
    for f in names:
        a, b = np.load(ref / f), np.load(wd / f)
        assert a.dtype == b.dtype and (f != "loss_by_epoch.npy" or a.dtype == np.float16)
        np.testing.assert_array_equal(a, b, err_msg=f)
    assert cfg.train.records.dtype == "float16"


@pytest.mark.parametrize("bad", ["truncated", "missing"])
def test_records_of_a_checkpoint_must_be_there(tmp_path, bad):
    """A checkpoint whose record files were removed or damaged is refused with the folder to delete."""
    from jaxmem.io import RunError
    from jaxmem.runs.records import ChunkRecords

    cfg = cfgmod.load_config(None, SETS)
    from jaxmem.data import build_dataset
    from jaxmem.train import Trainer

    ds = build_dataset(cfg)
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes), 2)
    folder = tmp_path / "ckpt" / "models-000000-000002.records"
    ChunkRecords(tr, folder, 2).open(resume=False)
    f = folder / "loss_by_epoch.npy"
    if bad == "missing":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(RunError, match="delete"):
        ChunkRecords(tr, folder, 2).open(resume=True)


def test_disk_check_names_the_record_fields_that_shrink_a_run():
    from pathlib import Path

    from jaxmem.io import RunError

    cfg = cfgmod.load_config(None, SETS)
    plan = W.storage_plan(cfg, 3, 120, 40, 10)
    assert plan["records_per_model"] == (2 * 120 * 4) * 3 + 2 * 120 + 3 * 2 * 120 * 4 + 120 * 4
    with pytest.raises(RunError, match=r"of logits and training records .*train\.records\.dtype=float16"):
        W.check_disk(Path("."), plan, lambda *a: None, free=0)
    plain = W.storage_plan(cfgmod.load_config(None, []), 3, 120, 40, 10)
    with pytest.raises(RunError, match=r"B of logits \(.*fewer signals.queries") as e:
        W.check_disk(Path("."), plain, lambda *a: None, free=0)
    assert "train.records" not in str(e.value)
    # a language model's: per-token signals, no per-example score files, its own advice
    lm = W.storage_plan(cfgmod.load_config(None, []), 3, 120, 40, 259, seq_len=33)
    assert lm["scores"] == 0 and lm["todo"] == 2 * 3 * lm["per_model"]
    with pytest.raises(RunError, match=r"B of per-token LM signals \(.*shorter data.max_len, signals"):
        W.check_disk(Path("."), lm, lambda *a: None, free=0)


def test_memory_check_counts_vog_moments_per_model_of_the_chunk():
    """Preflight (jaxmem.runs.preflight) counts VoG's running moments, 2 x [N, *input] float32
    per model of the chunk, and names train.records.vog_epochs when a chunk does not fit."""
    from jaxmem.io import RunError
    from jaxmem.runs import preflight as P

    class DS:
        x_train, x_test = np.zeros((120, 64), np.float32), np.zeros((40, 64), np.float32)
        y_train, y_test, num_classes = np.zeros(120, np.int32), np.zeros(40, np.int32), 10

    with_vog = P.estimate(cfgmod.load_config(None, SETS), DS)
    without = P.estimate(cfgmod.load_config(None, SETS + ["train.records.vog_epochs=[]"]), DS)
    assert with_vog["vog_moments"] == 2 * 120 * 64 * 4 and without["vog_moments"] == 0
    per_device = -(-with_vog["models_per_chunk"] // jax.local_device_count())
    assert with_vog["chunk_device"] - without["chunk_device"] == per_device * with_vog["vog_moments"]
    with pytest.raises(RunError, match="train.records.vog_epochs"):
        P.check(cfgmod.load_config(None, SETS), DS, available=10**9,
                device=("gpu", without["chunk_device"] + with_vog["vog_moments"]))
