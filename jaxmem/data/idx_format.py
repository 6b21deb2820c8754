"""The IDX file format (LeCun's MNIST format): a validating reader, the content hash, and the
reading of a folder's four files (train/test images and labels) or of Keras's ``mnist.npz``.

Standalone: numpy and the standard library only. :mod:`jaxmem.data.idx` (the MNIST-family
sources and where their files are looked for) reads through this module.

IDX format: a big-endian header, then the values in C order. The header is a 4-byte magic
``0x00 0x00 TYPE NDIM`` and NDIM big-endian uint32 dimension sizes. TYPE is 0x08 uint8,
0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32 or 0x0E float64. The MNIST family uses
``0x00000803`` (uint8 images: count, rows, cols) and ``0x00000801`` (uint8 labels: count).
Files may be gzip-compressed (recognised by content, not by name).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import zlib

import numpy as np

from jaxmem.data.dataset import DataError

__all__ = ["IdxFormatError", "idx_content_sha256", "read_idx", "find_files", "read_folder",
           "read_keras_npz", "check_labels", "ROLES"]

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
ROLES = ("train_images", "train_labels", "test_images", "test_labels")
_ROLE_RE = {
    "train_images": r"train[-_.]images[-_.]idx3[-_.]ubyte",
    "train_labels": r"train[-_.]labels[-_.]idx1[-_.]ubyte",
    "test_images": r"(?:t10k|test)[-_.]images[-_.]idx3[-_.]ubyte",
    "test_labels": r"(?:t10k|test)[-_.]labels[-_.]idx1[-_.]ubyte",
}


class IdxFormatError(DataError):
    """An IDX file is malformed (bad magic, truncated, trailing bytes, corrupt gzip) or a pair of
    files disagrees (counts, shapes, labels out of range). The message names the file(s)."""




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


# --------------------------------------------------------------------------- folders


def find_files(folder: str) -> tuple[dict[str, str] | None, str]:
    """The four files of an IDX pair folder (role -> path: train/test images and labels, each
    gzipped or not, 'test' for 't10k' and a name prefix accepted), or None and what is wrong
    there. Raises IdxFormatError when several files could be one role."""
    if not os.path.isdir(folder):
        return None, "no such folder" if not os.path.exists(folder) else "not a folder"
    names = sorted(os.listdir(folder))
    found, missing = {}, []
    for role in ROLES:
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


def check_labels(y: np.ndarray, path: str, num_classes: int) -> None:
    """Raise IdxFormatError naming ``path`` when a label of ``y`` lies outside [0, num_classes)."""
    bad = y >= num_classes
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IdxFormatError(
            f"{path}: {int(bad.sum())} labels out of [0, {num_classes}), e.g. {int(y[i])} at row {i}"
        )


def read_folder(files: dict[str, str]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Read the four files of :func:`find_files` (role -> path): role -> array, and role -> the
    file's provenance (path, sha256, content_sha256, bytes, gzip). Raises IdxFormatError for a
    malformed file, images not uint8 [count, rows, ...], labels not uint8 [count], or train/test
    counts or image shapes that differ."""
    arrays, info = {}, {}
    for role in ROLES:
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


def read_keras_npz(path: str) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """Keras's ``mnist.npz`` (x_train, y_train, x_test, y_test) as :func:`read_folder` returns a
    folder's files (``content_sha256`` as if each array were an uncompressed IDX file)."""
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
