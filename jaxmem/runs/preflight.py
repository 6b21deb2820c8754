"""Memory at the door: estimates of a run's host and device memory before anything is allocated,
and the refusal of a run that cannot fit, naming the fields to change.

Estimated (bytes; :func:`estimate`):

* the design: ``keep`` [M, N] bool and the temporaries of drawing it (the balanced design ranks
  M uniform float64 draws per example: 17 bytes per model and example at its peak);
* one chunk's model stack on the device (with VoG's running moments, 2 x [N, *input] float32 per
  model, when ``train.records.vog_epochs`` asks for them), from shapes only (``jax.eval_shape``
  of the model's ``init``, of the optimizer's ``init`` and of a forward pass that captures every
  layer's output: nothing is allocated): per model its parameters, gradients and optimizer state
  (and BatchNorm statistics), for the models the trainer runs at once
  (:func:`jaxmem.train.trainer.group_size`: one at a time on CPU, the whole chunk on an
  accelerator; a CNN on CPU trains every model of the chunk together in its step loop on the
  host, :func:`jaxmem.train.trainer.host_step_loop`) the activations of a training
  batch (the forward's layer outputs kept for the backward pass and as much again while it runs)
  and of an evaluation batch (``signals.batch_size``), the chunk's logits, the data on the
  device;
* scoring (host): the signals it keeps ([M, N] float32 each), then the larger of computing them
  from one streamed block of logits (up to 512 MB of float64 logits, and the signal functions'
  temporaries) and the attacks' per-target scores ([T, N] float64 each).

On CPU the device is the host, so the chunk counts against host memory, with training's fixed
cost (:data:`_TRAINING_FIXED_CPU`: compiled programs, the runtime) and, for a convolutional model,
XLA:CPU's larger convolution-gradient buffers (:data:`_TRAIN_ACTIVATION_FACTOR_CONV_CPU`).
``benchmarks/preflight_accuracy.py`` compares the estimate with the peak RSS of an MLP, a CNN and
a language-model run. The limits: the device's
``bytes_limit`` (GPU/TPU), and the memory the host has available (``MemAvailable``, within a
cgroup's limit). A run over a limit is refused with :class:`~jaxmem.io.RunError`; one over half
of it is logged. ``tests/runs/test_preflight.py`` checks the chunk's estimate against XLA's own
memory analysis of the training step, and scoring's against the peak RSS of scoring a run.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from jaxmem.io import RunError
from jaxmem.io import fmt_bytes as B
from jaxmem.models.registry import spec
from jaxmem.runs.scoring_memory import scoring_bytes
from jaxmem.runs.task import task_for
from jaxmem.runs.training import chunk_size

__all__ = ["estimate", "check", "check_batch", "check_scoring", "host_available", "device_limit",
           "model_bytes", "scoring_bytes", "design_bytes"]

#: Bytes per model and example while drawing each design (keep itself included).
_DESIGN_PEAK = {"balanced": 17, "leave_group_out": 2, "bernoulli": 2, "ratio": 1,
                "leave_k_out": 1}
#: Layer outputs of a forward pass held during a training step: those saved for the backward
#: pass and as much again for the gradients flowing back.
_TRAIN_ACTIVATION_FACTOR = 2
#: The same for a convolutional model on CPU: XLA:CPU's convolution gradients take buffers of
#: several times each 3x3 layer's input (im2col-like). Measured: 12.1x the layer outputs per model
#: and example (a CNN with channels [32, 64] at batch 128 and 256, 4 and 8 models vmapped).
_TRAIN_ACTIVATION_FACTOR_CONV_CPU = 12
#: Training's fixed cost on a CPU host (XLA's compilations of the training and evaluation
#: programs, the runtime's buffers): measured 0.46-0.48 GB above the estimate of the arrays for
#: an MLP and a language-model run (benchmarks/preflight_accuracy.py).
_TRAINING_FIXED_CPU = 448 << 20


def _cgroup_limit():
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            text = Path(limit).read_text().strip()
            if text != "max" and int(text) < 1 << 60:
                return int(text) - int(Path(usage).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def host_available() -> int:
    """Bytes of memory this process can still take: ``MemAvailable`` (Linux), within a cgroup's
    limit; the physical memory elsewhere."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cg = _cgroup_limit()
    return min(avail, cg) if cg is not None else avail


def device_limit():
    """``(backend, bytes per device)``; the bytes are None on CPU (the device is the host)."""
    import jax

    backend = jax.default_backend()
    if backend == "cpu":
        return backend, None
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:   # a backend without memory statistics
        stats = {}
    return backend, stats.get("bytes_limit")


def _tree_bytes(tree) -> int:
    import jax

    return int(sum(math.prod(x.shape) * x.dtype.itemsize    # (PRNG key dtypes have one too)
                   for x in jax.tree_util.tree_leaves(tree)))


