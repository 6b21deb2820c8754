"""Reference-based membership-inference attacks on language models: the target's sequence NLL
calibrated by reference models' NLL of the same text: the reference-model ratio or difference
(Carlini et al. 2021; Mireshghallah et al. 2022) against shadow models or an external model, with
every model the target in turn (:func:`reference_ratio_loo`), and LiRA on sequence NLL
(:func:`lm_lira`). The reference-free ones (loss, zlib, Min-K%, Min-K%++, ReCaLL) and what the two
share (warnings, float64 inputs) are :mod:`jaxmem.attacks.lm`.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Real

from jaxmem.attacks.likelihood_ratio import lira
from jaxmem.attacks.lm import _f64, _warn

__all__ = ["reference_ratio", "reference_ratio_loo", "reference_model", "lm_lira"]


def _reference_score(target, ref, mode):
    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "difference":
            return ref - target
        return ref / target


def _check_mode(mode):
    if mode not in ("difference", "ratio"):
        raise ValueError(f"mode must be 'difference' or 'ratio', got {mode!r}")


def reference_ratio(target_nll: Real[ArrayLike, " N"], reference_nll: Real[ArrayLike, "*_M N"],
                    reference_keep: Bool[ArrayLike, "*_M N"] | None = None, *, mode: str = "difference",
                    min_out: int = 1, reference_use: Bool[ArrayLike, "*_M N"] | None = None,
                    ) -> Float[np.ndarray, " N"]:
    """Reference-model attack (Carlini et al. 2021, Sec. 5.2, "Comparing to other neural language
    models"): calibrate the target's NLL by a reference model that did not train on the example.

    In a stack of models trained on random subsets, the reference for example i is the mean NLL of
    the OUT references (models with ``reference_keep[m, i]`` False), i.e. the log of the geometric
    mean perplexity of the models that never saw i:

    * ``mode="difference"`` (default): score = ref − NLL_target, i.e. −(NLL_target − NLL_ref)
      (Shi et al. 2024's and MIMIR's "Ref"; Watson et al. 2022's difficulty calibration);
    * ``mode="ratio"``: score = ref / NLL_target, the ratio of log-perplexities that Carlini et
      al.'s code sorts by (``np.log(ppl_S) / np.log(ppl_XL)``, descending); +inf at NLL_target = 0.

    Args:
      target_nll: [N] mean token NLL under the target model.
      reference_nll: [M, N] (or [N] for one reference model) NLL under the reference models.
      reference_keep: [M, N] bool, True where reference m trained on example i (those are left
        out); None: every reference is OUT (external reference models).
      mode: ``"difference"`` or ``"ratio"``.
      min_out: examples with fewer OUT references score NaN (with a warning).
      reference_use: [M, N] bool, False where reference m must not enter example i's mean (the
        model :func:`jaxmem.attacks.evaluate` leaves out with the target on a balanced design,
        ``pair_out``); None: all enter.

    Returns:
      float64 [N].

    Raises:
      ValueError: an unknown ``mode``, or shapes that disagree.

    References:
      Carlini et al. (2021), "Extracting training data from large language models", Sec. 5.2;
      Watson et al. (2022), "On the importance of difficulty calibration in membership inference
      attacks", ICLR.
    """
    _check_mode(mode)
    t = _f64(target_nll, "target_nll")
    r = _f64(reference_nll, "reference_nll")
    if r.ndim == 1:
        r = r[None]
    if t.ndim != 1 or r.ndim != 2 or r.shape[1] != t.shape[0]:
        raise ValueError(f"target_nll must be [N] and reference_nll [M, N]; got {t.shape} and {r.shape}")
    out = np.ones(r.shape, bool) if reference_keep is None else ~np.asarray(reference_keep, bool)
    if out.shape != r.shape:
        raise ValueError(f"reference_keep {out.shape} must have the shape of reference_nll {r.shape}")
    if reference_use is not None:
        use = np.asarray(reference_use, bool)
        if use.shape != r.shape:
            raise ValueError(f"reference_use {use.shape} must have the shape of reference_nll {r.shape}")
        out = out & use
    n_out = out.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.where(out, r, 0.0).sum(0) / n_out
    few = n_out < max(int(min_out), 1)
    ref = np.where(few, np.nan, ref)
    _warn(int(few.sum()), few.size, f"fewer than {max(int(min_out), 1)} OUT reference models", "reference_ratio")
    s = _reference_score(t, ref, mode)
    nan_in = (np.isnan(t) | np.isnan(ref)) & ~few
    _warn(int(nan_in.sum()), nan_in.size, "a NaN target or reference NLL", "reference_ratio")
    return s


def reference_ratio_loo(nll: Real[ArrayLike, "M N"], keep: Bool[ArrayLike, "M N"], *, mode: str = "difference",
                        min_out: int = 1, model_mask: Bool[ArrayLike, " M"] | None = None) -> Float[np.ndarray, "M N"]:
    """:func:`reference_ratio` with every model of a stack as the target and the other usable
    models as its references (leave-one-out), in one pass: for target t and example i the
    reference is the mean NLL over models m ≠ t with ``keep[m, i]`` False.

    Args:
      nll: [M, N] mean token NLL of every model on every example.
      keep: [M, N] bool membership.
      mode, min_out: as :func:`reference_ratio`.
      model_mask: [M] bool, models usable as references (e.g. not diverged); default all.

    Returns:
      float64 [M, N] (row t: the scores of target t), equal to
      ``reference_ratio(nll[t], nll[others], keep[others])`` up to float64 rounding. It leaves no
      pair out: on a balanced design :func:`jaxmem.attacks.evaluate`'s ``reference_out`` does
      (``reference_use``), and differs from this.

    Raises:
      ValueError: an unknown ``mode``, ``nll`` and ``keep`` not both [M, N], or ``model_mask``
        not [M].

    References:
      Carlini et al. (2021), Sec. 5.2; Watson et al. (2022), difficulty calibration.
    """
    _check_mode(mode)
    x = _f64(nll, "nll")
    keep = np.asarray(keep, bool)
    if x.ndim != 2 or keep.shape != x.shape:
        raise ValueError(f"nll and keep must both be [M, N]; got {x.shape} and {keep.shape}")
    use = np.ones(x.shape[0], bool) if model_mask is None else np.asarray(model_mask, bool)
    if use.shape != (x.shape[0],):
        raise ValueError(f"model_mask must be [M] = ({x.shape[0]},), got {use.shape}")
    out = ~keep & use[:, None]
    tot = np.where(out, x, 0.0).sum(0)
    cnt = out.sum(0)
    self_out = out  # the target's own value is in the OUT sum iff it is a usable OUT model
    n_loo = cnt[None] - self_out
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = (tot[None] - np.where(self_out, x, 0.0)) / n_loo
    few = n_loo < max(int(min_out), 1)
    ref = np.where(few, np.nan, ref)
    _warn(int(few.sum()), few.size, f"fewer than {max(int(min_out), 1)} OUT reference models",
          "reference_ratio_loo")
    # a NaN among the OUT references poisons the sum: recompute those columns directly
    bad_cols = np.flatnonzero(np.any(out & np.isnan(x), axis=0))
    for i in bad_cols:
        for t in range(x.shape[0]):
            if not few[t, i]:
                o = out[:, i].copy()
                o[t] = False
                ref[t, i] = x[o, i].mean()
    s = _reference_score(x, ref, mode)
    nan_in = (np.isnan(x) | np.isnan(ref)) & ~few
    _warn(int(nan_in.sum()), nan_in.size, "a NaN target or reference NLL", "reference_ratio_loo")
    return s


def reference_model(target_nll: Real[ArrayLike, "*batch N"], reference_nll: Real[ArrayLike, " N"], *,
                    mode: str = "ratio") -> Float[np.ndarray, "*batch N"]:
    """External reference-model attack (Carlini et al. 2021, "Extracting training data from large
    language models", Sec. 5.2, "Comparing to other neural language models"; MIMIR's "ref"):
    calibrate the target's NLL by the NLL of one model that is not the target and whose training
    data is independent of the membership being tested (a smaller or older public model).

    * ``mode="ratio"`` (default): score = NLL_ref / NLL_target, the ratio of log-perplexities
      Carlini et al.'s code sorts by (``np.log(ppl_S) / np.log(ppl_XL)``, descending); +inf at
      NLL_target = 0;
    * ``mode="difference"``: score = NLL_ref − NLL_target (MIMIR's and Shi et al. 2024's "Ref").

    Unlike ``reference_out`` (:func:`reference_ratio_loo`), the reference is the same for every
    target model and never depends on the stack's membership.

    Args:
      target_nll: [..., N] mean token NLL (nats) under the target model(s).
      reference_nll: [N] the external reference model's mean token NLL of the same texts (the same
        tokens scored), broadcast over the leading axes.
      mode: ``"ratio"`` or ``"difference"``.

    Returns:
      float64 [..., N]; NaN (with :class:`LMAttackWarning`) where either NLL is NaN.

    Raises:
      ValueError: an unknown ``mode``, or ``reference_nll`` not [N] matching ``target_nll``.

    References:
      Carlini et al. 2021 (USENIX Security), Sec. 5.2; Duan et al. 2024 (MIMIR), "ref".
    """
    _check_mode(mode)
    t = _f64(target_nll, "target_nll")
    r = _f64(reference_nll, "reference_nll")
    if r.ndim != 1 or r.shape[0] != t.shape[-1]:
        raise ValueError(f"reference_nll must be [N] = ({t.shape[-1]},), got {r.shape}")
    s = _reference_score(t, r, mode)
    nan_in = np.isnan(t) | np.isnan(r)
    _warn(int(nan_in.sum()), nan_in.size, "a NaN target or reference NLL", "reference_model")
    return s


def lm_lira(target_nll: Real[ArrayLike, " N"], shadow_nll: Real[ArrayLike, "M N"], shadow_keep: Bool[ArrayLike, "M N"],
            **lira_kwargs) -> Float[np.ndarray, " N"]:
    """LiRA on sequences (Carlini et al. 2022, "Membership inference attacks from first
    principles", Alg. 1) with the per-sequence statistic φ = −NLL (the mean token log-probability),
    which, as an average over many tokens, is close to Gaussian across models.

    This calls :func:`jaxmem.attacks.lira` (all its options: ``online``, ``fixed_variance``,
    ``location``, ``min_in``, ``min_out``, ...); for every model as the target use
    ``jaxmem.attacks.evaluate(-nll[..., None], keep, attacks=...)`` directly.

    Args:
      target_nll: [N] mean token NLL under the target model.
      shadow_nll: [M, N] under the M shadow models.
      shadow_keep: [M, N] bool, True where shadow m trained on sequence i.
      **lira_kwargs: passed to :func:`jaxmem.attacks.lira`.

    Returns:
      float64 [N], higher = more likely a member.

    Raises:
      ValueError: as :func:`jaxmem.attacks.lira`.

    References:
      Carlini et al. (2022), "Membership inference attacks from first principles", Alg. 1.
    """
    t = _f64(target_nll, "target_nll")
    s = _f64(shadow_nll, "shadow_nll")
    return lira(-t, -s, shadow_keep, **lira_kwargs)
