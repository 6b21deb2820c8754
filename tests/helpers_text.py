"""Helpers of the language-model tests: random texts and where the shared corpora are."""

import numpy as np
from shared_data import SHARED_DATA, shared_data

ALPHABET = list("ab c,.\"'\t") + ["é", "ß", "中", "😀", "\u200b"]


def random_text(rng, alphabet, max_len):
    return "".join(rng.choice(alphabet, size=int(rng.integers(0, max_len + 1))))


def shared_data_dir(filename):
    """The shared data folder; skip (FAIL when CI=true) when the file is not there."""
    shared_data(f"text/{filename}")
    return str(SHARED_DATA)


def float64_signals(z, tok, n):
    """Per-token logp, mu, sigma, correct and the NLL of one sequence from its logits, by loops."""
    z = np.asarray(z, np.float64)
    T = z.shape[0] - 1
    out = {k: np.full(T, np.nan) for k in ("logp", "mu", "sigma", "correct")}
    for t in range(T):
        if t + 1 < n:
            lq = z[t] - z[t].max()
            lq -= np.log(np.exp(lq).sum())
            p = np.exp(lq)
            out["logp"][t] = lq[tok[t + 1]]
            out["mu"][t] = (p * lq).sum()
            out["sigma"][t] = np.sqrt((p * (lq - out["mu"][t]) ** 2).sum())
            out["correct"][t] = float(np.argmax(z[t]) == tok[t + 1])
    return out, -np.nanmean(out["logp"])
