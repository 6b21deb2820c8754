"""Bring your own models (#27, #21.4/9/11): the three routes a PyTorch user takes (the array API,
import_arrays + score + show, the LiRA layout + import-lira) from PyTorch-shaped inputs, with a
torch-free stand-in for torch tensors, checked end to end for ids, numbers and images; and each
crash of the issue refused at the door in one line."""

import csv
import json
import warnings

import ml_dtypes
import numpy as np
import pytest

from jaxmem import attacks, cli, signals
from jaxmem.config import ConfigError
from jaxmem.io import RunError
from jaxmem.runs import export_lira, import_arrays, import_lira, load_run, score
from jaxmem.runs.interop import ArrayInputError


class FakeTensor:
    """What the import path touches of a torch tensor: ``detach``, ``cpu``, ``float``, ``dtype``,
    and ``__array__``, which (as torch's) refuses bfloat16 and tensors that require grad."""

    def __init__(self, a, dtype=None, requires_grad=True):
        self._a = np.asarray(a)
        self.dtype = dtype or f"torch.{self._a.dtype.name}"
        self.requires_grad = requires_grad
        self.calls = []

    def detach(self):
        return FakeTensor(self._a, self.dtype, requires_grad=False)

    def cpu(self):
        return self

    def float(self):
        return FakeTensor(self._a.astype(np.float32), "torch.float32", self.requires_grad)

    def numpy(self):
        return self.__array__()

    def __array__(self, dtype=None, copy=None):
        if "bfloat16" in self.dtype:
            raise TypeError("Got unsupported ScalarType BFloat16")
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return self._a if dtype is None else self._a.astype(dtype)


def _torch_like(rng, M=8, N=48, T=16, A=2, C=3):
    """PyTorch-shaped inputs: bfloat16 logits tensors, an int 0/1 keep tensor, NCHW images,
    shuffled non-contiguous example ids (rows of a bigger dataset)."""
    keep = (rng.random((M, N)) < 0.5).astype(np.int64)
    labels = rng.integers(0, C, N)
    z = rng.normal(size=(M, N, A, C))
    z[np.arange(M)[:, None], np.arange(N)[None], :, labels[None]] += 2.0 * keep[..., None]
    z16 = z.astype(ml_dtypes.bfloat16)
    tz16 = rng.normal(size=(M, T, A, C)).astype(ml_dtypes.bfloat16)
    return {
        "keep": FakeTensor(keep), "logits": FakeTensor(z16, "torch.bfloat16"),
        "labels": FakeTensor(labels), "test_logits": FakeTensor(tz16, "torch.bfloat16"),
        "test_labels": FakeTensor(rng.integers(0, C, T)),
        "example_ids": rng.choice(10**6, N, replace=False),
        "test_ids": rng.choice(10**6, T, replace=False),
        "x_nchw": rng.integers(0, 256, (N, 1, 6, 5)).astype(np.uint8),
        "np": {"keep": keep.astype(bool), "logits": z16.astype(np.float32), "labels": labels,
               "test_logits": tz16.astype(np.float32)},
    }


def _mem_reference(keep, logits, labels):
    """Feldman-Zhang memorization in float64 by brute force: P(correct | IN) - P(correct | OUT)."""
    correct = (logits[:, :, 0].astype(np.float64).argmax(-1) == labels).astype(np.float64)
    out = np.full(keep.shape[1], np.nan)
    for i in range(keep.shape[1]):
        k = keep[:, i]
        if k.any() and (~k).any():
            out[i] = correct[k, i].mean() - correct[~k, i].mean()
    return out


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore")
    return w


