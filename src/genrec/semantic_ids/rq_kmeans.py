"""RQ-KMeans: residual k-means over item vectors (faiss), C levels of K codes each.

Level 1 clusters the vectors into K centroids; each item keeps the index of its centroid and
passes on its residual (vector minus centroid), which level 2 clusters, and so on. An item's
C indices are coarse-to-fine tokens: items that share a prefix are close in the vector space,
which is what lets a generator share statistics between similar items. TIGER (Rajput et al.,
NeurIPS 2023) learns the codebooks with an RQ-VAE (``rq_vae.py``); residual k-means is the
training-free variant, with nothing to tune but K and the seed. The reconstruction (the sum of
the chosen centroids) is scored after every level: each level subtracts its clusters' means, so
the error goes down as levels are added.

Example (Amazon Beauty, MiniLM title + category vectors):
    >>> q = rq_kmeans(vectors, levels=3, codebook_size=256, seed=0)            # doctest: +SKIP
    >>> q.codes.shape, q.relative_error                                        # doctest: +SKIP
    ((12101, 3), [0.39922, 0.33024, 0.28545])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RQResult", "rq_kmeans", "reconstruct"]


@dataclass
class RQResult:
    codes: np.ndarray              # (n, C) int64 token of each item at each level
    codebooks: list[np.ndarray]    # C arrays (K, D) float32: the centroids of each level
    relative_error: list[float]    # after level l: sum ||x - x_hat||^2 / sum ||x||^2


def reconstruct(codes: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """(n, D) sum of each item's chosen centroids."""
    return sum(book[codes[:, d]] for d, book in enumerate(codebooks))


def _kmeans(x: np.ndarray, k: int, n_iter: int, seed: int, n_redo: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(centroids (k, D), assignment (n,)) from faiss k-means, best of ``n_redo`` starts."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, seed=seed, nredo=n_redo,
                      max_points_per_centroid=100_000, verbose=False)
    km.train(x)
    _, assign = km.index.search(x, 1)
    return km.centroids.astype(np.float32), assign.ravel().astype(np.int64)


def rq_kmeans(vectors: np.ndarray, levels: int = 3, codebook_size: int = 256, n_iter: int = 20,
              seed: int = 0, n_redo: int = 1) -> RQResult:
    """Residual k-means of ``vectors`` (n, D): ``levels`` codebooks of ``codebook_size`` codes.

    Each level keeps the best of ``n_redo`` k-means starts (lowest squared error): with few,
    well-separated clusters one random start often puts two centroids in one cluster and one
    across two; with K = 256 codes over real item vectors that matters little."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"vectors must be a finite (n, D) array, got shape {x.shape}")
    if levels < 1 or codebook_size < 2:
        raise ValueError(f"need levels >= 1 and codebook_size >= 2, got {levels}, {codebook_size}")
    if len(x) < codebook_size:
        raise ValueError(f"{len(x)} vectors cannot fill a codebook of {codebook_size} codes; "
                         f"lower codebook_size (e.g. --codebook-size {max(2, len(x) // 4)})")
    total = float((x.astype(np.float64) ** 2).sum()) or 1.0
    residual, codes, books, errors = x.copy(), [], [], []
    for level in range(levels):
        centroids, assign = _kmeans(residual, codebook_size, n_iter, seed + level, n_redo)
        residual -= centroids[assign]
        codes.append(assign)
        books.append(centroids)
        errors.append(round(float((residual.astype(np.float64) ** 2).sum()) / total, 5))
    return RQResult(np.stack(codes, axis=1), books, errors)
