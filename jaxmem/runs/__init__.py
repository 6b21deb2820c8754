"""Run directories: training, resuming, growing, scoring and loading them.

* :mod:`jaxmem.runs.store` - the file layout, :class:`Run`, :func:`load_run`, :func:`assemble`
* :mod:`jaxmem.runs.workdir` - which config changes a run accepts, --overwrite, disk accounting
* :mod:`jaxmem.runs.execute` - :func:`execute` (the chunk loop, SIGTERM -> :class:`Interrupted`)
* :mod:`jaxmem.runs.checkpoint` - orbax checkpoints of the chunk in training
* :mod:`jaxmem.runs.score` - :func:`score`: results/ and summary.json
* :mod:`jaxmem.runs.interop` - :func:`import_arrays`, :func:`import_lira`, :func:`export_lira`
"""

from jaxmem.io import RunError
from jaxmem.runs.execute import Interrupted, execute
from jaxmem.runs.interop import export_lira, import_arrays, import_lira
from jaxmem.runs.score import score
from jaxmem.runs.store import Run, assemble, load_run

__all__ = ["Run", "load_run", "assemble", "execute", "Interrupted", "score", "RunError",
           "import_arrays", "import_lira", "export_lira"]
