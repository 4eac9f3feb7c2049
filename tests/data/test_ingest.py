import numpy as np
import polars as pl
import pytest

from genrec.data import DataError, Dataset
from genrec.data.formats import RawData
from genrec.data.ingest import Filters, build_dataset, kcore_mask


def raw(**cols):
    return RawData(pl.LazyFrame(cols))


def test_indices_time_order_and_first_duplicate_kept():
    ds = build_dataset(raw(user_id=["b", "a", "a", "a", "b", "b"], item_id=["10", "2", "3", "2", "9", "10"],
                           timestamp=[5, 1, 2, 3, 1, 1]), "toy")
    # users sorted by raw id; numeric item ids sorted as numbers: 2 < 3 < 9 < 10
    assert ds.users["user_id"].to_list() == ["a", "b"]
    assert ds.items["item_id"].to_list() == ["2", "3", "9", "10"]
    assert ds.items["item_idx"].to_list() == [1, 2, 3, 4]  # 0 is PAD
    inter = ds.interactions
    # b: (9,t=1,row 4), (10,t=1,row 5), (10,t=5,row 0) -> ties broken by file order, dup dropped
    assert inter.filter(pl.col("user_idx") == 1)["item_idx"].to_list() == [3, 4]
    assert inter.filter(pl.col("user_idx") == 0)["item_idx"].to_list() == [1, 2]
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 2
    assert inter.schema["user_idx"] == pl.Int32 and inter.schema["timestamp"] == pl.Int64


def test_iterative_kcore_matches_hand_result():
    # item z has 1 interaction -> dropped; then user c has 1 left -> dropped; then item y has 1 -> dropped ...
    users = np.array([0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 0, 1, 1, 2, 2])
    keep = kcore_mask(users, items, 2, 2)
    assert keep.tolist() == [True, True, True, True, False, False, False]


def test_empty_after_kcore_names_the_counts():
    with pytest.raises(DataError, match=r"empty after filtering: 3 interactions read.*min_user=5"):
        build_dataset(raw(user_id=["a", "b", "c"], item_id=["1", "1", "2"]), "toy", Filters(min_user=5))


def test_missing_columns_are_listed():
    with pytest.raises(DataError, match=r"lack column\(s\) \['item_id'\]; found \['user_id', 'sku'\]"):
        build_dataset(raw(user_id=["a"], sku=["1"]), "toy")


def test_rating_threshold_and_no_timestamp_uses_file_order(tmp_path):
    ds = build_dataset(raw(user_id=["a", "a", "a"], item_id=["3", "1", "2"], rating=[5.0, 2.0, 4.0]),
                       "toy", Filters(rating_threshold=3))
    assert ds.meta["timestamp"] == "file_order"
    assert ds.items["item_id"].to_list() == ["2", "3"]
    assert ds.interactions["item_idx"].to_list() == [2, 1]  # file order: 3 then 2
    ds.save(tmp_path / "toy")
    back = Dataset.load(tmp_path / "toy")
    assert back.interactions.equals(ds.interactions) and back.meta["n_items"] == 2


def test_load_of_a_non_dataset_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="genrec data prepare"):
        Dataset.load(tmp_path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    ds = build_dataset(raw(user_id=["a"], item_id=["1"]), "toy")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError):
        ds.save(tmp_path / "toy")
    assert list(tmp_path.iterdir()) == []
