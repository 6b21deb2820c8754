"""Self-contained HTML reports of runs and experiments (``jaxmem report DIR``).

A run's report holds its summary table, attack table and log-log ROC curves, the memorization
histogram, the most-memorized training examples with their given label and the label predicted
by the models that did not train on them (majority vote), and the convergence of the estimate
as models are added (:func:`jaxmem.estimators.convergence`). An experiment's report holds its
summary and tables, its figures, and one section per variant linking to the variant's own report.
Every image is embedded as a base64 PNG, so the file can be viewed offline and moved freely.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from pathlib import Path

import numpy as np

from jaxmem.io import RunError, load_json, save_text

__all__ = ["write_report", "run_html", "experiment_html"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:0.3em}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}.note{color:#666;font-size:13px}
"""


# ----------------------------------------------------------------------------------------------
# HTML pieces
# ----------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _table(rows, keys=None) -> str:
    """An HTML table of a list of dicts (or of (key, value) pairs)."""
    if not rows:
        return ""
    if isinstance(rows[0], tuple):
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
                       for k, v in rows)
        return f"<table>{body}</table>"
    keys = keys or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img_bytes(data: bytes, alt: str, width=None) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{b64}">'


def _img_file(path, alt: str, width=None) -> str:
    return _img_bytes(Path(path).read_bytes(), alt, width)


def _new_figure(size=(5, 3.5), rows=1, cols=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _fig_img(fig, alt: str, width=None) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return _img_bytes(buf.getvalue(), alt, width)


def _page(title: str, body: str) -> str:
    t = html.escape(title)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{t}</title>"
            f"<style>{_CSS}</style></head><body><h1>{t}</h1>{body}</body></html>\n")


# ----------------------------------------------------------------------------------------------
# A run
# ----------------------------------------------------------------------------------------------

def _majority_out(logits0, keep, ok) -> np.ndarray:
    """Per example: the most common argmax among the non-diverged models that did not train on it
    (-1 when there is none). ``logits0`` [M, N, C]."""
    pred = np.asarray(logits0).argmax(-1)  # [M, N]
    C = np.asarray(logits0).shape[-1]
    out = np.full(pred.shape[1], -1)
    for i in range(pred.shape[1]):
        sel = ~keep[:, i] & ok
        if sel.any():
            out[i] = int(np.bincount(pred[sel, i], minlength=C).argmax())
    return out


def _examples_section(run, mem, k: int = 16) -> str:
    from jaxmem.run import build_dataset

    try:
        ds = build_dataset(run.config)
    except Exception as e:  # the data may be unavailable where the report is written
        return f"<p class='note'>Training inputs unavailable ({html.escape(str(e))}).</p>"
    keep, ok = np.asarray(run.keep), ~np.asarray(run.diverged)
    labels, ids = np.asarray(run.labels), np.asarray(run.example_ids)
    order = np.argsort(-np.nan_to_num(mem.mem, nan=-np.inf), kind="stable")[:k]
    # only the shown examples' logits are read (the run's may be tens of GB)
    pred = _majority_out(np.asarray(run.logits[:, order, 0]), keep[:, order], ok)
    x = np.asarray(ds.x_train)
    cols = 8
    rows_n = int(math.ceil(len(order) / cols))
    fig, axes = _new_figure((1.6 * cols, 1.9 * rows_n), rows_n, cols)
    for ax in axes.ravel():
        ax.axis("off")
    for j, i in enumerate(order):
        ax = axes.ravel()[j]
        xi = x[i]
        if xi.ndim == 3:
            ax.imshow(xi[..., 0] if xi.shape[-1] == 1 else
                      (xi - xi.min()) / max(np.ptp(xi), 1e-9), cmap="gray")
        else:
            ax.plot(np.ravel(xi), lw=0.8)
        ax.set_title(f"id {ids[i]}  mem {mem.mem[i]:.2f}\ngiven {labels[i]}  pred {pred[j]}",
                     fontsize=7)
    rows = [{"rank": r + 1, "example_id": int(ids[i]), "given label": int(labels[i]),
             "predicted (OUT majority)": int(pred[r]), "memorization": float(mem.mem[i]),
             "stderr": float(mem.stderr[i])} for r, i in enumerate(order)]
    return (_fig_img(fig, "most memorized training examples") +
            "<p class='note'>Predicted = majority vote of the models that did not train on the "
            "example.</p>" + _table(rows))


