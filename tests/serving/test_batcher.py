"""The /recommend batcher: known users waiting at the same time share one model call and each
gets its own row; an error reaches every waiting request; a ranking chain is never batched."""

from __future__ import annotations

import asyncio

import numpy as np

from genrec.pipeline.serve import ChainRecommender
from genrec.runs.recommend import Recommender
from genrec.serving.app import UserBatcher


def test_waiting_users_share_one_model_call_and_get_their_own_rows():
    calls = []

    def user_scores(users: np.ndarray) -> np.ndarray:
        calls.append(users.tolist())
        return users[:, None] * np.array([1.0, 2.0])

    batcher = UserBatcher(user_scores)

    async def requests(users: list[int]) -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.scores(u) for u in users))

    rows = asyncio.run(requests([3, 1, 2]))
    assert calls == [[3, 1, 2]]
    assert [r.tolist() for r in rows] == [[3.0, 6.0], [1.0, 2.0], [2.0, 4.0]]
    assert asyncio.run(requests([5]))[0].tolist() == [5.0, 10.0] and calls[-1] == [5]


def test_an_error_reaches_every_waiting_request():
    def broken(users: np.ndarray) -> np.ndarray:
        raise RuntimeError("model failed")

    batcher = UserBatcher(broken)

    async def requests() -> list:
        return await asyncio.gather(*(batcher.scores(u) for u in (1, 2)), return_exceptions=True)

    errors = asyncio.run(requests())
    assert [str(e) for e in errors] == ["model failed", "model failed"]


def test_only_recommenders_that_rank_their_scores_are_batched():
    # a chain's known-user list is not the top-k of its user_scores (its first recall run)
    assert Recommender.ranks_user_scores and not ChainRecommender.ranks_user_scores
