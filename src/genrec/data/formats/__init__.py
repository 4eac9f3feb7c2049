"""Readers: one function per raw format, each returning a ``RawData``.

A reader only parses; filtering, id vocabularies, sorting and storage happen once, in
``genrec.data.ingest``. Contract of ``RawData.interactions`` (a polars LazyFrame, so tens of
millions of rows stream):

    user_id   Utf8 or integer   raw user id (integers stay integers: 32M ids need no strings)
    item_id   Utf8 or integer   raw item id
    timestamp Int64    unix seconds, or a position in the user's sequence; null when unknown
    rating    Float32  null for implicit feedback
    split     Utf8     optional: "train"/"test" when the source fixes the split (LightGCN files)
    ...       extra columns are kept

Rows must come in raw-file order: ingest numbers them and uses that number to break
timestamp ties. ``items``/``users`` are small eager frames keyed by ``item_id``/``user_id``
(strings), with text columns (title, genres, tags, categories, description ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from genrec.data.dataset import DataError

__all__ = ["RawData", "require_files", "DataError"]


@dataclass
class RawData:
    interactions: pl.LazyFrame
    items: pl.DataFrame | None = None
    users: pl.DataFrame | None = None
    # what the reader knows: {"timestamp": "unix" | "order" | "none", "source": "...", ...}
    info: dict[str, Any] = field(default_factory=dict)


def require_files(raw_dir: Path, *names: str) -> list[Path]:
    """Paths of ``names`` in ``raw_dir``; one DataError listing every missing file and what is there."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(f"raw data folder not found: {raw_dir}")
    missing = [n for n in names if not (raw_dir / n).is_file()]
    if missing:
        found = sorted(p.name for p in raw_dir.iterdir())[:30]
        raise DataError(
            f"{raw_dir} lacks {', '.join(missing)} (found: {', '.join(found) or 'nothing'}); "
            f"point --raw-dir at the folder that holds them"
        )
    return [raw_dir / n for n in names]
