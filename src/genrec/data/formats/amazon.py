"""Amazon review data: the S3-Rec/P5/TIGER 5-core splits and the McAuley 2014 / 2023 releases.

S3-Rec split (aHuiWang/CIKM2020-S3Rec ``data/``; P5 and TIGER use the same files)::

    <stem>.txt                  one line per user: ``user item item ...``, 1-based S3-Rec ids,
                                items in time order (e.g. Beauty.txt: 22,363 lines)
    <stem>_item2attributes.json optional, {"<item id>": [attribute id, ...]}; a category-only id
                                space of its own (it does NOT match datamaps' attribute ids)
    datamaps.json               optional (P5), {"id2user": {"1": reviewerID},
                                "id2item": {"1": ASIN}, "user2id", "item2id", "attribute2id", ...}
    item_text.jsonl             optional (made for ../shared/data Beauty), one JSON per line:
                                {"item_id": S3-Rec id, "asin", "transrec_id", "title",
                                 "categories": [["Beauty", "Makeup", ...], ...]}

The timestamp is the 1-based position in the user's line (``info["timestamp"] = "order"``), so
ingest keeps each sequence exactly. With datamaps.json the raw ids are reviewerIDs and ASINs and
the side tables carry the S3-Rec number as ``s3rec_id``; without it the S3-Rec numbers are the ids.

Amazon 2014 (McAuley, jmcauley.ucsd.edu/data/amazon)::

    reviews_<Cat>_5.json.gz  one JSON object per line: reviewerID, asin, overall (1-5),
                             unixReviewTime (s), reviewText, summary, helpful, ...
    meta_<Cat>.json.gz       one Python-literal dict per line (single quotes): asin, title,
                             description, categories [[...]], brand, price, imUrl, related,
                             salesRank

Amazon Reviews 2023 (McAuley lab, amazon-reviews-2023.github.io)::

    <Cat>.jsonl[.gz]         one JSON per line: user_id, parent_asin, asin, rating, timestamp (ms),
                             title, text, helpful_vote, verified_purchase
    meta_<Cat>.jsonl[.gz]    parent_asin, title, main_category, categories [...], description [...],
                             features [...], store, price, images [{thumb, large, hi_res, variant}]

Review files are streamed line by line in chunks (only four fields of each review are kept), so a
malformed line is reported with its file and line number. Item tables get ``title``,
``categories`` (paths as "A > B > C", several joined by " | "), ``description`` and the like, with
HTML entities (``&amp;``) unescaped.

Example:
    >>> raw = read_s3rec(Path("../shared/data/amazon-beauty-5core"), "Beauty")   # doctest: +SKIP
    >>> raw.items.select("item_id", "title").head(2)                             # doctest: +SKIP
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from genrec.data.formats import DataError, RawData, require_files
from genrec.data.formats.lightgcn import read_id_lines  # same "user item item ..." line layout

__all__ = ["read_s3rec", "read_amazon2014", "read_amazon2023"]

_CHUNK = 200_000  # review rows held as Python objects before they become a polars frame
_REVIEW_SCHEMA = {"user_id": pl.Utf8, "item_id": pl.Utf8, "rating": pl.Float32,
                  "timestamp": pl.Int64}


# ---- small text helpers -------------------------------------------------------------------
def _text(value: Any) -> str | None:
    """A clean display string: HTML entities unescaped, runs of whitespace (tabs, &nbsp;) made one
    space, None for empty or missing; a list (2023 descriptions) is joined."""
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if v)
    return " ".join(html.unescape(str(value)).split()) or None


def _category_paths(value: Any) -> str | None:
    """[["Beauty", "Makeup"], ["Beauty", "Nails"]] -> "Beauty > Makeup | Beauty > Nails"."""
    if not value:
        return None
    if isinstance(value, str):
        return _text(value)
    paths = value if isinstance(value[0], list) else [value]
    joined = [" > ".join(html.unescape(str(c)) for c in path) for path in paths if path]
    return " | ".join(joined) or None


def _price(value: Any) -> float | None:
    """Prices come as numbers, "$12.99", "None" or "from 9.99"; keep what is a plain number."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip().lstrip("$").replace(",", ""))
    except ValueError:
        return None


