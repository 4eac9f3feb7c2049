"""Code tables shared by every quantiser: the dedup token and the quality report.

A quantiser (RQ-KMeans, RQ-VAE) gives each item C tokens, one per level. Items whose C tokens
coincide would share one semantic ID, so ``dedup`` appends a final token that numbers the items
of each such group 0, 1, 2... (in item order), as TIGER does: every ID then names one item, and
the last level's vocabulary is the size of the largest group.

``with_fallback`` gives items without content (no vector, or a "zero" fallback vector) an ID of
their own instead of the code of a zero vector: level 0 takes the reserved code K (one past the
codebook, which no content item uses), the other C - 1 levels the item's rank among such items
(in item order) written in base K, so the IDs are unique up to K^(C-1) such items (the dedup token
separates any beyond). They name no content cluster: a model learns them from interactions only.

``code_report`` says how good a table is: codebook utilisation per level (share of the K codes
that some item uses, and the perplexity exp(entropy) of their use), the collision rate before the
dedup token (share of items whose C tokens another item also has), and the largest group.

Example:
    >>> codes = np.array([[0, 1], [0, 1], [2, 0]])
    >>> dedup(codes).tolist()
    [[0, 1, 0], [0, 1, 1], [2, 0, 0]]
    >>> code_report(codes, [3, 2])["collision_rate"]
    0.6667
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dedup", "code_report", "with_fallback"]


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(group index of each row, size of each group) for rows with equal codes."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.ravel(), counts


def dedup(codes: np.ndarray) -> np.ndarray:
    """(n, C) codes -> (n, C + 1): a final token numbering the rows of each equal-code group."""
    codes = np.asarray(codes, dtype=np.int64)
    group, _ = _groups(codes)
    order = np.argsort(group, kind="stable")  # rows of a group together, in row order
    sorted_group = group[order]
    first = np.searchsorted(sorted_group, sorted_group)  # where each row's group starts
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - first
    return np.concatenate([codes, rank[:, None]], axis=1)


def with_fallback(codes: np.ndarray, present: np.ndarray, codebook_size: int) -> np.ndarray:
    """(n, C) codes for all n items: ``codes`` (n_present, C) for the items ``present`` (n,)
    flags, in order, and the reserved fallback tuple (K, rank in base K) for the others."""
    codes, present = np.asarray(codes, dtype=np.int64), np.asarray(present, dtype=bool)
    C = codes.shape[1]
    table = np.empty((len(present), C), dtype=np.int64)
    table[present] = codes
    rank = np.arange(int((~present).sum()))
    table[~present, 0] = codebook_size
    for level in range(1, C):  # most significant digit first, wrapping past K^(C-1)
        table[~present, level] = (rank // codebook_size ** (C - 1 - level)) % codebook_size
    return table


def code_report(codes: np.ndarray, sizes: list[int]) -> dict[str, Any]:
    """Utilisation per level, collision rate and largest group of (n, C) codes (no dedup token)."""
    codes = np.asarray(codes, dtype=np.int64)
    n, C = codes.shape
    levels = []
    for d in range(C):
        counts = np.bincount(codes[:, d], minlength=sizes[d])
        p = counts[counts > 0] / n
        levels.append({"codebook_size": int(sizes[d]), "used": int((counts > 0).sum()),
                       "utilisation": round(float((counts > 0).mean()), 4),
                       "perplexity": round(float(np.exp(-(p * np.log(p)).sum())), 2)})
    group, counts = _groups(codes)
    shared = counts[group] > 1
    return {"n_items": int(n), "levels": levels, "distinct_ids": int(len(counts)),
            "collision_rate": round(float(shared.mean()), 4),
            "max_group": int(counts.max()), "dedup_size": int(counts.max())}
