"""Training throughput of many small models: jaxmem's stacked trainer vs the alternatives.

Two recipes (``--data``), each model on its own balanced 50% subset of the training images, Adam
(lr 1e-3), batch 128, the same number of steps on every side:

  digits          MLP 64-256-10, 140 steps per model (1,438 8x8 training images)
  fashion_mnist   MLP 784-512-10, 235 steps per model = one epoch of its 30,000 images (the
                  60,000 Fashion-MNIST training images, read by jaxmem.data: data.data_dir,
                  $JAXMEM_DATA, the Debian package, torchvision's or Keras's folders)

For K models, side by side in one run:

  jaxmem      the stacked trainer (chunks of models vmapped inside one jit, lax.scan over steps)
  jax-loop    a jitted lax.scan training loop, called once per model (compiled once)
  torch-seq   PyTorch on the CPU, one model after another (needs the `bench` extra)
  torch-vmap  torch.func.functional_call + vmap over stacked parameters (needs the `bench` extra)

Prints models/s (compilation excluded: every method is warmed up first), the ratio to each
baseline, and the mean held-out accuracy (digits ≈0.96, Fashion-MNIST after one epoch ≈0.84 on
every side, or the comparison is void).

    python benchmarks/train_throughput.py            # K = 16, 64, 256
    python benchmarks/train_throughput.py --k 16     # quick
    taskset -c 1 python benchmarks/train_throughput.py --data fashion_mnist --k 16 --clock cpu \
        --torch-threads 1                            # the real workload, one pinned core

On a shared machine wall-clock times swing by +-30% and PyTorch with more than one thread can
collapse (spinning OpenMP workers: 0.1-1 models/s instead of 12). For a steady per-core comparison
pin the process to one core and count process CPU time instead of wall time:

    taskset -c 1 python benchmarks/train_throughput.py --k 64 --clock cpu

``--xla-flags`` reaches XLA before jax is imported, e.g. oneDNN for the CPU matmuls (deterministic
and chunk-invariant here, but not bitwise equal to XLA's own dot emitter):

    --xla-flags="--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot"
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _xla_flags_from_argv():
    """``--xla-flags`` must be in the environment before jax is imported (it is read once)."""
    for i, a in enumerate(sys.argv):
        v = (a.split("=", 1)[1] if a.startswith("--xla-flags=") else
             sys.argv[i + 1] if a == "--xla-flags" and i + 1 < len(sys.argv) else None)
        if v:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {v}".strip()


if __name__ == "__main__":
    _xla_flags_from_argv()

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmem.config import load_config
from jaxmem.data import load
from jaxmem.subsets import balanced_keep
from jaxmem.train import Trainer, steps_per_epoch_max

#: --data NAME -> (hidden width, steps per model); batch 128 and Adam 1e-3 for both
RECIPES = {"digits": (256, 140), "fashion_mnist": (512, 235)}
STEPS, BATCH, LR, HIDDEN = 140, 128, 1e-3, 256   # main() sets STEPS and HIDDEN from --data
CLOCK = time.perf_counter   # --clock cpu: time.process_time


def load_data(name: str):
    """The training and test images of recipe ``name`` (digits may be a stand-in, see below)."""
    return load_digits_or_standin() if name == "digits" else load(name)


def load_digits_or_standin():
    """scikit-learn's digits; on a machine without scikit-learn (the GPU image), a stand-in of the
    same shape (10 Gaussian clusters of 8x8 images), said so in the output."""
    try:
        return load("digits")
    except ImportError:
        from types import SimpleNamespace

        r = np.random.default_rng(0)
        centers = r.normal(size=(10, 8, 8, 1)).astype(np.float32)
        y = r.integers(0, 10, 1797).astype(np.int32)
        x = (centers[y] + 1.5 * r.normal(size=(1797, 8, 8, 1))).astype(np.float32)
        print("(scikit-learn missing: synthetic stand-in for digits)")
        return SimpleNamespace(x_train=x[:1438], y_train=y[:1438], x_test=x[1438:],
                               y_test=y[1438:], num_train=1438, num_test=359, num_classes=10)


def batch_indices(keep_row, seed, steps=None, batch=BATCH):
    """A model's batches: its IN examples reshuffled each epoch (the same for every baseline)."""
    steps = steps or STEPS
    idx = np.flatnonzero(keep_row)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) * batch < steps * batch:
        perm = rng.permutation(idx)
        for s in range(0, len(perm) - batch + 1, batch):
            out.append(perm[s : s + batch])
    return np.stack(out[:steps])


def _timed(run, M):
    """(models/s, mean accuracy) of one call of ``run`` (all M models)."""
    t0 = CLOCK()
    accs = run()
    return M / (CLOCK() - t0), float(np.mean(accs))


