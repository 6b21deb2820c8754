"""plot_memorization_extremes: which examples it shows (against a brute-force ranking), with NaN,
ties and fewer examples than asked, and that it writes both PNGs."""

import numpy as np

from jaxmem.analyses.figures import plot_memorization_extremes


def _brute(mem, k, most):
    """Rank by value (descending for most), ties by row index; NaN never shown."""
    rows = [i for i in range(len(mem)) if np.isfinite(mem[i])]
    rows.sort(key=lambda i: ((-mem[i]) if most else mem[i], i))
    return rows[:k]


def test_extremes_are_the_k_highest_and_lowest(rng, tmp_path):
    n, k = 200, 12
    mem = np.round(rng.uniform(-1, 1, n), 1)          # many ties
    mem[rng.random(n) < 0.1] = np.nan                  # undefined: never shown
    x = rng.normal(size=(n, 5, 5, 1)).astype(np.float32)
    y = rng.integers(0, 3, n)
    stderr = rng.uniform(0, 0.2, n)
    pred = rng.integers(-1, 3, n)
    flagged = rng.random(n) < 0.2
    f_most, f_least, most, least = plot_memorization_extremes(
        x, y, mem, stderr=stderr, predicted=pred, class_names=["a", "b", "c"], flagged=flagged,
        ids=np.arange(n) + 1000, k=k, cols=4, path=tmp_path / "m.png")
    assert list(most) == _brute(mem, k, True) and list(least) == _brute(mem, k, False)
    for tag in ("most", "least"):
        assert (tmp_path / f"m_{tag}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in f_most.axes if ax.get_title()]
    assert len(titles) == k
    i = most[0]
    assert titles[0].startswith(("* " if flagged[i] else "") + f"id {1000 + i}  mem {mem[i]:.2f}")
    assert ["a", "b", "c"][y[i]] in titles[0]


def test_fewer_finite_than_k(rng):
    mem = np.full(10, np.nan)
    mem[[3, 7]] = [0.5, -0.25]
    _, _, most, least = plot_memorization_extremes(rng.normal(size=(10, 4)), np.zeros(10, int),
                                                   mem, k=32)
    assert list(most) == [3, 7] and list(least) == [7, 3]
