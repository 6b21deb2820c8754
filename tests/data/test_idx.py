"""Tests for jaxmem.data.idx: the IDX reader against files written here with `struct`, the search
order over data_dir / $JAXMEM_DATA / Debian / torchvision / Keras (all roots redirected into
tmp_path), the not-found message, and the real Fashion-MNIST from ../shared/data."""

import gzip
import hashlib
import json
import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_data

from jaxmem.data import idx as I

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX type code -> (struct format character, numpy dtype) for the independent writer
STRUCT_TYPES = {
    0x08: ("B", np.uint8),
    0x09: ("b", np.int8),
    0x0B: ("h", np.int16),
    0x0C: ("i", np.int32),
    0x0D: ("f", np.float32),
    0x0E: ("d", np.float64),
}


# --------------------------------------------------------------------------- helpers


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """IDX encoding with struct only (big-endian header and values), the reader's reference."""
    fmt = STRUCT_TYPES[code][0]
    values = [v.item() for v in a.ravel()]
    return (
        struct.pack(">BBBB", 0, 0, code, a.ndim)
        + struct.pack(f">{a.ndim}I", *a.shape)
        + struct.pack(f">{len(values)}{fmt}", *values)
    )


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def random_set(rng, n_train=40, n_test=15, shape=(28, 28), k=10):
    y_tr = rng.integers(0, k, n_train).astype(np.uint8)
    y_tr[:k] = np.arange(k)  # every class present in training
    return {
        "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_labels": y_tr,
        "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, k, n_test).astype(np.uint8),
    }


def write_set(folder: Path, arrays: dict, gz=True, names=NAMES) -> dict:
    """Write the four files with struct; return role -> path."""
    gz = gz if isinstance(gz, dict) else dict.fromkeys(NAMES, gz)
    return {r: write(folder / names[r], idx_bytes(a), gz[r]) for r, a in arrays.items()}


def assert_same(got: I.IdxData, want: dict):
    np.testing.assert_array_equal(got.x_train, want["train_images"])
    np.testing.assert_array_equal(got.y_train, want["train_labels"])
    np.testing.assert_array_equal(got.x_test, want["test_images"])
    np.testing.assert_array_equal(got.y_test, want["test_labels"])
    assert got.x_train.dtype == np.uint8 and got.x_test.dtype == np.uint8
    assert got.y_train.dtype == np.int64 and got.y_test.dtype == np.int64


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees this machine's real Debian folder, Keras cache, $JAXMEM_DATA or cwd."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("JAXMEM_DATA", raising=False)
    monkeypatch.setattr(I, "DEBIAN_ROOT", str(tmp_path / "debian"))
    monkeypatch.setattr(I, "KERAS_TMP_HOME", str(tmp_path / "tmpkeras"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small_named(monkeypatch):
    """Named sources accept small sets (their real sizes are checked in their own tests)."""
    monkeypatch.setattr(I, "_NAMED_COUNTS", (40, 15))


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("code", sorted(STRUCT_TYPES))
def test_read_idx_round_trip(rng, tmp_path, code, gz):
    dtype = STRUCT_TYPES[code][1]
    shape = tuple(int(d) for d in rng.integers(1, 6, rng.integers(1, 5)))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        a = rng.integers(info.min, int(info.max) + 1, shape).astype(dtype)
    else:
        a = rng.normal(0, 1e3, shape).astype(dtype)
        a.ravel()[:3] = [np.inf, -np.inf, -0.0][: a.size]
    path = write(tmp_path / "a-idx", idx_bytes(a, code), gz)
    got = I.read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == shape and got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, a)
    assert I.idx_content_sha256(a) == hashlib.sha256(idx_bytes(a, code)).hexdigest()


def test_read_idx_mnist_images_and_labels(rng, tmp_path):
    x = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 7).astype(np.uint8)
    px = write(tmp_path / "img", idx_bytes(x), True)
    py = write(tmp_path / "lab", idx_bytes(y), False)
    assert px.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(px.read_bytes())[:4] == bytes.fromhex("00000803")
    assert py.read_bytes()[:4] == bytes.fromhex("00000801")
    np.testing.assert_array_equal(I.read_idx(px), x)
    np.testing.assert_array_equal(I.read_idx(str(py)), y)


