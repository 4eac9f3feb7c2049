"""Item retrieval through faiss: maximum inner product search of user vectors over item vectors.

Three index kinds, all on the inner product (a two-tower model with ``normalize`` makes it the
cosine):

    flat   exact brute force (faiss ``IndexFlatIP``): the default, fine up to ~1M items
    hnsw   graph search (``IndexHNSWFlat``; ``hnsw_m`` links per node, ``ef_search`` candidates
           kept while searching): sub-linear, no training, the usual choice for large catalogues
    ivf    inverted lists (``IndexIVFFlat``; ``nlist`` k-means cells, ``nprobe`` searched): needs
           a training pass over the vectors, cheapest memory beside flat

``search`` returns item ids (not faiss positions), best first (tied scores: the smaller id
first, as in the reference), and can exclude items per query (a user's history): it
over-fetches by the most excluded items of any query in the call and filters, so an excluded
item never costs a result slot. ``exact_search`` is the brute-force
reference (numpy, chunked) and ``recall_at_k`` measures how much of it an index returns.

Saved as a directory: ``index.faiss`` (faiss.write_index), ``ids.npy`` and ``index.json`` (the
config, dimension and size).

Example:
    >>> idx = ItemIndex.build(np.eye(4, dtype=np.float32), np.array([1, 2, 3, 4]))
    >>> scores, ids = idx.search(np.array([[0.0, 1.0, 0.2, 0.0]], dtype=np.float32), k=2)
    >>> ids.tolist()
    [[2, 3]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from genrec.config import from_dict, to_dict
from genrec.data.dataset import DataError

__all__ = ["KINDS", "IndexConfig", "ItemIndex", "exact_search", "recall_at_k"]

KINDS = ("flat", "hnsw", "ivf")
_MAX_CELLS = 1 << 23  # queries x items per brute-force chunk (~32 MB of float32 scores)


@dataclass
class IndexConfig:
    kind: str = "flat"         # flat | hnsw | ivf
    hnsw_m: int = 32           # hnsw: graph links per node (memory ~ 2 * m ints per item)
    ef_construction: int = 200  # hnsw: candidates kept while building (better graph, slower build)
    ef_search: int = 128       # hnsw: candidates kept while searching (raised to k when smaller)
    nlist: int = 0             # ivf: k-means cells; 0 = 4 * sqrt(n), at most n / 39
    nprobe: int = 16           # ivf: cells searched per query
    threads: int = 0           # faiss OpenMP threads; 0 = leave faiss's default

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if min(self.hnsw_m, self.ef_construction, self.ef_search, self.nprobe) < 1 or \
                min(self.nlist, self.threads) < 0:
            raise ValueError(f"index: hnsw_m, ef_construction, ef_search, nprobe must be >= 1 "
                             f"and nlist, threads >= 0, got {self}")


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"{what} must be a 2-d (rows, {dim or 'D'}) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what} contain NaN/inf; check the model that produced them")
    return x


def _n_lists(cfg: IndexConfig, n: int) -> int:
    # faiss wants >= 39 training points per cell; 4 sqrt(n) is its rule of thumb for the count
    return cfg.nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))


def _excluded(exclude: sp.csr_matrix | None, ids: np.ndarray) -> np.ndarray:
    """(B, K) bool: ids[b, j] is in row b of ``exclude`` (ids < 0 are empty slots: True)."""
    empty = ids < 0
    if exclude is None or exclude.nnz == 0:
        return empty
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    cols = np.where(empty, 0, ids).ravel()
    cols = np.minimum(cols, exclude.shape[1] - 1)  # ids past the matrix cannot be excluded
    hit = np.asarray(exclude[rows, cols]).ravel().reshape(ids.shape) != 0
    return hit | empty


def _first_k(scores: np.ndarray, ids: np.ndarray, drop: np.ndarray, k: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first ``k`` entries not dropped, in order; padded with (-inf, -1)."""
    keep = ~drop
    slot = np.cumsum(keep, axis=1) - 1  # where a kept entry lands
    take = keep & (slot < k)
    out_s = np.full((len(ids), k), -np.inf, dtype=np.float32)
    out_i = np.full((len(ids), k), -1, dtype=np.int64)
    r, c = np.nonzero(take)
    out_s[r, slot[r, c]] = scores[r, c]
    out_i[r, slot[r, c]] = ids[r, c]
    return out_s, out_i


def _row_counts(exclude: sp.csr_matrix | None, n_queries: int) -> int:
    if exclude is None:
        return 0
    if exclude.shape[0] != n_queries:
        raise ValueError(f"exclude has {exclude.shape[0]} rows for {n_queries} queries; pass "
                         f"one row of items to exclude per query (e.g. history[users])")
    return int(np.diff(exclude.indptr).max(initial=0))


