"""Can memorization be localized? After Maini et al. (2023), on the stack's own MLPs, with the
memorized and typical examples chosen by the stack's Feldman–Zhang scores (which Maini et al.
could only approximate by mislabeled examples): per layer, accuracy on the memorized vs typical
training examples after **rewinding** the layer to an early checkpoint and after **retraining**
it from there without the memorized examples; and the fewest hidden neurons whose ablation
(greedy, by gradient × activation) flips a memorized vs a typical example's prediction."""

from __future__ import annotations

import math

import numpy as np

from jaxmem.analyses.augmentation import mean_interval
from jaxmem.analyses.common import figure, memorization_of, run_signals, write_csv


def _retrain_layer(layers, index, x, y, steps, lr, seed):
    """Layer ``index`` trained alone (full batch, Adam) on (x, y); the others frozen."""
    import jax
    import optax

    from jaxmem.estimators.localization import mlp_forward

    tx = optax.adam(lr)
    W = layers[index]
    st = tx.init(W)

    def loss(w):
        ls = [w if i == index else lay for i, lay in enumerate(layers)]
        return optax.softmax_cross_entropy_with_integer_labels(mlp_forward(ls, x), y).mean()

    @jax.jit
    def step(w, st):
        g = jax.grad(loss)(w)
        u, st = tx.update(g, st, w)
        return optax.apply_updates(w, u), st

    for _ in range(steps):
        W, st = step(W, st)
    del seed
    return [W if i == index else lay for i, lay in enumerate(layers)]