def bench_jaxmem(ds, keep, chunk, vmap_size=0):
    """(models/s, mean test accuracy, mean steps per model) of jaxmem's stacked trainer."""
    run, steps = setup_jaxmem(ds, keep, chunk, vmap_size)
    return (*_timed(run, keep.shape[0]), steps)


def bench_jax_loop(ds, keep):
    """(models/s, mean test accuracy) of a jitted one-model training loop."""
    return _timed(setup_jax_loop(ds, keep), keep.shape[0])


def bench_torch(ds, keep, vmap: bool):
    """(models/s, mean test accuracy) of PyTorch; (None, None) without torch."""
    run = setup_torch(ds, keep, vmap)
    return (None, None) if run is None else _timed(run, keep.shape[0])


def setup_jaxmem(ds, keep, chunk, vmap_size=0):
    """A compiled ``run()`` training all models of ``keep`` (-> test accuracies), steps/model."""
    M = keep.shape[0]
    spe = -(-int(keep.sum(1).max()) // BATCH)
    cfg = load_config(None, [f"subsets.num_models={M}", f"train.epochs={STEPS / spe}",
                             f"train.batch_size={BATCH}", f"train.learning_rate={LR}",
                             f"model.hidden=[{HIDDEN}]", f"train.chunk_size={chunk}",
                             f"train.vmap_size={vmap_size}"])
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), 10,
                 steps_per_epoch_max(keep, BATCH))
    xte = jnp.asarray(ds.x_test)

    def run_all(models):
        accs = []
        for c in range(0, len(models), chunk):
            ids = models[c : c + chunk]
            ids = np.concatenate([ids, np.arange(M, M + chunk - len(ids))])  # pad to the chunk
            st, aux = tr.init_chunk(ids)
            st, aux, _ = tr.train_epochs(st, aux, keep[np.minimum(ids, M - 1)], ids, 0,
                                         tr.num_epochs)
            lg = tr.logits(st, xte, ["identity"])[: len(models[c : c + chunk]), :, 0]
            accs.append(np.asarray((lg.argmax(-1) == jnp.asarray(ds.y_test)).mean(1)))
        return np.concatenate(accs)

    run_all(np.arange(min(chunk, M)))  # compile
    return (lambda: run_all(np.arange(M))), int(np.asarray(tr.step_counts(keep)[2]).mean())


def setup_jax_loop(ds, keep):
    x, y = jnp.asarray(ds.x_train.reshape(len(ds.x_train), -1)), jnp.asarray(ds.y_train)
    xte = jnp.asarray(ds.x_test.reshape(len(ds.x_test), -1))
    opt = optax.adam(LR)

    def init(key):
        k1, k2 = jax.random.split(key)
        d = x.shape[1]
        w1 = jax.random.normal(k1, (d, HIDDEN)) * jnp.sqrt(2.0 / d)
        w2 = jax.random.normal(k2, (HIDDEN, 10)) * jnp.sqrt(1.0 / HIDDEN)
        return {"w1": w1, "b1": jnp.zeros(HIDDEN), "w2": w2, "b2": jnp.zeros(10)}

    def apply(p, xb):
        return jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, xb), yb).mean()

    @jax.jit
    def train(key, batches):
        p = init(key)

        def step(carry, idx):
            p, s = carry
            g = jax.grad(loss)(p, x[idx], y[idx])
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), batches)
        return (apply(p, xte).argmax(-1) == jnp.asarray(ds.y_test)).mean()

    batches = [jnp.asarray(batch_indices(keep[m], m)) for m in range(keep.shape[0])]
    train(jax.random.key(0), batches[0]).block_until_ready()  # compile
    return lambda: [float(train(jax.random.key(m), batches[m])) for m in range(keep.shape[0])]


def setup_torch(ds, keep, vmap: bool):
    try:
        import torch
        from torch.func import functional_call, grad
        from torch.func import vmap as tvmap
    except ImportError:
        return None
    x = torch.tensor(ds.x_train.reshape(len(ds.x_train), -1))
    y = torch.tensor(ds.y_train, dtype=torch.long)
    xte = torch.tensor(ds.x_test.reshape(len(ds.x_test), -1))
    yte = torch.tensor(ds.y_test, dtype=torch.long)
    M = keep.shape[0]
    batches = [torch.tensor(batch_indices(keep[m], m)) for m in range(M)]

    def make(m):
        torch.manual_seed(m)
        return torch.nn.Sequential(torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.ReLU(),
                                   torch.nn.Linear(HIDDEN, 10))

    if not vmap:
        def run(models):
            accs = []
            for m in models:
                net = make(m)
                opt = torch.optim.Adam(net.parameters(), lr=LR)
                for idx in batches[m]:
                    opt.zero_grad()
                    torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                    opt.step()
                with torch.no_grad():
                    accs.append((net(xte).argmax(-1) == yte).float().mean().item())
            return accs

        run([0])
        return lambda: run(range(M))

    base = make(0)
    chunk = 64

    def run(models):
        accs = []
        for c in range(0, len(models), chunk):
            ids = list(models[c : c + chunk])
            nets = [make(m) for m in ids]
            params = {k: torch.stack([dict(n.named_parameters())[k].detach() for n in nets])
                      .requires_grad_() for k, _ in base.named_parameters()}
            opt = torch.optim.Adam(params.values(), lr=LR)
            idx = torch.stack([batches[m] for m in ids], 1)  # [steps, K, B]

            def loss_one(p, xb, yb):
                return torch.nn.functional.cross_entropy(functional_call(base, p, (xb,)), yb)

            g_fn = tvmap(grad(loss_one))
            for s in range(idx.shape[0]):
                opt.zero_grad()
                g = g_fn({k: v.detach() for k, v in params.items()}, x[idx[s]], y[idx[s]])
                for k, v in params.items():
                    v.grad = g[k]
                opt.step()
            with torch.no_grad():
                out = tvmap(lambda p: functional_call(base, p, (xte,)))(params)
                accs += (out.argmax(-1) == yte).float().mean(1).tolist()
        return accs

    run([0])
    return lambda: run(list(range(M)))