def test_read_idx_empty_array(tmp_path):
    path = write(tmp_path / "e", struct.pack(">BBBBII", 0, 0, 8, 2, 0, 28), True)
    got = I.read_idx(path)
    assert got.shape == (0, 28) and got.dtype == np.uint8


def test_read_idx_reads_into_the_array_without_copies(rng, tmp_path):
    x = rng.integers(0, 256, (6000, 28, 28), dtype=np.uint8)  # 4.7 MB
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(struct.pack(">BBBBIII", 0, 0, 8, 3, *x.shape) + x.tobytes()))
    tracemalloc.start()
    try:
        got = I.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, x)
    # the array itself plus the 1 MiB read chunk and gzip's buffers (measured ~1.1 MB on
    # Python 3.11); a bytes copy of the payload (or any float copy) would add >= 4.7 MB
    assert peak < x.nbytes + (3 << 20), peak


def corruptions():
    x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = idx_bytes(x)
    huge = struct.pack(">BBBBIII", 0, 0, 8, 3, 60000, 28000, 28000)  # 47 GB announced
    return {
        # name: (content, gzip it?, expected phrase)
        "truncated": (
            good[:-5],
            False,
            "truncated: header says 2x3x4 uint8 values (24 bytes) but the IDX file holds 19",
        ),
        "truncated_gz": (
            good[:-1],
            True,
            "truncated: header says 2x3x4 uint8 values (24 bytes) but the gzip IDX file holds 23",
        ),
        "trailing": (good + b"\0\0\0", False, "3 trailing bytes after the values"),
        "trailing_gz": (good + b"\1", True, "1 trailing bytes after the values"),
        "bad_magic": (b"\x01" + good[1:], False, "bad magic 0x01000803"),
        "bad_magic_gz": (b"PK\x03\x04" + good[4:], True, "bad magic 0x504b0304"),
        "bad_type": (b"\0\0\x0a\x03" + good[4:], False, "bad magic 0x00000a03"),
        "zero_dims": (b"\0\0\x08\0" + good[4:], False, "bad magic 0x00000800"),
        "short_header": (good[:10], False, "truncated header: magic 0x00000803 announces 3"),
        "too_short": (b"\0\0", False, "2 bytes, too short for an IDX header"),
        "empty_gz": (b"", True, "0 bytes, too short for an IDX header"),
        "huge_gz": (huge, True, "more than a"),
        "labels_cut": (
            idx_bytes(np.arange(9, dtype=np.uint8))[:-9],
            False,
            "truncated: header says 9 uint8",
        ),
    }


@pytest.mark.parametrize("name", sorted(corruptions()))
def test_read_idx_corruption_names_the_file(tmp_path, name):
    content, gz, phrase = corruptions()[name]
    path = write(tmp_path / f"{name}-idx3-ubyte", content, gz)
    with pytest.raises(I.IdxFormatError) as e:
        I.read_idx(path)
    msg = str(e.value)
    assert msg.startswith(str(path.resolve()) + ": "), msg
    assert phrase in msg, msg
    assert isinstance(e.value, ValueError)