def test_three_routes_from_pytorch_inputs_agree_on_ids_numbers_and_images(tmp_path, rng):
    d = _torch_like(rng)
    ref = d["np"]
    ids, x = d["example_ids"], d["x_nchw"].transpose(0, 2, 3, 1)
    w = _quiet()
    # --- route 1: the array API, tensors converted by attacks.to_numpy
    logits = attacks.to_numpy(d["logits"], "logits")
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits, ref["logits"])      # bfloat16 -> float32 is exact
    keep = attacks.to_numpy(d["keep"]).astype(bool)
    labels = attacks.to_numpy(d["labels"])
    sig = signals.compute_signals(logits, labels, ["phi", "p", "p_pop"],
                                  test_logits=attacks.to_numpy(d["test_logits"]),
                                  test_labels=attacks.to_numpy(d["test_labels"]))
    ev1 = attacks.evaluate(sig, keep, attacks=("lira_online", "rmia_offline")).summary()
    # --- route 2: import_arrays from the tensors themselves, then score
    import_arrays(tmp_path / "a", d["keep"], d["logits"], d["labels"],
                  test_logits=d["test_logits"], test_labels=d["test_labels"],
                  example_ids=ids, test_ids=d["test_ids"], x_train=x, name="torch")
    s2 = score(tmp_path / "a", log=lambda *a: None)
    # --- route 3: out to the LiRA layout, back in with import-lira (CLI), scored there
    export_lira(tmp_path / "a", tmp_path / "lira")
    assert cli.main(["import-lira", str(tmp_path / "lira"), "--workdir", str(tmp_path / "b")]) == 0
    s3 = load_run(tmp_path / "b").summary
    w.__exit__(None, None, None)

    mem = _mem_reference(ref["keep"], ref["logits"], ref["labels"])
    for summary, wd in ((s2, tmp_path / "a"), (s3, tmp_path / "b")):
        run = load_run(wd)
        np.testing.assert_array_equal(run.example_ids, ids)
        np.testing.assert_array_equal(run.test_ids, d["test_ids"])
        np.testing.assert_array_equal(np.asarray(run.logits), ref["logits"])
        np.testing.assert_array_equal(np.asarray(run.test_logits), ref["test_logits"])
        np.testing.assert_array_equal(run.keep, ref["keep"])
        for a in ("lira_online", "rmia_offline"):
            assert summary["attacks"][a]["auc"] == pytest.approx(ev1[a]["auc"], abs=1e-12)
        assert summary["memorization"]["mean"] == pytest.approx(np.nanmean(mem), abs=1e-6)   # (a float32 estimator)
        # ids: every row of memorization.csv names its example by id, with its number
        rows = _csv(wd / "results" / "memorization.csv")
        for r in rows:
            i = int(r["index"])
            assert int(r["example_id"]) == ids[i]
            assert int(r["label"]) == ref["labels"][i]
            if np.isfinite(mem[i]):
                assert float(r["mem"]) == pytest.approx(mem[i], abs=1e-5)
        assert summary["memorization"]["top10"] == ids[summary["memorization"]["top10_index"]].tolist()
        # images: the report's grid shows the right example's image
        ex = _csv(wd / "results" / "examples.csv")
        shown = np.load(wd / "results" / "examples_inputs.npy")
        for r, img in zip(ex, shown):
            np.testing.assert_array_equal(img, x[int(r["index"])])
            assert int(r["example_id"]) == ids[int(r["index"])]
        # show --example ID describes that example
        k = int(rng.integers(len(ids)))
        out = cli_show(wd, ids[k])
        assert out["index"] == k and out["label"] == ref["labels"][k]
    assert s2["name"] == "torch"


def cli_show(wd, example_id):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(["show", str(wd), "--example", str(example_id), "--json"]) == 0
    return json.loads(buf.getvalue())


def _rmia_arrays(rng, M=6, N=30, C=3):
    return (rng.random((M, N)) < 0.5, rng.normal(size=(M, N, 1, C)).astype(np.float32),
            rng.integers(0, C, N))


def test_evaluate_refuses_rmia_with_an_empty_population(rng):
    """Before: ValueError "cannot reshape array of size 0 into shape (6,0,newaxis)"."""
    keep, _, _ = _rmia_arrays(rng)
    p = rng.random(keep.shape)
    with pytest.raises(ValueError, match=r"need population signals \['p_pop'\].*Z = 0"):
        attacks.evaluate({"p": p, "p_pop": np.zeros((len(keep), 0))}, keep,
                         attacks=("rmia_offline",))


