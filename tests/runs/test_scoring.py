"""Scoring options of a run: `scoring.influence_top_k` (Feldman & Zhang 2020, Eq. 2) against a
float64 brute force over the stored test logits, and `scoring.rmia` against the attack called
directly on the stored logits."""

from __future__ import annotations

import csv
import json
import shutil

import helpers_run as H
import numpy as np
import numpy.testing as npt
import pytest

from jaxmem import config as cfgmod
from jaxmem import runs as R
from jaxmem.io import RunError

K = 3


def test_influence_table_is_each_test_examples_top_k():
    wd = H.finished_reference(tuple(H.SMALL + [f"scoring.influence_top_k={K}"]))
    keep = np.load(wd / "keep.npy")
    ok = ~np.load(wd / "diverged.npy")
    tl = np.load(wd / "test_logits.npy")[:, :, 0].astype(np.float64)
    tlab = np.load(wd / "test_labels.npy")
    correct = (tl.argmax(-1) == tlab[None]).astype(np.float64)     # [M, T]
    M, N = keep.shape
    T = len(tlab)
    brute = np.full((N, T), np.nan)
    for i in range(N):
        ins = [m for m in range(M) if ok[m] and keep[m, i]]
        outs = [m for m in range(M) if ok[m] and not keep[m, i]]
        if ins and outs:
            brute[i] = correct[ins].mean(0) - correct[outs].mean(0)
    rows = list(csv.DictReader(open(wd / "results" / "influence.csv")))
    assert len(rows) == T * K
    ids, labels = np.load(wd / "example_ids.npy"), np.load(wd / "labels.npy")
    for j in range(T):
        mine = [r for r in rows if int(r["test_index"]) == j]
        assert [int(r["rank"]) for r in mine] == list(range(1, K + 1))   # 1-based, as everywhere
        got_i = np.array([int(r["train_index"]) for r in mine])
        got_v = np.array([float(r["influence"]) for r in mine])
        # the chosen pairs' values are theirs, and they are a top k (ties may pick any of equals)
        npt.assert_allclose(got_v, brute[got_i, j], atol=1e-6)
        npt.assert_allclose(got_v, np.sort(np.nan_to_num(brute[:, j], nan=-np.inf))[::-1][:K], atol=1e-6)
        assert all(int(r["train_id"]) == ids[i] and int(r["train_label"]) == labels[i]
                   for r, i in zip(mine, got_i))
    s = json.loads((wd / "summary.json").read_text())["influence"]
    assert s["top_k"] == K
    best = np.nanmax(brute, axis=0)
    # float32 against float64: a value within rounding of the threshold may fall either side
    assert int((best >= 0.15 + 1e-6).sum()) <= s["test_examples_with_a_pair"] <= int((best >= 0.15 - 1e-6).sum())
    assert s["top10_pairs"][0]["influence"] == pytest.approx(best.max(), abs=1e-6)


