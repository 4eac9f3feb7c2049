"""Generic reader: one interaction table in any common file format, plus a column mapping.

Raw files: an interaction log with one row per event, as

    .csv .tsv .txt   delimited text with a header line (separator from ``sep``, else sniffed
                     from the header among , tab ; |), optionally gzipped (``.csv.gz``)
    .parquet         any Parquet file
    .jsonl .ndjson   one JSON object per line (optionally gzipped); ``.json`` may also be a
                     single JSON array of objects

and the names of its user, item and (optional) time and rating columns. Only the mapped
columns are kept, renamed to user_id / item_id / timestamp / rating. The time column may hold
integers (unix seconds, or any increasing number) or date/datetime values or strings
("2021-03-04", "2021-03-04T10:00:00Z"); the latter become unix seconds (naive times are read as
UTC). Text files keep ids as strings, so zero-padded ids ("0001") survive. An optional side table
of items (same formats) is keyed by ``item_key`` (default: the ``item`` column's name).

Example:
    >>> raw = read_table("log.csv", user="uid", item="sku", time="ts")   # doctest: +SKIP
    >>> build_dataset(raw, "shop", Filters(min_user=5))                  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

import polars as pl

from genrec.data.formats import DataError, RawData

__all__ = ["read_table", "FORMATS"]

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "txt", ".parquet": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_TEXT = ("csv", "tsv", "txt")
_SEPARATORS = (",", "\t", ";", "|")


def read_table(
    path: str | Path,
    user: str,
    item: str,
    time: str | None = None,
    rating: str | None = None,
    fmt: str | None = None,
    sep: str | None = None,
    items_path: str | Path | None = None,
    item_key: str | None = None,
) -> RawData:
    """Scan ``path`` lazily and rename the mapped columns to the RawData contract."""
    path = Path(path).expanduser()
    fmt = _format(path, fmt)
    roles = {"user": user, "item": item, "time": time, "rating": rating}
    wanted = {role: col for role, col in roles.items() if col is not None}
    lf = _scan(path, fmt, sep, id_columns=[user, item])
    schema = lf.collect_schema()
    missing = [f"--{role} {col!r}" for role, col in wanted.items() if col not in schema]
    if missing:
        raise DataError(f"{path} has no column(s) {', '.join(missing)}; found "
                        f"{list(schema.names())}. Map the columns with --user/--item/--time/"
                        f"--rating using these names")

    columns = [pl.col(user).alias("user_id"), pl.col(item).alias("item_id")]
    if time is not None:
        columns.append(_unix_seconds(lf, time, schema[time]).alias("timestamp"))
    if rating is not None:
        columns.append(pl.col(rating).cast(pl.Float32).alias("rating"))
    info = {"format": f"generic-{fmt}", "source": str(path),
            "timestamp": "unix" if time is not None else "none",
            "columns": dict(wanted)}

    items = None
    if items_path is not None:
        items = _side_table(Path(items_path).expanduser(), item_key or item)
    return RawData(interactions=lf.select(columns), items=items, info=info)


def _format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = "jsonl" if fmt == "ndjson" else fmt
        if fmt not in FORMATS.values():
            raise DataError(f"unknown format {fmt!r}; use one of "
                            f"{sorted(set(FORMATS.values()))}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    if not suffixes or suffixes[-1] not in FORMATS:
        raise DataError(f"cannot tell the format of {path.name} from its extension; pass "
                        f"--format with one of {sorted(set(FORMATS.values()))}")
    return FORMATS[suffixes[-1]]


def _scan(path: Path, fmt: str, sep: str | None, id_columns: list[str]) -> pl.LazyFrame:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "json" and _first_char(path) == "[":
        return pl.read_json(path).lazy()  # one JSON array cannot be streamed: read it whole
    if fmt in ("json", "jsonl"):
        return pl.scan_ndjson(path)
    sep = sep or _sniff(path, default="," if fmt == "csv" else "\t")
    header = pl.scan_csv(path, separator=sep).collect_schema()
    # ids as text: "0001" must stay "0001", and a late non-numeric id must not break the scan
    overrides = {c: pl.Utf8 for c in id_columns if c in header}
    return pl.scan_csv(path, separator=sep, schema_overrides=overrides)


def _open_text(path: Path) -> IO[str]:
    return gzip.open(path, "rt") if path.suffix.lower() == ".gz" else path.open()


def _first_char(path: Path) -> str:
    with _open_text(path) as f:
        return f.read(4096).lstrip()[:1]


def _sniff(path: Path, default: str) -> str:
    """The most frequent candidate separator in the header line."""
    with _open_text(path) as f:
        header = f.readline()
    counts = {s: header.count(s) for s in _SEPARATORS}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else default


def _unix_seconds(lf: pl.LazyFrame, column: str, dtype: pl.DataType) -> pl.Expr:
    """Expression turning ``column`` into Int64 unix seconds (integers pass through)."""
    col = pl.col(column)
    if dtype.is_integer() or dtype.is_float():
        return col.cast(pl.Int64)
    if dtype == pl.Date:
        return col.cast(pl.Datetime("us")).dt.epoch("s")
    if isinstance(dtype, pl.Datetime):
        return col.dt.epoch("s")
    if dtype != pl.Utf8:
        raise DataError(f"time column {column!r} has type {dtype}; expected integers, dates or "
                        f"date strings")
    sample = lf.select(col).head(1000).collect().to_series().drop_nulls()
    if sample.len() and sample.cast(pl.Int64, strict=False).null_count() == 0:
        return col.cast(pl.Int64, strict=False)  # numbers stored as text
    parsed = sample.str.to_datetime(strict=False, time_zone="UTC")
    if sample.len() and parsed.null_count() == sample.len():
        raise DataError(f"time column {column!r} holds values like {sample[0]!r} that are "
                        f"neither integers nor dates; convert them to unix seconds or ISO "
                        f"dates (YYYY-MM-DD HH:MM:SS)")
    # rows that fail to parse become null; ingest then names how many lack a timestamp
    return col.str.to_datetime(strict=False, time_zone="UTC").dt.epoch("s")


def _side_table(path: Path, key: str) -> pl.DataFrame:
    fmt = _format(path, None)
    lf = _scan(path, fmt, None, id_columns=[key])
    names = lf.collect_schema().names()
    if key not in names:
        raise DataError(f"items file {path} has no key column {key!r}; found {names}. Pass "
                        f"--item-key with the column that holds the item ids")
    return lf.rename({key: "item_id"}).with_columns(pl.col("item_id").cast(pl.Utf8)).collect()