def main():
    global CLOCK, HIDDEN, STEPS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", choices=tuple(RECIPES), default="digits",
                    help="the recipe: digits MLP 64-256-10 or Fashion-MNIST MLP 784-512-10")
    ap.add_argument("--k", type=int, nargs="+", default=None,
                    help="models per measurement (default: 16 64 256 digits, 16 fashion_mnist)")
    ap.add_argument("--steps", type=int, default=0, help="steps per model (default: the recipe's)")
    ap.add_argument("--chunk", type=int, default=16, help="jaxmem models per jitted call")
    ap.add_argument("--vmap-size", type=int, default=0,
                    help="jaxmem train.vmap_size: models vmapped together inside a chunk (0 = all)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0 = torch's default)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time, all threads summed (steady on a shared "
                         "machine; meaningful single-threaded: taskset -c N, --torch-threads 1)")
    ap.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before jax starts")
    ap.add_argument("--also-vmap-size", type=int, nargs="*", default=[],
                    help="more jaxmem rows with these train.vmap_size values (e.g. 4: the "
                         "vmapped, per-step masked loop that was the CPU default before)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="interleaved rounds of every method; each method's fastest counts "
                         "(steadier on a shared machine)")
    args = ap.parse_args()
    HIDDEN, STEPS = RECIPES[args.data]
    STEPS = args.steps or STEPS
    ks = args.k or ([16, 64, 256] if args.data == "digits" else [16])
    if args.clock == "cpu":
        CLOCK = time.process_time
    ds = load_data(args.data)
    d = int(np.prod(ds.x_train.shape[1:]))
    print(f"{args.data}: {ds.num_train} train / {ds.num_test} test; MLP {d}-{HIDDEN}-10, Adam, "
          f"batch {BATCH}, {STEPS} steps; backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s)")
    threads = f"cores usable {len(os.sched_getaffinity(0))}"
    if not args.no_torch:
        try:
            import torch
            if args.torch_threads:
                torch.set_num_threads(args.torch_threads)
            threads += (f"; torch threads {torch.get_num_threads()} intra-op, "
                        f"{torch.get_num_interop_threads()} inter-op")
        except ImportError:
            pass
    print(f"{threads}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; clock {args.clock}; "
          f"jaxmem chunk {args.chunk}, vmap_size {args.vmap_size}; best of {args.repeat} "
          f"interleaved round(s)")
    hdr = f"{'K':>5} {'method':<12} {'models/s':>9} {'acc':>7}   ratio of jaxmem to it"
    print(hdr)
    for K in ks:
        keep = balanced_keep(0, K, ds.num_train)
        runs = {"jaxmem": setup_jaxmem(ds, keep, min(args.chunk, K), args.vmap_size)[0],
                "jax-loop": setup_jax_loop(ds, keep)}
        for vs in args.also_vmap_size:
            runs[f"jaxmem vs={vs}"] = setup_jaxmem(ds, keep, min(args.chunk, K), vs)[0]
        if not args.no_torch:
            for name, vm in (("torch-seq", False), ("torch-vmap", True)):
                r = setup_torch(ds, keep, vm)
                if r is not None:
                    runs[name] = r
        res = {}
        for _ in range(args.repeat):   # interleaved rounds; each method's best round counts
            for name, run in runs.items():
                mps, acc = _timed(run, K)
                res[name] = max(res.get(name, (0.0, acc)), (mps, acc))
        ours = res["jaxmem"][0]
        for name, (mps, acc) in res.items():
            ratio = "" if name == "jaxmem" else f"{ours / mps:6.2f}x"
            print(f"{K:>5} {name:<12} {mps:9.2f} {acc:7.4f}   {ratio}", flush=True)


if __name__ == "__main__":
    main()
