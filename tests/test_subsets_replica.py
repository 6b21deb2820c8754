"""The replica design (jaxmem.subsets.replica_keep): R target replicas on the same data, then
balanced references; validated at the door; replicas differ by their seeds."""

import numpy as np
import pytest

from jaxmem import config as cfgmod
from jaxmem import subsets


def test_replica_keep(rng):
    M, N, R = int(rng.integers(5, 20)), int(rng.integers(10, 60)), 3
    R = int(rng.integers(2, M))
    seed = int(rng.integers(1 << 30))
    keep = subsets.replica_keep(seed, M, N, R, 0.5)
    assert keep.shape == (M, N) and keep.dtype == bool
    assert (keep[:R] == keep[0]).all()                          # same data
    assert keep[0].sum() == round(0.5 * N)
    refs = keep[R:]
    np.testing.assert_array_equal(refs.sum(0), round(0.5 * (M - R)))   # balanced references
    np.testing.assert_array_equal(keep, subsets.replica_keep(seed, M, N, R, 0.5))   # pure
    k2, ratio = subsets.make_keep("replica", seed, M, N, replicas=R)
    np.testing.assert_array_equal(k2, keep)
    np.testing.assert_allclose(ratio, keep.mean(1))


def test_replica_keep_bad_args():
    with pytest.raises(ValueError, match="replicas"):
        subsets.replica_keep(0, 4, 10, 4)
    with pytest.raises(ValueError, match="replicas"):
        subsets.replica_keep(0, 4, 10, 1)
    with pytest.raises(ValueError, match="cannot grow"):
        subsets.make_keep("replica", 0, 4, 10, replicas=2, block=1)


@pytest.mark.parametrize("over, field", [
    (["subsets.design=replica", "subsets.num_models=4", "subsets.design.replicas=4", "scoring.attacks=[]"],
     "subsets.design.replicas"),
    (["subsets.design=replica", "subsets.num_models=6", "subsets.design.replicas=2",
      "scoring.attacks=[\"lira_online\"]"], "scoring.attacks"),
])
def test_replica_validated_at_the_door(over, field):
    with pytest.raises(cfgmod.ConfigError, match=f"^{field}"):
        cfgmod.load_config(None, over)


def test_replica_config_accepted_and_replicas_get_distinct_keys():
    cfg = cfgmod.load_config(None, ["subsets.design=replica", "subsets.num_models=6",
                                    "subsets.design.replicas=3", "scoring.attacks=[]"])
    keep, _ = subsets.make_design(cfg, [{"first": 0, "count": 6, "block": 0}], 30)
    assert (keep[:3] == keep[0]).all()
    # the trainer's streams fold in the model id: replicas on the same data differ by their keys
    import jax

    from jaxmem.train.rng import INIT, model_keys
    k = jax.random.key_data(model_keys(cfg.seed, INIT, [0, 1, 2]))
    assert len({tuple(np.asarray(r).ravel()) for r in k}) == 3
