"""Ranking and beyond-accuracy metrics as pure numpy functions.

Rank-based metrics take the ranks of each user's relevant items and return one value per user:

    ranks  (B, R) int64, 1-based rank of each relevant item in the user's full ranking; slots that
           hold no ranked item (padding, or a relevant item that was masked) hold ``NO_RANK``,
           which is larger than any K, so such a slot is never a hit.
    n_rel  (B,) number of relevant items per user, masked ones included (the Recall denominator).

Ranks within a row must be distinct (the evaluator's pessimistic tie rule guarantees it), so the
j-th smallest rank has exactly j - 1 relevant items above it. Definitions follow RecBole
(``recbole/evaluator/metrics.py``); users with ``n_rel == 0`` get NaN.

Example:
    >>> ranks = np.array([[3, NO_RANK]])  # one user: a relevant item at rank 3, one unranked
    >>> float(ndcg_at_k(ranks, np.array([2]), 10)[0])  # (1/log2 4) / (1/log2 2 + 1/log2 3)
    0.3065735963827292
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NO_RANK",
    "hit_at_k",
    "recall_at_k",
    "precision_at_k",
    "ndcg_at_k",
    "mrr_at_k",
    "map_at_k",
    "auc",
    "RANK_METRICS",
    "gini",
    "coverage",
    "novelty",
    "intra_list_diversity",
]

NO_RANK = np.iinfo(np.int64).max


def _per_user(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float, NaN where den == 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _n_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks <= k).sum(axis=1)


# ---- accuracy @K, one value per user ----------------------------------------------------------
def hit_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """HR@K = 1 if any relevant item has rank <= K else 0."""
    return _per_user(_n_hits(ranks, k) > 0, np.minimum(n_rel, 1))


def recall_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Recall@K = #hits@K / n_rel (RecBole's definition, not divided by min(K, n_rel))."""
    return _per_user(_n_hits(ranks, k), n_rel)


def precision_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """Precision@K = #hits@K / K, also when the user has fewer than K candidates."""
    return _per_user(_n_hits(ranks, k), np.where(n_rel > 0, k, 0))


def ndcg_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K = DCG / IDCG with binary gains.

    DCG = sum over hits of 1 / log2(rank + 1); IDCG = sum_{i=1..min(K, n_rel)} 1 / log2(i + 1).
    """
    # rank clipped to K before the log: unranked slots must not feed a huge int to log2
    gains = np.where(ranks <= k, 1.0 / np.log2(np.minimum(ranks, k) + 1.0), 0.0).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    return _per_user(gains, ideal[np.minimum(k, n_rel)])


def mrr_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """MRR@K = 1 / (best rank) if the best rank <= K else 0."""
    best = np.min(ranks, axis=1, initial=NO_RANK)
    rr = np.where(best <= k, 1.0 / np.minimum(best, k), 0.0)
    return _per_user(rr, np.minimum(n_rel, 1))


def map_at_k(ranks: np.ndarray, n_rel: np.ndarray, k: int) -> np.ndarray:
    """MAP@K = sum over hits j (j-th best relevant, rank_j <= K) of j / rank_j, / min(K, n_rel).

    j / rank_j is Precision@rank_j, so this is RecBole's average precision.
    """
    ordered = np.sort(ranks, axis=1)
    j = np.arange(1, ranks.shape[1] + 1)
    ap = np.where(ordered <= k, j / np.minimum(ordered, k), 0.0).sum(axis=1)
    return _per_user(ap, np.minimum(k, n_rel))


def auc(ranks: np.ndarray, n_rel: np.ndarray, n_neg: np.ndarray) -> np.ndarray:
    """Per-user AUC over (relevant, candidate non-relevant) pairs; ties count against the model.

    n_neg (B,) is the number of unmasked non-relevant items. The j-th best relevant item at rank r
    has r - j non-relevant items above it, so it wins n_neg - (r - j) pairs. An unranked (masked)
    relevant item sits below every candidate and wins none. AUC = wins / (n_rel * n_neg); NaN when
    the user has no non-relevant candidate.
    """
    ordered = np.sort(ranks, axis=1)
    j = np.arange(1, ranks.shape[1] + 1)
    wins = np.where(ordered != NO_RANK, n_neg[:, None] - (ordered - j), 0).sum(axis=1)
    return _per_user(wins, np.asarray(n_rel) * np.asarray(n_neg))


# name -> function(ranks, n_rel, k); the evaluator reports each as "<name>@K"
RANK_METRICS = {
    "HR": hit_at_k,
    "Recall": recall_at_k,
    "Precision": precision_at_k,
    "NDCG": ndcg_at_k,
    "MRR": mrr_at_k,
    "MAP": map_at_k,
}


# ---- beyond accuracy, from top-K lists ---------------------------------------------------------
def gini(counts: np.ndarray) -> float:
    """Gini index of how often each item is recommended (0 = perfectly even, -> 1 = one item).

    With counts sorted ascending x_1..x_n: G = sum_i (2i - n - 1) x_i / (n * sum_i x_i), which
    equals the mean absolute difference sum_ij |x_i - x_j| / (2 n sum x). NaN if nothing counted.
    Pass counts over all real items, zeros included (RecBole's GiniIndex).
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def coverage(counts: np.ndarray) -> float:
    """Item coverage = #items recommended at least once / #items (counts over all real items)."""
    counts = np.asarray(counts)
    return float(np.count_nonzero(counts) / len(counts)) if len(counts) else float("nan")


def novelty(topk: np.ndarray, item_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Per-list mean self-information -log2 p(i), p(i) = train count of i / n_users.

    topk (B, K) item indices, -1 for empty slots; item_counts (n_items + 1,) train interactions
    per item. An item never seen in training gets count 1, so its novelty is finite (the maximum,
    log2 n_users). NaN for an empty list.
    """
    valid = topk >= 0
    listed = np.asarray(item_counts)[np.where(valid, topk, 0)].astype(np.float64)
    info = np.where(valid, -np.log2(np.maximum(listed, 1.0) / n_users), 0.0)
    return _per_user(info.sum(axis=1), valid.sum(axis=1))


def intra_list_diversity(topk: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Per-list mean pairwise cosine distance 1 - cos(v_a, v_b) over the list's items.

    topk (B, K) item indices, -1 for empty slots; item_vectors (n_items + 1, D). A zero vector has
    cosine 0 with everything. NaN for lists with fewer than two items. Uses
    sum_{a<b} cos_ab = (|sum_a u_a|^2 - sum_a |u_a|^2) / 2 with u the unit vectors.
    """
    valid = topk >= 0
    v = np.asarray(item_vectors)[np.where(valid, topk, 0)].astype(np.float64)  # (B, K, D)
    norm = np.linalg.norm(v, axis=2, keepdims=True)
    u = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0) * valid[..., None]
    total = u.sum(axis=1)
    sim_sum = ((total * total).sum(axis=1) - (u * u).sum(axis=(1, 2))) / 2
    n = valid.sum(axis=1)
    pairs = n * (n - 1) / 2
    return 1.0 - _per_user(sim_sum, pairs)
