"""The MNIST-family sources read from IDX files (LeCun's MNIST format), and where their files are
looked for. The format itself (reader, content hash, a folder's four files, Keras's .npz) is
:mod:`jaxmem.data.idx_format`; `read_idx`, `idx_content_sha256` and `IdxFormatError` are
re-exported here.

Standalone: numpy and the standard library only (no jaxmem module but the data package's own),
so the data package can import it without pulling in anything else. Nothing here downloads;
files are looked for where a user already has them (see `search_locations`).

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
import os
from typing import Any, NamedTuple

import numpy as np

from jaxmem.data.dataset import DataError
from jaxmem.data.idx_format import (
    IdxFormatError,
    check_labels,
    find_files,
    idx_content_sha256,
    read_folder,
    read_idx,
    read_keras_npz,
)

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
                if find_files(r)[0] is not None:
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
            arrays, files = read_keras_npz(loc.path)
            folder = os.path.dirname(loc.path)
        else:
            found, why = find_files(loc.path)
            if found is None:
                looked.append((loc, why))
                continue
            arrays, files = read_folder(found)
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
    check_labels(ytr, where("train_labels"), k)
    check_labels(yte, where("test_labels"), k)
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
