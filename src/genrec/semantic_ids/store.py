"""Semantic IDs on disk: ``<dataset>/semantic_ids/<name>.parquet`` plus ``<name>.json``.

File layout (one row per item of the dataset):

    item_id   string                    the raw item id (stable across re-indexing)
    codes     fixed_size_list<int32>[T] the item's tokens: C quantiser levels + 1 dedup token

The Parquet footer holds the meta as JSON under ``genrec.semantic_ids``: method, vectors
(the item_vectors encoder name they were made from), levels, ``sizes`` (vocabulary of each of
the T levels; the last is the dedup level), seed, dataset, ``item_set_hash`` (of the dataset's
raw item ids), ``vectors_hash`` (of the item vectors quantised), ``n_fallback_ids``, creation
time and the report. The
report is also written beside it as ``<name>.json``: codebook utilisation per level, collision
rate before the dedup token, reconstruction error (relative squared error after each level for
RQ-KMeans, of the decoder for RQ-VAE) and seconds.

``build_semantic_ids`` reads item vectors from ``genrec.features.store`` (made by ``genrec embed
items``, or any vectors saved there, e.g. a trained model's item table), quantises them and
writes both files; ``load_semantic_ids`` aligns a file to the dataset's item_idx and refuses a
file whose item set is not the dataset's (another dataset, or the same one filtered or prepared
again): its IDs would name other items. Files written before the hash was stored are checked by
the hash of their own item ids.

Items without content (no vector, or a "zero" fallback vector) are not quantised as a zero
vector: each gets a reserved fallback ID (``codes.with_fallback``: level 0 = K, one past the
codebook, then its rank among them in base K), unique and shared with no content item. Level 0's
vocabulary is then K + 1. Their number is ``n_fallback_ids`` in the report and in run.json.

Example:
    >>> path, report = build_semantic_ids(ds, "minilm", "rq_kmeans")           # doctest: +SKIP
    >>> codes, sizes, meta = load_semantic_ids(ds, "minilm-rq_kmeans")          # doctest: +SKIP
    >>> codes.shape, sizes                                                      # doctest: +SKIP
    ((12102, 4), [256, 256, 256, 7])
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genrec._files import atomic_file
from genrec.data.dataset import DataError, Dataset
from genrec.semantic_ids.codes import code_report, dedup, with_fallback

__all__ = ["METHODS", "build_semantic_ids", "load_semantic_ids", "semantic_ids_for_run",
           "semantic_ids_path", "default_name", "item_set_hash", "FALLBACK"]

METHODS = ("rq_kmeans", "rq_vae")
META_KEY = b"genrec.semantic_ids"
FALLBACK = ("an item without content gets a reserved ID: level 0 = codebook_size (used by no "
            "content item), then its rank among such items in base codebook_size")

# files built before fallback IDs (no n_fallback_ids in their meta): run.json says so
_OLD_FALLBACK = ("none: built before fallback IDs, items without content were quantised as zero "
                 "vectors (n_without_vector); rebuild the file to give them reserved IDs")


def item_set_hash(item_ids) -> str:
    """A short SHA-256 of a set of raw item ids (order-free): equal exactly when two datasets,
    or a dataset and an ID file, hold the same items."""
    return hashlib.sha256("\x1f".join(sorted(str(i) for i in item_ids)).encode()).hexdigest()[:16]


def _vectors_hash(matrix: np.ndarray, present: np.ndarray) -> str:
    return hashlib.sha256(matrix.tobytes() + present.tobytes()).hexdigest()[:16]


def semantic_ids_path(ds: Dataset, name: str) -> Path:
    from genrec.features.store import vectors_path

    vectors_path(ds, name)  # the same rule for safe names (raises a clear ValueError)
    if ds.path is None:
        raise DataError(f"dataset {ds.name!r} has not been saved; semantic IDs live beside a "
                        f"saved dataset: call ds.save(path) first")
    return Path(ds.path) / "semantic_ids" / f"{name}.parquet"


def default_name(vectors: str, method: str) -> str:
    return f"{vectors}-{method}"


def build_semantic_ids(ds: Dataset, vectors: str, method: str = "rq_kmeans", *,
                       name: str | None = None, levels: int = 3, codebook_size: int = 256,
                       seed: int = 0, epochs: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Quantise ``ds``'s ``vectors`` item vectors with ``method``; write the ID file and report.

    ``epochs``: RQ-VAE training epochs (default: RQVAEConfig's). Returns (path, report).
    """
    from genrec.features.store import load_vectors

    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
    name = name or default_name(vectors, method)
    path = semantic_ids_path(ds, name)
    matrix, present, vmeta = load_vectors(ds, vectors)
    has = present[1:]  # row 0 is PAD
    if not has.any():
        raise DataError(f"no item of {ds.name} has a {vectors!r} vector (all missing or zero); "
                        f"embed the items' content first with `genrec embed items`")
    x = matrix[1:][has]  # items without content get fallback IDs (with_fallback), not k-means'
    start = time.perf_counter()
    if method == "rq_kmeans":
        from genrec.semantic_ids.rq_kmeans import rq_kmeans

        fit = rq_kmeans(x, levels, codebook_size, seed=seed)
        codes, error = fit.codes, {"relative_error_per_level": fit.relative_error}
    else:
        from genrec.semantic_ids.rq_vae import RQVAEConfig, train_rq_vae

        cfg = RQVAEConfig(levels=levels, codebook_size=codebook_size, seed=seed,
                          **({"epochs": epochs} if epochs else {}))
        fit = train_rq_vae(x, cfg)
        codes = fit.codes
        error = {"relative_error": round(fit.relative_error, 5),
                 "relative_error_at_init": round(fit.initial_error, 5),
                 "dead_codes_per_level": fit.dead_codes, "epochs": cfg.epochs}
    seconds = time.perf_counter() - start
    report = code_report(codes, [codebook_size] * levels)  # of the content items' codes
    n_fallback = int((~has).sum())
    full = dedup(with_fallback(codes, has, codebook_size))
    report["dedup_size"] = int(full[:, -1].max()) + 1
    sizes = [codebook_size + int(n_fallback > 0)] + [codebook_size] * (levels - 1) \
        + [report["dedup_size"]]
    report = {"name": name, "method": method, "vectors": vectors, "dataset": ds.name,
              "n_without_vector": n_fallback, "n_fallback_ids": n_fallback, **report,
              "n_items": ds.n_items,  # IDs for every item; utilisation/collisions: content items
              "reconstruction": error, "sizes": sizes, "seconds": round(seconds, 2)}
    meta = {**report, "levels": levels, "codebook_size": codebook_size, "seed": seed,
            "vectors_file": vmeta["path"], "item_set_hash": item_set_hash(ds.item_ids[1:]),
            "vectors_hash": _vectors_hash(matrix, present), "fallback": FALLBACK,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ids = [str(i) for i in ds.item_ids[1:]]
    table = pa.table({
        "item_id": pa.array(ids, pa.string()),
        "codes": pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1).astype(np.int32)),
                                                   full.shape[1]),
    }).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    with atomic_file(path, "wb") as fh:
        pq.write_table(table, fh)
    with atomic_file(path.with_suffix(".json")) as fh:
        fh.write(json.dumps(report, indent=2))
    return path, report


