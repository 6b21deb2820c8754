"""jaxmem.data.text_build: a language-model run's data from its config (split by text hash,
max_train, planted duplicates, secret canaries, tokenizer, encoding, groups, per-example facts),
against brute-force recomputations; the text sources in the data registry."""

import hashlib
import zlib

import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem.data import DataError, build_dataset, load, sources
from jaxmem.data import text_transforms as X
from jaxmem.data.text_build import TextData, text_facts, text_split

LM = ['model.name="causal_lm"', "scoring.attacks=[]", "scoring.prefix_lengths=[4]", "scoring.suffix_length=4"]


def _cfg(tmp_path, lines, *sets):
    p = tmp_path / "corpus.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return cfgmod.load_config(None, LM + [f'data.source="text:{p}"', *sets])


def _lines(rng, n):
    words = ["alpha", "beta", "gamma", "delta", "é", "中"]
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 8)))) + f" {i}" for i in range(n)]


def test_split_by_text_hash_keeps_copies_together(rng):
    texts = _lines(rng, 400)
    texts += [texts[3]] * 5 + [texts[10]] * 3   # natural duplicates
    f = float(rng.uniform(0.1, 0.5))
    held = text_split(texts, f)
    want = [int(hashlib.sha256(t.encode()).hexdigest()[:15], 16) / 16 ** 15 < f for t in texts]
    np.testing.assert_array_equal(held, want)
    for t in set(texts):
        assert len({held[i] for i, u in enumerate(texts) if u == t}) == 1
    assert abs(held.mean() - f) < 0.1


def _held_brute_force(texts, f, L):
    """The split of text_build's docstring, brute force: a text's side is that of the smallest
    text sharing its first L - 1 UTF-8 bytes."""
    def side(t):
        rep = min(u for u in texts if u.encode()[: L - 1] == t.encode()[: L - 1])
        return int(hashlib.sha256(rep.encode()).hexdigest()[:15], 16) / 16 ** 15 < f
    return [side(t) for t in texts]


def test_build_text_dataset_against_brute_force(tmp_path, rng):
    lines = _lines(rng, 300)
    lines[5] = ""                                  # empty lines are skipped (not examples)
    lines += [lines[7]] * 3                        # a natural duplicate group of 4
    lines[20:23] = [lines[9] + " " * 40 + "tail" + str(k) for k in range(3)]   # equal once cut to 32
    cfg = _cfg(tmp_path, lines, "data.max_len=32", "data.text_test_fraction=0.2", "data.max_train=200",
               "data.plant_counts=[1,2,4]", "data.plant_per_count=3", "data.canaries=2",
               'data.canary_kind="secret"', "data.canary_counts=[1,3]", "data.canary_references=20",
               "seed=5")
    ds = build_dataset(cfg)
    assert isinstance(ds, TextData) and ds.num_classes == 259 and ds.x_train.shape[1] == 32
    real = [(i, t) for i, t in enumerate(lines) if t.strip()]
    held = _held_brute_force([t for _, t in real], 0.2, 32)
    train = [(i, t) for (i, t), h in zip(real, held) if not h][:200]
    test = [(i, t) for (i, t), h in zip(real, held) if h]
    n_plant = 3 * (0 + 1 + 3)
    n_secret = 2 * (1 + 3)
    assert ds.num_train == 200 + n_plant + n_secret and ds.num_test == len(test) + 20
    np.testing.assert_array_equal(ds.ids_train[:200], [i for i, _ in train])
    assert ds.texts_train[:200] == tuple(t for _, t in train)
    assert ds.texts_test[: len(test)] == tuple(t for _, t in test)
    # tokens, lengths (= the mask's sums), groups of identical sequences
    seqs = []
    for r in range(ds.num_train):
        full = [257] + list(ds.texts_train[r].encode()) + [258]
        n = min(len(full), 32)
        assert ds.y_train[r] == n and list(ds.x_train[r, :n]) == full[:n]
        assert (ds.x_train[r, n:] == 256).all()
        seqs.append(tuple(full[:n]))
    for a in range(ds.num_train):
        same = [b for b in range(ds.num_train) if seqs[b] == seqs[a]]
        assert set(np.flatnonzero(ds.groups == ds.groups[a])) == set(same)
    assert ds.groups.max() + 1 == len(set(seqs)) == ds.meta["num_groups"]
    tails = lines[20:23]   # three texts, one sequence: one side, one group, duplicate count 3
    where = {t in ds.texts_train for t in tails} | {t not in ds.texts_test for t in tails}
    assert len(where) == 1
    if ds.texts_train.count(tails[0]):
        assert len({int(ds.groups[ds.texts_train.index(t)]) for t in tails}) == 1
    test_seqs = {tuple(([257] + list(t.encode()) + [258])[:32]) for t in ds.texts_test}
    assert not test_seqs & set(seqs)
    # per-example facts
    f = text_facts(ds)
    for r in range(0, ds.num_train, 5):
        assert f["duplicate_count"][r] == seqs.count(seqs[r])
        seen = bytes(ds.x_train[r, 1:ds.y_train[r]][ds.x_train[r, 1:ds.y_train[r]] < 256].tolist())
        assert f["zlib_entropy"][r] == len(zlib.compress(seen.decode("utf-8", "replace").encode()))
    planted = np.asarray(f["planted_count"])
    assert sorted(np.unique(planted).tolist()) == [0, 1, 2, 4] and (planted == 4).sum() == 12
    sc = np.asarray(f["secret_count"])
    assert (sc == 3).sum() == 6 and (sc == 1).sum() == 2
    assert all(ds.texts_train[r].startswith(X.SECRET_PREFIX) for r in np.flatnonzero(sc))
    refs = np.asarray(f["test_secret_index"])
    assert (refs <= -2).sum() == 20 and all(t.startswith(X.SECRET_PREFIX) for t in ds.texts_test[-20:])
    # deterministic
    again = build_dataset(cfg)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert again.texts_train == ds.texts_train


