"""LoRA adapters as the model axis over one frozen base (jaxmem.train.lora): a chunk of adapters
trained stacked (vmapped) equals the same adapters trained one at a time; the base is one
argument of the jitted call (not a compiled-in constant, not in the state); the memory check
counts it once; the config fields are validated at the door."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest

from jaxmem import config as cfgmod
from jaxmem.data import build_dataset
from jaxmem.subsets import make_design
from jaxmem.train import Trainer, steps_per_epoch_max

TINY = ['data.source="python_text"', 'model.name="llama"', "scoring.attacks=[]", "data.max_len=16",
        "data.max_train=24", "data.text_test_fraction=0.1", "model.d_model=16", "model.num_layers=1",
        "model.num_heads=2", "model.num_kv_heads=1", "model.ffn_dim=24", "model.lora_rank=2",
        'model.lora_targets=["q","v","down"]', "model.lora_alpha=4", "train.batch_size=8",
        "train.epochs=2", "train.learning_rate=0.02", "subsets.num_models=3",
        "scoring.prefix_lengths=[2]", "scoring.suffix_length=4"]


def _trainer(cfg, ds, keep):
    return Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), ds.num_classes,
                   steps_per_epoch_max(keep, cfg.train.batch_size))


@pytest.fixture(scope="module")
def setup():
    cfg = cfgmod.load_config(None, TINY + ["train.vmap_size=3"])   # the 3 adapters vmapped together
    ds = build_dataset(cfg)
    keep, _ = make_design(cfg, [{"first": 0, "count": 3, "block": 0}], ds.num_train, units=ds.groups)
    return cfg, ds, keep


def _train(tr, keep, ids):
    st, status = tr.init_chunk(ids, keep)
    st, status, _ = tr.train_epochs(st, status, keep, ids, 0, tr.num_epochs)
    return st, status


def test_stacked_adapters_equal_one_at_a_time(setup):
    cfg, ds, keep = setup
    tr = _trainer(cfg, ds, keep)
    ids = np.arange(3)
    st, status = _train(tr, keep, ids)
    # the state holds only the adapters, with the model axis; the base is one unbatched copy
    leaves = jax.tree_util.tree_leaves_with_path(st.params)
    assert leaves and all(str(p[-1].key).startswith("lora_") and a.shape[0] == 3 for p, a in leaves)
    assert tr.frozen["embed"].shape == (ds.num_classes, 16)
    one_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, vmap_size=1))
    tr1 = _trainer(one_cfg, ds, keep)
    for m in range(3):
        alone, s1 = _train(tr1, keep[m:m + 1], np.array([m]))
        jax.tree.map(lambda a, b: npt.assert_allclose(a[m], b[0], rtol=2e-4, atol=2e-5), st.params, alone.params)
        npt.assert_allclose(status.loss[m], s1.loss[0], rtol=1e-4)
    b = st.params["layer_0"]["q"]["lora_b"]
    assert np.abs(np.asarray(b)).max() > 1e-3            # trained (B starts at 0)
    assert np.abs(np.asarray(b[0] - b[1])).max() > 1e-4  # each on its own subset


def test_base_is_an_argument_not_a_constant(setup):
    """Swapping the trainer's base after the first compilation changes what trains: the base
    reaches the compiled program as an argument (a closed-over base would be baked in)."""
    cfg, ds, keep = setup
    tr = _trainer(cfg, ds, keep)
    ids = np.arange(2)
    a, _ = _train(tr, keep[:2], ids)
    tr.frozen = jax.tree.map(lambda w: w * 1.5, tr.frozen)
    b, _ = _train(tr, keep[:2], ids)
    diff = max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    assert diff > 1e-4


def test_preflight_counts_the_base_once(setup):
    from jaxmem.runs.preflight import estimate, model_bytes

    cfg, ds, keep = setup
    m = model_bytes(cfg, ds.x_train.shape[1:], ds.x_train.dtype, ds.num_classes)
    V, D, F = ds.num_classes, 16, 24
    base = 4 * (V * D + D + (D * D + 2 * D * 8 + D * D + 3 * D * F + 2 * D))   # embed, norms, q k v o, ffn
    assert m["frozen"] == base
    assert m["params"] == 4 * ((16 * 2 + 2 * 16) + (16 * 2 + 2 * 8) + (24 * 2 + 2 * 16))  # q, v, down adapters
    chunk = {}
    for K in (1, 3):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, chunk_size=K, vmap_size=1))
        chunk[K] = estimate(c, ds)
    per_model = chunk[3]["chunk_device"] - chunk[1]["chunk_device"]
    assert per_model == 2 * (chunk[1]["per_model_state"] + chunk[1]["outputs_per_model"] + 2 * ds.num_train * 4)
    assert chunk[3]["frozen_base"] == base


@pytest.mark.parametrize("override,field", [
    ("model.lora_rank=-1", "model.lora_rank"),
    ("model.lora_alpha=0", "model.lora_alpha"),
    ('model.lora_targets=["q","wq"]', "model.lora_targets"),
    ("model.lora_targets=[]", "model.lora_targets"),
    ('model.checkpoint="/nonexistent/m.gguf"', "model.checkpoint"),
    ("model.num_kv_heads=3", "model.num_kv_heads"),
])
def test_bad_lora_fields_are_one_line_at_the_door(override, field):
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(None, TINY + [override])
    assert str(e.value).startswith(field) and "\n" not in str(e.value)


def test_lora_fields_only_for_llama():
    with pytest.raises(cfgmod.ConfigError, match="^model.lora_rank"):
        cfgmod.load_config(None, ['data.source="python_text"', 'model.name="causal_lm"', "model.lora_rank=2",
                                  "scoring.attacks=[]"])
    for model in ("causal_lm", "llama"):   # the pretrained tokenizer needs a checkpoint to come from
        with pytest.raises(cfgmod.ConfigError, match="^data.tokenizer"):
            cfgmod.load_config(None, ['data.source="python_text"', f'model.name="{model}"', 'data.tokenizer="pretrained"',
                                      "scoring.attacks=[]"])


def test_base_nll_is_the_base_models_float64_nll(setup, rng):
    """The external reference's NLL: the frozen base alone (no adapters), against a float64
    recomputation from the base as a plain (non-LoRA) Llama's logits."""
    from helpers_text import float64_signals

    from jaxmem.models.llama import Llama
    from jaxmem.runs.lm_signals import base_nll

    cfg, ds, keep = setup
    tr = _trainer(cfg, ds, keep)
    rows = rng.choice(ds.num_train, 5, replace=False)
    got = base_nll(cfg, ds.num_classes, ds.x_train[rows], ds.y_train[rows], batch_size=4)
    plain = Llama(ds.num_classes, 16, 1, 2, 1, 24)
    z = np.asarray(plain.apply({"params": tr.frozen}, jnp.asarray(ds.x_train[rows])), np.float64)
    want = [float64_signals(z[i], ds.x_train[r], ds.y_train[r])[1] for i, r in enumerate(rows)]
    npt.assert_allclose(got, want, rtol=1e-5)


