"""Memory at the door (issue 13, item 6): estimates from shapes only, refusals naming the fields
to change, and the issue's three inputs ending in one line without growing the process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import helpers_run as H
import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem.io import RunError
from jaxmem.runs import preflight as P


class _DS:
    def __init__(self, N=300, T=100, D=64, C=10, dtype=np.float32):
        self.x_train = np.zeros((N, D), dtype)
        self.x_test = np.zeros((T, D), dtype)
        self.y_train = np.zeros(N, np.int32)
        self.y_test = np.zeros(T, np.int32)
        self.num_classes = C


def test_model_bytes_from_shapes_match_counts():
    """Parameters = the layer sizes; Adam's state = two moments (+ its step count); the
    activations = every layer's output (Dense and Dropout layers, the model's output)."""
    cfg = cfgmod.from_dict({"model": {"hidden": [32, 16]}})
    m = P.model_bytes(cfg, (64,), np.float32, 10)
    n_params = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert m["params"] == 4 * n_params
    assert 2 * 4 * n_params <= m["optimizer"] <= 2 * 4 * n_params + 64
    assert m["activation"] == 4 * (2 * 32 + 2 * 16 + 10 + 10)   # Dense, Dropout; output
    sgd = P.model_bytes(cfgmod.from_dict({"model": {"hidden": [32, 16]},
                                          "train": {"optimizer": {"name": "sgd", "momentum": 0.0}}}),
                        (64,), np.float32, 10)
    assert sgd["optimizer"] < 64
    dp = P.model_bytes(cfgmod.from_dict({"model": {"hidden": [32, 16]},
                                         "train": {"dp": {"enabled": True}}}), (64,), np.float32, 10)
    assert dp["params"] == m["params"] and dp["optimizer"] >= m["optimizer"]   # (+ its noise key)


def test_estimate_of_a_chunk_is_at_least_xla_s_own_count():
    """The chunk's device estimate against XLA's memory analysis of the compiled training step
    of the same chunk (arguments + temporaries + outputs): never below it, within 4x."""
    import jax

    from jaxmem.train import Trainer

    cfg = cfgmod.from_dict({"model": {"hidden": [256, 256]}, "subsets": {"num_models": 8},
                            "train": {"chunk_size": 8, "batch_size": 64, "vmap_size": 8}})
    ds = _DS(N=512, T=128)
    est = P.estimate(cfg, ds)
    keep = np.ones((8, 512), bool)
    tr = Trainer(cfg, jax.numpy.asarray(ds.x_train), jax.numpy.asarray(ds.y_train), 10, 8)
    state, status = tr.init_chunk(np.arange(8), keep)
    c = tr._chunk(np.arange(8), keep)
    from jaxmem.train.rng import epoch_orders

    orders = epoch_orders(cfg.seed, c["ids"], c["rows"], 0, 1)
    tr.train_epochs(state, status, keep, np.arange(8), 0, 1)
    fn = tr._train_fns[("train", 1)]
    state, status = tr.init_chunk(np.arange(8), keep)
    mem = fn.lower(state, status, orders, *c["counts"], c["keys"], jax.numpy.int32(0),
                   (tr.x_train, tr.y_train)).compile().memory_analysis()
    xla = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
    print("estimate", est["chunk_device"], "xla", xla)
    assert xla <= est["chunk_device"] <= 4 * xla


def test_cpu_estimate_counts_the_models_the_trainer_runs_at_once():
    """Issue 21 item 8: on CPU the trainer runs one model at a time (vmap_size 0), yet the
    estimate counted the activations of 4 (6.8 GB estimated, 2.3-2.7 GB measured). The training
    and evaluation activations are now those of as many models as the Trainer itself runs
    together: one on CPU; every model of the chunk for a CNN's step loop on the host; the
    chunk (or train.vmap_size) on an accelerator (benchmarks/preflight_accuracy.py compares the
    estimate with measured peaks)."""
    import jax

    from jaxmem.train import Trainer

    assert jax.default_backend() == "cpu"   # (the test suite runs on CPU)
    ds = _DS(N=256, T=64)
    base = {"model": {"hidden": [128, 64]}, "subsets": {"num_models": 8},
            "train": {"chunk_size": 8, "batch_size": 32}, "signals": {"batch_size": 64}}
    cfg = cfgmod.from_dict(base)
    act = P.model_bytes(cfg, (64,), np.float32, 10)["activation"]
    est = P.estimate(cfg, ds)
    tr = Trainer(cfg, jax.numpy.asarray(ds.x_train), jax.numpy.asarray(ds.y_train), 10, 8)
    assert est["vmapped"] == est["vmapped_train"] == tr.group_size(8) == 1
    assert est["train_activations"] == 2 * 32 * act          # one model's training batch
    assert est["eval_activations"] == 64 * act               # one model's evaluation batch
    vm = cfgmod.from_dict({**base, "train": {**base["train"], "vmap_size": 8}})
    est8 = P.estimate(vm, ds)
    assert est8["vmapped"] == 8 and est8["train_activations"] == 8 * est["train_activations"]
    assert est8["chunk_device"] > est["chunk_device"]
    # an accelerator runs the whole chunk together
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(jax, "default_backend", lambda: "gpu")
        gpu = P.estimate(cfg, ds)
    assert gpu["vmapped"] == 8 and gpu["train_activations"] == 8 * est["train_activations"]
    # a CNN on CPU steps on the host with every model of the chunk vmapped together
    cnn = cfgmod.from_dict({"model": {"name": "cnn", "channels": [8, 16]},
                            "subsets": {"num_models": 8}, "train": {"chunk_size": 8, "batch_size": 32}})
    img = _DS(N=256, T=64)
    img.x_train, img.x_test = np.zeros((256, 8, 8, 1), np.float32), np.zeros((64, 8, 8, 1), np.float32)
    e = P.estimate(cnn, img)
    a = P.model_bytes(cnn, (8, 8, 1), np.float32, 10)["activation"]
    assert e["vmapped"] == 1 and e["vmapped_train"] == 8
    assert e["train_activations"] == 8 * P._TRAIN_ACTIVATION_FACTOR_CONV_CPU * 32 * a
    # training's fixed cost counts against the host on CPU only (not a device's memory)
    assert est["training_fixed"] > 0 and gpu["training_fixed"] == 0


def test_refusals_name_the_fields(rng):
    cfg = cfgmod.from_dict({"model": {"hidden": [65536, 65536]}})
    with pytest.raises(RunError, match=r"model: a chunk of \d+ models needs about .*one model alone does not fit: "
                                       r"a smaller model \(model\.hidden\)"):
        P.check(cfg, _DS(), log=lambda *a: None, available=5 * 10**10)
    cfg = cfgmod.from_dict({"model": {"hidden": [4096, 4096]}, "train": {"chunk_size": 64}})
    with pytest.raises(RunError, match=r"train\.chunk_size=\d+ fits"):
        P.check(cfg, _DS(), log=lambda *a: None, available=8 * 10**9)
    cfg = cfgmod.from_dict({"subsets": {"num_models": 10**6}})
    with pytest.raises(RunError, match=r"subsets\.num_models: drawing the balanced design of "
                                       r"1000000 models x 300 examples needs about 5\.1 GB"):
        P.check(cfg, _DS(), log=lambda *a: None, available=4 * 10**9)
    with pytest.raises(RunError, match=r"scoring\.targets"):
        P.check(cfgmod.from_dict({"subsets": {"num_models": 2000}}), _DS(N=50000),
                log=lambda *a: None, available=6 * 10**9)
    lines = []
    P.check(cfgmod.from_dict({}), _DS(), log=lines.append, available=10**12)
    assert lines == []                                    # small runs say nothing
    keep = np.ones((4, 300), bool)
    keep[2, 100:] = False
    with pytest.raises(RunError, match="train.batch_size: 128 is larger than the 100 training "
                                       "examples of model 2"):
        P.check_batch(cfgmod.from_dict({}), keep)
    P.check_batch(cfgmod.from_dict({"train": {"batch_size": 100}}), keep)


# The child's own peak RSS is VmHWM (kB), the high-water mark of its address space, which starts
# afresh at exec. Not getrusage's ru_maxrss: Linux keeps that across fork and exec, so a child of a
# pytest process that has grown to 2.6 GB reports 2.6 GB whatever it does itself.
_DOOR = """
import sys
from jaxmem.cli import main
rc = main(sys.argv[2:])
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")]
with open(sys.argv[1], "w") as f:
    f.write(hwm[0])
