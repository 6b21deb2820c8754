"""Adding a model family, an optimizer or a design is one definition plus one registration
(issue #20): each is added here through the public registration API, named by a config, checked
at the door (its own fields accepted, a foreign field refused in one line), and used: the
family and the optimizer train a step, the design builds ``keep``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem.config.registry import DESIGN, MODEL, OPTIMIZER, Choice, ConfigError


# --- a model family: its module and its config class (in a package: jaxmem/models/FILE.py) ---
@dataclass(frozen=True)
class TinyConfig(Choice):
    width: int = 3

    def check(self, path):
        if self.width < 1:
            raise ConfigError(f"{path}.width: must be >= 1, got {self.width}")


def _tiny_module():
    import flax.linen as nn

    class Tiny(nn.Module):
        num_classes: int
        width: int = 3
        dtype: object = None

        @nn.compact
        def __call__(self, x, train=False):
            h = nn.relu(nn.Dense(self.width)(x.reshape(x.shape[0], -1)))
            return nn.Dense(self.num_classes)(h)

    return Tiny


# --- an optimizer: its config class and its builder fn(opt_cfg, lr, wd) ---
@dataclass(frozen=True)
class SignConfig(Choice):
    scale: float = 1.0


def _sign_sgd(o, lr, wd):
    import optax

    return optax.chain(optax.scale_by_sign(), optax.scale(-lr * o.scale))


# --- a design: its config class and its builder ---
@dataclass(frozen=True)
class EveryOtherDesign(Choice):
    offset: int = 0


def _every_other(d, seed, num_models, num_examples, **_):
    keep = (np.arange(num_models)[:, None] + np.arange(num_examples)[None] + d.offset) % 2 == 0
    return keep, keep.mean(1)


@pytest.fixture
def registered():
    from jaxmem.models.registry import register_model

    register_model("tiny", TinyConfig, _tiny_module())                       # one registration each
    OPTIMIZER.register("sign_sgd", SignConfig, builder=_sign_sgd)
    DESIGN.register("every_other", EveryOtherDesign, builder=_every_other)
    yield
    MODEL.unregister("tiny")
    OPTIMIZER.unregister("sign_sgd")
    DESIGN.unregister("every_other")


def test_a_new_family_optimizer_and_design_are_checked_at_the_door(registered):
    cfg = cfgmod.load_config(None, ["model.name=tiny", "model.width=5", "train.optimizer=sign_sgd",
                                    "train.optimizer.scale=0.5", "subsets.design=every_other",
                                    "subsets.design.offset=1"])
    assert (cfg.model, cfg.train.optimizer, cfg.subsets.design) == (
        TinyConfig("tiny", 5), SignConfig("sign_sgd", 0.5), EveryOtherDesign("every_other", 1))
    assert cfgmod.from_dict(cfgmod.to_dict(cfg)) == cfg                       # config.json round-trip
    for over, msg in ((["model.name=tiny", "model.hidden=[8]"], "model.hidden: not a field of model 'tiny' (its fields: width)"),
                      (["model.name=tiny", "model.width=0"], "model.width: must be >= 1"),
                      (["train.optimizer=sign_sgd", "train.optimizer.momentum=0.9"],
                       "train.optimizer.momentum: not a field of optimizer 'sign_sgd'"),
                      (["subsets.design=every_other", "subsets.design.pkeep=0.5"],
                       "subsets.design.pkeep: not a field of design 'every_other'")):
        with pytest.raises(ConfigError, match="^" + msg.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
            cfgmod.load_config(None, over)


def test_a_new_design_builds_keep(registered):
    from jaxmem.subsets import make_design

    cfg = cfgmod.load_config(None, ["subsets.design=every_other", "subsets.num_models=4"])
    keep, ratio = make_design(cfg, [{"first": 0, "count": 4, "block": 0}], 6)
    np.testing.assert_array_equal(keep, (np.arange(4)[:, None] + np.arange(6)) % 2 == 0)
    np.testing.assert_array_equal(ratio, np.full(4, 0.5))


def test_a_new_family_trains_a_step_with_a_new_optimizer(registered):
    import jax
    import jax.numpy as jnp

    from jaxmem.train import Trainer, steps_per_epoch_max

    cfg = cfgmod.load_config(None, ["model.name=tiny", "model.width=4", "train.optimizer=sign_sgd",
                                    "train.learning_rate=0.1", "subsets.num_models=3",
                                    "train.epochs=1", "train.batch_size=8", "scoring.attacks=[]"])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 6)).astype(np.float32), rng.integers(0, 3, 8).astype(np.int32)
    keep = np.ones((3, 8), bool)
    tr = Trainer(cfg, jnp.asarray(x), jnp.asarray(y), 3, steps_per_epoch_max(keep, 8))
    state, aux = tr.init_chunk(np.arange(3))
    before = jax.tree.map(np.asarray, state.params)
    state, aux, _ = tr.train_epochs(state, aux, keep, np.arange(3), 0, 1)
    after = jax.tree.map(np.asarray, state.params)
    # one sign-SGD step of lr 0.1: every parameter moved by exactly 0.1 (or 0 where its grad is 0)
    steps = np.concatenate([np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(after),
                                                                  jax.tree.leaves(before))])
    assert steps.max() == pytest.approx(0.1, rel=1e-5)
    assert np.all(np.isclose(steps, 0.1, rtol=1e-5) | (steps == 0))
    shapes = sorted(a.shape for a in jax.tree.leaves(after))
    assert shapes == sorted([(3, 6, 4), (3, 4), (3, 4, 3), (3, 3)])   # 3 stacked Tiny(width=4)
