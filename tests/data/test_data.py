"""Tests for jaxmem.data: sources against independent references, validate_dataset(), transforms."""

import dataclasses
import hashlib
import json
import random
import time

import numpy as np
import pytest
import scipy.stats

from jaxmem import data as D

# sha256 of the sorted digits test ids (little-endian int64). A regression pin, frozen when the
# split was introduced: the split must never change between versions of jaxmem or sklearn.
DIGITS_TEST_IDS_SHA256 = "167826c2019607c408010a4839e66483ab27c86ee12ce0031c7b4c90d70dc785"


@pytest.fixture(scope="module")
def digits():
    return D.load("digits")


@pytest.fixture(scope="module")
def sk_digits():
    from sklearn.datasets import load_digits

    b = load_digits()
    return np.asarray(b.images, np.float64), np.asarray(b.target, np.int64)


def synthetic(n_train=50, n_test=20, shape=(3,), num_classes=4, seed=0, ints=False):
    rng = np.random.default_rng(seed)
    if ints:
        x, xt = rng.integers(0, 7, (n_train, *shape)), rng.integers(0, 7, (n_test, *shape))
        x, xt = x.astype(np.int32), xt.astype(np.int32)
    else:
        x = rng.normal(size=(n_train, *shape)).astype(np.float32)
        xt = rng.normal(size=(n_test, *shape)).astype(np.float32)
    return D.Dataset(
        name="synthetic",
        x_train=x,
        y_train=rng.integers(0, num_classes, n_train).astype(np.int32),
        ids_train=np.arange(n_train, dtype=np.int64),
        x_test=xt,
        y_test=rng.integers(0, num_classes, n_test).astype(np.int32),
        ids_test=np.arange(n_test, dtype=np.int64),
        num_classes=num_classes,
        meta={"source": "synthetic", "transforms": [], "next_id": max(n_train, n_test)},
    )


def rows_by_id(ds):
    return {int(i): r for r, i in enumerate(ds.ids_train)}


# --------------------------------------------------------------------------- digits


def reference_digits_test_mask(labels, frac=0.2):
    """Independent re-derivation of the documented split rule, with a Python sort."""
    key = lambda i: int(hashlib.sha256(f"digits:{i}".encode()).hexdigest()[:15], 16)
    test = np.zeros(len(labels), bool)
    for c in sorted(set(labels.tolist())):
        members = [i for i in range(len(labels)) if labels[i] == c]
        chosen = sorted(members, key=lambda i: (key(i), i))[: int(round(frac * len(members)))]
        test[chosen] = True
    return test


def test_digits_split_is_fixed(digits, sk_digits):
    _, labels = sk_digits
    assert len(labels) == 1797
    ids = np.concatenate([digits.ids_train, digits.ids_test])
    np.testing.assert_array_equal(np.sort(ids), np.arange(1797))  # a partition of all images
    assert np.intersect1d(digits.ids_train, digits.ids_test).size == 0
    ref = reference_digits_test_mask(labels)
    np.testing.assert_array_equal(np.sort(digits.ids_test), np.flatnonzero(ref))
    for c in range(10):  # stratified: each class contributes round(0.2 * n_c) test examples
        n_c = int((labels == c).sum())
        assert int((digits.y_test == c).sum()) == round(0.2 * n_c)
    assert (digits.num_train, digits.num_test) == (1438, 359)
    pin = hashlib.sha256(np.sort(digits.ids_test).astype("<i8").tobytes()).hexdigest()
    assert pin == DIGITS_TEST_IDS_SHA256