class ItemIndex:
    """A faiss inner-product index over item vectors, answering with item ids."""

    def __init__(self, index: faiss.Index, ids: np.ndarray, config: IndexConfig) -> None:
        self.index, self.ids, self.config = index, np.asarray(ids, dtype=np.int64), config

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray | None = None,
              config: IndexConfig | None = None) -> "ItemIndex":
        """Index ``vectors`` (M, D); ``ids`` (M,) are what searches return (default 0..M-1)."""
        cfg = config or IndexConfig()
        cfg.validate()
        x = _as_matrix(vectors, "item vectors")
        ids = np.arange(len(x)) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"ids must be one per vector, shape ({len(x)},), got {ids.shape}")
        if len(x) == 0:
            raise DataError("no item vectors to index; the catalogue is empty")
        if cfg.threads:
            faiss.omp_set_num_threads(cfg.threads)
        n, d = x.shape
        if cfg.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif cfg.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = cfg.ef_construction
        else:
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, _n_lists(cfg, n), faiss.METRIC_INNER_PRODUCT)
            index.train(x)
            index.nprobe = min(cfg.nprobe, index.nlist)
        index.add(x)
        return cls(index, ids, cfg)

    def search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (B, k) float32, ids (B, k) int64)`` best first; -1 / -inf fill empty slots.

        ``exclude``: CSR with one row per query whose non-zero columns are ids never returned.
        """
        q = _as_matrix(queries, "query vectors", self.dim)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if self.config.threads:
            faiss.omp_set_num_threads(self.config.threads)
        fetch = min(k + _row_counts(exclude, len(q)), len(self))
        # search-time knobs are read from the config on every call, so tuning one is a field
        # assignment (index.config.ef_search = 256) with no rebuild
        if self.config.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.config.ef_search, fetch)
        elif self.config.kind == "ivf":
            self.index.nprobe = min(self.config.nprobe, self.index.nlist)
        scores, pos = self.index.search(q, fetch)
        ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)
        # faiss orders tied scores as its heap left them: the smaller id first, as exact_search
        order = np.lexsort((ids, -scores), axis=1)
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        return _first_k(scores, ids, _excluded(exclude, ids), k)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path / "index.faiss"))
        np.save(path / "ids.npy", self.ids)
        meta = {"config": to_dict(self.config), "dim": self.dim, "size": len(self)}
        (path / "index.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ItemIndex":
        path = Path(path)
        missing = [n for n in ("index.faiss", "ids.npy", "index.json") if not (path / n).is_file()]
        if missing:
            found = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
            raise DataError(f"{path} is not a saved item index (missing {', '.join(missing)}; "
                            f"found: {', '.join(found) or 'nothing'}); write one with "
                            f"ItemIndex.build(...).save(path)")
        meta = json.loads((path / "index.json").read_text())
        index = faiss.read_index(str(path / "index.faiss"))
        cfg = from_dict(IndexConfig, meta["config"])
        if cfg.kind == "ivf":
            index.nprobe = min(cfg.nprobe, index.nlist)
        return cls(index, np.load(path / "ids.npy"), cfg)


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int, ids: np.ndarray | None = None,
                 exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force reference of ``ItemIndex.search``: every inner product, exact top-k.

    Ties are broken by the smaller id. Same arguments and output as ``search``.
    """
    x = _as_matrix(vectors, "item vectors")
    q = _as_matrix(queries, "query vectors", x.shape[1])
    ids = np.arange(len(x)) if ids is None else np.asarray(ids, dtype=np.int64)
    kk = min(k, len(x))
    _row_counts(exclude, len(q))
    pos_of = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int64)
    pos_of[ids] = np.arange(len(ids))
    out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    out_i = np.full((len(q), k), -1, dtype=np.int64)
    chunk = max(1, _MAX_CELLS // max(len(x), 1))
    for lo in range(0, len(q), chunk):
        s = q[lo:lo + chunk] @ x.T  # (b, M)
        if exclude is not None:
            sub = exclude[lo:lo + chunk]
            rows = np.repeat(np.arange(len(s)), np.diff(sub.indptr))
            known = (sub.indices < len(pos_of)) & (sub.data != 0)
            cols = pos_of[sub.indices[known]]
            s[rows[known][cols >= 0], cols[cols >= 0]] = -np.inf
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
        ps = np.take_along_axis(s, part, 1)
        # argpartition picks arbitrarily among items tied with the k-th score: redo those rows
        for r in np.flatnonzero((s >= ps.min(1, keepdims=True)).sum(1) > kk):
            part[r] = np.lexsort((ids, -s[r]))[:kk]
            ps[r] = s[r, part[r]]
        order = np.lexsort((ids[part], -ps), axis=1)  # score desc, then the smaller id
        top = np.take_along_axis(part, order, 1)
        top_s = np.take_along_axis(s, top, 1)
        out_s[lo:lo + chunk, :kk] = top_s
        out_i[lo:lo + chunk, :kk] = np.where(np.isfinite(top_s), ids[top], -1)
    return out_s, out_i


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / |exact| (ids; -1 slots ignored): 1.0 = exact."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape[0] != exact.shape[0]:
        raise ValueError(f"found has {found.shape[0]} rows, exact {exact.shape[0]}: one per query")
    per_query = []
    for f, e in zip(found, exact):
        e = e[e >= 0]
        if len(e):
            per_query.append(len(np.intersect1d(f[f >= 0], e)) / len(e))
    return float(np.mean(per_query)) if per_query else float("nan")