# ---- S3-Rec / P5 split --------------------------------------------------------------------
def _map_ids(df: pl.DataFrame, col: str, mapping: dict[str, str], path: Path) -> pl.DataFrame:
    table = pl.DataFrame({col: list(mapping), "_raw": list(mapping.values())},
                         schema={col: pl.Utf8, "_raw": pl.Utf8})
    out = df.join(table, on=col, how="left", maintain_order="left")
    unknown = out.filter(pl.col("_raw").is_null())[col].unique()
    if len(unknown):
        raise DataError(f"{len(unknown)} {col} value(s) (e.g. {unknown.head(5).to_list()}) are "
                        f"not in {path}; it belongs to another split: remove it to keep the "
                        f"numeric ids, or use the datamaps.json of this split")
    return out.with_columns(pl.col("_raw").alias(col)).drop("_raw")


def _s3rec_items(raw_dir: Path, stem: str) -> pl.DataFrame | None:
    """Item side table keyed by the S3-Rec id (``item_id``, a string) from the optional files."""
    tables = []
    text_path = raw_dir / "item_text.jsonl"
    if text_path.is_file():
        rows = [{"item_id": str(rec["item_id"]), "asin": rec.get("asin"),
                 "title": _text(rec.get("title")),
                 "categories": _category_paths(rec.get("categories"))}
                for _, rec in _records(text_path, json.loads)]
        tables.append(pl.DataFrame(rows, schema={"item_id": pl.Utf8, "asin": pl.Utf8,
                                                 "title": pl.Utf8, "categories": pl.Utf8}))
    attr_path = raw_dir / f"{stem}_item2attributes.json"
    if attr_path.is_file():
        attrs = json.loads(attr_path.read_text())
        tables.append(pl.DataFrame(
            {"item_id": list(attrs), "attributes": [" ".join(map(str, a)) for a in attrs.values()]},
            schema={"item_id": pl.Utf8, "attributes": pl.Utf8}))
    if not tables:
        return None
    items = tables[0]
    for t in tables[1:]:
        items = items.join(t, on="item_id", how="full", coalesce=True, maintain_order="left")
    return items


def read_s3rec(raw_dir: Path, stem: str) -> RawData:
    """Read an S3-Rec sequence split (``<stem>.txt``) with its optional id maps and item text."""
    raw_dir = Path(raw_dir)
    (seq_path,) = require_files(raw_dir, f"{stem}.txt")
    df = read_id_lines(seq_path).rename({"position": "timestamp"}).collect()
    n_lines = df["user_id"].n_unique()
    if df.select(pl.col("timestamp") == 1).sum().item() != n_lines:
        # positions restart on every line: a user split over two lines would interleave
        raise DataError(f"{seq_path}: some user appears on more than one line; the S3-Rec "
                        f"format has exactly one line per user")

    items = _s3rec_items(raw_dir, stem)
    users = None
    maps_path = raw_dir / "datamaps.json"
    info = {
        "format": "s3rec",
        "source": f"S3-Rec/P5 split {stem}.txt of the Amazon 2014 5-core data (McAuley, UCSD)",
        "timestamp": "order",
        "ids": "S3-Rec numeric ids (no datamaps.json)",
    }
    if maps_path.is_file():
        maps = json.loads(maps_path.read_text())
        missing = [k for k in ("id2user", "id2item") if k not in maps]
        if missing:
            raise DataError(f"{maps_path} lacks {missing} (found keys {list(maps)}); use P5's "
                            f"datamaps.json for this split or remove the file")
        df = _map_ids(df, "user_id", maps["id2user"], maps_path)
        df = _map_ids(df, "item_id", maps["id2item"], maps_path)
        users = pl.DataFrame({"user_id": list(maps["id2user"].values()),
                              "s3rec_id": [int(k) for k in maps["id2user"]]})
        if items is not None:
            items = _map_ids(items.with_columns(pl.col("item_id").cast(pl.Int64).alias("s3rec_id")),
                             "item_id", maps["id2item"], maps_path)
            if "asin" in items.columns and (items["asin"] != items["item_id"]).any():
                raise DataError(f"item_text.jsonl asins disagree with {maps_path} id2item; the "
                                f"two files describe different id spaces")
        info["ids"] = "reviewerID / ASIN via datamaps.json (s3rec_id keeps the S3-Rec number)"
    if items is not None:
        items = items.drop("asin", strict=False)
        front = [c for c in ("item_id", "s3rec_id") if c in items.columns]
        items = items.select(front + [c for c in items.columns if c not in front])
        if "attributes" in items.columns:
            info["attributes"] = (f"{stem}_item2attributes.json category ids (own id space, "
                                  f"not datamaps.json attribute ids), space separated")
    df = df.with_columns(pl.lit(None, dtype=pl.Float32).alias("rating"))
    return RawData(df.select("user_id", "item_id", "timestamp", "rating").lazy(),
                   items=items, users=users, info=info)


