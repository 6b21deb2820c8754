"""How the one driver (:func:`jaxmem.attacks.evaluate`) calls RMIA: its signals folded over the
queries once per fold, and the offline coefficient ``a`` chosen by a named protocol
(:data:`jaxmem.attacks.spec.RMIA_TUNINGS`): given, ``"per_target"`` (each target's ``a`` tuned on its
own shadow models alone, never on its membership) or ``"once"`` (one ``a`` tuned on the first
usable model against all the others: cheaper, slightly optimistic), recorded in the driver's
``params`` (``a``, ``a_source``).
"""

from __future__ import annotations

import warnings

import numpy as np

from jaxmem.attacks.relative_membership import tune_rmia_a
from jaxmem.attacks.roc import UndefinedMetricWarning

__all__ = ["rmia_call_options"]


def _given_options(opts):
    """RMIA's query aggregation and trimming as passed (JSON-ready); {} when left to defaults."""
    return {k: (str(opts[k]) if k == "aggregate" else float(opts[k]))
            for k in ("aggregate", "trim") if k in opts}


def _offline_a(p, keep, p_pop, mask, shadows, opts, mode):
    """RMIA's offline ``a``: given, tuned once on the usable models, or tuned per target ([T]) on
    that target's shadows alone (``shadows[j]`` never holds target j)."""
    given = _given_options(opts)  # recorded next to a when passed explicitly
    if opts.get("a") is not None:
        return float(opts["a"]), {"a": float(opts["a"]), "a_source": "given", **given}
    kw = dict(gamma=opts.get("gamma", 1.0), aggregate=opts.get("aggregate", "mean"),
              trim=opts.get("trim", 0.0))
    if mode == "once":  # every usable model: the targets' membership rows among them
        usable = np.flatnonzero(mask)
        a, j = _tune_first_defined(p, keep, p_pop, usable, kw)
        if np.isnan(a):
            warnings.warn("evaluate[rmia_offline]: tuning a is undefined on every usable model (none "
                          "has a scored member and non-member); a is NaN, so are the scores: pass "
                          "rmia_a", UndefinedMetricWarning, stacklevel=5)
        return a, {"a": a, "a_source": "tuned_once", "tune_model": int(usable[j]) if usable.size else -1,
                   **given}
    per = [_tune_first_defined(p, keep, p_pop, sh, kw)[0] for sh in shadows]   # the target's
    bad = int(np.isnan(per).sum())                                           # shadows alone
    if bad:
        warnings.warn(f"evaluate[rmia_offline]: tuning a per target is undefined for {bad} of "
                      f"{len(per)} targets (fewer than 2 shadows, or no shadow with a scored member "
                      "and non-member); their a is NaN, so are their scores: pass rmia_a",
                      UndefinedMetricWarning, stacklevel=5)
    return np.array(per), {"a": per, "a_source": "tuned_per_target", **given}


def _tune_first_defined(p, keep, p_pop, models, kw):
    """RMIA's offline ``a`` tuned among ``models`` alone (:func:`jaxmem.attacks.relative_membership.tune_rmia_a`),
    the first of them whose tuning AUC is defined (a scored member and non-member) playing the
    target; (a, its position in ``models``), or (NaN, 0) when none is (or fewer than 2 models)."""
    if len(models) < 2:
        return float("nan"), 0
    if len(models) < keep.shape[0]:   # (no copy of the signals when every model takes part)
        p, keep, p_pop = p[models], keep[models], p_pop[models]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        for j in range(len(models)):
            a = tune_rmia_a(p, keep, p_pop, tune_model=j, **kw)
            if not np.isnan(a):
                return a, j
    return float("nan"), 0


def rmia_call_options(name, entry, sig, keep, mask, targets, shadows, rmia_opts, mode, params):
    """The keyword options of an RMIA entry: the driver's ``rmia_*`` options under the entry's own,
    its signals folded over queries once (averaged, or kept per query for the vote), and the
    offline coefficient ``a`` (given, tuned once, or per target) recorded in ``params``."""
    opts = {**rmia_opts, **entry.options}
    per_query = opts.get("aggregate", "mean") == "vote"
    for k in ("p", "p_pop"):   # the folded array under a key of its own, made once per fold
        key = (opts[k], per_query)
        if key not in sig:   # averaged over queries in float64; else as given (rmia converts
            x = sig[opts[k]]  # each target's slices: no float64 copy of every model's p here)
            x = x.reshape(x.shape[0], x.shape[1], -1)
            sig[key] = x if per_query else (x[..., 0] if x.shape[-1] == 1 else
                                            x.astype(np.float64).mean(-1))
        opts[k] = key
    given = _given_options(rmia_opts)
    if opts.get("online"):
        opts.pop("a", None)
        if given:
            params.setdefault(name, {}).update(given)
    elif targets.size:
        opts["a"], chosen = _offline_a(sig[opts["p"]], keep, sig[opts["p_pop"]], mask, shadows, opts, mode)
        params.setdefault(name, {}).update(chosen)
    return opts
