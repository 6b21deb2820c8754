"""Experiments reproducing the findings of the survey "Memorization in deep learning"
(arXiv 2406.03880): one analysis per finding, run over an experiment file's variants.

``run_experiment(cfg, workdir)`` trains every variant of ``cfg.experiment.variants`` with
:func:`jaxmem.run.execute` into ``WORKDIR/variants/NAME`` (resumable: finished work is skipped),
then runs the analysis named by ``cfg.experiment.kind`` and writes ``WORKDIR/summary.json``, CSV
tables and PNG figures (atomically), and prints a short table.

Membership-inference audits here are computed from the stored logits by :func:`audit` with the
attack primitives of :mod:`jaxmem.attacks` (loss, Shokri, LiRA, RMIA): every target model takes
its turn against the other (non-diverged) models as shadows, like Carlini et al. (2022, Sec. VI).
"""

from __future__ import annotations

import dataclasses
import json
import inspect
import math
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.io import RunError, atomic_path, load_json, save_json, save_text

__all__ = ["run_experiment", "ANALYSES", "Signals", "signals_of", "audit", "attack_table",
           "ATTACKS", "spearman"]


# ----------------------------------------------------------------------------------------------
# Signals and attacks
# ----------------------------------------------------------------------------------------------

class Signals(NamedTuple):
    """Per-model signals of a run (float64 numpy), computed once from its logits."""

    keep: np.ndarray      # [M, N] bool
    ok: np.ndarray        # [M] bool, models that did not diverge
    labels: np.ndarray    # [N]
    phi: np.ndarray       # [M, N, A] logit-scaled confidence
    p: np.ndarray         # [M, N] true-class probability (identity query)
    loss: np.ndarray      # [M, N] cross-entropy (identity query)
    probs: np.ndarray     # [M, N, C] softmax (identity query)
    correct: np.ndarray   # [M, N] 0/1 (identity query)
    pop_p: np.ndarray     # [M, T] true-class probability on the test set (RMIA population)
    test_acc: np.ndarray  # [M]
    # RMIA's research-code signal (soft-margin Taylor softmax, T = 2) per query: [M, N, A], [M, T, A]
    p_research: np.ndarray = None
    pop_p_research: np.ndarray = None


def signals_of(run) -> Signals:
    """Signals of a stored run (``jaxmem.run.load_run``)."""
    from jaxmem import signals as sig

    labels = np.asarray(run.labels)
    lg = np.asarray(run.logits, dtype=np.float64)
    tl = np.asarray(run.test_logits, dtype=np.float64)
    tlab = np.asarray(run.test_labels)
    z = lg[:, :, 0]
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return Signals(
        keep=np.asarray(run.keep, bool), ok=~np.asarray(run.diverged, bool), labels=labels,
        phi=np.asarray(sig.logit_scaled_confidence(lg, labels[None, :, None])),
        p=np.asarray(sig.true_class_probability(z, labels[None])),
        loss=np.asarray(sig.cross_entropy(z, labels[None])),
        probs=probs,
        correct=np.asarray(sig.correctness(z, labels[None]), dtype=np.float64),
        pop_p=np.asarray(sig.true_class_probability(tl[:, :, 0], tlab[None])),
        test_acc=(tl[:, :, 0].argmax(-1) == tlab[None]).mean(1),
        p_research=sig.taylor_soft_margin_probability(lg, labels[None, :, None], **RMIA_RESEARCH_SIGNAL),
        pop_p_research=sig.taylor_soft_margin_probability(tl, tlab[None, :, None], **RMIA_RESEARCH_SIGNAL),
    )


#: The RMIA research code's signal on CIFAR-10 (ml_privacy_meter research/2023_rmia configs).
RMIA_RESEARCH_SIGNAL = {"order": 4, "margin": 0.6, "temperature": 2.0}


#: Attack names understood by :func:`audit`.
ATTACKS = ("loss", "shokri", "lira_online", "lira_offline", "lira_online_fixed_variance",
           "lira_offline_fixed_variance", "rmia", "rmia_online", "rmia_online_research")


def _attack_scores(name: str, s: Signals, t: int, sh: np.ndarray) -> np.ndarray:
    """Scores [N] of attack ``name`` against target model ``t`` with shadow models ``sh``."""
    from jaxmem.attacks.lira import lira
    from jaxmem.attacks.rmia import rmia
    from jaxmem.attacks.threshold import loss_attack, shokri

    if name == "loss":
        return np.asarray(loss_attack(s.loss[t]), np.float64)
    if name == "shokri":
        return shokri(s.probs[t], s.labels, s.probs[sh], s.keep[sh])
    if name.startswith("lira_"):
        return np.asarray(lira(s.phi[t], s.phi[sh], s.keep[sh], online="online" in name,
                               fixed_variance=name.endswith("fixed_variance")), np.float64)
    if name == "rmia_online_research":   # the research code's online RMIA: its signal per query,
        # a majority vote over the queries, 20%-trimmed means, γ = 2 (jaxmem.attacks.rmia)
        return rmia(s.p_research[t], s.p_research[sh], s.keep[sh], s.pop_p_research[t],
                    s.pop_p_research[sh], online=True, gamma=2.0, aggregate="vote", trim=0.2)
    if name.startswith("rmia"):
        return rmia(s.p[t], s.p[sh], s.keep[sh], s.pop_p[t], s.pop_p[sh],
                    online=name == "rmia_online")
    raise ValueError(f"unknown attack {name!r} (known: {', '.join(ATTACKS)})")


