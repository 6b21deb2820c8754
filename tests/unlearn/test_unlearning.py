"""Unlearning on a stack (issue 22): the method registry's validation at the door, the forget
sets and the stored design, the per-model update mapped over a stack (the same models whether
unlearned together or one at a time, in one block of steps or several), a tiny end-to-end run
with the oracle reading U-LiRA ~ 0.5, and (slow) each method's objective moving its losses the
right way, a SIGKILLed unlearning run resuming bit-identically and the experiment's quick variant
at a reduced size."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import numpy.testing as npt
import pytest

from jaxmem import config as cfgmod
from jaxmem.io import RunError
from jaxmem.unlearn import METHODS, MethodError, forget_set, make_method, make_methods, unlearning_design

TINY = ["subsets.num_models=16", "train.epochs=2", "data.max_train=150", "data.max_test=60",
        "model.hidden=[16]", "train.batch_size=32"]


# ------------------------------------------------------------------------------ registry

def test_methods_registry_and_one_line_errors():
    assert set(METHODS) >= {"finetune", "gradient_ascent", "neggrad_plus", "random_label", "l1_sparse"}
    m = make_method({"name": "neggrad_plus", "alpha": 0.5, "budget": 0.2})
    assert (m.alpha, m.budget) == (0.5, 0.2)
    assert make_method("finetune").budget == 0.1
    cases = [({"name": "negrad"}, "m.name: unknown"),
             ({"name": "neggrad_plus", "alpah": 1.0}, "m.alpah: not a field of neggrad_plus"),
             ({"name": "finetune", "budget": 0}, "m.budget: must be > 0"),
             ({"name": "l1_sparse", "gamma": -1.0}, "m.gamma: must be >= 0"),
             ({"name": "finetune", "batch_size": 1.5}, "m.batch_size: expected int"),
             ({"name": "finetune", "learning_rate": "x"}, "m.learning_rate: expected float")]
    for spec, msg in cases:
        with pytest.raises(MethodError, match=msg) as e:
            make_method(spec, "m")
        assert "\n" not in str(e.value)
    with pytest.raises(MethodError, match=r"methods\[1\].name: 'finetune' appears twice"):
        make_methods(["finetune", "finetune"])


def test_analysis_params_refused_at_the_door_before_any_training(tmp_path):
    from jaxmem.analyses import run_experiment

    for over, msg in ((['experiment.params.methods=[{"name":"finetune","budgett":1}]'], "methods\\[0\\].budgett"),
                      (['experiment.params.forget_kinds=["rand"]'], "forget_kinds\\[0\\]"),
                      (["experiment.params.forget_size=0"], "forget_size"),
                      # 4 + 4 models: the oracle's halves of 2 would fail in U-LiRA after training
                      (["subsets.num_models=8"], "subsets.num_models: 8 models")):
        cfg = cfgmod.load_config("experiments/unlearning.toml", TINY + over)
        with pytest.raises(cfgmod.ConfigError, match=msg):
            run_experiment(cfg, tmp_path / "x", progress=False, log=lambda *a: None)
        assert not any((tmp_path / "x").glob("*/keep.npy")) and not (tmp_path / "x" / "reference").exists()


# ------------------------------------------------------------------------------ design

def test_forget_sets_and_design(rng):
    N = 200
    y = rng.integers(0, 5, N)
    f = forget_set("random", 3, y, 20)
    assert f.sum() == 20 and np.array_equal(f, forget_set("random", 3, y, 20))
    c = forget_set("class", 3, y, 5, forget_class=2)
    assert c.sum() == 5 and (y[c] == 2).all()
    assert np.array_equal(forget_set("class", 3, y, 0, forget_class=2), y == 2)
    s = rng.normal(size=N)
    s[rng.integers(0, N)] = np.nan
    m = forget_set("memorized", 3, y, 10, scores=s)
    fin = np.where(np.isfinite(s), s, -np.inf)
    assert set(np.flatnonzero(m)) == set(np.argsort(-fin)[:10])
    with pytest.raises(ValueError, match="needs memorization scores"):
        forget_set("memorized", 3, y, 10)
    keep, unl = unlearning_design(3, 10, f, retain_fraction=0.5)
    assert unl.sum() == 5 and unl[:5].all()
    assert keep[unl][:, f].all() and not keep[~unl][:, f].any()
    frac = keep[:, ~f].mean()
    assert 0.4 < frac < 0.6
    full, _ = unlearning_design(3, 10, f)
    assert full[:, ~f].all()
    for M in (3, 4, 5):     # 2 of a role: a stack no audit can read (U-LiRA needs 3 per role)
        with pytest.raises(ValueError, match="num_models.*at least 3"):
            unlearning_design(3, M, f)
    assert unlearning_design(3, 6, f)[1].sum() == 3


# ------------------------------------------------------------------------------ stacked update

def _trainer(K, overrides=()):
    import jax.numpy as jnp

    from jaxmem.data import build_dataset
    from jaxmem.train import Trainer, steps_per_epoch_max

    cfg = cfgmod.load_config(None, TINY + list(overrides))
    ds = build_dataset(cfg)
    forget = forget_set("random", cfg.seed, ds.y_train, 12)
    keep, _ = unlearning_design(cfg.seed, 2 * K, forget)
    keep = keep[:K]
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    return tr, keep, forget


@pytest.fixture(scope="module")
def stack():
    """4 models trained 2 epochs, and a cache of Unlearners (one compile per method)."""
    tr, keep, forget = _trainer(4)
    ids = np.arange(4)
    state, status = tr.init_chunk(ids, keep)
    state, status, _ = tr.train_epochs(state, status, keep, ids, 0, 2)
    return {"tr": tr, "state": state, "keep": keep, "forget": forget, "u": {}}


def _unlearn(stack, method, ids, blocks, tr=None):
    import jax

    from jaxmem.unlearn import Unlearner, index_rows

    tr = tr or stack["tr"]
    key = (id(tr), method)
    u = stack["u"].get(key) or stack["u"].setdefault(key, Unlearner(tr, method, 6))
    keep, forget = stack["keep"], stack["forget"]
    st, status = u.init(jax.tree.map(lambda a: a[ids], stack["state"]))
    ridx, rn = index_rows(keep[ids] & ~forget[None])
    fidx, fn = index_rows(forget[None])
    for t0, n in blocks:
        st, status = u.run_block(st, status, ridx, rn, fidx[0], int(fn[0]), u.keys(ids), t0, n)
    return st, status


def test_stacked_unlearning_equals_one_at_a_time_and_blocking_is_invisible(stack):
    """The same models unlearned as a stack of 4 (lax.map, the CPU default), one model per call,
    in blocks of steps [0, 2), [2, 5), [5, 6) instead of one block, and as a vmapped stack."""
    import jax

    m = make_method({"name": "neggrad_plus", "learning_rate": 0.01})
    ref, _ = _unlearn(stack, m, np.arange(4), [(0, 6)])
    blocked, _ = _unlearn(stack, m, np.arange(4), [(0, 2), (2, 3), (5, 1)])
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(blocked.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for k in (0, 3):
        one, _ = _unlearn(stack, m, np.array([k]), [(0, 6)])
        for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(one.params)):
            assert np.array_equal(np.asarray(a)[k], np.asarray(b)[0])
    tr_v, _, _ = _trainer(4, ["train.vmap_size=4"])
    vm, _ = _unlearn(stack, m, np.arange(4), [(0, 6)], tr=tr_v)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(vm.params)):
        npt.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_objectives_move_the_losses_their_way(stack):
    """Gradient ascent raises the forget-set loss; fine-tuning lowers the retain-set loss; every
    method changes the parameters and keeps them finite."""
    import jax

    from jaxmem.signals.functions import cross_entropy

    tr, keep, forget = stack["tr"], stack["keep"], stack["forget"]
    ids = np.arange(4)
    y = np.asarray(tr.y_train)

    def losses(st):
        lg = np.asarray(tr.logits(st, tr.x_train, ["identity"]))[:, :, 0]
        ce = np.asarray(cross_entropy(lg, np.broadcast_to(y, lg.shape[:2])))
        ret = keep & ~forget[None]
        return (ce * forget).sum(1) / forget.sum(), (ce * ret).sum(1) / ret.sum(1)

    f0, r0 = losses(stack["state"])
    out = {name: _unlearn(stack, make_method({"name": name, "learning_rate": 0.01}), ids, [(0, 6)])
           for name in METHODS}
    assert (losses(out["gradient_ascent"][0])[0] > f0).all()
    assert (losses(out["finetune"][0])[1] < r0).all()
    for name, (st, status) in out.items():
        leaves = [np.asarray(a) for a in jax.tree.leaves(st.params)]
        assert all(np.isfinite(a).all() for a in leaves) and not np.asarray(status.diverged).any(), name
        assert any(not np.array_equal(a, np.asarray(b))
                   for a, b in zip(leaves, jax.tree.leaves(stack["state"].params))), name


# ------------------------------------------------------------------------------ end to end

def test_tiny_unlearning_run_end_to_end_oracle_reads_half(tmp_path):
    from jaxmem.analyses.unlearning import audit_stage
    from jaxmem.data import build_dataset
    from jaxmem.runs.unlearning import load_unlearning, unlearn_run

    cfg = cfgmod.load_config(None, TINY)
    ds = build_dataset(cfg)
    forget = forget_set("random", cfg.seed, ds.y_train, 15)
    res = unlearn_run(cfg, tmp_path / "u", methods=["gradient_ascent"], forget=forget, log=lambda *a: None)
    N, C = len(ds.y_train), int(ds.num_classes)
    unl = res["unlearned"]
    assert res["logits"]["trained"].shape == (16, N, C) and res["logits"]["gradient_ascent"].shape == (8, N, C)
    assert np.array_equal(res["forget"], forget) and res["keep"][unl][:, forget].all()
    assert not res["keep"][~unl][:, forget].any()
    # the oracle: retrained models, half scored as "unlearned" against the other half
    lg, tl = res["logits"]["trained"], res["test_logits"]["trained"]
    r = np.flatnonzero(~unl)
    row = audit_stage(lg[r[:4]], lg[r[4:]], res["keep"][r[:4]], forget, res["labels"], tl[r[:4]],
                      res["test_labels"])
    assert row["ulira_ci_low"] <= 0.5 <= row["ulira_ci_high"], row
    # a rerun of the same run finds everything done and trains nothing; another method list is refused
    logs = []
    again = unlearn_run(cfg, tmp_path / "u", methods=["gradient_ascent"], forget=forget, log=logs.append)
    assert logs == [] and np.array_equal(again["logits"]["gradient_ascent"], res["logits"]["gradient_ascent"])
    assert np.array_equal(load_unlearning(tmp_path / "u")["test_logits"]["trained"], res["test_logits"]["trained"])
    with pytest.raises(RunError, match="different unlearning run"):
        unlearn_run(cfg, tmp_path / "u", methods=["finetune"], forget=forget, log=lambda *a: None)


# ------------------------------------------------------------------------------ slow

_SCRIPT = textwrap.dedent("""
    import sys
    from jaxmem import config as cfgmod
    from jaxmem.data import build_dataset
    from jaxmem.unlearn import forget_set
    from jaxmem.runs.unlearning import unlearn_run
    cfg = cfgmod.load_config(None, {sets!r})
    ds = build_dataset(cfg)
    f = forget_set("random", cfg.seed, ds.y_train, 15)
    unlearn_run(cfg, sys.argv[1], methods=[{{"name": "finetune", "budget": 3.0}}, {{"name": "neggrad_plus", "budget": 3.0}}],
                forget=f, block_steps=2)
