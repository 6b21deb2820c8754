"""A language-model run's data from its config: a text source, split, transformed, tokenized and
encoded into a :class:`TextData` (a :class:`~jaxmem.data.dataset.Dataset` of token sequences).

Steps, in a fixed order (:func:`build_text_dataset`):

1. read the corpus (:func:`jaxmem.data.text.load_text`: ``kjv``, ``austen``, ``python_text``,
   ``text:PATH``);
2. split: a text is held out (test) when ``sha256(text)`` falls in the first
   ``data.text_test_fraction`` of the hash range, so every copy of a text lands on the same side
   and the split does not depend on the file's order (the test fraction is met in expectation).
   Texts whose first ``data.max_len - 1`` UTF-8 bytes agree may be the same sequence once cut to
   ``data.max_len`` tokens (BOS + text, every token at least one byte), so they all take the side
   of the smallest of them (:func:`text_split`): no held-out sequence is a training sequence;
3. ``data.max_train`` / ``data.max_test``: the first rows of each split, in file order (the
   training rows after skipping ``data.text_offset`` of them: a window of the corpus);
4. planted duplicates (``data.plant_counts``, ``data.plant_per_count``;
   :func:`~jaxmem.data.text_transforms.plant_duplicates`, seed = the run's seed, drawn among the
   texts whose encoded sequence occurs once), then secret
   canaries (``data.canaries`` per count of ``data.canary_counts`` with
   ``data.canary_kind = "secret"``; :func:`~jaxmem.data.text_transforms.insert_secrets`): the
   canaries join the training set, their ``data.canary_references`` reference secrets the test set;
5. the tokenizer (``data.tokenizer``: ``bytes``; ``bpe`` trained on the training texts of step 3,
   before planting; ``gpt2``) and :func:`~jaxmem.data.text_transforms.encode` at
   ``data.max_len``; a secret canary or reference that would be cut is refused (DataError).

Representation. ``x`` holds the sequences ``BOS + text + EOS`` (int32 ``[N, L]``, padded with
the tokenizer's pad id), ``y`` each sequence's number of real tokens (int32, 2..L: the mask is
``arange(L) < y``; a text cut at L tokens has no EOS), ``num_classes`` the vocabulary size (a
next-token model classifies over the vocabulary). :class:`TextData` adds the texts, each training
text's ``source_ids`` and ``groups`` (one group per distinct sequence the model sees: identical
texts, and texts equal once cut to ``data.max_len`` tokens, share a group; membership designs
keep a group IN or OUT together and it is one example), and the tokenizer's record.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from jaxmem.config import Config, DataConfig
from jaxmem.data import text_transforms as X
from jaxmem.data.dataset import DataError, Dataset, make_dataset
from jaxmem.data.pretrained import pretrained_tokenizer
from jaxmem.data.text import TextDataError, TextDataset, load_text
from jaxmem.data.tokenizers import from_config, get_tokenizer

__all__ = ["TextData", "build_text_dataset", "load_text_dataset", "text_split", "text_facts"]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TextData(Dataset):
    """Token sequences of a text corpus (see the module docstring for ``x``, ``y``, ``num_classes``).

    Extra fields: ``texts_train`` / ``texts_test`` (tuples of str, row order), ``source_ids``
    (int64 [N]: the id of the row each training text was copied from; its own id otherwise),
    ``groups`` (int64 [N] in [0, G), numbered in order of first appearance: training rows whose
    token sequences, :func:`~jaxmem.data.text_transforms.sequence_keys`, are equal share a
    group), ``tokenizer``
    (the tokenizer's ``config()`` record)."""

    texts_train: tuple = ()
    texts_test: tuple = ()
    source_ids: np.ndarray | None = None
    groups: np.ndarray | None = None
    tokenizer: dict = dataclasses.field(default_factory=dict)

    @property
    def mask_train(self) -> np.ndarray:
        return np.arange(self.x_train.shape[1])[None] < self.y_train[:, None]

    @property
    def mask_test(self) -> np.ndarray:
        return np.arange(self.x_test.shape[1])[None] < self.y_test[:, None]


def text_split(texts, fraction: float, *, max_len: int | None = None) -> np.ndarray:
    """bool [N]: held-out texts, those whose ``sha256(text)`` (first 60 bits, as a fraction of
    2^60) is below ``fraction``. Identical texts always agree.

    Args:
      texts: the corpus's texts.
      fraction: the held-out fraction, in [0, 1).
      max_len: the encoded length (BOS + text + EOS, cut to ``max_len`` tokens). When given, texts
        whose first ``max_len - 1`` UTF-8 bytes agree all take the side of the smallest of them
        (in string order), hashed as above. A model sees at most ``max_len - 1`` text tokens of at
        least one byte each, so two texts with the same sequence under any tokenizer agree on
        those bytes and land on the same side (for the byte tokenizer the classes are exactly the
        sequences). A text alone in its class keeps its own hash's side.

    Returns:
      bool [N], True = held out.
    """
    texts = list(texts)
    rep = texts
    if max_len is not None:
        cut = max(int(max_len) - 1, 0)
        first: dict = {}
        for t in sorted(set(texts)):
            first.setdefault(t.encode("utf-8")[:cut], t)
        rep = [first[t.encode("utf-8")[:cut]] for t in texts]
    keys = np.array([int(hashlib.sha256(t.encode("utf-8")).hexdigest()[:15], 16) for t in rep],
                    dtype=np.float64)
    return keys / float(16 ** 15) < fraction


def _rows(ds: TextDataset, rows) -> TextDataset:
    rows = np.asarray(rows, np.int64)
    return TextDataset(ds.name, tuple(ds.texts[r] for r in rows), ds.ids[rows], ds.source_ids[rows],
                       {k: v[rows] for k, v in ds.columns.items()}, ds.meta)


def _tokenizer(d, texts, checkpoint=""):
    if d.tokenizer == "pretrained":   # the pretrained model's own (model.checkpoint)
        return pretrained_tokenizer(checkpoint)
    if d.tokenizer == "bpe":
        return get_tokenizer("bpe", texts, vocab_size=d.bpe_vocab_size)
    return get_tokenizer(d.tokenizer)


def build_text_dataset(cfg) -> TextData:
    """The run's text data (module docstring). ``cfg``: a run config with a text ``data.source``.

    Raises:
      DataError: the corpus is missing or malformed, a transform's arguments are invalid, a split
        is empty, ``data.max_len`` is not below the vocabulary size or would cut a secret canary
        or reference, or a held-out sequence equals a training sequence.
    """
    d = cfg.data
    try:
        full = load_text(d.source, data_dir=d.data_dir, column=d.text_column)
        test = text_split(full.texts, d.text_test_fraction, max_len=d.max_len)
        tr, te = np.flatnonzero(~test), np.flatnonzero(test)
        tr = tr[d.text_offset:]
        tr, te = tr[: d.max_train or None], te[: d.max_test or None]
        train, held = _rows(full, tr), _rows(full, te)
        tok = _tokenizer(d, train.texts, getattr(cfg.model, "checkpoint", ""))
        if d.max_len >= tok.vocab_size:
            raise DataError(f"data.max_len: must be below the vocabulary size {tok.vocab_size} "
                            f"(sequence lengths are stored as labels), got {d.max_len}")
        if d.plant_per_count:   # "unique" = a sequence the model sees once (not merely a text)
            e = X.encode(train.texts, tok, d.max_len)
            train = X.plant_duplicates(train, d.plant_counts, per_count=d.plant_per_count, seed=cfg.seed,
                                       keys=X.sequence_keys(e.tokens, e.mask.sum(1)))
        if d.canaries:
            train, refs = X.insert_secrets(train, d.canary_counts, per_count=d.canaries,
                                           num_references=d.canary_references, seed=cfg.seed)
            held = TextDataset(held.name, held.texts + refs.texts, np.concatenate([held.ids, refs.ids]),
                               np.concatenate([held.source_ids, refs.source_ids]), {}, held.meta)
        etr, ete = X.encode(train.texts, tok, d.max_len), X.encode(held.texts, tok, d.max_len)
    except TextDataError as e:
        raise DataError(str(e)) from None
    if d.canaries:
        _check_secrets_whole(d, tok, train, held, etr, ete)
    keys_tr = X.sequence_keys(etr.tokens, etr.mask.sum(1))
    groups = np.unique(X.text_groups(keys_tr), return_inverse=True)[1].astype(np.int64)
    seen = set(keys_tr)
    both = sum(k in seen for k in X.sequence_keys(ete.tokens, ete.mask.sum(1)))
    if both:   # the split keeps natural texts apart; a corpus text equal to a secret would do it
        raise DataError(f"data.source: {both} held-out sequence(s) equal a training sequence at "
                        f"data.max_len = {d.max_len} (a text of the corpus equals a secret canary?)")
    meta = {k: v for k, v in train.meta.items() if k not in ("transforms", "next_id")}
    meta.update(source=d.source, origin="jaxmem.data.text_build", kind="text",
                tokenizer=tok.name, vocab_size=int(tok.vocab_size), max_len=int(d.max_len),
                text_test_fraction=float(d.text_test_fraction), max_train=d.max_train,
                max_test=d.max_test, text_offset=d.text_offset, truncated_train=etr.num_truncated,
                truncated_test=ete.num_truncated, num_groups=int(groups.max(initial=-1) + 1))
    ds = make_dataset(d.source, etr.tokens, etr.mask.sum(1, dtype=np.int32), train.ids, ete.tokens,
                      ete.mask.sum(1, dtype=np.int32), held.ids, tok.vocab_size, meta)
    ds.meta["transforms"] = list(train.meta.get("transforms", []))
    ds.meta["next_id"] = max(ds.meta["next_id"], int(train.meta.get("next_id", 0)))
    return TextData(**{f.name: getattr(ds, f.name) for f in dataclasses.fields(Dataset)},
                    texts_train=train.texts, texts_test=held.texts, source_ids=train.source_ids,
                    groups=groups, tokenizer=tok.config())


def _check_secrets_whole(d, tok, train, held, etr, ete) -> None:
    """Every secret canary and reference must be encoded whole (BOS + text + EOS within
    ``data.max_len``): a cut secret is scored on digits the model never saw."""
    tf = train.meta.get("transforms", [])
    rows_tr = np.flatnonzero(X.secret_rows(train.ids, tf)[1] != -1)
    rows_te = np.flatnonzero(X.secret_rows(held.ids, tf)[1] != -1)
    need = int(max(etr.lengths[rows_tr].max(initial=0), ete.lengths[rows_te].max(initial=0)))
    if need > d.max_len:
        raise DataError(
            f"data.max_len: secret canaries (data.canaries = {d.canaries}, data.canary_kind = \"secret\", "
            f"data.canary_references = {d.canary_references}) need up to {need} {tok.name} tokens with "
            f"BOS and EOS; data.max_len = {d.max_len} would cut their digits (raise it to >= {need})")


def load_text_dataset(source: str, data_dir=None) -> TextData:
    """A text source with the default settings (bytes, ``max_len`` 128, 5% held out): what
    :func:`jaxmem.data.load` returns for ``kjv``, ``austen``, ``python_text`` and ``text:PATH``."""
    return build_text_dataset(Config(data=DataConfig(source=source, data_dir=data_dir)))


def text_facts(ds: TextData) -> dict:
    """Per-training-example facts a run stores (JSON-ready lists, row order): ``duplicate_count``
    (occurrences of the row's sequence, its group, among the training sequences: texts equal
    once cut to ``max_len`` tokens are copies), ``planted_count`` (0 = not planted),
    ``secret_count`` / ``secret_index`` (:func:`~jaxmem.data.text_transforms.secret_rows`),
    ``zlib_entropy`` (bytes) of the text each sequence holds (decoded from its real tokens, so a
    cut sequence is measured as cut), ``groups`` and ``source_ids``; ``test_groups`` (one id per
    distinct held-out sequence: a repeated held-out verse is one text there too); and the texts
    of both splits."""
    tok = from_config(ds.tokenizer)
    seen = [tok.decode(ds.x_train[i, : ds.y_train[i]]) for i in range(ds.num_train)]
    tds = TextDataset(ds.name, ds.texts_train, ds.ids_train, ds.source_ids, {},
                      {"transforms": ds.meta.get("transforms", [])})
    count, which = X.secret_rows(ds.ids_train, ds.meta.get("transforms", []))
    twhich = X.secret_rows(ds.ids_test, ds.meta.get("transforms", []))[1]
    groups = np.asarray(ds.groups, np.int64)
    keys_te = X.sequence_keys(ds.x_test, ds.y_test)
    test_groups = np.unique(X.text_groups(keys_te), return_inverse=True)[1].astype(np.int64)
    return {"duplicate_count": np.bincount(groups, minlength=1)[groups].tolist(),
            "planted_count": X.planted_counts(tds).tolist(),
            "secret_count": count.tolist(), "secret_index": which.tolist(),
            "test_secret_index": twhich.tolist(),
            "zlib_entropy": X.zlib_entropy(seen).tolist(),
            "groups": np.asarray(ds.groups).tolist(), "test_groups": test_groups.tolist(),
            "source_ids": np.asarray(ds.source_ids).tolist(),
            "texts_train": list(ds.texts_train), "texts_test": list(ds.texts_test),
            "tokenizer": ds.tokenizer}
