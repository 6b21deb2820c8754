"""Shapes in signatures: the jaxtyping annotations of the public array functions of
``jaxmem.estimators``, ``jaxmem.attacks`` and ``jaxmem.signals`` are checked here, not at run time.

Each function is wrapped in ``jaxtyping.jaxtyped(typechecker=beartype.beartype)`` and called on
small fresh random inputs of its documented shapes (it must pass, return value included, and the
fields of a NamedTuple result with the arguments' axis sizes), then
with one argument's shape changed so that it no longer fits (it must fail with jaxtyping's
``TypeCheckError`` before the function runs). A second test holds every public function of the
three packages' ``__all__`` to annotated array arguments and a docstring with Args and Returns
(Raises where its code raises, References where it names a paper); the runnable examples of the
docstrings run as doctests. The axis names are the glossary of ``jaxmem/estimators/__init__.py``.
"""

import dataclasses
import doctest
import importlib
import inspect
import re
import types
import typing
import warnings

import beartype
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

import jaxmem.attacks as A
import jaxmem.estimators as E
import jaxmem.signals as S
from jaxmem.attacks import dp_audit, lm_reference, stability, unlearning, unlearning_epsilon
from jaxmem.attacks import lm as lm_attacks

pytest.importorskip("scipy")

# sizes of the named axes (distinct, so a swapped axis cannot pass by accident)
M, N, K, NQ, C, Z, L, EP, G = 6, 9, 4, 2, 3, 7, 5, 4, 3