def audit(s: Signals, attacks, targets, *, num_shadows=None, seed: int = 0) -> dict:
    """Scores of each attack against each target: ``{name: [T, N]}``, plus ``"members"`` [T, N].

    Target ``t``'s shadows are the other non-diverged models (the first ``num_shadows`` of a
    fixed random order when given). NaN marks examples an attack could not score (too few
    IN/OUT shadows); metrics drop them.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(s.keep))
    out = {a: [] for a in attacks}
    for t in targets:
        sh = np.array([m for m in order if m != t and s.ok[m]])
        if num_shadows is not None:
            sh = sh[:num_shadows]
        sh = np.sort(sh)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for a in attacks:
                out[a].append(_attack_scores(a, s, int(t), sh))
    res = {a: np.stack(v) for a, v in out.items()}
    res["members"] = s.keep[np.asarray(targets)]
    return res


def _metrics(scores, members) -> dict:
    """Mean over targets of AUC, TPR at 0.1% / 1% FPR; std of the AUC; fraction scored."""
    from jaxmem.attacks.metrics import roc_auc, tpr_at_fpr

    rows = []
    for sc, mb in zip(scores, members):
        ok = np.isfinite(sc)
        if ok.sum() < 2 or mb[ok].all() or not mb[ok].any():
            continue
        rows.append((roc_auc(sc[ok], mb[ok]), tpr_at_fpr(sc[ok], mb[ok], 0.001),
                     tpr_at_fpr(sc[ok], mb[ok], 0.01), ok.mean()))
    if not rows:
        nan = float("nan")
        return {"auc": nan, "auc_std": nan, "tpr_at_0.001_fpr": nan, "tpr_at_0.01_fpr": nan,
                "scored_fraction": 0.0}
    r = np.asarray(rows, np.float64)
    return {"auc": float(r[:, 0].mean()), "auc_std": float(r[:, 0].std()),
            "tpr_at_0.001_fpr": float(r[:, 1].mean()), "tpr_at_0.01_fpr": float(r[:, 2].mean()),
            "scored_fraction": float(r[:, 3].mean())}


def attack_table(scores: dict, subset=None) -> dict:
    """``{attack: metrics}`` from :func:`audit` output; ``subset`` [N] bool restricts examples."""
    members = scores["members"]
    out = {}
    for a, sc in scores.items():
        if a == "members":
            continue
        if subset is not None:
            out[a] = _metrics(sc[:, subset], members[:, subset])
        else:
            out[a] = _metrics(sc, members)
    return out


def _roc_curves(scores: dict) -> dict:
    from jaxmem.attacks.metrics import roc_curve

    curves = {}
    for a, sc in scores.items():
        if a == "members":
            continue
        cs = []
        for row, mb in zip(sc, scores["members"]):
            ok = np.isfinite(row)
            if ok.sum() > 1 and mb[ok].any() and not mb[ok].all():
                f, t, _ = roc_curve(row[ok], mb[ok])
                cs.append((f, t))
        if cs:
            curves[a] = cs
    return curves


def _targets(cfg, s: Signals, default: int = 4) -> np.ndarray:
    k = cfg.scoring.targets or len(s.keep)
    k = min(k, len(s.keep)) if cfg.scoring.targets else min(default, len(s.keep))
    return np.flatnonzero(s.ok)[:k]


def spearman(a, b) -> float:
    """Spearman rank correlation over the entries finite in both (NaN if constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def _mem(s: Signals):
    from jaxmem.estimators import memorization

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return memorization(s.keep, s.correct, model_mask=s.ok)


def _id_mask(run, transform: str, key: str) -> np.ndarray:
    ids = [i for t in run.dataset["meta"].get("transforms", []) if t["name"] == transform
           for i in (t[key] if isinstance(t[key], list) else [])]
    return np.isin(np.asarray(run.example_ids), np.asarray(ids, np.int64))


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


# ----------------------------------------------------------------------------------------------
# Figures and tables
# ----------------------------------------------------------------------------------------------

def _figure(path: Path, draw: Callable, size=(5, 3.5)) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw(ax)
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return str(path)


def _write_csv(path: Path, rows: list) -> str:
    if not rows:
        save_text(path, "")
        return str(path)
    keys = list(rows[0])
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    fmt = lambda v: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [",".join(keys)] + [",".join(fmt(r.get(k)) for k in keys) for r in rows]
    save_text(path, "\n".join(lines) + "\n")
    return str(path)


def _plot_roc(path: Path, scores: dict, title=None) -> str:
    from jaxmem.attacks.plot import plot_roc

    plot_roc(_roc_curves(scores), path, title=title)
    return str(path)


def _print_rows(rows: list, keys=None):
    if not rows:
        return
    keys = keys or list(rows[0])
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    cells = [[fmt(r.get(k)) for k in keys] for r in rows]
    w = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  " + "  ".join(k.rjust(w[i]) for i, k in enumerate(keys)))
    for c in cells:
        print("  " + "  ".join(v.rjust(w[i]) for i, v in enumerate(c)))


# ----------------------------------------------------------------------------------------------
# Analyses: fn(cfg, workdir, runs, log) -> summary dict ("rows" is printed as a table)
# ----------------------------------------------------------------------------------------------

def _common_row(name, run, s: Signals, mem) -> dict:
    keep = s.keep[s.ok]
    corr = s.correct[s.ok]
    return {"variant": name,
            "test_accuracy": float(s.test_acc[s.ok].mean()),
            "train_accuracy": float((corr * keep).sum() / max(keep.sum(), 1)),
            "mem_mean": _nanmean(mem.mem)}


def analyze_label_noise(cfg, workdir, runs, log):
    """Feldman & Zhang (2020): mislabeled examples are the most memorized; memorization detects them."""
    from jaxmem.attacks.metrics import roc_auc

    rows, hist = [], {}
    for name, run in runs.items():
        s = signals_of(run)
        mem = _mem(s)
        flipped = _id_mask(run, "label_noise", "flipped_ids")
        row = _common_row(name, run, s, mem)
        row["label_noise"] = run.config.data.label_noise
        row["num_flipped"] = int(flipped.sum())
        ok = np.isfinite(mem.mem)
        if flipped.any() and (~flipped).any():
            k = int(flipped.sum())
            order = np.argsort(-np.where(ok, mem.mem, -np.inf), kind="stable")
            row.update({"noisy_label_auroc": roc_auc(mem.mem[ok], flipped[ok]),
                        "mem_noisy": _nanmean(mem.mem[flipped]),
                        "mem_clean": _nanmean(mem.mem[~flipped]),
                        "precision_at_k": float(flipped[order[:k]].mean())})
            hist[name] = (mem.mem[flipped & ok], mem.mem[~flipped & ok])
        sc = audit(s, ["lira_online"], _targets(cfg, s))
        if flipped.any():
            row["lira_auc_noisy"] = attack_table(sc, flipped)["lira_online"]["auc"]
            row["lira_auc_clean"] = attack_table(sc, ~flipped)["lira_online"]["auc"]
        rows.append(row)

    def draw(ax):
        for name, (noisy, clean) in hist.items():
            bins = np.linspace(-1, 1, 41)
            ax.hist(clean, bins, alpha=0.5, density=True, label=f"{name}: clean")
            ax.hist(noisy, bins, alpha=0.5, density=True, label=f"{name}: flipped")
        ax.set_xlabel("memorization")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)

    files = {"memorization_noisy_vs_clean": _figure(workdir / "mem_noisy_vs_clean.png", draw)}
    main = next((r for r in rows if "noisy_label_auroc" in r), rows[0])
    return {"rows": rows, "noisy_label_auroc": main.get("noisy_label_auroc"),
            "mem_noisy": main.get("mem_noisy"), "mem_clean": main.get("mem_clean"),
            "precision_at_k": main.get("precision_at_k"), "files": files}


