"""Machine unlearning on a stack of models (train level of the flow: imports data, subsets,
models and train only).

* :mod:`jaxmem.unlearn.methods` - the registered methods (``METHODS``: fine-tuning, gradient
  ascent, NegGrad+, random labels, L1-sparse), their fields, validation at the door
* :mod:`jaxmem.unlearn.design` - forget sets (random, by class, most memorized) and the stack's
  design: models trained on the forget set and then unlearned, and models that never saw it
* :mod:`jaxmem.unlearn.stack` - :class:`Unlearner`: one model's update mapped over a chunk, in
  jitted blocks of steps
"""

from jaxmem.unlearn.design import FORGET_KINDS, forget_set, unlearning_design
from jaxmem.unlearn.methods import METHODS, Method, MethodError, make_method, make_methods
from jaxmem.unlearn.stack import Unlearner, index_rows, method_stream, unlearn_steps

__all__ = ["METHODS", "Method", "MethodError", "make_method", "make_methods", "FORGET_KINDS",
           "forget_set", "unlearning_design", "Unlearner", "index_rows", "method_stream",
           "unlearn_steps"]
