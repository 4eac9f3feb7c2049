"""goodbooks-10k, anime (MyAnimeList subset) and generic readers: tiny files, then real data."""

from __future__ import annotations

import gzip
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from genrec.data.dataset import DataError
from genrec.data.formats.anime import read_anime
from genrec.data.formats.generic import read_table
from genrec.data.formats.goodbooks import read_goodbooks
from genrec.data.ingest import build_dataset


def _zip(path: Path, members: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)


def _unix(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


# ---- goodbooks-10k ---------------------------------------------------------------------------
BOOKS = ("book_id,goodreads_book_id,authors,original_publication_year,title\n"
         "1,2767052,Suzanne Collins,2008.0,The Hunger Games (The Hunger Games #1)\n"
         '2,3,"J.K. Rowling, Mary GrandPré",1997.0,"Harry Potter, #1"\n'
         "3,41865,Anonymous,,Untagged\n")
BOOK_TAGS = ("goodreads_book_id,tag_id,count\n"
             "2767052,30574,100\n2767052,11305,40\n2767052,11557,40\n2767052,8717,-1\n"
             "3,11305,5\n3,30574,3\n3,11305,2\n")
TAGS = "tag_id,tag_name\n8717,ya\n11305,fantasy\n11557,favorites\n30574,to-read\n"


@pytest.fixture
def goodbooks_v1(tmp_path: Path) -> Path:
    _zip(tmp_path / "ratings_v1.csv.zip", {"ratings.csv": "book_id,user_id,rating\n"
                                                          "1,314,5\n1,439,3\n2,314,4\n2,314,2\n"})
    (tmp_path / "books.csv").write_text(BOOKS)
    _zip(tmp_path / "book_tags.csv.zip", {"book_tags.csv": BOOK_TAGS})
    (tmp_path / "tags.csv").write_text(TAGS)
    return tmp_path


def test_goodbooks_v1(goodbooks_v1: Path) -> None:
    raw = read_goodbooks(goodbooks_v1)
    assert raw.interactions.collect().rows() == [(314, 1, 5.0), (439, 1, 3.0), (314, 2, 4.0),
                                                 (314, 2, 2.0)]
    assert "timestamp" not in raw.interactions.collect_schema()
    assert raw.info["timestamp"] == "none" and "meaningless" in raw.info["note"]
    assert raw.items.rows() == [
        # 40/40 tie broken alphabetically; the negative "ya" count is dropped
        ("1", "The Hunger Games (The Hunger Games #1)", "Suzanne Collins", 2008,
         "to-read|fantasy|favorites"),
        # the two fantasy rows add up to 7 > 3
        ("2", "Harry Potter, #1", "J.K. Rowling, Mary GrandPré", 1997, "fantasy|to-read"),
        ("3", "Untagged", "Anonymous", None, None),
    ]
    ds = build_dataset(raw, "gb-tiny")
    assert ds.meta["counts_raw"]["duplicates_dropped"] == 1
    assert ds.interactions.height == 3


def test_goodbooks_time_ordered_release_keeps_row_order(goodbooks_v1: Path) -> None:
    (goodbooks_v1 / "ratings_v1.csv.zip").unlink()
    (goodbooks_v1 / "ratings.csv").write_text("user_id,book_id,rating\n9,2,5\n1,1,4\n9,1,3\n")
    raw = read_goodbooks(goodbooks_v1)
    assert raw.interactions.collect().rows() == [(9, 2, 0, 5.0), (1, 1, 1, 4.0), (9, 1, 2, 3.0)]
    assert raw.info["timestamp"] == "order"


def test_goodbooks_v1_books_layout(goodbooks_v1: Path) -> None:
    # the 2017 books.csv calls the item id "id" and the Goodreads id "book_id"
    (goodbooks_v1 / "books.csv").write_text(
        "id,book_id,authors,original_publication_year,title\n1,2767052,S. Collins,2008,HG\n")
    items = read_goodbooks(goodbooks_v1).items
    assert items.rows() == [("1", "HG", "S. Collins", 2008, "to-read|fantasy|favorites")]


def test_goodbooks_errors(goodbooks_v1: Path) -> None:
    _zip(goodbooks_v1 / "ratings_v1.csv.zip", {"ratings.csv": "book,user,stars\n1,2,3\n"})
    with pytest.raises(DataError, match=r"columns \['book', 'user', 'stars'\]; expected"):
        read_goodbooks(goodbooks_v1)
    (goodbooks_v1 / "ratings_v1.csv.zip").unlink()
    with pytest.raises(DataError, match=r"none of ratings\.csv.*\(found: book_tags\.csv\.zip, "
                                        r"books\.csv, tags\.csv\)"):
        read_goodbooks(goodbooks_v1)


# ---- anime -----------------------------------------------------------------------------------
ANIME_INFO = ("anime_ids\tname\tgenre\ttype\tepisodes\trating\tmembers\n"
              "1\tKimi no Na wa.\tDrama, Romance, School\tMovie\t1\t9.37\t200630\n"
              "2\tGintama°\tAction, Comedy\tTV\t51\t9.25\t114262\n"
              "3\tNo Genre\t\tOVA\t1\t5.0\t10\n")
ANIME_MEMBERS = {
    "anime/anime_ratings.dat": "User_ID\tAnime_ID\tFeedback\n1\t1\t8\n1\t2\t5\n2\t1\t10\n",
    "anime/anime_history.dat": "User_ID\tAnime_ID\tFeedback\n1\t1\t1\n1\t2\t1\n2\t1\t1\n3\t3\t1\n",
    "anime/anime_info.dat": ANIME_INFO,
}


@pytest.fixture
def anime_dir(tmp_path: Path) -> Path:
    _zip(tmp_path / "anime.zip", ANIME_MEMBERS)
    return tmp_path


def test_anime_ratings_and_history(anime_dir: Path) -> None:
    raw = read_anime(anime_dir)
    assert raw.interactions.collect().rows() == [(1, 1, 8.0), (1, 2, 5.0), (2, 1, 10.0)]
    assert raw.info["timestamp"] == "none" and raw.info["feedback"] == "ratings"
    assert raw.items.rows() == [("1", "Kimi no Na wa.", "Drama|Romance|School", "Movie"),
                                ("2", "Gintama°", "Action|Comedy", "TV"),
                                ("3", "No Genre", None, "OVA")]
    history = read_anime(anime_dir, feedback="history").interactions.collect()
    assert history.rows() == [(1, 1, None), (1, 2, None), (2, 1, None), (3, 3, None)]
    assert history.schema["rating"] == pl.Float32


def test_anime_extracted_files_and_errors(tmp_path: Path) -> None:
    for name, text in ANIME_MEMBERS.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert read_anime(tmp_path).interactions.collect().height == 3
    with pytest.raises(ValueError, match=r"feedback must be one of \['ratings', 'history'\]"):
        read_anime(tmp_path, feedback="likes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"lacks anime\.zip \(found: nothing\)"):
        read_anime(empty)


# ---- generic ---------------------------------------------------------------------------------
def test_generic_csv_semicolon_dates_and_padded_ids(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid;sku;when;stars;extra\n0001;A7;2021-03-04 10:00:00;5;x\n"
                    "0002;B1;2021-03-05;3;y\n")
    raw = read_table(path, user="uid", item="sku", time="when", rating="stars")
    assert raw.interactions.collect().rows() == [
        ("0001", "A7", _unix("2021-03-04T10:00:00"), 5.0),
        ("0002", "B1", _unix("2021-03-05T00:00:00"), 3.0),
    ]
    assert raw.info == {"format": "generic-csv", "source": str(path), "timestamp": "unix",
                        "columns": {"user": "uid", "item": "sku", "time": "when",
                                    "rating": "stars"}}


def test_generic_tsv_gz_integer_time(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("u\ti\tts\n1\t10\t300\n2\t10\t100\n")
    raw = read_table(path, user="u", item="i", time="ts")
    assert raw.interactions.collect().rows() == [("1", "10", 300), ("2", "10", 100)]
    assert raw.info["format"] == "generic-tsv"


def test_generic_parquet_datetime_and_side_table(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pl.DataFrame({
        "user": [7, 8],
        "item": [3, 4],
        "at": [datetime(2020, 1, 1), datetime(2020, 1, 2, 12)],
    }).write_parquet(path)
    (tmp_path / "items.jsonl").write_text('{"sku": 3, "title": "Lamp"}\n'
                                          '{"sku": 4, "title": "Desk"}\n')
    raw = read_table(path, user="user", item="item", time="at",
                     items_path=tmp_path / "items.jsonl", item_key="sku")
    assert raw.interactions.collect().rows() == [(7, 3, _unix("2020-01-01T00:00:00")),
                                                 (8, 4, _unix("2020-01-02T12:00:00"))]
    assert raw.items.rows() == [("3", "Lamp"), ("4", "Desk")]
    ds = build_dataset(raw, "tiny")
    assert ds.titles()[1:].tolist() == ["Lamp", "Desk"]


def test_generic_json_formats_with_timezones(tmp_path: Path) -> None:
    rows = '{"u": "a", "i": "x", "t": "2020-01-01T02:00:00+02:00"}'
    (tmp_path / "log.json").write_text(f"[{rows}]")
    with gzip.open(tmp_path / "log.ndjson.gz", "wt") as f:
        f.write(rows + "\n")
    for name in ("log.json", "log.ndjson.gz"):
        raw = read_table(tmp_path / name, user="u", item="i", time="t")
        assert raw.interactions.collect().rows() == [("a", "x", _unix("2020-01-01T00:00:00"))]


def test_generic_errors(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item,when\n1,2,yesterday\n")
    with pytest.raises(DataError, match=r"no column\(s\) --item 'sku'; found \['user', 'item', "
                                        r"'when'\]"):
        read_table(path, user="user", item="sku")
    with pytest.raises(DataError, match=r"values like 'yesterday'"):
        read_table(path, user="user", item="item", time="when")
    with pytest.raises(DataError, match=r"no key column 'sku'; found \['user', 'item', 'when'\]"):
        read_table(path, user="user", item="item", items_path=path, item_key="sku")
    with pytest.raises(DataError, match=r"cannot tell the format of log\.xlsx"):
        read_table(tmp_path / "log.xlsx", user="u", item="i")
    with pytest.raises(DataError, match=r"file not found"):
        read_table(tmp_path / "nope.csv", user="u", item="i")


# ---- real data -------------------------------------------------------------------------------
@pytest.mark.integration
def test_real_goodbooks_v1(shared_data) -> None:
    raw = read_goodbooks(shared_data("goodbooks-10k"))
    assert raw.info["timestamp"] == "none"
    ds = build_dataset(raw, "goodbooks-10k")
    assert ds.meta["counts_raw"] == {"interactions": 981_756, "users": 53_424, "items": 10_000,
                                     "duplicates_dropped": 2_278, "rows_without_id_dropped": 0}
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (979_478, 53_424, 10_000)
    book = ds.items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert book["title"] == "The Hunger Games (The Hunger Games, #1)"
    assert (book["authors"], book["year"]) == ("Suzanne Collins", 2008)
    assert len(book["tags"].split("|")) == 10 and "young-adult" in book["tags"]


@pytest.mark.integration
def test_real_anime(shared_data) -> None:
    ds = build_dataset(read_anime(shared_data("anime-mal-caserec")), "anime")
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (419_943, 4_714, 7_157)
    assert ds.interactions["rating"].value_counts().sort("rating")["count"].to_list() == [
        1_278, 1_702, 2_889, 6_847, 19_077, 42_433, 91_136, 108_782, 83_242, 62_557]
    kimi = ds.items.filter(pl.col("item_id") == "1723").row(0, named=True)
    assert (kimi["title"], kimi["type"]) == ("Kimi no Na wa.", "Movie")
    assert kimi["genres"] == "Drama|Romance|School|Supernatural"
    history = build_dataset(read_anime(shared_data("anime-mal-caserec"), "history"), "anime-h")
    assert (history.interactions.height, history.n_users, history.n_items) == (
        520_609, 5_000, 7_390)


@pytest.mark.integration
def test_real_generic_matches_movielens_csv(shared_data) -> None:
    folder = shared_data("ml-latest-small")
    raw = read_table(folder / "ratings.csv", user="userId", item="movieId", time="timestamp",
                     rating="rating", items_path=folder / "movies.csv", item_key="movieId")
    ds = build_dataset(raw, "ml-latest-small-generic")
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (100_836, 610, 9_724)
    assert ds.titles()[ds.item_index(["1"])].tolist() == ["Toy Story (1995)"]
