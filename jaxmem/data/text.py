"""Text corpora for language-model memorization: readers with stable example ids.

Sources (:func:`load_text`), read from a user's ``data_dir`` or ``$JAXMEM_DATA`` (the project's
tests read the shared copy; nothing is downloaded):

* ``kjv`` - the King James Bible, one verse per example: ``kjv_verses.tsv[.gz]``, tab-separated
  with a header row ``book, chapter, verse, text`` (31,102 verses in the Debian ``bible-kjv``
  dump). Example id = the verse's data-row index (0 = the first row after the header).
* ``austen`` - Jane Austen's six novels, one printed line per example: ``austen_lines.tsv[.gz]``,
  tab-separated without a header, ``book, text`` (73,422 lines in ``r-cran-janeaustenr``'s
  data). Empty (or whitespace-only) lines are kept in the file as paragraph breaks; they are
  *not* examples (11,143 of them: a model would only learn EOS from them and they would all be
  one heavily duplicated "text"). Example id = the line's index in the file (0-based), so the
  ids of the 62,279 kept lines have gaps where the empty lines were.
* ``python_text`` - a text every Python installation ships, for runs without any data folder:
  the Zen of Python (``this.py``, rot13-decoded) followed by the interpreter's ``LICENSE.txt``
  when present, one line per example (printable ASCII only; empty lines skipped as for Austen).
  The license depends on the Python version, so ``meta`` records the sources and a sha256.
* ``text:PATH`` - any UTF-8 text file (optionally ``.gz``), one example per line; or a
  ``.tsv[.gz]`` file with a header row, the examples being the column ``column`` (default
  ``"text"``). Empty lines / cells are skipped as for Austen; ids are the line index (plain
  text) or the data-row index (TSV), as above.

Files are read as UTF-8; a byte-order mark at the start of a file (U+FEFF, as some editors
write) is dropped, not kept in the first text or column name. Lines are split on ``"\\n"`` only
(a trailing ``"\\r"`` is removed); TSV fields are split on tabs
with no quoting (Austen's lines contain ``"`` characters, which a CSV reader would treat as
quotes), the last column keeping any further tabs. Texts are kept exactly as in the file.

Tokenizers are in :mod:`jaxmem.data.tokenizers`; fixed-length encoding, duplicate counts, zlib
entropy, planted duplicates and secret canaries in :mod:`jaxmem.data.text_transforms`; a run's
text data from its config in :mod:`jaxmem.data.text_build`. This module uses numpy and the
standard library only.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os

import numpy as np

__all__ = [
    "TextDataError",
    "TextDataset",
    "load_text",
    "read_kjv",
    "read_austen",
    "read_lines",
    "read_python_text",
    "TEXT_SOURCES",
    "KJV_FILE",
    "AUSTEN_FILE",
]

KJV_FILE = "kjv_verses.tsv"
AUSTEN_FILE = "austen_lines.tsv"
#: The named text sources (``text:PATH`` is the family of user files).
TEXT_SOURCES = ("kjv", "austen", "python_text")

class TextDataError(ValueError):
    """A text corpus is missing or malformed, or a text transform got invalid arguments."""


# ----------------------------------------------------------------------------- the dataset


@dataclasses.dataclass(frozen=True, eq=False)
class TextDataset:
    """Texts with stable example ids.

    Attributes:
      name: the source (``"kjv"``, ``"austen"``, ``"text:PATH"``).
      texts: N strings, in file order (planted copies appended after the originals).
      ids: int64 [N], unique: the row index in the source file (see the module docstring);
        planted copies get new ids after the largest id ever used (``meta["next_id"]``).
      source_ids: int64 [N]: the id of the row a text came from (its own id for original rows;
        the copied row's id for planted copies).
      columns: extra per-example fields, each a numpy array [N] (KJV: ``book``, ``chapter``,
        ``verse``; Austen: ``book``); copies carry their source's values.
      meta: JSON-ready provenance: ``path``, ``format``, ``rows_in_file``, ``skipped_empty``,
        ``next_id`` and ``transforms`` (one record per transform).
    """

    name: str
    texts: tuple
    ids: np.ndarray
    source_ids: np.ndarray
    columns: dict
    meta: dict

    def __len__(self) -> int:
        return len(self.texts)

    def __post_init__(self):
        n = len(self.texts)
        for field, a in [("ids", self.ids), ("source_ids", self.source_ids)] + [
            (f"columns[{k!r}]", v) for k, v in self.columns.items()
        ]:
            if np.shape(a) != (n,):
                raise TextDataError(f"TextDataset.{field} must have shape ({n},), got {np.shape(a)}")
        if n and len(np.unique(self.ids)) != n:
            raise TextDataError("TextDataset.ids must be unique")

    def __repr__(self) -> str:
        return f"TextDataset({self.name!r}, {len(self)} texts)"


# ----------------------------------------------------------------------------- readers


def _open_text(path: str):
    # utf-8-sig: a byte-order mark at the start of the file is not part of the first line's text
    # (it would make that line differ from an exact copy of it, and hide a TSV's first column name)
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _lines(path: str) -> list[str]:
    """The file's lines, split on "\\n" only, without the line ending ("\\r\\n" handled)."""
    try:
        with _open_text(path) as f:
            data = f.read()
    except UnicodeDecodeError as e:
        raise TextDataError(f"{path} is not UTF-8 text: {e}") from None
    except (OSError, EOFError) as e:
        raise TextDataError(f"cannot read {path}: {e}") from None
    lines = data.split("\n")
    if lines and lines[-1] == "":  # the file's final newline ends the last line; it adds none
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]


