"""The README's "Bring your own arrays" snippets run as written (#27): the files they load are
made here, in a fresh folder, from PyTorch-shaped arrays; each ```python block runs in turn in one
namespace, each ``jaxmem ...`` line of a ```bash block through the CLI."""

import re
import shlex
import warnings
from pathlib import Path

import numpy as np

from jaxmem import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def _section_blocks():
    text = README.read_text()
    start = text.index("## Bring your own arrays")
    end = text.index("**What happens at the edges.**", start)
    return re.findall(r"```(python|bash)\n(.*?)```", text[start:end], flags=re.S)


def test_readme_bring_your_own_snippets_run_as_written(tmp_path, monkeypatch, rng):
    blocks = _section_blocks()
    assert [k for k, _ in blocks].count("python") >= 3 and any(k == "bash" for k, _ in blocks)
    M, N, T, A, C = 8, 40, 12, 2, 3
    keep = rng.random((M, N)) < 0.5
    labels = rng.integers(0, C, N)
    logits = rng.normal(size=(M, N, A, C)).astype(np.float32)
    logits[np.arange(M)[:, None], np.arange(N)[None], :, labels[None]] += 1.5 * keep[..., None]
    test_logits = rng.normal(size=(M, T, A, C)).astype(np.float32)
    ids = rng.choice(10**5, N, replace=False)
    x = rng.integers(0, 256, (N, 5, 5, 3)).astype(np.uint8)
    monkeypatch.chdir(tmp_path)
    for name, arr in (("keep", keep), ("logits", logits), ("labels", labels),
                      ("test_logits", test_logits), ("test_labels", rng.integers(0, C, T)),
                      ("example_ids", ids), ("x_train", x)):
        np.save(f"{name}.npy", arr)
    from jaxmem.attacks import write_lira_layout

    write_lira_layout("exp/cifar10", keep, logits, labels, x=x)
    ns = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, code in blocks:
            if kind == "python":
                exec(compile(code, "README.md", "exec"), ns)
                continue
            for line in code.splitlines():
                line = line.split("#")[0].strip()
                if line.startswith("jaxmem "):
                    assert cli.main(shlex.split(line)[1:]) == 0, line
    # what the snippets made holds what they said
    from jaxmem.runs import load_run

    mine, lira = load_run("runs/mine"), load_run("runs/lira")
    np.testing.assert_array_equal(mine.example_ids, ids)
    assert mine.config.name == "mine" and (Path("runs/mine/results/examples_inputs.npy")).exists()
    np.testing.assert_array_equal(np.load(lira.path / "x_train.npy"), x)   # the report's images
    assert (lira.path / "results" / "examples_inputs.npy").exists()
    assert (Path("exp/lira_copy") / "experiment-0_8" / "keep.npy").exists()
    assert "rmia_offline" in ns["ev"].summary()


def test_readme_bring_your_own_lm_snippet_runs_on_its_stated_inputs(rng):
    """The section's LM snippet, given the arrays its comment names (keep [M, N] bool; logp, mu,
    sigma, correct [M, N, T]; tmask [N, T]; zlib [N])."""
    text = README.read_text()
    start = text.index("**Bring your own LM outputs.**")
    (code,) = re.findall(r"```python\n(.*?)```", text[start:text.index("\n## ", start)], flags=re.S)
    M, N, T = 6, 20, 7
    ns = {"np": np, "keep": rng.random((M, N)) < 0.5,
          "logp": -rng.exponential(size=(M, N, T)), "mu": -rng.exponential(size=(M, N, T)),
          "sigma": rng.random((M, N, T)) + 0.1, "correct": rng.random((M, N, T)) < 0.5,
          "tmask": rng.random((N, T)) < 0.8, "zlib": rng.random(N) * 100}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["mem"].mem.shape == (N,) and "min_k" in ns["ev"].summary()