def test_digits_arrays_match_sklearn(digits, sk_digits):
    images, labels = sk_digits
    assert digits.x_train.dtype == np.float32 and digits.x_train.shape == (1438, 8, 8, 1)
    assert digits.y_train.dtype == np.int32 and digits.ids_train.dtype == np.int64
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
    raw_tr = images[digits.ids_train][..., None] / 16.0
    raw_te = images[digits.ids_test][..., None] / 16.0
    mean, std = raw_tr.mean(), raw_tr.std()  # float64, train split only
    np.testing.assert_allclose(digits.x_train, (raw_tr - mean) / std, atol=1e-5)
    np.testing.assert_allclose(digits.x_test, (raw_te - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(digits.y_train, labels[digits.ids_train])
    np.testing.assert_array_equal(digits.y_test, labels[digits.ids_test])
    np.testing.assert_allclose(digits.meta["preprocessing"]["mean"], [mean], rtol=1e-12)
    np.testing.assert_allclose(digits.meta["preprocessing"]["std"], [std], rtol=1e-12)
    assert json.loads(json.dumps(digits.meta)) == digits.meta
    assert D.dataset_fingerprint(D.load("digits")) == D.dataset_fingerprint(digits)


# --------------------------------------------------------------------------- mnist1d


def test_mnist1d_matches_package_and_keeps_global_rng():
    from mnist1d.data import get_dataset_args, make_dataset

    D.sources._mnist1d_raw.cache_clear()
    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    t = time.perf_counter()
    ds = D.load("mnist1d")
    elapsed = time.perf_counter() - t
    assert (np.random.random(), random.random()) == before  # load left global RNGs untouched
    print(f"mnist1d generation + load: {elapsed:.2f} s")

    ref = make_dataset(get_dataset_args())
    x, xt = np.asarray(ref["x"], np.float64), np.asarray(ref["x_test"], np.float64)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_allclose(ds.x_train, (x - x.mean()) / x.std(), atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (xt - x.mean()) / x.std(), atol=1e-5)
    np.testing.assert_array_equal(ds.y_train, ref["y"])
    np.testing.assert_array_equal(ds.y_test, ref["y_test"])
    np.testing.assert_array_equal(ds.ids_train, np.arange(4000))
    np.testing.assert_array_equal(ds.ids_test, np.arange(1000))
    assert D.dataset_fingerprint(D.load("mnist1d")) == D.dataset_fingerprint(ds)


# --------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize("name,shape,classes", [
    ("mnist", (28, 28, 1), 10),
    ("cifar10", (32, 32, 3), 10),
    ("cifar100", (32, 32, 3), 100),
])
def test_tfds_mock(name, shape, classes):
    tfds = pytest.importorskip("tensorflow_datasets")
    n = 23
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = D.load(f"tfds:{name}")
        src = tfds.data_source(name, split="train")
        raw = np.stack([np.asarray(src[i]["image"]) for i in range(n)]).astype(np.float64) / 255
        labels = np.array([int(src[i]["label"]) for i in range(n)])
    assert ds.x_train.shape == (n, *shape) and ds.x_test.shape == (n, *shape)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.num_classes == classes
    assert ds.y_train.min() >= 0 and ds.y_train.max() < classes
    np.testing.assert_array_equal(ds.ids_train, np.arange(n))
    np.testing.assert_array_equal(ds.y_train, labels)
    mean = raw.reshape(-1, shape[-1]).mean(0)
    std = raw.reshape(-1, shape[-1]).std(0)
    np.testing.assert_allclose(ds.x_train, (raw - mean) / std, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.reshape(-1, shape[-1]).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.reshape(-1, shape[-1]).std(0), 1, atol=1e-5)
    assert ds.meta["source"] == f"tfds:{name}"
    json.dumps(ds.meta)


