"""Pretrained Llama-family weights into :class:`jaxmem.models.llama.Llama`: from a GGUF file
(the ``gguf`` package: each tensor dequantized to float32 with ``gguf.quants.dequantize``) or a
Hugging Face folder (``config.json`` + ``*.safetensors``, read with ``safetensors``). Where a
checkpoint is and its tokenizer: :mod:`jaxmem.data.pretrained`.

Two layout facts:

* GGUF lists a tensor's dims fastest-first (``[in, out]`` for a PyTorch ``[out, in]`` weight);
  the numpy array ``gguf`` returns is already ``[out, in]``, as in PyTorch. Flax kernels are
  ``[in, out]``: both sources are transposed once here.
* llama.cpp's converter permutes the rows of ``q`` and ``k`` so that each rotary pair is adjacent
  (GPT-J's interleaved layout); this model uses Hugging Face's ``rotate_half`` layout, so the
  permutation is undone (:func:`unpermute_qk`).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxmem.data.pretrained import checkpoint_kind, gguf_reader, read_llama_config, require, resolve_checkpoint
from jaxmem.models.llama import Llama

__all__ = ["load_pretrained", "load_weights", "unpermute_qk", "permute_qk", "generate"]

_GGUF = {"attn_q": "q", "attn_k": "k", "attn_v": "v", "attn_output": "o", "ffn_gate": "gate",
         "ffn_up": "up", "ffn_down": "down"}
_HF = {"self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
       "self_attn.o_proj": "o", "mlp.gate_proj": "gate", "mlp.up_proj": "up", "mlp.down_proj": "down"}


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's ``permute`` of a ``[n_head * hd, in]`` q or k weight (Hugging Face's rotate_half
    layout -> interleaved pairs); ``n_head`` the weight's heads (the KV heads for k)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute_qk`."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_tensors(path: Path, cfg: dict) -> dict:
    import gguf

    r = gguf_reader(path)
    out = {}
    for t in r.tensors:
        a = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        a = a.reshape(tuple(int(d) for d in reversed(t.shape)))
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            out["embed"] = a
        elif t.name == "output_norm.weight":
            out["final_norm"] = {"scale": a}
        elif t.name == "output.weight":
            out["lm_head"] = a.T
        elif parts[0] == "blk" and parts[-1] == "weight":
            layer = out.setdefault(f"layer_{int(parts[1])}", {})
            kind = parts[2]
            if kind in ("attn_norm", "ffn_norm"):
                layer[kind] = {"scale": a}
            elif kind in _GGUF:
                if kind == "attn_q":
                    a = unpermute_qk(a, cfg["num_heads"])
                elif kind == "attn_k":
                    a = unpermute_qk(a, cfg["num_kv_heads"])
                layer[_GGUF[kind]] = {"kernel": a.T}
    return out


def _hf_tensors(path: Path, cfg: dict) -> dict:
    st = require("safetensors.numpy", "reading safetensors")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"checkpoint {path}: no *.safetensors files")
    out = {}
    for f in files:
        for name, a in st.load_file(str(f)).items():
            a = np.asarray(a, np.float32)
            name = name.removeprefix("model.")
            parts = name.split(".")
            if name == "embed_tokens.weight":
                out["embed"] = a
            elif name == "norm.weight":
                out["final_norm"] = {"scale": a}
            elif name == "lm_head.weight":
                out["lm_head"] = a.T
            elif parts[0] == "layers":
                layer = out.setdefault(f"layer_{int(parts[1])}", {})
                rest = ".".join(parts[2:-1])
                if rest == "input_layernorm":
                    layer["attn_norm"] = {"scale": a}
                elif rest == "post_attention_layernorm":
                    layer["ffn_norm"] = {"scale": a}
                elif rest in _HF:
                    layer[_HF[rest]] = {"kernel": a.T}
    return out


def load_weights(checkpoint: str) -> tuple[dict, dict]:
    """``(config, weights)``: the architecture (:func:`jaxmem.data.pretrained.read_llama_config`)
    and the float32 parameter tree of :class:`~jaxmem.models.llama.Llama` (numpy arrays), from a
    GGUF file, a Hugging Face folder or a named checkpoint ("smollm2").

    Raises:
      FileNotFoundError: no such checkpoint / no weight files.
      ValueError: a tensor is missing or has the wrong shape for the architecture.
    """
    path = resolve_checkpoint(checkpoint)
    cfg = read_llama_config(path)
    w = _gguf_tensors(path, cfg) if checkpoint_kind(path) == "gguf" else _hf_tensors(path, cfg)
    if cfg["tie_embeddings"]:
        w.pop("lm_head", None)
    want = _shapes(cfg)
    flat_w, flat_s = _flat(w), _flat(want)
    missing = sorted(set(flat_s) - set(flat_w))
    if missing:
        raise ValueError(f"checkpoint {checkpoint}: missing tensors {missing[:5]}")
    for k, s in flat_s.items():
        if tuple(flat_w[k].shape) != tuple(s):
            raise ValueError(f"checkpoint {checkpoint}: {k} has shape {flat_w[k].shape}, expected {s}")
    return cfg, _unflat({k: flat_w[k] for k in flat_s})


def _shapes(cfg: dict) -> dict:
    """The parameter tree's shapes, from Llama itself (abstract init)."""
    import jax

    model = Llama(cfg["vocab_size"], **{k: v for k, v in cfg.items() if k != "vocab_size"})
    v = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 2), jnp.int32)), jax.random.key(0))
    return jax.tree.map(lambda a: a.shape, dict(v["params"]))


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _unflat(flat):
    out: dict = {}
    for k, v in flat.items():
        *path, last = k.split("/")
        d = out
        for p in path:
            d = d.setdefault(p, {})
        d[last] = v
    return out


def load_pretrained(checkpoint: str, *, dtype=None, **lora) -> tuple[Llama, dict]:
    """``(model, params)``: the Llama module of ``checkpoint`` and its pretrained float32
    parameters as jax arrays (``lora``: ``lora_rank``, ``lora_alpha``, ``lora_targets`` fields
    for the module; the params are then the frozen base).

    Raises: as :func:`load_weights`.
    """
    cfg, w = load_weights(checkpoint)
    model = Llama(cfg["vocab_size"], dtype=dtype, **{k: v for k, v in cfg.items() if k != "vocab_size"}, **lora)
    import jax

    return model, jax.tree.map(jnp.asarray, w)


def generate(model: Llama, variables: dict, prompt_ids, max_new_tokens: int, eos_id: int | None = None):
    """Greedy decoding: ``prompt_ids`` (list of ints) continued by ``max_new_tokens`` argmax tokens
    (stopping after ``eos_id``). Recomputes the whole window each step (one jitted program over
    a fixed-length buffer: the causal mask makes the padding invisible). Returns the new ids."""
    import jax

    P = len(prompt_ids)
    buf = np.zeros((1, P + max_new_tokens), np.int32)
    buf[0, :P] = prompt_ids
    step = jax.jit(lambda v, x, t: jnp.argmax(model.apply(v, x)[0, t - 1]))
    out = []
    for t in range(P, P + max_new_tokens):
        nxt = int(step(variables, jnp.asarray(buf), t))
        buf[0, t] = nxt
        out.append(nxt)
        if eos_id is not None and nxt == eos_id:
            break
    return out
