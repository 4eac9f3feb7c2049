"""The item vector store: ``<dataset>/item_vectors/<encoder>.parquet``, one file per encoder.

File layout (one row per item that was encoded):

    item_id   string                  the raw item id (stable across re-indexing)
    vector    fixed_size_list<float32>[D]
    fallback  string, nullable        null = encoded from the item's own content;
                                      "title" = its fields were empty, the title was encoded;
                                      "zero"  = nothing to encode (no text / no image): a zero row

The Parquet footer holds the meta as JSON under the key ``genrec.vectors``: encoder name, model
path, dim, normalized, text template, content hash (of what was encoded), counts of fallbacks,
dataset name, creation time. Files are written to a temporary sibling and renamed into place,
so readers never see half a file.

``load_vectors`` aligns a file to the dataset's ``item_idx`` by raw id and returns an
``(n_items + 1, D)`` float32 matrix with row 0 (PAD) all zeros, plus ``present``: True where the
item has a real vector. Items missing from the file and "zero" fallback rows stay zero rows with
``present`` False; consumers decide what to put there (a mean vector, a learned embedding...).

Example:
    >>> save_vectors(ds, "minilm", ["1", "2"], np.eye(2, 384), {"model_path": "..."}) # doctest: +SKIP
    >>> matrix, present, meta = load_vectors(ds, "minilm")                          # doctest: +SKIP
    >>> matrix.shape, present[0], meta["dim"]                                        # doctest: +SKIP
    ((1683, 384), False, 384)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from genrec._files import atomic_file
from genrec.data.dataset import DataError, Dataset

__all__ = ["save_vectors", "load_vectors", "read_meta", "vectors_path", "vectors_dir",
           "content_hash", "FALLBACKS"]

META_KEY = b"genrec.vectors"
FALLBACKS = (None, "title", "zero")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_LISTED = 1000  # fallback ids listed in meta; the ``fallback`` column has them all


def vectors_dir(ds_or_path: Dataset | str | Path) -> Path:
    return _dataset_dir(ds_or_path) / "item_vectors"


def vectors_path(ds_or_path: Dataset | str | Path, encoder_name: str) -> Path:
    if not _NAME.match(encoder_name):
        raise ValueError(f"encoder name {encoder_name!r} is not a safe file name; use letters, "
                         f"digits, '.', '_' and '-' (e.g. 'minilm', 'st-bge-m3')")
    return vectors_dir(ds_or_path) / f"{encoder_name}.parquet"


def content_hash(item_ids: Sequence[str], contents: Sequence[str]) -> str:
    """sha256 over (id, content) pairs in the given order: equal hashes = same inputs encoded."""
    h = hashlib.sha256()
    for i, c in zip(item_ids, contents, strict=True):
        h.update(f"{i}\0{c}\n".encode())
    return "sha256:" + h.hexdigest()


def save_vectors(ds: Dataset | str | Path, encoder_name: str, item_ids: Sequence[str],
                 vectors: np.ndarray, meta: dict[str, Any], *,
                 fallback: Sequence[str | None] | None = None) -> Path:
    """Write ``item_vectors/<encoder_name>.parquet`` atomically; returns its path.

    ``item_ids`` are raw ids of the dataset (each once); ``vectors`` is ``(len(item_ids), D)``.
    ``fallback`` (one of FALLBACKS per row) marks rows that are not the item's own content.
    """
    folder, items, name = _items_of(ds)
    path = vectors_path(folder, encoder_name)
    ids = [str(i) for i in item_ids]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids) or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be (n_ids, D) = ({len(ids)}, D>0); got {vectors.shape}")
    if not np.isfinite(vectors).all():
        bad = [ids[i] for i in np.flatnonzero(~np.isfinite(vectors).all(axis=1))[:10]]
        raise ValueError(f"vectors of items {bad} contain NaN/inf; fix the encoder input")
    if len(set(ids)) != len(ids):
        dup = pl.Series(ids).filter(pl.Series(ids).is_duplicated()).unique().to_list()[:10]
        raise ValueError(f"item ids must be unique; repeated: {dup}")
    unknown = set(ids) - set(items["item_id"].to_list())
    if unknown:
        raise DataError(f"{len(unknown)} item id(s) are not in dataset {name!r}, e.g. "
                        f"{sorted(unknown)[:10]}; keep only the dataset's items (items.parquet)")
    fallback = list(fallback) if fallback is not None else [None] * len(ids)
    if len(fallback) != len(ids) or not set(fallback) <= set(FALLBACKS):
        raise ValueError(f"fallback must give one of {FALLBACKS} per item id")

    listed = {k: [i for i, f in zip(ids, fallback) if f == k] for k in ("title", "zero")}
    meta = {
        **meta,
        "encoder": encoder_name,
        "dim": int(vectors.shape[1]),
        "n_vectors": len(ids),
        "dataset": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fallbacks": {k: len(v) for k, v in listed.items()},
        "zero_vector_items": listed["zero"][:_MAX_LISTED],
        "title_fallback_items": listed["title"][:_MAX_LISTED],
    }
    table = pa.table({
        "item_id": pa.array(ids, pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
        "fallback": pa.array(fallback, pa.string()),
    }).replace_schema_metadata({META_KEY: json.dumps(meta, default=str).encode()})

    with atomic_file(path, "wb") as fh:
        pq.write_table(table, fh)
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta dict of a vector file (reads only the footer)."""
    raw = pq.read_schema(path).metadata or {}
    if META_KEY not in raw:
        raise DataError(f"{path} is not a genrec vector file (no {META_KEY.decode()} metadata); "
                        f"write it with `genrec embed items` or save_vectors")
    return json.loads(raw[META_KEY])


