"""Datasets of human-written text queries -> items (protocols T1 / T2, ``PROTOCOL.md``).

``read_lastfm_tags`` (preset ``lastfm-tags``): HetRec 2011 Last.fm-2k user tags on artists.
Raw files (tab-separated, header line): ``user_taggedartists.dat`` + ``user_taggedartists_2.dat``
(the complete ``userID artistID tagID day month year`` table split in two), ``tags.dat``
(``tagID tagValue``, ISO-8859-1, CRLF) and ``artists.dat`` (``id name url pictureURL``, UTF-8).
Stored as a TAG x ARTIST log: one row per distinct (tag, artist) with ``user_id`` = the tag id,
``count`` = how many users gave that tag to that artist, ``timestamp`` = the first such day
(unix seconds). Users are tags (users.parquet ``tag`` holds the text); items are the tagged
artists (``title`` = name). Items carry NO tag column on purpose: which tags may describe an
artist depends on the query split (T1 builds item text from training tags only,
``genrec.pipeline.human_queries``), so none can leak into ``genrec embed items``.

``read_tomt_books`` (preset ``tomt-books``): Reddit tip-of-the-tongue Books (Bhargav et al.,
WSDM 2022), read inside ``Books.zip``. One row per (query, book) of ``qrels.txt`` with
``user_id`` = the query id and ``split`` = train / valid / test (the authors' splits; their
"validation" is called valid here). Users are queries (users.parquet ``title`` and
``description``: what the person wrote); items are books (``title``, ``description`` from
Goodreads). A query's ``meta.replies`` (the Reddit thread, which names the answer) is never read.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import polars as pl

from genrec.data.formats import DataError, RawData, require_files

__all__ = ["read_lastfm_tags", "read_tomt_books"]

_TAGGED = ("user_taggedartists.dat", "user_taggedartists_2.dat")
_TOMT_SPLITS = {"train": "train", "validation": "valid", "test": "test"}


def _tsv(path: Path, encoding: str = "utf-8") -> pl.DataFrame:
    """A tab-separated table with a header; quotes are plain characters (artist names hold them)."""
    text = path.read_bytes().decode(encoding).replace("\r\n", "\n")
    return pl.read_csv(io.StringIO(text), separator="\t", quote_char=None,
                       infer_schema_length=0)  # all Utf8: ids are cast below


def read_lastfm_tags(raw_dir: Path) -> RawData:
    """The (tag, artist) log of HetRec Last.fm (module docstring)."""
    raw_dir = Path(raw_dir)
    paths = require_files(raw_dir, *_TAGGED, "tags.dat", "artists.dat")
    tagged = pl.concat([_tsv(p) for p in paths[:2]]).drop_nulls("userID")  # trailing blank lines
    expected = ["userID", "artistID", "tagID", "day", "month", "year"]
    if tagged.columns != expected:
        raise DataError(f"{paths[0].name} has columns {tagged.columns}; expected {expected}")
    day = pl.date(pl.col("year").cast(pl.Int32), pl.col("month").cast(pl.Int32),
                  pl.col("day").cast(pl.Int32))
    pairs = (tagged.with_columns(pl.col("tagID", "artistID").cast(pl.Int64),
                                 (day.cast(pl.Datetime("ms")).dt.epoch("s")).alias("timestamp"))
             .group_by("tagID", "artistID", maintain_order=True)
             .agg(pl.col("userID").n_unique().cast(pl.Int32).alias("count"),
                  pl.col("timestamp").min())
             .sort("tagID", "artistID"))
    tags = _tsv(paths[2], "latin-1")  # the only file that is not UTF-8
    artists = _tsv(paths[3])
    if tags.columns != ["tagID", "tagValue"] or artists.columns[:2] != ["id", "name"]:
        raise DataError(f"tags.dat / artists.dat have columns {tags.columns} / "
                        f"{artists.columns}; expected tagID tagValue / id name ...")
    interactions = pairs.lazy().select(pl.col("tagID").alias("user_id"),
                                       pl.col("artistID").alias("item_id"), "timestamp", "count")
    return RawData(
        interactions=interactions,
        items=artists.select(pl.col("id").alias("item_id"), pl.col("name").alias("title")),
        users=tags.select(pl.col("tagID").alias("user_id"), pl.col("tagValue").alias("tag")),
        info={"format": "lastfm-hetrec-tags", "source": str(raw_dir), "timestamp": "unix",
              "users_are": "tags", "count": "users who gave the tag to the artist"})


def _jsonl(zf: zipfile.ZipFile, member: str) -> list[dict]:
    if member not in zf.namelist():
        raise DataError(f"Books.zip lacks {member}; is it the tomt-data Books.zip?")
    return [json.loads(line) for line in zf.read(member).decode("utf-8").splitlines()
            if line.strip()]


def _qrels(zf: zipfile.ZipFile, member: str) -> list[tuple[str, str]]:
    """(query id, book id) of a TREC qrels file (``qid 0 docid 1``)."""
    out = []
    for line in zf.read(member).decode("utf-8").splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] != "0":
            out.append((parts[0], parts[2]))
    return out


def read_tomt_books(raw_dir: Path) -> RawData:
    """The (query, book) pairs of Reddit TOMT Books with the authors' splits (module docstring)."""
    (zip_path,) = require_files(raw_dir, "Books.zip")
    with zipfile.ZipFile(zip_path) as zf:
        docs = _jsonl(zf, "Books/documents.json")
        queries = _jsonl(zf, "Books/queries.json")
        split_of: dict[str, str] = {}
        rows: list[tuple[str, str, str]] = []
        for name, split in _TOMT_SPLITS.items():
            for qid, doc in _qrels(zf, f"Books/splits/{name}/qrels.txt"):
                if qid in split_of:
                    raise DataError(f"query {qid} is in two splits of Books.zip")
                split_of[qid] = split
                rows.append((qid, doc, split))
    interactions = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8,
                                              "split": pl.Utf8}, orient="row")
    # title + description only: meta (the Reddit replies, which name the book) is never kept
    users = pl.DataFrame({"user_id": [str(q["id"]) for q in queries],
                          "title": [q.get("title") or "" for q in queries],
                          "description": [q.get("description") or "" for q in queries]})
    items = pl.DataFrame({"item_id": [str(d["id"]) for d in docs],
                          "title": [d.get("title") or "" for d in docs],
                          "description": [d.get("text") or "" for d in docs]})
    return RawData(interactions=interactions.lazy(), items=items, users=users, info={
        "format": "reddit-tomt-books", "source": f"{zip_path}", "timestamp": "none",
        "users_are": "queries", "splits": {s: sum(r[2] == s for r in rows)
                                           for s in _TOMT_SPLITS.values()}})
