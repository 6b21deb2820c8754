"""What training-dynamics records cost the stacked trainer, measured side by side in one run
(ratios against plain training epochs, CPU time where other jobs share the machine).

    python benchmarks/records.py                        # digits (1,438 examples), 8 models
    python benchmarks/records.py --source fashion_mnist --data-dir ../shared/data --models 4

For each setting it trains the same chunk for ``--epochs`` epochs through ``Trainer.train_epochs``
(one call per epoch, as a run does) and prints seconds per epoch and the ratio to no records:
  none                  plain training
  dynamics              loss, margin, correct, p_true after every epoch (one eval pass)
  dynamics every 2      the same after every 2nd epoch (lax.cond skips the pass): about half
  curvature niter=N     input-loss curvature after every epoch (Garg et al., N directions)
  vog                   VoG's moment update after every epoch (separate jitted call)
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(sets, ds, models, epochs):
    from jaxmem import config as cfgmod
    from jaxmem.runs.records import ChunkRecords
    from jaxmem.subsets import balanced_keep
    from jaxmem.train import Trainer, steps_per_epoch_max

    cfg = cfgmod.load_config(None, [f"subsets.num_models={models}", f"train.epochs={epochs + 2}", "scoring.attacks=[]",
                                    "model.hidden=[512]", "train.batch_size=128", *sets])
    keep = balanced_keep(cfg.seed, models, len(ds.y_train))
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    ids = np.arange(models)
    state, status = tr.init_chunk(ids, keep)
    recs = ChunkRecords(tr, "/tmp/jaxmem-bench-records", models)
    recs.open(resume=False)
    state, status, new = tr.train_epochs(state, status, keep, ids, 0, 1)   # compile
    recs.add(0, 1, new, state)
    jax.block_until_ready(state)
    w0, c0 = time.perf_counter(), cpu_seconds()
    for e in range(1, epochs + 1):
        state, status, new = tr.train_epochs(state, status, keep, ids, e, 1)
        recs.add(e, 1, new, state)
    jax.block_until_ready((state, recs.vog))
    out = (time.perf_counter() - w0) / epochs, (cpu_seconds() - c0) / epochs
    recs.remove()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--niter", type=int, default=2)
    args = ap.parse_args()
    from jaxmem.data import sources

    ds = sources.load(args.source, data_dir=args.data_dir)
    every_epoch = list(range(1, args.epochs + 3))   # (the last, untimed epoch is always recorded)
    settings = [
        ("none", []),
        ("dynamics", ['train.records.fields=["loss","margin","correct","p_true"]']),
        ("dynamics every 2", ['train.records.fields=["loss","margin","correct","p_true"]', "train.records.every=2"]),
        (f"curvature niter={args.niter}", [f"train.records.curvature_epochs={every_epoch}",
                                           f"train.records.curvature_niter={args.niter}"]),
        ("vog", [f"train.records.vog_epochs={every_epoch}"]),
    ]
    print(f"{args.source}: N = {len(ds.y_train)}, {args.models} models, MLP 512, batch 128, "
          f"{args.epochs} timed epochs (one train_epochs call each)")
    base = None
    for name, sets in settings:
        wall, cpu = run(sets, ds, args.models, args.epochs)
        base = base or (wall, cpu)
        print(f"  {name:22s} {wall:7.2f} s/epoch wall  {cpu:7.2f} s/epoch CPU   "
              f"x{wall / base[0]:.2f} wall  x{cpu / base[1]:.2f} CPU")


if __name__ == "__main__":
    main()
