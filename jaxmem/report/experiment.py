"""The report of an experiment directory: its summary, tables and figures, and one section per
variant linking to the variant's own report."""

from __future__ import annotations

import contextlib
import html
from pathlib import Path

from jaxmem.io import RunError, load_json, save_text
from jaxmem.report.html import attack_table, img_file, page, table
from jaxmem.report.run import run_html
from jaxmem.runs import integrity, load_run
from jaxmem.runs.lock import run_lock

__all__ = ["experiment_html", "write_report"]


def _png_path(workdir: Path, p) -> Path | None:
    p = Path(p)
    for c in (p, workdir / p.name):
        if c.suffix == ".png" and c.is_file():
            return c
    return None


def experiment_html(workdir) -> str:
    """The HTML report of an experiment directory (writes each variant's report too)."""
    workdir = Path(workdir)
    summary = load_json(workdir / "summary.json") if (workdir / "summary.json").exists() else {}
    meta = load_json(workdir / "experiment.json")
    body = [f"<p>Analysis <b>{html.escape(meta['kind'])}</b>"
            f"{' — ' + html.escape(str(summary.get('name'))) if summary else ''}.</p>"]
    if not summary:
        body.append("<p class='note'>No summary.json yet: the experiment has not finished.</p>")
    scalars = [(k, v) for k, v in summary.items()
               if not isinstance(v, (dict, list)) and k not in ("experiment", "name")]
    if scalars:
        body += ["<h2>Summary</h2>", table(scalars)]
    if summary.get("rows"):
        body += ["<h2>Results</h2>", table(summary["rows"])]
    if isinstance(summary.get("attacks"), dict):
        body += ["<h2>Attacks</h2>", attack_table(summary["attacks"])]
    figs = [(k, _png_path(workdir, v)) for k, v in summary.get("files", {}).items()]
    figs = [(k, p) for k, p in figs if p is not None]
    if figs:
        body.append("<h2>Figures</h2><div class='figs'>")
        body += [img_file(p, k, width=480) for k, p in figs]
        body.append("</div>")
    variants = meta.get("variants", [])
    if variants:
        body.append("<h2>Variants</h2>")
    for name in variants:
        vdir = workdir / "variants" / name
        body.append(f"<h3>{html.escape(name)}</h3>")
        if not (vdir / "summary.json").exists():
            body.append("<p class='note'>not finished</p>")
            continue
        vs = load_json(vdir / "summary.json")
        link = f"variants/{name}/report.html"
        try:
            write_report(vdir)
            body.append(f"<p><a href='{html.escape(link)}'>full report of {html.escape(name)}</a></p>")
        except (RunError, OSError, ValueError) as e:
            body.append(f"<p class='note'>variant report failed: {html.escape(str(e))}</p>")
        body.append(table([("test accuracy", vs.get("test_accuracy")),
                            ("mean memorization", (vs.get("memorization") or {}).get("mean")),
                            ("models", vs.get("num_models"))]))
        body.append("<div class='figs'>")
        for f in ("memorization_hist.png", "roc.png"):
            if (vdir / "results" / f).exists():
                body.append(img_file(vdir / "results" / f, f"{name} {f}", width=380))
        body.append("</div>")
    return page(f"jaxmem experiment: {summary.get('name', workdir.name)}", "".join(body))


def write_report(workdir, output=None, *, log=print) -> Path:
    """Write ``WORKDIR/report.html`` (or ``output``) for a run or an experiment directory. A
    report written into a run holds the run's lock; a run's arrays are checked against their
    checksums first (:func:`jaxmem.runs.integrity.ensure_intact`: a damaged assembled array with
    intact shards is rebuilt)."""
    workdir = Path(workdir)
    if (workdir / "experiment.json").exists():
        kind = "experiment"
    elif (workdir / "keep.npy").exists():
        kind = "run"
    else:
        raise RunError(f"{workdir}: neither a jaxmem run nor an experiment directory")
    out = Path(output) if output else workdir / "report.html"
    # (a run's report may repair the run: it always locks it)
    locked = kind == "run" or out.resolve().parent == workdir.resolve()
    with run_lock(workdir) if locked else contextlib.nullcontext():
        if kind == "run":
            integrity.ensure_intact(workdir, load_run(workdir).num_models, log=log)
            text = run_html(workdir)
        else:
            text = experiment_html(workdir)
        save_text(out, text)
    return out