def model_bytes(cfg, input_shape, input_dtype, num_classes: int) -> dict:
    """Per model, from shapes only: ``params``, ``batch_stats``, ``optimizer`` state bytes, and
    ``activation`` bytes per example (every layer's output of one forward pass)."""
    import jax
    import jax.numpy as jnp

    from jaxmem.models import make_model
    from jaxmem.train.optim import make_optimizer

    model = make_model(cfg, num_classes)
    x = jax.ShapeDtypeStruct((1,) + tuple(input_shape), input_dtype)
    key = jax.random.key(0)
    variables = jax.eval_shape(
        lambda k: model.init({"params": k, "dropout": k}, jnp.zeros(x.shape, x.dtype), train=False),
        key)
    params = variables["params"]
    opt = jax.eval_shape(make_optimizer(cfg.train, whiten=getattr(cfg.model, "whiten", False)).init, params)
    _, inter = jax.eval_shape(
        lambda v, xb: model.apply(v, xb, train=False, capture_intermediates=True,
                                  mutable=["intermediates"]), variables, x)
    return {"params": _tree_bytes(params),
            "batch_stats": _tree_bytes(variables.get("batch_stats", {})),
            "optimizer": _tree_bytes(opt), "activation": _tree_bytes(inter),
            "frozen": _tree_bytes(variables.get("frozen", {}))}   # a LoRA run's shared base


def design_bytes(cfg, num_train: int) -> int:
    """Peak bytes of drawing the design ``keep`` [M, N] (one block: the largest)."""
    return _DESIGN_PEAK.get(cfg.subsets.design.name, 17) * cfg.subsets.num_models * num_train


def estimate(cfg, ds) -> dict:
    """Every estimate of a run's memory (bytes), from its config and data (shapes only)."""
    N, T = len(ds.y_train), len(ds.y_test)
    C, A = int(ds.num_classes), len(cfg.signals.queries)
    K = min(chunk_size(cfg), cfg.subsets.num_models)
    import jax

    from jaxmem.train.trainer import group_size, host_step_loop

    backend = jax.default_backend()
    # the models the trainer runs at once: a group (one on CPU), every model of the chunk in a
    # step loop on the host (a CNN on CPU); evaluation always goes by groups
    V = group_size(cfg, K, backend)
    V_train = K if host_step_loop(cfg, backend) else V
    ndev = jax.local_device_count()
    m = model_bytes(cfg, ds.x_train.shape[1:], ds.x_train.dtype, C)
    state = 2 * m["params"] + m["optimizer"] + 2 * m["batch_stats"]   # + gradients
    act_bytes = m["activation"] * (2 if cfg.train.compute_dtype == "bfloat16" else 4) // 4
    # VoG's running moments (train.records.vog_epochs): 2 x [N, *input] float32 per model, on
    # the device with the chunk (jaxmem.runs.records.ChunkRecords)
    vog = 2 * N * math.prod(ds.x_train.shape[1:]) * 4 if cfg.train.records.vog_epochs else 0
    per_model_state = state + vog
    factor = (_TRAIN_ACTIVATION_FACTOR_CONV_CPU if backend == "cpu"
              and spec(cfg.model.name).convolutional else _TRAIN_ACTIVATION_FACTOR)
    train_act = V_train * factor * min(cfg.train.batch_size, N) * act_bytes

    # what the run's task evaluates and keeps: logits [N + T, A, C], or a language model's
    # per-token signals, never its [N, L, V] outputs (jaxmem.runs.task)
    task = task_for(cfg.model.name)
    L = task.sequence_length(ds)
    eval_act = V * task.eval_rows(cfg, N, T, L, C) * act_bytes
    out = task.output_bytes(cfg, N, T, L, A, C)
    data = ds.x_train.nbytes + ds.x_test.nbytes + ds.y_train.nbytes + ds.y_test.nbytes
    per_dev_models = math.ceil(K / ndev)
    # a LoRA run's frozen base (jaxmem.train.lora): one copy per device, whatever K
    chunk = per_dev_models * (per_model_state + out + 2 * N * 4) + max(train_act, eval_act) + data + m["frozen"]
    return {"models_per_chunk": K, "vmapped": V, "vmapped_train": V_train, "frozen_base": m["frozen"],
            "per_model_state": per_model_state,
            "params": m["params"], "optimizer": m["optimizer"], "vog_moments": vog,
            "train_activations": train_act, "eval_activations": eval_act, "outputs_per_model": out,
            "chunk_device": chunk, "training_fixed": _TRAINING_FIXED_CPU if backend == "cpu" else 0,
            "design": design_bytes(cfg, N),
            "scoring": task.scoring_bytes(cfg, N, T, C), "backend": backend}


