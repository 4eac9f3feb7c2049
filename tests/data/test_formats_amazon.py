"""Amazon readers: S3-Rec/P5 splits (synthetic + the real Beauty/Sports files), 2014 and 2023
review dumps (synthetic gz/jsonl files)."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from genrec.data.dataset import DataError, Dataset
from genrec.data.formats.amazon import read_amazon2014, read_amazon2023, read_s3rec
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split


def _sequences(ds: Dataset) -> dict[str, list[str]]:
    """raw user id -> raw item ids in the dataset's stored (time) order."""
    item_ids = ds.item_ids
    df = ds.interactions.group_by("user_idx", maintain_order=True).agg("item_idx")
    user_ids = ds.users["user_id"].to_list()
    return {user_ids[u]: [item_ids[i] for i in items]
            for u, items in zip(df["user_idx"].to_list(), df["item_idx"].to_list())}


# ---- S3-Rec, synthetic ---------------------------------------------------------------------
@pytest.fixture
def s3rec_dir(tmp_path: Path) -> Path:
    # user 2's sequence goes against the ASIN sort order, so only the position can order it
    (tmp_path / "Toy.txt").write_text("1 1 2 3\r\n2 3 1\n3 2 3 4\n")
    (tmp_path / "datamaps.json").write_text(json.dumps({
        "id2user": {"1": "UA", "2": "UB", "3": "UC"},
        "id2item": {"1": "Z1", "2": "Y2", "3": "X3", "4": "W4"},
        "user2id": {}, "item2id": {},
    }))
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps(
        {"1": [5, 7], "2": [5], "3": [9, 1, 2], "4": []}))
    rows = [
        {"item_id": 1, "asin": "Z1", "title": "Salt &amp; Pepper\tMill",
         "categories": [["Beauty", "Makeup", "Eyes"], ["Kitchen", "Tools"]]},
        {"item_id": 2, "asin": "Y2", "title": "Plain", "categories": [["Beauty"]]},
        {"item_id": 3, "asin": "X3", "title": "Caf&eacute;", "categories": []},
    ]
    (tmp_path / "item_text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_s3rec_maps_ids_and_keeps_line_order(s3rec_dir: Path) -> None:
    raw = read_s3rec(s3rec_dir, "Toy")
    df = raw.interactions.collect()
    assert df["user_id"].to_list() == ["UA"] * 3 + ["UB"] * 2 + ["UC"] * 3
    assert df["item_id"].to_list() == ["Z1", "Y2", "X3", "X3", "Z1", "Y2", "X3", "W4"]
    assert df["timestamp"].to_list() == [1, 2, 3, 1, 2, 1, 2, 3]
    assert raw.info["timestamp"] == "order" and raw.info["format"] == "s3rec"

    items = raw.items.sort("s3rec_id")
    assert items["item_id"].to_list() == ["Z1", "Y2", "X3", "W4"]
    assert items["title"].to_list() == ["Salt & Pepper Mill", "Plain", "Café", None]
    assert items["categories"].to_list() == [
        "Beauty > Makeup > Eyes | Kitchen > Tools", "Beauty", None, None]
    assert items["attributes"].to_list() == ["5 7", "5", "9 1 2", ""]
    assert raw.users.sort("s3rec_id")["user_id"].to_list() == ["UA", "UB", "UC"]

    ds = build_dataset(raw, "toy")
    assert _sequences(ds) == {"UA": ["Z1", "Y2", "X3"], "UB": ["X3", "Z1"],
                              "UC": ["Y2", "X3", "W4"]}
    assert ds.meta["timestamp"] == "order"
    assert ds.titles()[ds.item_index(["Z1"])[0]] == "Salt & Pepper Mill"


def test_s3rec_without_datamaps_keeps_numeric_ids(s3rec_dir: Path) -> None:
    (s3rec_dir / "datamaps.json").unlink()
    raw = read_s3rec(s3rec_dir, "Toy")
    assert raw.users is None and "s3rec_id" not in raw.items.columns
    ds = build_dataset(raw, "toy")
    # numeric ids sort as numbers, so item_idx equals the S3-Rec item id
    assert ds.items["item_id"].to_list() == ["1", "2", "3", "4"]
    assert ds.items["title"].to_list() == ["Salt & Pepper Mill", "Plain", "Café", None]
    assert _sequences(ds)["2"] == ["3", "1"]


def test_s3rec_errors_name_the_file(s3rec_dir: Path) -> None:
    with pytest.raises(DataError, match=r"lacks Other\.txt.*found: .*Toy\.txt"):
        read_s3rec(s3rec_dir, "Other")
    (s3rec_dir / "Toy.txt").write_text("1 1 2\n2 5\n")
    with pytest.raises(DataError,
                       match=r"item_id value\(s\) \(e\.g\. \['5'\]\) are not in .*datamaps\.json"):
        read_s3rec(s3rec_dir, "Toy")
    (s3rec_dir / "Toy.txt").write_text("1 1 2\n2 3\n1 4\n")
    with pytest.raises(DataError, match="more than one line"):
        read_s3rec(s3rec_dir, "Toy")


# ---- S3-Rec, real data ---------------------------------------------------------------------
@functools.cache
def _ingest_s3rec(path: Path, stem: str) -> Dataset:
    return build_dataset(read_s3rec(path, stem), stem)


def _lines(path: Path, maps: dict) -> dict[str, list[str]]:
    """The file's sequences mapped to raw ids with plain Python, independently of the reader."""
    out = {}
    for line in path.read_text().splitlines():
        user, *items = line.split()
        out[maps["id2user"][user]] = [maps["id2item"][i] for i in items]
    return out


@pytest.mark.integration
def test_beauty_reproduces_s3rec_sequences(shared_data) -> None:
    path = shared_data("amazon-beauty-5core")
    ds = _ingest_s3rec(path, "Beauty")
    assert (ds.n_users, ds.n_items, ds.interactions.height) == (22_363, 12_101, 198_502)
    # Beauty.txt never repeats an item within a user, so dedup drops nothing and the S3-Rec
    # protocol (which would keep repeats) sees the same sequences
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 0

    expected = _lines(path / "Beauty.txt", json.loads((path / "datamaps.json").read_text()))
    assert sum(len(s) - len(set(s)) for s in expected.values()) == 0
    got = _sequences(ds)
    assert got == expected
    assert got["A1YJEY40YUW4SE"] == ["B004756YJA", "B004ZT0SSG", "B0020YLEYK", "7806397051",
                                     "B002WLWX82"]
    # an independent raw-id file (GRAM user_sequence.txt) agrees too
    for line in (path / "user_sequence.txt").read_text().splitlines()[:500]:
        user, *items = line.split()
        assert got[user] == items

    # leave-one-out: test = last item of each line, validation = the one before (P1)
    split = make_split(ds, "loo")
    item_ids, user_ids = ds.item_ids, ds.users["user_id"].to_numpy()

    def by_user(frame: pl.DataFrame) -> dict[str, str]:
        rows = frame.select("user_idx", "item_idx").iter_rows()
        return {user_ids[u]: item_ids[i] for u, i in rows}

    test, valid = by_user(split.test), by_user(split.valid)
    assert len(test) == len(valid) == 22_363  # 5-core: every user has >= 5 items
    assert test == {u: s[-1] for u, s in expected.items()}
    assert valid == {u: s[-2] for u, s in expected.items()}


@pytest.mark.integration
def test_beauty_items_have_text_and_attributes(shared_data) -> None:
    ds = _ingest_s3rec(shared_data("amazon-beauty-5core"), "Beauty")
    items = ds.items
    titles = items["title"]
    assert titles.null_count() == 0 and (titles.str.len_chars() > 0).all()
    assert not titles.str.contains("&amp;", literal=True).any()
    assert items["categories"].null_count() == 0 and items["attributes"].null_count() == 0
    by_asin = {r["item_id"]: r for r in items.iter_rows(named=True)}
    assert by_asin["B00BZ1QN2C"]["title"] == (
        "Freeman Facial Charcoal & Black Sugar Polish Mask 6 oz.")  # raw: "&amp;"
    assert by_asin["B00BZ1QN2C"]["s3rec_id"] == 8
    assert by_asin["B002WUVOBA"]["categories"] == (
        "Beauty > Bath & Body > Bath | Clothing, Shoes & Jewelry > Luggage & Travel Gear > "
        "Travel Accessories > Packing Organizers")
    assert by_asin["7806397051"]["attributes"] == "1 2 3"  # S3-Rec item 4: [1, 2, 3]
    assert ds.users.filter(pl.col("s3rec_id") == 1)["user_id"].item() == "A1YJEY40YUW4SE"


@pytest.mark.integration
def test_sports_counts_and_attributes(shared_data) -> None:
    path = shared_data("amazon-sports-5core")
    ds = _ingest_s3rec(path, "Sports_and_Outdoors")
    assert (ds.n_users, ds.n_items, ds.interactions.height) == (35_598, 18_357, 296_337)
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 0
    assert "title" not in ds.items.columns
    assert ds.items["attributes"].null_count() == 0
    assert ds.items.filter(pl.col("s3rec_id") == 1)["attributes"].item() == "1 2 3 4 5 6"
    got = _sequences(ds)
    for line in (path / "user_sequence.txt").read_text().splitlines()[:500]:
        user, *items = line.split()
        assert got[user] == items


# ---- Amazon 2014, synthetic ----------------------------------------------------------------
def _gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return path


def _review(user: str, item: str, rating: float, t: int) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "reviewerName": "x", "helpful": [0, 0],
                       "reviewText": "long text", "overall": rating, "summary": "s",
                       "unixReviewTime": t, "reviewTime": "01 1, 2014"})


