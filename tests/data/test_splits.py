import numpy as np
import polars as pl
import pytest

from genrec.data import DataError
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split, ratio_counts


@pytest.fixture
def ds():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        n = 1 + u % 12
        items = rng.choice(50, size=n, replace=False)
        rows += [(f"u{u:02d}", str(i), t * 10 + u) for t, i in enumerate(items)]
    u, i, t = zip(*rows)
    return build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "toy")


def test_loo_last_is_test_second_last_is_valid(ds):
    s = make_split(ds, "loo")
    seqs = ds.interactions.group_by("user_idx", maintain_order=True).agg("item_idx")
    for u, items in seqs.iter_rows():
        test = s.test.filter(pl.col("user_idx") == u)["item_idx"].to_list()
        valid = s.valid.filter(pl.col("user_idx") == u)["item_idx"].to_list()
        if len(items) >= 3:
            assert test == [items[-1]] and valid == [items[-2]]
            assert s.sequences("test")[u].tolist() == items[:-1]
            assert s.sequences("valid")[u].tolist() == items[:-2]
        else:
            assert test == [] and valid == []
    assert s.train.height + s.valid.height + s.test.height == ds.interactions.height


def test_ratio_counts_follow_recbole_rounding():
    # 10 -> 8/1/1; 2 -> 1/0/1 (test first); 3 -> 1/1/1; 1 -> 1/0/0; 4 -> 2/1/1
    got = ratio_counts(np.array([10, 2, 3, 1, 4]), (0.8, 0.1, 0.1))
    assert got.tolist() == [[8, 1, 1], [1, 0, 1], [1, 1, 1], [1, 0, 0], [2, 1, 1]]
    assert ratio_counts(np.array([8]), (0.75, 0.0, 0.25)).tolist() == [[6, 0, 2]]


def test_ratio_split_is_seeded_and_partitions(ds):
    a, b, c = make_split(ds, "ratio", seed=1), make_split(ds, "ratio", seed=1), make_split(ds, "ratio", seed=2)
    assert a.test.equals(b.test) and not a.test.equals(c.test)
    total = pl.concat([a.train, a.valid, a.test]).sort(["user_idx", "item_idx"])
    assert total.equals(ds.interactions.select(total.columns).sort(["user_idx", "item_idx"]))
    per_user = a.test.group_by("user_idx").len()
    assert per_user["len"].min() >= 1


def test_temporal_is_one_global_cut(ds):
    s = make_split(ds, "temporal", ratios=(0.6, 0.2, 0.2))
    assert s.train["timestamp"].max() <= s.valid["timestamp"].min()
    assert s.valid["timestamp"].max() <= s.test["timestamp"].min()
    assert abs(s.train.height - 0.6 * ds.interactions.height) <= 1


def test_fixed_needs_a_split_column(ds):
    with pytest.raises(DataError, match="no fixed split"):
        make_split(ds, "fixed")
    with pytest.raises(DataError, match="unknown split"):
        make_split(ds, "random")


def test_history_and_targets_matrices(ds):
    s = make_split(ds, "loo")
    h, t = s.history("test"), s.targets("test")
    assert h.shape == (ds.n_users, ds.n_items + 1) and h[:, 0].nnz == 0
    assert h.nnz == s.train.height + s.valid.height and t.nnz == s.test.height