def test_import_arrays_refuses_rmia_without_test_arrays(tmp_path, rng):
    """Before: the run was written, and its scoring crashed at the end."""
    keep, logits, labels = _rmia_arrays(rng)
    with pytest.raises(ConfigError, match="scoring.attacks: .*rmia_online.*need a population"):
        import_arrays(tmp_path / "x", keep, logits, labels,
                      overrides=['scoring.attacks=["rmia_online"]'])
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_score_refuses_rmia_without_a_population_before_any_work(tmp_path, rng):
    """The README's snippet (no test logits) and the LiRA route: scored without RMIA; asking for
    it is refused before anything is computed (before: "cannot reshape" at the end)."""
    keep, logits, labels = _rmia_arrays(rng)
    import_arrays(tmp_path / "r", keep, logits, labels)
    with pytest.raises(ConfigError, match="need a population"):
        score(tmp_path / "r", log=lambda *a: None, overrides=['scoring.attacks=["rmia_offline"]'])
    assert not (tmp_path / "r" / "results").exists()
    from jaxmem.attacks import write_lira_layout

    write_lira_layout(tmp_path / "lira", keep, logits, labels)
    import_lira(tmp_path / "lira", tmp_path / "l")      # (the CLI's import-lira, before scoring)
    assert cli.main(["score", str(tmp_path / "l"), "--set",
                     'scoring.attacks=["rmia_offline"]']) == 2


def _small(rng, M=4, N=10, C=3):
    return (rng.random((M, N)) < 0.5, rng.normal(size=(M, N, C)).astype(np.float32),
            rng.integers(0, C, N))


@pytest.mark.parametrize("case", ["short", "repeated", "fractional", "too_big", "comma",
                                  "repeated_names"])
def test_example_ids_are_checked_at_the_door(tmp_path, rng, case):
    keep, logits, labels = _small(rng)
    N = len(labels)
    ids = rng.choice(1000, N, replace=False)
    bad, msg = {"short": (ids[:-1], r"example_ids: expected \[10\]"),
                "repeated": (np.r_[ids[:-1], ids[0]], "example_ids: ids must be unique; 1 repeated"),
                "comma": (np.array([f"img_{i},a.png" for i in range(N)]),
                          "example_ids: string ids must be non-empty, without commas"),
                "repeated_names": (["a.png"] * N, "ids must be unique; 1 repeated .*'a.png' 10 times"),
                "fractional": (ids + 0.5, "example_ids: ids must be integers or strings, got non-integer"),
                "too_big": (np.full(N, 2**63, np.uint64), "fit int64")}[case]
    with pytest.raises(ArrayInputError, match=msg):
        import_arrays(tmp_path / "x", keep, logits, labels, example_ids=bad)
    assert not (tmp_path / "x").exists()


def test_test_ids_checked_and_integral_float_ids_accepted(tmp_path, rng):
    keep, logits, labels = _small(rng)
    with pytest.raises(ArrayInputError, match="test_ids: ids must be unique"):
        import_arrays(tmp_path / "x", keep, logits, labels, test_logits=logits[:, :3],
                      test_labels=labels[:3], test_ids=[5, 5, 6])
    ids = rng.choice(1000, len(labels), replace=False)
    run = import_arrays(tmp_path / "ok", keep, logits, labels, example_ids=ids.astype(np.float64))
    assert run.example_ids.dtype == np.int64
    np.testing.assert_array_equal(run.example_ids, ids)


@pytest.mark.parametrize("field", ["test_ids", "x_test"])
def test_test_side_arrays_without_test_logits_say_so(tmp_path, rng, field):
    """test_ids or x_test without a test set: one line saying what is missing (it said
    "expected [0] (one id per example)", as if the arrays were the wrong length)."""
    keep, logits, labels = _small(rng)
    arr = {"test_ids": np.arange(5), "x_test": rng.random((5, 4, 4))}[field]
    with pytest.raises(ArrayInputError, match=f"^{field}: given without test_logits"):
        import_arrays(tmp_path / "x", keep, logits, labels, **{field: arr})
    assert not (tmp_path / "x").exists()


