"""The run-level task interface (jaxmem.runs.task, jaxmem.runs.lm): chosen once from the model
family's ``lm`` capability, agreeing with the trainer's task; a stored run's from its files."""

import numpy as np

from jaxmem import config as cfgmod
from jaxmem.models.registry import MODELS
from jaxmem.runs import import_arrays, load_run
from jaxmem.runs.lm import LANGUAGE_MODEL_RUN
from jaxmem.runs.scoring_memory import scoring_bytes
from jaxmem.runs.task import CLASSIFICATION_RUN, stored_task, task_for
from jaxmem.runs.workdir import lm_output_bytes
from jaxmem.train import task as train_task


def test_run_task_follows_the_family_capability_and_the_trainers_task():
    for name, m in MODELS.items():
        t = task_for(name)
        assert t is (LANGUAGE_MODEL_RUN if m.lm else CLASSIFICATION_RUN), name
        assert t.name == train_task.task_for(name).name, name


def test_the_tasks_supply_their_estimates(rng):
    cfg = cfgmod.load_config(None)
    N, T, L, A, C = (int(v) for v in rng.integers(2, 50, 5))

    class DS:
        x_train = np.zeros((N, L), np.int32)

    c, lm = CLASSIFICATION_RUN, LANGUAGE_MODEL_RUN
    assert c.output_bytes(cfg, N, T, L, A, C) == (N + T) * A * C * 4
    assert lm.output_bytes(cfg, N, T, L, A, C) == lm_output_bytes(cfg, N, T, L)
    assert c.eval_rows(cfg, N, T, L, C) == min(cfg.signals.batch_size, max(N, T))
    assert 1 <= lm.eval_rows(cfg, N, T, L, C) <= max(N, T)
    assert c.scoring_bytes(cfg, N, T, C) == scoring_bytes(cfg, N, T, C)
    assert lm.scoring_bytes(cfg, N, T, C) is None
    assert (c.sequence_length(DS), lm.sequence_length(DS)) == (0, L)


def test_an_imported_run_is_a_classifiers(tmp_path, rng):
    M, N, C = 4, 12, 3
    import_arrays(tmp_path / "r", rng.random((M, N)) < 0.5,
                  rng.normal(size=(M, N, 1, C)).astype(np.float32), rng.integers(0, C, N))
    run = load_run(tmp_path / "r")
    assert stored_task(run) is CLASSIFICATION_RUN
    line = stored_task(run).data_summary(run, {"num_train": N, "num_test": 0, "num_classes": C})
    assert line == f"{N} training, 0 test examples, {C} classes"
