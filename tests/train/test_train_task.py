"""The trainer's task interface (jaxmem.train.task): chosen once from the model family's ``lm``
capability; the classification loss against a float64 reference."""

import jax.numpy as jnp
import numpy as np
import numpy.testing as npt
import pytest

from jaxmem.models.registry import MODELS
from jaxmem.runs.task import CLASSIFICATION_RUN
from jaxmem.train.lm import CAUSAL_LM, next_token_loss
from jaxmem.train.task import CLASSIFICATION, task_for


def test_task_is_chosen_from_the_family_capability():
    for name, m in MODELS.items():
        assert task_for(name) is (CAUSAL_LM if m.lm else CLASSIFICATION), name
    assert CLASSIFICATION_RUN.output_arrays == ("logits", "test_logits")


def _ce64(z, target):
    z = np.asarray(z, np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return float(-(target * logp).sum(1).mean())


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_classification_loss_matches_float64(rng, ls):
    B, C = 7, 5
    z = rng.normal(size=(B, C)).astype(np.float32) * 3
    y = rng.integers(0, C, B)
    onehot = np.eye(C)[y]
    want = _ce64(z, onehot * (1 - ls) + ls / C)
    got = float(CLASSIFICATION.loss(jnp.asarray(z), None, jnp.asarray(y), ls, C))
    npt.assert_allclose(got, want, rtol=1e-5)
    soft = rng.dirichlet(np.ones(C), B)   # soft targets [B, C] (a label-mixing augmentation)
    want = _ce64(z, soft * (1 - ls) + ls / C)
    got = float(CLASSIFICATION.loss(jnp.asarray(z), None, jnp.asarray(soft, jnp.float32), ls, C))
    npt.assert_allclose(got, want, rtol=1e-5)


def test_causal_lm_loss_is_the_next_token_loss(rng):
    B, L, V = 3, 6, 11
    z = jnp.asarray(rng.normal(size=(B, L, V)), jnp.float32)
    x = jnp.asarray(rng.integers(0, V, (B, L)), jnp.int32)
    n = jnp.asarray([6, 3, 1], jnp.int32)
    assert float(CAUSAL_LM.loss(z, x, n, 0.1, V)) == float(next_token_loss(z, x, n, 0.1))
