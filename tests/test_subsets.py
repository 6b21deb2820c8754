import numpy as np
import pytest

from jaxmem import subsets


@pytest.mark.parametrize("M,N,p", [(8, 50, 0.5), (64, 1000, 0.5), (33, 17, 0.3), (5, 7, 0.9)])
def test_balanced_keep_exact_counts(M, N, p):
    keep = subsets.balanced_keep(3, M, N, p)
    assert keep.shape == (M, N) and keep.dtype == bool
    np.testing.assert_array_equal(keep.sum(0), round(p * M))
    # rows are not all alike: models see different subsets
    assert len({r.tobytes() for r in keep}) > 1


def test_balanced_keep_is_pure_and_seeded():
    a = subsets.balanced_keep(0, 16, 100)
    np.testing.assert_array_equal(a, subsets.balanced_keep(0, 16, 100))
    assert not np.array_equal(a, subsets.balanced_keep(1, 16, 100))
    assert not np.array_equal(a, subsets.balanced_keep(0, 16, 100, block=1))


def test_balanced_keep_is_uniform_over_models():
    # each model is IN for about half the examples, and pairs of models overlap ~ 1/4
    keep = subsets.balanced_keep(0, 16, 20000)
    frac = keep.mean(1)
    assert np.all(np.abs(frac - 0.5) < 0.02)
    overlap = (keep[0] & keep[1]).mean()
    # hypergeometric: P(both) = (8/16)(7/15)
    assert abs(overlap - 0.5 * 7 / 15) < 0.015


def test_bernoulli_rows_depend_only_on_model_id():
    full = subsets.bernoulli_keep(2, 10, 300, 0.3)
    tail = subsets.bernoulli_keep(2, 4, 300, 0.3, first_model=6)
    np.testing.assert_array_equal(full[6:], tail)
    assert abs(full.mean() - 0.3) < 0.05


def test_fixed_ratio_sizes_and_prefix_stability():
    keep = subsets.fixed_ratio_keep(0, 12, 101, 0.7)
    np.testing.assert_array_equal(keep.sum(1), round(0.7 * 101))
    np.testing.assert_array_equal(keep[5:], subsets.fixed_ratio_keep(0, 7, 101, 0.7, first_model=5))


def test_multi_ratio():
    keep, ratio = subsets.multi_ratio_keep(0, 4, 200, ratios=(0.1, 0.5, 0.9))
    assert keep.shape == (12, 200)
    np.testing.assert_array_equal(keep.sum(1), np.repeat([20, 100, 180], 4))
    np.testing.assert_array_equal(ratio, np.repeat([0.1, 0.5, 0.9], 4))


def test_leave_k_out_covers_every_example():
    keep = subsets.leave_k_out_keep(0, 10, 20, k=2)
    np.testing.assert_array_equal((~keep).sum(1), 2)
    assert (~keep).any(0).all()


def test_leave_group_out_keeps_groups_together():
    groups = np.array([0, 0, 1, 1, 1, 2, -1, -1, 2, 0])
    keep = subsets.leave_group_out_keep(0, 8, groups)
    for g in (0, 1, 2):
        cols = keep[:, groups == g]
        assert (cols == cols[:, :1]).all()
        assert cols[:, 0].sum() == 4
    assert keep[:, groups < 0].all()


def test_make_keep_rejects_bad_args():
    with pytest.raises(ValueError, match="pkeep"):
        subsets.balanced_keep(0, 4, 10, pkeep=1.0)
    with pytest.raises(ValueError, match="unknown design"):
        subsets.make_keep("nope", 0, 4, 10)


@pytest.mark.parametrize("design", ["balanced", "bernoulli", "ratio", "leave_k_out"])
def test_make_design_over_units_keeps_a_unit_together(design, rng):
    """A text dataset's copies of one text (a unit) are IN or OUT together: the design is the one
    drawn over the units, each example taking its unit's row; growing a run adds rows the same way."""
    from jaxmem import config as cfgmod

    U = int(rng.integers(5, 40))
    units = np.concatenate([np.arange(U), rng.integers(0, U, size=int(rng.integers(0, 30)))])
    rng.shuffle(units)
    own = {"ratio": ["subsets.design.ratios=[0.3]"], "leave_k_out": ["subsets.design.k=2"]}
    cfg = cfgmod.load_config(None, [f'subsets.design="{design}"', "subsets.num_models=12", "scoring.attacks=[]",
                                    *own.get(design, [])])
    blocks = [{"first": 0, "count": 8, "block": 0}, {"first": 8, "count": 4, "block": 1}]
    keep, ratio = subsets.make_design(cfg, blocks, len(units), units=units)
    want, want_ratio = subsets.make_design(cfg, blocks, U)
    np.testing.assert_array_equal(keep, want[:, units])
    np.testing.assert_array_equal(ratio, want_ratio)
    for u in range(U):
        cols = keep[:, units == u]
        assert (cols == cols[:, :1]).all()
    with pytest.raises(ValueError, match="units"):
        subsets.make_design(cfg, blocks, len(units) + 1, units=units)
