"""experiments/fashion_mnist.toml at a reduced size (2,000 of the real images, 8 models): the
memorization_audit analysis against independent references (memorization by a float64 loop,
AUROC by scikit-learn, rankings by brute force) and its files."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from shared_data import shared_data

from jaxmem import config as cfgmod
from jaxmem.analyses import run_experiment

ROOT = Path(__file__).resolve().parents[2]
REDUCED = ["data.max_train=2000", "data.max_test=500", "subsets.num_models=8", "train.epochs=3",
           "model.hidden=[64]", 'experiment.variants=[[], ["data.label_noise=0.05"]]']


@pytest.mark.slow
def test_fashion_mnist_experiment_at_reduced_size(tmp_path, monkeypatch):
    from sklearn.metrics import roc_auc_score

    monkeypatch.setenv("JAXMEM_DATA", str(shared_data("fashion-mnist").parent))
    cfg = cfgmod.load_config(ROOT / "experiments" / "fashion_mnist.toml", REDUCED)
    s = run_experiment(cfg, tmp_path / "fm", progress=False, log=lambda *a: None)
    assert [r["variant"] for r in s["rows"]] == ["clean", "label_noise_1pct"]
    attacks = {(r["variant"], r["attack"]) for r in s["attacks"]}
    assert attacks == {(v, a) for v in ("clean", "label_noise_1pct") for a in cfg.scoring.attacks}
    assert all(r["targets"] == 8 for r in s["attacks"])        # every model was the target
    for path in s["files"].values():
        assert Path(path).exists(), path
    for name, row in zip(("clean", "label_noise_1pct"), s["rows"]):
        wd = tmp_path / "fm" / "variants" / name
        keep, labels = np.load(wd / "keep.npy"), np.load(wd / "labels.npy")
        correct = np.load(wd / "logits.npy")[:, :, 0].argmax(-1) == labels
        mem = np.full(keep.shape[1], np.nan)
        for i in range(keep.shape[1]):
            ins, outs = correct[keep[:, i], i], correct[~keep[:, i], i]
            if len(ins) and len(outs):
                mem[i] = ins.astype(float).mean() - outs.astype(float).mean()
        np.testing.assert_allclose(row["mem_mean"], np.nanmean(mem), rtol=1e-9)
        summary = json.loads((wd / "summary.json").read_text())
        for r in s["attacks"]:
            if r["variant"] == name:
                assert r["auc"] == summary["attacks"][r["attack"]]["auc"]
        with open(tmp_path / "fm" / f"memorized_{name}.csv", newline="") as f:
            ext = list(csv.DictReader(f))
        ids = np.load(wd / "example_ids.npy")
        fin = np.flatnonzero(np.isfinite(mem))
        top = sorted(fin, key=lambda i: (-mem[i], i))[:32]
        bottom = sorted(fin, key=lambda i: (mem[i], i))[:32]
        assert [int(e["example_id"]) for e in ext if e["which"] == "most"] == list(ids[top])
        assert [int(e["example_id"]) for e in ext if e["which"] == "least"] == list(ids[bottom])
        if name == "clean":
            assert row["noisy_label_auroc"] is None
            continue
        meta = json.loads((wd / "dataset.json").read_text())["meta"]
        flipped = np.isin(ids, [t for t in meta["transforms"] if t["name"] == "label_noise"][0]
                          ["flipped_ids"])
        assert row["num_flipped"] == flipped.sum() == 100
        ok = np.isfinite(mem)
        np.testing.assert_allclose(row["noisy_label_auroc"], roc_auc_score(flipped[ok], mem[ok]),
                                   rtol=1e-12)
        order = sorted(np.flatnonzero(ok), key=lambda i: (-mem[i], i))
        assert row["precision_at_k"] == pytest.approx(flipped[order[:100]].mean())
        fit = correct[keep & flipped[None]].mean()
        np.testing.assert_allclose(row["flipped_fit_by_in_models"], fit, rtol=1e-12)
