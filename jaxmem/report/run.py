"""The report of one run: it renders what :func:`jaxmem.runs.score` wrote (summary.json and
results/) and computes nothing. A run scored before a table existed shows where it is missing
("not computed; run jaxmem score DIR")."""

from __future__ import annotations

import csv
import html
import math
from pathlib import Path

import numpy as np

from jaxmem.io import load_json
from jaxmem.report.html import attack_table, fig_img, img_file, new_figure, note, page, table

__all__ = ["run_html"]


def _missing(workdir: Path) -> str:
    return note(f"Not computed; run <code>jaxmem score {html.escape(str(workdir))}</code>.")


def _csv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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
    shown = [{"rank": int(r["rank"]), "example_id": int(r["example_id"]),
              "given label": int(r["label"]),
              "predicted (OUT majority)": int(r["predicted_out_majority"]),
              "memorization": float(r["mem"]), "stderr": float(r["stderr"])} for r in rows]
    out = ""
    if (res / "examples_inputs.npy").exists():
        x = np.load(res / "examples_inputs.npy", allow_pickle=False)
        cols = 8
        rows_n = int(math.ceil(len(shown) / cols))
        fig, axes = new_figure((1.6 * cols, 1.9 * rows_n), rows_n, cols)
        for ax in axes.ravel():
            ax.axis("off")
        for j, r in enumerate(shown):
            ax = axes.ravel()[j]
            xi = x[j]
            if xi.ndim == 3:
                ax.imshow(xi[..., 0] if xi.shape[-1] == 1 else
                          (xi - xi.min()) / max(np.ptp(xi), 1e-9), cmap="gray")
            else:
                ax.plot(np.ravel(xi), lw=0.8)
            ax.set_title(f"id {r['example_id']}  mem {r['memorization']:.2f}\n"
                         f"given {r['given label']}  pred {r['predicted (OUT majority)']}",
                         fontsize=7)
        out += fig_img(fig, "most memorized training examples")
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
    fig, ax = new_figure((5, 3.3))
    ax = ax[0, 0]
    sizes = [r["models"] for r in rows]
    ax.plot(sizes, [r["spearman"] for r in rows], "o-", label="Spearman vs all models")
    ax.plot(sizes, [r["mean_stderr"] for r in rows], "s-", label="mean stderr")
    ax.plot(sizes, [r["frac_nan"] for r in rows], "^-", label="fraction NaN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("models")
    ax.legend(fontsize=7)
    return fig_img(fig, "convergence of memorization") + table(rows)


def run_html(workdir) -> str:
    """The HTML report of one run directory."""
    from jaxmem.runs import load_run

    workdir = Path(workdir)
    run = load_run(workdir)
    summary = load_json(workdir / "summary.json") if (workdir / "summary.json").exists() else {}
    keep, ok = np.asarray(run.keep), ~np.asarray(run.diverged)
    cfg = run.config
    rows = [("name", cfg.name), ("data", run.dataset.get("name")), ("model", cfg.model.name),
            ("models", run.num_models), ("training examples", keep.shape[1]),
            ("diverged models", int((~ok).sum()))]
    for k in ("test_accuracy", "train_accuracy_in", "train_seconds", "models_per_second"):
        if k in summary:
            rows.append((k.replace("_", " "), summary[k]))
    if "memorization" in summary:
        rows.append(("mean memorization", summary["memorization"].get("mean")))
    if "dp" in summary:
        rows.append(("DP-SGD epsilon", summary["dp"].get("epsilon")))
    res = workdir / "results"
    body = ["<h2>Summary</h2>", table(rows)]
    if not summary:
        body.append(_missing(workdir))
    body += ["<h2>Membership inference (ROC, log-log)</h2>", _attack_section(workdir, res, summary)]
    body.append("<h2>Memorization histogram</h2>")
    if (res / "memorization_hist.png").exists():
        body.append(img_file(res / "memorization_hist.png", "memorization histogram"))
    else:
        body.append(_missing(workdir))
    body += ["<h2>Most memorized training examples</h2>", _examples_section(workdir, res)]
    body += ["<h2>Convergence</h2>", _convergence_section(workdir, res, int(ok.sum()))]
    body.append(note(f"Run directory: {html.escape(str(workdir.resolve()))}"))
    return page(f"jaxmem report: {cfg.name}", "".join(body))