def check_scoring(cfg, num_train: int, num_test: int, num_classes: int, available=None) -> int:
    """Refuse to score a run whose scoring cannot fit in host memory (:func:`scoring_bytes`);
    returns the estimate. Called at the door of a run and before scoring (an imported run)."""
    host = host_available() if available is None else available
    sc = scoring_bytes(cfg, num_train, num_test, num_classes)
    total = sum(sc.values())
    if total > host:
        M = cfg.subsets.num_models
        raise RunError(f"subsets.num_models: scoring {M} models x {num_train} examples needs about "
                       f"{B(total)} of host memory (signals {B(sc['signals'])}, then at most "
                       f"{B(sc['stage'])} to compute them or for the attacks' scores), {B(host)} "
                       f"is available; fewer subsets.num_models, scoring.targets=K (attack the "
                       f"first K models only) or fewer scoring.attacks")
    return total


def _fields(cfg) -> str:
    return ", ".join(f"model.{f}" for f in spec(cfg.model.name).fields
                     if f not in ("dropout", "bn_momentum", "bn_eps", "batch_norm"))


def check(cfg, ds, *, log=print, available=None, device=None) -> dict:
    """Refuse a run whose design, model chunk or scoring cannot fit in memory, before anything is
    allocated; log the estimate when it takes more than half of what is available. ``available``
    (host bytes) and ``device`` (``(backend, bytes)``) override what is measured (tests)."""
    est = estimate(cfg, ds)
    host = host_available() if available is None else available
    backend, dev = device_limit() if device is None else device
    M, N = cfg.subsets.num_models, len(ds.y_train)
    if est["design"] > host:
        raise RunError(f"subsets.num_models: drawing the {cfg.subsets.design.name} design of {M} models "
                       f"x {N} examples needs about {B(est['design'])} of host memory, "
                       f"{B(host)} is available; fewer subsets.num_models")
    # (a language-model run is scored from its per-token signals, read in blocks: jaxmem.runs.score_lm)
    scoring = 0 if est["scoring"] is None else check_scoring(cfg, N, len(ds.y_test),
                                                             int(ds.num_classes), available=host)
    chunk, K = est["chunk_device"], est["models_per_chunk"]
    limit = host - M * N - est["training_fixed"] if dev is None else dev
    where = "host memory (the CPU is the device)" if dev is None else f"{backend} device memory"
    if chunk > limit:
        fixed = chunk - math.ceil(K / max(1, _ndev())) * est["per_model_state"]
        fit = int((limit - fixed) // max(1, est["per_model_state"])) * _ndev()
        act = max(est["train_activations"], est["eval_activations"])
        hint = (f"train.chunk_size={fit} fits, or" if 1 <= fit < K else
                "one model alone does not fit:")
        raise RunError(
            f"model: a chunk of {K} models needs about {B(chunk)} of {where}, {B(limit)} is "
            f"available (per model: parameters {B(est['params'])}, optimizer state "
            f"{B(est['optimizer'])}, gradients {B(est['params'])}"
            f"{'; the frozen base, once: ' + B(est['frozen_base']) if est['frozen_base'] else ''}"
            f"{'; VoG moments ' + B(est['vog_moments']) + ', fewer train.records.vog_epochs' if est['vog_moments'] else ''}"
            f"; activations of "
            f"{est['vmapped_train']} models at a time in training, {est['vmapped']} in "
            f"evaluation: {B(act)}, train.batch_size="
            f"{cfg.train.batch_size}, signals.batch_size={cfg.signals.batch_size}); {hint} a "
            f"smaller model ({_fields(cfg)}), train.batch_size or train.vmap_size")
    peak = max(est["design"], scoring, M * N + (chunk + est["training_fixed"] if dev is None else 0))
    if peak > host / 2 or (dev is not None and chunk > dev / 2):
        log(f"memory: about {B(peak)} of host memory at the peak ({B(host)} available)"
            + (f"; {B(chunk)} per {backend} device for a chunk of {K} models ({B(dev)})"
               if dev is not None else ""))
    return est


def _ndev() -> int:
    import jax

    return jax.local_device_count()


def check_batch(cfg, keep) -> None:
    """A training batch larger than the smallest IN set (a model's training subset) would repeat
    examples within a step: refused, naming the model."""
    n_in = np.asarray(keep).sum(1)
    if n_in.size and cfg.train.batch_size > n_in.min():
        m = int(n_in.argmin())
        raise RunError(f"train.batch_size: {cfg.train.batch_size} is larger than the "
                       f"{int(n_in.min())} training examples of model {m} (its IN set, the "
                       f"smallest of the run); at most {int(n_in.min())}")
