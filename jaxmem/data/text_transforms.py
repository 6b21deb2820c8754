"""Text transforms and per-text facts for language-model runs: fixed-length encoding,
duplicate counts and groups, zlib entropy, planted duplicates (Kandpal et al. 2022) and
secret canaries (Carlini et al. 2019), each recorded so that every added row is traceable.

* :func:`encode` builds ``[N, L]`` int32 sequences ``BOS + text + EOS`` (truncated or padded,
  with a bool mask);
* :func:`duplicate_counts`, :func:`text_groups`: the natural duplicate count of each text and
  a group index shared by identical texts (membership designs keep a group together); a run
  applies them to :func:`sequence_keys`, the token sequences its model sees;
* :func:`zlib_entropy` of each text (Carlini et al. 2021);
* :func:`plant_duplicates` adds copies of chosen examples at controlled counts;
  :func:`planted_counts` reads them back;
* :func:`insert_secrets` adds random secrets ``"my secret number is DDDDDD"`` at controlled
  counts and draws the reference secrets that exposure ranks them among; :func:`secret_rows`
  reads them back.

numpy and the standard library only.
"""

from __future__ import annotations

import collections
import copy
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxmem.data.text import TextDataError, TextDataset
from jaxmem.data.tokenizers import ByteTokenizer

__all__ = ["Encoded", "encode", "duplicate_counts", "text_groups", "sequence_keys", "zlib_entropy",
           "plant_duplicates", "planted_counts", "insert_secrets", "secret_rows", "SECRET_PREFIX",
           "SECRET_DIGITS", "SECRET_BYTES"]

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
    if tokenizer is None:
        tokenizer = ByteTokenizer()
    tok = tokenizer
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


def duplicate_counts(texts: Sequence | TextDataset) -> np.ndarray:
    """int64 [N]: how many of the N items equal each item exactly (1 = unique), planted copies
    included. The items are texts, or any hashable identity such as :func:`sequence_keys` (a
    run counts the sequences its model sees, so texts equal after truncation are copies). KJV:
    31,102 verses, 119 distinct texts occur more than once, the most frequent ("And the LORD spake
    unto Moses, saying,") 72 times."""
    texts = texts.texts if isinstance(texts, TextDataset) else texts
    c = collections.Counter(texts)
    return np.array([c[t] for t in texts], np.int64)


def text_groups(texts: Sequence | TextDataset) -> np.ndarray:
    """int64 [N]: for each item, the position of the first item equal to it (a group index for
    designs that keep exact duplicates in or out of a model together). Items are texts or any
    hashable identity such as :func:`sequence_keys`."""
    texts = texts.texts if isinstance(texts, TextDataset) else texts
    first: dict = {}
    return np.array([first.setdefault(t, i) for i, t in enumerate(texts)], np.int64)


def sequence_keys(tokens, lengths) -> list[bytes]:
    """The identity of each encoded sequence, the tokens a model sees: the bytes of its first
    ``lengths[i]`` token ids (int32). Two texts equal after truncation to ``max_len`` (or
    that tokenize alike) get the same key; a cut sequence and a whole one differ (the whole one
    ends with EOS, and its length differs).

    Args:
      tokens: int [N, L], as :func:`encode` returns them.
      lengths: int [N], the number of real tokens of each row (``mask.sum(1)``).

    Returns:
      N ``bytes`` keys (hashable; compare and hash them, do not pass them through a fixed-width
      numpy string array, which drops trailing zero bytes).
    """
    tokens = np.asarray(tokens, np.int32)
    return [tokens[i, : int(n)].tobytes() for i, n in enumerate(np.asarray(lengths))]


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
    keys: Sequence | None = None,
) -> TextDataset:
    """Plant exact duplicates at controlled counts (Kandpal et al. 2022; Lee et al. 2022).

    For each count c in ``counts``, ``per_count`` examples are drawn (without replacement across
    all counts, uniformly, with ``numpy.random.default_rng(seed)``) and c − 1 copies of each are
    appended, so that each chosen text occurs c times in the result (c = 1 is the untouched
    control group, drawn the same way). With ``only_unique`` the examples are drawn among texts
    that occur once, so the planted count is the text's whole count; ``keys`` (one hashable per
    row, e.g. :func:`sequence_keys` of the encoded texts) says what "the same" means, by default
    the text itself (a run passes the sequences its model sees: a text whose truncated sequence
    equals another's is not unique).

    Copies get new ids (after ``meta["next_id"]``) and ``source_ids`` = the chosen row's id; their
    ``columns`` repeat the source's. The transform is recorded in ``meta["transforms"]`` as
    ``{"name": "plant_duplicates", "seed", "counts", "per_count", "only_unique",
    "source_ids": [[...] per count], "copy_ids": [[[...] per source] per count]}``.

    Membership designs should treat a text and its copies as one group (all in or all out of a
    model: ``source_ids`` is the group), otherwise a model almost always sees some copy.

    Raises:
      TextDataError: a count < 1, repeated counts, per_count < 0, too few eligible examples, or
        ``keys`` of the wrong length.
    """
    counts = [int(c) for c in counts]
    if any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise TextDataError(f"plant_duplicates counts must be distinct integers >= 1, got {counts}")
    if per_count < 0:
        raise TextDataError(f"plant_duplicates per_count must be >= 0, got {per_count}")
    eligible = np.flatnonzero(ds.source_ids == ds.ids)  # never copy a copy
    if keys is not None and len(keys) != len(ds):
        raise TextDataError(f"plant_duplicates keys must have one entry per text ({len(ds)}), got {len(keys)}")
    if only_unique:
        eligible = eligible[duplicate_counts(ds if keys is None else list(keys))[eligible] == 1]
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