def _convergence_section(keep, correct, ok) -> str:
    from jaxmem.estimators import convergence

    if ok.sum() < 4:
        return "<p class='note'>Too few models for a convergence plot.</p>"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = convergence(keep, correct, model_mask=ok)
    fig, ax = _new_figure((5, 3.3))
    ax = ax[0, 0]
    ax.plot(c["sizes"], c["spearman"], "o-", label="Spearman vs all models")
    ax.plot(c["sizes"], c["mean_stderr"], "s-", label="mean stderr")
    ax.plot(c["sizes"], c["frac_nan"], "^-", label="fraction NaN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("models")
    ax.legend(fontsize=7)
    rows = [{"models": int(s), "spearman": float(r), "rmse": float(e), "mean_stderr": float(m),
             "frac_nan": float(f)} for s, r, e, m, f in
            zip(c["sizes"], c["spearman"], c["rmse"], c["mean_stderr"], c["frac_nan"])]
    return _fig_img(fig, "convergence of memorization") + _table(rows)


#: Logit entries above which a report does not audit a run that stored no attack results (the
#: audit holds every logit and softmax in float64 in memory).
MAX_AUDIT_LOGITS = 50_000_000


def _attack_section(run, res: Path, summary: dict) -> str:
    parts = []
    if summary.get("attacks"):
        parts.append(_table([{"attack": a, **m} for a, m in summary["attacks"].items()]))
    if (res / "roc.png").exists():
        parts.append(_img_file(res / "roc.png", "ROC curves (log-log)"))
        return "".join(parts)
    if run.num_models < 3:
        return "<p class='note'>Fewer than 3 models: no attack.</p>"
    if run.logits.size > MAX_AUDIT_LOGITS:
        return ("<p class='note'>No attack results stored, and the run is too large to audit "
                "while writing a report; add some with <code>jaxmem score WORKDIR --set "
                "'scoring.attacks=[\"lira_online\"]'</code>.</p>")
    # No stored attack results: audit a few targets now (LiRA online/offline, loss).
    import tempfile

    from jaxmem.attacks.plot import plot_roc
    from jaxmem.experiments import _roc_curves, attack_table, audit, signals_of

    s = signals_of(run)
    targets = np.flatnonzero(s.ok)[:4]
    sc = audit(s, ["loss", "lira_online", "lira_offline"], targets)
    parts.append(_table([{"attack": a, **m} for a, m in attack_table(sc).items()]))
    with tempfile.TemporaryDirectory() as d:
        p = plot_roc(_roc_curves(sc), Path(d) / "roc.png", title=f"{len(targets)} targets")
        parts.append(_img_file(p, "ROC curves (log-log)"))
    parts.append("<p class='note'>Computed for this report: each target against the other "
                 "models as shadows.</p>")
    return "".join(parts)


def run_html(workdir) -> str:
    """The HTML report of one run directory."""
    from jaxmem.estimators import memorization
    from jaxmem.run import _signals, load_run

    workdir = Path(workdir)
    run = load_run(workdir)
    summary = load_json(workdir / "summary.json") if (workdir / "summary.json").exists() else {}
    keep, ok = np.asarray(run.keep), ~np.asarray(run.diverged)
    labels = np.asarray(run.labels)
    correct = _signals(run.logits, labels, want_phi=False)["correct"]   # streamed, identity query
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = memorization(keep, correct, model_mask=ok)
    cfg = run.config
    rows = [("name", cfg.name), ("data", run.dataset.get("name")), ("model", cfg.model.name),
            ("models", run.num_models), ("training examples", keep.shape[1]),
            ("diverged models", int((~ok).sum()))]
    for k in ("test_accuracy", "train_accuracy_in", "train_seconds", "models_per_second"):
        if k in summary:
            rows.append((k.replace("_", " "), summary[k]))
    rows.append(("mean memorization", float(np.nanmean(mem.mem))))
    if "dp" in summary:
        rows.append(("DP-SGD epsilon", summary["dp"].get("epsilon")))
    res = workdir / "results"
    body = ["<h2>Summary</h2>", _table(rows)]
    body += ["<h2>Membership inference (ROC, log-log)</h2>", _attack_section(run, res, summary)]
    body.append("<h2>Memorization histogram</h2>")
    if (res / "memorization_hist.png").exists():
        body.append(_img_file(res / "memorization_hist.png", "memorization histogram"))
    else:
        fig, ax = _new_figure()
        ax[0, 0].hist(mem.mem[np.isfinite(mem.mem)], bins=40)
        ax[0, 0].set_xlabel("memorization")
        body.append(_fig_img(fig, "memorization histogram"))
    body += ["<h2>Most memorized training examples</h2>", _examples_section(run, mem)]
    body += ["<h2>Convergence</h2>", _convergence_section(keep, correct, ok)]
    body.append(f"<p class='note'>Run directory: {html.escape(str(workdir.resolve()))}</p>")
    return _page(f"jaxmem report: {cfg.name}", "".join(body))


# ----------------------------------------------------------------------------------------------
# An experiment
# ----------------------------------------------------------------------------------------------

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
        body += ["<h2>Summary</h2>", _table(scalars)]
    if summary.get("rows"):
        body += ["<h2>Results</h2>", _table(summary["rows"])]
    if isinstance(summary.get("attacks"), dict):
        body += ["<h2>Attacks</h2>", _table([{"attack": a, **m} for a, m in summary["attacks"].items()])]
    figs = [(k, _png_path(workdir, v)) for k, v in summary.get("files", {}).items()]
    figs = [(k, p) for k, p in figs if p is not None]
    if figs:
        body.append("<h2>Figures</h2><div class='figs'>")
        body += [_img_file(p, k, width=480) for k, p in figs]
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
        body.append(_table([("test accuracy", vs.get("test_accuracy")),
                            ("mean memorization", (vs.get("memorization") or {}).get("mean")),
                            ("models", vs.get("num_models"))]))
        body.append("<div class='figs'>")
        for f in ("memorization_hist.png", "roc.png"):
            if (vdir / "results" / f).exists():
                body.append(_img_file(vdir / "results" / f, f"{name} {f}", width=380))
        body.append("</div>")
    return _page(f"jaxmem experiment: {summary.get('name', workdir.name)}", "".join(body))


def write_report(workdir, output=None) -> Path:
    """Write ``WORKDIR/report.html`` (or ``output``) for a run or an experiment directory."""
    workdir = Path(workdir)
    if (workdir / "experiment.json").exists():
        text = experiment_html(workdir)
    elif (workdir / "keep.npy").exists():
        text = run_html(workdir)
    else:
        raise RunError(f"{workdir}: neither a jaxmem run nor an experiment directory")
    out = Path(output) if output else workdir / "report.html"
    save_text(out, text)
    return out
