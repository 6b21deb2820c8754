"""airbench94's network (``model.name = "resnet_airbench"``) and its patch-whitening stem."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxmem.models.common import (
    BN_EPS,
    BN_MOMENTUM,
    Dtype,
    as_input,
    batch_norm_layer,
    float32_logits,
    torch_default_init,
)


def dirac_init(base: Callable = torch_default_init) -> Callable:
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
        conv = lambda: nn.Conv(self.width, (3, 3), padding="SAME", use_bias=False,
                               kernel_init=dirac_init(), dtype=self.dtype, param_dtype=jnp.float32)
        # airbench94 freezes the BN scale at 1 and trains only the bias: use_scale=False.
        bn = lambda: batch_norm_layer(train, self.dtype, momentum=self.bn_momentum,
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
    bn_momentum: float = BN_MOMENTUM
    bn_eps: float = BN_EPS
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = as_input(x, self.dtype)
        k = self.whiten_kernel_size
        h = nn.Conv(2 * h.shape[-1] * k * k, (k, k), padding="VALID", use_bias=True,
                    kernel_init=torch_default_init, bias_init=nn.initializers.zeros,
                    dtype=self.dtype, param_dtype=jnp.float32, name="stem")(h)
        h = nn.gelu(h, approximate=False)
        for w in self.widths:
            h = _AirbenchGroup(w, self.bn_momentum, self.bn_eps, dtype=self.dtype)(h, train)
        h = jnp.max(h, axis=(1, 2))
        h = nn.Dense(self.num_classes, use_bias=False, kernel_init=torch_default_init,
                     dtype=self.dtype, param_dtype=jnp.float32)(h)
        return float32_logits(h) * self.scaling_factor


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
