"""The stacked trainer and what it is made of.

* :mod:`jaxmem.train.trainer` - :class:`Trainer` (chunks of models, one jitted program) and
  :func:`train_phases` (a per-example availability schedule)
* :mod:`jaxmem.train.steps` - one model's step, epoch and loop (vmapped over a chunk)
* :mod:`jaxmem.train.state` - typed state: :class:`TrainState`, :class:`ChunkStatus`,
  :class:`ChunkResult`, :class:`Phase`
* :mod:`jaxmem.train.optim` - optimizers, schedules, DP-SGD's key
* :mod:`jaxmem.train.augment` - training-time augmentation
* :mod:`jaxmem.train.rng` - random streams (fold_in of seed, stream, model, step)
* :mod:`jaxmem.train.lm` - the language-model path (next-token loss, per-chunk LM signals)
* :mod:`jaxmem.train.lora` - LoRA runs: the one frozen base shared by a chunk's adapters
"""

from jaxmem.train.optim import make_optimizer, schedule_factor
from jaxmem.train.rng import epoch_orders, model_keys
from jaxmem.train.state import ChunkResult, ChunkStatus, Phase, TrainState
from jaxmem.train.trainer import Trainer, steps_per_epoch_max, train_phases

__all__ = ["Trainer", "train_phases", "steps_per_epoch_max", "TrainState", "ChunkStatus",
           "ChunkResult", "Phase", "make_optimizer", "schedule_factor", "model_keys",
           "epoch_orders"]
