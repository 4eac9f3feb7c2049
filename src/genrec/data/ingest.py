"""RawData -> Dataset: dedup, rating threshold, iterative k-core, id vocabularies, sort, store.

This is the one place where filtering happens, for every format. Raw ids become dense indices
(users 0..U-1, items 1..N with 0 = PAD) assigned in sorted raw-id order (numeric ids sort as
numbers), so the same raw file always gives the same indices. Rows are sorted by
(user_idx, timestamp, raw-file order); that order is the tie-break every split relies on.

Example:
    >>> from genrec.data.formats.generic import read_table        # doctest: +SKIP
    >>> ds = build_dataset(read_table("log.csv", user="uid", item="sku"), "shop", min_user=5)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from genrec import __version__
from genrec.data.dataset import DataError, Dataset
from genrec.data.formats import RawData

__all__ = ["Filters", "build_dataset", "kcore_mask", "sorted_vocab"]


@dataclass(frozen=True)
class Filters:
    """What to drop before indexing. Defaults keep everything except exact duplicates."""

    min_user: int = 0  # iterative k-core: users with fewer interactions are removed
    min_item: int = 0  # ... and items with fewer, repeated until both hold
    rating_threshold: float | None = None  # keep rating >= threshold (explicit data only)
    dedup: bool = True  # keep the first (earliest) of repeated (user, item) pairs

    def suffix(self) -> str:
        """A name suffix for non-default filters, so differently filtered copies never collide."""
        parts = []
        if self.rating_threshold is not None:
            parts.append(f"r{self.rating_threshold:g}")
        if self.min_user or self.min_item:
            parts.append(f"u{self.min_user}i{self.min_item}")
        if not self.dedup:
            parts.append("dups")
        return ("@" + "-".join(parts)) if parts else ""


def kcore_mask(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of rows that survive iterative k-core filtering (integer codes in)."""
    keep = np.ones(len(users), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    n_u, n_i = int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1
    while True:
        u_cnt = np.bincount(users[keep], minlength=n_u)
        i_cnt = np.bincount(items[keep], minlength=n_i)
        new = keep & (u_cnt[users] >= min_user) & (i_cnt[items] >= min_item)
        if new.sum() == keep.sum():
            return new
        keep = new


def sorted_vocab(values: pl.Series) -> pl.Series:
    """Unique raw ids in a stable order: numerically when every id is an integer."""
    uniq = values.unique()
    if uniq.dtype.is_integer():
        return uniq.sort()
    as_int = uniq.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return uniq.gather(as_int.arg_sort())
    return uniq.sort()


def _codes(column: pl.Series, vocab: pl.Series, start: int) -> np.ndarray:
    table = pl.DataFrame({"raw": vocab, "code": np.arange(start, start + len(vocab), dtype=np.int32)})
    return (
        pl.DataFrame({"raw": column}).join(table, on="raw", how="left", maintain_order="left")
        ["code"].to_numpy()
    )


def _check_columns(lf: pl.LazyFrame) -> pl.Schema:
    schema = lf.collect_schema()
    missing = [c for c in ("user_id", "item_id") if c not in schema]
    if missing:
        raise DataError(
            f"interactions lack column(s) {missing}; found {list(schema.names())}. "
            f"Map your columns with --user/--item/--time/--rating (generic format)"
        )
    return schema


def build_dataset(raw: RawData, name: str, filters: Filters = Filters(), source: str = "") -> Dataset:
    """Filter, index, sort and package ``raw`` as a Dataset (not yet written to disk)."""
    t0 = time.perf_counter()
    schema = _check_columns(raw.interactions)
    lf = raw.interactions.with_row_index("_order")
    if "timestamp" not in schema:
        lf = lf.with_columns(pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    if "rating" not in schema:
        lf = lf.with_columns(pl.lit(None, dtype=pl.Float32).alias("rating"))
    lf = lf.with_columns(pl.col("timestamp").cast(pl.Int64), pl.col("rating").cast(pl.Float32))
    df = lf.collect(engine="streaming")
    has_ids = df["user_id"].is_not_null() & df["item_id"].is_not_null()
    n_without_id = int(df.height - has_ids.sum())
    if n_without_id:  # an empty user or item id: counted in meta.json and said by the CLI
        df = df.filter(has_ids)
    if filters.rating_threshold is not None:
        df = df.filter(pl.col("rating") >= filters.rating_threshold)
    n_raw = df.height
    if n_raw == 0:
        cause = (f"the rating threshold {filters.rating_threshold:g} removed every row"
                 if filters.rating_threshold is not None else "no row has both a user and an item")
        raise DataError(f"{name}: no interactions left after reading ({cause}); check the input "
                        f"file and filters")
    if filters.rating_threshold is not None and df["rating"].null_count() == df.height:
        raise DataError(f"{name}: a rating threshold was given but the data has no ratings")

    timestamp_kind = raw.info.get("timestamp", "unix")
    if df["timestamp"].null_count() == df.height:
        # no time at all: the file order is the only order we have
        df = df.with_columns(pl.col("_order").cast(pl.Int64).alias("timestamp"))
        timestamp_kind = "file_order"
    elif df["timestamp"].null_count():
        raise DataError(f"{name}: {df['timestamp'].null_count()} rows have no timestamp "
                        f"while others do; fill or drop them before ingesting")

    # Integer codes for raw ids (in sorted raw-id order), then one sort that fixes row order.
    user_vocab, item_vocab = sorted_vocab(df["user_id"]), sorted_vocab(df["item_id"])
    df = df.with_columns(
        pl.Series("user_idx", _codes(df["user_id"], user_vocab, 0)),
        pl.Series("item_idx", _codes(df["item_id"], item_vocab, 1)),
    ).drop("user_id", "item_id")
    df = df.sort(["user_idx", "timestamp", "_order"])

    n_dup = 0
    if filters.dedup:
        before = df.height
        # rows are sorted by (user, time, file order): the first distinct is the earliest
        df = df.filter(pl.col("item_idx").is_first_distinct().over("user_idx"))
        n_dup = before - df.height

    mask = kcore_mask(df["user_idx"].to_numpy(), df["item_idx"].to_numpy(),
                      filters.min_user, filters.min_item)
    if not mask.all():
        df = df.filter(pl.Series(mask))
    if df.height == 0:
        raise DataError(
            f"{name}: empty after filtering: {n_raw} interactions read, {n_dup} duplicates "
            f"dropped, then k-core (min_user={filters.min_user}, min_item={filters.min_item}) "
            f"removed the remaining {n_raw - n_dup}; lower the k-core thresholds"
        )

    # Re-index densely over what survived (codes keep their sorted raw-id order).
    kept_u = np.flatnonzero(np.bincount(df["user_idx"].to_numpy()))
    kept_i = np.flatnonzero(np.bincount(df["item_idx"].to_numpy()))
    remap_u = np.full(len(user_vocab), -1, dtype=np.int32)
    remap_u[kept_u] = np.arange(len(kept_u), dtype=np.int32)
    remap_i = np.full(len(item_vocab) + 1, -1, dtype=np.int32)
    remap_i[kept_i] = np.arange(1, len(kept_i) + 1, dtype=np.int32)
    df = df.with_columns(
        pl.Series("user_idx", remap_u[df["user_idx"].to_numpy()]),
        pl.Series("item_idx", remap_i[df["item_idx"].to_numpy()]),
    ).drop("_order")
    front = ["user_idx", "item_idx", "timestamp", "rating"]
    df = df.select(front + [c for c in df.columns if c not in front])

    users = pl.DataFrame({
        "user_idx": np.arange(len(kept_u), dtype=np.int32),
        "user_id": user_vocab.gather(kept_u).cast(pl.Utf8),
    })
    items = pl.DataFrame({
        "item_idx": np.arange(1, len(kept_i) + 1, dtype=np.int32),
        "item_id": item_vocab.gather(kept_i - 1).cast(pl.Utf8),
    })
    users = _attach(users, raw.users, "user_id")
    items = _attach(items, raw.items, "item_id")

    meta = {
        "name": name,
        "source": source or raw.info.get("source", ""),
        "format": raw.info.get("format", ""),
        "timestamp": timestamp_kind,
        "filters": {"min_user": filters.min_user, "min_item": filters.min_item,
                    "rating_threshold": filters.rating_threshold, "dedup": filters.dedup},
        "counts_raw": {"interactions": n_raw, "users": len(user_vocab), "items": len(item_vocab),
                       "duplicates_dropped": n_dup, "rows_without_id_dropped": n_without_id},
        "fixed_split": "split" in df.columns,
        "genrec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ingest_seconds": round(time.perf_counter() - t0, 3),
        **{k: v for k, v in raw.info.items() if k not in ("timestamp", "source", "format")},
    }
    return Dataset(interactions=df, items=items, users=users, meta=meta)


def _attach(index: pl.DataFrame, side: pl.DataFrame | None, key: str) -> pl.DataFrame:
    """Left-join side information (titles, features) onto the kept ids."""
    if side is None or side.height == 0:
        return index
    if key not in side.columns:
        raise DataError(f"side table lacks its key column {key!r}; found {side.columns}")
    side = side.with_columns(pl.col(key).cast(pl.Utf8)).unique(subset=[key], keep="first")
    return index.join(side, on=key, how="left", maintain_order="left")
