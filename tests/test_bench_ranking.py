"""The MMoE study's rows (benchmarks/bench_ranking.py two_task_candidates) on a hand-made log: the
cut, the two labels, negatives the user never rated, users without a past left out."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_ranking

    return bench_ranking


def test_two_task_candidates_by_hand(bench):
    # user 0: 5 ratings at t = 1..5 -> cut at position floor(5 * .8) = 4 (t = 5): item 5 (rating 4)
    # user 1: t = 1, 2, 2, 2, 3: the cut at position 4 is t = 3, item 9 (rating 2)
    # user 2: everything in one second: no past, left out
    rows = [(0, 1, 1, 5), (0, 2, 2, 3), (0, 3, 3, 4), (0, 4, 4, 1), (0, 5, 5, 4),
            (1, 6, 1, 5), (1, 7, 2, 5), (1, 8, 2, 5), (1, 1, 2, 5), (1, 9, 3, 2),
            (2, 2, 7, 5), (2, 3, 7, 5)]
    log = pl.DataFrame(rows, schema=["user_idx", "item_idx", "timestamp", "rating"], orient="row")
    c = bench.two_task_candidates(log, n_items=10, future=0.2, n_neg=2, seed=0)
    rated = c.filter(pl.col("label") == 1)
    assert rated.select("user_idx", "item_idx", "t", "liked").rows() == [(0, 5, 5, 1),
                                                                         (1, 9, 3, 0)]
    neg = c.filter(pl.col("label") == 0)
    assert neg.group_by("user_idx").len().sort("user_idx").rows() == [(0, 2), (1, 2)]
    seen = {0: {1, 2, 3, 4, 5}, 1: {6, 7, 8, 1, 9}}
    for u, i, t, liked in neg.select("user_idx", "item_idx", "t", "liked").rows():
        assert i not in seen[u] and i > 0 and liked == 0 and t == {0: 5, 1: 3}[u]
    assert 10 not in neg["item_idx"].to_list()  # never rated by anyone: probability 0
