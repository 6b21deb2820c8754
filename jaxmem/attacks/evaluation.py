"""The result of :func:`jaxmem.attacks.evaluate`: per-target metrics of each attack, optionally
the scores, and tables of them (all examples, or a subset)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxmem.attacks.roc import roc_metrics

__all__ = ["Evaluation"]


@dataclasses.dataclass
class Evaluation:
    """Per-target metrics of each attack.

    ``metrics[attack][metric]`` is a [T] array for ``targets`` (metric names ``"auc"`` and
    ``"tpr_at_{fpr}_fpr"``); ``scores[attack]`` is [T, N] when ``return_scores=True`` (then
    ``members`` [T, N] holds the targets' keep rows); ``params[attack]`` records settings the
    evaluation chose (RMIA's offline ``a``).
    """

    targets: np.ndarray
    metrics: dict
    scores: dict | None = None
    #: settings chosen while evaluating, per attack (JSON-ready): ``params["rmia_offline"]`` is
    #: ``{"a": float, "a_source": "given" | "tuned_once", "tune_model": int}`` or, with
    #: ``rmia_tune="per_target"``, ``{"a": [T floats], "a_source": "tuned_per_target"}``; plus
    #: ``"aggregate"`` / ``"trim"`` when ``rmia_aggregate`` / ``rmia_trim`` were passed (then
    #: also ``params["rmia_online"]``).
    params: dict = dataclasses.field(default_factory=dict)
    members: np.ndarray | None = None

    def __getitem__(self, attack):
        return self.metrics[attack]

    def summary(self):
        """{attack: {metric: mean over targets, metric + "_std": std (ddof 0), "n_targets": T}}."""
        out = {}
        for attack, ms in self.metrics.items():
            row = {}
            for name, v in ms.items():
                row[name] = float(np.nanmean(v)) if v.size else float("nan")
                row[name + "_std"] = float(np.nanstd(v)) if v.size else float("nan")
            row["n_targets"] = int(self.targets.size)
            out[attack] = row
        return out

    def table(self, subset=None, fprs=(0.001, 0.01)) -> dict:
        """``{attack: {"auc", "auc_std", "tpr_at_{fpr}_fpr"..., "scored_fraction"}}`` from the
        scores (needs ``return_scores=True``), over the examples in ``subset`` ([N] bool; all by
        default): per target, the finite scores only, targets whose finite scores are fewer than
        2 or of one class left out; means over the targets (AUC also its std, ddof 0) and the
        fraction of finite scores. NaN metrics (and scored_fraction 0) when no target is left."""
        if self.scores is None:
            raise ValueError("Evaluation.table needs the scores: evaluate(..., return_scores=True)")
        return {a: _table(sc if subset is None else sc[:, subset],
                          self.members if subset is None else self.members[:, subset], fprs)
                for a, sc in self.scores.items()}

    def curves(self) -> dict:
        """``{attack: [(fpr, tpr) per target]}`` ROC curves over the finite scores of each target
        with both classes (needs the scores)."""
        from jaxmem.attacks.roc import roc_curve

        out = {}
        for a, sc in (self.scores or {}).items():
            cs = []
            for row, mb in zip(sc, self.members):
                ok = np.isfinite(row)
                if ok.sum() > 1 and mb[ok].any() and not mb[ok].all():
                    cs.append(roc_curve(row[ok], mb[ok])[:2])
            if cs:
                out[a] = cs
        return out


def _table(scores, members, fprs):
    rows = []
    for sc, mb in zip(scores, members):
        ok = np.isfinite(sc)
        if ok.sum() < 2 or mb[ok].all() or not mb[ok].any():
            continue
        auc, tpr = roc_metrics(sc[ok][None], mb[ok][None], fprs)
        rows.append((auc[0], *tpr[:, 0], ok.mean()))
    names = [f"tpr_at_{f}_fpr" for f in fprs]
    if not rows:
        nan = float("nan")
        return {"auc": nan, "auc_std": nan, **{n: nan for n in names}, "scored_fraction": 0.0}
    r = np.asarray(rows, np.float64)
    return {"auc": float(r[:, 0].mean()), "auc_std": float(r[:, 0].std()),
            **{n: float(r[:, 1 + j].mean()) for j, n in enumerate(names)},
            "scored_fraction": float(r[:, -1].mean())}
