"""One recommend for every entry point: ``genrec recommend`` (CLI), the HTTP API
(``genrec.serving.bundle``) and ``recommend_all`` rank with the same code.

A ``Recommender`` is built once per run: the model kind's scorer of everything known (stage
"all"), the known interactions (never recommended back) and each item's popularity over them.
``recommend`` then serves, in this order:

- a known user: the model's scores from everything the user is known to have done. A pair model
  (BPR, LightGCN) has no trained vector for a user without training interactions; it folds in
  their known items instead (``genrec.runs.kinds.pairs``), unflagged;
- an explicit item history: the kind's ``score_history``;
- an unknown user (when the caller allows the fallback) or an empty history: the most popular
  items over every known interaction, with ``fallback = "popular"`` and the reason.

Known (or given) items and ``exclude`` are masked; ties go to the lower item index.

These are the semantics the HTTP API always had. Before they were shared, ``genrec recommend``
served a pair model's users without training interactions popularity (flagged), and unknown
users the items' training counts rather than their counts over every interaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from genrec.data.dataset import DataError
from genrec.runs.kinds import model_kind
from genrec.topk import top_k as rows_top_k

if TYPE_CHECKING:
    from genrec.runs import Run

__all__ = ["Recommendation", "Recommender", "top_k", "recommend", "recommend_all"]


@dataclass
class Recommendation:
    items: np.ndarray              # (k,) item_idx, best first
    scores: np.ndarray             # (k,) float64
    fallback: str | None = None    # "popular" when the model could not personalise
    reason: str | None = None      # why the fallback was used


def top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` finite scores outside ``mask`` and PAD, best first, ties to the lower item_idx."""
    scores = np.array(scores)  # a copy in the model's dtype: callers' arrays stay untouched
    scores[np.isnan(scores)] = -np.inf
    scores[0] = -np.inf
    scores[mask] = -np.inf
    k = min(k, len(scores) - 1)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    top = rows_top_k(torch.from_numpy(scores)[None], k)[0][0].numpy()
    top = top[top >= 0]
    top = top[np.isfinite(scores[top])]  # fewer than k candidates left: drop the masked ones
    return top.astype(np.int64), scores[top].astype(np.float64)


class Recommender:
    """What answering recommendations for ``run`` needs, built once (see the module docstring).

    Example:
        >>> r = Recommender(load_run("runs/ease_ml-100k_loo"))                  # doctest: +SKIP
        >>> r.recommend(user=0, k=5).items, r.recommend(history=np.array([1, 2])).items
    """

    # recommend(user=u) ranks user_scores([u])[0], so a caller may score several users in one
    # call and pass each its row (``scores``); a subclass that ranks otherwise sets False
    ranks_user_scores = True

    def __init__(self, run: Run) -> None:
        self.run = run
        self.kind = model_kind(run.config.model)
        self.known = run.split.known()  # users x (n_items + 1): every interaction
        self.popularity = np.asarray(self.known.sum(axis=0), dtype=np.float64).ravel()
        self.popularity[0] = 0.0
        self.score_users = self.kind.scorer(run, "all")  # users -> (B, n_items + 1)

    def seen(self, u: int) -> np.ndarray:
        """item_idx user ``u`` interacted with (a CSR row without scipy's slicing overhead)."""
        return self.known.indices[self.known.indptr[u]:self.known.indptr[u + 1]]

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        """(B, n_items + 1) float64 scores of user_idx ``users``, in one model call."""
        return torch.as_tensor(self.score_users(users)).cpu().double().numpy()

    def score_user(self, u: int) -> np.ndarray:
        """(n_items + 1,) float64 scores from everything user ``u`` is known to have done."""
        return self.user_scores(np.array([u]))[0]

    def score_history(self, items: np.ndarray) -> np.ndarray:
        """(n_items + 1,) float64 scores from an explicit item history (item_idx, oldest first)."""
        return self.kind.score_history(self.run, np.asarray(items, dtype=np.int64))

    def recommend(self, *, user: int | None = None, history: np.ndarray | None = None,
                  k: int = 10, exclude: np.ndarray | None = None,
                  unknown: str | None = None, scores: np.ndarray | None = None
                  ) -> Recommendation:
        """Top-``k`` for user_idx ``user``, else for an explicit ``history``; ``unknown``: a raw
        user id that is not in the dataset, served the most popular items (as is an empty
        history), flagged. ``scores``: ``user``'s (n_items + 1,) scores when the caller already
        has them (the server scores waiting users in one call)."""
        reason = f"unknown user {unknown!r}" if unknown is not None else None
        if reason is None and user is not None:
            scores, seen = self.score_user(user) if scores is None else scores, self.seen(user)
        elif reason is None and history is not None and len(history):
            scores, seen = self.score_history(history), history
        else:
            reason = reason or "empty history"
            scores, seen = self.popularity.astype(np.float64), np.zeros(0, dtype=np.int64)
        mask = np.concatenate([seen, exclude if exclude is not None else []]).astype(np.int64)
        top, top_scores = top_k(scores, mask, k)
        return Recommendation(top, top_scores, "popular" if reason else None, reason)


def recommend(run: Run, raw_user: str, k: int = 10, fallback: str | None = None) -> dict[str, Any]:
    """Top-``k`` unseen items for a raw user id, with titles (what ``genrec recommend`` prints).

    Unknown users raise DataError unless ``fallback="popular"``, which serves the most popular
    items and says so in the result (``"fallback": "popular"``).
    """
    ds, unknown, u = run.dataset, None, None
    try:
        u = ds.user_index(raw_user)
    except DataError:
        if fallback != "popular":
            raise
        unknown = raw_user
    rec = Recommender(run).recommend(user=u, k=k, unknown=unknown)
    titles, ids = ds.titles(), ds.item_ids
    return {
        "user": str(raw_user),
        "fallback": rec.fallback,
        "items": [{"item_id": ids[i], "title": titles[i], "score": float(s)}
                  for i, s in zip(rec.items, rec.scores)],
    }


def recommend_all(run: Run, k: int = 10, batch_users: int = 1024) -> pl.DataFrame:
    """Top-``k`` unseen items for every user: columns user_id, rank (1..k), item_id, score.

    The same ranking as ``recommend`` (history masked, ties by item index), chunked by users."""
    ds, recommender = run.dataset, Recommender(run)
    known, score_fn = recommender.known, recommender.score_users
    ids, user_ids = ds.item_ids, ds.user_ids
    parts = []
    for lo in range(0, ds.n_users, batch_users):
        users = np.arange(lo, min(lo + batch_users, ds.n_users))
        scores = torch.as_tensor(score_fn(users)).cpu().double().numpy()
        scores[np.isnan(scores)] = -np.inf
        scores[:, 0] = -np.inf
        rows = known[users]
        scores[np.repeat(np.arange(len(users)), np.diff(rows.indptr)), rows.indices] = -np.inf
        kk = min(k, scores.shape[1] - 1)
        top, top_scores = (t.numpy() for t in rows_top_k(torch.from_numpy(scores), kk))
        keep = np.isfinite(top_scores)  # masked (-inf) slots of users with few candidates
        parts.append(pl.DataFrame({
            "user_id": np.repeat(user_ids[users], kk)[keep.ravel()],
            "rank": np.tile(np.arange(1, kk + 1), len(users))[keep.ravel()],
            "item_id": ids[top].ravel()[keep.ravel()].astype(str),
            "score": top_scores.ravel()[keep.ravel()]}))
    return pl.concat(parts) if parts else pl.DataFrame(
        schema={"user_id": pl.Utf8, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64})