# ---- line-delimited review and metadata files ---------------------------------------------
def _parse_literal(line: str) -> Any:
    """JSON when it parses, else a Python literal (the 2014 metadata is written with repr)."""
    try:
        return json.loads(line)
    except ValueError:
        return ast.literal_eval(line)


def _parse_line(path: Path, n: int, line: str, parse: Callable[[str], Any]) -> dict:
    try:
        rec = parse(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise DataError(f"{path}: line {n} is not a JSON/Python object "
                        f"({type(e).__name__}: {e}); fix or delete that line") from None
    if not isinstance(rec, dict):
        raise DataError(f"{path}: line {n} holds a {type(rec).__name__}, expected an object "
                        f"with the review/metadata fields")
    return rec


def _records(path: Path, parse: Callable[[str], Any]) -> Iterator[tuple[int, dict]]:
    """(line number, dict) per non-blank line of a text or .gz file; DataError on a bad line."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, _parse_line(path, n, line, parse)


def _read_reviews(path: Path, pick: Callable[[dict], tuple], needed: str) -> pl.DataFrame:
    """Stream ``path`` into (user_id, item_id, rating, timestamp), ``_CHUNK`` rows at a time."""
    frames: list[pl.DataFrame] = []
    rows: list[tuple] = []
    for n, rec in _records(path, json.loads):
        try:
            rows.append(pick(rec))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}: line {n} lacks or garbles a field ({e!r}); every review "
                            f"needs {needed}") from None
        if len(rows) >= _CHUNK:
            frames.append(pl.DataFrame(rows, schema=_REVIEW_SCHEMA, orient="row"))
            rows = []
    frames.append(pl.DataFrame(rows, schema=_REVIEW_SCHEMA, orient="row"))
    return pl.concat(frames)


def _find(raw_dir: Path, given: str | None, patterns: tuple[str, ...], what: str,
          required: bool = True) -> Path | None:
    """``given`` (relative to raw_dir), else the one match of the first pattern that hits."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(f"raw data folder not found: {raw_dir}")
    if given is not None:
        (path,) = require_files((raw_dir / given).parent, (raw_dir / given).name)
        return path
    for pattern in patterns:
        hits = sorted(p for p in raw_dir.glob(pattern) if p.is_file())
        if what == "reviews":
            hits = [p for p in hits if not p.name.startswith("meta_")]
        if len(hits) > 1:
            raise DataError(f"several {what} files in {raw_dir}: {[p.name for p in hits]}; "
                            f"pass the one to read ({what}=NAME)")
        if hits:
            return hits[0]
    if required:
        found = sorted(p.name for p in raw_dir.iterdir())[:30]
        raise DataError(f"no {what} file ({' or '.join(patterns)}) in {raw_dir} (found: "
                        f"{', '.join(found) or 'nothing'}); pass {what}=NAME")
    return None


def _read_meta(path: Path, wanted: set[str], key: str, row: Callable[[dict], dict],
               schema: dict[str, Any]) -> pl.DataFrame:
    """Item rows for the ``wanted`` ids only; lines of other items are skipped before parsing."""
    # Metadata files cover every item of a category (millions of lines, slow literal_eval);
    # a cheap regex on the id skips the items no review mentions.
    id_re = re.compile(r"""["']%s["']\s*:\s*["']([^"']+)["']""" % re.escape(key))
    rows = []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = id_re.search(line)
            if not line.strip() or (m and m.group(1) not in wanted):
                continue
            rec = _parse_line(path, n, line, _parse_literal)
            if str(rec.get(key)) in wanted:
                rows.append({"item_id": str(rec[key]), **row(rec)})
    items = pl.DataFrame(rows, schema={"item_id": pl.Utf8, **schema})
    return items.unique("item_id", keep="first", maintain_order=True)


# ---- Amazon 2014 ----------------------------------------------------------------------------
def _pick_2014(rec: dict) -> tuple:
    rating = rec.get("overall")
    return (str(rec["reviewerID"]), str(rec["asin"]),
            None if rating is None else float(rating), int(rec["unixReviewTime"]))


def _meta_2014(rec: dict) -> dict:
    return {"title": _text(rec.get("title")), "description": _text(rec.get("description")),
            "brand": _text(rec.get("brand")), "categories": _category_paths(rec.get("categories")),
            "price": _price(rec.get("price")), "image_url": rec.get("imUrl") or None}


_META_2014 = {"title": pl.Utf8, "description": pl.Utf8, "brand": pl.Utf8, "categories": pl.Utf8,
              "price": pl.Float64, "image_url": pl.Utf8}


def read_amazon2014(raw_dir: Path, reviews: str | None = None, meta: str | None = None) -> RawData:
    """Read McAuley's 2014 ``reviews_<Cat>[_5].json.gz`` and, if present, ``meta_<Cat>.json.gz``."""
    raw_dir = Path(raw_dir)
    reviews_path = _find(raw_dir, reviews, ("reviews_*_5.json.gz", "reviews_*_5.json",
                                            "reviews_*.json.gz", "reviews_*.json"), "reviews")
    meta_path = _find(raw_dir, meta, ("meta_*.json.gz", "meta_*.json"), "meta",
                      required=False)
    df = _read_reviews(reviews_path, _pick_2014, "reviewerID, asin, unixReviewTime (and overall)")
    info = {"format": "amazon2014", "timestamp": "unix",
            "source": f"Amazon product data 2014 (McAuley, UCSD): {reviews_path.name}"
                      + (f" + {meta_path.name}" if meta_path else " (no metadata file)")}
    items = None
    if meta_path is not None:
        items = _read_meta(meta_path, set(df["item_id"].unique().to_list()), "asin",
                           _meta_2014, _META_2014)
    return RawData(df.lazy(), items=items, info=info)


# ---- Amazon Reviews 2023 --------------------------------------------------------------------
def _pick_2023(rec: dict) -> tuple:
    rating = rec.get("rating")
    item = rec.get("parent_asin") or rec["asin"]
    return (str(rec["user_id"]), str(item),
            None if rating is None else float(rating), int(rec["timestamp"]) // 1000)


def _image_url(images: Any) -> str | None:
    """The MAIN image's large url (else the first image's)."""
    if not images or not isinstance(images, list):
        return None
    main = next((im for im in images if isinstance(im, dict) and im.get("variant") == "MAIN"), None)
    im = main or images[0]
    if not isinstance(im, dict):
        return None
    return im.get("large") or im.get("hi_res") or im.get("thumb") or None


def _meta_2023(rec: dict) -> dict:
    features = rec.get("features") or []
    return {"title": _text(rec.get("title")), "description": _text(rec.get("description")),
            "main_category": _text(rec.get("main_category")),
            "categories": _category_paths(rec.get("categories")),
            "features": " | ".join(_text(f) or "" for f in features) or None,
            "store": _text(rec.get("store")), "price": _price(rec.get("price")),
            "image_url": _image_url(rec.get("images"))}


_META_2023 = {"title": pl.Utf8, "description": pl.Utf8, "main_category": pl.Utf8,
              "categories": pl.Utf8, "features": pl.Utf8, "store": pl.Utf8, "price": pl.Float64,
              "image_url": pl.Utf8}


def read_amazon2023(raw_dir: Path, reviews: str | None = None, meta: str | None = None) -> RawData:
    """Read Amazon Reviews 2023 ``<Cat>.jsonl[.gz]`` and, when present, ``meta_<Cat>.jsonl[.gz]``.

    Items are ``parent_asin`` (the product, not the colour/size variant), as in the release's
    own benchmark splits; timestamps become unix seconds.
    """
    raw_dir = Path(raw_dir)
    reviews_path = _find(raw_dir, reviews, ("*.jsonl.gz", "*.jsonl"), "reviews")
    meta_path = _find(raw_dir, meta, ("meta_*.jsonl.gz", "meta_*.jsonl"), "meta",
                      required=False)
    df = _read_reviews(reviews_path, _pick_2023, "user_id, parent_asin, timestamp (and rating)")
    info = {"format": "amazon2023", "timestamp": "unix",
            "source": f"Amazon Reviews 2023 (McAuley lab): {reviews_path.name}"
                      + (f" + {meta_path.name}" if meta_path else " (no metadata file)")}
    items = None
    if meta_path is not None:
        items = _read_meta(meta_path, set(df["item_id"].unique().to_list()), "parent_asin",
                           _meta_2023, _META_2023)
    return RawData(df.lazy(), items=items, info=info)