def test_external_reference_is_carlini_ratio(rng):
    """Carlini et al. 2021: rank by log-perplexity under the target over that under the reference
    (smaller = member); jaxmem's score is its inverse, higher = member."""
    from jaxmem.analyses.lm_finetune_mia import external_reference_scores, lm_rmia_signals

    t = rng.uniform(0.5, 4.0, (3, 20))
    b = rng.uniform(0.5, 4.0, 20)
    npt.assert_allclose(external_reference_scores(t, b, "ratio"), b[None] / t, rtol=1e-12)
    npt.assert_allclose(external_reference_scores(t, b, "difference"), b[None] - t, rtol=1e-12)
    order = np.argsort(-external_reference_scores(t, b, "ratio")[0], kind="stable")
    npt.assert_array_equal(order, np.argsort(t[0] / b, kind="stable"))
    s = lm_rmia_signals(t, t[:, :4])
    npt.assert_allclose(s["p"], np.exp(-t))
    npt.assert_allclose(s["p_pop"], np.exp(-t[:, :4]))


@pytest.mark.filterwarnings("ignore")
def test_lora_run_chunks_checkpoints_and_resumes(tmp_path):
    """Through `jaxmem run`'s path: 3 adapters in chunks of 2 with per-epoch checkpoints; a shard
    removed is retrained to the same arrays."""
    from jaxmem.runs import execute

    sets = TINY + ["train.chunk_size=2", "train.checkpoint_every=1", 'scoring.attacks=["loss","reference"]']
    cfg = cfgmod.load_config(None, sets)
    wd = tmp_path / "run"
    execute(cfg, wd, progress=False, log=lambda *a: None)
    nll = np.load(wd / "nll.npy")
    assert nll.shape[0] == 3 and np.isfinite(nll).all()
    shards = sorted((wd / "shards").iterdir())
    assert len(shards) == 2
    import shutil

    shutil.rmtree(shards[1])
    execute(cfg, wd, progress=False, log=lambda *a: None)
    npt.assert_allclose(np.load(wd / "nll.npy"), nll, rtol=1e-6)


def test_a_checkpoint_needs_lora_and_its_own_tokenizer(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="^model.lora_rank: a pretrained"):
        cfgmod.load_config(None, TINY + ['model.checkpoint="m.gguf"', "model.lora_rank=0"])
    (tmp_path / "m.gguf").write_bytes(b"GGUF")     # exists: the tokenizer check comes next
    with pytest.raises(cfgmod.ConfigError, match="^data.tokenizer: a pretrained"):
        cfgmod.load_config(None, TINY + [f'model.checkpoint="{tmp_path / "m.gguf"}"'])