""")


@pytest.mark.slow
def test_sigkilled_unlearning_resumes_bit_identical(tmp_path):
    """Killed twice: mid-training (an epoch checkpoint saved, before the last epoch), then while a
    method is mid-way (an orbax step of its step blocks saved); each rerun resumes from its
    checkpoint, and the run finishes with every stage's arrays identical to an uninterrupted
    run's."""
    import helpers_run as H

    sets = TINY + ["subsets.num_models=12", "train.chunk_size=3", "train.checkpoint_every=1", "train.epochs=3"]
    script = tmp_path / "u.py"
    script.write_text(_SCRIPT.format(sets=sets))
    ref, wd = tmp_path / "ref", tmp_path / "killed"
    r = subprocess.run([sys.executable, str(script), str(ref)], env=H.env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

    def steps(sub):
        ck = wd / "ckpt"
        return [int(s.name) for c in (ck.iterdir() if ck.exists() else ()) for m in c.iterdir()
                if sub(m.name) and m.is_dir() for s in m.iterdir() if s.name.isdigit()]

    def start(n):
        return subprocess.Popen([sys.executable, str(script), str(wd)], env=H.env(),
                                stdout=open(tmp_path / f"log{n}", "w"), stderr=subprocess.STDOUT)

    p = start(1)
    assert H.kill_when(p, lambda: any(e < 3 for e in steps(lambda n: n == "train"))), "training finished first"
    p = start(2)
    assert H.kill_when(p, lambda: steps(lambda n: n != "train")), "the run finished before a method's checkpoint"
    assert "resuming training at epoch" in (tmp_path / "log2").read_text()
    assert not all((wd / "out" / c / "neggrad_plus" / "meta.json").exists()
                   for c in ("models-000000-000003", "models-000003-000006"))
    r = subprocess.run([sys.executable, str(script), str(wd)], env=H.env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout
    files = sorted(p.relative_to(ref) for p in (ref / "out").rglob("*.npy"))
    assert len(files) == 4 * 3 + 2 * 2 * 3    # 4 chunks trained; 2 unlearned chunks x 2 methods
    for f in files:
        assert np.array_equal(np.load(ref / f), np.load(wd / f)), f
    assert not (wd / "ckpt").exists() or not any((wd / "ckpt").iterdir())


@pytest.mark.slow
def test_unlearning_experiment_quick_variant_reduced(tmp_path):
    from jaxmem.analyses import run_experiment

    cfg = cfgmod.load_config("experiments/unlearning.toml",
                             ["subsets.num_models=16", "train.epochs=10", "data.max_train=400",
                              "model.hidden=[64]", "experiment.params.forget_size=20"])
    s = run_experiment(cfg, tmp_path / "e", progress=False, log=lambda *a: None)
    rows = s["rows"]
    assert {r["forget_kind"] for r in rows} == {"random", "class", "memorized"}
    assert {r["method"] for r in rows} == {"retrain", "original", *METHODS}
    for r in rows:
        if r["method"] == "retrain":
            assert r["ulira_ci_low"] <= 0.5 <= r["ulira_ci_high"], r
    assert Path(s["files"]["forget_vs_utility"]).exists()
