"""Toneva et al. (2019): often-forgotten examples are the atypical, memorized ones; Jagielski et
al. (2022): examples seen early in training are forgotten, attacks on them weaken."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from jaxmem.analyses.common import ANALYSIS_TARGETS, audit, audit_spec, figure, memorization_of, nanmean, run_signals, spearman
from jaxmem.config.registry import SCHEDULE
from jaxmem.data import build_dataset
from jaxmem.estimators import forgetting_events
from jaxmem.io import load_json, save_json
from jaxmem.signals import compute_signals
from jaxmem.train import Phase, Trainer, steps_per_epoch_max, train_phases


def recency(cfg, run, workdir: Path, log, phase2_epochs=(0, 5, 10, 20, 40)) -> list:
    """Jagielski et al. (2022), "Measuring forgetting of memorized training examples": train every
    model on all its IN examples for ``E`` epochs, then only on the IN examples of a "late" half for
    more epochs; attack power on the "early" half as the epochs since they were last seen grow.

    One per-example availability schedule (:func:`jaxmem.train.train_phases`): a phase of ``E``
    epochs on ``keep``, then phases on ``keep`` minus the early half that end at each of
    ``phase2_epochs``; the schedule's length (the step bookkeeping) is ``E + max(phase2_epochs)``
    and the learning rate constant, so each phase is independent of the total length. Results
    are cached in ``recency.json``.
    """
    import jax.numpy as jnp

    cache = workdir / "recency.json"
    if cache.exists():
        return load_json(cache)
    c = run.config
    c = dataclasses.replace(c, train=dataclasses.replace(c.train, schedule=SCHEDULE.make("constant"),
                                                         record_forgetting=False))
    ds = build_dataset(c)
    keep = np.asarray(run.keep)
    M, N = keep.shape
    early = np.random.default_rng(c.seed + 7).permutation(N) < N // 2
    E1 = int(math.ceil(c.train.epochs))
    late_keep = keep & ~early[None]
    marks = sorted(phase2_epochs)
    phases = [Phase(keep, E1)] + [Phase(late_keep, b - a) for a, b in zip([0] + marks[:-1], marks)]
    trainer = Trainer(c, jnp.asarray(ds.x_train), jnp.asarray(ds.y_train), int(ds.num_classes),
                      steps_per_epoch_max(keep, c.train.batch_size),
                      schedule_epochs=float(E1 + max(phase2_epochs)))
    ids = np.arange(M)
    y = np.asarray(ds.y_train)
    rows = []
    schedule = train_phases(trainer, ids, phases)
    next(schedule)   # the first phase: all IN examples
    for e2, (state, status) in zip(marks, schedule):
        lg = np.asarray(trainer.logits(state, jnp.asarray(ds.x_train), ["identity"]), np.float64)
        sig = compute_signals(lg, y, ["phi"], dtype=np.float64)
        ok = ~np.asarray(status.diverged)
        ev = audit(sig, keep, ok, audit_spec(run.config, ["lira_online"], default_targets=ANALYSIS_TARGETS))
        spe = int(math.ceil(late_keep.sum(1).mean() / c.train.batch_size))
        a_e = ev.table(early)["lira_online"]
        a_l = ev.table(~early)["lira_online"]
        rows.append({"epochs_since_seen": e2, "steps_since_seen": e2 * spe,
                     "auc_early": a_e["auc"], "tpr_at_0.01_fpr_early": a_e["tpr_at_0.01_fpr"],
                     "auc_late": a_l["auc"], "tpr_at_0.01_fpr_late": a_l["tpr_at_0.01_fpr"]})
        log(f"  recency: {e2} epochs since seen: AUC early {a_e['auc']:.3f}, late {a_l['auc']:.3f}")
    save_json(cache, rows)
    return rows


def analyze(cfg, workdir, runs, log):
    """Forgetting events against memorization (with ``train.record_forgetting``), and attack
    power against the steps since an example was last seen (:func:`recency`)."""
    name, run = next(iter(runs.items()))
    keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
    sig = run_signals(run)
    mem = memorization_of(keep, sig, ok)
    cbe = run.correct_by_epoch
    out = {}
    if cbe is not None:
        ev = forgetting_events(np.asarray(cbe), model_mask=ok)
        k = keep & ok[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            f_in = (ev.forgetting * k).sum(0) / k.sum(0)
            unf = (ev.unforgettable * k).sum(0) / k.sum(0)
        never = unf >= 0.5
        out = {"spearman_forgetting_vs_mem": spearman(f_in, mem.mem),
               "mem_unforgettable": nanmean(mem.mem[never]),
               "mem_forgettable": nanmean(mem.mem[~never]),
               "frac_unforgettable": float(np.mean(never))}

        def draw(ax):
            bins = np.arange(0, np.nanmax(f_in) + 2) if np.isfinite(f_in).any() else 10
            idx = np.digitize(f_in, bins) - 1
            xs = [bins[j] for j in range(len(bins)) if (idx == j).any()]
            ax.plot(xs, [nanmean(mem.mem[idx == j]) for j in range(len(bins)) if (idx == j).any()],
                    "o-")
            ax.set_xlabel("forgetting events (mean over IN models)")
            ax.set_ylabel("mean memorization")

        out["files"] = {"mem_vs_forgetting": figure(workdir / "mem_vs_forgetting.png", draw)}
    rec = recency(cfg, run, workdir, log)

    def draw2(ax):
        ax.plot([r["steps_since_seen"] for r in rec], [r["auc_early"] for r in rec], "o-",
                label="early examples (not seen since)")
        ax.plot([r["steps_since_seen"] for r in rec], [r["auc_late"] for r in rec], "s-",
                label="late examples (still trained on)")
        ax.set_xlabel("optimizer steps since the early examples were last seen")
        ax.set_ylabel("LiRA AUC")
        ax.legend(fontsize=7)

    files = out.pop("files", {})
    files["recency"] = figure(workdir / "recency.png", draw2)
    return {"rows": rec, **out, "recency": rec, "files": files}
