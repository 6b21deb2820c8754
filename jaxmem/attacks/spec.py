"""The audit specification: what every caller of :func:`jaxmem.attacks.evaluate` decides, in one
frozen value built from a config's ``scoring`` section (:meth:`AuditSpec.from_scoring`).

A run's scoring (:mod:`jaxmem.runs.score`, :mod:`jaxmem.runs.score_lm`), the experiments' audits
(:func:`jaxmem.analyses.common.audit` and the analyses that call the driver) and the language-model
analyses all pass one, so that an attack's name means the same procedure in a run's
``summary.json`` / ``results/attacks.json`` and in an experiment's table. An analysis that studies
other attacks or shadow counts changes those fields with :meth:`AuditSpec.replace`, visibly.

RMIA's offline coefficient ``a`` (Zarifzadeh et al. 2024; ML Privacy Meter's ``tune_offline_a``)
is chosen by one of two named protocols, :data:`RMIA_TUNINGS`:

* ``"per_target"`` (the default): each target's ``a`` is tuned on that target's shadow
  (reference) models only, one of them playing the target: the target's own membership never
  enters (ML Privacy Meter tunes inside its loop over targets, on the target's paired model).
  About 12x the cost of one offline scoring per target.
* ``"once"``: one ``a`` for every target, tuned on the first usable model against all the other
  usable models. Cheaper, but in leave-one-out evaluation every target's membership row is among
  that tuning's references, and the first model's own members choose it: a selection of one of 11
  grid values, hence a small optimistic bias. Named, recorded, never the default.

A given ``rmia_a`` overrides both (``Evaluation.params["rmia_offline"]["a_source"] = "given"``).
Light on purpose (no jax): config validation reads :data:`RMIA_TUNINGS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jaxmem.attacks.registry import DEFAULT_ATTACKS
from jaxmem.config.registry import provide

__all__ = ["AuditSpec", "RMIA_TUNINGS", "WARNING_POLICIES"]

#: RMIA offline ``a`` tuning protocols (see the module docstring); the first is the default.
RMIA_TUNINGS = ("per_target", "once")
#: "metrics": only the warnings that make a metric undefined or unreliable, once each
#: (:func:`jaxmem.attacks.driver.metric_warnings_only`); "all": every warning as raised.
WARNING_POLICIES = ("metrics", "all")
provide("attacks.rmia_tunings", RMIA_TUNINGS)   # what config validation checks scoring.rmia.tuning against


@dataclass(frozen=True)
class AuditSpec:
    """How the one driver audits a stack of models; every caller passes one to
    :func:`jaxmem.attacks.evaluate` (``spec=``).

    Fields:
      attacks: names of :data:`jaxmem.attacks.registry.ATTACKS`.
      targets: 0: every usable model is a target; k > 0: the first k usable models (inside the
        caller's ``model_mask``), as ``scoring.targets``. A caller's explicit ``targets`` wins.
      num_shadows: None: every other usable model is a shadow; k: a fixed random subset of k.
      shadow_seed: seed of that subset and of the balanced design's pair left out.
      fprs: the FPRs of the reported TPRs.
      pair_out: "auto", True or False (:func:`jaxmem.attacks.evaluate`).
      rmia_tuning: how RMIA's offline ``a`` is chosen when ``rmia_a`` is None: one of
        :data:`RMIA_TUNINGS`.
      rmia_a: a fixed offline ``a`` in [0, 1] (None: tuned).
      rmia_gamma, rmia_aggregate, rmia_trim: RMIA's γ, query aggregation ("mean" / "vote") and
        trimmed-mean fraction (:func:`jaxmem.attacks.relative_membership.rmia`).
      warnings: one of :data:`WARNING_POLICIES`.
      keep_scores: keep every target's [N] scores (``Evaluation.scores``) ...
      max_kept_scores: ... when targets × examples is at most this (a memory bound: beyond it the
        metrics are still computed, the scores are not kept).
    """

    attacks: tuple = DEFAULT_ATTACKS
    targets: int = 0
    num_shadows: int | None = None
    shadow_seed: int = 0
    fprs: tuple = (0.001, 0.01)
    pair_out: str | bool = "auto"
    rmia_tuning: str = RMIA_TUNINGS[0]
    rmia_a: float | None = None
    rmia_gamma: float = 1.0
    rmia_aggregate: str = "mean"
    rmia_trim: float = 0.0
    warnings: str = WARNING_POLICIES[0]
    keep_scores: bool = True
    max_kept_scores: int = 50_000_000

    def __post_init__(self):
        object.__setattr__(self, "attacks", tuple(self.attacks))
        object.__setattr__(self, "fprs", tuple(float(f) for f in self.fprs))
        if self.rmia_tuning not in RMIA_TUNINGS:
            raise ValueError(f"AuditSpec.rmia_tuning: must be one of {RMIA_TUNINGS}, got "
                             f"{self.rmia_tuning!r}")
        if self.warnings not in WARNING_POLICIES:
            raise ValueError(f"AuditSpec.warnings: must be one of {WARNING_POLICIES}, got "
                             f"{self.warnings!r}")
        if self.pair_out not in ("auto", True, False):
            raise ValueError(f'AuditSpec.pair_out: must be "auto", True or False, got {self.pair_out!r}')
        if int(self.targets) < 0:
            raise ValueError(f"AuditSpec.targets: must be >= 0, got {self.targets}")
        if self.rmia_a is not None and not 0.0 <= float(self.rmia_a) <= 1.0:
            raise ValueError(f"AuditSpec.rmia_a: must be in [0, 1] or None, got {self.rmia_a}")

    @classmethod
    def from_scoring(cls, scoring, **changes) -> AuditSpec:
        """The spec of a config's ``scoring`` section: ``attacks``, ``targets`` and
        ``rmia.{tuning, a, gamma, aggregate, trim}``; the rest at their defaults, then
        ``changes`` (field=value, as :meth:`replace`).

        Args:
          scoring: a :class:`jaxmem.config.ScoringConfig` (any object with those attributes).
          **changes: fields to set afterwards.

        Returns:
          AuditSpec.

        Raises:
          ValueError: a field out of range (the config's validation names it first).
        """
        r = scoring.rmia
        spec = cls(attacks=tuple(scoring.attacks), targets=int(scoring.targets),
                   rmia_tuning=r.tuning,
                   rmia_a=None if r.a is None else float(r.a), rmia_gamma=float(r.gamma),
                   rmia_aggregate=str(r.aggregate), rmia_trim=float(r.trim))
        return spec.replace(**changes) if changes else spec

    def replace(self, **changes) -> AuditSpec:
        """A copy with ``changes`` (e.g. an analysis's own attacks or shadow count)."""
        return dataclasses.replace(self, **changes)

    def evaluate_options(self) -> dict:
        """The keyword options of :func:`jaxmem.attacks.evaluate` this spec stands for
        (all but ``attacks``, ``targets``, the warnings policy and the bound on kept scores, which
        the driver resolves itself)."""
        return dict(num_shadows=self.num_shadows,
                    shadow_seed=self.shadow_seed, fprs=self.fprs, pair_out=self.pair_out,
                    rmia_tune=self.rmia_tuning, rmia_a=self.rmia_a, rmia_gamma=self.rmia_gamma,
                    rmia_aggregate=self.rmia_aggregate, rmia_trim=self.rmia_trim)

    def to_json(self) -> dict:
        """JSON-ready fields (``results/attacks.json``'s ``"audit"``)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}
