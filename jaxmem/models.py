"""Flax linen models for stacked (vmapped) training.

Every module maps ``__call__(x, train: bool = False) -> logits`` with float32 logits
``[B, num_classes]`` (the causal language model returns ``[B, L, vocab_size]``), whatever
the compute ``dtype`` (parameters are always float32). Conventions the trainer relies on:

* BatchNorm: ``nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)``,
  statistics in the ``'batch_stats'`` collection (pass ``mutable=['batch_stats']`` in train mode).
* Dropout: ``nn.Dropout(rate)(h, deterministic=not train)``, rng stream ``'dropout'``.
* Variables are plain dicts, so K models stack with ``jax.vmap(model.init)`` over K keys and
  ``jax.vmap(model.apply)``; BatchNorm statistics are then per model (nothing is shared).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

Dtype = Any

_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5
# PyTorch's default conv/linear init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
_torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _batch_norm(train: bool, dtype: Dtype, name: str | None = None, *, momentum: float = _BN_MOMENTUM,
                epsilon: float = _BN_EPS, **kw) -> nn.BatchNorm:
    """Flax BatchNorm; ``momentum`` is the running statistics' decay (PyTorch's ``1 - momentum``)."""
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        dtype=dtype, param_dtype=jnp.float32, name=name, **kw)


def _as_input(x, dtype: Dtype | None) -> jax.Array:
    return jnp.asarray(x, dtype if dtype is not None else jnp.float32)


def _logits(h: jax.Array) -> jax.Array:
    return h.astype(jnp.float32)


class MLP(nn.Module):
    """Multilayer perceptron on the flattened input: [Dense-ReLU-Dropout] * len(hidden), Dense."""

    num_classes: int
    hidden: tuple[int, ...] = (256,)
    dropout: float = 0.0
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = _as_input(x, self.dtype).reshape((x.shape[0], -1))
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)(h))
            h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return _logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))


class CNN(nn.Module):
    """Small CNN: [Conv(k, SAME)-(BN)-ReLU-MaxPool(2, SAME)] per channel count, Dense-ReLU-Dropout, Dense.

    Input layout decides the convolution rank: ``[B, H, W, C]`` images use 2-D convs,
    ``[B, L]`` signals are read as ``[B, L, 1]`` and ``[B, L, C]`` as-is with 1-D convs.
    SAME max-pooling keeps odd sizes (7 -> 4) and tiny inputs (8x8 digits -> 2x2) valid.
    """

    num_classes: int
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128
    kernel_size: int = 3
    batch_norm: bool = False
    dropout: float = 0.0
    bn_momentum: float = _BN_MOMENTUM
    bn_eps: float = _BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = _as_input(x, self.dtype)
        if h.ndim == 2:
            h = h[..., None]
        nd = h.ndim - 2
        for c in self.channels:
            h = nn.Conv(c, (self.kernel_size,) * nd, padding="SAME", use_bias=not self.batch_norm,
                        dtype=self.dtype, param_dtype=jnp.float32)(h)
            if self.batch_norm:
                h = _batch_norm(train, self.dtype, momentum=self.bn_momentum, epsilon=self.bn_eps)(h)
            h = nn.max_pool(nn.relu(h), (2,) * nd, strides=(2,) * nd, padding="SAME")
        h = h.reshape((h.shape[0], -1))
        h = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return _logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))


def dirac_init(base: Callable = _torch_default_init) -> Callable:
    """Conv kernel init of airbench94: ``base`` init, then output channels ``o < C_in`` replaced by
    the identity filter (``torch.nn.init.dirac_``), which makes each conv an implicit residual."""

    def init(key, shape, dtype=jnp.float32):
        w = base(key, shape, dtype)
        *spatial, cin, cout = shape
        n = min(cin, cout)
        centre = tuple(s // 2 for s in spatial)
        ident = jnp.zeros((*spatial, cin, n), dtype).at[centre].set(jnp.eye(cin, n, dtype=dtype))
        return w.at[..., :n].set(ident)

    return init


class _AirbenchGroup(nn.Module):
    width: int
    bn_momentum: float
    bn_eps: float
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda: nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,  # noqa: E731
                               kernel_init=dirac_init(), dtype=self.dtype, param_dtype=jnp.float32)
        # airbench94 freezes the BN scale at 1 and trains only the bias: use_scale=False.
        bn = lambda: _batch_norm(train, self.dtype, momentum=self.bn_momentum,  # noqa: E731
                                 epsilon=self.bn_eps, use_scale=False)
        h = nn.max_pool(conv()(x), (2, 2), strides=(2, 2))
        h = nn.gelu(bn()(h), approximate=False)
        h = conv()(h)
        return nn.gelu(bn()(h), approximate=False)


class AirbenchNet(nn.Module):
    """airbench94 network (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds", KellerJordan/cifar10-airbench).

    2x2 VALID conv stem (bias, width 2*C*k^2 = 24) - GELU, three groups of
    [Conv3x3 - MaxPool2 - BN - GELU - Conv3x3 - BN - GELU] with widths (64, 256, 256), global
    max-pool (the original's MaxPool(3) on the final 3x3 map), bias-free Linear, times
    ``scaling_factor`` = 1/9. Convs use the dirac (identity) init of the original. The stem is
    plainly initialised here; the trainer's ``model.whiten = true`` sets its kernel to the
    patch-whitening filter bank of each model's own training images (:func:`whitening_kernels`)
    and freezes it, as the original does. BN defaults follow this module's 0.9 / 1e-5 convention;
    the original's are ``bn_momentum=0.6, bn_eps=1e-12`` (``experiments/cifar10_lira.toml``).
    """

    num_classes: int
    widths: tuple[int, int, int] = (64, 256, 256)
    whiten_kernel_size: int = 2
    scaling_factor: float = 1.0 / 9.0
    bn_momentum: float = _BN_MOMENTUM
    bn_eps: float = _BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = _as_input(x, self.dtype)
        k = self.whiten_kernel_size
        h = nn.Conv(2 * h.shape[-1] * k * k, (k, k), padding="VALID", use_bias=True,
                    kernel_init=_torch_default_init, bias_init=nn.initializers.zeros,
                    dtype=self.dtype, param_dtype=jnp.float32, name="stem")(h)
        h = nn.gelu(h, approximate=False)
        for w in self.widths:
            h = _AirbenchGroup(w, self.bn_momentum, self.bn_eps, dtype=self.dtype)(h, train)
        h = jnp.max(h, axis=(1, 2))
        h = nn.Dense(self.num_classes, use_bias=False, kernel_init=_torch_default_init,
                     dtype=self.dtype, param_dtype=jnp.float32)(h)
        return _logits(h) * self.scaling_factor


def whitening_kernel(images, kernel_size: int = 2, eps: float = 5e-4) -> np.ndarray:
    """Patch-whitening stem kernel of airbench94 (float64 numpy), shape [k, k, C, 2*C*k*k].

    With Sigma = E[p p^T] over all k x k patches p of ``images`` [N, H, W, C] and
    Sigma = V diag(lam) V^T, the first C*k*k filters are v_i / sqrt(lam_i + eps) (largest
    eigenvalue first) and the rest their negatives. Put it in ``params['stem']['kernel']``.
    """
    x = np.asarray(images, np.float64)
    n, hgt, wid, c = x.shape
    k = kernel_size
    patches = np.stack([x[:, i:hgt - k + 1 + i, j:wid - k + 1 + j, :]
                        for i in range(k) for j in range(k)], axis=3)  # [N, H', W', k*k, C]
    flat = patches.reshape(-1, k * k * c)  # feature index = (i*k + j)*C + c  == [k, k, C] order
    lam, vec = np.linalg.eigh(flat.T @ flat / flat.shape[0])
    lam, vec = lam[::-1], vec[:, ::-1]
    filters = vec / np.sqrt(lam + eps)  # [k*k*C, k*k*C], column = filter
    w = np.concatenate([filters, -filters], axis=1)
    return w.reshape(k, k, c, 2 * k * k * c)


def whitening_kernels(images, index, weight, kernel_size: int = 2, eps: float = 5e-4,
                      block: int = 256):
    """:func:`whitening_kernel` for several models at once, on device (float32).

    ``images`` [N, H, W, C]; ``index`` [K, n] int and ``weight`` [K, n] (1 for the images each
    model uses, 0 for padding): model k's patch covariance is the weighted mean of p p^T over the
    k x k patches of ``images[index[k]]``. Returns [K, k, k, C, 2*C*k*k]. Models run one after
    another and images in blocks of ``block``, so memory stays at one block's patches.
    """
    k = kernel_size
    c = images.shape[-1]
    d = k * k * c
    n = index.shape[1]
    nb = -(-n // block)
    pad = nb * block - n
    index = jnp.pad(jnp.asarray(index, jnp.int32), ((0, 0), (0, pad)))
    weight = jnp.pad(jnp.asarray(weight, jnp.float32), ((0, 0), (0, pad)))

    def one(args):
        idx, w = args

        def body(acc, blk):
            i, wb = blk
            x = images[i].astype(jnp.float32)
            hh, ww = x.shape[1] - k + 1, x.shape[2] - k + 1
            p = jnp.concatenate([x[:, a:a + hh, b:b + ww, :] for a in range(k) for b in range(k)],
                                axis=-1).reshape(x.shape[0], -1, d)        # feature (a*k+b)*C + c
            s = jnp.einsum("npi,npj,n->ij", p, p, wb, precision=jax.lax.Precision.HIGHEST)
            return (acc[0] + s, acc[1] + wb.sum() * hh * ww), None

        (s, cnt), _ = jax.lax.scan(body, (jnp.zeros((d, d)), jnp.float32(0)),
                                   (idx.reshape(nb, block), w.reshape(nb, block)))
        lam, vec = jnp.linalg.eigh(s / jnp.maximum(cnt, 1))
        filters = vec[:, ::-1] / jnp.sqrt(lam[::-1] + eps)
        return jnp.concatenate([filters, -filters], axis=1).reshape(k, k, c, 2 * d)

    return jax.lax.map(one, (index, weight))


_WRN_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _WideBasic(nn.Module):
    width: int
    stride: int
    dropout: float
    bn: Callable
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda k, s: nn.Conv(self.width, (k, k), strides=(s, s), padding="SAME",  # noqa: E731
                                    use_bias=False, kernel_init=_WRN_CONV_INIT,
                                    dtype=self.dtype, param_dtype=jnp.float32)
        o = nn.relu(self.bn(train, self.dtype)(x))
        if x.shape[-1] == self.width and self.stride == 1:
            shortcut = x
        else:
            shortcut = conv(1, self.stride)(o)
        h = conv(3, self.stride)(o)
        h = nn.relu(self.bn(train, self.dtype)(h))
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        return conv(3, 1)(h) + shortcut



class WideResNet(nn.Module):
    """Wide-ResNet WRN-depth-width (Zagoruyko & Komodakis 2016) with pre-activation blocks.

    Conv3x3(16), three groups of n = (depth - 4) / 6 blocks
    [BN-ReLU-Conv3x3(stride)-BN-ReLU-Dropout-Conv3x3] + shortcut (identity, or a 1x1 conv on
    the activated input when the shape changes), widths (16w, 32w, 64w), strides (1, 2, 2),
    then BN-ReLU, global average pool, Dense. WRN-28-2 has 1,467,610 parameters.
    """

    num_classes: int
    depth: int = 28
    width: int = 2
    dropout: float = 0.0
    bn_momentum: float = _BN_MOMENTUM
    bn_eps: float = _BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if (self.depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {self.depth}")
        n = (self.depth - 4) // 6
        bn = functools.partial(_batch_norm, momentum=self.bn_momentum, epsilon=self.bn_eps)
        h = _as_input(x, self.dtype)
        h = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, kernel_init=_WRN_CONV_INIT,
                    dtype=self.dtype, param_dtype=jnp.float32)(h)
        for group, stride in enumerate((1, 2, 2)):
            for b in range(n):
                h = _WideBasic(16 * 2**group * self.width, stride if b == 0 else 1,
                               self.dropout, bn, dtype=self.dtype)(h, train)
        h = nn.relu(bn(train, self.dtype)(h))
        h = jnp.mean(h, axis=(1, 2))
        return _logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))


class _TransformerBlock(nn.Module):
    num_heads: int
    mlp_ratio: int
    dropout: float
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, h, mask, train: bool):
        d = h.shape[-1]
        ln = lambda: nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)  # noqa: E731
        a = nn.MultiHeadDotProductAttention(self.num_heads, dtype=self.dtype,
                                            param_dtype=jnp.float32)(ln()(h), mask=mask)
        h = h + nn.Dropout(self.dropout)(a, deterministic=not train)
        m = nn.Dense(self.mlp_ratio * d, dtype=self.dtype, param_dtype=jnp.float32)(ln()(h))
        m = nn.Dense(d, dtype=self.dtype, param_dtype=jnp.float32)(nn.gelu(m))
        return h + nn.Dropout(self.dropout)(m, deterministic=not train)


class Transformer(nn.Module):
    """Small pre-LN transformer on int tokens [B, L] (L <= max_len), learned position embeddings.

    Heads: classification logits [B, num_classes] from mean-pooled final features, or with
    ``causal_lm=True`` next-token logits [B, L, vocab_size] (``num_classes`` unused; implies a
    causal mask). ``causal=True`` masks attention causally for the classifier too.
    """

    num_classes: int
    vocab_size: int = 256
    max_len: int = 128
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    causal: bool = False
    causal_lm: bool = False
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        seq_len = tokens.shape[1]
        if seq_len > self.max_len:
            raise ValueError(f"sequence length {seq_len} > max_len {self.max_len}")
        tokens = jnp.asarray(tokens, jnp.int32)
        h = nn.Embed(self.vocab_size, self.d_model, dtype=self.dtype, param_dtype=jnp.float32)(tokens)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (self.max_len, self.d_model),
                         jnp.float32)
        h = h + pos[:seq_len].astype(h.dtype)
        h = nn.Dropout(self.dropout)(h, deterministic=not train)
        mask = nn.make_causal_mask(tokens) if (self.causal or self.causal_lm) else None
        for _ in range(self.num_layers):
            h = _TransformerBlock(self.num_heads, self.mlp_ratio, self.dropout, dtype=self.dtype)(
                h, mask, train)
        h = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32)(h)
        if self.causal_lm:
            return _logits(nn.Dense(self.vocab_size, dtype=self.dtype, param_dtype=jnp.float32)(h))
        h = jnp.mean(h, axis=1)
        return _logits(nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(h))


_MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "cnn": CNN,
    "resnet_airbench": AirbenchNet,
    "wrn": WideResNet,
    "transformer": Transformer,
}
MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Model ``name`` (one of MODEL_NAMES) with ``num_classes`` outputs; kwargs are module fields.

    List-valued kwargs (e.g. from TOML) are turned into tuples so the module stays hashable.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return _MODELS[name](num_classes=num_classes, **kwargs)


def count_params(variables) -> int:
    """Number of trainable scalars: leaves of ``variables['params']`` (or of ``variables`` itself
    when it has no 'params' key). BatchNorm running statistics are not counted. Pass one model's
    variables (a K-stacked tree counts K times)."""
    tree = variables["params"] if isinstance(variables, Mapping) and "params" in variables else variables
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def flops_per_example(model: nn.Module, input_shape, input_dtype=None, batch_size: int = 8) -> float:
    """Forward (eval-mode) FLOPs per example from XLA's cost analysis of the lowered, un-optimised
    HLO of ``model.apply`` on a ``[batch_size, *input_shape]`` batch, divided by ``batch_size``.

    XLA counts a multiply-add as 2 FLOPs and includes elementwise ops (activations, BN,
    softmax), so this is slightly above the 2 * MACs convention. Training costs about
    3x this per example. ``input_dtype`` defaults to int32 for the transformer, else float32.
    """
    if input_dtype is None:
        input_dtype = jnp.int32 if isinstance(model, Transformer) else jnp.float32
    x = jax.ShapeDtypeStruct((batch_size, *tuple(input_shape)), input_dtype)
    variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(x.shape, x.dtype)), jax.random.key(0))
    lowered = jax.jit(lambda v, xb: model.apply(v, xb, train=False)).lower(variables, x)
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"]) / batch_size