def test_read_idx_corrupt_gzip_stream(rng, tmp_path):
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    z = bytearray(gzip.compress(idx_bytes(x)))
    bad_crc, cut = bytearray(z), bytes(z[: len(z) // 2])
    bad_crc[-8] ^= 0xFF  # the CRC32 field of the gzip trailer
    bad_data = bytearray(z)
    bad_data[len(z) // 2] ^= 0xFF  # a byte inside the deflate stream
    for name, content in (("crc", bad_crc), ("cut", cut), ("data", bad_data)):
        path = tmp_path / f"{name}.gz"
        path.write_bytes(bytes(content))
        with pytest.raises(I.IdxFormatError) as e:
            I.read_idx(path)
        msg = str(e.value)
        assert msg.startswith(str(path)), msg
        # a flipped deflate byte may surface as bad data, bad CRC/length, or a size mismatch
        assert re.search(r"corrupt gzip data|truncated|trailing", msg), msg


def test_read_idx_missing_file_and_folder(tmp_path):
    with pytest.raises(I.IdxFormatError, match=re.escape(str(tmp_path / "nope")) + ": cannot open"):
        I.read_idx(tmp_path / "nope")
    with pytest.raises(I.IdxFormatError, match="cannot open"):
        I.read_idx(tmp_path)


def test_idx_content_sha256_rejects_what_idx_cannot_hold():
    with pytest.raises(ValueError, match="IDX cannot hold"):
        I.idx_content_sha256(np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="IDX cannot hold"):
        I.idx_content_sha256(np.uint8(3))


# --------------------------------------------------------------------------- idx:DIR


def test_idx_dir_round_trip_and_meta(rng, tmp_path):
    arrays = random_set(rng, shape=(5, 7), k=int(rng.integers(2, 20)))
    gz = {r: bool(rng.integers(0, 2)) for r in NAMES}
    paths = write_set(tmp_path / "d", arrays, gz)
    got = I.load(f"idx:{tmp_path / 'd'}")
    assert_same(got, arrays)
    m = got.meta
    json.dumps(m)
    assert m["source"] == f"idx:{tmp_path / 'd'}" and m["location"] == "idx_dir"
    assert m["format"] == "idx" and m["folder"] == str(tmp_path / "d")
    assert m["num_classes"] == int(arrays["train_labels"].max()) + 1
    assert m["counts"] == {"train": 40, "test": 15} and m["image_shape"] == [5, 7]
    for role, p in paths.items():
        f = m["files"][role]
        assert f["path"] == str(p) and os.path.isabs(f["path"])
        assert f["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        assert f["content_sha256"] == hashlib.sha256(idx_bytes(arrays[role])).hexdigest()
        assert f["gzip"] is gz[role] and f["bytes"] == p.stat().st_size


def test_idx_dir_relative_to_data_dir_env_then_cwd(rng, tmp_path, monkeypatch):
    a, b, c = (random_set(rng) for _ in range(3))
    write_set(tmp_path / "dd" / "sub", a)
    write_set(tmp_path / "env" / "sub", b)
    write_set(tmp_path / "sub", c)  # cwd is tmp_path
    monkeypatch.setenv("JAXMEM_DATA", str(tmp_path / "env"))
    assert [loc.path for loc in I.search_locations("idx:sub", tmp_path / "dd")] == [
        str(tmp_path / "dd" / "sub"),
        str(tmp_path / "env" / "sub"),
        str(tmp_path / "sub"),
    ]
    assert_same(I.load("idx:sub", tmp_path / "dd"), a)
    assert_same(I.load("idx:sub"), b)
    monkeypatch.delenv("JAXMEM_DATA")
    assert_same(I.load("idx:sub"), c)


@pytest.mark.parametrize(
    "names",
    [
        {
            "train_images": "emnist-digits-train-images-idx3-ubyte",
            "train_labels": "emnist-digits-train-labels-idx1-ubyte",
            "test_images": "emnist-digits-test-images-idx3-ubyte",
            "test_labels": "emnist-digits-test-labels-idx1-ubyte",
        },
        {
            "train_images": "train-images.idx3-ubyte",
            "train_labels": "train-labels.idx1-ubyte",
            "test_images": "t10k-images.idx3-ubyte",
            "test_labels": "t10k-labels.idx1-ubyte",
        },
    ],
)
def test_idx_dir_other_file_names(rng, tmp_path, names):
    arrays = random_set(rng)
    write_set(tmp_path / "d", arrays, gz=False, names=names)
    assert_same(I.load("idx:d"), arrays)


def test_gz_preferred_over_unpacked_copy(rng, tmp_path):
    arrays, other = random_set(rng), random_set(rng)
    write_set(tmp_path / "d", arrays, gz=True)
    write_set(tmp_path / "d", other, gz=False)  # torchvision's raw/ holds both forms
    got = I.load("idx:d")
    assert_same(got, arrays)
    assert all(f["path"].endswith(".gz") for f in got.meta["files"].values())


def test_ambiguous_files_are_an_error(rng, tmp_path):
    arrays = random_set(rng)
    write_set(tmp_path / "d", arrays)
    write(tmp_path / "d" / "old-train-images-idx3-ubyte", idx_bytes(arrays["train_images"]), False)
    with pytest.raises(I.IdxFormatError, match="several files could be the train images"):
        I.load("idx:d")


@pytest.mark.parametrize("split", ["train", "test"])
def test_count_mismatch_names_both_files(rng, tmp_path, split):
    arrays = random_set(rng)
    arrays[f"{split}_labels"] = arrays[f"{split}_labels"][:-1]
    paths = write_set(tmp_path / "d", arrays)
    with pytest.raises(I.IdxFormatError) as e:
        I.load("idx:d")
    msg = str(e.value)
    assert f"{split} counts differ" in msg
    assert str(paths[f"{split}_images"]) in msg and str(paths[f"{split}_labels"]) in msg


def test_image_shape_mismatch(rng, tmp_path):
    arrays = random_set(rng)
    arrays["test_images"] = arrays["test_images"][:, :27]
    paths = write_set(tmp_path / "d", arrays)
    with pytest.raises(I.IdxFormatError, match="image shapes differ") as e:
        I.load("idx:d")
    assert str(paths["train_images"]) in str(e.value) and str(paths["test_images"]) in str(e.value)


@pytest.mark.parametrize(
    "role,bad,code,phrase",
    [
        ("train_labels", np.zeros((40, 2), np.uint8), 0x08, "0x00000802"),
        ("test_images", np.zeros(15, np.uint8), 0x08, "0x00000801"),
        ("train_images", np.zeros((40, 28, 28), np.float32), 0x0D, "0x00000d03"),
    ],
)
def test_wrong_kind_of_file(rng, tmp_path, role, bad, code, phrase):
    arrays = random_set(rng)
    paths = write_set(tmp_path / "d", arrays)
    paths[role].write_bytes(gzip.compress(idx_bytes(bad, code)))
    with pytest.raises(I.IdxFormatError) as e:
        I.load("idx:d")
    assert str(e.value).startswith(str(paths[role])) and phrase in str(e.value)


def test_labels_from_one_or_missing_classes(rng, tmp_path):
    arrays = random_set(rng, k=5)
    arrays["train_labels"] = arrays["train_labels"] + 1  # 1..5: class 0 never occurs
    arrays["test_labels"] = arrays["test_labels"] + 1
    paths = write_set(tmp_path / "d", arrays)
    with pytest.raises(I.IdxFormatError, match=r"classes \[0\] never occur") as e:
        I.load("idx:d")
    assert str(paths["train_labels"]) in str(e.value)
    got = I.load("idx:d", num_classes=6)  # stated explicitly: accepted
    assert got.meta["num_classes"] == 6
    with pytest.raises(I.IdxFormatError, match=r"labels out of \[0, 5\), e\.g\. 5 at row"):
        I.load("idx:d", num_classes=5)


def test_test_label_above_train_labels(rng, tmp_path):
    arrays = random_set(rng, k=4)
    arrays["test_labels"][3] = 7
    write_set(tmp_path / "d", arrays)
    with pytest.raises(I.IdxFormatError, match=r"classes \[4, 5, 6, 7\] never occur"):
        I.load("idx:d")
    with pytest.raises(
        I.IdxFormatError,
        match=r"t10k-labels-idx1-ubyte.gz: 1 labels out of \[0, 4\), e.g. 7 at row 3",
    ):
        I.load("idx:d", num_classes=4)


def test_bad_arguments(tmp_path):
    for source in ("cifar10", "fashion-mnist", "tfds:mnist", ""):
        with pytest.raises(ValueError, match="unknown IDX source"):
            I.load(source)
        assert not I.is_idx_source(source)
    assert all(I.is_idx_source(s) for s in ("fashion_mnist", "mnist", "kmnist", "idx:/x"))
    with pytest.raises(ValueError, match="empty folder"):
        I.load("idx:")
    with pytest.raises(ValueError, match="fashion_mnist has 10 classes"):
        I.load("fashion_mnist", num_classes=11)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_classes must be a positive int"):
            I.load("idx:d", num_classes=k)


# --------------------------------------------------------------------------- named sources


def test_search_order_fashion_mnist(rng, tmp_path, monkeypatch, small_named):
    dd, env, home = tmp_path / "dd", tmp_path / "env", tmp_path / "home"
    monkeypatch.setenv("JAXMEM_DATA", str(env))
    order = [  # (kind, folder) in the documented order
        ("data_dir", dd / "fashion-mnist"),
        ("JAXMEM_DATA", env / "fashion-mnist"),
        ("debian", tmp_path / "debian" / "fashion-mnist"),
        ("torchvision", dd / "FashionMNIST" / "raw"),
        ("torchvision", env / "FashionMNIST" / "raw"),
        ("keras", home / ".keras" / "datasets" / "fashion-mnist"),
    ]
    locs = I.search_locations("fashion_mnist", dd)
    assert [(loc.kind, loc.path) for loc in locs] == [(k, str(p)) for k, p in order]
    sets = [random_set(rng) for _ in order]
    for (_, folder), arrays in zip(order, sets):
        write_set(folder, arrays, gz=bool(rng.integers(0, 2)))
    for i, ((kind, folder), arrays) in enumerate(zip(order, sets)):
        got = I.load("fashion_mnist", dd)
        assert_same(got, arrays)
        assert got.meta["location"] == kind and got.meta["folder"] == str(folder)
        assert got.meta["num_classes"] == 10 and len(got.meta["class_names"]) == 10
        # take this location away: alternately the whole folder, or one file (incomplete)
        if i % 2:
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()
        else:
            next(folder.glob("t10k-labels*")).unlink()
    with pytest.raises(I.DataNotFound) as e:
        I.load("fashion_mnist", dd)
    msg = str(e.value)
    at = [msg.index(str(p) + "  (") for _, p in order]
    assert at == sorted(at), msg  # every place, in order
    assert (
        "incomplete: has " in msg
        and "missing t10k-labels-idx1-ubyte[.gz]" in msg
        and "no such folder" in msg
    )
    for cmd in (
        "apt install dataset-fashion-mnist",
        f"torchvision.datasets.FashionMNIST('{dd}', download=True)",
        "keras.datasets.fashion_mnist.load_data()",
        "http://fashion-mnist.s3-website",
    ):
        assert cmd in msg, msg


def test_search_without_data_dir_or_env(rng, tmp_path, small_named):
    assert [loc.kind for loc in I.search_locations("fashion_mnist")] == ["debian", "keras"]
    assert [loc.kind for loc in I.search_locations("fashion_mnist", "")] == ["debian", "keras"]
    arrays = random_set(rng)
    write_set(tmp_path / "debian" / "fashion-mnist", arrays)
    got = I.load("fashion_mnist")
    assert_same(got, arrays)
    assert got.meta["location"] == "debian"


def test_mnist_from_keras_npz(rng, tmp_path, monkeypatch, small_named):
    home = tmp_path / "home"
    locs = I.search_locations("mnist", tmp_path / "dd")
    assert [(loc.kind, loc.path, loc.format) for loc in locs] == [
        ("data_dir", str(tmp_path / "dd" / "mnist"), "idx"),
        ("torchvision", str(tmp_path / "dd" / "MNIST" / "raw"), "idx"),
        ("keras", str(home / ".keras" / "datasets" / "mnist.npz"), "keras_npz"),
    ]
    arrays = random_set(rng)
    npz = home / ".keras" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    np.savez_compressed(
        npz,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    got = I.load("mnist", tmp_path / "dd")
    assert_same(got, arrays)
    m = got.meta
    assert (m["location"], m["format"], m["folder"]) == ("keras", "keras_npz", str(npz.parent))
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    for role, f in m["files"].items():
        assert f["path"] == str(npz) and f["sha256"] == digest
        # the same content hash as the IDX file holding the same array
        assert f["content_sha256"] == hashlib.sha256(idx_bytes(arrays[role])).hexdigest()
    # an IDX copy earlier in the order wins, with equal content hashes
    write_set(tmp_path / "dd" / "MNIST" / "raw", arrays, gz=False)
    got2 = I.load("mnist", tmp_path / "dd")
    assert got2.meta["location"] == "torchvision"
    assert {r: f["content_sha256"] for r, f in got2.meta["files"].items()} == {
        r: f["content_sha256"] for r, f in m["files"].items()
    }
    # $KERAS_HOME replaces ~/.keras
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert I.search_locations("mnist")[-1].path == str(tmp_path / "kh" / "datasets" / "mnist.npz")


def test_keras_tmp_home_when_home_not_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(I.os, "access", lambda path, mode: False)
    assert [loc.path for loc in I.search_locations("fashion_mnist")][1:] == [
        str(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"),
        str(tmp_path / "tmpkeras" / "datasets" / "fashion-mnist"),
    ]


def test_bad_keras_npz(rng, tmp_path, small_named):
    npz = tmp_path / "home" / ".keras" / "datasets" / "mnist.npz"
    npz.parent.mkdir(parents=True)
    arrays = random_set(rng)
    np.savez(npz, x_train=arrays["train_images"], y_train=arrays["train_labels"])
    with pytest.raises(
        I.IdxFormatError, match=re.escape(str(npz)) + ": not Keras's mnist.npz: no x_test, y_test"
    ):
        I.load("mnist")
    np.savez(
        npz,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"][:-1],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    with pytest.raises(I.IdxFormatError, match="train counts differ"):
        I.load("mnist")
    np.savez(
        npz,
        x_train=arrays["train_images"].astype(np.float32),
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
    )
    with pytest.raises(I.IdxFormatError, match="x_train is a 3-d float32 array"):
        I.load("mnist")
    npz.write_bytes(b"not a zip")
    with pytest.raises(I.IdxFormatError, match="cannot read as .npz"):
        I.load("mnist")


def test_kmnist_locations_and_not_found(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMEM_DATA", str(tmp_path / "env"))
    locs = I.search_locations("kmnist")
    assert [(loc.kind, loc.path) for loc in locs] == [
        ("JAXMEM_DATA", str(tmp_path / "env" / "kmnist")),
        ("torchvision", str(tmp_path / "env" / "KMNIST" / "raw")),
    ]
    with pytest.raises(I.DataNotFound) as e:
        I.load("kmnist")
    msg = str(e.value)
    for loc in locs:
        assert loc.path in msg
    assert f"torchvision.datasets.KMNIST('{tmp_path / 'env'}', download=True)" in msg
    assert "codh.rois.ac.jp/kmnist" in msg and "Clanuwat" in msg
    assert isinstance(e.value, ValueError)


def test_mnist_not_found_without_roots():
    with pytest.raises(I.DataNotFound) as e:
        I.load("mnist")
    msg = str(e.value)
    assert "keras.datasets.mnist.load_data()" in msg and "yann.lecun.com/exdb/mnist" in msg
    assert "torchvision.datasets.MNIST('DIR', download=True)" in msg
    assert "JAXMEM_DATA=DIR" in msg and "apt install" not in msg
    assert I.search_locations("mnist")[0].path in msg


def test_idx_dir_not_found_lists_places(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(I.DataNotFound) as e:
        I.load("idx:d")
    assert str(tmp_path / "d") in str(
        e.value
    ) and "missing train-images-idx3-ubyte[.gz], train-labels" in str(e.value)


def test_named_source_sizes_and_labels_are_checked(rng, tmp_path):
    arrays = random_set(rng)  # 40 + 15, not 60,000 + 10,000
    write_set(tmp_path / "dd" / "fashion-mnist", arrays)
    with pytest.raises(
        I.IdxFormatError,
        match="Fashion-MNIST has 60,000 \\+ 10,000 images of 28x28, "
        "these files hold 40 \\+ 15 of 28x28; load other IDX files as 'idx:",
    ):
        I.load("fashion_mnist", tmp_path / "dd")


def test_named_source_label_out_of_range(rng, tmp_path, small_named):
    arrays = random_set(rng)
    arrays["train_labels"][5] = 10
    paths = write_set(tmp_path / "dd" / "kmnist", arrays)
    with pytest.raises(I.IdxFormatError) as e:
        I.load("kmnist", tmp_path / "dd")
    assert str(e.value) == f"{paths['train_labels']}: 1 labels out of [0, 10), e.g. 10 at row 5"


def test_corrupt_file_in_first_location_is_not_skipped(rng, tmp_path, small_named):
    write_set(tmp_path / "debian" / "fashion-mnist", random_set(rng))
    paths = write_set(tmp_path / "dd" / "fashion-mnist", random_set(rng))
    paths["train_images"].write_bytes(paths["train_images"].read_bytes()[:-20])
    with pytest.raises(I.IdxFormatError, match=re.escape(str(paths["train_images"]))):
        I.load("fashion_mnist", tmp_path / "dd")


# --------------------------------------------------------------------------- real Fashion-MNIST


def shared_fmnist() -> Path:
    return shared_data("fashion-mnist/train-images-idx3-ubyte.gz").parent


def test_real_fashion_mnist(monkeypatch):
    folder = shared_fmnist()
    monkeypatch.setenv("JAXMEM_DATA", str(folder.parent))
    tracemalloc.start()
    try:
        got = I.load("fashion_mnist")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    x, y, xt, yt, meta = got
    assert x.shape == (60_000, 28, 28) and xt.shape == (10_000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [1000] * 10)
    assert y[0] == 9 and meta["class_names"][9] == "Ankle boot"
    assert meta["location"] == "JAXMEM_DATA" and meta["num_classes"] == 10
    payload = x.nbytes + xt.nbytes + 70_000 * 9  # uint8 images, uint8 labels + their int64 copies
    # read buffers (measured ~1.5 MB on Python 3.11); a float copy would add >= 188 MB
    assert peak < payload + (4 << 20), (peak, payload)

    # independent parse: struct for the headers and first values, gzip + frombuffer for the rest
    arrays = {"train_images": x, "train_labels": y, "test_images": xt, "test_labels": yt}
    for role, name in NAMES.items():
        path = folder / (name + ".gz")
        raw = gzip.decompress(path.read_bytes())
        f = meta["files"][role]
        assert f["path"] == str(path)
        assert f["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert f["content_sha256"] == hashlib.sha256(raw).hexdigest()
        a = arrays[role]
        if role.endswith("images"):
            assert struct.unpack(">IIII", raw[:16]) == (0x803, len(a), 28, 28)
            assert struct.unpack(">784B", raw[16 : 16 + 784]) == tuple(a[0].ravel().tolist())
            np.testing.assert_array_equal(
                np.frombuffer(raw, np.uint8, offset=16).reshape(a.shape), a
            )
        else:
            assert struct.unpack(">II", raw[:8]) == (0x801, len(a))
            assert struct.unpack(">100B", raw[8:108]) == tuple(a[:100].tolist())
            np.testing.assert_array_equal(np.frombuffer(raw, np.uint8, offset=8), a)
        del raw


def test_files_directly_in_data_dir_are_not_taken_for_a_named_source(rng, tmp_path, small_named):
    # MNIST and Fashion-MNIST files have the same names: a bare folder cannot say which it holds
    write_set(tmp_path / "dd", random_set(rng))
    with pytest.raises(I.DataNotFound) as e:
        I.load("mnist", tmp_path / "dd")
    msg = str(e.value)
    assert f"note: data_dir {tmp_path / 'dd'} itself holds IDX files" in msg
    assert f"from {tmp_path / 'dd' / 'mnist'}/" in msg and f"'idx:{tmp_path / 'dd'}'" in msg
