"""A language-model run end to end (python_text, 6 tiny causal LMs in 2 chunks): the stored
per-token signals equal a float64 recomputation from the retrained models' logits; scoring's
memorization, extraction table and every LM attack equal float64 brute force; the run resumes,
grows and reports like any other."""

import csv
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest
from helpers_text import float64_signals

from jaxmem import config as cfgmod
from jaxmem.data import build_dataset
from jaxmem.runs import execute, load_run

TINY = ['data.source="python_text"', 'model.name="causal_lm"', "data.max_len=32", "data.max_train=60",
        "data.text_test_fraction=0.1", "model.d_model=16", "model.num_layers=1", "model.num_heads=2",
        "train.batch_size=8", "train.epochs=4", "train.learning_rate=0.01", "subsets.num_models=6",
        "train.chunk_size=3", "scoring.prefix_lengths=[2,8]", "scoring.suffix_length=8",
        "data.plant_counts=[2,4]", "data.plant_per_count=2",
        'scoring.attacks=["loss","zlib","min_k","min_k_plus_plus","reference","lira_online","lira_offline"]']


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("lm") / "run"
    cfg = cfgmod.load_config(None, TINY)
    summary = execute(cfg, wd, progress=False, log=lambda *a: None)
    return cfg, wd, summary


def test_stored_signals_equal_float64_recomputation_from_the_models(lm_run):
    from jaxmem.train import Trainer, steps_per_epoch_max

    cfg, wd, _ = lm_run
    run = load_run(wd)
    assert run.is_lm and not (wd / "logits.npy").exists()
    ds = build_dataset(cfg)
    keep = np.asarray(run.keep)
    tr = Trainer(cfg, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), ds.num_classes,
                 steps_per_epoch_max(keep, cfg.train.batch_size))
    apply = jax.jit(lambda p, x: tr.model.apply({"params": p}, x))
    N = ds.num_train
    for a in (0, 3):   # retrain each chunk as the run did (deterministic), then recompute by loops
        ids = np.arange(a, a + 3)
        st, status = tr.init_chunk(ids, keep[ids])
        st, _, _ = tr.train_epochs(st, status, keep[ids], ids, 0, tr.num_epochs)
        for j, m in enumerate(ids):
            p = jax.tree.map(lambda v: v[j], st.params)
            z = np.asarray(apply(p, jnp.asarray(ds.x_train)))
            for i in range(0, N, 3):
                ref, nll = float64_signals(z[i], ds.x_train[i], ds.y_train[i])
                for k in ("logp", "mu", "sigma"):
                    npt.assert_allclose(run.array(f"token_{k}")[m, i], ref[k], rtol=1e-4, atol=1e-4)
                fin = np.isfinite(ref["correct"])
                npt.assert_array_equal(run.array("token_correct")[m, i][fin], ref["correct"][fin] == 1)
                npt.assert_allclose(run.array("nll")[m, i], nll, rtol=1e-4)
            zt = np.asarray(apply(p, jnp.asarray(ds.x_test)))
            for i in range(ds.num_test):
                ref, nll = float64_signals(zt[i], ds.x_test[i], ds.y_test[i])
                npt.assert_allclose(run.array("test_nll")[m, i], nll, rtol=1e-4)
    np.testing.assert_array_equal(run.labels, ds.y_train)
    assert run.text["texts_train"] == list(ds.texts_train)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _texts(run):
    """Brute force: the first row of each group, by a loop (a text and its copies are one)."""
    seen, first = set(), []
    for i, g in enumerate(run.text["groups"]):
        if g not in seen:
            seen.add(g)
            first.append(i)
    return np.array(first)


