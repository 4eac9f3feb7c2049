"""The on-disk Dataset contract: a directory of Parquet files plus ``meta.json``.

    interactions.parquet  user_idx int32, item_idx int32, timestamp int64, rating float32 (nullable),
                          optional ``split`` (train/test, when the source fixes the split), extras
    items.parquet         item_idx int32, item_id str (raw id), title, text fields, tags ...
    users.parquet         user_idx int32, user_id str (raw id), features ...
    meta.json             name, source, filters applied, counts, schema version, content_hash

Users are numbered 0..n_users-1. Items are numbered 1..n_items: index 0 is PAD, so every score
matrix has ``n_items + 1`` columns and column 0 is never recommended. Interactions are stored
sorted by (user_idx, timestamp, raw-file order): that row order is the deterministic tie-break
that every split and sequence builder relies on.

Example:
    >>> ds = Dataset.load("~/.genrec/datasets/ml-100k")        # doctest: +SKIP
    >>> ds.n_users, ds.n_items, ds.item_ids[1]                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from genrec._files import atomic_dir

__all__ = ["Dataset", "DataError", "SCHEMA_VERSION", "INTERACTION_SCHEMA", "read_meta"]

SCHEMA_VERSION = 1
INTERACTION_SCHEMA = {
    "user_idx": pl.Int32,
    "item_idx": pl.Int32,
    "timestamp": pl.Int64,
    "rating": pl.Float32,
}


class DataError(ValueError):
    """Bad or missing input data; the message names the problem and the fix."""


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta.json`` of the prepared dataset folder ``path`` (DataError when unreadable)."""
    file = Path(path).expanduser() / "meta.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{file} is not readable JSON ({e}); prepare the dataset again with "
                        f"`genrec data prepare NAME --force`") from None


@dataclass
class Dataset:
    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # ---- sizes and id maps -------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.meta.get("name", "dataset"))

    @property
    def n_users(self) -> int:
        return self.users.height

    @property
    def n_items(self) -> int:
        """Real items; score matrices have ``n_items + 1`` columns (0 = PAD)."""
        return self.items.height

    @property
    def item_ids(self) -> np.ndarray:
        """Raw item id per item_idx (index 0 = PAD -> empty string)."""
        ids = np.empty(self.n_items + 1, dtype=object)
        ids[0] = ""
        ids[self.items["item_idx"].to_numpy()] = self.items["item_id"].to_numpy()
        return ids

    @property
    def user_ids(self) -> np.ndarray:
        """Raw user id (str) per user_idx."""
        return self.users.sort("user_idx")["user_id"].cast(pl.Utf8).to_numpy()

    def user_index(self, raw_id: str) -> int:
        """user_idx of a raw user id; DataError if unknown."""
        hit = self.users.filter(pl.col("user_id") == str(raw_id))
        if hit.height == 0:
            raise DataError(
                f"unknown user {raw_id!r} in dataset {self.name!r} "
                f"({self.n_users} users, e.g. {self.users['user_id'].head(3).to_list()})"
            )
        return int(hit["user_idx"][0])

    def item_index(self, raw_ids: list[str]) -> np.ndarray:
        """item_idx for raw item ids; DataError listing every unknown id."""
        lookup = dict(zip(self.items["item_id"].to_list(), self.items["item_idx"].to_list()))
        missing = [r for r in raw_ids if str(r) not in lookup]
        if missing:
            raise DataError(f"unknown item id(s) {missing[:20]} in dataset {self.name!r}")
        return np.array([lookup[str(r)] for r in raw_ids], dtype=np.int64)

    @property
    def content_hash(self) -> str:
        """A short SHA-256 of the interactions (user, item, time, in stored order) and the raw
        ids: equal exactly when runs trained on the two datasets see the same data. Runs record
        it, so a run whose dataset was prepared again from other data is refused on load."""
        if "content_hash" in self.meta:
            return str(self.meta["content_hash"])
        h = hashlib.sha256()
        for col in ("user_idx", "item_idx", "timestamp"):
            h.update(self.interactions[col].fill_null(-1).to_numpy().tobytes())
        for ids in (self.users.sort("user_idx")["user_id"], self.items.sort("item_idx")["item_id"]):
            h.update("\x1f".join(ids.cast(pl.Utf8).to_list()).encode())
        self.meta["content_hash"] = h.hexdigest()[:16]
        return self.meta["content_hash"]

    def titles(self) -> np.ndarray:
        """Display title per item_idx (falls back to the raw id)."""
        out = self.item_ids.copy()
        if "title" in self.items.columns:
            idx = self.items["item_idx"].to_numpy()
            titles = self.items["title"].to_list()
            for i, t in zip(idx, titles):
                if t:
                    out[i] = t
        return out

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write atomically: into a temporary sibling directory, then rename into place."""
        path = Path(path).expanduser()
        with atomic_dir(path, marker="meta.json", what="dataset") as tmp:
            self.interactions.write_parquet(tmp / "interactions.parquet")
            self.items.write_parquet(tmp / "items.parquet")
            self.users.write_parquet(tmp / "users.parquet")
            meta = {**self.meta, "schema_version": SCHEMA_VERSION,
                    "content_hash": self.content_hash, "n_users": self.n_users, "n_items": self.n_items,
                    "n_interactions": self.interactions.height}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        self.path = path
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Dataset":
        path = Path(path).expanduser()
        needed = ["interactions.parquet", "items.parquet", "users.parquet", "meta.json"]
        missing = [n for n in needed if not (path / n).is_file()]
        if missing:
            raise DataError(
                f"{path} is not a prepared genrec dataset (missing {', '.join(missing)}); "
                f"run `genrec data prepare NAME` first"
            )
        meta = read_meta(path)
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise DataError(
                f"{path} has schema version {meta.get('schema_version')}, this genrec reads "
                f"{SCHEMA_VERSION}; re-run `genrec data prepare {meta.get('name', 'NAME')}`"
            )
        return cls(
            interactions=pl.read_parquet(path / "interactions.parquet"),
            items=pl.read_parquet(path / "items.parquet"),
            users=pl.read_parquet(path / "users.parquet"),
            meta=meta,
            path=path,
        )
