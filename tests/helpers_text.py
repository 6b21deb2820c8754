"""Helpers of the language-model tests: random texts and where the shared corpora are."""

from shared_data import SHARED_DATA, shared_data

ALPHABET = list("ab c,.\"'\t") + ["é", "ß", "中", "😀", "\u200b"]


def random_text(rng, alphabet, max_len):
    return "".join(rng.choice(alphabet, size=int(rng.integers(0, max_len + 1))))


def shared_data_dir(filename):
    """The shared data folder; skip (FAIL when CI=true) when the file is not there."""
    shared_data(f"text/{filename}")
    return str(SHARED_DATA)