def test_scoring_equals_float64_brute_force(lm_run):
    cfg, wd, summary = lm_run
    run = load_run(wd)
    keep = np.asarray(run.keep)
    M, N = keep.shape
    lengths = np.asarray(run.labels)
    corr = np.asarray(run.array("token_correct"))
    acc = np.array([[corr[m, i, : lengths[i] - 1].mean() for i in range(N)] for m in range(M)])
    rows = {int(r["index"]): r for r in _rows(wd / "results" / "memorization.csv")}
    dup = run.text["duplicate_count"]
    texts = _texts(run)
    assert sorted(rows) == list(texts) and len(texts) < N          # one row per text
    assert sorted(int(r["rank"]) for r in rows.values()) == list(range(1, len(rows) + 1))   # ranks from 1, as examples.csv
    for i in texts:
        a_in, a_out = acc[keep[:, i], i], acc[~keep[:, i], i]
        want = a_in.mean() - a_out.mean()
        se = math.sqrt(a_in.var(ddof=1) / len(a_in) + a_out.var(ddof=1) / len(a_out))
        npt.assert_allclose(float(rows[i]["mem"]), want, rtol=1e-5, atol=1e-6)
        npt.assert_allclose(float(rows[i]["stderr"]), se, rtol=1e-5, atol=1e-6)
        assert int(rows[i]["duplicate_count"]) == dup[i] and rows[i]["text"] == run.text["texts_train"][i]
        assert int(rows[i]["copies"]) == sum(g == run.text["groups"][i] for g in run.text["groups"])
    # extraction: leading correct tokens from position k - 1, by duplicate count, IN models; one
    # trial per (model, text): copies do not add trials
    s = cfg.scoring.suffix_length
    for r in _rows(wd / "results" / "extraction.csv"):
        assert int(r["suffix_length"]) == s and r["unit"] == "(model, text) pair"
        if r["by"] != "duplicate_count":
            continue
        k, c, members = int(r["prefix_length"]), int(r["count"]), r["members"] == "True"
        trials = hits = 0
        for m in range(M):
            for i in texts:
                if dup[i] == c and keep[m, i] == members and lengths[i] >= k + s:
                    trials += 1
                    hits += bool(corr[m, i, k - 1:k - 1 + s].all())
        assert (int(r["trials"]), int(r["extracted"])) == (trials, hits)
    assert summary["extraction"]["k2"]["rate_in"] >= 0
    # ONE exact-match definition (item 12: two "IN" numbers, .8415 and .8459, were stored):
    # per model, correct / target tokens pooled over its IN (OUT) texts; mean over models
    assert not any(k.startswith("train_token_accuracy") for k in summary)
    for key, member in (("exact_match_in", True), ("exact_match_out", False)):
        per_model = []
        for m in range(M):
            c = n = 0
            for i in texts:
                if keep[m, i] == member:
                    c += corr[m, i, : lengths[i] - 1].sum()
                    n += lengths[i] - 1
            per_model.append(c / n)
        npt.assert_allclose(summary[key], np.mean(per_model), rtol=1e-12)
    assert "per model" in summary["exact_match_definition"]


def test_run_outputs_equal_the_experiments_per_text_tables(lm_run, tmp_path):
    """Issue 21 item 1: the run's own summary.json, attacks.json and extraction.csv count each
    text once, so they equal the experiments' per-text tables on the same models (before, the
    run counted every planted copy as its own member / non-member / extraction trial)."""
    from jaxmem.analyses import lm_memorization, lm_mia

    cfg, wd, summary = lm_run
    run = load_run(wd)
    mia = lm_mia.analyze(cfg, tmp_path / "mia", {"v": run}, log=lambda *a: None)
    mem = lm_memorization.analyze(cfg, tmp_path / "mem", {"v": run}, log=lambda *a: None)
    texts = _texts(run)
    assert summary["num_texts"] == mem["texts"] == len(texts) < summary["num_sequences"]
    assert "copies merged" in summary["unit"]
    # the experiments' CSVs name what they count: texts (they said "sequences" for a count of texts)
    from jaxmem.analyses import lm_scaling

    lm_scaling.analyze(cfg, tmp_path / "scaling", {"v": run}, log=lambda *a: None)
    for f in ("mem/extraction_by_count.csv", "mem/by_natural_count.csv", "mem/by_planted_count.csv",
              "scaling/by_prefix.csv"):
        header = _rows(tmp_path / f)[0].keys()
        assert "texts" in header and "sequences" not in header, (f, header)
    natural = [r for r in _rows(tmp_path / "mem" / "by_natural_count.csv")]
    assert sum(int(r["texts"]) for r in natural) == int((np.asarray(run.text["planted_count"])[texts] == 0).sum())
    for r in mia["attacks"]:
        got = summary["attacks"][r["attack"]]
        for m in ("auc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr"):
            npt.assert_allclose(got[m], r[m], rtol=1e-9, err_msg=f"{r['attack']} {m}")
    npt.assert_allclose(summary["memorization"]["mean"], mem["mem_mean"], rtol=1e-12)
    want = {(int(r["prefix_length"]), int(r["count"]), bool(r["members"])): (r["trials"], r["extracted"])
            for r in mem["extraction"] if r["by"] == "planted"}
    got = {(int(r["prefix_length"]), int(r["count"]), r["members"] == "True"): (int(r["trials"]), int(r["extracted"]))
           for r in _rows(wd / "results" / "extraction.csv") if r["by"] == "planted_count"}
    assert got == want and want
    # a planted text of c copies is 1 trial per usable model (not c)
    ok = ~np.asarray(run.diverged)
    planted = np.asarray(run.text["planted_count"])[texts]
    lengths = np.asarray(run.labels)[texts]
    keep = np.asarray(run.keep)[:, texts]
    for (k, c, members), (trials, _) in got.items():
        sel = (planted == c) & (lengths >= k + cfg.scoring.suffix_length)
        assert trials == int(((keep == members) & ok[:, None] & sel).sum())


