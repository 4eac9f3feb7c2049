"""P6 session metrics against hand computations (genrec.evaluation.session)."""

import math

import numpy as np
import pytest

from genrec.evaluation.session import (first_item_hit, session_metrics, session_ndcg,
                                       session_recall)

D = lambda pos: 1 / math.log2(pos + 1)  # noqa: E731  discount at 1-based position pos


def test_recall_counts_distinct_session_items_in_the_first_k():
    lists = np.array([[5, 1, 9, 2], [7, 8, -1, -1], [1, 2, 3, 4]])
    sessions = np.array([[1, 2, 3], [8, 8, 0], [0, 0, 0]])
    got = session_recall(lists, sessions, 2)
    assert got[0] == pytest.approx(1 / 3)       # item 1 in the first two of {1, 2, 3}
    assert got[1] == pytest.approx(1.0)         # {8}: a repeated item counts once
    assert math.isnan(got[2])                   # no session: undefined


def test_ndcg_rewards_the_session_in_its_order():
    sessions = np.array([[4, 6, 0]] * 4)       # relevance: 4 -> 2, 6 -> 1
    lists = np.array([[4, 6, 1], [6, 4, 1], [1, 4, 6], [1, 2, 3]])
    ideal = 2 * D(1) + 1 * D(2)
    got = session_ndcg(lists, sessions, 3)
    assert got[0] == pytest.approx(1.0)
    assert got[1] == pytest.approx((1 * D(1) + 2 * D(2)) / ideal)
    assert got[2] == pytest.approx((2 * D(2) + 1 * D(3)) / ideal)
    assert got[3] == 0.0
    assert 1.0 > got[1] > got[2] > 0.0


def test_ndcg_of_a_list_shorter_than_k():
    got = session_ndcg(np.array([[3]]), np.array([[3, 5]]), 5)
    assert got[0] == pytest.approx(2 * D(1) / (2 * D(1) + 1 * D(2)))


def test_first_item_hit_looks_only_for_the_first_session_item():
    lists = np.array([[2, 9], [9, 1]])
    sessions = np.array([[1, 2], [1, 2]])
    assert first_item_hit(lists, sessions, 2).tolist() == [0.0, 1.0]


def test_session_metrics_means_novelty_diversity_and_coverage():
    counts = np.array([0, 4, 2, 1, 1], dtype=float)  # training users per item, 4 users
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [-1, 0]], dtype=float)
    lists = np.array([[1, 2], [1, 3], [4, 3]])
    sessions = np.array([[2, 0], [4, 1], [0, 0]])   # the last user has no session: left out
    m = session_metrics(lists, sessions, counts, n_users=4, item_vectors=vectors, ks=(2,))
    assert m["n_sessions"] == 2
    assert m["Recall@2"] == pytest.approx((1 + 1 / 2) / 2)  # {2} found; {4, 1}: 1 found
    assert m["HR@2"] == pytest.approx((1 + 0) / 2)  # first items: 2 listed, 4 not
    nov = [(-math.log2(4 / 4) - math.log2(2 / 4)) / 2, (-math.log2(4 / 4) - math.log2(1 / 4)) / 2]
    assert m["novelty@2"] == pytest.approx(np.mean(nov))
    assert m["ILD@2"] == pytest.approx(np.mean([1 - 0, 1 - 1]))  # orthogonal; identical directions
    assert m["coverage@2"] == pytest.approx(3 / 4)  # items 1, 2, 3 of 4 (user 2 left out)
    assert "ILD@2" not in session_metrics(lists, sessions, counts, 4, ks=(2,))


def test_the_default_cut_offs_are_p6s():
    m = session_metrics(np.array([[1, 2]]), np.array([[1, 0]]), np.ones(3), 1)
    assert {"Recall@20", "NDCG@5", "HR@10", "novelty@10", "coverage@10"} <= set(m)


def test_session_rewards_add_accuracy_diversity_and_scaled_novelty():
    from genrec.evaluation.session import session_rewards

    counts = np.array([0, 4, 2, 1, 1], dtype=float)  # 4 users
    vectors = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [-1, 0]], dtype=float)
    samples = np.array([[[1, 2], [1, 3], [4, -1]]])  # one user, three sampled sessions
    truth = np.array([[2, 4]])
    got = session_rewards(samples, truth, counts, 4, vectors, lam=0.5, mu=1.0)
    nov = lambda *c: np.mean([-math.log2(x / 4) for x in c]) / 2  # noqa: E731  log2(4) = 2
    want = [0.5 + 0.5 * 1 + nov(4, 2), 0.0 + 0.5 * 0 + nov(4, 1), 0.5 + 0.5 * 0 + nov(1)]
    np.testing.assert_allclose(got[0], want)
    with pytest.raises(ValueError, match="content vectors"):
        session_rewards(samples, truth, counts, 4, None, lam=0.5)