def analyze(cfg, workdir, runs, log, num_models: int = 4, rewind_epoch: int = 1,
            memorized_above: float = 0.5, typical_below: float = 0.05, max_examples: int = 64,
            max_neurons: int = 64, retrain_steps: int = 200, retrain_lr: float = 1e-3):
    """Retrains the first ``num_models`` models of the (first) variant with the same config, keys
    and subsets (so they are the run's models; the largest logit difference is logged), keeping
    the parameters after ``rewind_epoch`` epochs. Memorized: Feldman–Zhang memorization above
    ``memorized_above``; typical: below ``typical_below``; both among each model's IN examples
    that it predicts with its training label, at most ``max_examples`` each.

    Rows: per layer, accuracy (on the training label) of memorized and typical examples after
    rewinding / retraining that layer, mean over models with a t-interval; the neuron search's
    median count and share flipped within ``max_neurons`` for memorized vs typical."""
    import dataclasses

    import jax.numpy as jnp

    from jaxmem.data import build_dataset
    from jaxmem.estimators.localization import greedy_flip, mlp_forward, mlp_layers, rewind_layer
    from jaxmem.train import Trainer, steps_per_epoch_max

    name, run = next(iter(runs.items()))
    c = run.config
    if c.model.name != "mlp":
        raise ValueError(f"localization: MLPs only for now, model.name is {c.model.name!r}")
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    sig = run_signals(run)
    mem = memorization_of(keep, sig, ok).mem
    ds = build_dataset(c)
    x, y = jnp.asarray(ds.x_train), np.asarray(ds.y_train)
    c = dataclasses.replace(c, train=dataclasses.replace(c.train, record_forgetting=False))
    tr = Trainer(c, x, jnp.asarray(y), int(ds.num_classes),
                 steps_per_epoch_max(keep, c.train.batch_size))
    ids = np.flatnonzero(ok)[:num_models]
    state, status = tr.init_chunk(ids)
    state, status, _ = tr.train_epochs(state, status, keep[ids], ids, 0, rewind_epoch)
    import jax

    early = jax.tree.map(lambda a: np.asarray(a).copy(), state.params)
    state, status, _ = tr.train_epochs(state, status, keep[ids], ids, rewind_epoch,
                                       tr.num_epochs - rewind_epoch)
    final = jax.tree.map(np.asarray, state.params)
    lg = np.asarray(tr.logits(state, x, ["identity"]))[:, :, 0]
    log(f"localization: retrained models {list(ids)} match the run's logits to "
        f"{np.abs(lg - np.asarray(run.logits[ids, :, 0])).max():.2g}")

    acc = {}          # (kind, layer, group) -> per-model accuracies
    counts = {"memorized": [], "typical": []}
    per_model = []
    rng = np.random.default_rng(cfg.seed)
    for mi, m in enumerate(ids):
        L = [(jnp.asarray(W[mi]), jnp.asarray(b[mi])) for W, b in mlp_layers(
            {k: {"kernel": v["kernel"], "bias": v["bias"]} for k, v in final.items()})]
        E = [(jnp.asarray(W[mi]), jnp.asarray(b[mi])) for W, b in mlp_layers(
            {k: {"kernel": v["kernel"], "bias": v["bias"]} for k, v in early.items()})]
        fits = keep[m] & (lg[mi].argmax(-1) == y) & np.isfinite(mem)
        groups = {"memorized": np.flatnonzero(fits & (mem > memorized_above)),
                  "typical": np.flatnonzero(fits & (mem < typical_below))}
        groups = {g: (rng.choice(v, max_examples, replace=False) if v.size > max_examples else v)
                  for g, v in groups.items()}
        if min(v.size for v in groups.values()) == 0:
            log(f"localization: model {m} has no memorized or no typical example it fits; skipped")
            continue
        per_model.append({"model": int(m), **{f"n_{g}": int(v.size) for g, v in groups.items()}})

        def accuracy(layers, sel):
            return float((np.asarray(mlp_forward(layers, x[sel])).argmax(-1) == y[sel]).mean())

        clean = np.flatnonzero(keep[m] & ~(np.isfinite(mem) & (mem > memorized_above)))
        for li in range(len(L)):
            rw = rewind_layer(L, E, li)
            rt = _retrain_layer(rw, li, x[clean], jnp.asarray(y[clean]), retrain_steps,
                                retrain_lr, cfg.seed)
            for kind, layers in (("rewind", rw), ("retrain", rt)):
                for g, sel in groups.items():
                    acc.setdefault((kind, li, g), []).append(accuracy(layers, sel))
        for g, sel in groups.items():
            n, _ = greedy_flip(L, x[sel], jnp.asarray(y[sel]), max_neurons)
            counts[g].append(n)

    rows = []
    layers_n = 1 + len(c.model.hidden)
    for kind in ("rewind", "retrain"):
        for li in range(layers_n):
            row = {"intervention": kind, "layer": li}
            for g in ("memorized", "typical"):
                v = acc.get((kind, li, g), [])
                row[f"acc_{g}"], row[f"acc_{g}_low"], row[f"acc_{g}_high"] = (
                    mean_interval(v) if v else (math.nan,) * 3)
            rows.append(row)
    neuron_rows = []
    for g, lst in counts.items():
        if not lst:
            continue
        per = [np.median(n) for n in lst]           # per model: median neurons to flip
        share = [float(np.isfinite(n).mean()) for n in lst]
        allc = np.concatenate(lst)
        med, lo, hi = mean_interval(per)
        sh, shl, shh = mean_interval(share)
        neuron_rows.append({"group": g, "median_neurons_to_flip": float(np.median(allc)),
                            "per_model_median_mean": med, "low": lo, "high": hi,
                            "share_flipped_within_budget": sh, "share_low": shl, "share_high": shh,
                            "examples": int(allc.size)})
        log(f"localization: {g}: median {np.median(allc):g} neurons to flip "
            f"({allc.size} examples), {sh:.2f} within {max_neurons}")

    def draw(ax):
        for kind, ls in (("rewind", "-"), ("retrain", "--")):
            for g, col in (("memorized", "C3"), ("typical", "C0")):
                r = [row for row in rows if row["intervention"] == kind]
                ax.errorbar([row["layer"] for row in r], [row[f"acc_{g}"] for row in r],
                            yerr=[[row[f"acc_{g}"] - row[f"acc_{g}_low"] for row in r],
                                  [row[f"acc_{g}_high"] - row[f"acc_{g}"] for row in r]],
                            ls=ls, color=col, marker="o", capsize=3, label=f"{kind}, {g}")
        ax.set_xlabel("layer rewound / retrained")
        ax.set_ylabel("accuracy on the training label")
        ax.legend(fontsize=7)

    files = {"layers": figure(workdir / "localization_layers.png", draw),
             "table": write_csv(workdir / "localization_layers.csv", rows),
             "neurons": write_csv(workdir / "localization_neurons.csv", neuron_rows)}
    return {"rows": rows, "neurons": neuron_rows, "models": per_model, "files": files}