def test_rescoring_with_fewer_scored_tokens_a_clipped_suffix_and_an_external_reference(lm_run, tmp_path):
    """Issue 21's definitions: which tokens are scored is an option (here neither the first text
    token nor EOS, MIMIR's BOS-less convention) recorded in the outputs; the extraction suffix
    follows Carlini et al. 2022 (50) clipped to what max_len allows, written beside every
    extraction number; an external reference model's NLL makes reference_model run."""
    import shutil

    from sklearn.metrics import roc_auc_score

    from jaxmem.runs.score_lm import score_lm

    cfg, wd, _ = lm_run
    wd2 = tmp_path / "run"
    shutil.copytree(wd, wd2)
    rng = np.random.default_rng(5)
    run = load_run(wd2)
    N = len(run.labels)
    np.save(tmp_path / "ref.npy", rng.gamma(3.0, 1.0, N))
    c = json.loads((wd2 / "config.json").read_text())
    c["scoring"].update(score_first_token=False, score_eos=False, suffix_length=50,
                        reference_nll=str(tmp_path / "ref.npy"), attacks=["loss"])
    (wd2 / "config.json").write_text(json.dumps(c))
    summary = score_lm(wd2, log=lambda *a: None)
    s_used = cfg.data.max_len - max(cfg.scoring.prefix_lengths)           # 32 - 8 = 24 < 50
    assert "first text token NOT" in summary["scored_tokens"] and "EOS NOT" in summary["scored_tokens"]
    for e in summary["extraction"].values():
        assert (e["suffix_length"], e["suffix_length_requested"]) == (s_used, 50)
    assert {int(r["suffix_length"]) for r in _rows(wd2 / "results" / "extraction.csv")} == {s_used}
    # brute force: each sequence's NLL over its tokens after the first text token, EOS left out
    ds = build_dataset(cfg)
    from jaxmem.data.tokenizers import from_config

    eos = from_config(ds.tokenizer).eos_id
    lp = np.asarray(run.array("token_logp"), np.float64)
    keep, texts = np.asarray(run.keep), _texts(run)
    M = keep.shape[0]
    nll = np.full((M, N), np.nan)
    for i in range(N):
        n = int(ds.y_train[i])
        last = n - 2 if ds.x_train[i, n - 1] == eos else n - 1       # targets 1 .. (EOS excluded)
        for m in range(M):
            nll[m, i] = -lp[m, i, 1:last].mean()
    npt.assert_allclose(summary["train_nll_in"], nll[:, texts][keep[:, texts]].mean(), rtol=1e-9)
    stored = json.loads((wd2 / "results" / "attacks.json").read_text())
    assert stored["scored_tokens"] == summary["scored_tokens"]
    ref = np.load(tmp_path / "ref.npy")
    for t in range(M):
        npt.assert_allclose(stored["per_target"]["loss"]["auc"][t],
                            roc_auc_score(keep[t, texts], -nll[t, texts]), rtol=1e-9)
        npt.assert_allclose(stored["per_target"]["reference_model"]["auc"][t],
                            roc_auc_score(keep[t, texts], ref[texts] / nll[t, texts]), rtol=1e-9)


