"""jaxmem.data.text: corpus readers (shared KJV / Austen copies, user files, Python's own text)
against brute-force re-reads."""

import collections
import gzip

import numpy as np
import pytest
from helpers_text import ALPHABET, random_text, shared_data_dir
from shared_data import SHARED_DATA

from jaxmem.data import text as T
from jaxmem.data import text_transforms as X

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
    counts = X.duplicate_counts(ds)
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


def test_text_path_lines_and_tsv(tmp_path, rng):
    lines = [random_text(rng, ALPHABET[:-5] + ["é", "中"], 12).replace("\t", " ") for _ in range(40)]
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


def test_named_sources_read_a_users_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXMEM_DATA", raising=False)
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
    monkeypatch.setenv("JAXMEM_DATA", str(tmp_path))   # the IDX sources' folder convention
    assert T.load_text("austen").texts == ("EMMA", "Hi")
    with pytest.raises(T.TextDataError, match="unknown text source"):
        T.load_text("bible")


def test_python_text_is_the_zen_and_license_one_line_per_example():
    import codecs
    import sys
    import this
    from pathlib import Path

    ds = T.load_text("python_text")
    zen = codecs.decode(this.s, "rot13").split("\n")
    nonempty = [z for z in zen if z.strip()]
    assert list(ds.texts[: len(nonempty)]) == nonempty
    lic = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt"
    lines = zen + (lic.read_text(errors="ignore").split("\n") if lic.is_file() else [])
    lines = ["".join(c for c in ln if 32 <= ord(c) < 127) for ln in lines]
    keep = [i for i, ln in enumerate(lines) if ln.strip()]
    np.testing.assert_array_equal(ds.ids, keep)
    assert list(ds.texts) == [lines[i] for i in keep]
    assert ds.meta["sources"][0].startswith("this.py") and len(ds.meta["sha256"]) == 16


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_is_not_part_of_the_first_text(tmp_path, gz):
    """Issue 21, item 10: a file that starts with a UTF-8 BOM (as some editors write it)."""
    bom = "\ufeff".encode("utf-8")
    body = "first line\nsecond\nfirst line\n"
    p = tmp_path / ("c.txt.gz" if gz else "c.txt")
    p.write_bytes(gzip.compress(bom + body.encode()) if gz else bom + body.encode())
    ds = T.load_text(f"text:{p}")
    assert ds.texts == ("first line", "second", "first line")
    assert X.duplicate_counts(ds).tolist() == [2, 1, 2] and X.text_groups(ds).tolist() == [0, 1, 0]
    tsv = tmp_path / ("t.tsv.gz" if gz else "t.tsv")
    data = bom + b"text\tnote\nfirst line\tx\nsecond\ty\n"
    tsv.write_bytes(gzip.compress(data) if gz else data)
    d2 = T.load_text(f"text:{tsv}")
    assert d2.texts == ("first line", "second") and list(d2.columns["note"]) == ["x", "y"]
    # a BOM anywhere else is a character of the text, kept as it is
    (tmp_path / "mid.txt").write_bytes(b"a\n" + bom + b"b\n")
    assert T.load_text(f"text:{tmp_path / 'mid.txt'}").texts == ("a", "\ufeffb")
