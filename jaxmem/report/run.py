"""The report of one run: it renders what :func:`jaxmem.runs.score` wrote (summary.json and
results/) and computes nothing. A run scored before a table existed shows where it is missing
("not computed; run jaxmem score DIR")."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from jaxmem.report import lm
from jaxmem.report.figures import plot_most_memorized
from jaxmem.report.html import attack_table, fig_img, img_file, new_figure, note, page, table
from jaxmem.report.html import missing_note as _missing
from jaxmem.report.html import read_csv as _csv
from jaxmem.report.show import provenance_rows, what_was_run
from jaxmem.runs import load_run
from jaxmem.runs.lm import LANGUAGE_MODEL_RUN
from jaxmem.runs.store import read_summary
from jaxmem.runs.task import CLASSIFICATION_RUN, stored_task

__all__ = ["run_html"]


def _attack_section(workdir: Path, res: Path, summary: dict) -> str:
    parts = []
    if summary.get("attacks"):
        parts.append(attack_table(summary["attacks"]))
    if (res / "roc.png").exists():
        parts.append(img_file(res / "roc.png", "ROC curves (log-log)"))
    if not parts:
        return note("No attack results stored; add some with <code>jaxmem score "
                    f"{html.escape(str(workdir))} --set 'scoring.attacks=[\"lira_online\"]'</code>.")
    return "".join(parts)


def _examples_section(workdir: Path, res: Path) -> str:
    if not (res / "examples.csv").exists():
        return _missing(workdir)
    rows = _csv(res / "examples.csv")
    shown = [{"rank": int(r["rank"]), "example_id": r["example_id"],   # as written (or a file name)
              "given label": int(r["label"]),
              "predicted (OUT majority)": int(r["predicted_out_majority"]),
              "memorization": float(r["mem"]), "stderr": float(r["stderr"])} for r in rows]
    out = ""
    if (res / "examples_inputs.npy").exists():
        out += fig_img(plot_most_memorized(workdir), "most memorized training examples")
    else:
        out += note("Training inputs unavailable where the run was scored.")
    return (out + note("Predicted = majority vote of the models that did not train on the "
                       "example.") + table(shown))


def _convergence_section(workdir: Path, res: Path, num_ok: int) -> str:
    if not (res / "convergence.csv").exists():
        if num_ok < 4:
            return note("Too few models for a convergence plot.")
        return _missing(workdir)
    rows = [{k: (int(v) if k == "models" else float(v)) for k, v in r.items()}
            for r in _csv(res / "convergence.csv")]
    fig, ax = new_figure((5.5, 3.3))
    ax = ax[0, 0]
    sizes = [r["models"] for r in rows]
    ax.plot(sizes, [r["spearman"] for r in rows], "o-", color="C0", label="Spearman vs all models")
    ax.set_ylabel("Spearman correlation with all models", color="C0", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("models used")
    right = ax.twinx()
    right.plot(sizes, [r["mean_stderr"] for r in rows], "s-", color="C1", label="mean stderr")
    right.plot(sizes, [r["frac_nan"] for r in rows], "^-", color="C2",
               label="fraction NaN (no IN or OUT model)")
    right.set_ylabel("mean stderr; fraction NaN", fontsize=8)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center right")
    return fig_img(fig, "convergence of memorization") + table(rows)


def _classifier_sections(workdir: Path, res: Path, summary: dict) -> list:
    """A classifier's run's sections: its most memorized examples (inputs, labels)."""
    return ["<h2>Most memorized training examples</h2>", _examples_section(workdir, res)]


#: The sections each run task adds (jaxmem.runs.task): a classifier's examples, or a language
#: model's extraction and texts (jaxmem.report.lm).
_TASK_SECTIONS = {CLASSIFICATION_RUN.name: _classifier_sections, LANGUAGE_MODEL_RUN.name: lm.sections}


def run_html(workdir) -> str:
    """The HTML report of one run directory."""
    workdir = Path(workdir)
    run = load_run(workdir)
    summary = read_summary(workdir)   # (refused when results/ are another scoring's)
    keep, ok = np.asarray(run.keep), ~np.asarray(run.diverged)
    if "num_texts" in summary:  # a language-model run: its texts are the examples (copies merged)
        count = [("training texts", summary["num_texts"]), ("training sequences", keep.shape[1])]
    else:
        count = [("training examples", keep.shape[1])]
    rows = [("models", run.num_models), *count, ("diverged models", int((~ok).sum()))]
    if "unit" in summary:       # a language-model run: what one example is (copies merged)
        rows.append(("unit", summary["unit"]))
    for k in ("test_accuracy", "train_accuracy_in", "train_nll_in", "train_nll_out", "test_nll",
              "exact_match_in", "exact_match_out", "train_seconds", "models_per_second"):
        if k in summary:
            rows.append((k.replace("_", " "), summary[k]))
    if "memorization" in summary:
        rows.append(("mean memorization", summary["memorization"].get("mean")))
    if "dp" in summary:
        rows.append(("DP-SGD epsilon", summary["dp"].get("epsilon")))
    res = workdir / "results"
    body = ["<h2>What was run</h2>", table(what_was_run(workdir)), "<h2>Summary</h2>", table(rows)]
    if not summary:
        body.append(_missing(workdir))
    body += ["<h2>Membership inference (ROC, log-log)</h2>", _attack_section(workdir, res, summary)]
    body.append("<h2>Memorization histogram</h2>")
    if (res / "memorization_hist.png").exists():
        body.append(img_file(res / "memorization_hist.png", "memorization histogram"))
    else:
        body.append(_missing(workdir))
    body += _TASK_SECTIONS[stored_task(run).name](workdir, res, summary)   # (the run's task's)
    body += ["<h2>Convergence</h2>", _convergence_section(workdir, res, int(ok.sum()))]
    body += ["<h2>Provenance</h2>", table(provenance_rows(workdir))]
    body.append(note(f"Run directory: {html.escape(str(workdir.resolve()))}"))
    return page(f"jaxmem report: {run.config.name}", "".join(body))
