"""Pure metric functions on hand-computed ranks and lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.evaluation import metrics as M

X = M.NO_RANK
L2, L3, L4 = math.log2(2), math.log2(3), math.log2(4)


def one(fn, ranks, n_rel, k):
    return float(fn(np.array([ranks], dtype=np.int64), np.array([n_rel]), k)[0])


def test_perfect_single_target():
    for fn in M.RANK_METRICS.values():
        if fn is not M.precision_at_k:
            assert one(fn, [1], 1, 10) == 1.0
    assert one(M.precision_at_k, [1], 1, 10) == pytest.approx(0.1)


def test_target_at_rank_3():
    assert one(M.ndcg_at_k, [3], 1, 10) == pytest.approx(1 / L4)  # = 0.5
    assert one(M.mrr_at_k, [3], 1, 10) == pytest.approx(1 / 3)
    assert one(M.map_at_k, [3], 1, 10) == pytest.approx(1 / 3)   # precision@3 = 1/3, / min(10, 1)
    assert one(M.hit_at_k, [3], 1, 2) == 0.0
    assert one(M.hit_at_k, [3], 1, 3) == 1.0
    assert one(M.ndcg_at_k, [3], 1, 2) == 0.0


def test_three_relevant_worked_example():
    # relevant at ranks 1, 3, 6 (K = 5): hits at 1 and 3
    r, n = [6, 1, 3], 3
    assert one(M.hit_at_k, r, n, 5) == 1.0
    assert one(M.recall_at_k, r, n, 5) == pytest.approx(2 / 3)
    assert one(M.precision_at_k, r, n, 5) == pytest.approx(2 / 5)
    # DCG = 1/log2 2 + 1/log2 4; IDCG over min(5, 3) = 3 slots
    assert one(M.ndcg_at_k, r, n, 5) == pytest.approx((1 / L2 + 1 / L4) / (1 / L2 + 1 / L3 + 1 / L4))
    assert one(M.mrr_at_k, r, n, 5) == 1.0
    # AP: precision@1 = 1/1, precision@3 = 2/3 -> (1 + 2/3) / min(5, 3) = 5/9
    assert one(M.map_at_k, r, n, 5) == pytest.approx(5 / 9)
    # K = 2: only rank 1; IDCG over min(2, 3) = 2; AP = 1 / min(2, 3)
    assert one(M.ndcg_at_k, r, n, 2) == pytest.approx(1 / (1 + 1 / L3))
    assert one(M.map_at_k, r, n, 2) == pytest.approx(1 / 2)


def test_unranked_slots_and_padding_never_hit():
    # a masked relevant item and a padding slot hold NO_RANK; n_rel = 2 counts the masked one
    r, n = [2, X, X], 2
    assert one(M.recall_at_k, r, n, 10) == pytest.approx(1 / 2)
    assert one(M.ndcg_at_k, r, n, 10) == pytest.approx((1 / L3) / (1 + 1 / L3))
    assert one(M.map_at_k, r, n, 10) == pytest.approx((1 / 2) / 2)
    assert one(M.mrr_at_k, [X, X], 2, 10) == 0.0
    assert one(M.hit_at_k, [X], 1, 10**9) == 0.0


def test_no_relevant_items_give_nan():
    assert math.isnan(one(M.recall_at_k, [X], 0, 5))
    assert math.isnan(one(M.ndcg_at_k, [X], 0, 5))


def test_rows_are_independent():
    ranks = np.array([[1, 2], [4, X], [X, X]])
    n_rel = np.array([2, 1, 1])
    np.testing.assert_allclose(M.hit_at_k(ranks, n_rel, 3), [1, 0, 0])
    np.testing.assert_allclose(M.recall_at_k(ranks, n_rel, 4), [1, 1, 0])
    np.testing.assert_allclose(M.mrr_at_k(ranks, n_rel, 5), [1, 0.25, 0])


def test_auc_from_ranks():
    # 2 relevant among 4 non-relevant; ranks 1 and 2 -> every pair won
    assert M.auc(np.array([[1, 2]]), np.array([2]), np.array([4]))[0] == 1.0
    # ranks 5 and 6 (below all 4 negatives) -> none won
    assert M.auc(np.array([[6, 5]]), np.array([2]), np.array([4]))[0] == 0.0
    # order r n n r: first wins 2, second (rank 4, 2 non-relevant above) wins 0 -> 2 / 4
    assert M.auc(np.array([[4, 1]]), np.array([2]), np.array([2]))[0] == 0.5
    # a masked relevant item wins nothing but stays in the denominator
    assert M.auc(np.array([[1, X]]), np.array([2]), np.array([3]))[0] == 0.5
    assert math.isnan(M.auc(np.array([[1]]), np.array([1]), np.array([0]))[0])


def test_gini_and_coverage():
    assert M.gini(np.array([3, 3, 3, 3])) == 0.0
    # sorted [0, 0, 0, 5]: (2*4 - 4 - 1) * 5 / (4 * 5) = 0.75
    assert M.gini(np.array([5, 0, 0, 0])) == pytest.approx(0.75)
    # equals the mean absolute difference sum|xi - xj| / (2 n sum x)
    x = np.array([1.0, 4.0, 0.0, 2.0, 7.0])
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) * x.sum())
    assert M.gini(x) == pytest.approx(mad)
    assert math.isnan(M.gini(np.zeros(3)))
    assert M.coverage(np.array([0, 1, 2, 0])) == 0.5


def test_novelty():
    counts = np.array([0, 4, 1, 0])  # item 0 is PAD; n_users = 8
    # item 1: p = 4/8 -> 1 bit; item 2: p = 1/8 -> 3 bits; item 3 unseen -> count 1 -> 3 bits
    top = np.array([[1, 2], [3, -1], [-1, -1]])
    got = M.novelty(top, counts, 8)
    np.testing.assert_allclose(got[:2], [2.0, 3.0])
    assert math.isnan(got[2])


def test_intra_list_diversity():
    vec = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [2, 0], [0, 0]], dtype=float)
    top = np.array([
        [1, 2, -1],   # orthogonal -> distance 1
        [1, 4, -1],   # same direction, different length -> 0
        [1, 3, -1],   # opposite -> 2
        [1, 4, 2],    # pairs 0, 1, 1 -> 2/3
        [1, 5, -1],   # zero vector: cosine 0 -> 1
        [2, -1, -1],  # one item: undefined
    ])
    got = M.intra_list_diversity(top, vec)
    np.testing.assert_allclose(got[:5], [1.0, 0.0, 2.0, 2 / 3, 1.0], atol=1e-12)
    assert math.isnan(got[5])
