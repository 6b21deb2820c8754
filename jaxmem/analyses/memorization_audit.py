"""A memorization and membership-inference audit of real data at full size (Feldman & Zhang 2020;
Carlini et al. 2022; Zarifzadeh et al. 2024): per variant, the run's own audit (every model the
target, the attacks of ``scoring.attacks``), Feldman–Zhang memorization with its standard error,
the most and least memorized training images, and, where labels were flipped, how well
memorization ranks the flipped labels first."""

from __future__ import annotations

import numpy as np

from jaxmem.analyses.common import (
    common_row,
    id_mask,
    memorization_of,
    nanmean,
    print_rows,
    run_signals,
    write_csv,
)
from jaxmem.analyses.figures import plot_memorization_extremes
from jaxmem.attacks.metrics import roc_auc
from jaxmem.data import build_dataset
from jaxmem.io import load_json
from jaxmem.runs.score import majority_out


def analyze(cfg, workdir, runs, log, k: int = 32):
    """One row per variant: accuracy, mean memorization and mean standard error, and with
    flipped labels: the AUROC of memorization for a flipped label, precision at
    k = #flipped, mean memorization of flipped and clean examples, and the fraction of flipped
    labels the IN models fit; ``attacks``: one row per variant and attack of the run's own scoring
    (``scoring.attacks``, every model the target in turn: AUC ± std over targets, TPR at 0.1% and
    1% FPR). Figures: the ``k`` most and least memorized images per variant (with their CSV)."""
    rows, attack_rows, files = [], [], {}
    for name, run in runs.items():
        keep, ok = np.asarray(run.keep, bool), ~np.asarray(run.diverged, bool)
        sig = run_signals(run)
        mem = memorization_of(keep, sig, ok)
        row = common_row(name, keep, ok, sig, mem)
        row["mem_stderr_mean"] = nanmean(mem.stderr)
        for a, m in load_json(run.path / "summary.json").get("attacks", {}).items():
            attack_rows.append({"variant": name, "attack": a, "auc": m["auc"],
                                "auc_std": m["auc_std"], "tpr_at_0.001_fpr": m["tpr_at_0.001_fpr"],
                                "tpr_at_0.01_fpr": m["tpr_at_0.01_fpr"], "targets": m["n_targets"]})
        flipped = id_mask(run, "label_noise", "flipped_ids")
        fin = np.isfinite(mem.mem)
        row.update(dict.fromkeys(("num_flipped", "noisy_label_auroc", "precision_at_k",
                                  "mem_flipped", "mem_clean", "flipped_fit_by_in_models")))
        if flipped.any() and (~flipped).any():
            nf = int(flipped.sum())
            order = np.argsort(-np.where(fin, mem.mem, -np.inf), kind="stable")
            corr = sig["correct"][ok]
            kin = keep[ok] & flipped[None]
            row.update({"num_flipped": nf,
                        "noisy_label_auroc": roc_auc(mem.mem[fin], flipped[fin]),
                        "precision_at_k": float(flipped[order[:nf]].mean()),
                        "mem_flipped": nanmean(mem.mem[flipped]),
                        "mem_clean": nanmean(mem.mem[~flipped]),
                        "flipped_fit_by_in_models": float((corr * kin).sum() / max(kin.sum(), 1))})
        rows.append(row)
        ds = build_dataset(run.config)
        class_names = ds.meta.get("class_names")
        rank = np.flatnonzero(fin)
        sel = np.concatenate([rank[np.argsort(-mem.mem[rank], kind="stable")][:k],
                              rank[np.argsort(mem.mem[rank], kind="stable")][:k]])
        pred = np.full(len(mem.mem), -1)
        pred[sel] = majority_out(np.asarray(run.logits[:, sel, 0]), keep[:, sel], ok)
        _, _, most, least = plot_memorization_extremes(
            ds.x_train, ds.y_train, mem.mem, stderr=mem.stderr, predicted=pred,
            class_names=class_names, flagged=flipped, ids=run.example_ids, k=k,
            path=workdir / f"memorized_{name}.png")
        files[f"most_memorized_{name}"] = str(workdir / f"memorized_{name}_most.png")
        files[f"least_memorized_{name}"] = str(workdir / f"memorized_{name}_least.png")
        ids = np.asarray(run.example_ids)
        ext = [{"which": w, "rank": r + 1, "example_id": int(ids[i]), "label": int(ds.y_train[i]),
                "label_name": class_names[int(ds.y_train[i])] if class_names else "",
                "predicted_out_majority": int(pred[i]), "mem": float(mem.mem[i]),
                "stderr": float(mem.stderr[i]), "flipped": bool(flipped[i])}
               for w, sel_ in (("most", most), ("least", least)) for r, i in enumerate(sel_)]
        files[f"extremes_{name}"] = write_csv(workdir / f"memorized_{name}.csv", ext)
        log(f"[memorization_audit] {name}: mean memorization {row['mem_mean']:.4f}, "
            f"test accuracy {row['test_accuracy']:.4f}")
    files["table"] = write_csv(workdir / "variants.csv", rows)
    files["attacks"] = write_csv(workdir / "attacks.csv", attack_rows)
    print_rows(attack_rows)
    main = next((r for r in rows if r["noisy_label_auroc"] is not None), {})
    return {"rows": rows, "attacks": attack_rows, "noisy_label_auroc": main.get("noisy_label_auroc"),
            "files": files}
