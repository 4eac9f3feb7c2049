"""goodbooks-10k reader (Zygmunt Zajac, Goodreads data, CC BY-SA 4.0).

Raw files (each ``X.csv`` may also be a ``X.csv.zip`` holding one CSV member; zips are read in
memory, never extracted):

``ratings.csv``  two releases exist, told apart by their header:
                 - 2017 v1 (``ratings_v1.csv.zip`` in the shared copy): ``book_id,user_id,rating``,
                   981,756 rows sorted by book_id, with duplicate pairs and NO time: the file
                   order means nothing (``info["timestamp"] = "none"``).
                 - the later release: ``user_id,book_id,rating``, 5,976,479 rows in time order
                   but without timestamps: the row number is kept as the sequence position
                   (``info["timestamp"] = "order"``).
``books.csv``    ``book_id,goodreads_book_id,...,authors,original_publication_year,...,title``
                 (the v1 books.csv names these ``id`` and ``book_id``; both layouts are read)
``book_tags.csv`` ``goodreads_book_id,tag_id,count``: how many users put the book on a shelf
``tags.csv``     ``tag_id,tag_name``

Items get title, authors, year and ``tags``: the book's ``_TOP_TAGS`` most used shelf names.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl

from genrec.data.formats import DataError, RawData, require_files

__all__ = ["read_goodbooks"]

_TOP_TAGS = 10
_V1 = ["book_id", "user_id", "rating"]
_TIME_ORDERED = ["user_id", "book_id", "rating"]


def read_goodbooks(raw_dir: Path) -> RawData:
    """Ratings (either release), books with authors/year and their top shelf names."""
    raw_dir = Path(raw_dir)
    ratings_path = _find(raw_dir, "ratings.csv", "ratings.csv.zip", "ratings_v1.csv.zip",
                         "ratings_v1.csv")
    ratings = _scan(ratings_path)
    columns = ratings.collect_schema().names()
    ids = pl.col("user_id").cast(pl.Int64), pl.col("book_id").cast(pl.Int64).alias("item_id")
    if columns == _TIME_ORDERED:
        interactions = ratings.with_row_index("timestamp").select(
            *ids, pl.col("timestamp").cast(pl.Int64), pl.col("rating").cast(pl.Float32))
        info = {"timestamp": "order",
                "note": "ratings.csv is in time order without timestamps; the row number is "
                        "the sequence position"}
    elif columns == _V1:
        interactions = ratings.select(*ids, pl.col("rating").cast(pl.Float32))
        info = {"timestamp": "none",
                "note": "v1 ratings (2017) are sorted by book_id and have no time: their order "
                        "is meaningless, so time-based splits (leave-one-out) are arbitrary"}
    else:
        raise DataError(f"{ratings_path} has columns {columns}; expected {_TIME_ORDERED} (current "
                        f"goodbooks-10k release) or {_V1} (2017 v1 release)")
    info = {"format": "goodbooks-10k", "source": str(ratings_path), **info}
    return RawData(interactions=interactions, items=_books(raw_dir), info=info)


def _books(raw_dir: Path) -> pl.DataFrame:
    (path,) = require_files(raw_dir, "books.csv")
    books = pl.read_csv(path, infer_schema=False)
    if "goodreads_book_id" not in books.columns and "id" in books.columns:
        books = books.rename({"book_id": "goodreads_book_id", "id": "book_id"})  # v1 layout
    wanted = ["book_id", "goodreads_book_id", "title", "authors", "original_publication_year"]
    missing = [c for c in wanted if c not in books.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; found {books.columns}")
    books = books.select(
        pl.col("book_id").alias("item_id"),
        "title",
        "authors",
        pl.col("original_publication_year").cast(pl.Float64, strict=False).cast(pl.Int32)
          .alias("year"),
        "goodreads_book_id",
    )
    tags = _shelves(raw_dir)
    if tags is not None:
        books = books.join(tags, on="goodreads_book_id", how="left", maintain_order="left")
    return books.drop("goodreads_book_id")


def _shelves(raw_dir: Path) -> pl.DataFrame | None:
    """goodreads_book_id -> "to-read|fantasy|...": top shelf names by count (ties alphabetical)."""
    try:
        book_tags_path = _find(raw_dir, "book_tags.csv", "book_tags.csv.zip")
    except DataError:
        return None
    if not (raw_dir / "tags.csv").is_file():
        return None
    names = pl.read_csv(raw_dir / "tags.csv", schema_overrides={"tag_name": pl.Utf8})
    return (
        _scan(book_tags_path)
        .select(pl.col("goodreads_book_id").cast(pl.Utf8), "tag_id", "count")
        .filter(pl.col("count") > 0)  # a few rows carry negative counts in the original
        .join(names.lazy(), on="tag_id")
        # a book can list the same tag twice: add the counts up
        .group_by("goodreads_book_id", "tag_name").agg(pl.col("count").sum())
        .sort(["goodreads_book_id", "count", "tag_name"], descending=[False, True, False])
        .group_by("goodreads_book_id", maintain_order=True)
        .agg(pl.col("tag_name").head(_TOP_TAGS).str.join("|").alias("tags"))
        .collect()
    )


def _find(raw_dir: Path, *names: str) -> Path:
    """The first of ``names`` present in ``raw_dir``; DataError listing the folder otherwise."""
    for name in names:
        if (raw_dir / name).is_file():
            return raw_dir / name
    require_files(raw_dir)  # raises when the folder itself is missing
    found = ", ".join(sorted(p.name for p in raw_dir.iterdir())[:30]) or "nothing"
    raise DataError(f"{raw_dir} has none of {', '.join(names)} (found: {found}); "
                    f"point --raw-dir at the goodbooks-10k folder")


def _scan(path: Path) -> pl.LazyFrame:
    """A CSV file scanned lazily, or the single CSV member of a zip read from memory."""
    if path.suffix != ".zip":
        return pl.scan_csv(path)
    with zipfile.ZipFile(path) as zf:
        members = [m for m in zf.namelist() if m.endswith(".csv")]
        if len(members) != 1:
            raise DataError(f"{path} should hold one CSV file; it holds {zf.namelist()}")
        return pl.read_csv(zf.read(members[0])).lazy()
