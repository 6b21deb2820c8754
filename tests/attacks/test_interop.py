"""Round trips through the LiRA reference code's directory layout (tensorflow/privacy mi_lira_2021)."""

import json
import os

import numpy as np
import numpy.testing as npt
import pytest

from jaxmem.attacks.interop import lira_reference_scores, read_lira_layout, write_lira_layout
from jaxmem.signals import logit_scaled_confidence


def arrays(rng, M, N, A, C):
    keep = rng.random((M, N)) < 0.5
    logits = rng.normal(0, 3, (M, N, A, C)).astype(np.float32)
    labels = rng.integers(0, C, N)
    return keep, logits, labels


@pytest.mark.parametrize("M,N,A,C", [(3, 20, 2, 10), (12, 7, 1, 4)])
def test_round_trip_and_on_disk_shapes(tmp_path, M, N, A, C):
    rng = np.random.default_rng(M + N)
    keep, logits, labels = arrays(rng, M, N, A, C)
    x = rng.normal(size=(N, 4, 4, 3)).astype(np.float32)
    write_lira_layout(tmp_path, keep, logits, labels, x=x, epoch=100)
    # the files exactly where and how the reference code has them
    d = tmp_path / f"experiment-{M - 1}_{M}"
    assert np.load(d / "keep.npy").shape == (N,) and np.load(d / "keep.npy").dtype == bool
    assert np.load(d / "logits" / "0000000100.npy").shape == (N, 1, A, C)
    assert np.load(d / "scores" / "0000000100.npy").shape == (N, A)
    assert json.load(open(d / "hparams.json"))["expid"] == M - 1
    npt.assert_array_equal(np.load(tmp_path / "y_train.npy"), labels)

    got = read_lira_layout(tmp_path)
    npt.assert_array_equal(got["keep"], keep)
    npt.assert_array_equal(got["logits"], logits)
    assert got["logits"].dtype == np.float32
    npt.assert_array_equal(got["x_train"], x)
    npt.assert_array_equal(got["y_train"], labels)
    npt.assert_array_equal(got["epochs"], [100] * M)
    assert got["experiments"] == [f"experiment-{m}_{M}" for m in range(M)]
    assert got["scores"].shape == (M, N, A)


def score_loop(z, y):
    """score.py's formula for one model, example by example, float64."""
    N, _, A, C = z.shape
    out = np.empty((N, A))
    for i in range(N):
        for a in range(A):
            v = z[i, 0, a].astype(np.float64)
            p = np.exp(v - v.max())
            p /= p.sum()
            out[i, a] = np.log(p[y[i]] + 1e-45) - np.log(p.sum() - p[y[i]] + 1e-45)
    return out


def test_scores_follow_reference_formula(tmp_path):
    rng = np.random.default_rng(1)
    keep, logits, labels = arrays(rng, 2, 15, 3, 5)
    logits = logits.astype(np.float64)
    write_lira_layout(tmp_path, keep, logits, labels)
    got = read_lira_layout(tmp_path)["scores"]
    for m in range(2):
        npt.assert_allclose(got[m], score_loop(logits[m][:, None], labels), rtol=1e-10)
        # for moderate logits it is the logit-scaled confidence
        npt.assert_allclose(got[m], logit_scaled_confidence(logits[m], labels[:, None]), rtol=1e-9)
    npt.assert_allclose(lira_reference_scores(logits[0], labels), got[0])


def test_reads_reference_written_directory(tmp_path):
    # Written by hand as train.py/inference.py do: unsorted names, several epochs, longer keep.
    rng = np.random.default_rng(2)
    M, N, A, C = 11, 9, 2, 3
    keep = rng.random((M, N + 5)) < 0.5
    logits = {m: {e: rng.normal(size=(N, 1, A, C)) for e in (10, 20)} for m in range(M)}
    for m in range(M):
        d = tmp_path / f"experiment-{m}_{M}"
        os.makedirs(d / "logits")
        np.save(d / "keep.npy", keep[m])
        for e, z in logits[m].items():
            np.save(d / "logits" / ("%010d" % e), z)
    os.makedirs(tmp_path / "tb")  # unrelated folders are ignored
    got = read_lira_layout(tmp_path)
    assert got["experiments"][:3] == ["experiment-0_11", "experiment-1_11", "experiment-2_11"]
    npt.assert_array_equal(got["keep"], keep[:, :N])  # truncated to N as plot.py does
    npt.assert_array_equal(got["logits"], np.stack([logits[m][20][:, 0] for m in range(M)]))
    assert "scores" not in got and "y_train" not in got
    first = read_lira_layout(tmp_path, epoch=10)
    npt.assert_array_equal(first["logits"], np.stack([logits[m][10][:, 0] for m in range(M)]))
    npt.assert_array_equal(first["epochs"], [10] * M)


def test_refuses_pickle_and_partial_data(tmp_path):
    rng = np.random.default_rng(3)
    keep, logits, labels = arrays(rng, 2, 6, 1, 3)
    write_lira_layout(tmp_path, keep, logits)
    os.remove(tmp_path / "experiment-1_2" / "logits" / "0000000000.npy")
    with pytest.raises(ValueError, match="missing"):
        read_lira_layout(tmp_path)
    np.save(tmp_path / "experiment-1_2" / "keep.npy", np.array([{"a": 1}], dtype=object),
            allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        read_lira_layout(tmp_path)


def test_reference_phi_floor_and_label_range():
    """The reference's +1e-45 floors φ at log(1e45) ≈ 103.6 (documented difference); jaxmem's φ is
    the exact log-odds. Labels outside [0, C) (−1 would index from the end) raise."""
    z = np.array([[[[300.0, 0.0, 0.0]]]])           # [N=1, 1, A=1, C=3], p_y ≈ 1
    ref = lira_reference_scores(z, np.array([0]))
    npt.assert_allclose(ref, np.log(1 + 1e-45) - np.log(2 * np.exp(-300.0) + 1e-45), rtol=1e-12)
    assert 103 < ref[0, 0] < 104
    npt.assert_allclose(logit_scaled_confidence(z[:, 0], np.array([[0]])), 300 - np.log(2), rtol=1e-12)
    for bad in ([-1], [3]):
        with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
            lira_reference_scores(z, np.array(bad))
