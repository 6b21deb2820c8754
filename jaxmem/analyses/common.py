"""What the analyses share: a run's signals (the one streamed computation, in float64) and its
audit (the one attack driver), rank correlation, masks of transformed examples, the rows every
sweep reports, and atomic figures and tables."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from jaxmem import attacks as mia
from jaxmem.attacks import AuditSpec
from jaxmem.attacks.registry import get
from jaxmem.estimators import memorization
from jaxmem.io import atomic_path, save_text
from jaxmem.signals import compute_signals

__all__ = ["run_signals", "audit_spec", "audit", "rmia_tuning", "ANALYSIS_TARGETS", "spearman", "memorization_of", "id_mask",
           "nanmean", "common_row", "sweep_rows", "figure", "write_csv", "print_rows", "json_safe"]


def run_signals(run, attacks=(), extra=()):
    """Float64 signals of a stored run (:func:`jaxmem.signals.compute_signals`): correctness on
    the training and test sets, what ``attacks`` need, and ``extra`` names."""
    names = ["correct", "correct_pop", *extra] + [n for a in attacks for n in get(a).needs]
    return compute_signals(run.logits, run.labels, names, test_logits=run.test_logits,
                           test_labels=run.test_labels, dtype=np.float64)


def audit_spec(config, attacks, *, default_targets: int = 0, **changes) -> AuditSpec:
    """The audit specification of a run's config (:meth:`AuditSpec.from_scoring` of
    ``config.scoring``, the one its own scoring uses) with the analysis's ``attacks`` and any
    other ``changes`` (e.g. ``num_shadows``), made visible at the call.

    Args:
      config: the run's :class:`jaxmem.config.Config` (``run.config``).
      attacks: the attacks the analysis studies.
      default_targets: the targets when ``scoring.targets`` is 0: 0 (every usable model, as a
        run's own scoring) or k (the first k usable models: :data:`ANALYSIS_TARGETS` for the
        analyses that sweep many variants). The spec records the number used.
      **changes: other :class:`~jaxmem.attacks.AuditSpec` fields.

    Returns:
      AuditSpec.
    """
    changes.setdefault("targets", config.scoring.targets or default_targets)
    return AuditSpec.from_scoring(config.scoring, attacks=tuple(attacks), **changes)


def audit(sig, keep, ok, spec: AuditSpec, targets=None, *, labels=None):
    """Each attack of ``spec`` against each target with the other non-diverged models as shadows
    (the first ``spec.num_shadows`` of a fixed random order when given), like Carlini et al.
    (2022, Sec. VI): :func:`jaxmem.attacks.evaluate` under ``spec`` (:func:`audit_spec`: the
    run's own scoring policy, e.g. RMIA's offline ``a`` tuned per target on its own shadows by
    default; the per-example warnings silenced, those that make a metric undefined or
    unreliable let through once each). NaN marks examples an attack could not score (too few
    IN/OUT shadows); :meth:`~jaxmem.attacks.evaluation.Evaluation.table` drops them.

    Args:
      sig: the run's signals (:func:`run_signals`; their ``labels`` are passed on).
      keep: [M, N] bool membership.
      ok: [M] bool, the non-diverged models.
      spec: the audit specification.
      targets: model indices to attack (default: the spec's ``targets``, the first k usable
        models, or all of them for 0).
      labels: [N] true labels, for a signals dict that does not carry them (default: the
        signals' own ``labels``).

    Returns:
      :class:`~jaxmem.attacks.evaluation.Evaluation` with the scores kept.

    Raises:
      TypeError: ``spec`` is not an :class:`~jaxmem.attacks.AuditSpec`.
    """
    if not isinstance(spec, AuditSpec):
        raise TypeError(f"audit: pass an AuditSpec (audit_spec(run.config, attacks)), got {type(spec).__name__}")
    return mia.evaluate(sig, keep, targets=None if targets is None else np.asarray(targets),
                        spec=spec, model_mask=ok, labels=labels)


def rmia_tuning(ev, attack) -> str | None:
    """How ``attack``'s RMIA offline ``a`` was chosen in ``ev`` ("tuned_per_target",
    "tuned_once" or "given"; None for other attacks): the column experiment tables record."""
    return ev.params.get(attack, {}).get("a_source")


#: Targets of an analysis that sweeps variants when ``scoring.targets`` is 0 (the first 4 usable
#: models; a run's own scoring attacks every model): :func:`audit_spec`'s ``default_targets``.
ANALYSIS_TARGETS = 4


def spearman(a, b) -> float:
    """Spearman rank correlation over the entries finite in both (NaN if constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def memorization_of(keep, sig, ok):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return memorization(keep, sig["correct"], model_mask=ok)


def id_mask(run, transform: str, key: str) -> np.ndarray:
    ids = [i for t in run.dataset["meta"].get("transforms", []) if t["name"] == transform
           for i in (t[key] if isinstance(t[key], list) else [])]
    return np.isin(np.asarray(run.example_ids), np.asarray(ids, np.int64))


def nanmean(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def common_row(name, keep, ok, sig, mem) -> dict:
    k = keep[ok]
    corr = sig["correct"][ok]
    return {"variant": name,
            "test_accuracy": float(sig["correct_pop"].mean(1)[ok].mean()),
            "train_accuracy": float((corr * k).sum() / max(k.sum(), 1)),
            "mem_mean": nanmean(mem.mem)}


def sweep_rows(cfg, runs, extra=None, attacks=("lira_online",)):
    """One row per variant: accuracy, mean memorization, the first attack's AUC / TPRs, and
    ``extra(name, run, sig, mem, config)``'s columns."""
    rows = []
    for name, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        sig = run_signals(run, attacks)
        mem = memorization_of(keep, sig, ok)
        c = run.config
        ev = audit(sig, keep, ok, audit_spec(c, attacks, default_targets=ANALYSIS_TARGETS))
        m = ev.table()[attacks[0]]
        row = common_row(name, keep, ok, sig, mem)
        row.update({"auc": m["auc"], "tpr_at_0.001_fpr": m["tpr_at_0.001_fpr"],
                    "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"], "n_targets": m["n_targets"]})
        if extra:
            row.update(extra(name, run, sig, mem, c))
        rows.append(row)
    return rows


def figure(path: Path, draw: Callable, size=(5, 3.5)) -> str:
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


def write_csv(path: Path, rows: list) -> str:
    if not rows:
        save_text(path, "")
        return str(path)
    keys = list(rows[0])
    for r in rows[1:]:
        keys += [k for k in r if k not in keys]
    fmt = lambda v: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
    lines = [",".join(keys)] + [",".join(fmt(r.get(k)) for k in keys) for r in rows]
    save_text(path, "\n".join(lines) + "\n")
    return str(path)


def print_rows(rows: list, keys=None):
    if not rows:
        return
    keys = keys or list(rows[0])
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    cells = [[fmt(r.get(k)) for k in keys] for r in rows]
    w = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  " + "  ".join(k.rjust(w[i]) for i, k in enumerate(keys)))
    for c in cells:
        print("  " + "  ".join(v.rjust(w[i]) for i, v in enumerate(c)))


def json_safe(x):
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