def test_show_example_of_an_lm_run_says_length_text_and_the_true_reason(lm_run):
    """Issue 21 item 12: `jaxmem show --example` on an LM run printed the sequence length as
    "label" and blamed an older jaxmem for the missing per-example scores. It prints the length,
    the text's copies and its memorization (the text's row: copies are one example), and says why
    no per-example attack scores exist."""
    from jaxmem.report.show import example_text
    from jaxmem.runs.examples import example_record

    _, wd, _ = lm_run
    run = load_run(wd)
    groups = np.asarray(run.text["groups"])
    texts = _texts(run)
    copy = next(i for i in range(len(groups)) if i not in set(texts))     # a planted copy, not its first row
    first = int(texts[[groups[j] for j in texts].index(groups[copy])])
    eid = int(run.example_ids[copy])
    r = example_record(wd, eid)
    assert "label" not in r and r["length"] == int(run.labels[copy]) and r["text_index"] == first
    assert r["copies"] == int((groups == groups[copy]).sum()) > 1
    mem_row = {int(x["index"]): x for x in _rows(wd / "results" / "memorization.csv")}[first]
    npt.assert_equal(r["memorization"]["mem"], float(mem_row["mem"]))
    out = example_text(wd, eid)
    assert f"sequence of {r['length']} tokens" in out and "label" not in out
    assert "older jaxmem" not in out and "per-example attack scores" in out


def test_show_and_report_count_an_lm_runs_texts_and_sequences_apart(lm_run):
    """The report's summary said "training examples 68" beside "unit: 60 texts, 68 training
    sequences", and show/report's "what was run" said "68 training, 28 test examples, 259
    classes" (the vocabulary) for an LM run: the counts are named sequences and texts, as the
    unit says, and the vocabulary is not called classes."""
    from jaxmem.report.run import run_html
    from jaxmem.report.show import what_was_run

    _, wd, _ = lm_run
    run = load_run(wd)
    G, N = len(_texts(run)), len(run.labels)
    assert G < N                                   # the tiny run has copies
    data = dict(what_was_run(wd))["data"]
    assert f"{N} training sequences ({G} texts)" in data and "classes" not in data, data
    html = run_html(wd)
    assert f"<td>training texts</td><td>{G}</td>" in html and f"<td>training sequences</td><td>{N}</td>" in html
    assert "<td>training examples</td>" not in html


def _min_k(x, n, k=0.2):
    c = math.floor(n * k)
    return np.sort(x[:n])[:c].mean() if c else np.nan


def test_every_lm_attack_equals_a_direct_float64_computation(lm_run):
    from sklearn.metrics import roc_auc_score

    from jaxmem.attacks.likelihood_ratio import balanced_design, lira, pair_out

    cfg, wd, _ = lm_run
    run = load_run(wd)
    keep = np.asarray(run.keep)
    M, N = keep.shape
    n = np.asarray(run.labels) - 1            # target tokens per sequence
    nll = np.asarray(run.array("nll"), np.float64)
    lp, mu, sd = (np.asarray(run.array(f"token_{k}"), np.float64) for k in ("logp", "mu", "sigma"))
    z = np.asarray(run.text["zlib_entropy"], np.float64)
    stored = json.loads((wd / "results" / "attacks.json").read_text())
    per = stored["per_target"]
    texts = _texts(run)
    assert stored["num_texts"] == len(texts) < N and "copies merged" in stored["unit"]
    # on a balanced design LiRA leaves a pair out (issue #21), drawn over the texts the attacks
    # score: the same shadow sets here
    kT = keep[:, texts]
    drop = pair_out(kT, np.arange(M)) if balanced_design(kT) else None
    for t in range(M):
        o = [m for m in range(M) if m != t]
        use = None if drop is None else np.asarray(o)[:, None] != drop[t][None, :]
        # the OUT references' mean NLL, the pair's model left out too (reference_out is paired)
        ref = np.full(N, np.nan)
        for k, i in enumerate(texts):
            ref[i] = nll[[m for m in o if not keep[m, i] and (drop is None or m != drop[t][k])], i].mean()
        want = {"loss": -nll[t], "zlib": -nll[t] / z,
                "min_k": np.array([_min_k(lp[t, i], n[i]) for i in range(N)]),
                "min_k_plus_plus": np.array([_min_k((lp[t, i] - mu[t, i]) / sd[t, i], n[i]) for i in range(N)]),
                "reference": ref - nll[t],
                "lira_online": lira(-nll[t][texts], -nll[o][:, texts], kT[o], shadow_use=use),
                "lira_offline": lira(-nll[t][texts], -nll[o][:, texts], kT[o], online=False, shadow_use=use)}
        for a, sc in want.items():      # each text once: scored on its first row
            sc = sc if a.startswith("lira") else sc[texts]
            member = kT[t]
            ok = np.isfinite(sc)
            assert ok.sum() > len(texts) // 2, a
            npt.assert_allclose(per[a]["auc"][t], roc_auc_score(member[ok], sc[ok]), rtol=1e-9, err_msg=a)