def test_influence_top_k_larger_than_the_training_set_is_refused(tmp_path):
    cfg = cfgmod.from_dict({"data": {"max_train": 50, "max_test": 20}, "subsets": {"num_models": 4},
                            "scoring": {"influence_top_k": 51}})
    with pytest.raises(RunError, match="scoring.influence_top_k: 51 is more than the 50"):
        R.execute(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    with pytest.raises(cfgmod.ConfigError, match="scoring.influence_top_k"):
        cfgmod.from_dict({"scoring": {"influence_top_k": -1}})


@pytest.mark.parametrize("rmia", [
    {},   # ML Privacy Meter's defaults: identity query, softmax, tuned a
    {"signal": "taylor_soft_margin", "temperature": 2.0, "aggregate": "vote", "trim": 0.2,
     "gamma": 2.0, "a": 0.33},   # the authors' research code on CIFAR-10
])
def test_scoring_rmia_options_reach_the_attack(rmia):
    """`scoring.rmia` through `jaxmem score` gives what jaxmem.attacks.evaluate gives on p
    computed here from the stored logits (every query for the vote, else the identity query)."""
    from jaxmem import attacks, signals

    sets = tuple(H.SMALL + ['signals.queries=["identity","flip"]'])
    wd = H.fresh_dir(f"rmia-{len(rmia)}")
    shutil.copytree(H.finished_reference(sets), wd)
    extra = [f"scoring.rmia.{k}={json.dumps(v)}" for k, v in rmia.items()]
    r = H.cli(["score", wd, "--set", 'scoring.attacks=["rmia_offline","rmia_online"]'] +
              [a for e in extra for a in ("--set", e)])
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads((wd / "results" / "attacks.json").read_text())
    lg, tl = np.load(wd / "logits.npy").astype(np.float64), np.load(wd / "test_logits.npy").astype(np.float64)
    y, ty = np.load(wd / "labels.npy"), np.load(wd / "test_labels.npy")
    vote = rmia.get("aggregate") == "vote"
    if rmia.get("signal") == "taylor_soft_margin":
        p = signals.taylor_soft_margin_probability(lg, y[None, :, None], temperature=2.0)
        pp = signals.taylor_soft_margin_probability(tl, ty[None, :, None], temperature=2.0)
    else:
        p = signals.true_class_probability(lg, y[None, :, None])
        pp = signals.true_class_probability(tl, ty[None, :, None])
    if not vote:
        p, pp = p[:, :, 0], pp[:, :, 0]
    kw = {f"rmia_{k}": v for k, v in rmia.items() if k in ("aggregate", "trim", "gamma", "a")}
    ok = ~np.load(wd / "diverged.npy")
    want = attacks.evaluate({"p": p, "p_pop": pp},   # float64: the run keeps RMIA's p exact
                            np.load(wd / "keep.npy"), attacks=("rmia_offline", "rmia_online"),
                            model_mask=ok, **kw)
    for a in ("rmia_offline", "rmia_online"):
        npt.assert_allclose(got["per_target"][a]["auc"], np.asarray(want.metrics[a]["auc"]), atol=1e-12)
    if "a" in rmia:
        assert got["params"]["rmia_offline"]["a"] == 0.33
    assert got["params"]["rmia_online"]["aggregate"] == rmia.get("aggregate", "mean")


def test_a_finished_run_reruns_with_other_scoring_keys():
    """Every scoring.* key may change between runs of one workdir (scoring reads stored logits);
    a training key still may not."""
    wd = H.fresh_dir("rescore")
    shutil.copytree(H.finished_reference(), wd)
    r = H.run_here(wd, H.SMALL + ["scoring.influence_top_k=2", "scoring.rmia.gamma=2.0"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((wd / "summary.json").read_text())["influence"]["top_k"] == 2
    r = H.run_here(wd, H.SMALL + ["train.learning_rate=0.5"])
    assert r.returncode != 0 and "train.learning_rate" in r.stderr


@pytest.mark.parametrize("block", [0, 1, 3])
def test_signals_streamed_from_a_memmap_match_numpy(rng, tmp_path, block):
    """compute_signals (what score, the analyses and the report read) against numpy on the whole
    array, with and without φ (without it, only the identity query is read), p of one or every
    query, float32 and float64."""
    from jaxmem.signals import compute_signals, rmia_p_spec

    M, N, A, C = 7, 30, 3, 5
    z = rng.normal(size=(M, N, A, C)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    mm = np.load(tmp_path / "z.npy", mmap_mode="r")
    y = rng.integers(0, C, N)
    z64 = z.astype(np.float64)
    soft = np.exp(z64 - z64.max(-1, keepdims=True))
    soft /= soft.sum(-1, keepdims=True)
    p_true = np.take_along_axis(soft, np.broadcast_to(y[None, :, None, None], (M, N, A, 1)), -1)[..., 0]
    correct = (z64[:, :, 0].argmax(-1) == y).astype(np.float32)
    rc = cfgmod.RMIAConfig()
    for want_phi, every in [(True, False), (False, False), (False, True)]:
        spec = rmia_p_spec(rc.signal, rc.temperature, rc.margin, rc.order, every_query=every)
        names = ["correct", "p"] + (["phi"] if want_phi else []) + (["correct_query_average"] if every else [])
        out = compute_signals(mm, y, names, specs={"p": spec}, block=block)
        npt.assert_array_equal(out["correct"], correct)
        npt.assert_allclose(out["p"], p_true if every else p_true[:, :, 0], rtol=1e-6)
        assert ("phi" in out) == want_phi
        if every:
            npt.assert_array_equal(out["correct_query_average"], (z64.mean(2).argmax(-1) == y))
    full = compute_signals(mm, y, ["correct", "phi", "probs", "loss"], block=block, dtype=np.float64)
    zy = np.take_along_axis(z64, np.broadcast_to(y[None, :, None, None], (M, N, A, 1)), -1)[..., 0]
    other = np.log(np.exp(z64).sum(-1) - np.exp(zy))
    npt.assert_allclose(full["phi"], zy - other, rtol=1e-5, atol=1e-5)
    assert full["phi"].dtype == np.float64
    npt.assert_allclose(full["probs"], soft[:, :, 0], rtol=1e-12)
    npt.assert_allclose(full["loss"], -np.log(p_true[:, :, 0]), rtol=1e-10)
    pop = compute_signals(mm, y, ["correct_pop"], test_logits=mm[:, :4], test_labels=y[:4], block=block)
    npt.assert_array_equal(pop["correct_pop"], correct[:, :4])


def test_rmia_p_is_kept_in_float64(rng):
    """RMIA's p is stored in float64 (`exact=("p",)`, as runs.score asks): float32 cannot resolve
    1 - p below ~6e-8, which moved per-example RMIA scores by up to 0.0117 (#27.7); the other
    signals keep the float32 storage."""
    from jaxmem.signals import compute_signals, rmia_p_spec

    M, N, T, C = 3, 40, 10, 5
    z = rng.normal(size=(M, N, 1, C)) * 12.0                      # confident models: p near 1
    tz = rng.normal(size=(M, T, 1, C)) * 12.0
    y, ty = rng.integers(0, C, N), rng.integers(0, C, T)
    spec = {"p": rmia_p_spec()}
    sg = compute_signals(z.astype(np.float32), y, ["p", "p_pop", "loss"], test_logits=tz.astype(np.float32),
                         test_labels=ty, specs=spec, exact=("p",))
    z64 = z.astype(np.float32).astype(np.float64)
    lse = np.log(np.exp(z64 - z64.max(-1, keepdims=True)).sum(-1)) + z64.max(-1)
    want = np.exp(np.take_along_axis(z64, y[None, :, None, None], -1)[..., 0] - lse)[:, :, 0]
    assert sg["p"].dtype == sg["p_pop"].dtype == np.float64 and sg["loss"].dtype == np.float32
    npt.assert_allclose(sg["p"], want, rtol=1e-13, atol=0)
    assert np.abs(sg["p"].astype(np.float32) - want).max() > 1e-9   # (what float32 storage lost)


def test_scoring_memory_check_gets_the_test_set_size(monkeypatch):
    """score() asks the memory check with N training and T test examples (T is axis 1 of the
    stored test logits [M, T, A, C], not their first axis M)."""
    import jaxmem.runs.preflight as P

    wd = H.fresh_dir("door-sizes")
    shutil.copytree(H.finished_reference(), wd)
    seen = []
    monkeypatch.setattr(P, "check_scoring", lambda cfg, n, t, c, *a, **k: seen.append((n, t, c)) or 0)
    R.score(wd, log=lambda *a: None)
    tl = np.load(wd / "test_logits.npy", mmap_mode="r")
    assert seen == [(len(np.load(wd / "labels.npy")), tl.shape[1], tl.shape[-1])] and tl.shape[0] != tl.shape[1]