@pytest.fixture
def amazon2014_dir(tmp_path: Path) -> Path:
    _gz(tmp_path / "reviews_Toys_5.json.gz", [
        _review("u1", "A1", 5.0, 300), _review("u1", "B2", 3.0, 100), "",
        _review("u2", "A1", 4.0, 200),
    ])
    _gz(tmp_path / "meta_Toys.json.gz", [
        # the 2014 metadata is written with Python's repr: single quotes
        str({"asin": "A1", "title": "Cars &amp; Trucks", "price": 12.5, "imUrl": "http://i/a1.jpg",
             "categories": [["Toys", "Vehicles"], ["Toys", "Gifts"]], "brand": "Acme",
             "description": "Fast\ncars", "salesRank": {"Toys": 3}}),
        json.dumps({"asin": "B2", "title": "Ball", "categories": [["Toys"]]}),
        "{'asin': 'C3', 'title': 'never reviewed' BROKEN",  # skipped: no review mentions C3
    ])
    return tmp_path


def test_amazon2014_reviews_and_meta(amazon2014_dir: Path) -> None:
    raw = read_amazon2014(amazon2014_dir)
    df = raw.interactions.collect()
    assert df.columns == ["user_id", "item_id", "rating", "timestamp"]
    assert df.rows() == [("u1", "A1", 5.0, 300), ("u1", "B2", 3.0, 100), ("u2", "A1", 4.0, 200)]
    assert df.schema["rating"] == pl.Float32 and df.schema["timestamp"] == pl.Int64
    assert raw.info["timestamp"] == "unix" and "meta_Toys.json.gz" in raw.info["source"]

    items = {r["item_id"]: r for r in raw.items.iter_rows(named=True)}
    assert set(items) == {"A1", "B2"}
    assert items["A1"] == {"item_id": "A1", "title": "Cars & Trucks", "description": "Fast cars",
                           "brand": "Acme", "categories": "Toys > Vehicles | Toys > Gifts",
                           "price": 12.5, "image_url": "http://i/a1.jpg"}
    assert items["B2"]["price"] is None and items["B2"]["categories"] == "Toys"

    ds = build_dataset(raw, "toys")
    assert _sequences(ds) == {"u1": ["B2", "A1"], "u2": ["A1"]}  # sorted by unixReviewTime