@pytest.mark.slow
def test_lm_run_resumes_grows_and_reports(lm_run, tmp_path):
    import shutil

    from jaxmem.report import write_report

    cfg, wd, summary = lm_run
    wd2 = tmp_path / "copy"
    shutil.copytree(wd, wd2)
    before = {n: np.asarray(np.load(wd2 / f"{n}.npy")) for n in ("token_logp", "nll", "keep")}
    stamp = sorted(p.stat().st_mtime_ns for p in (wd2 / "shards").rglob("*.npy"))
    again = execute(cfg, wd2, progress=False, log=lambda *a: None)
    assert sorted(p.stat().st_mtime_ns for p in (wd2 / "shards").rglob("*.npy")) == stamp  # nothing retrained
    assert again["memorization"] == summary["memorization"]
    grown = execute(cfgmod.load_config(None, TINY + ["subsets.num_models=8"]), wd2, progress=False,
                    log=lambda *a: None)
    assert grown["num_models"] == 8
    for name, a in before.items():
        npt.assert_array_equal(np.load(wd2 / f"{name}.npy")[:6], a)
    html = write_report(wd2).read_text()
    assert "extract" in html.lower() and "min_k" in html and "copies merged" in html
    from jaxmem.io import RunError
    from jaxmem.runs import export_lira

    with pytest.raises(RunError, match="per-token signals"):
        export_lira(wd2, tmp_path / "lira")


