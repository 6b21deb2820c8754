"""A Llama-family causal language model (``model.name = "llama"``; Touvron et al. 2023): RMSNorm
before attention and MLP, rotary position embeddings (Su et al. 2021, the Hugging Face
``rotate_half`` layout), grouped-query attention (Ainslie et al. 2023), a SwiGLU MLP (Shazeer
2020), an output head tied to the embedding or not. It maps tokens ``[B, L]`` to next-token
logits ``[B, L, V]`` (float32), like :class:`jaxmem.models.causal_lm.CausalLM`.

Pretrained weights (SmolLM2, a GGUF file, a Hugging Face folder) are read by
:mod:`jaxmem.models.pretrained` into this module's parameter tree.

LoRA (Hu et al. 2022; ``lora_rank > 0``): every projection named in ``lora_targets`` (``q, k, v,
o, gate, up, down``) computes ``x W + (alpha / r) x A B`` with ``A`` [in, r] ~ N(0, 1/in) and
``B`` [r, out] = 0 at initialization; the pretrained weights ``W`` (and the norms and the
embedding) are then the collection ``"frozen"`` and only the adapters are ``"params"``: a stacked
trainer vmaps the adapters over its model axis and passes the one frozen base to every model
(:class:`jaxmem.train.trainer.Trainer`'s ``frozen``).

Parameter layout (kernels ``[in, out]``): ``embed`` [V, d]; ``layer_i``: ``attn_norm`` [d],
``q`` [d, H·hd], ``k`` / ``v`` [d, Hkv·hd], ``o`` [H·hd, d], ``ffn_norm`` [d], ``gate`` /
``up`` [d, F], ``down`` [F, d]; ``final_norm`` [d]; ``lm_head`` [d, V] when not tied.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmem.models.common import Dtype, float32_logits
from jaxmem.models.registry import LORA_TARGETS

__all__ = ["Llama", "LORA_TARGETS", "rope_tables", "apply_rope"]

def rope_tables(seq_len: int, head_dim: int, base: float):
    """cos, sin [L, head_dim] of rotary embeddings in the ``rotate_half`` layout (frequency i on
    dims i and i + head_dim/2), float32."""
    inv = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    ang = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * inv[None]
    ang = jnp.concatenate([ang, ang], axis=-1)
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x, cos, sin):
    """Rotate ``x`` [B, L, H, hd] by position: ``x cos + rotate_half(x) sin``."""
    h = x.shape[-1] // 2
    rot = jnp.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos[None, :, None].astype(x.dtype) + rot * sin[None, :, None].astype(x.dtype)


class _Weights(nn.Module):
    """Where a weight lives: ``params`` (trained) or, with LoRA, ``frozen`` (the shared base)."""

    frozen: bool

    def weight(self, name, init, shape):
        if self.frozen:
            return self.variable("frozen", name, lambda: init(self.make_rng("params"), shape, jnp.float32)).value
        return self.param(name, init, shape, jnp.float32)


class _Proj(_Weights):
    """``x @ kernel`` (no bias), plus a LoRA update when ``rank > 0``."""

    features: int = 0
    rank: int = 0
    alpha: float = 1.0
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x):
        d_in = x.shape[-1]
        w = self.weight("kernel", nn.initializers.normal(0.02), (d_in, self.features))
        dt = self.dtype or jnp.float32
        y = jnp.dot(x.astype(dt), w.astype(dt))
        if self.rank:
            a = self.param("lora_a", nn.initializers.normal(1.0 / d_in ** 0.5), (d_in, self.rank), jnp.float32)
            b = self.param("lora_b", nn.initializers.zeros, (self.rank, self.features), jnp.float32)
            y = y + (self.alpha / self.rank) * jnp.dot(jnp.dot(x.astype(dt), a.astype(dt)), b.astype(dt))
        return y


class _RMSNorm(_Weights):
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        w = self.weight("scale", nn.initializers.ones, (x.shape[-1],))
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (y * w).astype(x.dtype)


class _Block(nn.Module):
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_dim: int
    norm_eps: float
    lora: dict
    frozen: bool
    dtype: Dtype | None = None

    def _proj(self, name, features):
        r, alpha = self.lora.get(name, (0, 1.0))
        return _Proj(self.frozen, features, r, alpha, self.dtype, name=name)

    @nn.compact
    def __call__(self, h, cos, sin, mask):
        B, L, _ = h.shape
        H, Hk, hd = self.num_heads, self.num_kv_heads, self.head_dim
        x = _RMSNorm(self.frozen, self.norm_eps, name="attn_norm")(h)
        q = self._proj("q", H * hd)(x).reshape(B, L, H, hd)
        k = self._proj("k", Hk * hd)(x).reshape(B, L, Hk, hd)
        v = self._proj("v", Hk * hd)(x).reshape(B, L, Hk, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        g = H // Hk                                     # query heads per key/value head
        q = q.reshape(B, L, Hk, g, hd)
        s = jnp.einsum("bqkgd,bskd->bkgqs", q, k).astype(jnp.float32) / jnp.sqrt(jnp.float32(hd))
        s = jnp.where(mask[None, None, None], s, jnp.finfo(jnp.float32).min)
        p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
        a = jnp.einsum("bkgqs,bskd->bqkgd", p, v).reshape(B, L, H * hd)
        h = h + self._proj("o", h.shape[-1])(a).astype(h.dtype)
        x = _RMSNorm(self.frozen, self.norm_eps, name="ffn_norm")(h)
        m = jax.nn.silu(self._proj("gate", self.ffn_dim)(x)) * self._proj("up", self.ffn_dim)(x)
        return h + self._proj("down", h.shape[-1])(m).astype(h.dtype)


class Llama(nn.Module):
    """Llama-family LM: tokens [B, L] int -> logits [B, L, num_classes] float32 (module
    docstring). ``head_dim = 0``: ``d_model // num_heads``; ``num_kv_heads = 0``: ``num_heads``."""

    num_classes: int          # the vocabulary size V
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 0
    ffn_dim: int = 0          # 0: 4 * d_model * 2/3 rounded up to a multiple of 8
    head_dim: int = 0
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple = ("q", "v")
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        tokens = jnp.asarray(tokens, jnp.int32)
        L = tokens.shape[1]
        frozen = self.lora_rank > 0
        hd = self.head_dim or self.d_model // self.num_heads
        hk = self.num_kv_heads or self.num_heads
        ffn = self.ffn_dim or -(-(8 * self.d_model // 3) // 8) * 8
        if self.num_heads % hk:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {hk}")
        lora = {t: (self.lora_rank, float(self.lora_alpha)) for t in self.lora_targets} if frozen else {}
        embed = (self.variable("frozen", "embed", lambda: nn.initializers.normal(0.02)(
            self.make_rng("params"), (self.num_classes, self.d_model), jnp.float32)).value if frozen else
            self.param("embed", nn.initializers.normal(0.02), (self.num_classes, self.d_model), jnp.float32))
        dt = self.dtype or jnp.float32
        h = jnp.take(embed, tokens, axis=0).astype(dt)
        cos, sin = rope_tables(L, hd, self.rope_base)
        mask = jnp.tril(jnp.ones((L, L), bool))
        for i in range(self.num_layers):
            h = _Block(self.num_heads, hk, hd, ffn, self.norm_eps, lora, frozen, self.dtype,
                       name=f"layer_{i}")(h, cos, sin, mask)
        h = _RMSNorm(frozen, self.norm_eps, name="final_norm")(h)
        if self.tie_embeddings:
            logits = jnp.dot(h.astype(dt), embed.T.astype(dt))
        else:
            head = (self.variable("frozen", "lm_head", lambda: nn.initializers.normal(0.02)(
                self.make_rng("params"), (self.d_model, self.num_classes), jnp.float32)).value if frozen else
                self.param("lm_head", nn.initializers.normal(0.02), (self.d_model, self.num_classes), jnp.float32))
            logits = jnp.dot(h.astype(dt), head.astype(dt))
        return float32_logits(logits)