def _tiny_builder_class():
    import tensorflow_datasets as tfds

    class JaxmemTestTinyImages(tfds.core.GeneratorBasedBuilder):
        """Real (not mocked) array_record data; Tensor image feature because PNG needs TF."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(6, 5, 3), dtype=np.uint8),
                "label": tfds.features.ClassLabel(num_classes=4),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 37), "test": self._generate_examples(1, 11)}

        def _generate_examples(self, seed, n):
            for i, (im, y) in enumerate(zip(*tiny_examples(seed, n))):
                yield i, {"image": im, "label": int(y)}

    return JaxmemTestTinyImages


def tiny_examples(seed, n):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 6, 5, 3), dtype=np.uint8), rng.integers(0, 4, n)


_TINY = None


def test_tfds_array_record_round_trip(tmp_path):
    global _TINY
    pytest.importorskip("tensorflow_datasets")
    _TINY = _TINY or _tiny_builder_class()
    _TINY(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    ds = D.load("tfds:jaxmem_test_tiny_images", data_dir=str(tmp_path))
    for split, seed, n in (("train", 0, 37), ("test", 1, 11)):
        images, labels = tiny_examples(seed, n)
        x = getattr(ds, f"x_{split}")
        assert x.shape == (n, 6, 5, 3) and getattr(ds, f"ids_{split}").tolist() == list(range(n))
        # TFDS stores examples in its own shuffled order: compare as multisets of (image, label).
        pm = ds.meta["preprocessing"]
        raw = np.rint((x.astype(np.float64) * pm["std"] + pm["mean"]) * 255).astype(np.uint8)
        got = sorted(zip((r.tobytes() for r in raw), getattr(ds, f"y_{split}").tolist()))
        want = sorted(zip((r.tobytes() for r in images), labels.tolist()))
        assert got == want
    train_raw = tiny_examples(0, 37)[0].reshape(-1, 3) / 255.0
    np.testing.assert_allclose(ds.meta["preprocessing"]["mean"], train_raw.mean(0), rtol=1e-10)
    np.testing.assert_allclose(ds.meta["preprocessing"]["std"], train_raw.std(0), rtol=1e-10)
    assert ds.num_classes == 4


def test_tfds_missing_data_fails_fast(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    t = time.perf_counter()
    with pytest.raises(D.DataError) as e:
        D.load("tfds:cifar10", data_dir=str(tmp_path))
    # the failure this guards against is TFDS retrying a download for minutes; 30 s leaves a
    # loaded CI machine room for the lazy imports
    assert time.perf_counter() - t < 30
    msg = str(e.value)
    assert "\n" not in msg and "not prepared" in msg and str(tmp_path) in msg
    assert "file_format='array_record'" in msg and "download_and_prepare()" in msg


def test_tfds_tfrecord_data_is_diagnosed(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    d = tmp_path / "mnist" / "3.0.1"
    d.mkdir(parents=True)
    (d / "mnist-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(D.DataError, match="TFRecord format, which needs TensorFlow"):
        D.load("tfds:mnist", data_dir=str(tmp_path))


def test_unknown_sources():
    with pytest.raises(D.DataError, match="unknown data source"):
        D.load("imagenet")
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(D.DataError, match="unknown TFDS dataset"):
        D.load("tfds:no_such_dataset_xyz")


@pytest.mark.parametrize("shape,per_channel", [((9, 4, 5, 3), True), ((7, 6, 1), True),
                                                 ((11, 13), False), ((5, 2, 2, 4), False)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_standardize_matches_float64_reference(shape, per_channel, dtype):
    rng = np.random.default_rng(sum(shape))
    hi = 256 if dtype == np.uint8 else 1000
    x, xt = rng.integers(0, hi, shape).astype(dtype), rng.integers(0, hi, shape).astype(dtype)
    scale = 1.0 / hi
    a, b, stats = D.preprocess.standardize(x, xt, scale=scale, per_channel=per_channel)
    c = shape[-1] if per_channel else 1
    ref = x.astype(np.float64).reshape(-1, c) * scale
    mean, std = ref.mean(0), ref.std(0)
    for got, raw in ((a, x), (b, xt)):
        want = ((raw.astype(np.float64).reshape(-1, c) * scale - mean) / std).reshape(shape)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"], std, rtol=1e-12)


# --------------------------------------------------------------------------- validate


def _bad(**changes):
    return dataclasses.replace(synthetic(), **changes)


@pytest.mark.parametrize("make,match", [
    (lambda ds: _bad(y_train=np.where(np.arange(50) == 3, 4, ds.y_train).astype(np.int32)),
     r"labels in y_train out of \[0, 4\)"),
    (lambda ds: _bad(y_test=np.full(20, -1, np.int32)), r"labels in y_test out of"),
    (lambda ds: _bad(x_train=np.where(np.arange(50)[:, None] == 7, np.nan, ds.x_train)),
     "non-finite inputs in x_train"),
    (lambda ds: _bad(x_test=np.full((20, 3), np.inf, np.float32)), "non-finite inputs in x_test"),
    (lambda ds: _bad(x_train=ds.x_train[:0], y_train=ds.y_train[:0], ids_train=ds.ids_train[:0]),
     "empty train"),
    (lambda ds: _bad(x_test=ds.x_test[:0], y_test=ds.y_test[:0], ids_test=ds.ids_test[:0]),
     "empty test"),
    (lambda ds: _bad(ids_train=np.where(np.arange(50) == 9, 8, ds.ids_train)),
     "duplicate ids in ids_train"),
    (lambda ds: _bad(ids_test=np.zeros(20, np.int64)), "duplicate ids in ids_test"),
    (lambda ds: _bad(y_train=ds.y_train[:-1]), "mismatched lengths in train"),
    (lambda ds: _bad(ids_test=np.arange(21)), "mismatched lengths in test"),
    (lambda ds: _bad(y_train=ds.y_train.astype(np.float32)), "integer labels"),
    (lambda ds: _bad(x_test=np.zeros((20, 4), np.float32)), "mismatched input shapes"),
    (lambda ds: _bad(meta={"transforms": [], "bad": np.int64(3)}), "not JSON-serializable"),
    (lambda ds: _bad(num_classes=0), "num_classes"),
])
def test_validate_rejects(make, match):
    ds = synthetic()
    D.validate_dataset(ds)  # the unmodified dataset is valid
    with pytest.raises(D.DataError, match=match):
        D.validate_dataset(make(ds))


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 1.0])
@pytest.mark.parametrize("seed", [0, 7])
def test_label_noise(digits, fraction, seed):
    noisy = D.label_noise(digits, fraction, seed)
    changed = noisy.y_train != digits.y_train
    assert int(changed.sum()) == round(fraction * digits.num_train)  # every flip changes the class
    np.testing.assert_array_equal(D.flipped_mask(noisy), changed)
    np.testing.assert_array_equal(noisy.x_train, digits.x_train)
    np.testing.assert_array_equal(noisy.y_test, digits.y_test)
    rec = noisy.meta["transforms"][-1]
    assert rec["name"] == "label_noise" and rec["fraction"] == fraction and rec["seed"] == seed
    pos = rows_by_id(digits)
    original = [digits.y_train[pos[i]] for i in rec["flipped_ids"]]
    np.testing.assert_array_equal(rec["original_labels"], original)
    assert sorted(rec["flipped_ids"]) == sorted(digits.ids_train[changed].tolist())
    assert json.loads(json.dumps(noisy.meta)) == noisy.meta
    assert digits.meta["transforms"] == []  # the input dataset is unchanged
    again = D.label_noise(digits, fraction, seed)
    np.testing.assert_array_equal(again.y_train, noisy.y_train)
    if 0 < fraction < 1:
        other = D.label_noise(digits, fraction, seed + 1)
        assert not np.array_equal(other.y_train, noisy.y_train)


def test_label_noise_targets_are_uniform_over_other_classes():
    ds = synthetic(n_train=20000, num_classes=5, seed=3)
    noisy = D.label_noise(ds, 1.0, seed=11)
    shift = (noisy.y_train.astype(np.int64) - ds.y_train) % 5
    counts = np.bincount(shift, minlength=5)
    assert counts[0] == 0
    assert scipy.stats.chisquare(counts[1:]).pvalue > 1e-3


@pytest.mark.parametrize("fraction", [0.05, 0.4, 1.0])
def test_class_conditional_label_noise_flips_each_class_to_one_other(fraction, rng):
    """class_conditional: in every class c exactly round(fraction * n_c) labels change, all to
    the same class pi(c) != c (pi a derangement recorded as class_map); a loop reference."""
    ds = synthetic(n_train=3000, num_classes=int(rng.integers(2, 9)), seed=int(rng.integers(1000)))
    seed = int(rng.integers(2**31))
    noisy = D.label_noise(ds, fraction, seed, kind="class_conditional")
    rec = noisy.meta["transforms"][-1]
    pi = rec["class_map"]
    assert rec["kind"] == "class_conditional" and sorted(pi) == list(range(ds.num_classes))
    assert all(pi[c] != c for c in range(ds.num_classes))
    changed = noisy.y_train != ds.y_train
    for c in range(ds.num_classes):
        members = [i for i in range(ds.num_train) if ds.y_train[i] == c]
        flipped = [i for i in members if noisy.y_train[i] != c]
        assert len(flipped) == round(fraction * len(members))
        assert all(noisy.y_train[i] == pi[c] for i in flipped)
    np.testing.assert_array_equal(D.flipped_mask(noisy), changed)
    assert rec["num_flipped"] == int(changed.sum())
    np.testing.assert_array_equal(rec["new_labels"], noisy.y_train[np.isin(ds.ids_train, rec["flipped_ids"])])
    np.testing.assert_array_equal(D.label_noise(ds, fraction, seed, kind="class_conditional").y_train,
                                  noisy.y_train)
    with pytest.raises(D.DataError, match="kind"):
        D.label_noise(ds, fraction, seed, kind="pairs")


def test_label_noise_kind_reaches_the_run_dataset():
    from jaxmem import config as cfgmod

    cfg = cfgmod.load_config(None, ["data.label_noise=0.2", 'data.label_noise_kind="class_conditional"'])
    ds = D.build_dataset(cfg)
    rec = ds.meta["transforms"][-1]
    assert rec["kind"] == "class_conditional" and rec["fraction"] == 0.2


def test_label_noise_rejects_bad_fraction(digits):
    with pytest.raises(D.DataError, match="fraction"):
        D.label_noise(digits, 1.5, 0)


def test_long_tail_step(digits):
    lt = D.long_tail(digits, 3, classes=[1, 7], keep_fraction=0.1)
    before = np.bincount(digits.y_train, minlength=10)
    after = np.bincount(lt.y_train, minlength=10)
    for c in range(10):
        assert after[c] == (round(0.1 * before[c]) if c in (1, 7) else before[c])
    pos = rows_by_id(digits)
    orig_rows = np.array([pos[int(i)] for i in lt.ids_train])  # kept ids are original ids
    np.testing.assert_array_equal(lt.x_train, digits.x_train[orig_rows])
    np.testing.assert_array_equal(lt.y_train, digits.y_train[orig_rows])
    np.testing.assert_array_equal(D.rare_mask(lt), np.isin(lt.y_train, [1, 7]))
    np.testing.assert_array_equal(lt.x_test, digits.x_test)
    again = D.long_tail(digits, 3, classes=[1, 7], keep_fraction=0.1)
    other = D.long_tail(digits, 4, classes=[1, 7], keep_fraction=0.1)
    np.testing.assert_array_equal(again.ids_train, lt.ids_train)
    assert not np.array_equal(other.ids_train, lt.ids_train)
    rec = lt.meta["transforms"][-1]
    assert rec["name"] == "long_tail" and rec["num_removed"] == digits.num_train - lt.num_train
    json.dumps(lt.meta)


def test_long_tail_exponential_and_groups(digits):
    lt = D.long_tail(digits, 0, keep_fraction=0.05, profile="exponential")
    before = np.bincount(digits.y_train, minlength=10)
    after = np.bincount(lt.y_train, minlength=10)
    expected = [round(before[c] * 0.05 ** (c / 9)) for c in range(10)]
    np.testing.assert_array_equal(after, expected)
    np.testing.assert_array_equal(D.rare_mask(lt), lt.y_train != 0)  # the head class is not rare
    order = [9, 2, 5]  # head -> tail, other classes untouched
    lt2 = D.long_tail(digits, 0, classes=order, keep_fraction=0.25, profile="exponential")
    after2 = np.bincount(lt2.y_train, minlength=10)
    for k, c in enumerate(order):
        assert after2[c] == round(before[c] * 0.25 ** (k / 2))
    # subpopulations: groups within classes (here the parity of the id)
    groups = (digits.ids_train % 2).astype(np.int64)
    lt3 = D.long_tail(digits, 1, classes=[1], keep_fraction=0.5, groups=groups)
    assert int((lt3.ids_train % 2 == 1).sum()) == round(0.5 * int((groups == 1).sum()))
    assert int((lt3.ids_train % 2 == 0).sum()) == int((groups == 0).sum())
    np.testing.assert_array_equal(D.rare_mask(lt3), lt3.ids_train % 2 == 1)
    with pytest.raises(D.DataError, match="needs `classes`"):
        D.long_tail(digits, 0, keep_fraction=0.5)
    with pytest.raises(D.DataError, match="profile"):
        D.long_tail(digits, 0, classes=[1], keep_fraction=0.5, profile="zipf")


def test_duplicate(digits):
    dup = D.duplicate(digits, 5, num=10, copies=3)
    assert dup.num_train == digits.num_train + 30
    new = dup.ids_train[digits.num_train:]
    assert new.min() > max(digits.ids_train.max(), digits.ids_test.max())
    assert len(np.unique(dup.ids_train)) == dup.num_train
    rec = dup.meta["transforms"][-1]
    pos, dpos = rows_by_id(digits), rows_by_id(dup)
    assert len(set(rec["original_ids"])) == 10
    for orig, copies in zip(rec["original_ids"], rec["duplicate_ids"]):
        assert len(copies) == 3
        for c in copies:
            np.testing.assert_array_equal(dup.x_train[dpos[c]], digits.x_train[pos[orig]])
            assert dup.y_train[dpos[c]] == digits.y_train[pos[orig]]
    groups = D.duplicate_groups(dup)
    _, sizes = np.unique(groups, return_counts=True)
    assert sorted(sizes.tolist())[-10:] == [4] * 10 and (sizes[sizes != 4] == 1).all()
    assert set(groups[np.isin(dup.ids_train, new)].tolist()) == set(rec["original_ids"])
    # duplicating a duplicate keeps the whole family in one group
    dup2 = D.duplicate(dup, 0, num=dup.num_train, copies=1)
    g2 = D.duplicate_groups(dup2)
    assert len(np.unique(g2)) == digits.num_train
    np.testing.assert_array_equal(D.duplicate(digits, 5, num=10, copies=3).ids_train, dup.ids_train)
    json.dumps(dup2.meta)


def test_new_ids_never_reuse_removed_ids():
    ds = synthetic(n_train=50, n_test=20)  # train ids 0..49, test ids 0..19
    top_class = int(ds.y_train[np.argmax(ds.ids_train)])
    lt = D.long_tail(ds, 0, classes=[top_class], keep_fraction=0.0)  # removes id 49
    assert 49 not in lt.ids_train
    for out in (D.duplicate(lt, 0, num=5, copies=1), D.insert_canaries(lt, 0, num=5)):
        np.testing.assert_array_equal(out.ids_train[lt.num_train:], np.arange(50, 55))
    twice = D.insert_canaries(D.duplicate(lt, 0, num=2, copies=2), 1, num=3)
    np.testing.assert_array_equal(twice.ids_train[lt.num_train:], np.arange(50, 57))


def test_insert_canaries_random_label(digits):
    can = D.insert_canaries(digits, 2, num=25)
    assert can.num_train == digits.num_train + 25
    mask = D.canary_mask(can)
    assert mask.sum() == 25 and mask[digits.num_train:].all()
    assert can.ids_train[mask].min() > digits.ids_train.max()
    rec = can.meta["transforms"][-1]
    pos = rows_by_id(digits)
    src = np.array([pos[i] for i in rec["source_ids"]])
    np.testing.assert_array_equal(can.x_train[mask], digits.x_train[src])
    assert (can.y_train[mask] != digits.y_train[src]).all()
    np.testing.assert_array_equal(rec["labels"], can.y_train[mask])
    json.dumps(can.meta)


def test_insert_canaries_random_input(digits):
    can = D.insert_canaries(digits, 2, num=40, kind="random_input")
    mask = D.canary_mask(can)
    x = can.x_train[mask].astype(np.float64)
    pm = digits.meta["preprocessing"]
    pixels = x * pm["std"][0] + pm["mean"][0]  # back to [0, 1] pixel units
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.std() > 0.2
    assert can.y_train[mask].min() >= 0 and can.y_train[mask].max() < 10
    tokens = synthetic(ints=True)
    tcan = D.insert_canaries(tokens, 0, num=30, kind="random_input")
    t = tcan.x_train[D.canary_mask(tcan)]
    assert t.dtype == np.int32 and t.min() >= 0 and t.max() <= tokens.x_train.max()
    with pytest.raises(D.DataError, match="unknown canary kind"):
        D.insert_canaries(digits, 0, num=3, kind="backdoor")


def test_chained_transforms_are_recorded_in_order(digits):
    ds = D.long_tail(digits, 0, classes=[3], keep_fraction=0.2)
    ds = D.label_noise(ds, 0.05, 1)
    ds = D.duplicate(ds, 2, num=4, copies=2)
    ds = D.insert_canaries(ds, 3, num=6)
    names = [t["name"] for t in ds.meta["transforms"]]
    assert names == ["long_tail", "label_noise", "duplicate", "insert_canaries"]
    assert json.loads(json.dumps(ds.meta)) == ds.meta
    assert len(np.unique(ds.ids_train)) == ds.num_train
    assert D.flipped_mask(ds).sum() >= round(0.05 * (ds.num_train - 14))
    assert D.canary_mask(ds).sum() == 6


def test_fingerprint_detects_changes(digits):
    fp = D.dataset_fingerprint(digits)
    assert len(fp) == 16 and int(fp, 16) >= 0
    x = digits.x_train.copy()
    x[5, 3, 3, 0] += 1e-3
    assert D.dataset_fingerprint(dataclasses.replace(digits, x_train=x)) != fp
    ids = digits.ids_test.copy()
    ids[[0, 1]] = ids[[1, 0]]
    assert D.dataset_fingerprint(dataclasses.replace(digits, ids_test=ids)) != fp
    assert D.dataset_fingerprint(dataclasses.replace(digits, meta={})) == fp  # arrays only


def test_digits_tokens_are_raw_pixels_with_the_digits_split():
    from sklearn.datasets import load_digits

    tok, img = D.load("digits_tokens"), D.load("digits")
    assert tok.x_train.dtype == np.int32 and tok.x_train.shape == (img.num_train, 64)
    np.testing.assert_array_equal(tok.ids_train, img.ids_train)
    np.testing.assert_array_equal(tok.y_test, img.y_test)
    raw = load_digits().data.astype(np.int32)
    np.testing.assert_array_equal(tok.x_train, raw[tok.ids_train])
    assert 0 <= tok.x_train.min() and tok.x_train.max() <= 16
