"""``jaxmem`` command line: run, score, report, config.

    jaxmem run [EXPERIMENT] --workdir DIR [--set key=value ...] [--overwrite]
    jaxmem score DIR [--set scoring.attacks='["lira_online"]']
    jaxmem report DIR
    jaxmem config [EXPERIMENT] [--set key=value ...]
    jaxmem import-lira SRC --workdir DIR [--labels FILE.npy] [--inputs FILE.npy]
                                             (the LiRA reference layout, or lira-pytorch's)
    jaxmem export-lira DIR DEST
    jaxmem show DIR [--example ID]           (what a run holds; one example's results)

EXPERIMENT is a TOML file under ``experiments/`` (a name or a path); without one, the embedded
digits experiment runs. Problems with the config, the data or a run directory end with a one-line
``jaxmem: error: ...`` and a non-zero exit, before anything is overwritten; so do the operating
system's (a full disk, a read-only folder). Commands that write a run hold its lock
(:mod:`jaxmem.runs.lock`): a second one is refused, naming the first.

Each command imports the packages that load jax (runs, analyses, report, models) when it runs, in
its own function: ``jaxmem --help`` and ``jaxmem config`` start in half a second instead of three.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

from jaxmem import config as cfgmod
from jaxmem.data import DataError
from jaxmem.data.pretrained import pretrained_tokenizer
from jaxmem.data.text import TextDataError
from jaxmem.io import RunError, os_error_line

__all__ = ["main"]


_DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "jaxmem", "xla")


def _enable_compilation_cache(path: str) -> None:
    """Persistent compilation cache: a rerun (or a resumed run) skips recompiling its kernels."""
    if not path:
        return
    import jax

    if os.path.exists(path) and not os.path.isdir(path):
        raise RunError(f"--cache-dir {path}: exists and is not a directory (choose a folder, or "
                       f"--cache-dir '' for no cache)")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",   # (the test suite sets 0)
                      float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 0.5)))


def _parser():
    p = argparse.ArgumentParser(prog="jaxmem", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="train (or resume, or grow) a run, then score it")
    r.add_argument("experiment", nargs="?", default=None,
                   help="experiment TOML (name under experiments/ or a path); default: digits")
    r.add_argument("--workdir", required=True, help="run directory")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=10 (repeatable)")
    r.add_argument("--overwrite", action="store_true",
                   help="delete an existing run in --workdir and start over")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--coordinator", default=None, help="multi-host: HOST:PORT of process 0")
    r.add_argument("--num-processes", type=int, default=None)
    r.add_argument("--process-id", type=int, default=None)
    r.add_argument("--distributed", action="store_true",
                   help="initialize jax.distributed from the cluster environment (SLURM, MPI, TPU)")
    r.add_argument("--cache-dir", default=os.environ.get("JAXMEM_CACHE_DIR", _DEFAULT_CACHE),
                   help="persistent XLA compilation cache ('' to disable; default %(default)s, "
                        "or $JAXMEM_CACHE_DIR)")
    r.add_argument("--delete-imported", action="store_true",
                   help="with --overwrite: also delete an imported run (its logits cannot be remade)")
    for q in (r,):
        _common_write_args(q)

    s = sub.add_parser("score", help="(re)score a finished run")
    s.add_argument("workdir")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="scoring.* overrides only")
    s.add_argument("--verify", choices=("auto", "full"), default="auto",
                   help="check the run's arrays against their checksums: whole files up to 1 GiB "
                        "and samples of larger ones (auto), or every byte (full)")
    _common_write_args(s)

    rep = sub.add_parser("report", help="write a self-contained HTML report of a run")
    rep.add_argument("workdir")
    rep.add_argument("--output", default=None, help="default: WORKDIR/report.html")

    im = sub.add_parser("import-lira", help="make a jaxmem run from the LiRA reference layout "
                                              "(or orientino/lira-pytorch's)")
    im.add_argument("src", help="folder with experiment-*/keep.npy, experiment-*/logits/ and "
                                "y_train.npy (or lira-pytorch's <id>/keep.npy, <id>/logits.npy)")
    im.add_argument("--labels", default=None, metavar="FILE.npy",
                    help="the [N] training labels when SRC has no y_train.npy (lira-pytorch)")
    im.add_argument("--inputs", default=None, metavar="FILE.npy",
                    help="the [N, H, W(, C)] training inputs when SRC has no x_train.npy")
    im.add_argument("--workdir", required=True)
    im.add_argument("--overwrite", action="store_true")
    im.add_argument("--delete-imported", action="store_true",
                    help="with --overwrite: replace a run imported before (its logits are deleted)")
    im.add_argument("--log-file", default=None, help="also append log lines to this file")
    im.add_argument("--epoch", type=int, default=None, help="default: each model's last")

    ex = sub.add_parser("export-lira", help="write a run in the LiRA reference layout")
    ex.add_argument("workdir")
    ex.add_argument("dest")

    sh = sub.add_parser("show", help="print what a run holds, or one example's results")
    sh.add_argument("workdir")
    sh.add_argument("--example", default=None, metavar="ID",
                    help="a training example's id (an integer, or an imported run's file name): "
                         "memorization, influence, attack scores")
    sh.add_argument("--json", action="store_true", help="as JSON")

    g = sub.add_parser("generate", help="greedy continuation of a prompt by a pretrained model "
                                        "(the check that its weights loaded right)")
    g.add_argument("checkpoint", help='"smollm2", a .gguf file or a Hugging Face folder')
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=16)

    c = sub.add_parser("config", help="print the resolved, validated config as JSON")
    c.add_argument("experiment", nargs="?", default=None)
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def _lm_rows(summary: dict) -> list:
    """A language-model run's summary lines (jaxmem.runs.score_lm)."""
    if summary.get("kind") != "language_model":
        return []
    f = _num
    rows = [("unit", summary["unit"])] if summary.get("unit") else []
    rows += [("token NLL train IN / OUT / test", f"{f(summary['train_nll_in'])} / "
             f"{f(summary['train_nll_out'])} / {f(summary['test_nll'])}"),
            ("exact-match token accuracy IN / OUT", f"{f(summary['exact_match_in'])} / "
             f"{f(summary['exact_match_out'])}")]
    for e in summary["extraction"].values():
        rows.append((f"extracted (k={e['prefix_length']}, s={e['suffix_length']}) IN / OUT",
                     f"{f(e['rate_in'])} / {f(e['rate_out'])}"))
    return rows