def test_three_model_lm_run_prints_n_a_writes_strict_json_and_says_why(tmp_path):
    """3 models: each sequence has 1 IN or 1 OUT model besides the target, so memorization's
    standard errors and online LiRA's AUC are undefined. The command still succeeds, prints "n/a"
    (it raised a TypeError formatting None), summary.json holds null and no bare NaN, and the
    warning that says why reaches the user (the LM path silenced it)."""
    import subprocess
    import sys

    import helpers_run as H

    wd = tmp_path / "w"
    sets = [s for s in TINY if not s.startswith(("subsets.num_models", "train.chunk_size",
                                                  "train.epochs", "scoring.attacks"))]
    sets += ["subsets.num_models=3", "train.epochs=1", 'scoring.attacks=["loss","lira_online"]']
    cmd = [sys.executable, "-m", "jaxmem", "run", "--workdir", str(wd), "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, env=H.env(), cwd=H.REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "n/a" in r.stdout
    assert re.search(r"unit +text group: \d+ texts, \d+ training sequences", r.stdout), r.stdout   # item 1
    assert "UndefinedMetricWarning" in r.stderr and "lira_online" in r.stderr, r.stderr[-2000:]
    text = (wd / "summary.json").read_text()
    s = json.loads(text, parse_constant=lambda c: pytest.fail(f"summary.json holds a bare {c}"))
    assert s["attacks"]["lira_online"]["auc"] is None and s["attacks"]["lira_online"]["n_targets"] == 0
    assert s["attacks"]["loss"]["n_targets"] == 3
    show = subprocess.run([sys.executable, "-m", "jaxmem", "show", str(wd)], capture_output=True,
                          text=True, env=H.env(), cwd=H.REPO, timeout=300)
    assert show.returncode == 0 and re.search(r"lira_online AUC +n/a", show.stdout), show.stdout
    assert "copies merged" in show.stdout
    assert not re.search(r"\bnan\b", show.stdout)
    assert "test accuracy" not in show.stdout       # a language-model run has none


def test_reference_nll_of_the_wrong_length_is_refused_before_training(tmp_path):
    """scoring.reference_nll [N] holds one NLL per training sequence; N is known once the data is
    built, so a wrong length is refused then, in one line naming the field, before any model is
    trained (it was refused only at scoring, after every model had been trained)."""
    from jaxmem.data import build_dataset

    cfg0 = cfgmod.load_config(None, TINY)
    N = build_dataset(cfg0).num_train
    np.save(tmp_path / "ref.npy", np.linspace(1.0, 3.0, N + 1))
    cfg = cfgmod.load_config(None, TINY + [f'scoring.reference_nll="{tmp_path / "ref.npy"}"'])
    wd = tmp_path / "run"
    with pytest.raises(cfgmod.ConfigError, match=rf"^scoring.reference_nll: .* holds \({N + 1},\), the run "
                                                 rf"has N = {N} training sequences"):
        execute(cfg, wd, progress=False, log=lambda *a: None)
    assert not (wd / "shards").exists() or not any((wd / "shards").iterdir())


def test_a_sequence_with_no_scored_token_has_nan_accuracy_not_zero(rng):
    """A one-token text (BOS t EOS) scored without its first token and without EOS has no scored
    token: its exact-match accuracy (and so its memorization) is undefined, NaN, as its NLL is;
    per_sequence gave 0."""
    from types import SimpleNamespace

    from jaxmem.runs.score_lm import per_sequence, sequence_nlls

    cfg = cfgmod.load_config(None, TINY + ["scoring.score_first_token=false", "scoring.score_eos=false"])
    M, L = 3, 8
    lengths = np.array([3, 6, 8, 5])                      # BOS + text + EOS (8: cut, no EOS)
    texts = ["a", "abcd", "abcdefghij", "abc"]
    correct = rng.random((M, len(lengths), L - 1)) < 0.5
    logp = -rng.exponential(size=correct.shape)
    run = SimpleNamespace(config=cfg, labels=lengths, text={"texts_train": texts, "tokenizer": {"kind": "bytes"}},
                          array=lambda n: {"token_correct": correct, "token_logp": logp}[n])
    want = np.full((M, len(lengths)), np.nan)
    for i, n in enumerate(lengths):                      # brute force: targets 1 .. n - 2, less EOS
        last = n - 2 if n < L else n - 1                 # (a cut sequence has no EOS to leave out)
        pos = [t for t in range(1, last)]
        if pos:
            want[:, i] = correct[:, i, pos].mean(-1)
    with pytest.warns(RuntimeWarning, match="1 sequences have no scored token"):
        nll = sequence_nlls(run)
    assert np.isnan(nll[:, 0]).all() and np.isfinite(nll[:, 1:]).all()
    npt.assert_allclose(per_sequence(run), want, rtol=1e-12)


def test_test_nll_counts_each_held_out_text_once(lm_run):
    """summary.json's test_nll is the mean over models and held-out TEXTS (copies merged by
    text.json's test_groups, brute force over the stored token rows' groups here)."""
    cfg, wd, summary = lm_run
    run = load_run(wd)
    tg = np.asarray(run.text["test_groups"])
    nll = np.asarray(run.array("test_nll"), np.float64)[~np.asarray(run.diverged)]
    first = sorted({g: i for i, g in reversed(list(enumerate(tg)))}.values())
    npt.assert_allclose(summary["test_nll"], nll[:, first].mean(), rtol=1e-9)
    assert summary["num_test"] == len(set(tg.tolist())) and summary["num_test_sequences"] == len(tg)


@pytest.mark.filterwarnings("ignore")
def test_lm_scoring_and_lm_mia_pass_the_same_audit_spec(lm_run, tmp_path, monkeypatch):
    """Issue #20 item 2: a language-model run's scoring and the lm_mia experiment's audit of it
    call the driver with one spec (cfg.scoring's, with the run's LM attacks), which
    results/attacks.json records."""
    import importlib
    import shutil

    from jaxmem.analyses import lm_mia
    from jaxmem.attacks import AuditSpec, evaluate
    from jaxmem.runs.score_lm import lm_attacks, score_lm

    cfg, wd, _ = lm_run
    shutil.copytree(wd, tmp_path / "run")
    seen = {}

    def spy(name):
        def f(*a, spec=None, **kw):
            seen.setdefault(name, []).append(spec)
            return evaluate(*a, spec=spec, **kw)
        return f

    monkeypatch.setattr(importlib.import_module("jaxmem.runs.score_lm"), "evaluate", spy("score"))
    monkeypatch.setattr(lm_mia, "evaluate", spy("lm_mia"))
    score_lm(tmp_path / "run", log=lambda *a: None)
    run = load_run(tmp_path / "run")
    lm_mia.analyze(cfg, tmp_path / "mia", {"v": run}, log=lambda *a: None)
    want = AuditSpec.from_scoring(run.config.scoring, attacks=tuple(lm_attacks(run.config)))
    assert seen == {"score": [want], "lm_mia": [want]}
    stored = json.loads((tmp_path / "run" / "results" / "attacks.json").read_text())
    assert stored["audit"] == want.to_json() and stored["audit"]["rmia_tuning"] == "per_target"
