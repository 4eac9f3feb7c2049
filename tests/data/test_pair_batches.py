"""Pair batches for BPR / LightGCN: every training pair once per epoch, seeded order, negatives
never a training item of the row's user (uniform and popularity), popularity negatives drawn in
proportion to the training counts, and clear errors for impossible requests."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from genrec.data.batches import PairBatch, n_pair_batches, pair_batches
from genrec.data.dataset import DataError
from genrec.data.splits import Split


def split_of(train: dict[int, list[int]], n_users: int, n_items: int) -> Split:
    rows = [(u, i) for u, items in train.items() for i in items]
    u, i = (list(x) for x in zip(*rows))
    frame = pl.DataFrame({"user_idx": u, "item_idx": i, "timestamp": [0] * len(u),
                          "rating": [None] * len(u)},
                         schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                 "timestamp": pl.Int64, "rating": pl.Float32})
    return Split("t", frame, frame.clear(), frame.clear(), n_users, n_items)


TRAIN = {0: [1, 2, 3], 1: [2, 5], 2: [7], 3: [1, 4, 6, 8, 9]}
N_ITEMS = 10


def epoch(split: Split, negatives: str = "uniform", seed: int = 0, e: int = 0, bs: int = 4):
    batches = list(pair_batches(split, bs, seed, e, negatives))
    cat = lambda f: torch.cat([getattr(b, f) for b in batches]).numpy()  # noqa: E731
    return batches, cat("users"), cat("pos"), cat("neg")


def test_every_training_pair_once_per_epoch_in_a_seeded_order():
    split = split_of(TRAIN, 4, N_ITEMS)
    batches, users, pos, _ = epoch(split)
    assert [len(b) for b in batches] == [4, 4, 3] and n_pair_batches(split, 4) == 3
    assert sorted(zip(users.tolist(), pos.tolist())) == sorted(
        (u, i) for u, items in TRAIN.items() for i in items)
    assert all(b.users.dtype == torch.int64 and b.neg.dtype == torch.int64 for b in batches)
    _, users2, pos2, neg2 = epoch(split)
    _, _, _, neg_again = epoch(split)
    assert np.array_equal(neg2, neg_again)  # same (seed, epoch): same triples
    _, users3, pos3, _ = epoch(split, e=1)
    assert not (np.array_equal(users2, users3) and np.array_equal(pos2, pos3))  # reshuffled


def test_duplicate_interactions_count_once():
    split = split_of({0: [1, 1, 2], 1: [3]}, 2, 4)
    _, users, pos, _ = epoch(split)
    assert sorted(zip(users.tolist(), pos.tolist())) == [(0, 1), (0, 2), (1, 3)]


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_negatives_are_never_a_training_item_of_the_user(negatives):
    # user 3 holds 9 of 10 items: most draws are rejected, the exact fallback must finish the job
    train = {0: [1, 2, 3], 1: [2, 5], 2: [7], 3: [1, 2, 3, 4, 5, 6, 7, 8, 9], 4: [10]}
    split = split_of(train, 5, N_ITEMS)
    for e in range(20):
        _, users, _, neg = epoch(split, negatives, e=e, bs=7)
        assert ((neg >= 1) & (neg <= N_ITEMS)).all()
        assert not any(n in train[u] for u, n in zip(users.tolist(), neg.tolist()))
        assert (neg[users == 3] == 10).all()  # the only item user 3 lacks (count 1 > 0)


def test_uniform_negatives_cover_the_complement_evenly():
    split = split_of({0: [1, 2]}, 1, 6)  # complement {3, 4, 5, 6}
    negs = np.concatenate([epoch(split, "uniform", e=e)[3] for e in range(2000)])
    counts = np.bincount(negs, minlength=7)
    assert counts[:3].sum() == 0
    assert np.allclose(counts[3:] / len(negs), 0.25, atol=0.03)


def test_popularity_negatives_follow_training_counts():
    # item i appears in the training data c_i times; a negative for user u is drawn with
    # probability c_j / sum(c over items u lacks); summed over every drawn row that gives the
    # exact expected frequency of each item, compared by a loose chi-square bound
    rng = np.random.default_rng(0)
    counts_target = np.array([0, 40, 25, 15, 10, 5, 3, 2, 0, 0])  # items 1..9; 8 and 9 untrained
    users_of = {i: rng.choice(60, size=c, replace=False) for i, c in enumerate(counts_target) if c}
    train = {u: [i for i, us in users_of.items() if u in us] for u in range(60)}
    train = {u: items for u, items in train.items() if items}
    split = split_of(train, 60, 9)
    counts = np.bincount([i for items in train.values() for i in items], minlength=10)
    uniform = (np.arange(10) > 0).astype(float)
    observed, expected, if_uniform = np.zeros(10), np.zeros(10), np.zeros(10)
    for e in range(30):
        _, users, _, neg = epoch(split, "popularity", e=e, bs=64)
        observed += np.bincount(neg, minlength=10)
        for u in users:
            for weights, out in ((counts.astype(float), expected), (uniform.copy(), if_uniform)):
                weights[train[u]] = 0.0
                out += weights / weights.sum()
    assert observed[[0, 8, 9]].sum() == 0  # PAD and never-trained items are never drawn
    live = expected > 0
    chi2 = ((observed[live] - expected[live]) ** 2 / expected[live]).sum()
    df = live.sum() - 1
    bound = df + 6 * np.sqrt(2 * df)
    assert chi2 < bound, (observed, expected.round(1))
    # the same test rejects uniform draws by far: the counts really shape the distribution
    chi2_uniform = ((observed[live] - if_uniform[live]) ** 2 / if_uniform[live]).sum()
    assert chi2_uniform > 10 * bound


def test_impossible_negatives_and_bad_arguments_are_clear_errors():
    split = split_of({0: [1, 2, 3], 1: [1]}, 2, 3)  # user 0 holds the whole catalogue
    with pytest.raises(DataError, match="no\\s+negative can be drawn"):
        list(pair_batches(split, 4, 0, 0))
    with pytest.raises(ValueError, match="negatives must be one of uniform, popularity"):
        list(pair_batches(split, 4, 0, 0, "hard"))
    with pytest.raises(ValueError, match="batch_size"):
        list(pair_batches(split, 0, 0, 0))


def test_pair_batch_moves_and_counts():
    b = PairBatch(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])).to("cpu")
    assert len(b) == 2 and b.neg.tolist() == [4, 5]
    scoring = PairBatch(torch.tensor([7])).to("cpu")
    assert scoring.pos is None and scoring.neg is None and len(scoring) == 1
