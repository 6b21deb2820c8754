"""jaxmem.data.text_transforms: duplicate counts, groups, zlib entropy, planted duplicates and
secret canaries, against brute-force references."""

import zlib

import numpy as np
import pytest
from helpers_text import random_text

from jaxmem.data import text as T
from jaxmem.data import text_transforms as X


def test_duplicate_counts_groups_and_zlib_against_brute_force(rng):
    texts = [random_text(rng, list("ab"), 3) for _ in range(150)]
    counts = X.duplicate_counts(texts)
    groups = X.text_groups(texts)
    for i, t in enumerate(texts):
        assert counts[i] == sum(u == t for u in texts)
        assert groups[i] == min(j for j, u in enumerate(texts) if u == t)
    np.testing.assert_array_equal(X.zlib_entropy(texts), [len(zlib.compress(t.encode("utf-8"))) for t in texts])
    np.testing.assert_array_equal(X.zlib_entropy(texts, level=9),
                                  [len(zlib.compress(t.encode("utf-8"), 9)) for t in texts])
    assert X.zlib_entropy([""])[0] == 8  # zlib output is never empty


def test_sequence_keys_are_the_real_tokens(rng):
    """Keys equal exactly when the real tokens are equal: a trailing token 0 (byte NUL) counts, so
    a numpy fixed-width string array, which drops trailing zero bytes, must not be used."""
    L = 6
    tok = rng.integers(0, 3, size=(200, L)).astype(np.int32)
    lengths = rng.integers(1, L + 1, size=200)
    tok[np.arange(L)[None] >= lengths[:, None]] = 0          # padding looks like a real token 0
    keys = X.sequence_keys(tok, lengths)
    real = [tuple(tok[i, : lengths[i]]) for i in range(200)]
    for i in range(200):
        for j in range(200):
            assert (keys[i] == keys[j]) == (real[i] == real[j])
    np.testing.assert_array_equal(X.duplicate_counts(keys), [real.count(r) for r in real])
    np.testing.assert_array_equal(X.text_groups(keys), [real.index(r) for r in real])
    assert X.sequence_keys(np.array([[5, 0]]), [1]) != X.sequence_keys(np.array([[5, 0]]), [2])


def _toy(n, rng):
    texts = tuple(f"verse {i} {random_text(rng, list('xyz'), 6)}" for i in range(n))
    ids = np.arange(n, dtype=np.int64) * 2  # gaps, as after skipping empty lines
    return T.TextDataset("toy", texts, ids, ids.copy(), {"book": np.array(["b"] * n, dtype=object)},
                         {"next_id": 2 * n, "transforms": []})


def test_plant_duplicates_is_seeded_and_traceable(rng):
    base = _toy(300, rng)
    base = T.TextDataset("toy", base.texts[:-2] + (base.texts[0], base.texts[0]), base.ids, base.source_ids,
                         base.columns, base.meta)  # row 0 now occurs 3 times naturally
    counts = (1, 2, 4, 8)
    a = X.plant_duplicates(base, counts, per_count=5, seed=11)
    b = X.plant_duplicates(base, counts, per_count=5, seed=11)
    assert a.texts == b.texts and np.array_equal(a.ids, b.ids)
    assert len(a) == len(base) + 5 * sum(c - 1 for c in counts)
    assert len(np.unique(a.ids)) == len(a) and a.ids[len(base):].min() == 2 * 300
    rec = a.meta["transforms"][-1]
    assert rec["name"] == "plant_duplicates" and rec["counts"] == list(counts)
    dup = X.duplicate_counts(a)
    planted = X.planted_counts(a)
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
    c2 = X.plant_duplicates(base, counts, per_count=5, seed=12)
    assert c2.meta["transforms"][-1]["source_ids"] != rec["source_ids"]
    # a second transform continues the ids and never copies a copy
    d = X.plant_duplicates(a, (3,), per_count=2, seed=0)
    assert d.ids[len(a):].min() == a.meta["next_id"]
    assert set(d.meta["transforms"][-1]["source_ids"][0]) <= {int(i) for i in base.ids}
    with pytest.raises(T.TextDataError, match="distinct integers"):
        X.plant_duplicates(base, (2, 2), per_count=1, seed=0)
    with pytest.raises(T.TextDataError, match="eligible"):
        X.plant_duplicates(base, (1, 2), per_count=200, seed=0)


def test_insert_secrets_counts_references_and_read_back(rng):
    base = _toy(30, rng)
    seed = int(rng.integers(1 << 30))
    counts = (1, 3, 5)
    train, refs = X.insert_secrets(base, counts, per_count=2, num_references=50, seed=seed)
    again = X.insert_secrets(base, counts, per_count=2, num_references=50, seed=seed)
    assert train.texts == again[0].texts and refs.texts == again[1].texts
    assert train.texts[:30] == base.texts and len(train) == 30 + 2 * sum(counts)
    canaries = train.texts[30:]
    secrets = {t for t in canaries}
    assert len(secrets) == 6 and all(t.startswith(X.SECRET_PREFIX) for t in secrets)
    for s in secrets:
        digits = s[len(X.SECRET_PREFIX):]
        assert len(digits) == X.SECRET_DIGITS and digits.isdigit()
    assert len(set(refs.texts)) == 50 and not set(refs.texts) & secrets
    all_ids = np.concatenate([train.ids, refs.ids])
    assert len(np.unique(all_ids)) == len(all_ids) and refs.ids.min() > train.ids.max()
    rec = train.meta["transforms"][-1]
    count, which = X.secret_rows(train.ids, train.meta["transforms"])
    flat = [s for g in rec["secrets"] for s in g]
    for r in range(len(train)):   # brute force: a row's count is how often its text occurs
        t = train.texts[r]
        if t in secrets:
            assert count[r] == canaries.count(t) and flat[which[r]] == t[len(X.SECRET_PREFIX):]
            assert train.source_ids[r] == min(train.ids[q] for q in range(len(train)) if train.texts[q] == t)
        else:
            assert count[r] == 0 and which[r] == -1
    rc, rw = X.secret_rows(refs.ids, train.meta["transforms"])
    assert (rc == 0).all()
    np.testing.assert_array_equal(rw, -2 - np.arange(50))
    assert [X.SECRET_PREFIX + s for s in rec["reference_secrets"]] == list(refs.texts)
    with pytest.raises(T.TextDataError, match="distinct"):
        X.insert_secrets(base, (2, 2), per_count=1, num_references=1, seed=0)
    with pytest.raises(T.TextDataError, match="per_count"):
        X.insert_secrets(base, (2,), per_count=0, num_references=1, seed=0)
