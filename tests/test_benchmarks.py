"""benchmarks/gpu_bench.py --smoke on the CPU: its Fashion-MNIST section (a stack of CNNs on the
real images, the accelerator check's item of issue #14) runs end to end and prints its rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

from shared_data import shared_data

REPO = Path(__file__).resolve().parent.parent


def test_gpu_bench_fashion_mnist_smoke(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               JAXMEM_DATA=str(shared_data("fashion-mnist").parent))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), "--smoke",
                        "--skip", "correct", "mlp", "cnn", "conv", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {name: value for section, name, value, _ in json.loads(out.read_text())
            if section == "fmnist"}
    assert "SKIPPED" not in rows.values(), rows
    acc = next(v for k, v in rows.items() if k.startswith("test accuracy"))
    assert 0.0 < float(acc.split()[0]) <= 1.0
    assert rows["diverged models"] == "0"
    assert float(rows["models per hour (this length of training)"].replace(",", "")) > 0
