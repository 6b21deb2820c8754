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
from jaxmem.data import build_dataset
from jaxmem.estimators.localization import greedy_flip, mlp_forward, mlp_layers
from jaxmem.models.mlp import MLP
from jaxmem.train import Trainer, steps_per_epoch_max


def _layer_names(params) -> list:
    """The top-level layers of a flax model's params in forward order (convolutions, then
    dense layers, each by index)."""
    def key(k):
        kind, _, i = k.rpartition("_")
        return (0 if kind == "Conv" else 1, int(i) if i.isdigit() else 0, k)
    return sorted(params, key=key)


def _retrain_layer(model, params, name, x, y, steps, lr):
    """Layer ``name`` trained alone (full batch, Adam, eval mode) on (x, y); the others frozen."""
    import jax
    import optax

    tx = optax.adam(lr)
    W = params[name]
    st = tx.init(W)

    def loss(w, p, x, y):
        z = model.apply({"params": {**p, name: w}}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(z, y).mean()

    @jax.jit   # (arrays as arguments: closed over, XLA would fold them as constants)
    def step(w, st, p, x, y):
        g = jax.grad(loss)(w, p, x, y)
        u, st = tx.update(g, st, w)
        return optax.apply_updates(w, u), st

    for _ in range(steps):
        W, st = step(W, st, params, x, y)
    return {**params, name: W}


def _example_tied(c, x, y, keep_row, seed, p_gen, p_mem, num_classes):
    """Maini et al.'s example-tied dropout on one MLP: the last hidden layer's neurons split
    into generalization neurons (a fraction ``p_gen``, always on) and memorization neurons,
    each tied to an example with probability ``p_mem`` (on only when that example is trained
    on); trained on ``keep_row``'s examples with the run's optimizer settings (Adam, its batch
    size, learning rate and epochs). Returns (layers, the per-example masks [N, h], the
    generalization mask [h])."""
    import jax
    import jax.numpy as jnp
    import optax

    k_init, k_gen, k_mem = jax.random.split(jax.random.PRNGKey(seed), 3)
    net = MLP(num_classes=num_classes, hidden=tuple(c.model.hidden))
    layers = mlp_layers(net.init(k_init, x[:1])["params"])
    h = layers[-1][0].shape[0]
    gen = jax.random.uniform(k_gen, (h,)) < p_gen
    masks = (gen[None] | (jax.random.uniform(k_mem, (x.shape[0], h)) < p_mem)).astype(jnp.float32)
    ones = [jnp.ones((W.shape[1],)) for W, _ in layers[:-2]]
    tx = optax.adam(c.train.learning_rate)
    st = tx.init(layers)
    idx_in = np.flatnonzero(keep_row)
    B = min(c.train.batch_size, idx_in.size)
    spe = idx_in.size // B

    def loss(ls, xb, yb, mb):
        z = mlp_forward(ls, xb, ones + [mb])
        return optax.softmax_cross_entropy_with_integer_labels(z, yb).mean()

    @jax.jit
    def epoch(ls, st, order):
        def body(carry, b):
            ls, st = carry
            i = jax.lax.dynamic_slice(order, (b * B,), (B,))
            g = jax.grad(loss)(ls, x[i], y[i], masks[i])
            u, st = tx.update(g, st, ls)
            return (optax.apply_updates(ls, u), st), None
        (ls, st), _ = jax.lax.scan(body, (ls, st), jnp.arange(spe))
        return ls, st

    rng = np.random.default_rng(seed)
    for _ in range(int(np.ceil(c.train.epochs))):
        layers, st = epoch(layers, st, jnp.asarray(rng.permutation(idx_in)))
    return layers, masks, gen.astype(jnp.float32), ones


def analyze(cfg, workdir, runs, log, num_models: int = 4, rewind_epoch: int = 1,
            memorized_above: float = 0.5, typical_below: float = 0.05, max_examples: int = 64,
            max_neurons: int = 64, retrain_steps: int = 200, retrain_lr: float = 1e-3,
            tied_generalization: float = 0.4, tied_memorization: float = 0.1):
    """MLPs and CNNs (without BatchNorm; the neuron search and example-tied dropout: MLPs only).
    Retrains the first ``num_models`` models of the (first) variant with the same config, keys
    and subsets (so they are the run's models; the largest logit difference is logged), keeping
    the parameters after ``rewind_epoch`` epochs. Memorized: Feldman–Zhang memorization above
    ``memorized_above``; typical: below ``typical_below``; both among each model's IN examples
    that it predicts with its training label, at most ``max_examples`` each.

    Rows: per layer, accuracy (on the training label) of memorized and typical examples after
    rewinding / retraining that layer, mean over models with a t-interval; the neuron search's
    median count and share flipped within ``max_neurons`` for memorized vs typical; example-tied
    dropout (:func:`_example_tied`, ``tied_generalization`` / ``tied_memorization``): accuracy
    of memorized and typical training examples with their own training mask and with the
    memorization neurons dropped, and test accuracy with them dropped."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    name, run = next(iter(runs.items()))
    c = run.config
    if c.model.name not in ("mlp", "cnn") or getattr(c.model, "batch_norm", False):
        raise ValueError(f"localization: MLPs and CNNs without BatchNorm, got {c.model.name!r}")
    mlp = c.model.name == "mlp"
    if not 1 <= rewind_epoch < math.ceil(c.train.epochs):
        raise ValueError(f"localization: rewind_epoch must be in [1, train.epochs), got {rewind_epoch}")
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
    early = jax.tree.map(lambda a: np.asarray(a).copy(), state.params)
    state, status, _ = tr.train_epochs(state, status, keep[ids], ids, rewind_epoch,
                                       tr.num_epochs - rewind_epoch)
    final = jax.tree.map(np.asarray, state.params)
    lg = np.asarray(tr.logits(state, x, ["identity"]))[:, :, 0]
    log(f"localization: retrained models {[int(i) for i in ids]} match the run's logits to "
        f"{np.abs(lg - np.asarray(run.logits[ids, :, 0])).max():.2g}")

    acc = {}          # (kind, layer, group) -> per-model accuracies
    counts = {"memorized": [], "typical": []}
    per_model = []
    rng = np.random.default_rng(cfg.seed)
    names = _layer_names(final)
    for mi, m in enumerate(ids):
        P = jax.tree.map(lambda a, i=mi: jnp.asarray(a[i]), final)
        Pe = jax.tree.map(lambda a, i=mi: jnp.asarray(a[i]), early)
        fits = keep[m] & (lg[mi].argmax(-1) == y) & np.isfinite(mem)
        groups = {"memorized": np.flatnonzero(fits & (mem > memorized_above)),
                  "typical": np.flatnonzero(fits & (mem < typical_below))}
        groups = {g: (rng.choice(v, max_examples, replace=False) if v.size > max_examples else v)
                  for g, v in groups.items()}
        if min(v.size for v in groups.values()) == 0:
            log(f"localization: model {m} has no memorized or no typical example it fits; skipped")
            continue
        per_model.append({"model": int(m), **{f"n_{g}": int(v.size) for g, v in groups.items()}})

        def accuracy(p, sel):
            z = np.asarray(tr.model.apply({"params": p}, x[sel], train=False))
            return float((z.argmax(-1) == y[sel]).mean())

        clean = np.flatnonzero(keep[m] & ~(np.isfinite(mem) & (mem > memorized_above)))
        for li, k in enumerate(names):
            rw = {**P, k: Pe[k]}                  # Maini et al.'s layer rewinding
            rt = _retrain_layer(tr.model, rw, k, x[clean], jnp.asarray(y[clean]),
                                retrain_steps, retrain_lr)
            for kind, p in (("rewind", rw), ("retrain", rt)):
                for g, sel in groups.items():
                    acc.setdefault((kind, li, g), []).append(accuracy(p, sel))
        if mlp:   # the neuron search works on an MLP's hidden units
            L = mlp_layers(P)
            for g, sel in groups.items():
                n, _ = greedy_flip(L, x[sel], jnp.asarray(y[sel]), max_neurons)
                counts[g].append(n)

    tied = {}
    for m in (ids if mlp else []):
        fits = keep[m] & np.isfinite(mem)
        groups = {"memorized": np.flatnonzero(fits & (mem > memorized_above)),
                  "typical": np.flatnonzero(fits & (mem < typical_below))}
        if min(v.size for v in groups.values()) == 0:
            continue
        L, masks, gen, ones = _example_tied(c, x, jnp.asarray(y), keep[m], cfg.seed + int(m),
                                            tied_generalization, tied_memorization,
                                            int(ds.num_classes))
        for g, sel in groups.items():
            for how, mk in (("own_mask", masks[sel]), ("memorization_dropped", gen)):
                z = np.asarray(mlp_forward(L, x[sel], ones + [mk]))
                tied.setdefault(f"acc_{g}_{how}", []).append(float((z.argmax(-1) == y[sel]).mean()))
        zt = np.asarray(mlp_forward(L, jnp.asarray(ds.x_test), ones + [gen]))
        tied.setdefault("test_acc_memorization_dropped", []).append(
            float((zt.argmax(-1) == np.asarray(ds.y_test)).mean()))
    tied_rows = []
    for k, v in tied.items():
        mu, lo, hi = mean_interval(v)
        tied_rows.append({"quantity": k, "mean": mu, "low": lo, "high": hi, "models": len(v)})
        log(f"localization: example-tied dropout: {k} {mu:.3f} [{lo:.3f}, {hi:.3f}]")

    rows = []
    layers_n = len(names)
    for kind in ("rewind", "retrain"):
        for li in range(layers_n):
            row = {"intervention": kind, "layer": li, "name": names[li]}
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
        ax.set_xticks(range(layers_n), names, fontsize=7)
        ax.set_xlabel("layer rewound / retrained")
        ax.set_ylabel("accuracy on the training label")
        ax.legend(fontsize=7)

    files = {"layers": figure(workdir / "localization_layers.png", draw),
             "table": write_csv(workdir / "localization_layers.csv", rows),
             "neurons": write_csv(workdir / "localization_neurons.csv", neuron_rows),
             "example_tied": write_csv(workdir / "localization_example_tied.csv", tied_rows)}
    return {"rows": rows, "neurons": neuron_rows, "example_tied": tied_rows, "models": per_model,
            "files": files}
