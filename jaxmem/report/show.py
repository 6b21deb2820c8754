"""What a run is, in words: the settings it was run with and its provenance (for the HTML report
and ``jaxmem show RUN``), and one example's results (``jaxmem show RUN --example ID``). Renders
what is stored; computes nothing. Reading needs no lock."""

from __future__ import annotations

import json
import math
from pathlib import Path

from jaxmem.io import load_json
from jaxmem.models.registry import spec
from jaxmem.runs import load_run
from jaxmem.runs.examples import example_record
from jaxmem.runs.provenance import NUMERIC_FIELDS, load, mismatch
from jaxmem.runs.store import read_summary, scoring_mismatch
from jaxmem.runs.task import stored_task
from jaxmem.runs.workdir import is_imported

__all__ = ["what_was_run", "provenance_rows", "run_text", "example_text"]


def _imported(workdir: Path, prov: dict) -> bool:
    return prov.get("imported") is not None or is_imported(workdir)


def what_was_run(workdir) -> list:
    """``[(setting, value)]``: the data, design, model and training of a run (for an imported
    run: only what jaxmem knows of it: its arrays, not how they were trained)."""
    workdir = Path(workdir)
    run = load_run(workdir)
    cfg, ds, prov = run.config, run.dataset, load(workdir)
    keep = run.keep
    rows = [("name", cfg.name)]
    if _imported(workdir, prov):
        src = (prov.get("imported") or {}).get("source") or ds.get("meta", {}).get("source")
        rows += [("origin", f"imported from arrays trained outside jaxmem ({src}); how its "
                            f"models were trained is not recorded here"),
                 ("models", keep.shape[0]), ("training examples", keep.shape[1]),
                 ("test examples", ds.get("num_test")), ("classes", ds.get("num_classes"))]
    else:
        t, m, s = cfg.train, cfg.model, cfg.subsets

        fields = ", ".join(f"{f}={getattr(m, f)}" for f in spec(m.name).fields)
        design = s.design.describe()
        lr = f"{t.learning_rate:g} ({t.schedule.describe()})"
        data = stored_task(run).data_summary(run, ds)   # a classifier's, or a language model's
        rows += [("seed", cfg.seed),
                 ("data", f"{ds.get('name')} ({cfg.data.source}): {data}"),
                 ("design", f"{keep.shape[0]} models, {design}"),
                 ("model", f"{m.name} ({fields})" if fields else m.name),
                 ("optimizer", f"{t.optimizer.describe()}, lr {lr}, weight decay {t.weight_decay:g}"),
                 ("epochs", f"{t.epochs:g}, batch size {t.batch_size}, augment {t.augment}, "
                            f"label smoothing {t.label_smoothing:g}, {t.compute_dtype}"),
                 ("DP-SGD", f"clip {t.dp.clip_norm:g}, noise {t.dp.noise_multiplier:g}, delta "
                            f"{t.dp.delta:g}" if t.dp.enabled else "off"),
                 ("signals", f"queries {', '.join(cfg.signals.queries)}; {cfg.signals.dtype}")]
    rows.append(("attacks", ", ".join(cfg.scoring.attacks) or "none"))
    return rows


def provenance_rows(workdir) -> list:
    """``[(what, value)]`` of the run's provenance: software, devices, flags, when and where,
    and which shards were trained under different settings."""
    workdir = Path(workdir)
    prov = load(workdir)
    if not prov:
        return [("provenance", "not recorded (a run of an older jaxmem)")]
    c = prov.get("created", {})
    rows = [("run id", prov.get("run_id")), ("created", f"{c.get('date')} on {c.get('host')}"),
            ("command", " ".join(c.get("command") or [])),
            ("jaxmem", f"{c.get('jaxmem')}" + (f" (git {c['git_revision'][:12]}"
                                               f"{', modified' if c.get('git_dirty') else ''})"
                                               if c.get("git_revision") else ""))]
    shards = []
    for d in sorted((workdir / "shards").glob("models-*")):
        meta = load_json(d / "meta.json") if (d / "meta.json").exists() else {}
        if meta.get("provenance"):
            shards.append((d.name, meta["provenance"]))
    train = shards[0][1] if shards else c
    rows += [("jax / jaxlib / flax / optax", " / ".join(str(train.get(k)) for k in
                                                       ("jax", "jaxlib", "flax", "optax"))),
             ("backend", f"{train.get('backend')} ({', '.join(train.get('device_kind') or [])}; "
                         f"{train.get('devices')} devices, {train.get('num_processes')} processes)"
              if train.get("backend") else "–"),
             ("XLA_FLAGS", train.get("xla_flags") or "(none)")]
    mixed = sorted({k for _, p in shards[1:] for k in mismatch(shards[0][1], p)})
    if mixed:
        rows.append(("mixed shards", "; ".join(
            f"{k}: " + ", ".join(sorted({str(p.get(k)) for _, p in shards})) for k in mixed)))
    elif shards:
        rows.append(("shards", f"{len(shards)}, trained under the same "
                               f"{'/'.join(k for k in NUMERIC_FIELDS if k != 'git_revision')}"))
    if prov.get("imported"):
        rows.append(("imported", json.dumps(prov["imported"])))
    inv = prov.get("invocations", [])
    if inv:
        last = inv[-1]
        rows.append(("last written", f"{last.get('date')} by {' '.join(last.get('command') or [])}"))
    return rows


