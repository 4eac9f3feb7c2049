"""Protocol P6 session metrics: a generated item list against the user's true next-k session.

Inputs are plain arrays, one row per user:

    lists     (B, K) int64 generated (or ranked) item indices, best / first first; -1 = empty slot
    sessions  (B, k) int64 the true session in time order; 0 (PAD) = no item (shorter sessions)

Per-user values, then means over users with a non-empty session (PROTOCOL.md, P6):

    Recall@20       |lists[:20] & session| / |session|   (session as a set; duplicates once)
    NDCG@5          the session IN ORDER: its i-th item (1-based) has graded relevance
                    k_u - i + 1 (k_u = the user's session length), gains rel / log2(pos + 1) over
                    lists[:5], divided by the DCG of the session itself in its order. Listing the
                    session in its order scores 1; the same items in another order less.
    HR@10           the session's FIRST item is in lists[:10]
    ILD@10          mean pairwise cosine distance of lists[:10] over content vectors (only with
                    ``item_vectors``; ``intra_list_diversity``)
    novelty@10      mean -log2(p(i)) over lists[:10], p(i) = training users of i / n_users
                    (``metrics.novelty``, as the full-ranking evaluator's novelty@K)
    coverage@10     distinct items in all users' lists[:10] / n_items (one value, not a mean)

Example:
    >>> m = session_metrics(np.array([[3, 1, 2]]), np.array([[1, 2]]), np.ones(4), 1, ks=(2,))
    >>> m["Recall@2"]
    0.5
"""

from __future__ import annotations

import math

import numpy as np

from genrec.evaluation import metrics as M

__all__ = ["session_recall", "session_ndcg", "first_item_hit", "session_metrics",
           "session_rewards", "P6_KS"]

P6_KS = {"recall": 20, "ndcg": 5, "hr": 10, "lists": 10}  # the cut-offs PROTOCOL.md P6 names


def _check(lists: np.ndarray, sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lists, sessions = np.asarray(lists, dtype=np.int64), np.asarray(sessions, dtype=np.int64)
    if lists.ndim != 2 or sessions.ndim != 2 or len(lists) != len(sessions):
        raise ValueError(f"lists (B, K) and sessions (B, k) must be 2-d with the same rows, got "
                         f"{lists.shape} and {sessions.shape}")
    return lists, sessions


def session_recall(lists: np.ndarray, sessions: np.ndarray, k: int) -> np.ndarray:
    """(B,) |lists[:k] & session| / |session| (distinct items); NaN for an empty session."""
    lists, sessions = _check(lists, sessions)
    out = np.full(len(lists), np.nan)
    for b, (row, sess) in enumerate(zip(lists[:, :k], sessions)):
        truth = set(sess[sess > 0].tolist())
        if truth:
            out[b] = len(truth & set(row[row >= 0].tolist())) / len(truth)
    return out


def session_ndcg(lists: np.ndarray, sessions: np.ndarray, k: int) -> np.ndarray:
    """(B,) NDCG@k of the session in order (graded relevance, see the module docstring)."""
    lists, sessions = _check(lists, sessions)
    out = np.full(len(lists), np.nan)
    discount = 1.0 / np.log2(np.arange(2, k + 2))  # position 1..k
    for b, (row, sess) in enumerate(zip(lists, sessions)):
        sess = sess[sess > 0]
        if not len(sess):
            continue
        rel: dict[int, float] = {}
        for i, item in enumerate(sess.tolist()):  # a repeated item keeps its first, higher grade
            rel.setdefault(item, float(len(sess) - i))
        gains = np.array([rel.get(int(x), 0.0) for x in row[:k]] + [0.0] * max(0, k - len(row)))
        ideal = np.sort(np.array(list(rel.values())))[::-1][:k]
        out[b] = float((gains[:k] * discount).sum() / (ideal * discount[:len(ideal)]).sum())
    return out


def first_item_hit(lists: np.ndarray, sessions: np.ndarray, k: int) -> np.ndarray:
    """(B,) 1 if the session's first item is in lists[:k], else 0; NaN for an empty session."""
    lists, sessions = _check(lists, sessions)
    first = sessions[:, 0] if sessions.shape[1] else np.zeros(len(sessions), dtype=np.int64)
    hit = (lists[:, :k] == first[:, None]).any(axis=1).astype(np.float64)
    return np.where(first > 0, hit, np.nan)


def _mean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan


def session_metrics(lists: np.ndarray, sessions: np.ndarray, item_counts: np.ndarray,
                    n_users: int, item_vectors: np.ndarray | None = None,
                    ks: tuple[int, ...] | None = None) -> dict[str, float]:
    """The P6 metrics (module docstring) averaged over users with a session.

    ``item_counts`` (n_items + 1,): training users per item (``Split.item_counts``), for novelty
    and the catalogue size; ``n_users``: all users of the split; ``item_vectors``
    (n_items + 1, C) content vectors for ILD (left out without them). ``ks`` replaces every
    cut-off by each of its values (for tiny tests); default: P6's own (``P6_KS``).
    """
    lists, sessions = _check(lists, sessions)
    has = (sessions > 0).any(axis=1)
    lists, sessions = lists[has], sessions[has]
    n_items = len(item_counts) - 1
    cuts = [P6_KS] if ks is None else [dict.fromkeys(P6_KS, k) for k in ks]
    out: dict[str, float] = {}
    for c in cuts:
        out[f"Recall@{c['recall']}"] = _mean(session_recall(lists, sessions, c["recall"]))
        out[f"NDCG@{c['ndcg']}"] = _mean(session_ndcg(lists, sessions, c["ndcg"]))
        out[f"HR@{c['hr']}"] = _mean(first_item_hit(lists, sessions, c["hr"]))
        top = lists[:, :c["lists"]]
        if item_vectors is not None:
            out[f"ILD@{c['lists']}"] = _mean(M.intra_list_diversity(top, item_vectors))
        out[f"novelty@{c['lists']}"] = _mean(M.novelty(top, item_counts, n_users))
        listed = np.unique(top[top > 0])
        out[f"coverage@{c['lists']}"] = len(listed) / n_items if n_items else math.nan
    out["n_sessions"] = float(len(sessions))
    return out


def session_rewards(samples: np.ndarray, sessions: np.ndarray, item_counts: np.ndarray,
                    n_users: int, item_vectors: np.ndarray | None = None, lam: float = 0.0,
                    mu: float = 0.0) -> np.ndarray:
    """(B, M) DPO rewards of M sampled sessions per user (``samples`` (B, M, S), -1 = empty):

        reward = Recall@S against the true continuation ``sessions`` (B, k)
                 + lam * ILD@10 (content cosine; 0 for a list of fewer than two items)
                 + mu * novelty@10 / log2(n_users)   (bits scaled to [0, 1])

    ``lam`` > 0 needs ``item_vectors``."""
    samples = np.asarray(samples, dtype=np.int64)
    B, n_samples, S = samples.shape
    if lam and item_vectors is None:
        raise ValueError("a diversity reward (lam > 0) needs content vectors; give the model a "
                         "content expert or set the diversity weight to 0")
    flat = samples.reshape(B * n_samples, S)
    truth = np.repeat(np.asarray(sessions, dtype=np.int64), n_samples, axis=0)
    reward = np.nan_to_num(session_recall(flat, truth, S))
    top = flat[:, :P6_KS["lists"]]
    if lam:
        reward += lam * np.nan_to_num(M.intra_list_diversity(top, item_vectors))
    if mu:
        reward += mu * np.nan_to_num(M.novelty(top, item_counts, n_users)) / math.log2(n_users)
    return reward.reshape(B, n_samples)
