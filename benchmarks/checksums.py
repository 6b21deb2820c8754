"""What checksums cost a run, measured side by side in one run (CPU seconds, and ratios).

    python benchmarks/checksums.py                        # ~1 GB of logits (2-core friendly)
    python benchmarks/checksums.py --models 256 --examples 50000 --classes 100

On a synthetic run (imported arrays: [M, N, 1, C] float32 logits) it times, in CPU seconds:
  write:   np.save of the logits vs jaxmem's save_npy (which hashes the bytes on their way out)
  verify:  the default check (whole files up to 1 GiB, 8 sampled 64 MiB segments of larger ones)
           and the full check (every byte), against
  score:   scoring the run (signals, memorization, LiRA online + global threshold)
and prints the ratios, and the SHA-256 rate to extrapolate to a 48 GB logits file (the
CIFAR-100 headline run's assembled logits). Read cold from the disk, a full check adds a second
pass over the file as well (the page cache holds it when it fits in memory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def cpu(fn):
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=64)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=200)
    args = ap.parse_args()
    from jaxmem.io import save_npy
    from jaxmem.runs import import_arrays, integrity, score

    M, N, C = args.models, args.examples, args.classes
    r = np.random.default_rng(0)
    keep = r.random((M, N)) < 0.5
    labels = r.integers(0, C, N)
    logits = r.normal(size=(M, N, 1, C)).astype(np.float32)
    gb = logits.nbytes / 1e9
    d = Path(tempfile.mkdtemp(prefix="jaxmem-bench-"))
    try:
        t_np, _ = cpu(lambda: np.save(d / "plain.npy", logits))
        t_save, _ = cpu(lambda: save_npy(d / "hashed.npy", logits))
        import_arrays(d / "run", keep, logits, labels, overrides=[
            'scoring.attacks=["lira_online","global_threshold"]'])
        t_auto, bad = cpu(lambda: integrity.verify(d / "run"))
        assert not bad
        t_full, _ = cpu(lambda: integrity.verify(d / "run", full=True))
        t_score, _ = cpu(lambda: score(d / "run", log=lambda *a: None))
        rate = gb / max(t_full, 1e-9)
        print(f"logits: {M} x {N} x {C} float32 = {gb:.2f} GB")
        print(f"  write  np.save {t_np:6.2f} s   save_npy (hashing) {t_save:6.2f} s   "
              f"ratio {t_save / max(t_np, 1e-9):.2f}")
        print(f"  verify default {t_auto:6.2f} s   full {t_full:6.2f} s   "
              f"(SHA-256 at {rate:.2f} GB/s of CPU)")
        print(f"  score          {t_score:6.2f} s   default check / score = "
              f"{t_auto / t_score:.3f}, full check / score = {t_full / t_score:.3f}")
        print(f"  48 GB of logits: full check ~{48 / rate:.0f} CPU s; default check reads "
              f"{integrity.SAMPLE_SEGMENTS} x 64 MiB = {integrity.SAMPLE_SEGMENTS * 64 / 1024:.1f} GiB")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