def test_text_sources_are_registered_and_errors_are_data_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXMEM_DATA", raising=False)
    for s in ("kjv", "austen", "python_text", "text:/x.txt"):
        sources.check_source(s)
        assert sources.is_text_source(s)
    assert not sources.is_text_source("digits")
    ds = load("python_text")
    assert isinstance(ds, TextData) and ds.meta["tokenizer"] == "bytes" and ds.x_train.shape[1] == 128
    with pytest.raises(DataError, match="data_dir is not set"):
        load("kjv")
    cfg = _cfg(tmp_path, ["a b", "c d"], "data.max_len=300")
    with pytest.raises(DataError, match="max_len"):
        build_dataset(cfg)
    cfg = _cfg(tmp_path, ["a b", "c d"], "data.text_test_fraction=0.0")
    with pytest.raises(DataError, match="empty test"):
        build_dataset(cfg)


def test_bpe_tokenizer_is_trained_on_the_training_texts(tmp_path, rng):
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    lines = _lines(rng, 300)
    cfg = _cfg(tmp_path, lines, "data.max_len=16", 'data.tokenizer="bpe"', "data.bpe_vocab_size=300",
               "data.plant_counts=[8]", "data.plant_per_count=1")
    ds = build_dataset(cfg)
    from jaxmem.data.tokenizers import from_config, train_bpe

    tok = from_config(ds.tokenizer)
    want = train_bpe(ds.texts_train[: ds.num_train - 7], 300)   # before the 7 planted copies
    assert tok.config() == want.config() and ds.num_classes == tok.vocab_size
    assert tok.decode(ds.x_train[0, 1:ds.y_train[0] - 1]) == ds.texts_train[0][: len(tok.decode(
        ds.x_train[0, 1:ds.y_train[0] - 1]))]


def test_text_offset_is_a_window_of_the_training_rows(tmp_path, rng):
    lines = _lines(rng, 120)
    whole = build_dataset(_cfg(tmp_path, lines, "data.max_len=16"))
    win = build_dataset(_cfg(tmp_path, lines, "data.max_len=16", "data.text_offset=30", "data.max_train=25"))
    np.testing.assert_array_equal(win.ids_train, whole.ids_train[30:55])
    np.testing.assert_array_equal(win.x_train, whole.x_train[30:55])
    np.testing.assert_array_equal(win.ids_test, whole.ids_test)


# ----------------------------------------------------------------------------- issue 21, item 3


def _hash_side(t, f):
    return int(hashlib.sha256(t.encode()).hexdigest()[:15], 16) / 16 ** 15 < f


