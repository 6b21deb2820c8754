"""Zhang et al. (2017), Feldman & Zhang (2020), Carlini et al. (2022): larger models fit noise,
memorize more and are more vulnerable to membership inference."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import figure, id_mask, sweep_rows, write_csv
from jaxmem.attacks.metrics import roc_auc
from jaxmem.models import count_params, make_model
from jaxmem.models.registry import spec


def param_count(c, run) -> int:
    """Trainable parameters of a run's model (from its config and dataset shape)."""
    import jax

    model = make_model(c, int(run.dataset["num_classes"]))
    shape = (1, *run.dataset["input_shape"])
    dtype = np.int32 if spec(c.model.name).tokens else np.float32
    v = jax.eval_shape(lambda k: model.init(k, np.zeros(shape, dtype)), jax.random.key(0))
    return count_params(v)


def size_label(c) -> str:
    m = c.model
    if m.name == "mlp":
        return str(m.hidden)
    if m.name == "transformer":
        return f"d{m.d_model}x{m.num_layers}"
    return str(m.channels)


def analyze(cfg, workdir, runs, log):
    """Per variant: parameters, mean memorization, LiRA power, how many flipped labels are fit."""
    def extra(name, run, sig, mem, c):
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        flipped = id_mask(run, "label_noise", "flipped_ids")
        fitted = (sig["correct"] * keep)[ok][:, flipped].sum() / max(keep[ok][:, flipped].sum(), 1)
        fin = np.isfinite(mem.mem)
        return {"model": c.model.name, "size": size_label(c),
                "params": param_count(c, run), "label_noise": c.data.label_noise,
                "noisy_fit": float(fitted) if flipped.any() else None,
                "noisy_label_auroc": roc_auc(mem.mem[fin], flipped[fin]) if flipped.any() else None}

    rows = sweep_rows(cfg, runs, extra)

    def draw(ax):
        for model in sorted({r["model"] for r in rows}):
            for noise in sorted({r["label_noise"] for r in rows}):
                r = sorted([x for x in rows if x["model"] == model and x["label_noise"] == noise],
                           key=lambda x: x["params"])
                if r:
                    ax.plot([x["params"] for x in r], [x["mem_mean"] for x in r], "o-",
                            label=f"{model}, noise {noise:g}")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("mean memorization")
        ax.legend(fontsize=7)

    files = {"memorization_vs_params": figure(workdir / "mem_vs_params.png", draw),
             "table": write_csv(workdir / "capacity.csv", rows)}
    return {"rows": rows, "files": files}
