"""The result of :func:`jaxmem.attacks.evaluate`: per-target metrics of each attack, how much of
each target's members and non-members every attack scored, optionally the scores, and tables of
them (all examples, or a subset).

One aggregation (:func:`aggregate`) serves :meth:`Evaluation.summary` (what runs report) and
:meth:`Evaluation.table` (the analyses): a target whose metrics are undefined (no scored member
or no scored non-member) has NaN metrics; means and stds are over the targets whose metrics are
defined, and ``n_targets`` counts them; a mean over zero targets is NaN (``None`` in JSON).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxmem.attacks._checks import NonFiniteModelWarning
from jaxmem.attacks.roc import roc_curve, roc_metrics

__all__ = ["Evaluation", "FewScoredWarning", "NonFiniteModelWarning", "MIN_SCORED", "aggregate",
           "json_ready"]

#: Fewer scored members (or non-members) than this in a target: a :class:`FewScoredWarning`.
MIN_SCORED = 10


class FewScoredWarning(UserWarning):
    """Some targets' metrics rest on fewer than ``min_scored`` scored members or non-members."""


def json_ready(x):
    """``x`` with numpy scalars/arrays as Python numbers/lists and NaN/inf as ``None`` (JSON has
    no NaN: strict parsers reject Python's ``NaN`` token)."""
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _fraction(k, n):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / np.maximum(n, 1), np.nan)


def _mean_std(v):
    v = np.asarray(v, np.float64)
    v = v[~np.isnan(v)]
    return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))


def aggregate(metrics, scored_members, scored_non_members, members, non_members, *,
              min_scored=MIN_SCORED) -> dict:
    """One row of means over targets.

    ``metrics``: {name: [T] per-target values, NaN where undefined}; the other arguments [T]
    counts: scored members / non-members, and all members / non-members of each target.
    Returns ``{name: mean, name + "_std": std (ddof 0)}`` over the targets where it is defined,
    ``n_targets`` (targets with every metric defined), ``n_targets_undefined``,
    ``n_targets_few_scored`` (defined, but fewer than ``min_scored`` scored members or
    non-members), and ``scored_fraction_members`` / ``scored_fraction_non_members`` (means over
    targets of the fraction scored).
    """
    row = {}
    for name, v in metrics.items():
        row[name], row[name + "_std"] = _mean_std(v)
    sm, sn = np.asarray(scored_members), np.asarray(scored_non_members)
    defined = (sm > 0) & (sn > 0)
    for v in metrics.values():
        defined &= ~np.isnan(np.asarray(v, np.float64))
    row["n_targets"] = int(defined.sum())
    row["n_targets_undefined"] = int(defined.size - defined.sum())
    row["n_targets_few_scored"] = int((defined & (np.minimum(sm, sn) < min_scored)).sum())
    row["scored_fraction_members"] = _mean_std(_fraction(sm, np.asarray(members)))[0]
    row["scored_fraction_non_members"] = _mean_std(_fraction(sn, np.asarray(non_members)))[0]
    return row