def _twins(rng, L, f, rep_held):
    """Two texts equal in their first L - 1 bytes (so one sequence once cut to L byte tokens) whose
    own hashes fall on opposite sides, the smaller one's side being ``rep_held``."""
    while True:
        base = "omega " + " ".join(rng.choice(["alpha", "beta", "gamma", "delta"], size=L)) + str(rng.integers(1 << 30))
        a, b = base + " and one ending", base + " but another"
        if _hash_side(a, f) == rep_held and _hash_side(b, f) != rep_held:
            return a, b


@pytest.mark.parametrize("rep_held", [False, True])
def test_texts_equal_after_max_len_are_one_example(tmp_path, rng, rep_held):
    L, f = 24, 0.5
    a, b = _twins(rng, L, f, rep_held)
    assert a.encode()[: L - 1] == b.encode()[: L - 1] and a < b
    lines = _lines(rng, 60) + [b, a]
    ds = build_dataset(_cfg(tmp_path, lines, f"data.max_len={L}", f"data.text_test_fraction={f}"))
    if rep_held:
        assert a in ds.texts_test and b in ds.texts_test and b not in ds.texts_train
    else:
        ra, rb = ds.texts_train.index(a), ds.texts_train.index(b)
        np.testing.assert_array_equal(ds.x_train[ra], ds.x_train[rb])
        assert ds.groups[ra] == ds.groups[rb] and b not in ds.texts_test
        facts = text_facts(ds)
        assert facts["duplicate_count"][ra] == facts["duplicate_count"][rb] == 2
        assert facts["groups"][ra] == facts["groups"][rb]
        seqs = {tuple(([257] + list(t.encode()) + [258])[:L]) for t in ds.texts_train}
        assert ds.meta["num_groups"] == len(seqs) < len(set(ds.texts_train))
    held = text_split(lines, f, max_len=L)
    assert held[-1] == held[-2] == rep_held             # the side of the smaller text, a
    assert list(held) == _held_brute_force(lines, f, L)


def test_planting_draws_among_sequences_seen_once(tmp_path, rng):
    L, f = 16, 0.2
    lines = _lines(rng, 40)
    while True:   # 40 texts, one sequence at L = 16, on the training side
        stem = "gamma " + str(rng.integers(10 ** 12, 10 ** 13))
        twins = [f"{stem} and {k} more" for k in range(40)]
        if not _hash_side(min(twins), f):
            break
    cfg = _cfg(tmp_path, lines + twins, f"data.max_len={L}", f"data.text_test_fraction={f}",
               "data.plant_counts=[1,2]", "data.plant_per_count=10", "seed=3")
    ds = build_dataset(cfg)
    planted = np.asarray(text_facts(ds)["planted_count"])
    assert sum(t in twins for t in ds.texts_train) == 40
    assert not any(ds.texts_train[r] in twins for r in np.flatnonzero(planted))
    dup = np.asarray(text_facts(ds)["duplicate_count"])
    np.testing.assert_array_equal(dup[planted > 0], planted[planted > 0])


def test_bpe_groups_and_split_follow_the_token_sequences(tmp_path, rng):
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    L = 8
    stems = _lines(rng, 40)
    lines = [s + tail for s in stems for tail in ("", " alpha beta gamma", " delta 中 é")]
    rng.shuffle(lines)
    ds = build_dataset(_cfg(tmp_path, lines, f"data.max_len={L}", 'data.tokenizer="bpe"',
                            "data.bpe_vocab_size=300", "data.text_test_fraction=0.3"))
    rows = [tuple(ds.x_train[r, : ds.y_train[r]]) for r in range(ds.num_train)]
    for r in range(ds.num_train):
        assert set(np.flatnonzero(ds.groups == ds.groups[r])) == {q for q in range(ds.num_train) if rows[q] == rows[r]}
    assert len(set(rows)) < len(set(ds.texts_train))          # some texts are one sequence at L = 8
    test_rows = {tuple(ds.x_test[r, : ds.y_test[r]]) for r in range(ds.num_test)}
    assert not test_rows & set(rows)


