"""Packaging: the wheel ships every package and the experiment files (with their presets), and
the experiment files resolve to the same configs as before the layout change (issue #12)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jaxmem import config as cfgmod

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_holds_every_package_and_the_experiment_files(tmp_path):
    pytest.importorskip("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = tmp_path.glob("jaxmem-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    tomls = sorted(p.name for p in (ROOT / "experiments").glob("*.toml"))
    assert tomls and all(f"jaxmem/experiments/{t}" in names for t in tomls)
    assert "jaxmem/experiments/presets/airbench94.toml" in names
    for init in ROOT.joinpath("jaxmem").rglob("__init__.py"):   # every package is in the wheel
        assert str(init.relative_to(ROOT)) in names, init
    for mod in ROOT.joinpath("jaxmem").rglob("*.py"):
        assert str(mod.relative_to(ROOT)) in names, mod


def _strip_full_overrides(d):
    d = json.loads(json.dumps(d))
    for cfg in [d["config"], *d["variants"].values()]:
        cfg["experiment"].pop("full_overrides")
    return d


def _drop_new_defaults(got, want, default, path=""):
    """``got`` without the config fields added since the fixture was written (``want`` lacks
    them), each checked to hold its default: a field added later changes no old experiment."""
    if not isinstance(got, dict):
        return got
    out = {}
    for k, v in got.items():
        if k in want:
            out[k] = _drop_new_defaults(v, want[k], default.get(k, {}) if isinstance(default, dict) else {},
                                        f"{path}.{k}")
        else:
            assert v == default.get(k), f"{path}.{k}: a field added later must keep its default here"
    return out


def test_experiment_files_resolve_as_before_the_preset():
    """``jaxmem config X`` (quick and full, every variant) equals the configs resolved at
    12d6e22, before the airbench94 recipe moved into experiments/presets/airbench94.toml; only
    ``experiment.full_overrides`` is shorter (the recipe left it for ``full_include``). Fields
    added since then hold their defaults (the fixture's configs are upgraded to today's form, one
    table per choice, as a stored config.json is). canary_exposure is left out: it became a run of the
    stacked trainer (causal LMs on python_text with secret canaries, issue #15)."""
    text = (ROOT / "tests" / "fixtures" / "resolved_configs_12d6e22.json").read_text()
    for old, new in (("train.momentum=", "train.optimizer.momentum="),   # overrides' new spelling
                     ("train.warmup_epochs=", "train.schedule.warmup_epochs="),
                     ("subsets.replicas=", "subsets.design.replicas="),
                     ("train.whiten_bias_epochs=", "model.whiten_bias_epochs="),
                     ("train.lookahead_start_epochs=", "train.lookahead.start_epochs=")):
        text = text.replace(old, new)
    before = json.loads(text)
    # (the fixture is in the form before choices held their own fields, issue #20: upgraded as a
    # stored config.json is)
    before = {k: {"config": cfgmod.upgrade_stored(v["config"]),
                  "variants": {n: cfgmod.upgrade_stored(c) for n, c in v["variants"].items()}}
              for k, v in before.items()}
    default = json.loads(json.dumps(cfgmod.to_dict(cfgmod.Config())))
    for key, want in before.items():
        name, full = key.split(":full=")
        if name == "canary_exposure":
            continue
        cfg = cfgmod.load_config(str(ROOT / "experiments" / f"{name}.toml"),
                                 [f"experiment.full={full.lower()}"])
        got = {"config": cfgmod.to_dict(cfg),
               "variants": {k: cfgmod.to_dict(v) for k, v in cfgmod.variant_configs(cfg)}}
        got, want = json.loads(json.dumps(got)), json.loads(json.dumps(want))
        got = {"config": _drop_new_defaults(got["config"], want["config"], default),
               "variants": {k: _drop_new_defaults(v, want["variants"].get(k, {}), default)
                            for k, v in got["variants"].items()}}
        if want["config"]["experiment"]["full_overrides"] == got["config"]["experiment"]["full_overrides"]:
            assert got == want, key
        else:
            assert _strip_full_overrides(got) == _strip_full_overrides(want), key
            assert "full_include" in (ROOT / "experiments" / f"{name}.toml").read_text()


def test_include_merges_tables_and_refuses_loops(tmp_path):
    (tmp_path / "base.toml").write_text('[train]\nepochs = 3.0\nbatch_size = 32\n[model]\nhidden = [8]\n')
    (tmp_path / "x.toml").write_text('include = ["base.toml"]\n[train]\nepochs = 5.0\n')
    cfg = cfgmod.load_config(str(tmp_path / "x.toml"))
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.hidden) == (5.0, 32, [8])
    (tmp_path / "loop.toml").write_text('include = ["loop.toml"]\n')
    with pytest.raises(cfgmod.ConfigError, match="includes itself"):
        cfgmod.load_config(str(tmp_path / "loop.toml"))
    (tmp_path / "bad.toml").write_text('include = ["nope.toml"]\n')
    with pytest.raises(cfgmod.ConfigError, match="no such file"):
        cfgmod.load_config(str(tmp_path / "bad.toml"))


def test_configs_are_frozen_and_config_needs_no_jax():
    import dataclasses

    cfg = cfgmod.load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1
    code = ("import sys, jaxmem.config as c; c.load_config('label_noise', ['experiment.full=true']); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax')]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