def _find(data_dir: str | None, filename: str, source: str) -> str:
    """The corpus file: in ``data_dir``, then in ``$JAXMEM_DATA`` (the folder convention of the
    IDX sources, :mod:`jaxmem.data.idx`), each as given or its ``text/`` subfolder, gzipped or
    not. Nothing is downloaded."""
    roots = [r for r in (data_dir, os.environ.get("JAXMEM_DATA")) if r]
    if not roots:
        raise TextDataError(
            f"{source}: data_dir is not set (nor JAXMEM_DATA); point it at the folder holding "
            f"{filename}.gz (or {filename})")
    tried = []
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        for folder in (root, os.path.join(root, "text")):
            for name in (filename + ".gz", filename):
                p = os.path.join(folder, name)
                tried.append(p)
                if os.path.isfile(p):
                    return p
    raise TextDataError(f"{source}: none of {', '.join(tried)} exists")


def _split_rows(lines: list[str], ncols: int, path: str, first_row: int) -> list[list[str]]:
    rows = []
    for j, ln in enumerate(lines):
        r = ln.split("\t", ncols - 1)
        if len(r) != ncols:
            raise TextDataError(
                f"{path}: line {first_row + j + 1} has {len(r)} tab-separated fields, expected {ncols}")
        rows.append(r)
    return rows


def _build(name, path, fmt, texts, row_index, columns, rows_in_file) -> TextDataset:
    keep = np.array([t.strip() != "" for t in texts], bool)
    idx = np.flatnonzero(keep)
    ids = np.asarray(row_index, np.int64)[idx]
    meta = {
        "path": os.path.abspath(path),
        "format": fmt,
        "rows_in_file": int(rows_in_file),
        "skipped_empty": int((~keep).sum()),
        "next_id": int(rows_in_file),
        "transforms": [],
    }
    cols = {k: np.asarray(v)[idx] for k, v in columns.items()}
    return TextDataset(name, tuple(texts[i] for i in idx), ids, ids.copy(), cols, meta)


def read_kjv(data_dir: str | None) -> TextDataset:
    """The King James Bible, one verse per example (see the module docstring for the format).

    Raises:
      TextDataError: the file is missing, not UTF-8, its header is not
        ``book, chapter, verse, text``, or a row does not have four fields.
    """
    path = _find(data_dir, KJV_FILE, "kjv")
    lines = _lines(path)
    if not lines or lines[0].split("\t") != ["book", "chapter", "verse", "text"]:
        raise TextDataError(f"{path}: expected the header 'book<TAB>chapter<TAB>verse<TAB>text'")
    rows = _split_rows(lines[1:], 4, path, 1)
    try:
        chapter = np.array([int(r[1]) for r in rows], np.int32)
        verse = np.array([int(r[2]) for r in rows], np.int32)
    except ValueError as e:
        raise TextDataError(f"{path}: chapter and verse must be integers ({e})") from None
    cols = {"book": np.array([r[0] for r in rows], dtype=object), "chapter": chapter, "verse": verse}
    return _build("kjv", path, "kjv_tsv", [r[3] for r in rows], np.arange(len(rows)), cols, len(rows))