def _shadow_counts(m: int) -> list:
    top = m - 1
    return sorted({c for c in (4, 8, 16, 32, 64, 128, 256) if c < top} | {top})


def analyze_shadow_models(cfg, workdir, runs, log):
    """Carlini et al. (2022): LiRA dominates loss/Shokri at low FPR and improves with more shadows;
    fixed variance helps with few shadows; RMIA (Zarifzadeh et al. 2024) is strong with few."""
    name, run = next(iter(runs.items()))
    s = signals_of(run)
    targets = _targets(cfg, s)
    names = ["loss", "shokri", "lira_online", "lira_offline", "lira_online_fixed_variance",
             "lira_offline_fixed_variance", "rmia", "rmia_online", "rmia_online_research"]
    by_count, last = [], None
    for c in _shadow_counts(int(s.ok.sum())):
        t0 = time.time()
        sc = audit(s, names, targets, num_shadows=c)
        for a, m in attack_table(sc).items():
            by_count.append({"shadows": c, "attack": a, **m})
        log(f"  shadows={c}: scored in {time.time() - t0:.1f} s")
        last = sc
    attacks = attack_table(last)
    files = {"roc": _plot_roc(workdir / "roc.png", last, f"{len(targets)} targets, "
                              f"{_shadow_counts(int(s.ok.sum()))[-1]} shadows")}

    def draw(ax):
        for a in names:
            r = [x for x in by_count if x["attack"] == a]
            ax.plot([x["shadows"] for x in r], [x["tpr_at_0.01_fpr"] for x in r], "o-", label=a)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("shadow models")
        ax.set_ylabel("TPR at 1% FPR")
        ax.legend(fontsize=6)

    files["tpr_vs_shadows"] = _figure(workdir / "tpr_vs_shadows.png", draw)
    files["by_shadow_count"] = _write_csv(workdir / "by_shadow_count.csv", by_count)
    rows = [{"attack": a, **{k: v for k, v in m.items() if k != "auc_std"}} for a, m in attacks.items()]
    return {"rows": rows, "attacks": attacks, "by_shadow_count": by_count,
            "targets": targets.tolist(), "files": files}


