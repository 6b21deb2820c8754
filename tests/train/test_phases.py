"""The phase API (per-example availability schedules) and the typed trainer pieces: phases
compose into plain training, the schedule's length sets the step bookkeeping, DP-SGD's key is
found by name."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmem.config import load_config
from jaxmem.subsets import balanced_keep
from jaxmem.train import Phase, Trainer, TrainState, steps_per_epoch_max, train_phases
from jaxmem.train.optim import set_dp_key


def _setup(rng, schedule_epochs=None, M=4, N=80):
    x = rng.normal(size=(N, 5)).astype(np.float32)
    y = rng.integers(0, 3, N).astype(np.int32)
    cfg = load_config(None, [f"subsets.num_models={M}", "train.epochs=3", "train.batch_size=16",
                             "model.hidden=[16]", "scoring.attacks=[]"])
    keep = balanced_keep(0, M, N)
    tr = Trainer(cfg, jnp.asarray(x), jnp.asarray(y), 3, steps_per_epoch_max(keep, 16),
                 schedule_epochs=schedule_epochs)
    return tr, keep


def _params(state):
    return [np.asarray(a) for a in jax.tree.leaves(state.params)]


def test_phases_compose_into_plain_training(rng):
    """Phases of 2 + 0 + 1 epochs on all IN examples train exactly as 3 epochs at once (epoch
    numbers, data orders and keys continue across phases); the 0-epoch phase yields unchanged."""
    tr, keep = _setup(rng)
    ids = np.arange(keep.shape[0])
    state, status = tr.init_chunk(ids, keep)
    plain, plain_status, _ = tr.train_epochs(state, status, keep, ids, 0, 3)
    host = lambda t: jax.tree.map(np.asarray, t)    # each yielded state is donated to the next phase
    out = [host(x) for x in train_phases(tr, ids, [Phase(keep, 2), Phase(keep, 0), Phase(keep, 1)])]
    assert len(out) == 3 and isinstance(out[-1][0], TrainState)
    for a, b in zip(_params(out[0][0]), _params(out[1][0])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_params(out[-1][0]), _params(plain)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(out[-1][1].loss), np.asarray(plain_status.loss))


def test_a_phase_trains_only_on_what_is_available(rng):
    """A phase whose availability is empty for model 0 leaves model 0 as it was, and trains the
    others on theirs."""
    tr, keep = _setup(rng, schedule_epochs=5.0)
    ids = np.arange(keep.shape[0])
    avail = keep.copy()
    avail[0] = False
    before, after = (_params(s) for s, _ in train_phases(tr, ids, [Phase(keep, 2), Phase(avail, 2)]))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a[0], b[0])       # model 0: nothing to train on
        assert not np.array_equal(a[1:], b[1:])         # the others moved


def test_schedule_epochs_set_the_step_bookkeeping(rng):
    tr, keep = _setup(rng, schedule_epochs=10.0)
    n_in, spe, total = tr.step_counts(keep)
    np.testing.assert_array_equal(spe, -(-keep.sum(1) // 16))
    np.testing.assert_array_equal(total, np.round(10.0 * spe))
    tr3, _ = _setup(rng)
    np.testing.assert_array_equal(tr3.step_counts(keep)[2], np.round(3.0 * spe))


def test_dp_key_is_set_by_name_wherever_dp_sits_in_the_chain():
    dp = optax.contrib.differentially_private_aggregate(1.0, 1.0, key=jax.random.key(0))
    params = {"w": jnp.zeros(3)}
    for tx in (optax.chain(dp, optax.sgd(0.1)), optax.chain(optax.sgd(0.1), dp)):
        st = set_dp_key(tx.init(params), jax.random.key(7))
        keys = [x for x in jax.tree.leaves(st) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
        assert len(keys) == 1
        np.testing.assert_array_equal(jax.random.key_data(keys[0]),
                                      jax.random.key_data(jax.random.key(7)))
