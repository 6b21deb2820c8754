"""Bad input (issue 5): every case ends with ONE line ``jaxmem: error: ...`` naming the field or
file, a non-zero exit, no traceback, and no file under the test folder created, changed or removed
(an existing run in the workdir included). Cases run ``jaxmem.cli.main`` in-process (nothing here
trains a model); two of them also run ``python -m jaxmem`` as a subprocess."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import helpers_run as H
import numpy as np
import pytest

from jaxmem import cli
from jaxmem import config as cfgmod
from jaxmem import data as D

M, N, T, C = 8, 300, 100, 10


def fake_run(wd: Path, sets=H.SMALL, **arrays) -> Path:
    """A finished-looking run directory (config, design, arrays; no training) with overrides."""
    wd.mkdir(parents=True, exist_ok=True)
    cfg = cfgmod.load_config(None, sets)
    (wd / "config.json").write_text(json.dumps(cfgmod.to_dict(cfg), indent=2))
    (wd / "design.json").write_text(json.dumps(
        {"design": "balanced", "blocks": [{"first": 0, "count": M, "block": 0}]}))
    r = np.random.default_rng(0)
    keep = np.zeros((M, N), bool)
    for i in range(N):
        keep[r.permutation(M)[: M // 2], i] = True
    base = {"keep.npy": keep, "labels.npy": r.integers(0, C, N), "example_ids.npy": np.arange(N),
            "test_labels.npy": r.integers(0, C, T), "test_ids.npy": np.arange(N, N + T),
            "logits.npy": r.normal(size=(M, N, 1, C)).astype(np.float32),
            "test_logits.npy": r.normal(size=(M, T, 1, C)).astype(np.float32),
            "diverged.npy": np.zeros(M, bool), "model_ratio.npy": np.full(M, 0.5)}
    base.update(arrays)
    for name, a in base.items():
        if isinstance(a, bytes):
            (wd / name).write_bytes(a)
        else:
            np.save(wd / name, a, allow_pickle=False)
    return wd


class _MakesFile:
    """Unpickling this creates a file: proof that a pickle was (or was not) executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pickled_npy(marker: Path) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([_MakesFile(marker)] * 3, dtype=object), allow_pickle=True)
    return buf.getvalue()