def _fmt(v) -> str:
    if v is None:   # undefined in summary.json (JSON null: e.g. a mean over zero targets)
        return "n/a"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _lines(rows) -> list:
    w = max((len(k) for k, _ in rows), default=0)
    return [f"  {k:<{w}}  {_fmt(v)}" for k, v in rows]


def run_text(workdir, as_json: bool = False) -> str:
    """What a run is: its settings, provenance and (when scored) its headline results."""
    workdir = Path(workdir)
    settings, prov = what_was_run(workdir), provenance_rows(workdir)

    mixed = scoring_mismatch(workdir)   # (a killed rescoring: no summary beside others' results)
    summary = {} if mixed else read_summary(workdir)
    if as_json:
        return json.dumps({"run": dict(settings), "provenance": dict(prov),
                           "summary": None if mixed else summary, "scoring_mismatch": mixed},
                          indent=2, default=str)
    out = [f"{workdir}", "", "what was run:"] + _lines(settings) + ["", "provenance:"] + _lines(prov)
    if mixed:
        out += ["", f"results: not shown: {mixed}"]
    elif summary:
        rows = [("test accuracy", summary["test_accuracy"])] if "test_accuracy" in summary else []
        rows += [("unit", summary["unit"])] if "unit" in summary else []   # LM: texts, copies merged
        rows += [("mean memorization", (summary.get("memorization") or {}).get("mean"))]
        rows += [(f"{a} AUC", m.get("auc")) for a, m in (summary.get("attacks") or {}).items()]
        out += ["", "results:"] + _lines(rows)
    else:
        out += ["", f"not scored yet: jaxmem score {workdir}"]
    return "\n".join(out)


def example_text(workdir, example_id, as_json: bool = False) -> str:
    """One training example: label, memorization, influence, attack scores, IN/OUT counts."""
    r = example_record(workdir, example_id)
    if as_json:
        return json.dumps(r, indent=2)
    what = (f"sequence of {r['length']} tokens, text of {r['copies']} "
            f"cop{'y' if r['copies'] == 1 else 'ies'} (one example: scored as row {r['text_index']})"
            if r.get("kind") == "language_model" else f"label {r['label']}")
    out = [f"example {r['example_id']} (index {r['index']}) of {workdir}: {what}, "
           f"IN for {r['models_in']} models, OUT for {r['models_out']} (usable models)"]
    m = r.get("memorization")
    if m:
        out.append(f"  memorization  {_fmt(m['mem'])} ± {_fmt(m['stderr'])} (rank {m['rank']}, "
                   f"{m['n_in']} IN / {m['n_out']} OUT models)")
    else:
        out.append(f"  memorization  not computed: jaxmem score {workdir}")
    if r["influence"]:
        out.append("  influence     on the test examples it influences most:")
        out += [f"    test id {i['test_id']} (label {i['test_label']}): {_fmt(i['influence'])} ± "
                f"{_fmt(i['stderr'])}" for i in r["influence"]]
    attacks = r.get("attacks")
    if r.get("attacks_not_stored"):
        out.append(f"  attack scores not stored: {r['attacks_not_stored']}")
    elif attacks is None:
        out.append("  attack scores not stored (scored by an older jaxmem, or no scoring.attacks)")
    for a, row in (attacks or {}).items():
        i_, o_ = row["in"], row["out"]
        out.append(f"  {a}: as a member of {i_['count']} targets mean score {_fmt(i_['mean'])} "
                   f"(min {_fmt(i_['min'])}, max {_fmt(i_['max'])}); as a non-member of "
                   f"{o_['count']} mean {_fmt(o_['mean'])} (min {_fmt(o_['min'])}, "
                   f"max {_fmt(o_['max'])})")
    return "\n".join(out)
