"""One place per choice (issue #20): a config names the choice and holds only its fields; every
experiment file and variant loads; old-style configs get a one-line error saying how to write
them now; overrides switch choices; stored config.json files round-trip."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from jaxmem import config as cfgmod
from jaxmem.config.registry import DESIGN, LOOKAHEAD, MODEL, OPTIMIZER, SCHEDULE

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("full", [False, True])
def test_every_experiment_and_variant_loads(path, full):
    cfg = cfgmod.load_config(str(path), [f"experiment.full={str(full).lower()}"])
    variants = cfgmod.variant_configs(cfg)
    assert variants
    for _, v in variants:   # and each round-trips through config.json's dict
        assert cfgmod.from_dict(json.loads(json.dumps(cfgmod.to_dict(v)))) == v


@pytest.mark.parametrize("overrides, message", [
    (["model.depth=10"], "model.depth: not a field of model 'mlp' (its fields: hidden, dropout)"),
    (["model.name=resnet_airbench", "model.dropout=0.1"], "model.dropout: not a field of model 'resnet_airbench'"),
    (["train.optimizer.momentum=0.8"], "train.optimizer.momentum: not a field of optimizer 'adam'"),
    (["train.schedule=cosine", "train.schedule.warmup_epochs=1"],
     "train.schedule.warmup_epochs: not a field of schedule 'cosine'"),
    (["subsets.design=ratio", "subsets.design.pkeep=0.3"], "subsets.design.pkeep: not a field of design 'ratio'"),
    (["model.name=resnet", "scoring.attacks=[]"], "model.name: unknown model 'resnet' (choose from mlp, cnn"),
    (["train.schedule=warmup"], "train.schedule.name: unknown schedule 'warmup'"),
    (["train.optimizer=lamb"], "train.optimizer.name: unknown optimizer 'lamb'"),
    (["subsets.design=stratified"], "subsets.design.name: unknown design 'stratified'"),
    # old-style fields: where they went, spelled out
    (["train.momentum=0.8"], 'train.momentum: moved into the optimizer (a field of sgd / nesterov); write '
                             '[train.optimizer] name = "sgd", momentum = 0.8 (or --set train.optimizer.momentum=0.8)'),
    (["train.optimizer=nesterov", "train.momentum=0.8"], '[train.optimizer] name = "nesterov", momentum = 0.8'),
    (["train.schedule=cosine", "train.warmup_epochs=2"],
     'train.warmup_epochs: moved into the schedule (a field of linear_warmup_cosine / triangle); write '
     '[train.schedule] name = "linear_warmup_cosine", warmup_epochs = 2'),
    (["train.schedule_start=0.2"], '[train.schedule] name = "triangle", start = 0.2'),
    (["subsets.pkeep=0.3"], '[subsets.design] name = "balanced", pkeep = 0.3 (or --set subsets.design.pkeep=0.3)'),
    (["subsets.replicas=4"], '[subsets.design] name = "replica", replicas = 4'),
    (["train.lookahead_every=5"], '[train.lookahead] name = "ema", every = 5 (or --set train.lookahead.every=5)'),
    (["train.whiten_bias_epochs=3"], '[model] name = "resnet_airbench", whiten_bias_epochs = 3'),
    # ranges: the choice's own check, naming the field under its path
    (["train.optimizer=sgd", "train.optimizer.momentum=1.0"], "train.optimizer.momentum: must be in [0, 1)"),
    (["model.name=wrn", "model.depth=12"], "model.depth: a WRN's depth is 6n + 4"),
    (["subsets.design.pkeep=1.0"], "subsets.design.pkeep: must be in (0, 1)"),
    (["train.schedule=triangle", "train.schedule.warmup_epochs=30"], "train.schedule.warmup_epochs: the triangle"),
    # data fields of the other kind of source (image / text)
    (["data.max_len=64"], "data.max_len: a field of text sources; data.source = 'digits' is an image source"),
    (["data.tokenizer=bpe"], "data.tokenizer: a field of text sources"),
    (["data.source=kjv", "model.name=causal_lm", "scoring.attacks=[]", "data.long_tail_fraction=0.5"],
     "data.long_tail_fraction: a field of image sources; data.source = 'kjv' is a text source"),
    # an augmentation that does not apply to the data (issue #20: was said to train silently)
    (["data.source=mnist1d", "train.augment=flip_crop"], "train.augment: flip_crop needs images"),
])
def test_refused_at_the_door_in_one_line(overrides, message):
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.load_config(None, overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_old_style_toml_file_says_how_to_write_it(tmp_path):
    (tmp_path / "old.toml").write_text('[train]\noptimizer = "sgd"\nmomentum = 0.5\n')
    with pytest.raises(cfgmod.ConfigError, match=r'^train\.momentum: .*name = "sgd", momentum = 0\.5'):
        cfgmod.load_config(str(tmp_path / "old.toml"))
    (tmp_path / "new.toml").write_text('[train.optimizer]\nname = "sgd"\nmomentum = 0.5\n')
    assert cfgmod.load_config(str(tmp_path / "new.toml")).train.optimizer == OPTIMIZER.make("sgd", momentum=0.5)


def test_overrides_switch_a_choice_and_drop_the_old_fields():
    cfg = cfgmod.load_config(None, ["model.hidden=[8]", "model.name=cnn", "model.channels=[4]"])
    assert cfgmod.to_dict(cfg)["model"] == {"name": "cnn", "bn_momentum": 0.9, "bn_eps": 1e-5,
                                            "channels": [4], "batch_norm": False, "dropout": 0.0}
    cfg = cfgmod.load_config(None, ["model.dropout=0.25", "model.name=wrn"])   # dropout: both have it
    assert (cfg.model.name, cfg.model.dropout) == ("wrn", 0.25)
    assert cfgmod.load_config(None, ["train.optimizer=sgd"]).train.optimizer.momentum == 0.9
    o = cfgmod.load_config(None, ["train.optimizer=sgd", "train.optimizer.momentum=0.8"]).train.optimizer
    assert (o.name, o.momentum) == ("sgd", 0.8)
    o = cfgmod.load_config(None, ["train.optimizer=sgd", "train.optimizer.momentum=0.8",
                                  "train.optimizer.name=adam"]).train.optimizer
    assert cfgmod.to_dict(cfgmod.Config(train=cfgmod.TrainConfig(optimizer=o)))["train"]["optimizer"] == {"name": "adam"}


def test_include_switching_the_family_drops_the_included_fields(tmp_path):
    (tmp_path / "base.toml").write_text('[model]\nname = "wrn"\ndepth = 10\n[train]\nschedule = "triangle"\n')
    (tmp_path / "x.toml").write_text('include = ["base.toml"]\n[model]\nname = "mlp"\nhidden = [8]\n'
                                     '[train.schedule]\nwarmup_epochs = 2.0\n')
    cfg = cfgmod.load_config(str(tmp_path / "x.toml"))
    assert cfgmod.to_dict(cfg)["model"] == {"name": "mlp", "hidden": [8], "dropout": 0.0}
    assert cfg.train.schedule == SCHEDULE.make("triangle", warmup_epochs=2.0)


def test_a_config_json_stored_before_the_change_is_upgraded():
    """A run directory written before issue #20 (every family's fields side by side) still loads,
    as the same run: each choice keeps its own fields."""
    old = {"model": {"name": "cnn", "hidden": [256], "channels": [4, 8], "batch_norm": True,
                     "dropout": 0.1, "depth": 16, "width": 4, "d_model": 64, "num_layers": 2,
                     "num_heads": 4, "bn_momentum": 0.8, "bn_eps": 1e-5, "whiten": False},
           "train": {"optimizer": "nesterov", "momentum": 0.85, "schedule": "triangle",
                     "warmup_epochs": 2.0, "schedule_start": 0.2, "schedule_end": 0.07,
                     "whiten_bias_epochs": 3.0, "lookahead_every": 5, "lookahead_start_epochs": 2,
                     "lookahead_decay": 0.95, "lookahead_pow": 3.0},
           "subsets": {"design": "ratio", "num_models": 8, "pkeep": 0.5, "ratios": [0.3], "k": 1,
                       "replicas": 2}}
    cfg = cfgmod.from_dict(old)
    assert cfg.model == MODEL.make("cnn", channels=[4, 8], batch_norm=True, dropout=0.1, bn_momentum=0.8)
    assert cfg.train.optimizer == OPTIMIZER.make("nesterov", momentum=0.85)
    assert cfg.train.schedule == SCHEDULE.make("triangle", warmup_epochs=2.0, start=0.2, end=0.07)
    assert cfg.subsets.design == DESIGN.make("ratio", ratios=[0.3])
    assert cfg.train.lookahead == LOOKAHEAD.make("ema", every=5, start_epochs=2, decay=0.95, pow=3.0)
    old["model"]["name"] = "resnet_airbench"
    assert cfgmod.from_dict(old).model == MODEL.make("resnet_airbench", bn_momentum=0.8, whiten_bias_epochs=3.0)
    assert cfgmod.from_dict(cfgmod.to_dict(cfg)) == cfg


def _as_before(d):
    """A config dict in the form ``config.json`` had before choices held their own fields (every
    family's model fields side by side; optimizer, schedule, design as names with flat fields)."""
    d = json.loads(json.dumps(d))
    d["model"] = {"name": "mlp", "hidden": [256], "channels": [32, 64], "batch_norm": False,
                  "dropout": 0.0, "depth": 16, "width": 4, "d_model": 64, "num_layers": 2,
                  "num_heads": 4, "bn_momentum": 0.9, "bn_eps": 1e-05, "whiten": False,
                  "checkpoint": "", "num_kv_heads": 0, "ffn_dim": 0, "lora_rank": 0,
                  "lora_alpha": 16.0, "lora_targets": ["q", "v"]}
    t, s = d["train"], d["subsets"]
    del t["lookahead"]
    t.update(optimizer="adam", momentum=0.9, schedule="constant", warmup_epochs=0.0,
             schedule_start=0.0, schedule_end=0.0, whiten_bias_epochs=0.0, lookahead_every=0,
             lookahead_start_epochs=3, lookahead_decay=0.95, lookahead_pow=3.0)
    s.update(design="balanced", pkeep=0.5, ratios=[0.7], k=1, replicas=2)
    return d


def test_a_run_directory_written_before_the_change_resumes(tmp_path):
    """check_workdir compares a stored old-form config.json in today's form: the same config
    resumes, another one is still refused naming the field."""
    from jaxmem.io import RunError
    from jaxmem.runs.workdir import check_workdir

    cfg = cfgmod.Config()
    (tmp_path / "config.json").write_text(json.dumps(_as_before(cfgmod.to_dict(cfg))))
    assert cfgmod.from_dict(_as_before(cfgmod.to_dict(cfg))) == cfg
    assert check_workdir(tmp_path, cfg, overwrite=False) is None
    other = cfgmod.load_config(None, ["model.hidden=[7]"])
    with pytest.raises(RunError, match="model.hidden"):
        check_workdir(tmp_path, other, overwrite=False)


def test_config_package_imports_no_other_jaxmem_package():
    """The mechanism sits at the bottom of the package graph: jaxmem.config imports nothing of
    jaxmem outside itself (the packages register into it), at module top or inside functions."""
    bad = []
    for f in (ROOT / "jaxmem" / "config").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{f.name}: {n}" for n in names
                    if n.startswith("jaxmem.") and not n.startswith("jaxmem.config")]
    assert not bad, bad


def test_every_registered_choice_builds_its_default_config():
    for reg in (MODEL, OPTIMIZER, SCHEDULE, LOOKAHEAD, DESIGN):
        for name in reg:
            c = reg.make(name)
            assert c.name == name
            c.check(reg.path)   # the defaults are in range


def test_model_defaults_are_the_configs():
    """A family's defaults are its config class's: where its flax module also declares a default
    for a config field, it is the same value (WRN's depth and width once differed: 28/2 in the
    module, 16/4 in the config; the module now has none)."""
    import dataclasses

    from jaxmem.config.registry import MODEL
    from jaxmem.models.registry import MODELS, module_class

    for name in MODELS:
        conf = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(MODEL.get(name).config) if f.name != "name"}
        mod = {f.name: f.default for f in dataclasses.fields(module_class(name))
               if f.default is not dataclasses.MISSING and f.name in conf}
        for k, v in mod.items():
            want = conf[k]
            assert (tuple(want) if isinstance(want, list) else want) == (tuple(v) if isinstance(v, list) else v), \
                f"{name}.{k}: module default {v!r}, config default {want!r}"
