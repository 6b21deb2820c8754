"""Run directories: training, resuming, growing, scoring and loading them.

* :mod:`jaxmem.runs.store` - the file layout, :class:`Run`, :func:`load_run`, :func:`assemble`
* :mod:`jaxmem.runs.workdir` - which config changes a run accepts, --overwrite, disk accounting
* :mod:`jaxmem.runs.execute` - :func:`execute` (lock, checks at the door, design, train, assemble, score)
* :mod:`jaxmem.runs.training` - the chunk loop (SIGTERM -> :class:`Interrupted`), shards, progress
* :mod:`jaxmem.runs.checkpoint` - orbax checkpoints of the chunk in training
* :mod:`jaxmem.runs.lock` - the run directory's lock: one writer at a time
* :mod:`jaxmem.runs.provenance` - what produced a run and each of its shards
* :mod:`jaxmem.runs.integrity` - checksums, checked before scoring and reporting; rebuilding
* :mod:`jaxmem.runs.task` - the run-level task (classification; the language model's in
  :mod:`jaxmem.runs.lm`), chosen once: outputs' memory and disk, scoring's memory, the data's line
* :mod:`jaxmem.runs.preflight` - memory at the door: estimates from shapes, refusals
* :mod:`jaxmem.runs.examples` - per-example attack scores (results/scores), one example's record
* :mod:`jaxmem.runs.score` - :func:`score`: results/ and summary.json
* :mod:`jaxmem.runs.interop` - :func:`import_arrays` (arrays trained elsewhere, checked at the door)
* :mod:`jaxmem.runs.lira_layout` - :func:`import_lira`, :func:`export_lira` (the LiRA reference layout)
"""

from jaxmem.io import RunError
from jaxmem.runs.execute import Interrupted, execute
from jaxmem.runs.interop import import_arrays
from jaxmem.runs.lira_layout import export_lira, import_lira
from jaxmem.runs.score import score
from jaxmem.runs.store import Run, assemble, load_run

__all__ = ["Run", "load_run", "assemble", "execute", "Interrupted", "score", "RunError",
           "import_arrays", "import_lira", "export_lira"]
