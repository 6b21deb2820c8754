"""The reference_scaling and dp_audit experiments at a reduced size: their tables equal the pure
functions called on the stored runs; no empirical bound exceeds the accountant."""

from pathlib import Path

import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem.analyses import run_experiment

ROOT = Path(__file__).resolve().parents[2]
TINY = ["train.epochs=2", "data.max_train=200", "train.batch_size=64", "model.hidden=[32]"]


def test_reference_counts_and_interval(rng):
    from scipy.stats import t

    from jaxmem.analyses.reference_scaling import reference_counts, t_interval

    assert reference_counts(1) == [1] and reference_counts(6) == [1, 2, 4, 6]
    assert reference_counts(8) == [1, 2, 4, 8]
    x = rng.normal(size=7)
    m, lo, hi = t_interval(np.append(x, np.nan))
    h = t.ppf(0.975, 6) * np.std(x, ddof=1) / np.sqrt(7)
    assert m == pytest.approx(x.mean()) and lo == pytest.approx(x.mean() - h) and hi == pytest.approx(x.mean() + h)
    assert np.isnan(t_interval([1.0])[1])


@pytest.mark.slow
def test_reference_scaling_at_reduced_size(tmp_path):
    from jaxmem.runs import load_run

    cfg = cfgmod.load_config(ROOT / "experiments" / "reference_scaling.toml",
                             TINY + ["subsets.num_models=9", "subsets.design.replicas=3",
                                     'experiment.variant_names=["digits"]', "experiment.variants=[[]]"])
    s = run_experiment(cfg, tmp_path / "rs", progress=False, log=lambda *a: None)
    counts = sorted({r["references"] for r in s["by_reference_count"]})
    assert counts == [1, 2, 4, 6]
    for r in s["by_reference_count"]:      # (NaN is stored as None)
        if r["auc"] is not None and r["auc_lo"] is not None:
            assert r["auc_lo"] <= r["auc"] <= r["auc_hi"]
    assert {r["population"] for r in s["by_population"]} >= {10, 30}
    run = load_run(tmp_path / "rs" / "variants" / "digits")
    keep = np.asarray(run.keep)
    assert (keep[:3] == keep[0]).all() and not (keep[3:] == keep[0]).all()
    for r in s["stability"]:
        v = r["coin_flip_tp_share"]
        assert v is None or np.isnan(v) or 0 <= v <= 1
        assert r["replicas"] == 3
    assert len(s["crossover"]) == len(counts)


@pytest.mark.slow
def test_dp_audit_at_reduced_size(tmp_path):
    pytest.importorskip("jax_privacy")
    from jaxmem.analyses.common import run_signals
    from jaxmem.attacks.dp_audit import epsilon_one_run
    from jaxmem.runs import load_run

    cfg = cfgmod.load_config(ROOT / "experiments" / "dp_audit.toml",
                             TINY + ["subsets.num_models=6", "scoring.targets=2", "data.canaries=20",
                                     'experiment.variant_names=["non_private","dp"]',
                                     'experiment.variants=[[],["train.dp.enabled=true",'
                                     '"train.dp.noise_multiplier=1.0","train.dp.clip_norm=1.0"]]'])
    s = run_experiment(cfg, tmp_path / "dpa", progress=False, log=lambda *a: None)
    rows = s["audit"]
    assert {r["kind"] for r in rows} == {"mislabeled", "random_input", "all"}
    for r in rows:
        if r["epsilon"] is not None:
            for k in ("one_run", "one_run_fdp", "many_clopper_pearson", "many_gdp"):
                if r.get(k) is not None:
                    assert r[k] <= r["epsilon"], (r["variant"], r["kind"], k)
    # the one-run bound equals the pure function on the stored run
    run = load_run(tmp_path / "dpa" / "variants" / "non_private")
    keep = np.asarray(run.keep, bool)
    from jaxmem.analyses.common import id_mask

    sel = id_mask(run, "insert_canaries", "canary_ids")
    loss = np.asarray(run_signals(run, ["loss"])["loss"], np.float64)
    score = -(loss.mean(-1) if loss.ndim == 3 else loss)
    want = epsilon_one_run(score[:2][:, sel], keep[:2][:, sel], delta=cfg.train.dp.delta)["one_run"]["epsilon"]
    (row,) = [r for r in rows if r["variant"] == "non_private" and r["kind"] == "random_input"]
    assert row["one_run"] == pytest.approx(want)
