"""LightGCN/NGCF split reader (train.txt or s_adj_mat.npz, test.txt, id lists) and LastFM."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from genrec.data.dataset import DataError, Dataset
from genrec.data.formats.lightgcn import PARTIAL_NOTE, read_lastfm, read_lightgcn
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split

# remapped ids 0..2 users, 0..3 items
TRAIN = "0 0 1\n1 2\n2\n"  # user 2 has no training item
TEST = "0 3\r\n1 0 1\n2 2\n"


def _write_lists(d: Path, users: bool = True, items: bool = True) -> None:
    if users:
        (d / "user_list.txt").write_text("org_id remap_id\nalice 0\nbob 1\ncarol 2\n")
    if items:
        (d / "item_list.txt").write_text("org_id remap_id\n0060 0\nB01 1\nB02 2\nB03 3\n")


def _adjacency(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> sp.csr_matrix:
    u, i = np.array(pairs).T
    r = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(n_users, n_items))
    return sp.bmat([[None, r], [r.T, None]], format="csr")  # symmetric, like LightGCN-PyTorch


def test_train_and_test_files_with_org_ids(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text(TRAIN)
    (tmp_path / "test.txt").write_text(TEST)
    _write_lists(tmp_path)
    raw = read_lightgcn(tmp_path)
    df = raw.interactions.collect()
    assert df.select("user_id", "item_id", "split").rows() == [
        ("alice", "0060", "train"), ("alice", "B01", "train"), ("bob", "B02", "train"),
        ("alice", "B03", "test"), ("bob", "0060", "test"), ("bob", "B01", "test"),
        ("carol", "B02", "test")]
    assert df["timestamp"].null_count() == df.height and raw.info["timestamp"] == "none"
    assert raw.info["train_source"] == "train.txt" and "partial" not in raw.info

    ds = build_dataset(raw, "toy")
    assert ds.meta["fixed_split"] is True and ds.meta["timestamp"] == "file_order"
    split = make_split(ds, "fixed")
    assert (split.train.height, split.valid.height, split.test.height) == (3, 0, 4)
    # the item id "0060" keeps its leading zero
    assert ds.items["item_id"].to_list() == ["0060", "B01", "B02", "B03"]


def test_train_rebuilt_from_adjacency(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text(TEST)
    _write_lists(tmp_path)
    # stored out of order on purpose: rebuilt rows come per user in item-id order
    sp.save_npz(tmp_path / "s_adj_mat.npz", _adjacency(3, 4, [(1, 2), (0, 1), (0, 0)]))
    raw = read_lightgcn(tmp_path)
    df = raw.interactions.collect()
    train = df.filter(pl.col("split") == "train").select("user_id", "item_id").rows()
    assert train == [("alice", "0060"), ("alice", "B01"), ("bob", "B02")]
    assert df.filter(pl.col("split") == "test").height == 4
    assert "s_adj_mat.npz" in raw.info["train_source"]

    # without user_list.txt the user count comes from item_list.txt (size - items) ...
    (tmp_path / "user_list.txt").unlink()
    users = read_lightgcn(tmp_path).interactions.collect()["user_id"]
    assert users.to_list()[:3] == ["0", "0", "1"]
    # ... or from test.txt, where a user count that does not fit the matrix is caught
    (tmp_path / "item_list.txt").unlink()
    items = read_lightgcn(tmp_path).interactions.collect()["item_id"]
    assert items.to_list()[:3] == ["0", "1", "2"]
    sp.save_npz(tmp_path / "s_adj_mat.npz", _adjacency(3, 4, [(0, 0), (2, 3)]))
    (tmp_path / "test.txt").write_text("0 3\n1 0\n")  # user 2 has train but no test items
    with pytest.raises(DataError, match="user count is wrong; add user_list.txt"):
        read_lightgcn(tmp_path)


def test_adjacency_that_disagrees_with_item_list(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text(TEST)
    _write_lists(tmp_path)
    sp.save_npz(tmp_path / "s_adj_mat.npz", _adjacency(3, 5, [(0, 0)]))
    with pytest.raises(DataError, match="leaves 5 items, but item_list.txt lists 4"):
        read_lightgcn(tmp_path)


def test_test_file_only_is_a_partial_ingest(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text(TEST)
    raw = read_lightgcn(tmp_path)
    df = raw.interactions.collect()
    assert "split" not in df.columns and raw.info["partial"] == PARTIAL_NOTE
    # no id lists: remapped ids are the raw ids
    assert df.select("user_id", "item_id").rows() == [
        ("0", "3"), ("1", "0"), ("1", "1"), ("2", "2")]
    ds = build_dataset(raw, "toy")
    assert ds.meta["partial"] == PARTIAL_NOTE and ds.meta["fixed_split"] is False


def test_ids_missing_from_the_lists_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "test.txt").write_text("0 3\n7 1\n")
    _write_lists(tmp_path)
    with pytest.raises(DataError,
                       match=r"user_id value\(s\) \(e\.g\. \['7'\]\) are not in .*user_list"):
        read_lightgcn(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(DataError, match=r"lacks test\.txt"):
        read_lightgcn(tmp_path)


def test_lastfm_synthetic(tmp_path: Path) -> None:
    (tmp_path / "data1.txt").write_text("3\t1\t993\r\n1\t2\t3.2466e+05\r\n")
    (tmp_path / "test1.txt").write_text("1\t1\t7\r\n")
    (tmp_path / "trustnetwork.txt").write_text("1\t3\r\n")
    raw = read_lastfm(tmp_path)
    df = raw.interactions.collect()
    assert df.select("user_id", "item_id", "weight", "split").rows() == [
        ("3", "1", 993.0, "train"), ("1", "2", 324660.0, "train"), ("1", "1", 7.0, "test")]
    assert df["rating"].null_count() == 3 and "trustnetwork" in raw.info["social_graph"]
    (tmp_path / "test1.txt").write_text("1\t1\n")
    with pytest.raises(DataError, match="expected 3 tab-separated columns"):
        read_lastfm(tmp_path)


# ---- real data -----------------------------------------------------------------------------
@functools.cache
def _ingest(path: Path) -> tuple[Dataset, pl.DataFrame]:
    raw = read_lightgcn(path)
    return build_dataset(raw, path.name), raw.interactions.collect()


@pytest.mark.integration
def test_gowalla_fixed_split(shared_data) -> None:
    path = shared_data("lightgcn/gowalla")
    ds, raw = _ingest(path)
    assert (ds.n_users, ds.n_items) == (29_858, 40_981)
    counts = dict(ds.interactions["split"].value_counts().iter_rows())
    assert counts == {"train": 810_128, "test": 217_242}
    # train and test never share a (user, item) pair: nothing is dropped as a duplicate
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 0
    assert ds.interactions.height == 810_128 + 217_242
    assert ds.meta["fixed_split"] is True

    # user remap 0 is org 343; its test items are test.txt line 1 through item_list.txt
    org_item = dict(line.split()[::-1] for line in
                    (path / "item_list.txt").read_text().splitlines()[1:])
    first = (path / "test.txt").read_text().split("\n", 1)[0].split()
    assert first[0] == "0"
    test_343 = raw.filter((pl.col("user_id") == "343") & (pl.col("split") == "test"))
    assert test_343["item_id"].to_list() == [org_item[i] for i in first[1:]]
    adj = sp.load_npz(path / "s_adj_mat.npz")
    assert raw.filter((pl.col("user_id") == "343") & (pl.col("split") == "train")).height == \
        adj[0, 29_858:].count_nonzero()


@pytest.mark.integration
@pytest.mark.parametrize("name, users, items, rows", [
    ("yelp2018", 31_668, 36_073, 324_147),
    ("amazon-book", 52_639, 82_629, 603_378),  # 4 of 52,643 users have an empty test line
])
def test_partial_ingest_of_test_only_folders(shared_data, name, users, items, rows) -> None:
    ds, _ = _ingest(shared_data(f"lightgcn/{name}"))
    assert (ds.n_users, ds.n_items, ds.interactions.height) == (users, items, rows)
    assert "split" not in ds.interactions.columns
    assert ds.meta["partial"] == PARTIAL_NOTE


@pytest.mark.integration
def test_lastfm_counts(shared_data) -> None:
    raw = read_lastfm(shared_data("lightgcn/lastfm"))
    df = raw.interactions.collect()
    assert dict(df["split"].value_counts().iter_rows()) == {"train": 42_135, "test": 10_533}
    ds = build_dataset(raw, "lastfm")
    # no repeated (user, artist) pair, within or across the two files
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 0
    assert (ds.n_users, ds.n_items, ds.interactions.height) == (1_880, 4_489, 52_668)
    assert ds.interactions["weight"].max() == 324_660.0