def analyze_dp_sgd(cfg, workdir, runs, log):
    """Abadi et al. (2016) DP-SGD bounds membership inference; audits (Jagielski et al. 2020)
    give empirical ε lower bounds far below the proven ε, and cost accuracy."""
    from jaxmem.attacks.metrics import epsilon_lower_bound

    rows, curves = [], {}
    for name, run in runs.items():
        s = signals_of(run)
        mem = _mem(s)
        targets = _targets(cfg, s)
        sc = audit(s, ["lira_online", "loss"], targets)
        m = attack_table(sc)["lira_online"]
        c = run.config
        eps = run.summary.get("dp", {}).get("epsilon") if c.train.dp.enabled else None
        # Bonferroni over targets: the max of T bounds at level alpha/T is a valid alpha bound.
        lb = max(epsilon_lower_bound(row[np.isfinite(row)], mb[np.isfinite(row)],
                                     alpha=0.05 / len(targets))
                 for row, mb in zip(sc["lira_online"], sc["members"]))
        row = _common_row(name, run, s, mem)
        row.update({"epsilon": None if eps is None or not math.isfinite(eps) else float(eps),
                    "noise_multiplier": c.train.dp.noise_multiplier if c.train.dp.enabled else None,
                    "auc": m["auc"], "tpr_at_0.001_fpr": m["tpr_at_0.001_fpr"],
                    "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"], "epsilon_lower_bound": lb,
                    "loss_attack_auc": attack_table(sc)["loss"]["auc"]})
        rows.append(row)
        curves[name] = sc
    merged = {"members": None}
    roc = {}
    for name, sc in curves.items():
        roc[f"{name} lira_online"] = _roc_curves({"lira_online": sc["lira_online"],
                                                  "members": sc["members"]}).get("lira_online", [])
    from jaxmem.attacks.plot import plot_roc

    files = {"roc": plot_roc({k: v for k, v in roc.items() if v}, workdir / "roc.png",
                             title="LiRA online vs DP-SGD")}
    del merged
    return {"rows": rows, "dp": rows, "files": {k: str(v) for k, v in files.items()}}


def _param_count(c, run) -> int:
    import jax

    from jaxmem.models import count_params
    from jaxmem.train import make_model

    model = make_model(c, int(run.dataset["num_classes"]))
    shape = (1, *run.dataset["input_shape"])
    dtype = np.int32 if c.model.name == "transformer" else np.float32
    v = jax.eval_shape(lambda k: model.init(k, np.zeros(shape, dtype)), jax.random.key(0))
    return count_params(v)


def _size(c) -> str:
    m = c.model
    if m.name == "mlp":
        return str(m.hidden)
    if m.name == "transformer":
        return f"d{m.d_model}x{m.num_layers}"
    return str(m.channels)


def _sweep_rows(cfg, runs, extra=None, attacks=("lira_online",)):
    rows = []
    for name, run in runs.items():
        s = signals_of(run)
        mem = _mem(s)
        c = run.config
        sc = audit(s, list(attacks), _targets(cfg, s))
        m = attack_table(sc)[attacks[0]]
        row = _common_row(name, run, s, mem)
        row.update({"auc": m["auc"], "tpr_at_0.001_fpr": m["tpr_at_0.001_fpr"],
                    "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"]})
        if extra:
            row.update(extra(name, run, s, mem, c))
        rows.append(row)
    return rows


