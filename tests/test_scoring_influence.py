"""`scoring.influence_top_k`: the run's influence table (Feldman & Zhang 2020, Eq. 2) against a
float64 brute force over the stored test logits."""

from __future__ import annotations

import csv
import json

import numpy as np
import numpy.testing as npt
import pytest

import helpers_run as H
from jaxmem import config as cfgmod
from jaxmem import run as R
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
        assert [int(r["rank"]) for r in mine] == list(range(K))
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