sys.exit(rc)
"""


@pytest.mark.parametrize("setting", ["subsets.num_models=100000000", "model.hidden=[65536,65536]",
                                     "train.batch_size=100000000"])
def test_the_issue_s_inputs_end_in_one_line_without_growing(tmp_path, setting):
    """Before: 8 GB of RSS in 15 s (and on), or a JAX out-of-memory traceback. Now: one line,
    and the process stays near its size after importing jax and building the data (its own
    peak RSS, written by the process as it exits)."""
    t0 = time.time()
    r = subprocess.run([sys.executable, "-c", _DOOR, str(tmp_path / "rss"), "run", "--workdir",
                        str(tmp_path / "w"), "--no-progress", "--cache-dir", "", "--set", setting],
                       capture_output=True, text=True, env=H.env(), cwd=H.REPO, timeout=300)
    seconds = time.time() - t0
    rss = int((tmp_path / "rss").read_text()) * 1024
    lines = r.stderr.strip().splitlines()
    print(setting, f"{seconds:.1f} s", f"{rss / 1e6:.0f} MB", lines)
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("jaxmem: error: "), r.stderr
    field = setting.split("=")[0]
    assert field.split(".")[0] in lines[0]
    assert rss < 1e9, rss
    assert not (tmp_path / "w").exists()


_PROBE = """
import json, sys, tempfile, threading, time
import numpy as np
from jaxmem.runs import import_arrays, load_run, score
from jaxmem.runs.preflight import scoring_bytes

