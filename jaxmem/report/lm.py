"""The report's language-model sections: what :mod:`jaxmem.runs.score_lm` wrote (greedy
extraction, the most and least memorized texts), rendered for a language-model run."""

from __future__ import annotations

import html
from pathlib import Path

from jaxmem.report.html import missing_note, note, read_csv, table

__all__ = ["sections"]


def sections(workdir: Path, res: Path, summary: dict) -> list:
    """A language-model run's sections (jaxmem.runs.score_lm wrote them): extraction and the
    most and least memorized sequences with their texts."""
    if not (res / "memorization.csv").exists() or not summary:
        return ["<h2>Language model</h2>", missing_note(workdir)]
    unit = summary.get("unit")
    out = ["<h2>Greedy extraction (rate over IN / OUT models)</h2>",
           note(f"Unit: {html.escape(unit)}. Each text counts once (its copies merged).") if unit else "",
           table([{"prefix k": e["prefix_length"], "suffix s": e["suffix_length"], "extracted IN": e["rate_in"],
                   "extracted OUT": e["rate_out"],
                   "texts": e.get("scored_texts", e.get("scored_sequences"))}
                  for e in summary.get("extraction", {}).values()])]
    if (res / "extraction.csv").exists():
        rows = [r for r in read_csv(res / "extraction.csv") if r["members"] == "True"]
        out += ["<h3>By duplicate / planted count (members)</h3>",
                table([{k: r[k] for k in ("prefix_length", "suffix_length", "by", "count", "trials", "rate",
                                           "low", "high") if k in r} for r in rows])]
    rows = read_csv(res / "memorization.csv")
    keys = ("rank", "example_id", "copies", "duplicate_count", "planted_count", "mem", "stderr", "acc_in",
            "acc_out", "text")
    shown = lambda rs: table([{k: r[k] for k in keys if k in r} for r in rs])
    out += ["<h2>Most memorized texts (counterfactual, token accuracy)</h2>", shown(rows[:16]),
            "<h2>Least memorized texts</h2>", shown(rows[-8:])]
    return out