def _build_hint(ds: Dataset) -> str:
    return (f"`genrec semantic-ids build --data {ds.path or ds.name} --vectors ENCODER --method "
            f"rq_kmeans` (ENCODER: item vectors from `genrec embed items`, e.g. minilm)")


def load_semantic_ids(ds: Dataset, name: str) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """``(codes (n_items + 1, T) int64, sizes, meta)`` aligned to item_idx; row 0 (PAD) is -1."""
    folder = Path(ds.path) / "semantic_ids" if ds.path is not None else None
    found = sorted(p.stem for p in folder.glob("*.parquet")) if folder and folder.is_dir() else []
    if not name:
        raise DataError(f"no semantic IDs named: set params.semantic_ids to one of dataset "
                        f"{ds.name}'s ({', '.join(found) or 'none yet'}); make one with "
                        f"{_build_hint(ds)}, which names it <ENCODER>-rq_kmeans")
    path = semantic_ids_path(ds, name)
    if not path.is_file():
        vectors, _, method = name.rpartition("-")
        hint = (f"--vectors {vectors} --method {method}" if method in METHODS and vectors
                else "--vectors ENCODER --method rq_kmeans --name " + name)
        raise DataError(f"no semantic IDs {name!r} for dataset {ds.name}: {path} does not exist "
                        f"(found: {', '.join(found) or 'none'}); run `genrec semantic-ids build "
                        f"--data {ds.path} {hint}` first")

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DataError(f"{path} is not a genrec semantic-ID file (no {META_KEY.decode()} "
                        f"metadata); rebuild it with `genrec semantic-ids build`")
    meta = {**json.loads(raw), "path": str(path)}
    sizes = [int(s) for s in meta["sizes"]]
    ids = table.column("item_id").to_pylist()
    # the item set hashed at build time and the file's own ids (older files carry no hash)
    have = item_set_hash(ds.item_ids[1:])
    built_for = next((h for h in (meta.get("item_set_hash"), item_set_hash(ids)) if h and h != have),
                     None)
    if built_for:
        raise DataError(f"{path} was built for dataset {meta.get('dataset')!r} with another item "
                        f"set (hash {built_for}, {len(ids):,} items), not {ds.name}'s (hash "
                        f"{have}, {ds.n_items:,} items), so its IDs name other items; rebuild it "
                        f"with `genrec semantic-ids build --data {ds.path} --vectors "
                        f"{meta.get('vectors', 'ENCODER')} --method "
                        f"{meta.get('method', 'rq_kmeans')}`")
    flat = table.column("codes").combine_chunks().flatten().to_numpy().astype(np.int64)
    codes_in = flat.reshape(len(ids), len(sizes))
    row_of = {str(raw_id): idx for idx, raw_id in enumerate(ds.item_ids) if idx > 0}
    codes = np.full((ds.n_items + 1, len(sizes)), -1, dtype=np.int64)
    codes[[row_of[i] for i in ids]] = codes_in  # the same item set: every item has one row
    if len(np.unique(codes[1:], axis=0)) != ds.n_items:
        raise DataError(f"{path}: some items share a semantic ID (after filtering the dataset?); "
                        f"rebuild it with `genrec semantic-ids build`")
    return codes, sizes, meta


def semantic_ids_for_run(ds: Dataset, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``(codes, info)`` for a model run: info (name, sizes, method, vectors, path, the item-set
    and vectors hashes, ``n_fallback_ids``: items without content, see FALLBACK) goes to
    run.json, and its ``sizes`` rebuild the model on load before the codes come from weights."""
    codes, sizes, meta = load_semantic_ids(ds, name)
    return codes, {"name": name, "sizes": sizes, "method": meta.get("method"),
                   "vectors": meta.get("vectors"), "path": meta["path"],
                   "collision_rate": meta.get("collision_rate"),
                   "item_set_hash": item_set_hash(ds.item_ids[1:]),
                   "vectors_hash": meta.get("vectors_hash"),
                   "n_fallback_ids": meta.get("n_fallback_ids"),
                   "n_without_vector": meta.get("n_without_vector"),
                   "fallback": meta.get("fallback", _OLD_FALLBACK)}
