"""Sequence batches: left padding, left truncation, per-epoch seeded shuffling, stage inputs."""

import numpy as np
import polars as pl
import pytest
import torch

from genrec.data.batches import (SeqBatch, eval_batch, n_train_batches, train_batches,
                                 user_sequences)
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split


@pytest.fixture
def split():
    # raw item "k" gets item_idx k (numeric ids sort as numbers, 1..9 all present)
    seqs = {"a": [1, 2, 3, 4, 5, 6, 7], "b": [9, 8, 7], "c": [4, 5, 6, 9], "d": [3]}
    rows = [(u, str(i), 100 * t + 10) for u, items in seqs.items() for t, i in enumerate(items)]
    u, i, t = zip(*rows)
    ds = build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "toy")
    assert ds.item_ids[1:].tolist() == [str(k) for k in range(1, 10)]
    return make_split(ds, "loo")  # train: a 1..5, b 9, c 4 5, d 3; valid: a 6, b 8, c 6


def test_user_sequences_match_split_sequences(split):
    for stage in ("train", "valid", "test"):
        seqs = user_sequences(split, stage)
        assert [seqs.items[seqs.offsets[u]:seqs.offsets[u + 1]].tolist() for u in range(4)] == \
            [s.tolist() for s in split.sequences(stage)]
    everything = user_sequences(split, "all")
    assert everything.items[everything.offsets[0]:everything.offsets[1]].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert user_sequences(split, "test") is user_sequences(split, "test")  # built once


def test_train_batches_shift_by_one_and_truncate_from_the_left(split):
    (batch,) = list(train_batches(split, max_len=3, batch_size=8, seed=0, epoch=0))
    rows = {int(u): r for r, u in enumerate(batch.users)}
    assert set(rows) == {0, 2}  # b and d have fewer than 2 train items
    a, c = rows[0], rows[2]
    # a's train sequence 1..5: the last max_len + 1 = 4 items are 2 3 4 5
    assert batch.items[a].tolist() == [2, 3, 4] and batch.targets[a].tolist() == [3, 4, 5]
    assert batch.timestamps[a].tolist() == [110, 210, 310]
    # c's train sequence 4 5: left-padded, no loss where the input is PAD
    assert batch.items[c].tolist() == [0, 0, 4] and batch.targets[c].tolist() == [0, 0, 5]
    assert batch.timestamps[c].tolist() == [0, 0, 10]
    assert batch.items.dtype == batch.targets.dtype == torch.int64 and len(batch) == 2


def test_train_batches_are_seeded_per_epoch():
    rows = [(f"u{u:02d}", str(i), i) for u in range(40) for i in range(1, 6)]
    u, i, t = zip(*rows)
    ds = build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "toy")
    split = make_split(ds, "loo")

    def order(seed: int, epoch: int) -> torch.Tensor:
        return torch.cat([b.users for b in train_batches(split, 4, 16, seed, epoch)])

    assert torch.equal(order(1, 0), order(1, 0))
    assert not torch.equal(order(1, 0), order(1, 1)) and not torch.equal(order(1, 0), order(2, 0))
    assert sorted(order(1, 3).tolist()) == list(range(40))
    assert n_train_batches(split, 16) == len(list(train_batches(split, 4, 16, 1, 0))) == 3


def test_eval_batch_feeds_what_is_known_before_the_stage(split):
    users = np.array([0, 1, 3])
    valid = eval_batch(split, "valid", users, max_len=4)
    assert valid.items.tolist() == [[2, 3, 4, 5], [0, 0, 0, 9], [0, 0, 0, 3]]
    assert valid.targets is None and valid.users.tolist() == [0, 1, 3]
    test = eval_batch(split, "test", users, max_len=4)
    assert test.items.tolist() == [[3, 4, 5, 6], [0, 0, 9, 8], [0, 0, 0, 3]]
    assert test.timestamps[0].tolist() == [210, 310, 410, 510]
    assert eval_batch(split, "all", users, 2).items.tolist() == [[6, 7], [8, 7], [0, 3]]
    # the width is the longest sequence in the batch, never more than max_len
    assert eval_batch(split, "test", np.array([1, 3]), max_len=4).items.tolist() == [[9, 8], [0, 3]]
    with pytest.raises(ValueError, match="not 'train'"):
        eval_batch(split, "train", users, 4)


def test_to_moves_every_tensor_and_keeps_none():
    b = SeqBatch(torch.tensor([0]), torch.tensor([[0, 1]]), None, torch.tensor([[0, 5]]))
    moved = b.to("cpu")
    assert moved is not b and moved.targets is None
    assert torch.equal(moved.items, b.items) and torch.equal(moved.timestamps, b.timestamps)