M, N, T, C = 48, 20000, 1000, 10
attacks = json.loads(sys.argv[1])
r = np.random.default_rng(0)
d = tempfile.mkdtemp()
import_arrays(d + "/r", r.random((M, N)) < 0.5, r.normal(size=(M, N, 1, C)).astype(np.float32),
              r.integers(0, C, N), test_logits=r.normal(size=(M, T, 1, C)).astype(np.float32),
              test_labels=r.integers(0, C, T), overrides=["scoring.attacks=" + sys.argv[1]])

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

base = rss()
peak, done = [base], []

def watch():
    while not done:
        peak[0] = max(peak[0], rss())
        time.sleep(0.002)

th = threading.Thread(target=watch)
th.start()
score(d + "/r", log=lambda *a: None)
done.append(1)
th.join()
print(json.dumps({"measured": peak[0] - base,
                  "estimate": sum(scoring_bytes(load_run(d + "/r").config, N, T, C).values())}))
"""


@pytest.mark.parametrize("attacks", ['["loss"]', '["lira_online","lira_offline","global_threshold"]'])
def test_scoring_estimate_bounds_the_measured_peak(attacks):
    """Scoring a 48-model run of 20,000 examples (its logits imported): the estimate is above the
    peak growth of the process's RSS (sampled every 2 ms), and within 3x of it."""
    pytest.importorskip("resource")
    r = subprocess.run([sys.executable, "-c", _PROBE, attacks], capture_output=True, text=True,
                       env=H.env(), cwd=H.REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(attacks, {k: f"{v / 1e6:.0f} MB" for k, v in out.items()})
    assert out["measured"] <= out["estimate"] <= 3 * out["measured"]


def test_scoring_an_imported_run_is_checked_at_the_door_too(tmp_path, monkeypatch):
    from jaxmem.runs import import_arrays, score

    r = np.random.default_rng(0)
    import_arrays(tmp_path / "imp", r.random((5, 40)) < 0.5,
                  r.normal(size=(5, 40, 1, 3)).astype(np.float32), r.integers(0, 3, 40))
    monkeypatch.setattr(P, "host_available", lambda: 10**6)
    with pytest.raises(RunError, match=r"scoring 5 models x 40 examples needs about .*1 MB is "
                                       r"available.*scoring\.targets"):
        score(tmp_path / "imp", log=lambda *a: None)
    assert not (tmp_path / "imp" / "summary.json").exists()


def test_a_language_model_is_not_estimated_as_a_classifier_over_its_vocabulary():
    """A causal LM's outputs are its per-token signals (never [N, L, V] logits) and its scoring
    reads them in blocks: the door does not refuse GPT-2's vocabulary at lm_memorization's full
    size for [N + T, V] logits or a [M, N, V] scoring stage (it did: 'one model alone does not
    fit', 321 GB). Its outputs are what the storage plan counts per model."""
    import types

    from jaxmem.runs import preflight as P
    from jaxmem.runs import workdir as W

    cfg = cfgmod.load_config(H.REPO / "experiments" / "lm_memorization.toml",
                             ["experiment.full=true", 'data.tokenizer="gpt2"'])
    N, T, L, V = 31_000, 1_000, cfg.data.max_len, 50_257
    ds = types.SimpleNamespace(x_train=np.zeros((N, L), np.int32), y_train=np.zeros(N, np.int32),
                               x_test=np.zeros((T, L), np.int32), y_test=np.zeros(T, np.int32),
                               num_classes=V)
    est = P.estimate(cfg, ds)
    assert est["scoring"] is None
    plan = W.storage_plan(cfg, cfg.subsets.num_models, N, T, V, seq_len=L)
    assert est["outputs_per_model"] == plan["per_model"] - 5      # (diverged flag, final loss)
    P.check(cfg, ds, available=100e9, device=("gpu", 140e9), log=lambda *a: None)