# ----------------------------------------------------------------------------- secret canaries

SECRET_PREFIX = "my secret number is "
SECRET_DIGITS = 6
#: UTF-8 bytes of a secret canary's text (the byte tokenizer's token count, an upper bound for
#: the BPE tokenizers, whose tokens are at least one byte each)
SECRET_BYTES = len(SECRET_PREFIX.encode("utf-8")) + SECRET_DIGITS


def _draw_secrets(rng: np.random.Generator, k: int, taken: set) -> list[str]:
    out = []
    while len(out) < k:
        s = "".join(str(d) for d in rng.integers(0, 10, SECRET_DIGITS))
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def insert_secrets(ds: TextDataset, counts: Sequence[int] = (1, 2, 4, 8, 16), *, per_count: int,
                   num_references: int, seed: int) -> tuple[TextDataset, TextDataset]:
    """Insert secret canaries (Carlini et al. 2019, "The secret sharer", Sec. 3): for each count
    c in ``counts``, ``per_count`` random 6-digit secrets, each added c times as the text
    ``SECRET_PREFIX + secret`` (rows appended with new ids; all copies of a secret share the
    first copy's id as ``source_ids``); plus ``num_references`` further random secrets, distinct
    from the canaries and from each other, that no model trains on: exposure ranks a canary's
    log-perplexity among theirs (Def. 4; :func:`jaxmem.estimators.exposure_rank`).

    Secrets are drawn with ``numpy.random.default_rng(seed)``, canaries first (count by count),
    then references. Returns ``(train, references)``: ``ds`` with the canaries, and the
    references as a TextDataset whose ids continue after the canaries'. The transform is
    recorded in ``train.meta["transforms"]`` as ``{"name": "insert_secrets", "seed", "counts",
    "per_count", "prefix", "secrets": [[...] per count], "ids": [[[ids of its copies] per
    secret] per count], "reference_ids", "reference_secrets"}``; :func:`secret_rows` reads it.

    Raises:
      TextDataError: a count < 1, repeated counts, per_count < 1 or num_references < 1.
    """
    counts = [int(c) for c in counts]
    if any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise TextDataError(f"insert_secrets counts must be distinct integers >= 1, got {counts}")
    if per_count < 1 or num_references < 1:
        raise TextDataError(f"insert_secrets needs per_count >= 1 and num_references >= 1, got "
                            f"{per_count} and {num_references}")
    rng = np.random.default_rng(seed)
    taken: set = set()
    secrets = [_draw_secrets(rng, per_count, taken) for _ in counts]
    refs = _draw_secrets(rng, int(num_references), taken)
    next_id = max(int(ds.meta.get("next_id", 0)), int(ds.ids.max()) + 1 if len(ds) else 0)
    texts, ids, src, rec_ids = [], [], [], []
    for c, group in zip(counts, secrets):
        per = []
        for s in group:
            new = list(range(next_id, next_id + c))
            next_id += c
            texts += [SECRET_PREFIX + s] * c
            ids += new
            src += [new[0]] * c
            per.append(new)
        rec_ids.append(per)
    ref_ids = np.arange(next_id, next_id + len(refs), dtype=np.int64)
    meta = copy.deepcopy(ds.meta)
    meta["next_id"] = int(ref_ids[-1]) + 1
    meta.setdefault("transforms", []).append({
        "name": "insert_secrets", "seed": int(seed), "counts": counts, "per_count": int(per_count),
        "prefix": SECRET_PREFIX, "secrets": secrets, "ids": rec_ids,
        "reference_ids": ref_ids.tolist(), "reference_secrets": refs})
    n = len(texts)
    cols = {k: np.concatenate([v, np.full(n, "" if v.dtype == object else 0, v.dtype)])
            for k, v in ds.columns.items()}
    train = TextDataset(ds.name, ds.texts + tuple(texts), np.concatenate([ds.ids, np.asarray(ids, np.int64)]),
                        np.concatenate([ds.source_ids, np.asarray(src, np.int64)]), cols, meta)
    references = TextDataset(f"{ds.name}:secret_references", tuple(SECRET_PREFIX + s for s in refs),
                             ref_ids, ref_ids.copy(), {}, {"next_id": meta["next_id"], "transforms": []})
    return train, references


def secret_rows(ids, transforms) -> tuple[np.ndarray, np.ndarray]:
    """Which rows are secrets, from the ``insert_secrets`` records in ``transforms`` (a
    dataset's ``meta["transforms"]``), for the rows with these ``ids``: ``(count, secret)``, int64
    [N] each. Canary rows: ``count`` = its insertion count c >= 1, ``secret`` = the index j >= 0 of
    its secret (secrets numbered count by count as they were drawn). Reference rows: ``count``
    = 0, ``secret`` = -2 - r (r = the reference's index). Other rows: 0 and -1."""
    ids = np.asarray(ids, np.int64)
    count = np.zeros(len(ids), np.int64)
    secret = np.full(len(ids), -1, np.int64)
    pos = {int(i): r for r, i in enumerate(ids)}
    for t in transforms:
        if t["name"] != "insert_secrets":
            continue
        j = 0
        for c, per in zip(t["counts"], t["ids"]):
            for copies in per:
                for i in copies:
                    if int(i) in pos:
                        count[pos[int(i)]], secret[pos[int(i)]] = c, j
                j += 1
        for r, i in enumerate(t["reference_ids"]):
            if int(i) in pos:
                secret[pos[int(i)]] = -2 - r
    return count, secret