@dataclasses.dataclass
class Evaluation:
    """Per-target metrics of each attack.

    ``metrics[attack][metric]`` is a float64 [T] array for ``targets`` (metric names ``"auc"`` and
    ``"tpr_at_{fpr}_fpr"``), NaN for a target without a scored member or non-member;
    ``scored[attack]`` is ``{"members": [T], "non_members": [T]}``, the number of each target's
    members and non-members the attack gave a (non-NaN) score; ``scores[attack]`` is [T, N]
    when ``return_scores=True`` (then ``members`` [T, N] holds the targets' keep rows);
    ``params[attack]`` records settings the evaluation chose (RMIA's offline ``a``; for LiRA
    and RMIA ``"pair_out"``, whether a pair was left out on a balanced design);
    ``excluded_models``: model ids excluded as targets and shadows because their signals hold
    NaN/inf (models left out by ``model_mask`` are not listed); ``n_members`` /
    ``n_non_members`` [T]: each target's members and non-members.
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
    scored: dict = dataclasses.field(default_factory=dict)
    excluded_models: list = dataclasses.field(default_factory=list)
    n_members: np.ndarray | None = None
    n_non_members: np.ndarray | None = None
    min_scored: int = MIN_SCORED

    def __getitem__(self, attack):
        return self.metrics[attack]

    def scored_fraction(self, attack) -> dict:
        """``{"members": [T], "non_members": [T]}``: the fraction of each target's members and
        non-members that ``attack`` scored (NaN for a target with none)."""
        sc = self.scored[attack]
        return {"members": _fraction(sc["members"], self.n_members),
                "non_members": _fraction(sc["non_members"], self.n_non_members)}

    def summary(self):
        """``{attack: row}``, the row of :func:`aggregate`: each metric's mean and std (ddof 0)
        over the targets where it is defined, ``n_targets`` (how many), ``n_targets_undefined``,
        ``n_targets_few_scored``, ``scored_fraction_members`` / ``_non_members``. Means over zero
        targets are NaN."""
        return {a: aggregate(ms, self.scored[a]["members"], self.scored[a]["non_members"],
                             self.n_members, self.n_non_members, min_scored=self.min_scored)
                for a, ms in self.metrics.items()}

    def to_json(self) -> dict:
        """What a run stores as ``results/attacks.json``: targets, excluded models, per-target
        metrics and scored fractions, chosen parameters and the summary; NaN as ``None``."""
        per_target = {}
        for a, ms in self.metrics.items():
            fr = self.scored_fraction(a)
            per_target[a] = {**ms, "scored_fraction_members": fr["members"],
                             "scored_fraction_non_members": fr["non_members"]}
        return json_ready({"targets": np.asarray(self.targets), "excluded_models": self.excluded_models,
                           "per_target": per_target, "params": self.params,
                           "summary": self.summary()})

    def table(self, subset=None, fprs=(0.001, 0.01)) -> dict:
        """``{attack: {"auc", "auc_std", "tpr_at_{fpr}_fpr"..., "scored_fraction", "n_targets"}}``
        from the scores (needs ``return_scores=True``), over the examples in ``subset`` ([N]
        bool; all by default): per target the metrics of its scored (non-NaN) examples in the
        subset, NaN for a target without a scored member or non-member there; means over the
        ``n_targets`` targets where they are defined (AUC also its std, ddof 0; NaN over zero
        targets) and the mean fraction of the subset's examples scored."""
        if self.scores is None:
            raise ValueError("Evaluation.table needs the scores: evaluate(..., return_scores=True)")
        names = [f"tpr_at_{f}_fpr" for f in fprs]
        out = {}
        for a, sc in self.scores.items():
            mb = self.members
            if subset is not None:
                sc, mb = sc[:, subset], mb[:, subset]
            auc, tprs, sm, sn = roc_metrics(sc, mb, fprs, return_counts=True)
            row = aggregate({"auc": auc, **dict(zip(names, tprs))}, sm, sn, mb.sum(1),
                            (~mb).sum(1), min_scored=self.min_scored)
            n = np.float64(max(sc.shape[1], 1))
            out[a] = {"auc": row["auc"], "auc_std": row["auc_std"], **{k: row[k] for k in names},
                      "scored_fraction": float(np.mean((sm + sn) / n)) if sc.shape[0] else 0.0,
                      "n_targets": row["n_targets"]}
        return out

    def curves(self) -> dict:
        """``{attack: [(fpr, tpr) per target]}`` ROC curves over the scored (non-NaN) examples of
        each target with a scored member and non-member (needs the scores)."""
        out = {}
        for a, sc in (self.scores or {}).items():
            cs = []
            for row, mb in zip(sc, self.members):
                ok = ~np.isnan(row)
                if mb[ok].any() and not mb[ok].all():
                    cs.append(roc_curve(row[ok], mb[ok])[:2])
            if cs:
                out[a] = cs
        return out
