"""IDX files (LeCun's MNIST format): a validating reader and the MNIST-family sources.

Standalone: numpy and the standard library only (no other jaxmem module), so the data package
can import it without pulling in anything else. Nothing here downloads; files are looked for
where a user already has them (see `search_locations`).

IDX format: a big-endian header, then the values in C order. The header is a 4-byte magic
``0x00 0x00 TYPE NDIM`` and NDIM big-endian uint32 dimension sizes. TYPE is 0x08 uint8,
0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32 or 0x0E float64. The MNIST family uses
``0x00000803`` (uint8 images: count, rows, cols) and ``0x00000801`` (uint8 labels: count).
Files may be gzip-compressed (recognised by content, not by name).

Sources (`load`), each returning an `IdxData` (x_train uint8 [N, 28, 28], y_train int64 [N],
x_test, y_test, meta); all raise `DataNotFound` when no location holds a complete set of files,
`IdxFormatError` when a file found is malformed, and `ValueError` for an unknown source:

* ``fashion_mnist`` - Fashion-MNIST: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a novel image
  dataset for benchmarking machine learning algorithms", arXiv:1708.07747. Zalando product
  images, 60,000 train + 10,000 test, 28x28 uint8 grayscale, 10 classes (6,000 / 1,000 each).
* ``mnist`` - MNIST: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
  document recognition", Proc. IEEE 86(11). Handwritten digits, 60,000 + 10,000, 28x28 uint8,
  10 classes. Also read from Keras's ``mnist.npz`` cache.
* ``kmnist`` - Kuzushiji-MNIST: Clanuwat et al. 2018, "Deep learning for classical Japanese
  literature", arXiv:1812.01718. Cursive hiragana, 60,000 + 10,000, 28x28 uint8, 10 classes.
* ``idx:DIR`` - any folder holding an IDX pair per split (train + t10k/test images and labels);
  images uint8 [N, ...], num_classes = the largest label + 1 (every class below it must occur in
  the training labels) or the ``num_classes`` argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import os
import re
import struct
import zlib
from typing import Any, NamedTuple

import numpy as np

from jaxmem.data.dataset import DataError

__all__ = [
    "DEBIAN_FOLDERS",
    "DEBIAN_ROOT",
    "KERAS_TMP_HOME",
    "SOURCES",
    "DataNotFound",
    "IdxData",
    "IdxFormatError",
    "Location",
    "idx_content_sha256",
    "is_idx_source",
    "load",
    "read_idx",
    "search_locations",
]

# Where Debian's `dataset-*` packages install (dataset-fashion-mnist puts the four original .gz
# files in /usr/share/datasets/fashion-mnist/). Debian (bookworm) packages no MNIST or KMNIST.
# Module-level so tests (and unusual systems) can point them elsewhere.
DEBIAN_ROOT = "/usr/share/datasets"
DEBIAN_FOLDERS = {"fashion_mnist": "fashion-mnist"}
# Keras caches under $KERAS_HOME, else ~/.keras, else (home not writable) /tmp/.keras.
KERAS_TMP_HOME = "/tmp/.keras"

_CHUNK = 1 << 20  # bytes per read: bounds the temporary bytes objects gzip hands back
_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data by more than ~1032:1
_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_TYPE_CODES = {np.dtype(v).newbyteorder("=").str[1:]: k for k, v in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CANONICAL = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_ROLE_RE = {
    "train_images": r"train[-_.]images[-_.]idx3[-_.]ubyte",
    "train_labels": r"train[-_.]labels[-_.]idx1[-_.]ubyte",
    "test_images": r"(?:t10k|test)[-_.]images[-_.]idx3[-_.]ubyte",
    "test_labels": r"(?:t10k|test)[-_.]labels[-_.]idx1[-_.]ubyte",
}


class IdxFormatError(DataError):
    """An IDX file is malformed (bad magic, truncated, trailing bytes, corrupt gzip) or a pair of
    files disagrees (counts, shapes, labels out of range). The message names the file(s)."""


class DataNotFound(DataError):
    """No searched location holds the files of a source. The message lists every place looked
    (absolute paths) and the commands that would get the files."""


class IdxData(NamedTuple):
    """A source's arrays and provenance: unpack as ``x_train, y_train, x_test, y_test, meta``."""

    x_train: np.ndarray  # uint8 [N, rows, cols]
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray  # uint8 [M, rows, cols]
    y_test: np.ndarray  # int64 [M]
    meta: dict


