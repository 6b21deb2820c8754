"""The stacked trainer and what it is made of.

* :mod:`jaxmem.train.trainer` - :class:`Trainer` (chunks of models, one jitted program) and
  :func:`train_phases` (a per-example availability schedule)
* :mod:`jaxmem.train.steps` - one model's step, epoch and loop (vmapped over a chunk)
* :mod:`jaxmem.train.state` - typed state: :class:`TrainState`, :class:`ChunkStatus`,
  :class:`ChunkResult`, :class:`Phase`
* :mod:`jaxmem.train.optim` - optimizers, schedules, DP-SGD's key
* :mod:`jaxmem.train.augment` - training-time augmentation (registry:
  :mod:`jaxmem.train.augment_registry`)
* :mod:`jaxmem.train.rng` - random streams (fold_in of seed, stream, model, step)
* :mod:`jaxmem.train.task` - the trainer's task, chosen once from the family's ``lm`` capability
  (:func:`~jaxmem.train.task.task_for`): the loss and a trained chunk's outputs; classification
* :mod:`jaxmem.train.lm` - the causal-LM task (next-token loss, per-chunk LM signals)
* :mod:`jaxmem.train.lora` - LoRA runs: the one frozen base shared by a chunk's adapters

The package imports jax only when one of these is asked for, so that config validation can
read :mod:`jaxmem.train.augment_registry` without jax.
"""

__all__ = ["Trainer", "train_phases", "steps_per_epoch_max", "TrainState", "ChunkStatus",
           "ChunkResult", "Phase", "make_optimizer", "schedule_factor", "model_keys",
           "epoch_orders"]

_LAZY = {"make_optimizer": "optim", "schedule_factor": "optim", "epoch_orders": "rng",
         "model_keys": "rng", "ChunkResult": "state", "ChunkStatus": "state", "Phase": "state",
         "TrainState": "state", "Trainer": "trainer", "steps_per_epoch_max": "trainer",
         "train_phases": "trainer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"jaxmem.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxmem.train' has no attribute {name!r}")