def _common_write_args(q):
    q.add_argument("--allow-mixed-shards", action="store_true",
                   help="assemble shards trained under different software or settings "
                        "(jax versions, XLA_FLAGS, ...), or go on with data whose fingerprint "
                        "changed (a tokenizer, the files); refused by default")
    q.add_argument("--log-file", default=None, help="also append log lines to this file")


class _Log:
    """Log lines: printed, and appended with a time stamp to ``--log-file`` when given."""

    def __init__(self, path=None):
        self.path = path
        if path:
            if os.path.isdir(path):
                raise RunError(f"--log-file {path}: is a directory")
            d = os.path.dirname(os.path.abspath(path))
            os.makedirs(d, exist_ok=True)

    def __call__(self, *parts):
        msg = " ".join(str(p) for p in parts)
        print(msg, flush=True)
        if self.path:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.path, "a") as f:
                f.writelines(f"{stamp}  {line}\n" for line in msg.splitlines() or [""])


def _print_summary(summary: dict, workdir: str) -> None:
    m = summary["memorization"]
    rows = [
        ("models", summary["num_models"]),
        ("training examples", summary["num_examples"]),
        *([("test accuracy (mean over models)", _num(summary["test_accuracy"]))]
          if "test_accuracy" in summary else []),
        *([("  with logits averaged over queries", _num(summary["test_accuracy_query_average"]))]
          if summary.get("test_accuracy_query_average") is not None else []),
        *_lm_rows(summary),
        ("train seconds", f"{summary['train_seconds']:.1f}"),
        ("models / second", f"{summary['models_per_second']:.1f}" if summary["models_per_second"] else "-"),
        ("diverged models", summary["diverged"]["count"]),
        ("mean memorization", f"{_num(m['mean'])} (mean stderr {_num(m['mean_stderr'])})"),
        ("most memorized example ids", ", ".join(map(str, m["top10"]))),
    ]
    if "influence" in summary:
        inf = summary["influence"]
        rows.append((f"test examples with an influence >= {inf['threshold']:g}",
                     f"{inf['test_examples_with_a_pair']} of {summary['num_test']} "
                     f"({inf['test_examples_with_a_pair_mem_0.25']} from a training example "
                     f"with memorization >= 0.25)"))
    if "dp" in summary:
        rows.append(("DP-SGD epsilon", f"{summary['dp']['epsilon']:.2f} at delta={summary['dp']['delta']:g}"))
    w = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{w}}  {v}")
    if summary.get("attacks"):
        print()
        _print_attacks(summary["attacks"])
    print()
    print(f"  summary:       {os.path.join(workdir, 'summary.json')}")
    for k, v in summary.get("files", {}).items():
        print(f"  {k + ':':<14} {v}")
    print(f"  report:        jaxmem report {workdir}")


