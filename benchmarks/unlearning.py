"""Unlearning M models stacked vs one at a time (issue 22): the same trained models, the same
method and steps, with jaxmem's stacked unlearner (:class:`jaxmem.unlearn.Unlearner`: one jitted
call for the whole stack of M models, ``vmap`` or ``lax.map`` inside) against one jitted call per
model (a stack of one, compiled once, called M times - how the NeurIPS 2023 competition's
evaluator unlearns its 512 models, one at a time). Both produce the same models (checked).

Prints the seconds of each side (compilation excluded: both are warmed up first), models/s and
their ratio, from one run.

    python benchmarks/unlearning.py                         # digits MLPs 64-256-10, M = 32, all vmapped
    python benchmarks/unlearning.py --models 64 --steps 200 --method neggrad_plus
    python benchmarks/unlearning.py --vmap-size 0           # jaxmem's CPU default: lax.map, one model at a time
"""

from __future__ import annotations

import argparse
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="unlearning steps per model")
    ap.add_argument("--method", default="neggrad_plus")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vmap-size", type=int, default=-1,
                    help="models vmapped together in the stack (-1: all M; 0: jaxmem's default, "
                         "one at a time inside lax.map on CPU)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxmem import config as cfgmod
    from jaxmem.data import build_dataset
    from jaxmem.train import Trainer, steps_per_epoch_max
    from jaxmem.unlearn import Unlearner, forget_set, index_rows, make_method, unlearning_design

    M = a.models
    vs = M if a.vmap_size < 0 else a.vmap_size
    cfg = cfgmod.load_config(None, [f"subsets.num_models={M}", f"model.hidden=[{a.hidden}]",
                                    "train.epochs=1", "train.batch_size=128", f"train.vmap_size={vs}"])
    ds = build_dataset(cfg)
    forget = forget_set("random", cfg.seed, ds.y_train, 50)
    keep, _ = unlearning_design(cfg.seed, 2 * M, forget)
    keep = keep[:M]                       # the unlearned models: trained on the forget set
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    ids = np.arange(M)
    state, status = tr.init_chunk(ids, keep)
    state, status, _ = tr.train_epochs(state, status, keep, ids, 0, 1)
    host = jax.device_get(state)
    u = Unlearner(tr, make_method(a.method), a.steps)
    ridx, rn = index_rows(keep & ~forget[None])
    fidx, fn = index_rows(forget[None])
    keys = u.keys(ids)

    def stacked():
        st, s = u.init(jax.tree.map(jnp.asarray, host))
        st, s = u.run_block(st, s, ridx, rn, fidx[0], int(fn[0]), keys, 0, a.steps)
        return jax.block_until_ready(st)

    def one_at_a_time():
        outs = []
        for k in range(M):
            st, s = u.init(jax.tree.map(lambda x, k=k: jnp.asarray(x[k: k + 1]), host))
            st, s = u.run_block(st, s, ridx[k: k + 1], rn[k: k + 1], fidx[0], int(fn[0]), keys[k: k + 1], 0, a.steps)
            outs.append(jax.block_until_ready(st))
        return outs

    ref, ones = stacked(), one_at_a_time()           # warm-up (compiles both shapes)
    diff = max(float(np.max(np.abs(np.asarray(x)[k] - np.asarray(o)[0])))
               for k, one in enumerate(ones)
               for x, o in zip(jax.tree.leaves(ref.params), jax.tree.leaves(one.params)))
    t_s, t_1 = [], []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        stacked()
        t_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        one_at_a_time()
        t_1.append(time.perf_counter() - t0)
    s, o = min(t_s), min(t_1)
    print(f"{jax.default_backend()}: {M} digits MLPs 64-{a.hidden}-10, {a.method}, {a.steps} steps each, "
          f"vmap_size={tr.group_size(M)} (best of {a.repeats}; compilation excluded)")
    print(f"  stacked (one call for {M} models): {s:8.3f} s  {M / s:9.1f} models/s")
    print(f"  one model per call ({M} calls):     {o:8.3f} s  {M / o:9.1f} models/s")
    print(f"  ratio (one at a time / stacked):   {o / s:8.2f}x")
    print(f"  max |param difference| stacked vs one at a time: {diff:.2e}")
    return o / s


if __name__ == "__main__":
    main()