def _keep(rng, m=M, n=N):
    """[m, n] bool with half the models IN on every example (every example has IN and OUT)."""
    keep = np.zeros((m, n), bool)
    keep[: m // 2] = True
    return rng.permuted(keep, axis=0)


def _layers(rng, d=4, h=3, c=C):
    return [(rng.normal(size=(d, h)), rng.normal(size=h)), (rng.normal(size=(h, c)), rng.normal(size=c))]


def _predicted(layers, x):
    h = np.maximum(x @ layers[0][0] + layers[0][1], 0)
    return np.argmax(h @ layers[1][0] + layers[1][1], axis=1)


def _flip(rng):
    layers = _layers(rng)
    x = rng.normal(size=(N, 4))
    return [layers, x, _predicted(layers, x), 2], {}


def _signal(rng):
    return [rng.normal(size=(M, N, NQ, C)), rng.integers(0, C, N)], {}


def _scores(rng):
    members = np.arange(N) % 2 == 0
    return [rng.normal(size=N) + members, members], {}


def _group_keep(rng):
    ids = np.arange(N) // 3
    return [_keep(rng, M, N // 3)[:, ids], ids], {}


def _rmia(rng):
    keep = _keep(rng)
    return [rng.random((N, NQ)), rng.random((M, N, NQ)), keep, rng.random((Z, NQ)), rng.random((M, Z, NQ))], {"a": 0.3}


def _roles(rng, u=4, r=4, f=3):
    """keep [u + r, N] with the forget set (the first f examples) all IN for u models, all OUT for r."""
    keep = _keep(rng, u + r)
    keep[:u, :f], keep[u:, :f] = True, False
    return keep, np.arange(N) < f


def _trials(rng, shape=(40,)):
    members = rng.random(shape) < 0.5
    return [rng.normal(size=shape) + members, members], {}


def _lm(rng):
    return [_keep(rng), rng.random((M, N, L)), rng.random((N, L)) < 0.8], {}


def grow(x, axis):
    """``x`` one longer along ``axis``."""
    x = np.asarray(x)
    return np.concatenate([x, np.take(x, [0], axis=axis)], axis=axis)


def at(index, axis):
    """A mismatch: positional argument ``index`` (int) or keyword (str) one longer along ``axis``."""
    def bad(args, kwargs):
        if isinstance(index, int):
            args = list(args)
            args[index] = grow(args[index], axis)
        else:
            kwargs = {**kwargs, index: grow(kwargs[index], axis)}
        return args, kwargs
    return bad


def replace(index, fn):
    """A mismatch: positional argument ``index`` replaced by ``fn(argument)`` (another rank or dtype)."""
    def bad(args, kwargs):
        args = list(args)
        args[index] = fn(args[index])
        return args, kwargs
    return bad


def _scalar(x):
    return np.float64(np.asarray(x).ravel()[0])


# name -> (function, inputs(rng) -> (args, kwargs), mismatch(args, kwargs) -> (args, kwargs))
SPECS = {
    # estimators
    "memorization": (E.memorization, lambda r: ([_keep(r), r.random((M, N))], {}), at(1, 1)),
    "counterfactual_memorization": (E.counterfactual_memorization,
                                    lambda r: ([_keep(r), r.normal(size=(M, N))], {}), at(1, 0)),
    "cscore": (E.cscore, lambda r: ([_keep(r), r.random((M, N)), np.repeat([0.25, 0.5], M // 2)], {}), at(2, 0)),
    "influence": (E.influence, lambda r: ([_keep(r), r.random((M, K))], {}), at(1, 0)),
    "top_influencers": (E.top_influencers, lambda r: ([_keep(r), r.random((M, K)), 2], {}), at(1, 0)),
    "leave_subset_out": (E.leave_subset_out, lambda r: ([_keep(r, M, G), r.random((M, K))], {}), at(1, 0)),
    "group_keep_from_ids": (E.group_keep_from_ids, _group_keep, at(1, 0)),
    "forgetting_events": (E.forgetting_events, lambda r: ([r.random((M, EP, N)) < 0.6], {}),
                          replace(0, lambda x: x[0, 0])),   # [N]: no epoch axis
    "exposure_rank": (E.exposure_rank, lambda r: ([r.random(3), r.random((3, 10))], {}), at(0, 0)),
    "exposure_skewnorm": (E.exposure_skewnorm, lambda r: ([r.random(2), r.random((2, 30))], {}), at(0, 0)),
    "convergence": (E.convergence, lambda r: ([_keep(r), r.random((M, N))], {"sizes": [4, M]}), at(1, 0)),
    "bootstrap_ci": (E.bootstrap_ci, lambda r: ([E.memorization, _keep(r), r.random((M, N))], {"num_bootstrap": 4}),
                     at(2, 0)),
    "greedy_flip": (E.greedy_flip, _flip, at(2, 0)),
    "brute_force_flip": (E.brute_force_flip, _flip, at(2, 0)),
    "rewind_layer": (E.rewind_layer, lambda r: ([_layers(r), _layers(r), 0], {}),
                     replace(0, lambda layers: [(w, b[None]) for w, b in layers])),   # b [1, d_out]
    "counterfactual_memorization_lm": (E.counterfactual_memorization_lm, _lm, at(2, 0)),
    "exact_match_accuracy": (E.exact_match_accuracy, _lm, at(1, 2)),
    "text_groups": (E.text_groups, lambda r: ([np.arange(N)], {"keep": _keep(r)}), at(0, 0)),
    "extraction_rate_by_count": (E.extraction_rate_by_count,
                                 lambda r: ([r.random((M, N)) < 0.5, r.integers(1, 4, N)], {"keep": _keep(r)}),
                                 at(1, 0)),
    "loglog_slope": (E.loglog_slope, lambda r: ([np.arange(N) % 3 + 1, r.random(N) + 0.1], {"num_bootstrap": 8}),
                     at(1, 0)),
    "loglinear_slope": (E.loglinear_slope, lambda r: ([np.arange(1.0, G + 1), r.random((G, N))], {"num_bootstrap": 8}),
                        at(0, 0)),
    # attacks
    "lira": (A.lira, lambda r: ([r.normal(size=(N, NQ)), r.normal(size=(M, N, NQ)), _keep(r)], {}), at(0, 1)),
    "global_threshold": (A.global_threshold, lambda r: ([r.normal(size=(N, NQ))], {}), replace(0, _scalar)),
    "rmia": (A.rmia, _rmia, at(4, 0)),
    "rmia_reference_mean": (A.rmia_reference_mean, lambda r: ([r.random((M, N)), _keep(r)], {}), at(1, 1)),
    "tune_rmia_a": (A.tune_rmia_a, lambda r: ([r.random((M, N)), _keep(r), r.random((M, Z))], {}), at(2, 0)),
    "loss_attack": (A.loss_attack, lambda r: ([r.random((N, NQ))], {}), replace(0, _scalar)),
    "confidence_attack": (A.confidence_attack, lambda r: ([r.random((N, NQ))], {}), replace(0, _scalar)),
    "sorted_probability_features": (A.sorted_probability_features, lambda r: ([r.dirichlet(np.ones(C), N)], {"top_k": 2}),
                                    replace(0, _scalar)),
    "shokri": (A.shokri, lambda r: ([r.dirichlet(np.ones(C), N), r.integers(0, C, N), r.dirichlet(np.ones(C), (M, N)),
                                     _keep(r)], {"hidden": 0, "steps": 3, "min_per_class": 1}), at(1, 0)),
    "roc_curve": (A.roc_curve, _scores, at(1, 0)),
    "roc_auc": (A.roc_auc, _scores, at(1, 0)),
    "tpr_at_fpr": (A.tpr_at_fpr, _scores, at(1, 0)),
    "balanced_accuracy": (A.balanced_accuracy, _scores, at(1, 0)),
    "epsilon_lower_bound": (A.epsilon_lower_bound, _scores, at(1, 0)),
    "clopper_pearson": (E.clopper_pearson, lambda r: ([r.integers(0, 5, 4), np.full(4, 5)], {}), at(0, 0)),
    # signals
    "check_labels": (S.check_labels, lambda r: ([r.integers(0, C, N), C], {}),
                     replace(0, lambda y: y > 0)),   # bool labels: not Real
    "logit_scaled_confidence": (S.logit_scaled_confidence, _signal, replace(0, _scalar)),
    "true_class_probability": (S.true_class_probability, _signal, replace(0, _scalar)),
    "cross_entropy": (S.cross_entropy, _signal, replace(0, _scalar)),
    "correctness": (S.correctness, _signal, replace(0, _scalar)),
    "taylor_soft_margin_probability": (S.taylor_soft_margin_probability, _signal, replace(0, _scalar)),
    # modules of jaxmem.attacks outside its __all__: decision stability, DP audits, unlearning audits
    "threshold_decisions": (stability.threshold_decisions,
                            lambda r: ([r.normal(size=(5, N)), np.arange(N) % 2 == 0, 0.2], {}), at(1, 0)),
    "flip_rate": (stability.flip_rate, lambda r: ([r.random((5, N)) < 0.5], {}), replace(0, lambda d: d[0])),
    "decision_stability": (stability.decision_stability,
                           lambda r: ([r.normal(size=(7, N)), np.arange(N) % 2 == 0],
                                      {"fprs": (0.25,), "classes": np.arange(N) % 3}),
                           at("classes", 0)),
    "auditor": (dp_audit.auditor, _trials, at(1, 0)),
    "epsilon_gdp": (dp_audit.epsilon_gdp, _trials, at(1, 0)),
    "epsilon_bounds": (dp_audit.epsilon_bounds, lambda r: (_trials(r)[0], {"methods": ("clopper_pearson",)}), at(1, 0)),
    "epsilon_many_runs": (dp_audit.epsilon_many_runs, lambda r: _trials(r, (20, K)), at(1, 1)),
    "epsilon_one_run": (dp_audit.epsilon_one_run, lambda r: (_trials(r, (2, 30))[0], {"methods": ("one_run",)}),
                        at(1, 0)),
    "mean_ci": (unlearning.mean_ci, lambda r: ([r.normal(size=N)], {}), replace(0, lambda v: v > 0)),  # bool: not Real
    "split_roles": (unlearning.split_roles, lambda r: (list(_roles(r)), {}), at(1, 0)),
    "ulira": (unlearning.ulira, lambda r: ([r.normal(size=(4, N)), r.normal(size=(5, N))], {}), at(1, 1)),
    "forget_epsilons": (unlearning_epsilon.forget_epsilons, lambda r: ([r.normal(size=(4, 3)), r.normal(size=(5, 3))], {}),
                        at(1, 1)),
    "forget_score": (unlearning_epsilon.forget_score, lambda r: ([r.random(N) * 3, 5], {}), replace(0, lambda e: e[None])),
    "population_mia": (unlearning.population_mia, lambda r: ([r.normal(size=(M, 3)), r.normal(size=(M, K))], {}),
                       at(1, 0)),
    "accuracy": (unlearning.accuracy, lambda r: ([r.normal(size=(M, K, C)), r.integers(0, C, K)], {}), at(1, 0)),
    "unlearning_audit": (unlearning.unlearning_audit,
                         lambda r: ([r.normal(size=(8, N)), *_roles(r)], {"test_signals": r.normal(size=(8, K))}),
                         at(2, 0)),
    # language-model attacks
    "lm_loss": (lm_attacks.lm_loss, lambda r: ([r.random((M, N))], {}), replace(0, _scalar)),
    "zlib_ratio": (lm_attacks.zlib_ratio, lambda r: ([r.random((M, N)), r.random(N) + 8], {}), at(1, 0)),
    "min_k": (lm_attacks.min_k, lambda r: ([-r.random((M, N, L)), r.random((N, L)) < 0.9], {"k": 0.5}), at(1, 1)),
    "min_k_plus_plus": (lm_attacks.min_k_plus_plus,
                        lambda r: ([-r.random((M, N, L)), -r.random((M, N, L)), r.random((M, N, L)) + 0.1,
                                    r.random((N, L)) < 0.9], {"k": 0.5}), at(1, 2)),
    "reference_ratio": (lm_reference.reference_ratio, lambda r: ([r.random(N), r.random((M, N)), _keep(r)], {}), at(0, 0)),
    "reference_ratio_loo": (lm_reference.reference_ratio_loo, lambda r: ([r.random((M, N)), _keep(r)], {}), at(1, 0)),
    "reference_model": (lm_reference.reference_model, lambda r: ([r.random((M, N)), r.random(N)], {}), at(1, 0)),
    "lm_lira": (lm_reference.lm_lira, lambda r: ([r.random(N), r.random((M, N)), _keep(r)], {}), at(0, 0)),
    "recall": (lm_attacks.recall, lambda r: ([r.random((M, N)) + 0.1, r.random((M, N))], {}), at(1, 1)),
}

# public functions that take no array (nothing to annotate with a shape)
NO_ARRAYS = {"coin_flip_cutoff"}

# public functions of the three packages that live in modules annotated elsewhere (the driver, the
# LiRA file layout, the plots, the streamed signals, the registry): not held to the checks below
NOT_HERE = {
    "evaluate", "register", "metric_warnings_only", "read_lira_layout", "write_lira_layout",
    "lira_reference_scores", "to_numpy", "tpr_on_grid", "mean_roc", "plot_roc",
    "compute_signals", "model_logits", "rmia_p_spec",
}


def checked(fn):
    return jaxtyping.jaxtyped(typechecker=beartype.beartype)(fn)


def fields_fit(fn, args, kwargs, out):
    """Hold the fields of a NamedTuple result to their annotations, with the axis sizes of the
    arguments: one jaxtyped dataclass of the array arguments and the fields (one shared memo)."""
    if not (isinstance(out, tuple) and hasattr(out, "_fields")):
        return
    sig, hints = inspect.signature(fn), typing.get_type_hints(fn)
    items = []
    for name, value in sig.bind(*args, **kwargs).arguments.items():
        kind = sig.parameters[name].kind
        if kind not in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD) and value is not None and _is_array_hint(hints.get(name)):
            items.append((name, hints[name], value))
    for field, hint in typing.get_type_hints(type(out)).items():
        value = getattr(out, field)
        if value is not None and _is_array_hint(hint):
            items.append((f"{type(out).__name__}_{field}", hint, value))
    fit = dataclasses.make_dataclass("Fit", [(name, hint) for name, hint, _ in items])
    checked(fit)(*[value for _, _, value in items])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_documented_shapes_pass_and_mismatches_fail(name, rng):
    fn, make, mismatch = SPECS[name]
    args, kwargs = make(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # few models: NaN estimates are warned, and fine here
        out = checked(fn)(*args, **kwargs)   # arguments and return value fit their annotations
        fields_fit(fn, args, kwargs, out)    # ... and so do the fields of a NamedTuple result
        bad_args, bad_kwargs = mismatch(args, kwargs)
        with pytest.raises(jaxtyping.TypeCheckError):
            checked(fn)(*bad_args, **bad_kwargs)


def test_jax_arrays_fit_the_annotations(rng):
    keep, correct = _keep(rng), rng.random((M, N)).astype(np.float32)
    checked(E.memorization)(jnp.asarray(keep), jnp.asarray(correct))
    logits, labels = _signal(rng)[0]
    out = checked(S.logit_scaled_confidence)(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))
    assert out.shape == (M, N, NQ)
    with pytest.raises(jaxtyping.TypeCheckError):   # keep [M, N] against correct [M, N + 1]
        checked(E.memorization)(jnp.asarray(keep), jnp.asarray(grow(correct, 1)))


def _is_array_hint(hint):
    if isinstance(hint, type) and issubclass(hint, jaxtyping.AbstractArray):
        return True
    return any(_is_array_hint(a) for a in typing.get_args(hint))


def _public_functions():
    out = {}
    for pkg in (E, A, S, stability, dp_audit, unlearning, unlearning_epsilon, lm_attacks, lm_reference):
        for name in pkg.__all__:
            obj = getattr(pkg, name)
            if isinstance(obj, types.FunctionType):
                out[name] = obj
    return out


def test_every_public_array_function_is_annotated_and_documented():
    public = _public_functions()
    assert not set(public) - set(SPECS) - NOT_HERE - NO_ARRAYS, "a public function is neither checked here nor listed"
    problems = []
    for name in sorted(set(SPECS) | NO_ARRAYS):
        fn = SPECS[name][0] if name in SPECS else public[name]
        hints = typing.get_type_hints(fn)   # the stringified annotations resolve (names imported at top)
        if name in SPECS and not any(_is_array_hint(h) for p, h in hints.items() if p != "return"):
            problems.append(f"{name}: no jaxtyping-annotated array argument")
        doc = inspect.getdoc(fn) or ""
        sections = set(re.findall(r"^(Args|Returns|Raises|References|Example):", doc, re.M))
        for need in ("Args", "Returns"):
            if need not in sections:
                problems.append(f"{name}: no {need} section")
        body = inspect.getsource(fn).split('"""', 2)[-1]
        if re.search(r"^\s+raise ", body, re.M) and "Raises" not in sections:
            problems.append(f"{name}: raises, but no Raises section")
        cites = re.search(r"et al\.|\(\d{4}\)|\d{4}\)", doc.split("References:")[0])
        if cites and "References" not in sections:
            problems.append(f"{name}: names a paper, but no References section")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module", ["jaxmem.estimators.memorization", "jaxmem.estimators.exposure",
                                    "jaxmem.attacks.likelihood_ratio", "jaxmem.attacks.threshold", "jaxmem.attacks.metrics",
                                    "jaxmem.estimators.intervals",
                                    "jaxmem.attacks.stability", "jaxmem.attacks.unlearning", "jaxmem.signals.functions"])
def test_docstring_examples_run(module):
    res = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted > 0 and res.failed == 0
