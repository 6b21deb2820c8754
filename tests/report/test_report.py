"""HTML reports: run and experiment reports render every section with embedded PNGs."""

import base64
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from jaxmem import report
from jaxmem.io import RunError


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from jaxmem.config import load_config
    from jaxmem.runs import execute

    d = tmp_path_factory.mktemp("run") / "r"
    cfg = load_config(None, ["subsets.num_models=6", "train.epochs=2", "data.max_train=150",
                             "train.batch_size=32",
                             "model.hidden=[16]",
                             'scoring.attacks=["loss","lira_online","lira_offline"]'])
    execute(cfg, d, progress=False, log=lambda *a: None)
    return d


def _images(text):
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    for b in imgs:
        assert base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n"
    return imgs


def test_majority_vote_of_out_models_matches_brute_force():
    rng = np.random.default_rng(0)
    M, N, C = 7, 30, 4
    logits = rng.normal(size=(M, N, C))
    keep = rng.random((M, N)) < 0.5
    keep[:, 0] = True  # no OUT model
    ok = rng.random(M) < 0.8
    from jaxmem.runs.score import majority_out

    got = majority_out(logits, keep, ok)
    for i in range(N):
        votes = [int(np.argmax(logits[m, i])) for m in range(M) if not keep[m, i] and ok[m]]
        if not votes:
            assert got[i] == -1
            continue
        counts = Counter(votes)
        best = max(counts.values())
        assert got[i] == min(c for c, k in counts.items() if k == best)


def test_run_report_sections_and_images(tiny_run, tmp_path):
    out = report.write_report(tiny_run, tmp_path / "rep.html")
    text = Path(out).read_text()
    for section in ("Summary", "Membership inference (ROC, log-log)", "Memorization histogram",
                    "Most memorized training examples", "Convergence"):
        assert f"<h2>{section}</h2>" in text
    assert len(_images(text)) >= 4
    assert "predicted (OUT majority)" in text and "lira_online" in text
    # the examples table: each shown example's id and its OUT models' majority vote, by brute force
    head = text.index("<th>predicted (OUT majority)</th>")
    table = text[text.rindex("<table>", 0, head): text.index("</table>", head)]
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
    keep, ok = np.load(tiny_run / "keep.npy"), ~np.load(tiny_run / "diverged.npy")
    pred = np.load(tiny_run / "logits.npy")[:, :, 0].argmax(-1)
    index = {int(e): i for i, e in enumerate(np.load(tiny_run / "example_ids.npy"))}
    assert len(rows) == 16
    for r in rows:
        i = index[int(r[1])]
        votes = Counter(int(pred[m, i]) for m in range(len(keep)) if ok[m] and not keep[m, i])
        best = max(votes.values())
        assert int(r[3]) == min(c for c, k in votes.items() if k == best)
    assert "<img" in text and "src=\"http" not in text and "src='" not in text  # offline only


def test_a_run_scored_without_attacks_is_not_audited_by_the_report(tiny_run, tmp_path):
    """The report renders what scoring wrote and computes nothing: a run scored without attacks
    shows how to add them, one scored before a table existed says it is not computed."""
    from jaxmem.cli import main

    wd = tmp_path / "noattacks"
    shutil.copytree(tiny_run, wd)
    assert main(["score", str(wd), "--set", "scoring.attacks=[]"]) == 0
    (wd / "results" / "roc.png").unlink()
    text = Path(report.write_report(wd, tmp_path / "big.html")).read_text()
    assert "No attack results stored" in text and "lira_online</td>" not in text
    assert "<h2>Most memorized training examples</h2>" in text and "predicted (OUT majority)" in text
    for f in ("examples.csv", "convergence.csv", "memorization_hist.png"):
        (wd / "results" / f).unlink()
    text = Path(report.write_report(wd, tmp_path / "old.html")).read_text()
    assert text.count(f"Not computed; run <code>jaxmem score {wd}</code>") == 3


def test_experiment_report_links_variants(tiny_run, tmp_path):
    exp = tmp_path / "exp"
    shutil.copytree(tiny_run, exp / "variants" / "a")
    from jaxmem.io import save_json

    save_json(exp / "experiment.json", {"kind": "label_noise", "config": {}, "variants": ["a", "b"]})
    save_json(exp / "summary.json", {"experiment": "label_noise", "name": "demo",
                                     "noisy_label_auroc": 0.9, "rows": [{"variant": "a", "x": 1.5}],
                                     "files": {"hist": str(tiny_run / "results" / "memorization_hist.png")}})
    out = report.write_report(exp)
    text = out.read_text()
    assert out == exp / "report.html"
    assert "noisy_label_auroc" in text and "<h2>Variants</h2>" in text
    assert "variants/a/report.html" in text and (exp / "variants" / "a" / "report.html").exists()
    assert "not finished" in text  # variant b
    assert len(_images(text)) >= 2