def _num(v, fmt=".4f"):
    """A number, or "n/a" when undefined (NaN; null in summary.json)."""
    return "n/a" if v is None or v != v else format(v, fmt)


def _print_attacks(attacks: dict) -> None:
    """The attack table: means over the targets where each metric is defined (n_targets of the
    targets attacked) and the mean fraction of members / non-members scored."""
    print(f"  {'attack':<30} {'AUC':>12} {'TPR@0.1%FPR':>14} {'TPR@1%FPR':>12} {'targets':>8} "
          f"{'scored in/out':>14}")
    for name, a in attacks.items():
        auc = _num(a["auc"]) + ("" if _num(a["auc"]) == "n/a" else "±" + _num(a.get("auc_std"), ".3f"))
        n, und = a.get("n_targets"), a.get("n_targets_undefined", 0)
        tg = "" if n is None else (f"{n}" if not und else f"{n}/{n + und}")
        sf = (f"{_num(a['scored_fraction_members'], '.2f')}/{_num(a['scored_fraction_non_members'], '.2f')}"
              if "scored_fraction_members" in a else "")
        print(f"  {name:<30} {auc:>12} {_num(a['tpr_at_0.001_fpr']):>14} "
              f"{_num(a['tpr_at_0.01_fpr']):>12} {tg:>8} {sf:>14}")


def _init_distributed(args):
    """Join a multi-process run with jax.distributed; returns (process_id, num_processes)."""
    if not (args.coordinator or args.distributed):
        if args.num_processes not in (None, 1) or args.process_id not in (None, 0):
            if not _cluster_env():
                raise cfgmod.ConfigError(
                    "--num-processes/--process-id: a multi-process run needs --coordinator "
                    "HOST:PORT (process 0's address), or --distributed where jax.distributed "
                    "reads the cluster (SLURM, Open MPI, a TPU pod); without them this process "
                    "would train the whole run alone")
            args.distributed = True
        else:
            return 0, 1
    import jax

    if args.coordinator:
        if args.num_processes is None or args.process_id is None:
            raise cfgmod.ConfigError("--coordinator needs --num-processes and --process-id")
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes, process_id=args.process_id)
    else:
        jax.distributed.initialize(num_processes=args.num_processes, process_id=args.process_id)
    return jax.process_index(), jax.process_count()


def _cluster_env() -> bool:
    """Whether jax.distributed can read a cluster environment here (SLURM, Open MPI, TPU, ...)."""
    try:
        from jax._src import clusters
    except ImportError:   # jax moved it: let jax.distributed decide
        return True
    return any(not env.opt_in_only_method and env.is_env_present()
               for env in clusters.ClusterEnv._cluster_types)


def _cmd_run(args) -> int:
    cfg = cfgmod.load_config(args.experiment, args.overrides)
    log = _Log(args.log_file)
    _enable_compilation_cache(args.cache_dir)
    pid, nproc = _init_distributed(args)
    from jaxmem.runs import execute

    t0 = time.time()
    if cfg.experiment.variants or cfg.experiment.kind != "default":
        from jaxmem.analyses import run_experiment

        run_experiment(cfg, args.workdir, overwrite=args.overwrite, progress=not args.no_progress,
                       process_id=pid, num_processes=nproc, log=log)
        return 0
    summary = execute(cfg, args.workdir, overwrite=args.overwrite, progress=not args.no_progress,
                      process_id=pid, num_processes=nproc, log=log,
                      allow_mixed_shards=args.allow_mixed_shards,
                      delete_imported=args.delete_imported)
    if pid == 0:
        _print_summary(summary, args.workdir)
        print(f"  wall time:     {time.time() - t0:.1f} s")
    return 0