@pytest.mark.parametrize("toml", ["lm_mia", "lm_memorization", "lm_scaling", "canary_exposure"])
def test_shipped_lm_quick_configs_have_no_test_sequence_in_training(toml):
    from helpers_text import shared_data_dir

    shared_data_dir("kjv_verses.tsv.gz")
    from pathlib import Path

    cfg = cfgmod.load_config(str(Path(__file__).resolve().parents[2] / "experiments" / f"{toml}.toml"), [])
    ds = build_dataset(cfg)
    rows = [ds.x_train[r, : ds.y_train[r]].tobytes() for r in range(ds.num_train)]
    test = {ds.x_test[r, : ds.y_test[r]].tobytes() for r in range(ds.num_test)}
    assert not test & set(rows)
    first = {}
    want = [first.setdefault(k, len(first)) for k in rows]
    np.testing.assert_array_equal(ds.groups, want)
    assert text_facts(ds)["duplicate_count"] == [rows.count(k) for k in rows]


def test_bpe_secrets_that_max_len_would_cut_are_refused_before_training(tmp_path, rng):
    """Issue 21, item 5 for a trained tokenizer (its secret lengths are known once it is trained):
    the data build refuses, naming data.max_len and the canary fields; a long enough max_len
    encodes every canary and reference whole (ending with EOS)."""
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    lines = _lines(rng, 200)
    sets = ('data.tokenizer="bpe"', "data.bpe_vocab_size=300", "data.canaries=2", 'data.canary_kind="secret"',
            "data.canary_counts=[1,2]", "data.canary_references=30")
    with pytest.raises(DataError, match=r"^data\.max_len: secret canaries \(data\.canaries = 2, .*data\.canary_references"
                                        r" = 30\) need up to \d+ bpe tokens") as e:
        build_dataset(_cfg(tmp_path, lines, "data.max_len=10", *sets))
    need = int(str(e.value).split("need up to ")[1].split()[0])
    assert 10 < need <= 28 and "\n" not in str(e.value)
    ds = build_dataset(_cfg(tmp_path, lines, f"data.max_len={need}", *sets))
    f = text_facts(ds)
    rows = np.flatnonzero(np.asarray(f["secret_index"]) >= 0)
    trows = np.flatnonzero(np.asarray(f["test_secret_index"]) <= -2)
    assert len(rows) == 6 and len(trows) == 30
    assert max(ds.y_train[rows].max(), ds.y_test[trows].max()) == need
    assert all(ds.x_train[r, ds.y_train[r] - 1] == 2 for r in rows)          # EOS: nothing was cut
    assert all(ds.x_test[r, ds.y_test[r] - 1] == 2 for r in trows)
    with pytest.raises(DataError, match=r"^data\.max_len: secret canaries"):
        build_dataset(_cfg(tmp_path, lines, f"data.max_len={need - 1}", *sets))


def test_bpe_run_trains_on_a_literal_eos_as_text(tmp_path, rng):
    """Issue 21, item 7 in a run's data: a text holding "[EOS]" has its EOS only at its end, and its
    zlib entropy is that of the text itself."""
    pytest.importorskip("tokenizers", reason="the optional 'tokenizers' package (jaxmem[text]) is not installed")
    lines = _lines(rng, 120)
    lines[::7] = [t + " [EOS] " + t[::-1] + " [PAD]" for t in lines[::7]]
    ds = build_dataset(_cfg(tmp_path, lines, "data.max_len=128", 'data.tokenizer="bpe"', "data.bpe_vocab_size=300"))
    f = text_facts(ds)
    tok_eos = 2
    hits = [r for r, t in enumerate(ds.texts_train) if "[EOS]" in t]
    assert hits
    for r in range(ds.num_train):
        row = ds.x_train[r, : ds.y_train[r]]
        assert row[-1] == tok_eos and (row[1:-1] > 2).all()
        assert f["zlib_entropy"][r] == len(zlib.compress(ds.texts_train[r].encode()))


def test_text_facts_group_the_held_out_copies(tmp_path, rng):
    """A held-out text and its copies are one test text (`test_groups`, what an LM run's
    test_nll averages over), by brute force over the token rows the model sees."""
    lines = _lines(rng, 200)
    lines += [lines[k] for k in range(0, 200, 7) for _ in range(3)]    # copies, held out or not
    cfg = _cfg(tmp_path, lines, "data.max_len=24", "data.text_test_fraction=0.3", "seed=3")
    ds = build_dataset(cfg)
    tg = np.asarray(text_facts(ds)["test_groups"])
    rows = [tuple(ds.x_test[i, : ds.y_test[i]]) for i in range(len(ds.y_test))]
    first = {}
    want = [first.setdefault(r, len(first)) for r in rows]
    np.testing.assert_array_equal(tg, want)
    assert len(first) < len(rows)          # the corpus does hold held-out copies