def analyze_capacity(cfg, workdir, runs, log):
    """Zhang et al. (2017), Feldman & Zhang (2020), Carlini et al. (2022): larger models fit noise,
    memorize more and are more vulnerable to membership inference."""
    from jaxmem.attacks.metrics import roc_auc

    def extra(name, run, s, mem, c):
        flipped = _id_mask(run, "label_noise", "flipped_ids")
        fitted = (s.correct * s.keep)[s.ok][:, flipped].sum() / max(s.keep[s.ok][:, flipped].sum(), 1)
        ok = np.isfinite(mem.mem)
        return {"model": c.model.name, "size": _size(c),
                "params": _param_count(c, run), "label_noise": c.data.label_noise,
                "noisy_fit": float(fitted) if flipped.any() else None,
                "noisy_label_auroc": roc_auc(mem.mem[ok], flipped[ok]) if flipped.any() else None}

    rows = _sweep_rows(cfg, runs, extra)

    def draw(ax):
        for model in sorted({r["model"] for r in rows}):
            for noise in sorted({r["label_noise"] for r in rows}):
                r = sorted([x for x in rows if x["model"] == model and x["label_noise"] == noise],
                           key=lambda x: x["params"])
                if r:
                    ax.plot([x["params"] for x in r], [x["mem_mean"] for x in r], "o-",
                            label=f"{model}, noise {noise:g}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("mean memorization")
        ax.legend(fontsize=7)

    files = {"memorization_vs_params": _figure(workdir / "mem_vs_params.png", draw),
             "table": _write_csv(workdir / "capacity.csv", rows)}
    return {"rows": rows, "files": files}


def analyze_regularization(cfg, workdir, runs, log):
    """Regularizers reduce the train-test gap but only partly reduce memorization and attack power
    (Carlini et al. 2022; Tobaben et al.); early stopping trades accuracy for less memorization."""
    def extra(name, run, s, mem, c):
        t = c.train
        return {"weight_decay": t.weight_decay, "dropout": c.model.dropout, "augment": t.augment,
                "epochs": t.epochs}

    rows = _sweep_rows(cfg, runs, extra)
    for r in rows:
        r["gap"] = r["train_accuracy"] - r["test_accuracy"]

    def draw(ax):
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["mem_mean"] for r in rows], 0.4, label="mean memorization")
        ax.bar(x + 0.2, [r["auc"] - 0.5 for r in rows], 0.4, label="LiRA AUC − 0.5")
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, fontsize=7)
        ax.legend(fontsize=7)

    files = {"regularization": _figure(workdir / "regularization.png", draw),
             "table": _write_csv(workdir / "regularization.csv", rows)}
    return {"rows": rows, "files": files}


def analyze_long_tail(cfg, workdir, runs, log):
    """Feldman (2020): examples of rare subpopulations must be memorized to be fit; they are more
    memorized and more exposed to membership inference than frequent ones."""
    def extra(name, run, s, mem, c):
        rare = _id_mask(run, "long_tail", "rare_ids")
        sc = audit(s, ["lira_online"], _targets(cfg, s))
        out = {"num_rare": int(rare.sum())}
        if rare.any():
            tl = np.asarray(run.test_logits[:, :, 0]).argmax(-1)
            ty = np.asarray(run.test_labels)
            rare_cls = np.isin(ty, c.data.long_tail_classes)
            acc = (tl == ty[None])[s.ok]
            out.update({"mem_rare": _nanmean(mem.mem[rare]), "mem_frequent": _nanmean(mem.mem[~rare]),
                        "auc_rare": attack_table(sc, rare)["lira_online"]["auc"],
                        "auc_frequent": attack_table(sc, ~rare)["lira_online"]["auc"],
                        "test_accuracy_rare_classes": float(acc[:, rare_cls].mean()),
                        "test_accuracy_frequent_classes": float(acc[:, ~rare_cls].mean())})
        return out

    rows = _sweep_rows(cfg, runs, extra)
    files = {"table": _write_csv(workdir / "long_tail.csv", rows)}
    main = next((r for r in rows if r.get("num_rare")), rows[0])
    return {"rows": rows, **{k: main.get(k) for k in ("mem_rare", "mem_frequent", "auc_rare",
                                                       "auc_frequent")}, "files": files}