def _cmd_score(args) -> int:
    from jaxmem.runs import score

    summary = score(args.workdir, overrides=args.overrides, verify=args.verify,
                    allow_mixed_shards=args.allow_mixed_shards, log=_Log(args.log_file))
    _print_summary(summary, args.workdir)
    return 0


def _cmd_report(args) -> int:
    from jaxmem.report import write_report

    out = write_report(args.workdir, args.output)
    print(out)
    return 0


def _cmd_import_lira(args) -> int:
    from jaxmem.runs import import_lira, score

    log = _Log(args.log_file)
    import_lira(args.src, args.workdir, overwrite=args.overwrite, epoch=args.epoch,
                delete_imported=args.delete_imported, labels=args.labels, x_train=args.inputs)
    _print_summary(score(args.workdir, log=log), args.workdir)
    return 0


def _cmd_export_lira(args) -> int:
    from jaxmem.runs import export_lira

    print(export_lira(args.workdir, args.dest, log=lambda m: print(m, file=sys.stderr)))
    return 0


def _cmd_show(args) -> int:
    from jaxmem.report.show import example_text, run_text

    if args.example is not None:
        print(example_text(args.workdir, args.example, as_json=args.json))
    else:
        print(run_text(args.workdir, as_json=args.json))
    return 0


def _cmd_generate(args) -> int:
    if args.max_new_tokens < 1:
        raise cfgmod.ConfigError(f"--max-new-tokens: must be >= 1, got {args.max_new_tokens}")
    from jaxmem.models.pretrained import generate, load_pretrained

    try:
        tok = pretrained_tokenizer(args.checkpoint)
        model, params = load_pretrained(args.checkpoint)
    except (FileNotFoundError, TextDataError, ValueError, ImportError) as e:
        raise RunError(str(e)) from None
    ids = tok.encode(args.prompt)
    if not ids:
        raise cfgmod.ConfigError("--prompt: the prompt has no tokens")
    new = generate(model, {"params": params}, ids, args.max_new_tokens, tok.eos_id)
    print(args.prompt + tok.decode(new))
    return 0


def _cmd_config(args) -> int:
    cfg = cfgmod.load_config(args.experiment, args.overrides)
    print(json.dumps(cfgmod.to_dict(cfg), indent=2))
    return 0


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (``jaxmem show RUN | head -1``)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):   # stdout replaced by an object: not a pipe
        return False
    if not hasattr(select, "poll"):   # (Windows) a broken pipe is then taken to be stdout's
        return True
    poll = select.poll()
    poll.register(fd, select.POLLERR)
    return any(ev & select.POLLERR for _, ev in poll.poll(0))


def _reader_gone() -> int:
    """Quiet end when the reader of standard output closed it (``| head``): no "Broken pipe"
    message, no error at interpreter exit (stdout is pointed at /dev/null, as the Python docs
    advise for SIGPIPE); exit status 141 = 128 + SIGPIPE, as a shell tool gets."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass
    return 141


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from jaxmem.runs.execute import Interrupted

    try:
        rc = {"run": _cmd_run, "score": _cmd_score, "report": _cmd_report,
              "config": _cmd_config, "import-lira": _cmd_import_lira,
              "export-lira": _cmd_export_lira, "show": _cmd_show,
              "generate": _cmd_generate}[args.cmd](args)
        sys.stdout.flush()   # here, so that a reader gone (| head) is caught below, not at exit
        return rc
    except BrokenPipeError as e:
        if _stdout_closed():
            return _reader_gone()
        # another pipe than stdout: an OS error like any other
        print(f"jaxmem: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except (cfgmod.ConfigError, RunError, DataError) as e:
        print(f"jaxmem: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:   # a full disk, a read-only folder, ...: one line, no traceback
        print(f"jaxmem: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:   # SIGTERM: state saved
        print(f"jaxmem: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("jaxmem: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
