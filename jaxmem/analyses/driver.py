"""Running an experiment file: train every variant of ``cfg.experiment.variants`` with
:func:`jaxmem.runs.execute` into ``WORKDIR/variants/NAME`` (resumable: finished work is skipped),
then run the analysis named by ``cfg.experiment.kind`` and write ``WORKDIR/summary.json``, CSV
tables and PNG figures (atomically), and print a short table."""

from __future__ import annotations

import inspect
import shutil
import time
from pathlib import Path

from jaxmem import config as cfgmod
from jaxmem.analyses import registry
from jaxmem.analyses.common import json_safe, print_rows
from jaxmem.io import RunError, save_json

__all__ = ["run_experiment"]


def run_experiment(cfg: cfgmod.Config, workdir, *, overwrite: bool = False, progress: bool = True,
                   process_id: int = 0, num_processes: int = 1, log=print) -> dict:
    """Train every variant into ``WORKDIR/variants/NAME``, run the analysis ``experiment.kind``,
    write ``WORKDIR/summary.json`` (+ CSV/PNG files) and print a table. Returns the summary.
    Process 0 holds the experiment folder's lock throughout."""
    workdir = Path(workdir)
    kind = cfg.experiment.kind
    if kind not in registry.ANALYSES:
        raise cfgmod.ConfigError(f"experiment.kind: unknown analysis {kind!r} "
                                 f"(known: {', '.join(sorted(registry.ANALYSES))})")
    fn = registry.get(kind)
    params = dict(cfg.experiment.params)
    allowed = [p for p in inspect.signature(fn).parameters if p not in ("cfg", "workdir", "runs", "log")]
    for k in params:
        if k not in allowed:
            raise cfgmod.ConfigError(f"experiment.params.{k}: not a parameter of the {kind!r} "
                                     f"analysis (it takes: {', '.join(allowed) or 'none'})")
    if process_id != 0:
        return _run(cfg, workdir, kind, fn, params, overwrite, progress, process_id,
                    num_processes, log)
    from jaxmem.runs.lock import run_lock

    with run_lock(workdir):   # one writer of the experiment folder (each variant locks its own)
        return _run(cfg, workdir, kind, fn, params, overwrite, progress, process_id,
                    num_processes, log)


def _run(cfg, workdir: Path, kind, fn, params, overwrite, progress, process_id, num_processes,
         log) -> dict:
    from jaxmem.runs import execute, load_run
    from jaxmem.runs.lock import LOCK_NAME

    marker = workdir / "experiment.json"
    if workdir.exists() and any(p for p in workdir.iterdir() if p.name != LOCK_NAME) and \
            not marker.exists():
        raise RunError(f"{workdir}: exists, is not empty and is not a jaxmem experiment")
    if overwrite and marker.exists() and process_id == 0:
        for p in workdir.iterdir():          # (all but the lock this process holds)
            if p.name != LOCK_NAME:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    t0 = time.time()
    variants = [] if kind in registry.NO_VARIANTS else cfgmod.variant_configs(cfg)
    if process_id == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        save_json(marker, {"kind": kind, "config": cfgmod.to_dict(cfg),
                           "variants": [n for n, _ in variants]})
    for name, vcfg in variants:
        log(f"[{kind}] variant {name}")
        execute(vcfg, workdir / "variants" / name, progress=progress, process_id=process_id,
                num_processes=num_processes, log=log)
    if process_id != 0:
        return {}
    runs = {name: load_run(workdir / "variants" / name) for name, _ in variants}
    log(f"[{kind}] analysis")
    summary = fn(cfg, workdir, runs, log, **params)
    summary = {"experiment": kind, "name": cfg.name, "variants": list(runs),
               "seconds": time.time() - t0, **summary}
    summary = json_safe(summary)
    save_json(workdir / "summary.json", summary)
    print()
    print_rows(summary.get("rows", []))
    print(f"\n  summary: {workdir / 'summary.json'}\n  report:  jaxmem report {workdir}")
    return summary
