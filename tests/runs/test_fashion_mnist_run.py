"""``jaxmem run --set data.source=fashion_mnist`` end to end on the real files: from the shared
copy through $JAXMEM_DATA (what CI does: .ci/run exports JAXMEM_DATA=../shared/data), and from the
Debian package's folder where it is installed. Reduced size (1,000 training images, 4 models)."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_data

REPO = Path(__file__).resolve().parents[2]
SMALL = ["data.source=fashion_mnist", "data.max_train=1000", "data.max_test=300",
         "subsets.num_models=6", "train.epochs=2", "model.hidden=[64]",
         'scoring.attacks=["lira_online"]']


def _env(tmp_path, jaxmem_data):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HOME=str(tmp_path / "home"))  # no Keras cache
    env.pop("JAXMEM_DATA", None)
    if jaxmem_data is not None:
        env["JAXMEM_DATA"] = str(jaxmem_data)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_jaxmem_run_on_fashion_mnist_from_the_shared_copy(tmp_path):
    folder = shared_data("fashion-mnist")
    wd = tmp_path / "w"
    cmd = [sys.executable, "-m", "jaxmem", "run", "--workdir", str(wd), "--no-progress"]
    for s in SMALL:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path, folder.parent),
                       cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ds = json.loads((wd / "dataset.json").read_text())
    meta = ds["meta"]
    assert meta["location"] == "JAXMEM_DATA" and meta["folder"] == str(folder)
    assert ds["num_train"] == 1000 and ds["num_test"] == 300 and ds["input_shape"] == [28, 28, 1]
    f = meta["files"]["train_labels"]
    assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
    # the stored labels are the file's first 1,000 (independent parse: the IDX header is 8 bytes)
    raw = gzip.decompress((folder / "train-labels-idx1-ubyte.gz").read_bytes())
    np.testing.assert_array_equal(np.load(wd / "labels.npy"), np.frombuffer(raw, np.uint8, 1000, 8))
    s = json.loads((wd / "summary.json").read_text())
    assert s["num_examples"] == 1000 and s["diverged"]["count"] == 0
    assert s["test_accuracy"] > 0.6      # 10 classes: chance is 0.1
    # 6 models: each target's 5 shadows hold >= 2 IN and >= 2 OUT models of every example (with 4,
    # online LiRA has 3 shadows and no example to score: an undefined AUC, null in JSON)
    assert np.isfinite(s["attacks"]["lira_online"]["auc"]) and s["attacks"]["lira_online"]["n_targets"] == 6


def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    """On a machine with `dataset-fashion-mnist` installed (not required: skipped elsewhere, CI
    included, since a fresh machine need not have it), the source is found there with nothing
    else set, and it holds the same images as the shared copy."""
    from jaxmem.data import idx

    deb = Path(idx.DEBIAN_ROOT) / idx.DEBIAN_FOLDERS["fashion_mnist"]
    if not deb.is_dir():
        pytest.skip(f"{deb} absent (the Debian package dataset-fashion-mnist is not installed)")
    monkeypatch.delenv("JAXMEM_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    got = idx.load("fashion_mnist")
    assert got.meta["location"] == "debian" and got.meta["folder"] == str(deb)
    assert got.x_train.shape == (60_000, 28, 28)
    theirs = idx.load("idx:" + str(shared_data("fashion-mnist"))).meta["files"]
    for role, f in got.meta["files"].items():
        assert f["content_sha256"] == theirs[role]["content_sha256"], role
