"""The localization analysis' layer handling: forward order of a model's layers, retraining
one layer leaves the others untouched and lowers the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmem.analyses.localization import _layer_names, _retrain_layer


def test_layer_names_in_forward_order():
    from jaxmem.models.cnn import CNN
    from jaxmem.models.mlp import MLP

    p = CNN(num_classes=3, channels=(4, 4)).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert _layer_names(p) == ["Conv_0", "Conv_1", "Dense_0", "Dense_1"]
    p = MLP(num_classes=3, hidden=(2,) * 11).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))["params"]
    assert _layer_names(p) == [f"Dense_{i}" for i in range(12)]


def test_retrain_one_layer(rng):
    from jaxmem.models.cnn import CNN

    m = CNN(num_classes=3, channels=(4,))
    x = jnp.asarray(rng.normal(size=(24, 6, 6, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 24))
    p = m.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), x)["params"]

    def loss(q):
        return float(optax.softmax_cross_entropy_with_integer_labels(m.apply({"params": q}, x), y).mean())

    q = _retrain_layer(m, p, "Conv_0", x, y, 30, 1e-2)
    for k in p:
        same = jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), p[k], q[k]))
        assert same == (k != "Conv_0"), k
    assert loss(q) < loss(p)
