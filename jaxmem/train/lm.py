"""Character-level language models with inserted canaries (Carlini et al. 2019, "The secret sharer").

A small causal transformer (``jaxmem.models.Transformer(causal_lm=True)``) is trained on a text
that ships with Python (the Zen of Python, ``this.py``, decoded, followed by the interpreter's
``LICENSE.txt`` when present), into which random secrets ``"my secret number is DDDDDD"`` have
been inserted 1…k times each. Exposure (Def. 4) ranks each canary's log-perplexity among
``R`` random secrets of the same format; ``jaxmem.estimators.exposure_rank/exposure_skewnorm``
turn the losses into bits.

Everything here is small and CPU-friendly: one jitted optax step, random windows of the corpus.
"""

from __future__ import annotations

import codecs
import hashlib
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["corpus", "Canaries", "make_canaries", "insert_canaries", "Vocab", "train_lm",
           "sequence_losses", "secret_losses"]

PREFIX = "my secret number is "
DIGITS = 6


def corpus(max_chars: int = 20000) -> tuple[str, dict]:
    """An offline text corpus: the Zen of Python (``this.s`` rot13-decoded) + Python's LICENSE.txt.

    Returns ``(text, meta)`` with the sources and a sha256 of the text (the license text depends
    on the installed Python version, so runs record which text they used).
    """
    import contextlib
    import importlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):   # `this` prints the Zen on first import
        importlib.import_module("this")

    parts, sources = [codecs.decode(sys.modules["this"].s, "rot13")], ["this.py (Zen of Python)"]
    lic = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "LICENSE.txt"
    if lic.is_file():
        parts.append(lic.read_text(errors="ignore"))
        sources.append(str(lic))
    text = "\n".join(parts)
    text = "".join(c for c in text if c == "\n" or 32 <= ord(c) < 127)[:max_chars]
    meta = {"sources": sources, "chars": len(text),
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return text, meta


class Canaries(NamedTuple):
    secrets: list          # [K] digit strings
    repetitions: np.ndarray  # [K] how many times each is inserted


def make_canaries(seed: int, repetitions, per_level: int = 2) -> Canaries:
    """``per_level`` random 6-digit secrets for each repetition count."""
    rng = np.random.default_rng(seed)
    reps = np.repeat(np.asarray(repetitions, np.int64), per_level)
    secrets = ["".join(map(str, rng.integers(0, 10, DIGITS))) for _ in reps]
    return Canaries(secrets, reps)


def insert_canaries(text: str, canaries: Canaries, seed: int) -> str:
    """Insert each canary line ``PREFIX + secret`` ``repetitions`` times at random line breaks."""
    rng = np.random.default_rng(seed + 1)
    lines = text.split("\n")
    extra = [PREFIX + s for s, r in zip(canaries.secrets, canaries.repetitions) for _ in range(r)]
    pos = np.sort(rng.integers(0, len(lines) + 1, len(extra)))
    order = rng.permutation(len(extra))
    out, j = [], 0
    for i, line in enumerate(lines + [None]):
        while j < len(pos) and pos[j] == i:
            out.append(extra[order[j]])
            j += 1
        if line is not None:
            out.append(line)
    return "\n".join(out)


class Vocab(NamedTuple):
    chars: str

    @staticmethod
    def of(text: str) -> Vocab:
        return Vocab("".join(sorted(set(text) | set("0123456789"))))

    def encode(self, s: str) -> np.ndarray:
        table = {c: i for i, c in enumerate(self.chars)}
        return np.array([table[c] for c in s], np.int32)


def _model(vocab_size, context, model_cfg):
    from jaxmem.models import get_model

    return get_model("transformer", vocab_size, vocab_size=vocab_size, max_len=context,
                     causal_lm=True, d_model=model_cfg.d_model, num_layers=model_cfg.num_layers,
                     num_heads=model_cfg.num_heads)


def train_lm(tokens: np.ndarray, vocab_size: int, model_cfg, *, steps: int, batch_size: int = 32,
             context: int = 64, learning_rate: float = 3e-3, seed: int = 0, log_every: int = 0,
             log=print):
    """Train a causal char transformer with Adam on random windows of ``tokens``.

    Returns ``(model, params, losses)`` with the training loss of every step.
    """
    model = _model(vocab_size, context, model_cfg)
    key = jax.random.key(seed)
    params = jax.jit(model.init)(key, jnp.zeros((1, context), jnp.int32))["params"]
    sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(1, steps // 20), steps)
    tx = optax.adam(sched)
    opt = tx.init(params)
    data = jnp.asarray(tokens)
    n_starts = len(tokens) - context - 1

    @jax.jit
    def step(params, opt, t):
        k = jax.random.fold_in(jax.random.fold_in(key, 1), t)
        starts = jax.random.randint(k, (batch_size,), 0, n_starts)
        idx = starts[:, None] + jnp.arange(context + 1)[None]
        win = data[idx]

        def loss_fn(p):
            logits = model.apply({"params": p}, win[:, :-1])
            return optax.softmax_cross_entropy_with_integer_labels(logits, win[:, 1:]).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    losses = np.zeros(steps, np.float32)
    for t in range(steps):
        params, opt, loss = step(params, opt, t)
        losses[t] = loss
        if log_every and (t + 1) % log_every == 0:
            log(f"  lm step {t + 1}/{steps}  loss {float(loss):.3f}")
    return model, params, losses


def sequence_losses(model, params, prefix: np.ndarray, targets: np.ndarray, batch: int = 512):
    """Negative log-likelihood (nats) of each row of ``targets`` [R, T] after ``prefix`` [P]:
    −Σ_t log p(target_t | prefix, target_<t), the canary's log-perplexity of Carlini et al."""
    prefix = np.asarray(prefix, np.int32)
    targets = np.asarray(targets, np.int32)
    R, T = targets.shape
    P = len(prefix)

    @jax.jit
    def nll(rows):
        seq = jnp.concatenate([jnp.broadcast_to(prefix, (rows.shape[0], P)), rows], 1)
        logits = model.apply({"params": params}, seq[:, :-1])[:, P - 1:]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
        return -jnp.take_along_axis(logp, rows[..., None], -1)[..., 0].sum(-1)

    out = []
    for s in range(0, R, batch):
        rows = targets[s: s + batch]
        pad = batch - len(rows) if R > batch else 0
        rows_p = np.concatenate([rows, np.repeat(rows[-1:], pad, 0)]) if pad else rows
        out.append(np.asarray(nll(jnp.asarray(rows_p)))[: len(rows)])
    return np.concatenate(out).astype(np.float64)


def secret_losses(model, params, vocab: Vocab, secrets, *, num_references: int, seed: int):
    """Log-perplexity of each secret and of ``num_references`` random secrets (same for all).

    Returns ``(canary_loss [K], reference_losses [R])``; the references exclude the canaries.
    """
    rng = np.random.default_rng(seed + 2)
    taken = set(secrets)
    refs = []
    while len(refs) < num_references:
        s = "".join(map(str, rng.integers(0, 10, DIGITS)))
        if s not in taken:
            refs.append(s)
            taken.add(s)
    prefix = vocab.encode("\n" + PREFIX)
    enc = lambda ss: np.stack([vocab.encode(s) for s in ss])
    return (sequence_losses(model, params, prefix, enc(secrets)),
            sequence_losses(model, params, prefix, enc(refs)))