def analyze_mem_vs_mia(cfg, workdir, runs, log):
    """Carlini et al. (2022, Fig. 9), Feldman & Zhang: highly memorized examples are the most
    vulnerable to membership inference; per-example memorization tracks per-example LiRA power."""
    from jaxmem.attacks.metrics import roc_auc

    name, run = next(iter(runs.items()))
    s = signals_of(run)
    mem = _mem(s)
    targets = np.flatnonzero(s.ok)[: cfg.scoring.targets or None]
    sc = audit(s, ["lira_online"], targets)
    scores, members = sc["lira_online"], sc["members"]
    gap = np.full(s.keep.shape[1], np.nan)
    per_auc = np.full(s.keep.shape[1], np.nan)
    for i in range(len(gap)):
        ok = np.isfinite(scores[:, i])
        mi = members[ok, i]
        if mi.any() and (~mi).any():
            gap[i] = scores[ok, i][mi].mean() - scores[ok, i][~mi].mean()
            per_auc[i] = roc_auc(scores[ok, i], mi)
    rho = spearman(mem.mem, gap)
    q = np.nanquantile(mem.mem, [0.5, 0.9])
    top, bottom = mem.mem >= q[1], mem.mem <= q[0]
    t_top = attack_table(sc, top)["lira_online"]
    t_bot = attack_table(sc, bottom)["lira_online"]

    def draw(ax):
        ax.scatter(mem.mem, gap, s=4, alpha=0.5)
        ax.set_xlabel("memorization")
        ax.set_ylabel("mean LiRA score IN − OUT")
        ax.set_title(f"Spearman ρ = {rho:.2f}")

    files = {"scatter": _figure(workdir / "mem_vs_lira.png", draw),
             "per_example": _write_csv(workdir / "per_example.csv", [
                 {"index": i, "mem": float(mem.mem[i]), "lira_gap": float(gap[i]),
                  "lira_auc": float(per_auc[i])} for i in range(len(gap))])}
    rows = [{"group": "top 10% memorized", **t_top}, {"group": "bottom 50% memorized", **t_bot},
            {"group": "all", **attack_table(sc)["lira_online"]}]
    return {"rows": rows, "spearman_mem_vs_lira": rho,
            "spearman_mem_vs_lira_auc": spearman(mem.mem, per_auc),
            "auc_top10_mem": t_top["auc"], "auc_bottom50_mem": t_bot["auc"],
            "tpr_at_0.01_fpr_top10_mem": t_top["tpr_at_0.01_fpr"],
            "tpr_at_0.01_fpr_bottom50_mem": t_bot["tpr_at_0.01_fpr"],
            "num_targets": int(len(targets)), "files": files}


def _recency(cfg, run, workdir: Path, log, phase2_epochs=(0, 5, 10, 20, 40)) -> list:
    """Jagielski et al. (2022), "Measuring forgetting of memorized training examples": train every
    model on all its IN examples for ``E`` epochs, then only on the IN examples of a "late" half for
    more epochs; attack power on the "early" half as the epochs since they were last seen grow.

    The trainer has no schedule of per-example availability, so this drives
    :class:`jaxmem.train.Trainer` directly in two phases (the constant learning rate keeps the
    phases independent of the total length). Results are cached in ``recency.json``.
    """
    import jax.numpy as jnp

    from jaxmem.run import build_dataset
    from jaxmem.train import Trainer, steps_per_epoch_max

    cache = workdir / "recency.json"
    if cache.exists():
        return load_json(cache)
    c = run.config
    c = dataclasses.replace(c, train=dataclasses.replace(c.train, schedule="constant",
                                                         record_forgetting=False))
    ds = build_dataset(c)
    keep = np.asarray(run.keep)
    M, N = keep.shape
    early = np.random.default_rng(c.seed + 7).permutation(N) < N // 2
    E1 = int(math.ceil(c.train.epochs))
    trainer = Trainer(c, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                      steps_per_epoch_max(keep, c.train.batch_size))
    # total epochs for the step-count bookkeeping: the longest schedule
    trainer.cfg = dataclasses.replace(c, train=dataclasses.replace(
        c.train, epochs=float(E1 + max(phase2_epochs))))
    ids = np.arange(M)
    state, aux = trainer.init_chunk(ids, keep)
    state, aux, _ = trainer.train_epochs(state, aux, keep, ids, 0, E1)
    late_keep = keep & ~early[None]
    from jaxmem import signals as sig

    rows, done = [], 0
    for e2 in sorted(phase2_epochs):
        if e2 > done:
            state, aux, _ = trainer.train_epochs(state, aux, late_keep, ids, E1 + done, e2 - done)
            done = e2
        lg = np.asarray(trainer.logits(state, jnp.asarray(ds.x_train), ["identity"]), np.float64)
        phi = np.asarray(sig.logit_scaled_confidence(lg, np.asarray(ds.y_train)[None, :, None]))
        ok = ~np.asarray(aux[0])
        s = Signals(keep, ok, np.asarray(ds.y_train), phi, *([None] * 6))
        sc = audit(s, ["lira_online"], np.flatnonzero(ok)[: (cfg.scoring.targets or 4)])
        spe = int(math.ceil(late_keep.sum(1).mean() / c.train.batch_size))
        a_e = attack_table(sc, early)["lira_online"]
        a_l = attack_table(sc, ~early)["lira_online"]
        rows.append({"epochs_since_seen": e2, "steps_since_seen": e2 * spe,
                     "auc_early": a_e["auc"], "tpr_at_0.01_fpr_early": a_e["tpr_at_0.01_fpr"],
                     "auc_late": a_l["auc"], "tpr_at_0.01_fpr_late": a_l["tpr_at_0.01_fpr"]})
        log(f"  recency: {e2} epochs since seen: AUC early {a_e['auc']:.3f}, late {a_l['auc']:.3f}")
    save_json(cache, rows)
    return rows