def test_amazon2014_malformed_lines_name_file_and_line(amazon2014_dir: Path) -> None:
    _gz(amazon2014_dir / "reviews_Toys_5.json.gz",
        [_review("u1", "A1", 5.0, 1), _review("u2", "A1", 4.0, 2), '{"reviewerID": "u3", "asin"'])
    with pytest.raises(DataError, match=r"reviews_Toys_5\.json\.gz: line 3 is not a JSON"):
        read_amazon2014(amazon2014_dir)
    _gz(amazon2014_dir / "reviews_Toys_5.json.gz", [json.dumps({"reviewerID": "u1", "asin": "A1"})])
    with pytest.raises(DataError, match=r"line 1 lacks .*unixReviewTime.*needs reviewerID, asin"):
        read_amazon2014(amazon2014_dir)
    _gz(amazon2014_dir / "reviews_Toys_5.json.gz", [_review("u1", "C3", 5.0, 1)])
    with pytest.raises(DataError, match=r"meta_Toys\.json\.gz: line 3 is not a JSON"):
        read_amazon2014(amazon2014_dir)


def test_amazon2014_finds_files_or_says_which(tmp_path: Path, amazon2014_dir: Path) -> None:
    (amazon2014_dir / "meta_Toys.json.gz").unlink()
    raw = read_amazon2014(amazon2014_dir)  # metadata is optional
    assert raw.items is None and "no metadata file" in raw.info["source"]
    _gz(amazon2014_dir / "reviews_Games_5.json.gz", [_review("u1", "G", 1.0, 1)])
    with pytest.raises(DataError, match="several reviews files"):
        read_amazon2014(amazon2014_dir)
    games = read_amazon2014(amazon2014_dir, reviews="reviews_Games_5.json.gz")
    assert games.interactions.collect()["item_id"].to_list() == ["G"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no reviews file .* pass reviews=NAME"):
        read_amazon2014(empty)


# ---- Amazon 2023, synthetic ----------------------------------------------------------------
def test_amazon2023_reviews_and_meta(tmp_path: Path) -> None:
    reviews = [
        {"rating": 5.0, "title": "t", "text": "x", "images": [], "asin": "B01-red",
         "parent_asin": "P1", "user_id": "U1", "timestamp": 1588687728923,
         "helpful_vote": 2, "verified_purchase": True},
        {"rating": 2.0, "title": "t", "text": "y", "images": [], "asin": "P2",
         "parent_asin": "P2", "user_id": "U1", "timestamp": 1588000000000},
    ]
    (tmp_path / "All_Beauty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    meta = [
        {"main_category": "All Beauty", "title": "Soap &amp; Co", "average_rating": 4.1,
         "features": ["Vegan", "Fragrance free"], "description": ["Gentle.", "Made in EU."],
         "price": None, "store": "Acme", "categories": ["Beauty", "Bath"],
         "images": [{"thumb": "t0", "large": "l0", "variant": "PT01", "hi_res": None},
                    {"thumb": "t1", "large": "l1", "variant": "MAIN", "hi_res": "h1"}],
         "parent_asin": "P1", "details": {}},
        {"main_category": "All Beauty", "title": "Brush", "features": [], "description": [],
         "price": "$7.50", "store": None, "categories": [], "images": [], "parent_asin": "P2"},
    ]
    _gz(tmp_path / "meta_All_Beauty.jsonl.gz", [json.dumps(m) for m in meta])

    raw = read_amazon2023(tmp_path)
    df = raw.interactions.collect()
    assert df.rows() == [("U1", "P1", 5.0, 1588687728), ("U1", "P2", 2.0, 1588000000)]
    items = {r["item_id"]: r for r in raw.items.iter_rows(named=True)}
    assert items["P1"] == {"item_id": "P1", "title": "Soap & Co",
                           "description": "Gentle. Made in EU.", "main_category": "All Beauty",
                           "categories": "Beauty > Bath", "features": "Vegan | Fragrance free",
                           "store": "Acme", "price": None, "image_url": "l1"}
    assert items["P2"]["price"] == 7.5 and items["P2"]["categories"] is None
    assert items["P2"]["image_url"] is None and items["P2"]["features"] is None
    ds = build_dataset(raw, "beauty23")
    assert _sequences(ds) == {"U1": ["P2", "P1"]}
    assert ds.meta["format"] == "amazon2023"

    (tmp_path / "All_Beauty.jsonl").write_text(json.dumps(reviews[0]) + "\n[1, 2]\n")
    with pytest.raises(DataError, match=r"All_Beauty\.jsonl: line 2 holds a list"):
        read_amazon2023(tmp_path)