def _npy_bytes(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _dataset(**change):
    r = np.random.default_rng(1)
    ds = D.Dataset(name="synthetic", x_train=r.normal(size=(N, 8)).astype(np.float32),
                   y_train=r.integers(0, 3, N).astype(np.int32), ids_train=np.arange(N),
                   x_test=r.normal(size=(T, 8)).astype(np.float32),
                   y_test=r.integers(0, 3, T).astype(np.int32), ids_test=np.arange(N, N + T),
                   num_classes=3, meta={"source": "synthetic"})
    return dataclasses.replace(ds, **change)


def _nan_x():
    x = _dataset().x_train.copy()
    x[5, 2] = np.nan
    return x


def _dup_ids():
    ids = np.arange(N)
    ids[7] = ids[3]
    return ids


RUN = ["run", "--workdir"]
SMALL_SETS = sum((["--set", s] for s in H.SMALL), [])


def _set(*items):
    return sum((["--set", s] for s in H.SMALL + list(items)), [])


# (id, setup(tmp) -> None, argv(tmp) -> list, words the message must contain, dataset or None)
# "prev" is an existing run; config and data errors aimed at it with --overwrite must leave it be.
CASES = [
    # ---- config: unknown keys, wrong types, out-of-range values, names
    ("dp-with-batchnorm", None, lambda t: RUN + [str(t / "new")] + _set("train.dp.enabled=true")
     + _set("model.name=wrn"), ["train.dp.enabled", "BatchNorm"]),
    ("unknown-top-key", None, lambda t: RUN + [str(t / "prev"), "--overwrite"] + _set("bogus=1"),
     ["bogus", "unknown key"]),
    ("unknown-nested-key", None, lambda t: RUN + [str(t / "new")] + _set("train.bogus=1"),
     ["train.bogus"]),
    ("unknown-deep-key", None, lambda t: RUN + [str(t / "new")] + _set("train.dp.noise=1"),
     ["train.dp.noise"]),
    ("int-gets-string", None, lambda t: RUN + [str(t / "prev"), "--overwrite"] + _set("seed=abc"),
     ["seed", "integer"]),
    ("int-gets-float", None, lambda t: RUN + [str(t / "new")] + _set("subsets.num_models=8.5"),
     ["subsets.num_models"]),
    ("bool-gets-int", None, lambda t: RUN + [str(t / "new")] + _set("model.batch_norm=3"),
     ["model.batch_norm"]),
    ("list-gets-int", None, lambda t: RUN + [str(t / "new")] + _set("model.hidden=5"),
     ["model.hidden", "list"]),
    ("table-gets-scalar", None, lambda t: RUN + [str(t / "new")] + _set("train=5"), ["train"]),
    ("pkeep-zero", None, lambda t: RUN + [str(t / "prev"), "--overwrite"] + _set("subsets.design.pkeep=0"),
     ["subsets.design.pkeep"]),
    ("pkeep-above-one", None, lambda t: RUN + [str(t / "new")] + _set("subsets.design.pkeep=1.5"),
     ["subsets.design.pkeep"]),
    ("two-models-with-attacks", None, lambda t: RUN + [str(t / "new")] +
     _set("subsets.num_models=2"), ["subsets.num_models", "3"]),
    ("learning-rate-zero", None, lambda t: RUN + [str(t / "new")] + _set("train.learning_rate=0"),
     ["train.learning_rate"]),
    ("learning-rate-negative", None, lambda t: RUN + [str(t / "new")] +
     _set("train.learning_rate=-0.1"), ["train.learning_rate"]),
    ("learning-rate-infinite", None, lambda t: RUN + [str(t / "new")] +
     _set("train.learning_rate=Infinity"), ["train.learning_rate"]),
    ("epochs-negative", None, lambda t: RUN + [str(t / "new")] + _set("train.epochs=-2"),
     ["train.epochs"]),
    ("epochs-nan", None, lambda t: RUN + [str(t / "new")] + _set("train.epochs=NaN"),
     ["train.epochs"]),
    ("bad-design", None, lambda t: RUN + [str(t / "new")] + _set("subsets.design=stratified"),
     ["subsets.design", "stratified"]),
    ("bad-model", None, lambda t: RUN + [str(t / "new")] + _set("model.name=vgg"),
     ["model.name", "vgg"]),
    ("bad-query", None, lambda t: RUN + [str(t / "new")] + _set('signals.queries=["zoom"]'),
     ["signals.queries", "zoom"]),
    ("bad-shift-query", None, lambda t: RUN + [str(t / "new")] + _set('signals.queries=["shift:1"]'),
     ["signals.queries", "shift:1"]),
    ("no-queries", None, lambda t: RUN + [str(t / "new")] + _set("signals.queries=[]"),
     ["signals.queries"]),
    ("bad-attack", None, lambda t: RUN + [str(t / "new")] + _set('scoring.attacks=["lira_typo"]'),
     ["scoring.attacks", "lira_typo"]),
    ("seed-too-large", None, lambda t: RUN + [str(t / "new")] + _set("seed=99999999999999999999"),
     ["seed"]),
    ("seed-negative", None, lambda t: RUN + [str(t / "prev"), "--overwrite"] + _set("seed=-1"),
     ["seed"]),
    ("set-without-equals", None, lambda t: RUN + [str(t / "new"), "--set", "seed"], ["seed"]),
    ("missing-experiment", None, lambda t: RUN + [str(t / "new"), str(t / "nope.toml")],
     ["nope.toml", "no such file"]),
    ("invalid-toml", lambda t: (t / "bad.toml").write_text("[train\nepochs = 3\n"),
     lambda t: RUN + [str(t / "new"), str(t / "bad.toml")], ["bad.toml", "TOML"]),
    ("toml-unknown-key", lambda t: (t / "typo.toml").write_text("[train]\nepoch = 3\n"),
     lambda t: RUN + [str(t / "new"), str(t / "typo.toml")], ["train.epoch"]),
    ("records-unknown-field", None, lambda t: RUN + [str(t / "new")] +
     _set('train.records.fields=["loss","grad"]'), ["train.records.fields", "grad"]),
    ("records-epoch-past-training", None, lambda t: RUN + [str(t / "new")] +
     _set("train.records.curvature_epochs=[1,99]"), ["train.records.curvature_epochs", "99"]),
    ("records-vog-one-checkpoint", None, lambda t: RUN + [str(t / "new")] +
     _set("train.records.vog_epochs=[2]"), ["train.records.vog_epochs", "2 epochs"]),
    ("label-noise-kind", None, lambda t: RUN + [str(t / "new")] +
     _set('data.label_noise_kind="pairs"'), ["data.label_noise_kind", "pairs"]),
    # ---- data (jaxmem.data.load patched to return the dataset; validate must refuse it)
    ("labels-out-of-range", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS,
     ["labels", "y_train"], dict(y_train=np.full(N, 3, np.int32))),
    ("negative-label", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS,
     ["y_test"], dict(y_test=np.full(T, -1, np.int32))),
    ("non-finite-inputs", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS,
     ["non-finite", "x_train"], "nan_x"),
    ("empty-train", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS, ["empty", "train"],
     dict(x_train=np.zeros((0, 8), np.float32), y_train=np.zeros(0, np.int32),
          ids_train=np.zeros(0, np.int64))),
    ("duplicate-ids", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS, ["duplicate ids"],
     "dup_ids"),
    ("mismatched-lengths", None, lambda t: RUN + [str(t / "new")] + SMALL_SETS, ["mismatched"],
     dict(y_train=np.zeros(N - 1, np.int32))),
    ("bad-data-with-overwrite", None, lambda t: RUN + [str(t / "prev"), "--overwrite"] + SMALL_SETS,
     ["labels"], dict(y_train=np.full(N, 9, np.int32))),
    # ---- run directories
    ("different-config", None, lambda t: RUN + [str(t / "prev")] + _set("seed=1"),
     ["prev", "different config", "seed", "--overwrite"]),
    ("shrink-run", None, lambda t: RUN + [str(t / "prev")] + _set("subsets.num_models=4"),
     ["subsets.num_models", "8"]),
    ("foreign-folder", lambda t: (t / "mine").mkdir() or (t / "mine" / "thesis.tex").write_text("x"),
     lambda t: RUN + [str(t / "mine")] + SMALL_SETS, ["mine", "not a jaxmem run"]),
    ("foreign-folder-overwrite",
     lambda t: (t / "mine").mkdir() or (t / "mine" / "thesis.tex").write_text("x"),
     lambda t: RUN + [str(t / "mine"), "--overwrite"] + SMALL_SETS, ["mine", "not a jaxmem run"]),
    ("workdir-is-a-file", lambda t: (t / "afile").write_text("x"),
     lambda t: RUN + [str(t / "afile")] + SMALL_SETS, ["afile", "not a directory"]),
    # ---- arrays of a stored run (load_run through `jaxmem score`)
    ("logits-shape-mismatch", lambda t: fake_run(t / "bad", **{
        "logits.npy": np.zeros((M, N - 1, 1, C), np.float32)}),
     lambda t: ["score", str(t / "bad")], ["logits", "keep"]),
    ("keep-not-bool", lambda t: fake_run(t / "bad", **{"keep.npy": np.ones((M, N), np.int64)}),
     lambda t: ["score", str(t / "bad")], ["keep.npy", "bool"]),
    ("truncated-logits", lambda t: fake_run(t / "bad", **{
        "logits.npy": _npy_bytes(np.zeros((M, N, 1, C), np.float32))[:5000]}),
     lambda t: ["score", str(t / "bad")], ["logits.npy", "truncated"]),
    ("truncated-keep", lambda t: fake_run(t / "bad", **{
        "keep.npy": _npy_bytes(np.ones((M, N), bool))[:300]}),
     lambda t: ["score", str(t / "bad")], ["keep.npy", "truncated"]),
    ("corrupt-keep", lambda t: fake_run(t / "bad", **{"keep.npy": b"\x00garbage" * 50}),
     lambda t: ["score", str(t / "bad")], ["keep.npy"]),
    ("corrupt-labels", lambda t: fake_run(t / "bad", **{"labels.npy": b"\x93NUMPY\x01\x00{"}),
     lambda t: ["score", str(t / "bad")], ["labels.npy"]),
    ("pickled-logits", lambda t: fake_run(t / "bad", **{"logits.npy": _pickled_npy(t / "PWNED")}),
     lambda t: ["score", str(t / "bad")], ["logits.npy", "pickle"]),
    ("pickled-keep", lambda t: fake_run(t / "bad", **{"keep.npy": _pickled_npy(t / "PWNED")}),
     lambda t: ["score", str(t / "bad")], ["keep.npy", "pickle"]),
    ("raw-pickle-as-npy", lambda t: fake_run(t / "bad", **{
        "test_logits.npy": pickle.dumps(_MakesFile(t / "PWNED"))}),
     lambda t: ["score", str(t / "bad")], ["test_logits.npy"]),
    ("corrupt-config-json", lambda t: fake_run(t / "bad") and (t / "bad" / "config.json").write_text("{"),
     lambda t: ["score", str(t / "bad")], ["config.json"]),
    ("score-non-run", lambda t: (t / "mine").mkdir() or (t / "mine" / "a.txt").write_text("x"),
     lambda t: ["score", str(t / "mine")], ["mine", "not a finished jaxmem run"]),
    ("score-missing-dir", None, lambda t: ["score", str(t / "nowhere")], ["nowhere"]),
    ("score-non-scoring-override", lambda t: fake_run(t / "bad"),
     lambda t: ["score", str(t / "bad"), "--set", "train.epochs=3"], ["train.epochs", "scoring"]),
    ("score-bad-attack-override", lambda t: fake_run(t / "bad"),
     lambda t: ["score", str(t / "bad"), "--set", 'scoring.attacks=["nope"]'], ["scoring.attacks"]),
    ("report-non-run", lambda t: (t / "mine").mkdir() or (t / "mine" / "a.txt").write_text("x"),
     lambda t: ["report", str(t / "mine")], ["mine"]),
    # ---- issue 13: everyday OS errors, --set spelling, doors that refuse
    ("toml-not-utf8", lambda t: (t / "bin.toml").write_bytes(b"\xff\xfe[train]\x00\x01"),
     lambda t: RUN + [str(t / "new"), str(t / "bin.toml")], ["bin.toml", "not UTF-8"]),
    ("set-not-json", None, lambda t: RUN + [str(t / "new")] + _set("scoring.attacks=[lira_online]"),
     ["scoring.attacks", "JSON", """--set 'scoring.attacks=["lira_online"]'"""]),
    ("set-string-for-list", None, lambda t: RUN + [str(t / "new")] + _set("model.hidden=64"),
     ["model.hidden", "JSON", "--set 'model.hidden=[64]'"]),
    ("config-unknown-kind", None, lambda t: ["config", "--set", "experiment.kind=nope"],
     ["experiment.kind", "nope"]),
    ("cache-dir-is-a-file", lambda t: (t / "afile").write_text("x"),
     lambda t: RUN + [str(t / "new"), "--cache-dir", str(t / "afile")] + SMALL_SETS,
     ["--cache-dir", "afile", "not a directory"]),
    ("log-file-is-a-folder", lambda t: (t / "logs").mkdir(),
     lambda t: RUN + [str(t / "new"), "--log-file", str(t / "logs")] + SMALL_SETS,
     ["--log-file", "is a directory"]),
    ("export-dest-is-a-file", lambda t: (t / "afile").write_text("x"),
     lambda t: ["export-lira", str(t / "prev"), str(t / "afile")], ["afile", "not a directory"]),
    ("export-dest-foreign", lambda t: (t / "mine").mkdir() or (t / "mine" / "a.txt").write_text("x"),
     lambda t: ["export-lira", str(t / "prev"), str(t / "mine")], ["mine", "not an export"]),
    ("batch-larger-than-an-in-set", None,
     lambda t: RUN + [str(t / "new")] + _set("train.batch_size=200"),
     ["train.batch_size", "200", "IN set"]),
    ("process-1-without-coordinator", None,
     lambda t: RUN + [str(t / "new"), "--num-processes", "2", "--process-id", "1"] + SMALL_SETS,
     ["--coordinator"]),
    ("overwrite-imported", lambda t: _imported(t / "imp"),
     lambda t: RUN + [str(t / "imp"), "--overwrite"] + SMALL_SETS, ["imported", "--delete-imported"]),
    ("show-unknown-example", None, lambda t: ["show", str(t / "prev"), "--example", "99999"],
     ["99999"]),
    ("show-non-run", lambda t: (t / "mine").mkdir(), lambda t: ["show", str(t / "mine")],
     ["not a finished jaxmem run"]),
]


def _imported(wd):
    from jaxmem.runs import import_arrays

    r = np.random.default_rng(0)
    import_arrays(wd, r.random((4, 30)) < 0.5, r.normal(size=(4, 30, 1, 3)).astype(np.float32),
                  r.integers(0, 3, 30))
CASES = [c if len(c) == 5 else c + (None,) for c in CASES]

# Cases that fail because of an open request to the lead (REQUESTS.md); strict: they must fail.


@pytest.mark.parametrize(
    "name,setup,args,words,dataset",
    [pytest.param(*c, id=c[0]) for c in CASES])
def test_bad_input_one_line_error_and_nothing_touched(tmp_path, capsys, monkeypatch, name, setup,
                                                      args, words, dataset):
    fake_run(tmp_path / "prev")
    if setup is not None:
        setup(tmp_path)
    if dataset is not None:
        change = {"nan_x": lambda: dict(x_train=_nan_x()), "dup_ids": lambda: dict(
            ids_train=_dup_ids())}[dataset]() if isinstance(dataset, str) else dataset
        bad = _dataset(**change)
        monkeypatch.setattr(D.sources, "load", lambda *a, **k: bad)
    before = H.tree_state(tmp_path)
    capsys.readouterr()
    rc = cli.main(args(tmp_path))
    out, err = capsys.readouterr()
    assert rc != 0 and rc is not None
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxmem: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in out + err
    assert H.tree_state(tmp_path) == before, "files were created, changed or removed"
    assert not (tmp_path / "PWNED").exists(), "a pickle was executed"


def test_table_is_large_enough():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", ["invalid-toml", "pickled-logits"])
def test_real_entry_point_prints_one_line(tmp_path, kind):
    """The same through ``python -m jaxmem`` (a fresh interpreter, real stderr, exit status)."""
    case = next(c for c in CASES if c[0] == kind)
    fake_run(tmp_path / "prev")
    case[1](tmp_path)
    before = H.tree_state(tmp_path)
    r = subprocess.run([sys.executable, "-m", "jaxmem"] + case[2](tmp_path), capture_output=True,
                       text=True, env=H.env(), cwd=H.REPO, timeout=300)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxmem: error: "), r.stderr
    assert all(w in lines[0] for w in case[3])
    assert H.tree_state(tmp_path) == before
    assert not (tmp_path / "PWNED").exists()


def test_config_attack_names_are_the_attack_registry(tmp_path):
    """Validation reads the one registry: every registered attack (one added at run time too)
    validates (the language-model ones in a language-model config; reference_model with the
    external reference NLL it needs), any other name is refused naming the field."""
    import jaxmem.attacks
    from jaxmem.attacks.registry import ATTACKS, LM_ATTACKS, register, target_attack

    assert jaxmem.attacks.ATTACKS is ATTACKS
    lm = {"data": {"source": "python_text"}, "model": {"name": "causal_lm"}}
    np.save(tmp_path / "ref.npy", np.ones(3))
    extra = {"reference_model": {"reference_nll": str(tmp_path / "ref.npy")}}
    for a in ATTACKS:
        cfgmod.from_dict({**(lm if a in LM_ATTACKS else {}), "scoring": {"attacks": [a], **extra.get(a, {})}})
    for a in LM_ATTACKS:
        cfgmod.from_dict({**lm, "scoring": {"attacks": [a], **extra.get(a, {})}})
    with pytest.raises(cfgmod.ConfigError, match="scoring.attacks: unknown attack 'nope'"):
        cfgmod.from_dict({"scoring": {"attacks": ["nope"]}})
    register("_test_only", target_attack(lambda loss: -loss, "loss"))
    try:
        cfgmod.from_dict({"scoring": {"attacks": ["_test_only"]}})
    finally:
        del ATTACKS["_test_only"]
