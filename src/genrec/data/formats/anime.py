"""MyAnimeList 5,000-user subset (Kaggle "Anime Recommendations Database", re-sampled and
re-numbered by Arthur Fortes for CaseRecommender).

Raw files: ``anime.zip`` with a folder ``anime/`` (or the same files already extracted, in the
raw folder or in ``anime/`` under it), each a tab-separated table with a header line:

``anime_ratings.dat``  ``User_ID  Anime_ID  Feedback``  explicit ratings 1..10 (419,943 rows)
``anime_history.dat``  ``User_ID  Anime_ID  Feedback``  Feedback always 1: on the user's
                                                        completed list (520,609 rows)
``anime_info.dat``     ``anime_ids  name  genre  type  episodes  rating  members`` (genre is
                       "Drama, Romance"; ids are the subset's own, not MyAnimeList's)

There are no timestamps, so the file order is the only order (``info["timestamp"] = "none"``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl

from genrec.data.formats import DataError, RawData, require_files

__all__ = ["read_anime"]

_FEEDBACK_FILES = {"ratings": "anime_ratings.dat", "history": "anime_history.dat"}


def read_anime(raw_dir: Path, feedback: str = "ratings") -> RawData:
    """``feedback="ratings"``: explicit 1..10 ratings; ``"history"``: completed lists (implicit)."""
    if feedback not in _FEEDBACK_FILES:
        raise ValueError(f"feedback must be one of {list(_FEEDBACK_FILES)}, got {feedback!r}")
    raw_dir = Path(raw_dir)
    log = _read_tsv(raw_dir, _FEEDBACK_FILES[feedback])
    expected = ["User_ID", "Anime_ID", "Feedback"]
    if log.columns != expected:
        raise DataError(f"{_FEEDBACK_FILES[feedback]} has columns {log.columns}; expected "
                        f"{expected}")
    implicit = pl.lit(None, pl.Float32)  # history's Feedback is always 1
    rating = pl.col("Feedback").cast(pl.Float32) if feedback == "ratings" else implicit
    interactions = log.lazy().select(pl.col("User_ID").alias("user_id"),
                                     pl.col("Anime_ID").alias("item_id"), rating.alias("rating"))

    info = _read_tsv(raw_dir, "anime_info.dat")
    missing = [c for c in ("anime_ids", "name", "genre", "type") if c not in info.columns]
    if missing:
        raise DataError(f"anime_info.dat lacks column(s) {missing}; found {info.columns}")
    items = info.select(
        pl.col("anime_ids").cast(pl.Utf8).alias("item_id"),
        pl.col("name").alias("title"),
        # "Drama, Romance" -> "Drama|Romance", the separator every reader uses
        pl.col("genre").str.split(",").list.eval(pl.element().str.strip_chars())
          .list.join("|").alias("genres"),
        "type",
    )
    return RawData(interactions=interactions, items=items, info={
        "format": "anime-mal-caserec", "source": f"{raw_dir} ({_FEEDBACK_FILES[feedback]})",
        "timestamp": "none", "feedback": feedback,
    })


def _read_tsv(raw_dir: Path, name: str) -> pl.DataFrame:
    """``name`` from anime.zip (member anime/<name>) or from an extracted copy."""
    # free-text titles: a quote character must never open a quoted (multi-field) value
    options = {"separator": "\t", "quote_char": None}
    for path in (raw_dir / name, raw_dir / "anime" / name):
        if path.is_file():
            return pl.read_csv(path, **options)
    (zip_path,) = require_files(raw_dir, "anime.zip")
    with zipfile.ZipFile(zip_path) as zf:
        member = f"anime/{name}"
        if member not in zf.namelist():
            raise DataError(f"{zip_path} lacks {member} (holds {zf.namelist()}); is it the "
                            f"CaseRecommender anime.zip?")
        return pl.read_csv(zf.read(member), **options)