def analyze_forgetting(cfg, workdir, runs, log):
    """Toneva et al. (2019): often-forgotten examples are the atypical, memorized ones;
    Jagielski et al. (2022): examples seen early in training are forgotten, attacks on them weaken."""
    from jaxmem.estimators import forgetting_events

    name, run = next(iter(runs.items()))
    s = signals_of(run)
    mem = _mem(s)
    cbe = run.correct_by_epoch
    out = {}
    if cbe is not None:
        ev = forgetting_events(np.asarray(cbe), model_mask=s.ok)
        k = s.keep & s.ok[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            f_in = (ev.forgetting * k).sum(0) / k.sum(0)
            unf = (ev.unforgettable * k).sum(0) / k.sum(0)
        never = unf >= 0.5
        out = {"spearman_forgetting_vs_mem": spearman(f_in, mem.mem),
               "mem_unforgettable": _nanmean(mem.mem[never]),
               "mem_forgettable": _nanmean(mem.mem[~never]),
               "frac_unforgettable": float(np.mean(never))}

        def draw(ax):
            bins = np.arange(0, np.nanmax(f_in) + 2) if np.isfinite(f_in).any() else 10
            idx = np.digitize(f_in, bins) - 1
            xs = [bins[j] for j in range(len(bins)) if (idx == j).any()]
            ax.plot(xs, [_nanmean(mem.mem[idx == j]) for j in range(len(bins)) if (idx == j).any()],
                    "o-")
            ax.set_xlabel("forgetting events (mean over IN models)")
            ax.set_ylabel("mean memorization")

        out["files"] = {"mem_vs_forgetting": _figure(workdir / "mem_vs_forgetting.png", draw)}
    rec = _recency(cfg, run, workdir, log)

    def draw2(ax):
        ax.plot([r["steps_since_seen"] for r in rec], [r["auc_early"] for r in rec], "o-",
                label="early examples (not seen since)")
        ax.plot([r["steps_since_seen"] for r in rec], [r["auc_late"] for r in rec], "s-",
                label="late examples (still trained on)")
        ax.set_xlabel("optimizer steps since the early examples were last seen")
        ax.set_ylabel("LiRA AUC")
        ax.legend(fontsize=7)

    files = out.pop("files", {})
    files["recency"] = _figure(workdir / "recency.png", draw2)
    return {"rows": rec, **out, "recency": rec, "files": files}


def analyze_canary_exposure(cfg, workdir, runs, log, repetitions=(1, 2, 4, 8, 16), per_level=2,
                            num_references=2000):
    """Carlini et al. (2019): exposure of inserted secrets grows with their number of insertions.

    Uses ``model.{d_model,num_layers,num_heads}``, ``train.{learning_rate,batch_size,epochs}``
    (epochs = passes over the corpus, in windows of 32 characters), ``subsets.num_models``
    (language models, each with its own secrets) and ``seed``.
    """
    from jaxmem import lm
    from jaxmem.estimators import exposure_rank, exposure_skewnorm

    cache = workdir / "canaries.json"
    if cache.exists():
        rows = load_json(cache)
    else:
        text, meta = lm.corpus()
        rows = []
        t = cfg.train
        for m in range(cfg.subsets.num_models):
            seed = cfg.seed + 1000 * m
            can = lm.make_canaries(seed, repetitions, per_level)
            full = lm.insert_canaries(text, can, seed)
            vocab = lm.Vocab.of(full)
            tokens = vocab.encode(full)
            context = 32
            steps = max(1, int(round(t.epochs * len(tokens) / (t.batch_size * context))))
            t0 = time.time()
            model, params, losses = lm.train_lm(tokens, len(vocab.chars), cfg.model, steps=steps,
                                                batch_size=t.batch_size, context=context,
                                                learning_rate=t.learning_rate, seed=seed)
            cl, rl = lm.secret_losses(model, params, vocab, can.secrets,
                                      num_references=num_references, seed=seed)
            er = exposure_rank(cl, rl[None].repeat(len(cl), 0))
            es = exposure_skewnorm(cl, rl).exposure
            log(f"  LM {m}: {steps} steps in {time.time() - t0:.0f} s, final loss {losses[-20:].mean():.3f}")
            for j, r in enumerate(can.repetitions):
                rows.append({"model": m, "repetitions": int(r), "canary_loss": float(cl[j]),
                             "exposure_rank": float(er[j]), "exposure_skewnorm": float(es[j]),
                             "final_train_loss": float(losses[-20:].mean()), "steps": steps,
                             "corpus_chars": meta["chars"], "corpus_sha256": meta["sha256"]})
        save_json(cache, rows)
    by_rep = []
    for r in sorted({x["repetitions"] for x in rows}):
        xs = [x for x in rows if x["repetitions"] == r]
        by_rep.append({"repetitions": r, "canaries": len(xs),
                       "exposure_rank": float(np.mean([x["exposure_rank"] for x in xs])),
                       "exposure_skewnorm": float(np.mean([x["exposure_skewnorm"] for x in xs]))})

    def draw(ax):
        ax.scatter([x["repetitions"] for x in rows], [x["exposure_skewnorm"] for x in rows],
                   s=10, alpha=0.5, label="canaries (skew-normal)")
        ax.plot([x["repetitions"] for x in by_rep], [x["exposure_rank"] for x in by_rep], "o-",
                label="mean rank exposure")
        ax.axhline(np.log2(num_references + 1), ls="--", color="gray", lw=0.8,
                   label="rank exposure ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("insertions of the canary")
        ax.set_ylabel("exposure (bits)")
        ax.legend(fontsize=7)

    files = {"exposure": _figure(workdir / "exposure.png", draw),
             "canaries": _write_csv(workdir / "canaries.csv", rows)}
    return {"rows": by_rep, "exposure_by_repetitions": by_rep,
            "spearman_exposure_vs_repetitions": spearman([x["repetitions"] for x in rows],
                                                         [x["exposure_skewnorm"] for x in rows]),
            "num_references": num_references, "max_rank_exposure": float(np.log2(num_references + 1)),
            "files": files}


def analyze_default(cfg, workdir, runs, log):
    """Per-variant memorization, accuracy and LiRA power (any sweep)."""
    rows = _sweep_rows(cfg, runs)
    return {"rows": rows, "files": {"table": _write_csv(workdir / "variants.csv", rows)}}


ANALYSES = {
    "default": analyze_default,
    "label_noise": analyze_label_noise,
    "shadow_models": analyze_shadow_models,
    "dp_sgd": analyze_dp_sgd,
    "capacity": analyze_capacity,
    "regularization": analyze_regularization,
    "forgetting": analyze_forgetting,
    "long_tail": analyze_long_tail,
    "canary_exposure": analyze_canary_exposure,
    "mem_vs_mia": analyze_mem_vs_mia,
}
#: Analyses that train their own models instead of running jaxmem.run.execute per variant.
_NO_VARIANTS = {"canary_exposure"}


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run_experiment(cfg: cfgmod.Config, workdir, *, overwrite: bool = False, progress: bool = True,
                   process_id: int = 0, num_processes: int = 1, log=print) -> dict:
    """Train every variant into ``WORKDIR/variants/NAME``, run the analysis ``experiment.kind``,
    write ``WORKDIR/summary.json`` (+ CSV/PNG files) and print a table. Returns the summary."""
    from jaxmem.run import execute, load_run

    workdir = Path(workdir)
    kind = cfg.experiment.kind
    if kind not in ANALYSES:
        raise cfgmod.ConfigError(f"experiment.kind: unknown analysis {kind!r} "
                                 f"(known: {', '.join(sorted(ANALYSES))})")
    fn = ANALYSES[kind]
    params = dict(cfg.experiment.params)
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("cfg", "workdir", "runs", "log")]
    for k in params:
        if k not in allowed:
            raise cfgmod.ConfigError(f"experiment.params.{k}: not a parameter of the {kind!r} "
                                     f"analysis (it takes: {', '.join(allowed) or 'none'})")
    marker = workdir / "experiment.json"
    if workdir.exists() and any(workdir.iterdir()) and not marker.exists():
        raise RunError(f"{workdir}: exists, is not empty and is not a jaxmem experiment")
    if overwrite and marker.exists() and process_id == 0:
        shutil.rmtree(workdir)
    t0 = time.time()
    variants = [] if kind in _NO_VARIANTS else cfgmod.variant_configs(cfg)
    if process_id == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        save_json(marker, {"kind": kind, "config": cfgmod.to_dict(cfg),
                           "variants": [n for n, _ in variants]})
    for name, vcfg in variants:
        log(f"[{kind}] variant {name}")
        execute(vcfg, workdir / "variants" / name, progress=progress, process_id=process_id,
                num_processes=num_processes, log=log)
    if process_id != 0:
        return {}
    runs = {name: load_run(workdir / "variants" / name) for name, _ in variants}
    log(f"[{kind}] analysis")
    summary = fn(cfg, workdir, runs, log, **params)
    summary = {"experiment": kind, "name": cfg.name, "variants": list(runs),
               "seconds": time.time() - t0, **summary}
    summary = _json_safe(summary)
    save_json(workdir / "summary.json", summary)
    print()
    _print_rows(summary.get("rows", []))
    print(f"\n  summary: {workdir / 'summary.json'}\n  report:  jaxmem report {workdir}")
    return summary
