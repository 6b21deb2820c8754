"""Scale-out: the model axis sharded over several (forced host) devices, and several processes
joined by jax.distributed, give the same run as one device / one process."""

import socket
import subprocess

import helpers_run as H
import numpy as np
import pytest

SETS = [s for s in H.SMALL if not s.startswith("train.checkpoint_every")] + ["train.chunk_size=4"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single():
    wd = H.fresh_dir("single")
    r = H.run(wd, SETS)
    assert r.returncode == 0, r.stderr[-2000:]
    return wd


@pytest.fixture(scope="module")
def single_run():
    return _single()


def _load(wd):
    return {n: np.load(wd / n) for n in ("keep.npy", "logits.npy", "test_logits.npy")}


def test_four_devices_equal_one_device(single_run):
    wd = H.fresh_dir("four")
    env = H.env()
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    r = subprocess.run(H.argv(wd, SETS), capture_output=True, text=True, env=env, cwd=H.REPO,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _load(single_run), _load(wd)
    np.testing.assert_array_equal(a["keep.npy"], b["keep.npy"])
    np.testing.assert_allclose(a["logits.npy"], b["logits.npy"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(a["test_logits.npy"], b["test_logits.npy"], atol=1e-4, rtol=0)


def _two_processes(wd, kill_first=False):
    port = _free_port()
    common = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    p1 = H.start(wd, SETS, common + ["--process-id", "1"], log=f"{wd}.p1.log")
    p0 = H.start(wd, SETS, common + ["--process-id", "0"], log=f"{wd}.p0.log")
    return p0, p1


def test_two_processes_equal_one_process(single_run):
    wd = H.fresh_dir("two")
    p0, p1 = _two_processes(wd)
    assert p0.wait(timeout=600) == 0, H.log_text(p0)[-2000:]
    assert p1.wait(timeout=600) == 0, H.log_text(p1)[-2000:]
    a, b = _load(single_run), _load(wd)
    np.testing.assert_array_equal(a["keep.npy"], b["keep.npy"])
    np.testing.assert_array_equal(a["logits.npy"], b["logits.npy"])
    assert len(H.shards(wd)) == 2


@pytest.mark.slow
def test_killed_process_of_a_two_process_run_resumes(single_run):
    """SIGKILL process 1 once it has written a shard; rerun both: the run completes, identical."""
    wd = H.fresh_dir("two-killed")
    p0, p1 = _two_processes(wd)
    H.kill_when(p1, lambda: len(H.shards(wd)) >= 1)   # (if p1 already ended, resume all the same)
    p0.kill()
    p0.wait(), p1.wait()
    p0, p1 = _two_processes(wd)
    assert p0.wait(timeout=600) == 0, H.log_text(p0)[-2000:]
    assert p1.wait(timeout=600) == 0, H.log_text(p1)[-2000:]
    a, b = _load(single_run), _load(wd)
    np.testing.assert_array_equal(a["logits.npy"], b["logits.npy"])