def load_vectors(ds_or_path: Dataset | str | Path, encoder_name: str
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(matrix (n_items+1, D) float32, present (n_items+1,) bool, meta)`` aligned to item_idx.

    Row 0 is PAD (zeros, not present). Items without a vector, and "zero" fallback rows, are
    zero rows with ``present`` False; ``meta`` adds ``n_missing`` (dataset items without a row)
    and ``n_unknown`` (rows whose item is not in the dataset, e.g. after re-filtering: ignored).
    """
    folder, items, _ = _items_of(ds_or_path)
    path = vectors_path(folder, encoder_name)
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.parquet")) if path.parent.is_dir() else []
        raise DataError(f"no {encoder_name!r} vectors for dataset {folder}: {path} does not exist "
                        f"(found: {', '.join(found) or 'none'}); run `genrec embed items "
                        f"--data {folder} --encoder ...` first")
    table = pq.read_table(path)
    meta = read_meta(path)
    dim = int(meta["dim"])
    ids = table.column("item_id").to_pylist()
    vectors = (table.column("vector").combine_chunks().flatten().to_numpy()
               .astype(np.float32, copy=False).reshape(len(ids), dim))
    fallback = table.column("fallback").to_pylist()

    lookup = dict(zip(items["item_id"].to_list(), items["item_idx"].to_list()))
    rows = np.array([lookup.get(i, -1) for i in ids], dtype=np.int64)
    known = rows >= 0
    matrix = np.zeros((items.height + 1, dim), dtype=np.float32)
    present = np.zeros(items.height + 1, dtype=bool)
    matrix[rows[known]] = vectors[known]
    present[rows[known]] = [f != "zero" for f, k in zip(fallback, known) if k]
    meta = {**meta, "path": str(path), "n_unknown": int((~known).sum()),
            "n_missing": int(items.height - known.sum())}
    return matrix, present, meta


def _items_of(ds_or_path: Dataset | str | Path) -> tuple[Path, pl.DataFrame, str]:
    """(dataset dir, items frame with item_idx/item_id, name) without reading interactions."""
    folder = _dataset_dir(ds_or_path)
    if isinstance(ds_or_path, Dataset):
        return folder, ds_or_path.items, ds_or_path.name
    meta_file = folder / "meta.json"
    name = json.loads(meta_file.read_text()).get("name", folder.name) if meta_file.is_file() \
        else folder.name
    return folder, pl.read_parquet(folder / "items.parquet", columns=["item_idx", "item_id"]), name


def _dataset_dir(ds_or_path: Dataset | str | Path) -> Path:
    if isinstance(ds_or_path, Dataset):
        if ds_or_path.path is None:
            raise DataError(f"dataset {ds_or_path.name!r} has not been saved; vectors live "
                            f"beside a saved dataset: call ds.save(path) first")
        return Path(ds_or_path.path)
    folder = Path(ds_or_path).expanduser()
    if not (folder / "items.parquet").is_file():
        raise DataError(f"{folder} is not a prepared genrec dataset (no items.parquet); pass the "
                        f"dataset directory or run `genrec data prepare NAME` first")
    return folder
