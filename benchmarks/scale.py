"""`jaxmem run` end to end at real size: Fashion-MNIST's 60,000 training images (and 10,000 test).

Runs the real command (``jaxmem.cli.main(["run", ...])``) in this process and times its stages by
wrapping the functions that do them (wherever the run's modules imported them from):

  load      build_dataset: the IDX files read, scaled, standardized
  design    make_design: keep[M, N]
  train     train_models: every chunk trained, its train and test logits computed and stored
  assemble  the shards joined into logits.npy / test_logits.npy
  score     signals, memorization, every attack with every model as the target, files, plots

For each stage: wall and CPU seconds, and the resident memory (sampled every 10 ms from
/proc/self/status): at the start, the peak during the stage, split into anonymous memory (arrays
the process allocated) and file-backed pages (memory-mapped logits, libraries). Then the run
directory's disk use by part. The memory claim checked: scoring never holds an O(M·N·C) float64
array; its anonymous peak above its start is printed beside the float64 size of the logits.

    python benchmarks/scale.py                       # M = 64 models, 2 epochs, N = 60,000
    python benchmarks/scale.py --models 128 --epochs 1 --workdir /tmp/scale

Needs Fashion-MNIST's IDX files where jaxmem.data finds them (data.data_dir, $JAXMEM_DATA, the
Debian package dataset-fashion-mnist, torchvision's or Keras's folders).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1 << 20


def _status() -> dict:
    """VmRSS, RssAnon, RssFile of this process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """Samples the resident memory every ``dt`` seconds; ``peak`` since the last ``reset``."""

    def __init__(self, dt=0.01):
        super().__init__(daemon=True)
        self.dt, self.stop = dt, threading.Event()
        self.reset()

    def reset(self):
        self.peak = _status()

    def run(self):
        while not self.stop.wait(self.dt):
            s = _status()
            self.peak = {k: max(v, self.peak.get(k, 0)) for k, v in s.items()}


STAGES: list = []   # (name, wall, cpu, start status, peak status)


def _timed(name, fn, sampler):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = _status()
        sampler.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            peak = {k: max(v, start[k], _status()[k]) for k, v in sampler.peak.items()}
            STAGES.append((name, time.perf_counter() - t0, time.process_time() - c0, start, peak))
    return wrapper