def test_cli_report_and_errors(tiny_run, tmp_path, capsys):
    from jaxmem.cli import main

    assert main(["report", str(tiny_run), "--output", str(tmp_path / "c.html")]) == 0
    assert (tmp_path / "c.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(RunError, match="neither"):
        report.write_report(tmp_path)


def test_report_says_what_was_run_and_by_what(tiny_run, tmp_path):
    text = Path(report.write_report(tiny_run, tmp_path / "p.html")).read_text()
    for section in ("What was run", "Provenance"):
        assert f"<h2>{section}</h2>" in text
    for words in ("<td>seed</td><td>0</td>", "mlp (hidden=[16]", "adam, lr 0.001", "<td>epochs</td><td>2,",
                  "batch size 32", "digits (digits)", "jax / jaxlib / flax / optax", "XLA_FLAGS",
                  "run id"):
        assert words in text, words
    import jax

    assert jax.__version__ in text
    assert "<div class='scroll'><table>" in text       # wide tables scroll instead of being cut


def test_report_of_an_imported_run_claims_no_model(tmp_path):
    from jaxmem.runs import import_arrays, score

    r = np.random.default_rng(0)
    import_arrays(tmp_path / "imp", r.random((5, 40)) < 0.5,
                  r.normal(size=(5, 40, 1, 3)).astype(np.float32), r.integers(0, 3, 40),
                  source="somewhere/exp")
    score(tmp_path / "imp", log=lambda *a: None)
    text = Path(report.write_report(tmp_path / "imp")).read_text()
    text = re.sub(r'src="data:[^"]*"', "", text)      # (the images' base64)
    assert "imported from arrays trained outside jaxmem" in text and "somewhere/exp" in text
    assert "mlp" not in text and "<td>optimizer</td>" not in text and "<td>seed</td>" not in text


def test_most_memorized_images_have_a_public_plot(tiny_run, tmp_path):
    from jaxmem.report import plot_most_memorized

    fig = plot_most_memorized(tiny_run, path=tmp_path / "top.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    ex = (tiny_run / "results" / "examples.csv").read_text().splitlines()[1].split(",")
    assert len(titles) == 16 and titles[0].startswith(f"id {ex[1]}") and f"given {ex[3]}" in titles[0]
    assert (tmp_path / "top.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_roc_plot_stops_at_the_lowest_measurable_fpr_and_names_the_targets(rng, tmp_path):
    """Three targets with 200, 400 and 500 non-members: every curve is measured from 1/200 up;
    the axis says the curves are the mean over 3 targets; the file gets a new file's mode."""
    import os

    from jaxmem.attacks.plot import lowest_fpr, plot_roc, roc_figure

    curves = {"a": [], "b": []}
    for n_out in (200, 400, 500):
        member = np.r_[np.ones(300, bool), np.zeros(n_out, bool)]
        for name in curves:
            s = rng.normal(size=member.size) + member
            curves[name].append(_brute_roc(s, member))
    assert lowest_fpr(curves) == pytest.approx(1 / 200)
    ax = roc_figure(curves).axes[0]
    assert ax.get_xlim()[0] == pytest.approx(1 / 200) and ax.get_ylim()[0] == pytest.approx(1 / 200)
    assert "mean over 3 targets" in ax.get_ylabel() and "lowest measurable" in ax.get_xlabel()
    assert all(min(line.get_xdata()) >= 1 / 200 * (1 - 1e-9) for line in ax.get_lines())
    plot_roc(curves, tmp_path / "roc.png")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "roc.png").stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]


def _brute_roc(scores, member):
    """(fpr, tpr) at every distinct threshold, by counting (an independent reference)."""
    ts = np.r_[np.inf, np.sort(np.unique(scores))[::-1]]
    fpr = np.array([(scores[~member] >= t).mean() for t in ts])
    tpr = np.array([(scores[member] >= t).mean() for t in ts])
    return fpr, tpr


def test_roc_legend_sits_below_the_axes_clear_of_the_curves(rng):
    """Issue 21 item 12: the legend sat inside the axes ("lower right"), over the low-FPR end of
    the curves in the log-log plot. It now sits below the axes: its box and the axes' (in
    pixels, after drawing) do not overlap, and every entry is there."""
    from jaxmem.attacks.plot import roc_figure

    curves = {}
    for name in ("lira_online", "lira_offline", "lira_online_fixed_variance", "global_threshold"):
        member = rng.random(600) < 0.5
        curves[name] = [_brute_roc(rng.normal(size=600) + 0.5 * member, member) for _ in range(3)]
    fig = roc_figure(curves)
    fig.canvas.draw()
    ax = fig.axes[0]
    leg, box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert leg.y1 <= box.y0, (leg, box)
    assert 0 <= leg.x0 and leg.x1 <= fig.bbox.width and 0 <= leg.y0   # inside the figure
    assert [t.get_text().split()[0] for t in ax.get_legend().get_texts()] == list(curves)


def test_attack_table_fits_the_page(rng):
    """Issue 21 item 12: the attack table had a column per summary key (12) and scrolled
    sideways. Now mean ± std share a column, targets and scored fractions one each: 6 columns,
    headers that wrap; each cell is the summary's number."""
    from jaxmem.report.html import attack_table, fmt

    keys = ("auc", "tpr_at_0.001_fpr", "tpr_at_0.01_fpr")
    attacks = {}
    for a in ("lira_online", "rmia_offline"):
        m = {}
        for k in keys:
            m[k], m[f"{k}_std"] = float(rng.random()), float(rng.random() / 10)
        m.update(n_targets=int(rng.integers(2, 99)), n_targets_undefined=0,
                 n_targets_few_scored=1, scored_fraction_members=float(rng.random()),
                 scored_fraction_non_members=1.0)
        attacks[a] = m
    attacks["rmia_offline"]["auc"] = None    # undefined: n/a
    text = attack_table(attacks)
    heads = re.findall(r"<th>(.*?)</th>", text)
    assert len(heads) == 6, heads
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in text.split("<tr>")[2:]]
    for (a, m), r in zip(attacks.items(), rows):
        assert r[0] == a
        for j, k in enumerate(keys, 1):
            v = "n/a" if m[k] is None else fmt(m[k])
            assert r[j] == f"{v} ± {fmt(m[k + '_std'])}"
        assert r[4] == f"{m['n_targets']} (1 few scored)"
        assert r[5] == f"{fmt(m['scored_fraction_members'])} / 1"
    css = report.html.page("t", "")
    assert "white-space:normal" in css
