"""Attack scoring speed: jaxmem vs vectorized float64 numpy, measured side by side in one run.

    python benchmarks/scoring.py            # M=256 models, N=50,000 examples, A=2 queries
    python benchmarks/scoring.py --small    # quick run

Cases (targets on a 2-core CPU in brackets):
  * LiRA online, one target [≥3×]: numpy masks non-members with NaN and takes np.nanmedian /
    np.nanstd over the model axis, scipy.stats.norm for the densities.
  * evaluate, every model the target (LiRA online + ROC metrics) [≥50×] vs the numpy approach of
    rescoring each target from scratch; the numpy side is timed on a few targets and extrapolated
    linearly to all M (labelled "extrapolated").
  * RMIA offline at N = Z = 10,000 [≥5×] vs a numpy reference doing the N × Z pairwise comparison.
  * evaluate, RMIA offline on every model [≥5×]: ``a`` tuned once (the default) vs tuned per
    target (``rmia_tune="per_target"``, the old behaviour: 11 extra scorings per target); the
    per-target side is timed on a few targets and extrapolated linearly to all M.
Outputs are checked against each other before timings are reported. jaxmem times exclude JIT
compilation (a warm-up call first; the first evaluate call's time is printed too).
"""

from __future__ import annotations

import argparse
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
    rx, rz = tp / P_x, tp_pop / P_z
    return np.concatenate([np.mean(rx[i:i + block, None] / rz[None, :] > gamma, 1)
                           for i in range(0, rx.size, block)])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="M=64, N=5,000 (quick)")
    ap.add_argument("--numpy-targets", type=int, default=2, help="targets timed for numpy evaluate")
    ap.add_argument("--rmia-targets", type=int, default=8, help="targets timed for per-target RMIA tuning")
    args = ap.parse_args()
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
        once = lambda: evaluate(sig, kr[:, :Ne], attacks=("rmia_offline",))
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