def _patch(sampler):
    """Wrap each stage's function everywhere a jaxmem module holds it (``from x import f`` binds
    it in the importing module too); functions imported inside a function are read from their
    package at call time, so patching the package covers them."""
    import importlib
    import pkgutil

    import jaxmem

    for m in pkgutil.walk_packages(jaxmem.__path__, "jaxmem."):
        if m.name.startswith(("jaxmem.runs", "jaxmem.data", "jaxmem.subsets", "jaxmem.cli")):
            importlib.import_module(m.name)
    from jaxmem.data.build import build_dataset
    from jaxmem.runs.score import score
    from jaxmem.runs.store import assemble
    from jaxmem.subsets import make_design

    train_models = None
    for mod in ("jaxmem.runs.training", "jaxmem.runs.execute"):
        train_models = getattr(sys.modules.get(mod), "train_models", None) or train_models
    targets = {"load": build_dataset, "design": make_design, "train": train_models,
               "assemble": assemble, "score": score}
    for name, fn in targets.items():
        if fn is None:
            raise SystemExit(f"scale.py: no function for stage {name!r} found in jaxmem.runs")
        wrapped = _timed(name, fn, sampler)
        for mod in list(sys.modules.values()):
            if getattr(mod, "__name__", "").startswith("jaxmem"):
                for attr, v in list(vars(mod).items()):
                    if v is fn:
                        setattr(mod, attr, wrapped)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else \
        (path.stat().st_size if path.exists() else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--workdir", default=None, help="default: a temporary folder, removed after")
    ap.add_argument("--set", action="append", default=[], help="more config overrides")
    ap.add_argument("--score-only", metavar="RUN", default=None,
                    help="only rescore the finished run RUN (jaxmem score RUN --set ...), e.g. "
                         "to see one attack's memory: --set 'scoring.attacks=[\"lira_online\"]'")
    args = ap.parse_args()
    if args.score_only:
        return _score_only(Path(args.score_only), args.set)
    wd = Path(args.workdir or tempfile.mkdtemp(prefix="jaxmem-scale-")) / "run"
    sets = ["data.source=fashion_mnist", f"subsets.num_models={args.models}", "model.hidden=[512]",
            f"train.epochs={args.epochs}",
            'scoring.attacks=["lira_online","lira_offline","lira_online_fixed_variance",'
            '"rmia_offline"]', *args.set]
    sampler = Sampler()
    sampler.start()
    _patch(sampler)
    from jaxmem.cli import main as cli

    argv = ["run", "--workdir", str(wd), "--overwrite", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    print(f"jaxmem {' '.join(argv)}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    rc = cli(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    sampler.stop.set()
    if rc:
        raise SystemExit(f"jaxmem run exited {rc}")
    _report(wd, wall, cpu)
    if not args.workdir:
        shutil.rmtree(wd.parent, ignore_errors=True)


def _score_only(wd: Path, sets):
    sampler = Sampler()
    sampler.start()
    _patch(sampler)
    from jaxmem.cli import main as cli

    argv = ["score", str(wd)]
    for s in sets:
        argv += ["--set", s]
    print(f"jaxmem {' '.join(argv)}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if cli(argv):
        raise SystemExit("jaxmem score failed")
    sampler.stop.set()
    _report(wd, time.perf_counter() - t0, time.process_time() - c0)


def _report(wd: Path, wall: float, cpu: float):
    import json

    import numpy as np

    s = json.loads((wd / "summary.json").read_text())
    M, N, T = s["num_models"], s["num_examples"], s["num_test"]
    lg = np.load(wd / "logits.npy", mmap_mode="r")
    A, C = lg.shape[2], lg.shape[3]
    f64 = M * N * A * C * 8
    print(f"\nN = {N:,} training + {T:,} test examples, M = {M} models, logits [{M}, {N}, {A}, {C}] "
          f"{lg.dtype}; load {os.getloadavg()[0]:.1f} (1-min average), {os.cpu_count()} cores")
    print(f"{'stage':<9} {'wall s':>8} {'cpu s':>8} {'RSS start':>10} {'RSS peak':>9} "
          f"{'anon peak':>10} {'file peak':>10}  (MB)")
    for name, w, c, st, pk in STAGES:
        print(f"{name:<9} {w:8.1f} {c:8.1f} {st['VmRSS'] / MB:10.0f} {pk['VmRSS'] / MB:9.0f} "
              f"{pk['RssAnon'] / MB:10.0f} {pk['RssFile'] / MB:10.0f}")
    print(f"{'total':<9} {wall:8.1f} {cpu:8.1f}   peak RSS of the process (ru_maxrss) "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB:,.0f} MB")
    sc = next(x for x in STAGES if x[0] == "score")
    grew = (sc[4]["RssAnon"] - sc[3]["RssAnon"]) / MB
    print(f"\nscoring ({', '.join(s.get('attacks', {})) or 'no attacks'}): anonymous memory grew by "
          f"at most {grew:,.0f} MB over its start; the logits "
          f"as float64 would be {f64 / MB:,.0f} MB (M*N*A*C*8), as stored {lg.nbytes / MB:,.0f} MB "
          f"({lg.dtype}): " + ("so no O(M*N*C) float64 array was held at once" if grew < f64 / MB
                                 else "an O(M*N*C) float64 array may have been held (or the "
                                      "logits are too small to tell)"))
    print("\ndisk (MB):")
    sizes = {p.name: _du(p) for p in wd.iterdir()}
    for name in sorted(sizes, key=lambda n: -sizes[n]):
        if sizes[name] >= 0.05 * MB:
            print(f"  {name:<28} {sizes[name] / MB:10.1f}")
    small = [n for n in sizes if sizes[n] < 0.05 * MB]
    print(f"  {f'{len(small)} small files':<28} {sum(sizes[n] for n in small) / MB:10.1f}")
    print(f"  {'total':<28} {_du(wd) / MB:10.1f}")


if __name__ == "__main__":
    main()