@dataclasses.dataclass(frozen=True)
class Location:
    """One place looked: `kind` names the convention, `path` the absolute folder (or .npz file)."""

    kind: str  # data_dir | JAXMEM_DATA | debian | torchvision | keras | idx_dir
    path: str
    format: str = "idx"  # idx (a folder of four IDX files) | keras_npz (one .npz file)


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    title: str
    folder: str  # its folder name under data_dir / $JAXMEM_DATA (also Keras's cache folder)
    torchvision: str  # torchvision's class name: ROOT/<name>/raw/
    keras: str | None  # "dir" (~/.keras/datasets/<folder>/), "npz:<file>" or None
    class_names: tuple[str, ...]
    paper: str
    get: tuple[str, ...]  # how to get the files, {root} = a folder to pass as data_dir


_URL_NOTE = (
    "into {root}/{folder}/ (gzipped or not), then pass data_dir={root} or set JAXMEM_DATA={root}"
)
_SPECS = {
    "fashion_mnist": _Spec(
        name="fashion_mnist",
        title="Fashion-MNIST",
        folder="fashion-mnist",
        torchvision="FashionMNIST",
        keras="dir",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        paper="Xiao, Rasul & Vollgraf 2017, arXiv:1708.07747",
        get=(
            "apt install dataset-fashion-mnist   (Debian/Ubuntu; installs /usr/share/datasets/fashion-mnist/)",
            "python -c \"import torchvision; torchvision.datasets.FashionMNIST('{root}', download=True)\"",
            'python -c "import keras; keras.datasets.fashion_mnist.load_data()"   (fills ~/.keras/datasets/fashion-mnist/)',
            "on a machine with a network: the four files from "
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (see "
            "https://github.com/zalandoresearch/fashion-mnist) " + _URL_NOTE,
        ),
    ),
    "mnist": _Spec(
        name="mnist",
        title="MNIST",
        folder="mnist",
        torchvision="MNIST",
        keras="npz:mnist.npz",
        class_names=tuple(str(d) for d in range(10)),
        paper="LeCun, Bottou, Bengio & Haffner 1998, Proc. IEEE 86(11)",
        get=(
            "python -c \"import torchvision; torchvision.datasets.MNIST('{root}', download=True)\"",
            'python -c "import keras; keras.datasets.mnist.load_data()"   (writes ~/.keras/datasets/mnist.npz)',
            "on a machine with a network: the four files from http://yann.lecun.com/exdb/mnist/ "
            "(torchvision's mirror: https://ossci-datasets.s3.amazonaws.com/mnist/) " + _URL_NOTE,
        ),
    ),
    "kmnist": _Spec(
        name="kmnist",
        title="Kuzushiji-MNIST",
        folder="kmnist",
        torchvision="KMNIST",
        keras=None,
        class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        paper="Clanuwat et al. 2018, arXiv:1812.01718",
        get=(
            "python -c \"import torchvision; torchvision.datasets.KMNIST('{root}', download=True)\"",
            "on a machine with a network: the four files from "
            "http://codh.rois.ac.jp/kmnist/dataset/kmnist/ (see https://github.com/rois-codh/kmnist) "
            + _URL_NOTE,
        ),
    ),
}
SOURCES = tuple(_SPECS)
_NAMED_SHAPE = (28, 28)
_NAMED_COUNTS = (60_000, 10_000)
_NAMED_CLASSES = 10


def is_idx_source(source: str) -> bool:
    """True for the sources `load` reads: 'fashion_mnist', 'mnist', 'kmnist' or 'idx:DIR'."""
    return source in _SPECS or source.startswith("idx:")


# --------------------------------------------------------------------------- reading


def _open(path: str):
    """A binary reader of the file's content, decompressing gzip (recognised by its magic)."""
    if _is_gzip(path):
        return gzip.open(path, "rb"), True
    return open(path, "rb"), False


def _read_exact(f, view: memoryview) -> int:
    """Fill `view` from `f` in chunks; return the number of bytes read (short at end of file)."""
    n = 0
    while n < len(view):
        got = f.readinto(view[n : n + _CHUNK])
        if not got:
            break
        n += got
    return n


def _count_rest(f) -> int:
    n = 0
    while True:
        b = f.read(_CHUNK)
        if not b:
            return n
        n += len(b)


def _read(path: str, hasher=None) -> np.ndarray:
    """read_idx, optionally feeding the uncompressed bytes (header + values) to `hasher`."""
    path = os.path.abspath(os.fspath(path))
    try:
        f, compressed = _open(path)
    except OSError as e:
        raise IdxFormatError(f"{path}: cannot open ({e.strerror or e})") from None
    what = "gzip IDX file" if compressed else "IDX file"
    try:
        with f:
            head = f.read(4)
            if len(head) < 4:
                raise IdxFormatError(
                    f"{path}: {len(head)} bytes, too short for an IDX header (4-byte magic)"
                )
            magic = struct.unpack(">I", head)[0]
            zero, code, ndim = head[:2], head[2], head[3]
            if zero != b"\0\0" or code not in _DTYPES or ndim == 0:
                raise IdxFormatError(
                    f"{path}: bad magic 0x{magic:08x}; not an IDX file (expected 0x0000TTDD with "
                    f"type TT in {{08, 09, 0b, 0c, 0d, 0e}} and DD >= 1 dimensions, e.g. "
                    f"0x00000803 images, 0x00000801 labels)"
                )
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise IdxFormatError(
                    f"{path}: truncated header: magic 0x{magic:08x} announces {ndim} dimension "
                    f"sizes ({4 * ndim} bytes) but only {len(raw)} bytes follow"
                )
            dims = struct.unpack(f">{ndim}I", raw)
            dtype = np.dtype(_DTYPES[code])
            count = 1
            for d in dims:
                count *= d
            nbytes = count * dtype.itemsize
            header = 4 + 4 * ndim
            size = os.path.getsize(path)
            shape_txt = "x".join(map(str, dims))
            if not compressed and size - header != nbytes:
                raise IdxFormatError(
                    _size_message(path, what, shape_txt, dtype, nbytes, size - header)
                )
            if compressed and nbytes > _MAX_DEFLATE_RATIO * size + (1 << 16):
                raise IdxFormatError(
                    f"{path}: truncated or corrupt {what}: header says {shape_txt} {dtype.name} "
                    f"values ({nbytes:,} bytes), more than a {size:,}-byte gzip file can hold"
                )
            if hasher is not None:
                hasher.update(head + raw)
            out = np.empty(count, dtype)
            view = memoryview(out).cast("B")
            got = _read_exact(f, view)
            if got < nbytes:
                raise IdxFormatError(_size_message(path, what, shape_txt, dtype, nbytes, got))
            extra = _count_rest(f)  # reads to the end, so gzip checks its CRC and length
            if extra:
                raise IdxFormatError(
                    _size_message(path, what, shape_txt, dtype, nbytes, nbytes + extra)
                )
            if hasher is not None:
                hasher.update(view)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise IdxFormatError(f"{path}: corrupt gzip data ({type(e).__name__}: {e})") from None
    if dtype.byteorder == ">" and dtype.itemsize > 1:  # to native order, in place (no copy)
        out = out.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return out.reshape(dims)


def _size_message(path, what, shape_txt, dtype, want, have) -> str:
    kind = "truncated" if have < want else f"{have - want:,} trailing bytes after the values"
    return (
        f"{path}: {kind}: header says {shape_txt} {dtype.name} values ({want:,} bytes) but the "
        f"{what} holds {have:,} bytes after the header"
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into a numpy array.

    Args:
      path: the file. Gzip is recognised by content (magic 1f 8b), not by the file name.

    Returns:
      An array of the header's shape (count, rows, cols for 0x00000803 images; count for
      0x00000801 labels) in native byte order: uint8 for type 0x08 (the MNIST family), else int8,
      int16, int32, float32 or float64. The values are read straight into the returned array
      (peak memory ~ the array plus a 1 MiB read buffer; no float or bytes copy of the payload).

    Raises:
      IdxFormatError (a ValueError) naming the file and what is wrong: unreadable, shorter than
      its header, a bad magic (first two bytes not zero, an unknown type code, zero dimensions),
      fewer value bytes than the header's dimensions require (truncated) or more (trailing bytes),
      corrupt gzip data (bad CRC, cut-off stream).
    """
    return _read(os.fspath(path))


def idx_content_sha256(a: np.ndarray) -> str:
    """sha256 of `a` encoded as an uncompressed IDX file (header + big-endian values).

    Equals the sha256 of the uncompressed IDX file `read_idx` read `a` from, so the same data
    hashes the same whether it came gzipped, uncompressed or from a Keras .npz.
    Raises ValueError for a dtype IDX cannot hold (uint8, int8, int16, int32, float32, float64).
    """
    a = np.asarray(a)
    key = a.dtype.newbyteorder("=").str[1:]
    if key not in _TYPE_CODES or a.ndim == 0:
        raise ValueError(f"IDX cannot hold a {a.ndim}-d {a.dtype} array")
    h = hashlib.sha256(struct.pack(f">BBBB{a.ndim}I", 0, 0, _TYPE_CODES[key], a.ndim, *a.shape))
    h.update(np.ascontiguousarray(a, dtype=np.dtype(_DTYPES[_TYPE_CODES[key]])).data)
    return h.hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- finding files


def _keras_homes() -> list[str]:
    if os.environ.get("KERAS_HOME"):
        return [os.path.abspath(os.path.expanduser(os.environ["KERAS_HOME"]))]
    home = os.path.expanduser("~")
    homes = [os.path.join(home, ".keras")]
    if not os.access(home, os.W_OK):
        homes.append(KERAS_TMP_HOME)
    return [os.path.abspath(h) for h in homes]


def _roots(data_dir: str | os.PathLike | None) -> list[tuple[str, str]]:
    roots = []
    if data_dir is not None and os.fspath(data_dir) != "":
        roots.append(("data_dir", os.path.abspath(os.path.expanduser(os.fspath(data_dir)))))
    env = os.environ.get("JAXMEM_DATA")
    if env:
        roots.append(("JAXMEM_DATA", os.path.abspath(os.path.expanduser(env))))
    return roots


def search_locations(source: str, data_dir: str | os.PathLike | None = None) -> list[Location]:
    """Every place `load(source, data_dir)` looks, in order (the first complete one is used).

    Named sources (ROOT = `data_dir`, then ``$JAXMEM_DATA``; each only when given):
      1. ``ROOT/<folder>/`` for each ROOT (folder: fashion-mnist, mnist, kmnist);
      2. the Debian package folder ``DEBIAN_ROOT/<DEBIAN_FOLDERS[source]>/`` (fashion_mnist only:
         Debian packages no MNIST or KMNIST);
      3. torchvision's download layout ``ROOT/<FashionMNIST|MNIST|KMNIST>/raw/`` for each ROOT;
      4. Keras's cache ``KERAS/datasets/fashion-mnist/`` (fashion_mnist) or
         ``KERAS/datasets/mnist.npz`` (mnist), KERAS = ``$KERAS_HOME``, else ``~/.keras`` (and
         ``/tmp/.keras`` when the home folder is not writable, as Keras does).
    ``idx:DIR``: DIR itself when absolute; a relative DIR under each ROOT, then under the
    current directory.
    Raises ValueError for an unknown source.
    """
    roots = _roots(data_dir)
    if source.startswith("idx:"):
        d = os.path.expanduser(source[len("idx:") :])
        if not d:
            raise ValueError("empty folder in 'idx:'; use e.g. 'idx:/path/to/folder'")
        if os.path.isabs(d):
            return [Location("idx_dir", os.path.abspath(d))]
        return [Location("idx_dir", os.path.join(r, d)) for _, r in roots] + [
            Location("idx_dir", os.path.abspath(d))
        ]
    spec = _SPECS.get(source)
    if spec is None:
        raise ValueError(
            f"unknown IDX source {source!r}; use one of {', '.join(SOURCES)} or 'idx:DIR'"
        )
    locs = [Location(kind, os.path.join(r, spec.folder)) for kind, r in roots]
    if source in DEBIAN_FOLDERS:
        locs.append(
            Location("debian", os.path.abspath(os.path.join(DEBIAN_ROOT, DEBIAN_FOLDERS[source])))
        )
    locs += [Location("torchvision", os.path.join(r, spec.torchvision, "raw")) for _, r in roots]
    for home in _keras_homes() if spec.keras else []:
        if spec.keras == "dir":
            locs.append(Location("keras", os.path.join(home, "datasets", spec.folder)))
        else:
            locs.append(
                Location("keras", os.path.join(home, "datasets", spec.keras[4:]), "keras_npz")
            )
    return locs


def _find_files(folder: str) -> tuple[dict[str, str] | None, str]:
    """The four files of an IDX pair folder, or None and what is wrong there."""
    if not os.path.isdir(folder):
        return None, "no such folder" if not os.path.exists(folder) else "not a folder"
    names = sorted(os.listdir(folder))
    found, missing = {}, []
    for role in _ROLES:
        pat = re.compile(r"(?:.*[-_.])?" + _ROLE_RE[role] + r"(\.gz)?$")
        hits = [n for n in names if pat.fullmatch(n) and os.path.isfile(os.path.join(folder, n))]
        stems = sorted({n.removesuffix(".gz") for n in hits})
        if not stems:
            missing.append(_CANONICAL[role])
            continue
        if len(stems) > 1:
            raise IdxFormatError(
                f"{folder}: several files could be the {role.replace('_', ' ')}: "
                f"{', '.join(hits)}; keep one pair per folder"
            )
        # the .gz (the file as distributed, whose checksum is published) before an unpacked copy
        name = stems[0] + ".gz" if stems[0] + ".gz" in hits else stems[0]
        found[role] = os.path.join(folder, name)
    if missing:
        have = (
            f"incomplete: has {', '.join(os.path.basename(p) for p in found.values())}; "
            if found
            else ""
        )
        return None, f"{have}missing {', '.join(m + '[.gz]' for m in missing)}"
    return found, ""


def _not_found(
    source: str, spec: _Spec | None, looked: list[tuple[Location, str]], data_dir
) -> DataNotFound:
    lines = [f"no files for data source {source!r} found; looked in, in order:"]
    lines += [f"  {loc.kind:<12} {loc.path}  ({why})" for loc, why in looked]
    if spec is None:
        lines.append(
            "an idx:DIR folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may be .gz; 'test' for "
            "'t10k' and a name prefix such as 'emnist-letters-' are accepted)"
        )
    else:
        roots = _roots(data_dir)
        root = roots[0][1] if roots else "DIR"
        for kind, r in roots:
            with contextlib.suppress(IdxFormatError, OSError):
                if _find_files(r)[0] is not None:
                    lines.append(
                        f"note: {kind} {r} itself holds IDX files; MNIST-family files share their "
                        f"names, so {source!r} reads them only from {os.path.join(r, spec.folder)}/ "
                        f"(move them there), or load them as 'idx:{r}'"
                    )
        lines.append(
            f"{spec.title} ({spec.paper}) can be had with any of (nothing is downloaded here):"
        )
        lines += ["  " + g.format(root=root, folder=spec.folder) for g in spec.get]
        if spec.torchvision and not roots:
            lines.append("  (torchvision: then pass data_dir=DIR or set JAXMEM_DATA=DIR)")
    return DataNotFound("\n".join(lines))


# --------------------------------------------------------------------------- loading


def _check_labels(y: np.ndarray, path: str, num_classes: int) -> None:
    bad = y >= num_classes
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IdxFormatError(
            f"{path}: {int(bad.sum())} labels out of [0, {num_classes}), e.g. {int(y[i])} at row {i}"
        )


def _read_folder(files: dict[str, str]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    arrays, info = {}, {}
    for role in _ROLES:
        h = hashlib.sha256()
        a = _read(files[role], h)
        is_images = role.endswith("images")
        if a.dtype != np.uint8 or (a.ndim < 2 if is_images else a.ndim != 1):
            raise IdxFormatError(
                f"{files[role]}: holds a {'x'.join(map(str, a.shape))} {a.dtype} array (magic "
                f"0x0000{_TYPE_CODES[a.dtype.str[1:]]:02x}{a.ndim:02x}); {role.replace('_', ' ')} "
                "must be "
                + (
                    "uint8 [count, rows, cols] (magic 0x00000803)"
                    if is_images
                    else "uint8 [count] (magic 0x00000801)"
                )
            )
        arrays[role] = a
        info[role] = {
            "path": files[role],
            "sha256": _file_sha256(files[role]),
            "content_sha256": h.hexdigest(),
            "bytes": os.path.getsize(files[role]),
            "gzip": _is_gzip(files[role]),
        }
    for split in ("train", "test"):
        xi, yi = f"{split}_images", f"{split}_labels"
        if len(arrays[xi]) != len(arrays[yi]):
            raise IdxFormatError(
                f"{split} counts differ: {files[xi]} holds {len(arrays[xi]):,} images but "
                f"{files[yi]} holds {len(arrays[yi]):,} labels"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise IdxFormatError(
            f"image shapes differ: {files['train_images']} holds "
            f"{'x'.join(map(str, arrays['train_images'].shape[1:]))} images, "
            f"{files['test_images']} {'x'.join(map(str, arrays['test_images'].shape[1:]))}"
        )
    return arrays, info


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_keras_npz(path: str) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    keys = {
        "train_images": "x_train",
        "train_labels": "y_train",
        "test_images": "x_test",
        "test_labels": "y_test",
    }
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zlib.error) as e:
        raise IdxFormatError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise IdxFormatError(f"{path}: a single .npy array, not an .npz archive")
    with z:
        missing = [k for k in keys.values() if k not in z.files]
        if missing:
            raise IdxFormatError(
                f"{path}: not Keras's mnist.npz: no {', '.join(missing)} in {z.files}"
            )
        try:
            arrays = {role: z[k] for role, k in keys.items()}
        except (OSError, ValueError, zlib.error) as e:
            raise IdxFormatError(f"{path}: cannot read as .npz ({type(e).__name__}: {e})") from None
    for role, a in arrays.items():
        want_nd = 3 if role.endswith("images") else 1
        if a.dtype != np.uint8 or a.ndim != want_nd:
            raise IdxFormatError(
                f"{path}: {keys[role]} is a {a.ndim}-d {a.dtype} array; expected {want_nd}-d uint8"
            )
    for split in ("train", "test"):
        xi, yi = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(xi) != len(yi):
            raise IdxFormatError(
                f"{path}: {split} counts differ: x_{split} holds {len(xi):,} images, "
                f"y_{split} {len(yi):,} labels"
            )
    digest, size = _file_sha256(path), os.path.getsize(path)
    info = {
        role: {
            "path": path,
            "member": keys[role],
            "sha256": digest,
            "content_sha256": idx_content_sha256(a),
            "bytes": size,
            "gzip": False,
        }
        for role, a in arrays.items()
    }
    return arrays, info


def load(
    source: str,
    data_dir: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
) -> IdxData:
    """Read an IDX source ('fashion_mnist', 'mnist', 'kmnist' or 'idx:DIR') from local files.

    Looks in the places `search_locations(source, data_dir)` lists, in that order, and reads the
    first that holds all four files (each gzipped or not). A location that holds some but not
    all of them is passed over (and named in the error if nothing is found); a complete set
    that is malformed raises at once. Never downloads.

    Args:
      source: 'fashion_mnist', 'mnist', 'kmnist' (module docstring: papers, sizes), or
        'idx:DIR' for any folder of train + test (t10k) image/label IDX files.
      data_dir: the config's ``data.data_dir``: searched first (``data_dir/fashion-mnist/``,
        ``data_dir/FashionMNIST/raw/``, ...). None or '' to skip.
      num_classes: idx:DIR only: the number of classes (labels must lie in [0, num_classes));
        default: the largest label + 1, with every smaller class present in the train labels.
        Named sources have 10.

    Returns:
      IdxData(x_train uint8 [N, rows, cols], y_train int64 [N], x_test uint8 [M, rows, cols],
      y_test int64 [M], meta); idx:DIR images may have more dimensions ([N, ...], as stored).
      Named sources: N = 60,000, M = 10,000, 28x28, labels in [0, 10). Pixel values 0..255.
      meta (JSON-serializable): source, title, paper, format ('idx' or 'keras_npz'), location
      (the folder kind: data_dir, JAXMEM_DATA, debian, torchvision, keras or idx_dir), folder
      (absolute), files: per role (train_images, train_labels, test_images, test_labels) the
      absolute path, sha256 of the file as found, content_sha256 (sha256 of the uncompressed IDX
      encoding: the same for the same data gzipped, unpacked or in Keras's .npz), bytes, gzip
      (and member, for the .npz); counts, image_shape, num_classes, class_names (named sources).

    Raises:
      ValueError: an unknown source; num_classes given for a named source other than 10, or < 1.
      DataNotFound (ValueError): no location holds the files; lists every place looked and the
        commands that would get them.
      IdxFormatError (ValueError): a file is malformed (see `read_idx`), not uint8 images
        [N, rows, cols] / labels [N], several files match one role, train/test counts or shapes
        differ (naming both files), a named source's sizes differ from the published ones, or
        labels lie outside [0, num_classes).
    """
    spec = _SPECS.get(source)
    locs = search_locations(source, data_dir)  # raises for an unknown source
    if num_classes is not None:
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, (int, np.integer))
            or num_classes < 1
        ):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if spec is not None and num_classes != _NAMED_CLASSES:
            raise ValueError(
                f"{source} has {_NAMED_CLASSES} classes, got num_classes={num_classes}"
            )
    looked: list[tuple[Location, str]] = []
    for loc in locs:
        if loc.format == "keras_npz":
            if not os.path.isfile(loc.path):
                looked.append((loc, "no such file"))
                continue
            arrays, files = _read_keras_npz(loc.path)
            folder = os.path.dirname(loc.path)
        else:
            found, why = _find_files(loc.path)
            if found is None:
                looked.append((loc, why))
                continue
            arrays, files = _read_folder(found)
            folder = loc.path
        return _finish(source, spec, loc, folder, arrays, files, num_classes)
    raise _not_found(source, spec, looked, data_dir)


def _finish(source, spec, loc, folder, arrays, files, num_classes) -> IdxData:
    xtr, ytr = arrays["train_images"], arrays["train_labels"]
    xte, yte = arrays["test_images"], arrays["test_labels"]

    def where(role):
        return files[role]["path"]

    if spec is not None:
        got = ((len(xtr), len(xte)), xtr.shape[1:])
        if got != (_NAMED_COUNTS, _NAMED_SHAPE):
            raise IdxFormatError(
                f"{folder}: {spec.title} has {_NAMED_COUNTS[0]:,} + {_NAMED_COUNTS[1]:,} images of "
                f"{_NAMED_SHAPE[0]}x{_NAMED_SHAPE[1]}, these files hold {len(xtr):,} + {len(xte):,} "
                f"of {'x'.join(map(str, xtr.shape[1:]))}; load other IDX files as 'idx:{folder}'"
            )
        k = _NAMED_CLASSES
    elif num_classes is not None:
        k = int(num_classes)
    else:
        if len(ytr) == 0:
            raise IdxFormatError(
                f"{where('train_labels')}: no training labels to derive num_classes from"
            )
        k = int(max(ytr.max(), yte.max(initial=0))) + 1
        absent = np.flatnonzero(np.bincount(ytr, minlength=k) == 0)
        if len(absent):
            raise IdxFormatError(
                f"{where('train_labels')}: labels run up to {k - 1} but classes "
                f"{absent[:10].tolist()}{' ...' if len(absent) > 10 else ''} never occur in "
                "training (labels counted from 1?); labels must be 0..K-1, or pass num_classes"
            )
    _check_labels(ytr, where("train_labels"), k)
    _check_labels(yte, where("test_labels"), k)
    meta: dict[str, Any] = {
        "source": source,
        "title": spec.title if spec else "IDX files",
        "paper": spec.paper if spec else None,
        "format": loc.format,
        "location": loc.kind,
        "folder": folder,
        "files": files,
        "counts": {"train": len(xtr), "test": len(xte)},
        "image_shape": [int(d) for d in xtr.shape[1:]],
        "num_classes": k,
    }
    if spec is not None:
        meta["class_names"] = list(spec.class_names)
    return IdxData(xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), meta)