def test_bfloat16_tensor_and_int_keep_are_imported(tmp_path, rng):
    """Before: a raw TypeError (torch refuses bfloat16 in NumPy) and "keep: expected a bool"."""
    keep, logits, labels = _small(rng)
    z16 = logits.astype(ml_dtypes.bfloat16)
    run = import_arrays(tmp_path / "r", keep.astype(np.int64), FakeTensor(z16, "torch.bfloat16"),
                        labels)
    np.testing.assert_array_equal(np.asarray(run.logits)[:, :, 0], z16.astype(np.float32))
    np.testing.assert_array_equal(run.keep, keep)


def test_round_trip_keeps_ids_and_test_set(tmp_path, rng):
    """#21.4: export-lira then import-lira renumbered ids to 0..N-1 and dropped the test set."""
    keep, logits, labels = _small(rng, M=5, N=12)
    ids = rng.choice(10**4, 12, replace=False)
    tl, tlab = rng.normal(size=(5, 6, 3)).astype(np.float32), rng.integers(0, 3, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_arrays(tmp_path / "a", keep, logits, labels, test_logits=tl, test_labels=tlab,
                      example_ids=ids)
        export_lira(tmp_path / "a", tmp_path / "lira")
        import_lira(tmp_path / "lira", tmp_path / "b")
    b = load_run(tmp_path / "b")
    np.testing.assert_array_equal(b.example_ids, ids)
    np.testing.assert_array_equal(b.test_labels, tlab)
    np.testing.assert_array_equal(np.asarray(b.test_logits)[:, :, 0], tl)


def test_import_arrays_keeps_its_name(tmp_path, rng):
    """#21.11: every imported run was named "test_labels" (a loop variable shadowed ``name``)."""
    keep, logits, labels = _small(rng)
    run = import_arrays(tmp_path / "r", keep, logits, labels, name="cifar_resnet")
    assert run.config.name == "cifar_resnet"
    assert run.config.data.source == "external:cifar_resnet"
    assert run.dataset["name"] == "cifar_resnet"


def test_inputs_users_have_are_converted_or_refused_in_one_line(tmp_path, rng):
    M, N, C = 4, 12, 3
    keep = rng.random((M, N)) < 0.5
    labels = rng.integers(0, C, N)
    z = rng.normal(size=(M, N, 2, C))
    # float16 is kept as float16 (every number), and scored with signals.dtype = "float16"
    run = import_arrays(tmp_path / "h", keep.astype(np.int32), z.astype(np.float16), labels)
    assert np.asarray(run.logits).dtype == np.float16 and run.config.signals.dtype == "float16"
    np.testing.assert_array_equal(np.asarray(run.logits), z.astype(np.float16))
    assert run.keep.dtype == bool
    # bfloat16 numpy arrays (ml_dtypes, as JAX gives them) and torch tensors become float32
    run = import_arrays(tmp_path / "b", keep, z.astype(ml_dtypes.bfloat16), labels)
    np.testing.assert_array_equal(np.asarray(run.logits), z.astype(ml_dtypes.bfloat16).astype(np.float32))
    for bad, msg in [
        (dict(keep=keep * 2), "keep: expected bool .* values other than 0 and 1"),
        (dict(logits=z.astype(np.int64)), "logits: expected floating-point logits"),
        (dict(x_train=np.zeros((N, 3, 8, 8))), r"x_train: looks channels-first .*transpose\(0, 2, 3, 1\)"),
        (dict(x_train=np.zeros((N - 1, 8, 8))), r"x_train: expected \[12, ...\]"),
        (dict(queries=["identity"]), "queries: expected A = 2 names"),
        (dict(labels=np.array([[0]] * N)), r"labels: expected \[N\]"),
        # test logits with another query count: the error names the axis (#27.4)
        (dict(test_logits=np.zeros((keep.shape[0], 5, 1, z.shape[-1]), np.float32), test_labels=np.zeros(5, int)),
         r"test_logits: .*axis A \(queries\) is 2 in logits but 1 in test_logits"),
    ]:
        kw = dict(keep=keep, logits=z.astype(np.float32), labels=labels) | bad
        with pytest.raises(ArrayInputError, match=msg):
            import_arrays(tmp_path / "x", kw.pop("keep"), kw.pop("logits"), kw.pop("labels"), **kw)

    class Unreadable:
        def __array__(self, dtype=None, copy=None):
            raise TypeError("Got unsupported ScalarType ComplexHalf")

    with pytest.raises(ArrayInputError, match=r"logits: cannot be read as a NumPy array .*\.numpy\(\)"):
        import_arrays(tmp_path / "x", keep, Unreadable(), labels)


def test_imported_run_records_only_what_is_known(tmp_path, rng):
    M, N, C = 4, 12, 3
    keep = rng.random((M, N)) < 0.5
    run = import_arrays(tmp_path / "r", keep, rng.normal(size=(M, N, 2, C)).astype(np.float32),
                        rng.integers(0, C, N), queries=["identity", "flip"])
    assert run.config.signals.queries == ["identity", "flip"]
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert set(stored) == {"name", "data", "subsets", "signals", "scoring"}   # no model/train
    assert stored["signals"]["queries"] == ["identity", "flip"]
    # rescoring with other settings keeps it so (it used to write every default back)
    score(tmp_path / "r", log=lambda *a: None, overrides=['scoring.attacks=["loss"]'])
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert set(stored) == {"name", "data", "subsets", "signals", "scoring"}
    assert stored["scoring"]["attacks"] == ["loss"]
    run2 = import_arrays(tmp_path / "d", keep, rng.normal(size=(M, N, 3, C)).astype(np.float32),
                         rng.integers(0, C, N))
    assert run2.config.signals.queries == ["identity", "external:1", "external:2"]
    # an external query cannot be given to a run jaxmem trains
    with pytest.raises(ConfigError, match="signals.queries: 'external:1'"):
        from jaxmem import config as cfgmod

        cfgmod.load_config(None, ['signals.queries=["identity", "external:1"]'])


def test_lira_round_trip_keeps_ids_test_set_inputs_dtype_and_diverged(tmp_path, rng):
    M, N, T, A, C = 5, 20, 7, 2, 4
    keep = rng.random((M, N)) < 0.5
    z = rng.normal(size=(M, N, A, C)).astype(np.float16)
    tz = rng.normal(size=(M, T, A, C)).astype(np.float16)
    labels, tlabels = rng.integers(0, C, N), rng.integers(0, C, T)
    ids, tids = rng.choice(10**5, N, replace=False), rng.choice(10**5, T, replace=False)
    x, xt = rng.random((N, 4, 4, 3)).astype(np.float32), rng.random((T, 4, 4, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_arrays(tmp_path / "a", keep, z, labels, test_logits=tz, test_labels=tlabels,
                      example_ids=ids, test_ids=tids, x_train=x, x_test=xt,
                      queries=["identity", "flip"], diverged=np.eye(M, dtype=bool)[2])
        export_lira(tmp_path / "a", tmp_path / "lira")
        export_lira(tmp_path / "a", tmp_path / "lira")      # a re-export replaces the files
        import_lira(tmp_path / "lira", tmp_path / "b")
    a, b = load_run(tmp_path / "a"), load_run(tmp_path / "b")
    for name in ("keep", "labels", "example_ids", "test_labels", "test_ids", "diverged"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("logits", "test_logits"):
        assert np.asarray(getattr(b, name)).dtype == np.float16
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
    for f in ("x_train.npy", "x_test.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "a" / f), np.load(tmp_path / "b" / f))
    assert b.config.signals.queries == ["identity", "flip"]
    assert b.diverged.tolist() == [False, False, True, False, False]
    # the reference code's own files are as it writes them
    z2 = np.load(tmp_path / "lira" / "experiment-3_5" / "logits" / "0000000000.npy")
    assert z2.shape == (N, 1, A, C)
    np.testing.assert_array_equal(z2[:, 0], z[3])


def test_lira_pytorch_layout_is_read(tmp_path, rng):
    """orientino/lira-pytorch: <savedir>/<shadow_id>/keep.npy [N], logits.npy [N, n_queries, C]
    (its inference.py), no labels saved."""
    M, N, A, C = 4, 15, 2, 3
    keep = rng.random((M, N)) < 0.5
    z = rng.normal(size=(M, N, A, C)).astype(np.float32)
    labels = rng.integers(0, C, N)
    src = tmp_path / "exp" / "cifar10"
    for m in (0, 1, 2, 10):      # shadow ids; 10 sorts after 2 (by number, not by name)
        k = [0, 1, 2, 10].index(m)
        (src / str(m)).mkdir(parents=True)
        np.save(src / str(m) / "keep.npy", keep[k])
        np.save(src / str(m) / "logits.npy", z[k])
    arrays = attacks.read_lira_layout(src)
    assert arrays["layout"] == "lira-pytorch" and arrays["experiments"] == ["0", "1", "2", "10"]
    np.testing.assert_array_equal(arrays["logits"], z)
    with pytest.raises(RunError, match="no y_train.npy: give the N training labels"):
        import_lira(src, tmp_path / "r")
    np.save(tmp_path / "labels.npy", labels)
    with pytest.warns(UserWarning, match="no plain-input query.*read query 0, a random augmentation"):
        import_lira(src, tmp_path / "r", labels=tmp_path / "labels.npy")   # = --labels FILE.npy
    run = load_run(tmp_path / "r")
    np.testing.assert_array_equal(np.asarray(run.logits), z)
    np.testing.assert_array_equal(run.keep, keep)
    np.testing.assert_array_equal(run.labels, labels)
    assert run.config.signals.queries == [f"external:random_augmentation_{a}" for a in range(A)]


def test_file_name_ids_work_end_to_end(tmp_path, rng, capsys):
    """#27.2: string ids were accepted at import, then crashed score at its end and show --example.
    Now: score, memorization.csv, examples.csv, summary, show --example NAME, the report and the
    LiRA round trip all carry them."""
    import pandas as pd

    M, N, T, C = 6, 24, 5, 3
    keep = rng.random((M, N)) < 0.5
    labels = rng.integers(0, C, N)
    z = rng.normal(size=(M, N, 1, C)).astype(np.float32)
    z[np.arange(M)[:, None], np.arange(N)[None], :, labels[None]] += 2.0 * keep[..., None]
    names = [f"train/{rng.integers(10**6)}_{i}.png" for i in range(N)]
    tnames = np.array([f"test/{i}.jpg" for i in range(T)], dtype="S")     # bytes, too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_arrays(tmp_path / "r", keep, z, labels, example_ids=pd.Series(names),
                      test_logits=rng.normal(size=(M, T, 1, C)).astype(np.float32),
                      test_labels=rng.integers(0, C, T), test_ids=tnames,
                      x_train=rng.random((N, 4, 4)))
        summary = score(tmp_path / "r", log=lambda *a: None)
        from jaxmem.report import write_report

        html = write_report(tmp_path / "r").read_text()
    run = load_run(tmp_path / "r")
    assert run.example_ids.tolist() == names and run.test_ids.tolist() == tnames.astype(str).tolist()
    assert summary["memorization"]["top10"] == [names[i] for i in summary["memorization"]["top10_index"]]
    for f in ("memorization.csv", "examples.csv"):
        for r in _csv(tmp_path / "r" / "results" / f):
            assert r["example_id"] == names[int(r["index"])]
    assert names[int(_csv(tmp_path / "r" / "results" / "examples.csv")[0]["index"])] in html
    k = int(rng.integers(N))
    out = cli_show(tmp_path / "r", names[k])
    assert out["example_id"] == names[k] and out["index"] == k and out["label"] == labels[k]
    assert set(out["attacks"]) >= {"lira_online", "rmia_offline"}
    assert cli.main(["show", str(tmp_path / "r"), "--example", "nope.png"]) == 2
    assert "no training example with id nope.png" in capsys.readouterr().err
    export_lira(tmp_path / "r", tmp_path / "lira")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = import_lira(tmp_path / "lira", tmp_path / "b")
    assert b.example_ids.tolist() == names


def test_digit_string_ids_stay_strings(tmp_path, rng):
    """String ids made of digits ("007", zero-padded file stems) are strings: the report's table
    and show --example's influence list gave them back as integers ("007" became 7)."""
    M, N, T, C = 6, 20, 6, 3
    keep = rng.random((M, N)) < 0.5
    labels = rng.integers(0, C, N)
    z = rng.normal(size=(M, N, 1, C)).astype(np.float32)
    z[np.arange(M)[:, None], np.arange(N)[None], :, labels[None]] += 2.0 * keep[..., None]
    names, tnames = [f"{i:03d}" for i in range(N)], [f"{i:04d}" for i in range(T)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_arrays(tmp_path / "r", keep, z, labels, example_ids=names,
                      test_logits=rng.normal(size=(M, T, 1, C)).astype(np.float32),
                      test_labels=rng.integers(0, C, T), test_ids=tnames,
                      overrides=["scoring.influence_top_k=2"])
        score(tmp_path / "r", log=lambda *a: None)
        from jaxmem.report.run import run_html

        html = run_html(tmp_path / "r")
    shown = [r["example_id"] for r in _csv(tmp_path / "r" / "results" / "examples.csv")]
    assert shown and all(f"<td>{e}</td>" in html for e in shown)
    infl = [t["test_id"] for i in range(N) for t in cli_show(tmp_path / "r", names[i])["influence"]]
    assert infl and set(infl) <= set(tnames)


def test_import_lira_keeps_the_folders_inputs_and_refuses_what_it_cannot_use(tmp_path, rng):
    from jaxmem.attacks import write_lira_layout

    M, N, C = 4, 10, 3
    keep, logits, labels = _small(rng, M=M, N=N, C=C)
    x = rng.integers(0, 256, (N, 6, 6, 3)).astype(np.uint8)
    write_lira_layout(tmp_path / "ok", keep, logits, labels, x=x)
    run = import_lira(tmp_path / "ok", tmp_path / "r")
    np.testing.assert_array_equal(np.load(run.path / "x_train.npy"), x)
    assert run.dataset["input_shape"] == [6, 6, 3]
    from jaxmem.runs.provenance import load

    training = load(run.path)["imported"]["training"]   # what the folder says, nothing invented
    assert training == {"layout": "reference", "hparams": {"num_experiments": M}, "epochs": [0]}
    with pytest.raises(RunError, match="y_train.npy differs from the labels given"):
        import_lira(tmp_path / "ok", tmp_path / "r2", labels=(labels + 1) % C)
    write_lira_layout(tmp_path / "nchw", keep, logits, labels, x=x.transpose(0, 3, 1, 2))
    with pytest.raises(RunError, match=r"x_train: looks channels-first .*transpose\(0, 2, 3, 1\)"):
        import_lira(tmp_path / "nchw", tmp_path / "r3")


def test_a_trained_runs_round_trip_keeps_its_inputs_test_set_and_scores(tmp_path):
    """#21.4 on a run jaxmem trained (the session's small reference run): export-lira writes its
    inputs (rebuilt from its config), ids and test set; import-lira gives them back and scores the
    same numbers."""
    import helpers_run as H

    from jaxmem.data import build_dataset

    wd = H.finished_reference()
    export_lira(wd, tmp_path / "lira")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = import_lira(tmp_path / "lira", tmp_path / "b")
        s = score(tmp_path / "b", log=lambda *a: None, overrides=[
            'scoring.attacks=["lira_online","global_threshold"]'])
    a = load_run(wd)
    for name in ("keep", "labels", "example_ids", "test_labels", "test_ids", "diverged"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("logits", "test_logits"):
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
    ds = build_dataset(a.config)
    np.testing.assert_array_equal(np.load(b.path / "x_train.npy"), ds.x_train)
    np.testing.assert_array_equal(np.load(b.path / "x_test.npy"), ds.x_test)
    assert b.config.signals.queries == a.config.signals.queries
    ref = a.summary
    for k in ("lira_online", "global_threshold"):
        assert s["attacks"][k]["auc"] == pytest.approx(ref["attacks"][k]["auc"], abs=1e-12)
    assert s["memorization"]["mean"] == pytest.approx(ref["memorization"]["mean"], abs=1e-12)
    assert s["memorization"]["top10"] == ref["memorization"]["top10"]