def read_austen(data_dir: str | None) -> TextDataset:
    """Jane Austen's six novels, one non-empty printed line per example (module docstring).

    Raises:
      TextDataError: the file is missing, not UTF-8, or a line does not have two fields.
    """
    path = _find(data_dir, AUSTEN_FILE, "austen")
    rows = _split_rows(_lines(path), 2, path, 0)
    cols = {"book": np.array([r[0] for r in rows], dtype=object)}
    return _build("austen", path, "austen_tsv", [r[1] for r in rows], np.arange(len(rows)), cols, len(rows))


def read_lines(path: str, *, column: str | None = None) -> TextDataset:
    """``text:PATH``: one example per line, or a TSV (``.tsv``/``.tsv.gz``) column with a header.

    Args:
      path: the file. A name ending in ``.tsv`` or ``.tsv.gz`` is read as a TSV with a header row;
        anything else as plain text, one example per line.
      column: the TSV column holding the texts (default ``"text"``); other columns are kept in
        ``columns`` as strings. Giving it for a plain-text file is an error.

    Raises:
      TextDataError: missing/unreadable file, a missing column, a row with the wrong field count.
    """
    if not os.path.isfile(path):
        raise TextDataError(f"text:{path}: no such file")
    name = f"text:{path}"
    is_tsv = path.endswith((".tsv", ".tsv.gz"))
    lines = _lines(path)
    if not is_tsv:
        if column is not None:
            raise TextDataError(f"{name}: column={column!r} needs a .tsv file with a header")
        return _build(name, path, "lines", lines, np.arange(len(lines)), {}, len(lines))
    if not lines:
        raise TextDataError(f"{name}: empty TSV file (a header row is needed)")
    header = lines[0].split("\t")
    column = "text" if column is None else column
    if column not in header:
        raise TextDataError(f"{name}: no column {column!r} in the header {header}")
    rows = _split_rows(lines[1:], len(header), path, 1)
    j = header.index(column)
    cols = {h: np.array([r[k] for r in rows], dtype=object) for k, h in enumerate(header) if k != j}
    return _build(name, path, f"tsv:{column}", [r[j] for r in rows], np.arange(len(rows)), cols, len(rows))


def read_python_text() -> TextDataset:
    """``python_text``: the Zen of Python (``this.s``, rot13-decoded) and the interpreter's
    ``LICENSE.txt`` (when the installation has it), one line per example, characters outside
    printable ASCII removed, empty lines skipped. Ids = line index in that text. ``meta`` records
    the sources and the text's sha256 (the license differs between Python versions)."""
    import codecs
    import contextlib
    import importlib
    import io
    import sys
    from pathlib import Path

    with contextlib.redirect_stdout(io.StringIO()):   # `this` prints the Zen on first import
        importlib.import_module("this")
    parts, sources = [codecs.decode(sys.modules["this"].s, "rot13")], ["this.py (Zen of Python)"]
    lic = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt"
    if lic.is_file():
        parts.append(lic.read_text(errors="ignore"))
        sources.append(str(lic))
    text = "\n".join(parts)
    text = "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127)
    lines = text.split("\n")
    ds = _build("python_text", sources[-1], "python_text", lines, np.arange(len(lines)), {}, len(lines))
    ds.meta.update(sources=sources, sha256=hashlib.sha256(text.encode()).hexdigest()[:16])
    return ds


def load_text(source: str, *, data_dir: str | None = None, column: str | None = None) -> TextDataset:
    """A text corpus by name: ``"kjv"``, ``"austen"`` (from ``data_dir``), ``"python_text"`` or
    ``"text:PATH"`` (relative paths are taken inside ``data_dir`` when it is set).

    Raises:
      TextDataError: an unknown source, or the reader's errors.
    """
    if source == "kjv":
        return read_kjv(data_dir)
    if source == "austen":
        return read_austen(data_dir)
    if source == "python_text":
        return read_python_text()
    if source.startswith("text:"):
        path = source[len("text:"):]
        if data_dir is not None and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        return read_lines(path, column=column)
    raise TextDataError(f"unknown text source {source!r}: use {', '.join(map(repr, TEXT_SOURCES))} or 'text:PATH'")
