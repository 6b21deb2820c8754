"""HTML pieces of the reports: tables, embedded PNG images (base64), the page."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path

__all__ = ["fmt", "table", "attack_table", "img_bytes", "img_file", "new_figure", "fig_img", "page", "note",
           "missing_note", "read_csv"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:right}th{background:#f3f3f3;white-space:normal;max-width:11em}
td:first-child,th:first-child{text-align:left}
img{max-width:100%;margin:0.3em}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}.note{color:#666;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}.scroll table{margin-top:0}
"""


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v)


def table(rows, keys=None) -> str:
    """An HTML table of a list of dicts (or of (key, value) pairs), in a box that scrolls
    sideways when the table is wider than the page."""
    if not rows:
        return ""
    if isinstance(rows[0], tuple):
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(fmt(v))}</td></tr>"
                       for k, v in rows)
        return f"<div class='scroll'><table>{body}</table></div>"
    keys = keys or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
                   for r in rows)
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


#: The attack table's metric columns: (heading, summary key); each shows "mean ± std" over the
#: targets, the std from the key + "_std".
ATTACK_METRICS = (("AUC", "auc"), ("TPR at 0.1% FPR", "tpr_at_0.001_fpr"),
                  ("TPR at 1% FPR", "tpr_at_0.01_fpr"))


def _na(v):
    return "n/a" if v is None or (isinstance(v, float) and v != v) else v


def attack_table(attacks: dict) -> str:
    """The attack table of a summary (``{attack: {metric: value}}``), narrow enough for the page:
    each metric of :data:`ATTACK_METRICS` as "mean ± std over targets" in one column, the
    targets with those left out in brackets (undefined, too few scored), the scored fractions of
    members / non-members in one column, any other key as its own column. An undefined number
    (NaN; null in summary.json, e.g. a mean over zero targets) shows as "n/a"."""
    rows = []
    for a, m in attacks.items():
        row, used = {"attack": a}, set()
        for head, k in ATTACK_METRICS:
            if k in m:
                sd = m.get(f"{k}_std")
                row[head] = fmt(_na(m[k])) + ("" if sd is None else f" ± {fmt(_na(sd))}")
                used |= {k, f"{k}_std"}
        if "n_targets" in m:
            out = [f"{m[k]} {what}" for k, what in (("n_targets_undefined", "undefined"),
                                                   ("n_targets_few_scored", "few scored"))
                   if m.get(k)]
            row["targets"] = f"{m['n_targets']}" + (f" ({', '.join(out)})" if out else "")
            used |= {"n_targets", "n_targets_undefined", "n_targets_few_scored"}
        if "scored_fraction_members" in m or "scored_fraction_non_members" in m:
            row["scored fraction (members / non-members)"] = (
                f"{fmt(_na(m.get('scored_fraction_members')))} / "
                f"{fmt(_na(m.get('scored_fraction_non_members')))}")
            used |= {"scored_fraction_members", "scored_fraction_non_members"}
        row.update({k: _na(v) for k, v in m.items() if k not in used})
        rows.append(row)
    if not rows:
        return ""
    return table(rows) + note("Mean ± standard deviation over the target models.")


def img_bytes(data: bytes, alt: str, width=None) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    w = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{w} src="data:image/png;base64,{b64}">'


def img_file(path, alt: str, width=None) -> str:
    return img_bytes(Path(path).read_bytes(), alt, width)


def new_figure(size=(5, 3.5), rows=1, cols=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def fig_img(fig, alt: str, width=None) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    return img_bytes(buf.getvalue(), alt, width)


def page(title: str, body: str) -> str:
    t = html.escape(title)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{t}</title>"
            f"<style>{_CSS}</style></head><body><h1>{t}</h1>{body}</body></html>\n")


def note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


def missing_note(workdir) -> str:
    """The note in place of a table or figure that the run's scoring did not compute."""
    return note(f"Not computed; run <code>jaxmem score {html.escape(str(workdir))}</code>.")


def read_csv(path) -> list:
    """The rows of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
