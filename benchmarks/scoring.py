"""Attack scoring speed (jaxmem vs vectorized float64 numpy, side by side in one run) and memory.

    python benchmarks/scoring.py            # M=256 models, N=50,000 examples, A=2 queries
    python benchmarks/scoring.py --small    # quick run
    python benchmarks/scoring.py --memory   # peak memory of evaluate per attack, M=256 vs M=512

Cases (targets on a 2-core CPU in brackets):
  * LiRA online, one target [≥3×]: numpy masks non-members with NaN and takes np.nanmedian /
    np.nanstd over the model axis, scipy.stats.norm for the densities.
  * evaluate, every model the target (LiRA online + ROC metrics) [≥50×] vs the numpy approach of
    rescoring each target from scratch; the numpy side is timed on a few targets and extrapolated
    linearly to all M (labelled "extrapolated").
  * RMIA offline at N = Z = 10,000 [≥5×] vs a numpy reference doing the N × Z pairwise comparison.
  * evaluate, RMIA offline on every model [≥5×]: ``a`` tuned once (``rmia_tune="once"``, the
    cheaper protocol with a small optimistic bias) vs tuned per target (``"per_target"``, the
    default of jaxmem.attacks.AuditSpec: 11 extra scorings per target); the per-target side is
    timed on a few targets and extrapolated linearly to all M.
Outputs are checked against each other before timings are reported. jaxmem times exclude JIT
compilation (a warm-up call first; the first evaluate call's time is printed too).

``--memory`` (issue #11): the peak memory of ``evaluate`` (every model the target, scores not
kept) for each registered attack at M = 256 and M = 512 models, N = 20,000 examples (one query,
float32 signals as a run stores them; Z = 5,000 population points, C = 10 classes), each in a
fresh subprocess: the peak resident set size during the call (VmHWM, reset just before it through
/proc/self/clear_refs; Linux) minus the resident set size before it; RSS counts XLA's buffers,
which tracemalloc does not see. Memory bounded per attack means the added peak from M = 256 to
M = 512 stays within a small multiple of the added input [target: <= 4x] instead of growing with
the number of targets.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import warnings

import numpy as np
from scipy.stats import norm


def best_of(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def numpy_lira_online(t, phi, keep):
    p = phi.astype(np.float64)
    k = keep[..., None]
    pin, pout = np.where(k, p, np.nan), np.where(~k, p, np.nan)
    mu_in, mu_out = np.nanmedian(pin, 0), np.nanmedian(pout, 0)
    sd_in, sd_out = np.nanstd(pin, 0) + 1e-30, np.nanstd(pout, 0) + 1e-30
    t = t.astype(np.float64)
    return np.mean(norm.logpdf(t, mu_in, sd_in) - norm.logpdf(t, mu_out, sd_out), -1)


def numpy_rmia_offline(tp, ref_p, ref_keep, tp_pop, ref_pop, a, gamma=1.0, block=1000):
    out = ~ref_keep
    P_x = (1 + a) / 2 * (np.where(out, ref_p, 0).sum(0) / out.sum(0)) + (1 - a) / 2
    P_z = (1 + a) / 2 * ref_pop.mean(0) + (1 - a) / 2
    rx, rz_rev = tp / P_x, 1.0 / (tp_pop / P_z)   # the research code's ratio_x * (1/ratio_z) > gamma
    return np.concatenate([np.mean(rx[i:i + block, None] * rz_rev[None, :] > gamma, 1)
                           for i in range(0, rx.size, block)])


def _rss_mb():
    status = open("/proc/self/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def memory_child(attack, M, N, Z, C):
    """One measurement in this (fresh) process: prints a JSON line."""
    from jaxmem.attacks import evaluate
    from jaxmem.attacks.registry import get, register

    if attack == "shokri":   # 30 Adam steps, not 300: the same arrays, a tenth of the time
        register("shokri", get("shokri")._replace(options={"steps": 30}), replace=True)
    rng = np.random.default_rng(0)
    keep = rng.random((M, N)) < 0.5
    sig = {}
    for name in get(attack).needs:
        n = Z if name.endswith("_pop") else N
        if name == "phi":
            x = rng.normal(size=(M, n, 1)).astype(np.float32) + keep[..., None]
        elif name == "probs":
            x = rng.dirichlet(np.ones(C), size=(M, n)).astype(np.float32)
        elif name == "loss":
            x = rng.exponential(size=(M, n)).astype(np.float32) - 0.3 * keep
        else:   # RMIA's p / p_taylor and their population versions
            x = rng.uniform(0.05, 0.95, size=(M, n)).astype(np.float32)
            if n == N:
                x = np.clip(x + 0.05 * keep, 0, 1).astype(np.float32)
        sig[name] = np.ascontiguousarray(x, np.float32)
    labels = rng.integers(0, C, N)
    input_mb = (sum(v.nbytes for v in sig.values()) + keep.nbytes) / 2**20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = _rss_mb()["VmRSS"]
        with open("/proc/self/clear_refs", "w") as f:   # reset VmHWM to the current RSS
            f.write("5")
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(sig, keep, attacks=(attack,), labels=labels)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = _rss_mb()["VmHWM"]
    print(json.dumps({"attack": attack, "M": M, "input_mb": input_mb, "rss_peak_mb": peak - before,
                      "seconds": seconds, "cpu_seconds": cpu}))


def memory_table(attacks, Ms, N, Z, C):
    rows = {}
    for attack in attacks:
        for M in Ms:
            out = subprocess.run([sys.executable, __file__, "--memory-child", attack, str(M), str(N),
                                  str(Z), str(C)], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{attack} M={M} failed:\n{out.stderr[-3000:]}")
            rows[attack, M] = json.loads(out.stdout.strip().splitlines()[-1])
            r = rows[attack, M]
            print(f"  measured {attack} M={M}: peak {r['rss_peak_mb']:.0f} MB, "
                  f"{r['cpu_seconds']:.1f} s CPU", file=sys.stderr)
    m0, m1 = Ms
    print(f"\npeak memory of evaluate (every model the target, no scores kept), N={N}, Z={Z}, C={C}, "
          f"one query, float32 signals; MB above the RSS before the call")
    print(f"{'attack':<30} {'input@' + str(m0):>10} {'input@' + str(m1):>10} {'peak@' + str(m0):>9} "
          f"{'peak@' + str(m1):>9} {'+peak/+input':>13} {'target':>7}  CPU s @{m0} / @{m1}")
    for attack in attacks:
        a, b = rows[attack, m0], rows[attack, m1]
        ratio = (b["rss_peak_mb"] - a["rss_peak_mb"]) / (b["input_mb"] - a["input_mb"])
        flag = "ok" if ratio <= 4 else "ABOVE"
        print(f"{attack:<30} {a['input_mb']:>9.0f}M {b['input_mb']:>9.0f}M {a['rss_peak_mb']:>8.0f}M "
              f"{b['rss_peak_mb']:>8.0f}M {ratio:>12.1f}x {'<=4x':>7}  {flag:<5} "
              f"{a['cpu_seconds']:.1f} / {b['cpu_seconds']:.1f}")
    print(f"(input: the signals and keep; +peak/+input: the RSS peak's growth from M={m0} to M={m1} "
          "over the input's growth; shokri trains its attack models for 30 steps here, not 300)")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        a, M, N, Z, C = sys.argv[2:7]
        return memory_child(a, int(M), int(N), int(Z), int(C))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="M=64, N=5,000 (quick)")
    ap.add_argument("--memory", action="store_true",
                    help="peak memory of evaluate per attack at M=256 and M=512 (N=20,000)")
    ap.add_argument("--attacks", default=None, help="with --memory: comma-separated attack names "
                    "(default: every registered attack)")
    ap.add_argument("--numpy-targets", type=int, default=2, help="targets timed for numpy evaluate")
    ap.add_argument("--rmia-targets", type=int, default=8, help="targets timed for per-target RMIA tuning")
    args = ap.parse_args()
    if args.memory:
        from jaxmem.attacks.registry import ATTACKS

        attacks = args.attacks.split(",") if args.attacks else list(ATTACKS)
        Ms, N = ((64, 128), 5_000) if args.small else ((256, 512), 20_000)
        return memory_table(attacks, Ms, N, N // 4, 10)
    M, N, A = (64, 5_000, 2) if args.small else (256, 50_000, 2)
    NZ = 2_000 if args.small else 10_000

    from jaxmem.attacks import evaluate, lira, rmia, roc_auc, tpr_at_fpr

    rng = np.random.default_rng(0)
    mu = rng.normal(0, 3, size=(1, N, 1))
    keep = rng.random((M, N)) < 0.5
    phi = (mu + keep[..., None] + rng.normal(size=(M, N, A))).astype(np.float32)
    rows = []

    # --- LiRA online, one target
    t, sh, kp = phi[0], phi[1:], keep[1:]
    lira(t, sh, kp)  # compile
    tj, ours = best_of(lambda: lira(t, sh, kp), 2)
    tn, ref = best_of(lambda: numpy_lira_online(t, sh, kp), 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    rows.append(("LiRA online, 1 target", f"M={M - 1} N={N} A={A}", tj, tn, "", 3))

    # --- evaluate: all M targets
    t_first, _ = best_of(lambda: evaluate(phi, keep, attacks=("lira_online",)), 1)  # with compilation
    te, ev = best_of(lambda: evaluate(phi, keep, attacks=("lira_online",)), 1)
    k = min(args.numpy_targets, M)

    def numpy_targets():
        aucs = []
        for tg in range(k):
            others = np.arange(M) != tg
            s = numpy_lira_online(phi[tg], phi[others], keep[others])
            aucs.append((roc_auc(s, keep[tg]), tpr_at_fpr(s, keep[tg], 0.001), tpr_at_fpr(s, keep[tg], 0.01)))
        return np.array(aucs)

    tk, ref_m = best_of(numpy_targets, 1)
    np.testing.assert_allclose(ev["lira_online"]["auc"][:k], ref_m[:, 0], atol=1e-9)
    rows.append((f"evaluate, {M} targets", f"M={M} N={N} A={A}", te, tk * M / k,
                 f"numpy: {k} targets x {M}/{k} (extrapolated); first call incl. compile {t_first:.1f} s", 50))

    # --- RMIA offline, N = Z
    Mr = min(M, 256)
    p = rng.uniform(0.01, 0.99, size=(Mr, NZ))
    kr = rng.random((Mr, NZ)) < 0.5
    p_pop = rng.uniform(0.01, 0.99, size=(Mr, NZ))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = lambda: rmia(p[0], p[1:], kr[1:], p_pop[0], p_pop[1:], a=0.3)
        run()
        tr, ours = best_of(run, 2)
        tn, ref = best_of(lambda: numpy_rmia_offline(p[0], p[1:], kr[1:], p_pop[0], p_pop[1:], 0.3), 1)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    rows.append(("RMIA offline, 1 target", f"M={Mr - 1} N=Z={NZ}", tr, tn, "numpy: N x Z pairwise", 5))

    # --- evaluate, RMIA offline on all Mr targets: a tuned once vs per target
    Ne = NZ // 2
    pe = np.clip(rng.beta(2, 2, size=Ne) + 0.2 * kr[:, :Ne] + 0.05 * rng.normal(size=(Mr, Ne)), 1e-3, 1)
    sig = {"p": pe, "p_pop": p_pop}
    kt = min(args.rmia_targets, Mr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once = lambda: evaluate(sig, kr[:, :Ne], attacks=("rmia_offline",), rmia_tune="once")
        per = lambda: evaluate(sig, kr[:, :Ne], attacks=("rmia_offline",),
                               targets=np.arange(kt), rmia_tune="per_target")
        to, ev_once = best_of(once, 2)  # best of 2: the first compiles the ROC kernel for its shape
        tp, ev_per = best_of(per, 2)
    auc_once, auc_per = ev_once["rmia_offline"]["auc"][:kt], ev_per["rmia_offline"]["auc"]
    assert abs(auc_once.mean() - auc_per.mean()) < 0.02, (auc_once, auc_per)
    rows.append((f"evaluate RMIA, {Mr} tgts", f"M={Mr} N={Ne} Z={NZ}", to, tp * Mr / kt,
                 f"a tuned once ({ev_once.params['rmia_offline']['a']:.1f}) vs per target "
                 f"({kt} targets x {Mr}/{kt}, extrapolated)", 5))

    print(f"\n{'case':<24} {'sizes':<24} {'jaxmem s':>9} {'numpy s':>9} {'ratio':>8} {'target':>7}  note")
    for name, size, a, b, note, target in rows:
        ratio = b / a
        flag = "ok" if ratio >= target else "BELOW"
        print(f"{name:<24} {size:<24} {a:9.3f} {b:9.3f} {ratio:7.1f}x {'>=' + str(target) + 'x':>7}  {flag} {note}")


if __name__ == "__main__":
    main()
