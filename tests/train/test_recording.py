"""What the trainer records (jaxmem.train.recording): names in one place, the epochs each record
holds, the host step loop and the scanned loop record the same, several epochs per call equal
one per call."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmem.config import ConfigError, load_config
from jaxmem.config.validate import RECORD_FIELDS
from jaxmem.runs.records import RECORD_FILES, record_epochs, record_file
from jaxmem.subsets import balanced_keep
from jaxmem.train import Trainer, recording, records, steps_per_epoch_max

ALL = ['train.records.fields=["loss","margin","correct","p_true"]', "train.records.every=2",
       "train.records.curvature_epochs=[1,3]", "train.records.curvature_niter=2"]


def _trainer(sets, rng, m=3, n=80):
    x = rng.normal(size=(n, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    cfg = load_config(None, [f"subsets.num_models={m}", "train.epochs=3", "train.batch_size=16",
                             "train.learning_rate=0.01", "model.hidden=[16]", "scoring.attacks=[]", *sets])
    keep = balanced_keep(0, m, n)
    return Trainer(cfg, jnp.asarray(x), jnp.asarray(y), 3, steps_per_epoch_max(keep, 16)), keep


def test_record_names_live_in_one_place(rng):
    assert RECORD_FIELDS == records.EpochRecord._fields
    tr, _ = _trainer(ALL + ["train.records.vog_epochs=[2,3]"], rng)
    dtypes = recording.record_dtypes(tr.cfg)
    assert list(dtypes) == tr.record_names == ["loss", "margin", "correct", "p_true", *recording.CURVATURE_RECORDS]
    assert dtypes["correct"] == np.bool_ and dtypes["loss"] == np.float32
    assert {record_file(n) for n in [*tr.record_names, "vog"]} <= set(RECORD_FILES)
    assert record_epochs(tr.cfg)["loss"] == [2, 3] and record_epochs(tr.cfg)["curvature"] == [1, 3]
    # record_forgetting alone is correctness after every epoch, as before; with records every
    # k > 1 epochs it would count forgetting events between every k-th epoch: refused at the door
    tr2, _ = _trainer(["train.record_forgetting=true"], rng)
    assert tr2.record_names == ["correct"] and record_epochs(tr2.cfg)["correct"] == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"^train.records.every: forgetting events .* got 2$"):
        _trainer(["train.record_forgetting=true", "train.records.every=2"], rng)


def test_host_loop_and_scan_record_the_same_and_skip_unrecorded_epochs(rng):
    """step_loop=host and the scanned loop give the same records (keys reach the hook in both);
    epochs not recorded come back as zeros (the lax.cond skipped the pass); two epochs in one
    call equal two calls."""
    out = {}
    for loop in ("scan", "host"):
        tr, keep = _trainer(ALL + [f"train.step_loop={loop}"], np.random.default_rng(0))
        ids = np.arange(3)
        state, status = tr.init_chunk(ids)
        state, status, a = tr.train_epochs(state, status, keep, ids, 0, 2)
        state, status, b = tr.train_epochs(state, status, keep, ids, 2, 1)
        out[loop] = {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])], axis=1) for k in a}
    for k in out["scan"]:
        s, h = out["scan"][k], out["host"][k]
        assert s.shape == (3, 3, 80), k
        if k == "correct":
            assert (s != h).mean() < 0.02
        else:
            np.testing.assert_allclose(h, s, rtol=2e-3, atol=2e-3 * max(np.abs(s).max(), 1e-6), err_msg=k)
    rec = out["scan"]
    for k in ("loss", "p_true"):
        assert not rec[k][:, 0].any() and rec[k][:, 1].all() and rec[k][:, 2].all(), k   # every=2: epochs 2, 3
    nonzero = rec["curvature"] != 0          # (an example whose ReLUs are all dead has curvature 0)
    assert nonzero[:, 0].mean() > 0.9 and not nonzero[:, 1].any() and nonzero[:, 2].mean() > 0.9
    # one call of three epochs = one call per epoch
    tr, keep = _trainer(ALL, np.random.default_rng(0))
    state, status = tr.init_chunk(np.arange(3))
    _, _, c = tr.train_epochs(state, status, keep, np.arange(3), 0, 3)
    for k in c:
        np.testing.assert_allclose(np.asarray(c[k]), rec[k], rtol=1e-4, atol=1e-4 * max(np.abs(rec[k]).max(), 1e-6))
