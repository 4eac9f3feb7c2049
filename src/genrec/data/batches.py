"""Sequence batches for next-item models (SASRec, HSTU): typed, left-padded, seeded.

A ``SeqBatch`` holds B users' item sequences as a (B, L) int64 tensor, LEFT-padded with 0 (PAD):
the last column is always the most recent item, so a model reads its prediction for "what comes
next" at column L - 1, and positions must be counted from the right ("steps before the end").
L is the longest sequence in the batch, at most ``max_len``: most users have short histories, and
trimming the all-PAD columns changes no output of a model that masks PAD and counts positions
from the right, while it saves most of the compute. Sequences longer than ``max_len`` are
truncated from the LEFT (the most recent items are kept). ``timestamps`` are aligned with
``items`` (0 at PAD), for models with time features.

Training (``train_batches``) uses one sample per user with a loss at every position, as in the
SASRec and HSTU papers: the user's last ``max_len + 1`` train items give inputs ``seq[:-1]`` and
targets ``seq[1:]``. Evaluation (``eval_batch``) feeds what is known before a stage: train items
for "valid", train + valid for "test", and every interaction for "all" (serving).

Per-user sequences are built once per (split, stage) with the same (user, timestamp, row order)
sort as ``Split.sequences`` and cached on the split object, whose frames are treated as read-only.

Example:
    >>> split = make_split(ds, "loo")                                   # doctest: +SKIP
    >>> for batch in train_batches(split, max_len=50, batch_size=128, seed=0, epoch=0):
    ...     loss = model.loss(batch.to(device))                         # doctest: +SKIP
    >>> scores = model.score(eval_batch(split, "test", np.arange(10), 50))  # (10, n_items + 1)

Pair batches for collaborative models (BPR, LightGCN): a ``PairBatch`` holds (user, positive,
negative) triples. ``pair_batches`` yields every distinct training (user, item) pair once per
epoch, shuffled by (seed, epoch), each with one negative drawn outside that user's training
items: ``uniform`` over items 1..n_items, or ``popularity`` in proportion to the item's training
count. Draws are vectorised with rejection; a row still rejected after a few rounds (a user who
has most of the catalogue) is drawn exactly from its own complement. For scoring, a PairBatch
carries only ``users``.

    >>> for batch in pair_batches(split, batch_size=2048, seed=0, epoch=0):  # doctest: +SKIP
    ...     loss = model.loss(batch.to(device))
    >>> scores = model.score(PairBatch(torch.arange(10)))                    # doctest: +SKIP

Feature batches for rankers over candidate lists (DIN, DCN-V2, MMoE; the ``features`` kind): a
``FeatureBatch`` holds one row per (user, candidate item) with its numeric and categorical
features, the user's behaviour sequence before the label position (left-padded like ``SeqBatch``)
and one label per task. ``genrec.pipeline`` builds them from its feature table; ``groups`` (the
user or query of the row) is for per-user metrics (GAUC) and ranking, never a feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import polars as pl
import torch

from genrec.data.dataset import DataError
from genrec.data.splits import Split

__all__ = ["SeqBatch", "Sequences", "user_sequences", "train_batches", "n_train_batches",
           "eval_batch", "PairBatch", "NEGATIVES", "pair_batches", "n_pair_batches", "FeatureBatch"]

SeqStage = Literal["train", "valid", "test", "all"]


@dataclass(slots=True)
class SeqBatch:
    users: torch.Tensor                      # (B,) int64 user_idx
    items: torch.Tensor                      # (B, L) int64 inputs, left-padded with 0, L <= max_len
    targets: torch.Tensor | None = None      # (B, L) int64 next item per position, 0 = no loss
    timestamps: torch.Tensor | None = None   # (B, L) int64 timestamps of ``items``, 0 at PAD

    def to(self, device: torch.device | str) -> "SeqBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return SeqBatch(move(self.users), move(self.items), move(self.targets), move(self.timestamps))

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Sequences:
    """All users' time-ordered sequences, flat: user u owns ``items[offsets[u]:offsets[u+1]]``."""

    items: np.ndarray       # (nnz,) int64
    timestamps: np.ndarray  # (nnz,) int64
    offsets: np.ndarray     # (n_users + 1,) int64

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


_FRAMES = {"train": ("train",), "valid": ("train",), "test": ("train", "valid"),
           "all": ("train", "valid", "test")}


def user_sequences(split: Split, stage: SeqStage) -> Sequences:
    """What is known before ``stage`` per user, oldest first, without the split's new items
    (P1-new) (cached on ``split``)."""
    if stage not in _FRAMES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(_FRAMES)}")
    cache = split.__dict__.setdefault("_sequence_cache", {})
    if stage not in cache:
        frames = [getattr(split, name).select("user_idx", "item_idx", "timestamp")
                  for name in _FRAMES[stage]]
        df = pl.concat(frames).sort(["user_idx", "timestamp"], maintain_order=True)
        if len(split.new_items):  # P1-new: new items are never a model input
            df = df.filter(~pl.col("item_idx").is_in(split.new_items.tolist()))
        users = df["user_idx"].to_numpy()
        cache[stage] = Sequences(
            items=df["item_idx"].to_numpy().astype(np.int64),
            timestamps=df["timestamp"].to_numpy().astype(np.int64),
            offsets=np.searchsorted(users, np.arange(split.n_users + 1)).astype(np.int64),
        )
    return cache[stage]


def _left_padded(seqs: Sequences, users: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, W) items and timestamps: each user's last ``width`` entries, right-aligned, with
    W = min(width, longest of these users) (at least 1)."""
    longest = (seqs.offsets[users + 1] - seqs.offsets[users]).max(initial=0)
    width = max(1, min(width, int(longest)))
    items = np.zeros((len(users), width), dtype=np.int64)
    times = np.zeros((len(users), width), dtype=np.int64)
    for row, u in enumerate(users):
        end = seqs.offsets[u + 1]
        start = max(seqs.offsets[u], end - width)
        n = end - start
        if n > 0:
            items[row, width - n:] = seqs.items[start:end]
            times[row, width - n:] = seqs.timestamps[start:end]
    return items, times


def _trainable_users(split: Split) -> np.ndarray:
    return np.flatnonzero(user_sequences(split, "train").lengths() >= 2)


def n_train_batches(split: Split, batch_size: int) -> int:
    """How many batches ``train_batches`` yields per epoch."""
    return -(-len(_trainable_users(split)) // batch_size)


def train_batches(split: Split, max_len: int, batch_size: int, seed: int, epoch: int
                  ) -> Iterator[SeqBatch]:
    """One sample per user with >= 2 train items, users shuffled by (seed, epoch).

    Inputs are the last ``max_len + 1`` train items without the final one, targets the same
    window shifted by one, so the loss is taken at every position that has a next item.
    """
    if max_len < 1 or batch_size < 1:
        raise ValueError(f"max_len and batch_size must be >= 1, got {max_len} and {batch_size}")
    seqs = user_sequences(split, "train")
    users = _trainable_users(split)
    users = users[np.random.default_rng([seed, epoch]).permutation(len(users))]
    for lo in range(0, len(users), batch_size):
        u = users[lo:lo + batch_size]
        window, times = _left_padded(seqs, u, max_len + 1)  # (B, L + 1)
        inputs = window[:, :-1]                              # (B, L)
        # no loss where the input is PAD: the first real item has no context to be predicted from
        targets = np.where(inputs > 0, window[:, 1:], 0)     # (B, L)
        yield SeqBatch(users=torch.from_numpy(u.astype(np.int64)), items=torch.from_numpy(inputs),
                       targets=torch.from_numpy(targets), timestamps=torch.from_numpy(times[:, :-1]))


def eval_batch(split: Split, stage: SeqStage, users: np.ndarray, max_len: int) -> SeqBatch:
    """Inputs for predicting ``stage``: the user's last ``max_len`` known items (no targets)."""
    if stage == "train":
        raise ValueError("eval_batch predicts 'valid', 'test' or 'all' (serving), not 'train'")
    users = np.asarray(users, dtype=np.int64).ravel()
    items, times = _left_padded(user_sequences(split, stage), users, max_len)
    return SeqBatch(users=torch.from_numpy(users), items=torch.from_numpy(items),
                    targets=None, timestamps=torch.from_numpy(times))


# ---- (user, positive, negative) triples for collaborative models -------------------------------
NEGATIVES = ("uniform", "popularity")
_REJECTION_ROUNDS = 20  # rows still hitting a training item after this are drawn exactly


@dataclass(slots=True)
class PairBatch:
    users: torch.Tensor               # (B,) int64 user_idx
    pos: torch.Tensor | None = None   # (B,) int64 a training item of each user (None: scoring)
    neg: torch.Tensor | None = None   # (B,) int64 an item outside the user's training items

    def to(self, device: torch.device | str) -> "PairBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return PairBatch(move(self.users), move(self.pos), move(self.neg))

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class _Pairs:
    """Distinct training pairs, user-major: ``keys`` = user * (n_items + 1) + item, ascending."""

    users: np.ndarray   # (P,) int64
    items: np.ndarray   # (P,) int64
    keys: np.ndarray    # (P,) int64, sorted: membership tests by binary search
    counts: np.ndarray  # (n_items + 1,) training count per item, 0 at PAD


def _train_pairs(split: Split) -> _Pairs:
    """The split's distinct training pairs (cached on ``split``, whose frames are read-only)."""
    cache = split.__dict__.setdefault("_pair_cache", {})
    if "train" not in cache:
        m = split.train_matrix()
        m.sum_duplicates()  # canonical CSR: rows in order, ascending columns, so keys are sorted
        users = np.repeat(np.arange(split.n_users, dtype=np.int64), np.diff(m.indptr))
        items = m.indices.astype(np.int64)
        cache["train"] = _Pairs(users, items, users * (split.n_items + 1) + items,
                                np.bincount(items, minlength=split.n_items + 1).astype(np.int64))
    return cache["train"]


def n_pair_batches(split: Split, batch_size: int) -> int:
    """How many batches ``pair_batches`` yields per epoch."""
    return -(-len(_train_pairs(split).users) // batch_size)


def _is_training_pair(pairs: _Pairs, keys: np.ndarray) -> np.ndarray:
    at = np.minimum(np.searchsorted(pairs.keys, keys), len(pairs.keys) - 1)
    return pairs.keys[at] == keys


def _negatives(pairs: _Pairs, users: np.ndarray, n_items: int, mode: str,
               rng: np.random.Generator) -> np.ndarray:
    """One negative per row of ``users``: an item the user has no training pair with."""
    if mode == "uniform":
        weights = np.ones(n_items + 1)
        weights[0] = 0.0
    else:
        weights = pairs.counts.astype(np.float64)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    # a user whose training items hold all the sampling mass has no negative to give
    held = np.bincount(pairs.users, weights=weights[pairs.items])
    full = np.flatnonzero(held >= weights.sum() * (1 - 1e-12))
    if np.isin(users, full).any():
        raise DataError(f"{np.isin(full, users).sum()} user(s) (e.g. user_idx {full[0]}) have "
                        f"every item with a non-zero {mode} weight in their training set, so no "
                        f"negative can be drawn for them; drop them (data.min_item / a k-core) "
                        f"or use uniform negatives")
    draw = lambda n: np.searchsorted(cdf, rng.random(n), side="right")  # noqa: E731
    neg = draw(len(users))
    todo = np.arange(len(users))
    for _ in range(_REJECTION_ROUNDS):
        todo = todo[_is_training_pair(pairs, users[todo] * (n_items + 1) + neg[todo])]
        if not len(todo):
            return neg
        neg[todo] = draw(len(todo))
    todo = todo[_is_training_pair(pairs, users[todo] * (n_items + 1) + neg[todo])]
    for row in todo:  # rare: users holding most of the mass; draw from their exact complement
        lo, hi = np.searchsorted(pairs.users, [users[row], users[row] + 1])  # user-major
        w = weights.copy()
        w[pairs.items[lo:hi]] = 0.0
        neg[row] = rng.choice(n_items + 1, p=w / w.sum())
    return neg


def pair_batches(split: Split, batch_size: int, seed: int, epoch: int,
                 negatives: str = "uniform") -> Iterator[PairBatch]:
    """Every distinct training pair once, shuffled by (seed, epoch), with one negative each.

    ``negatives``: "uniform" over items 1..n_items, or "popularity" in proportion to each
    item's training count (items never trained on are never drawn); never a training item of
    the row's user.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = _train_pairs(split)
    if not len(pairs.users):
        return
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(pairs.users))
    users, pos = pairs.users[order], pairs.items[order]
    neg = _negatives(pairs, users, split.n_items, negatives, rng)  # the whole epoch at once
    for lo in range(0, len(users), batch_size):
        sl = slice(lo, lo + batch_size)
        yield PairBatch(torch.from_numpy(users[sl]), torch.from_numpy(pos[sl]),
                        torch.from_numpy(neg[sl]))


# ---- (user, candidate) rows with features, for rankers ------------------------------------------
@dataclass(slots=True)
class FeatureBatch:
    dense: torch.Tensor    # (B, F) float32 numeric features, standardised on the training rows
    sparse: torch.Tensor   # (B, C) int64 categorical ids, 0 = missing; column c: < sparse_cards[c]
    history: torch.Tensor  # (B, L) int64 items (1..n_items, 0 = PAD) strictly before the label
                           # position, left-padded, most recent last
    target: torch.Tensor   # (B,) int64 candidate item (1..n_items)
    labels: torch.Tensor   # (B, T) float32 in [0, 1], one column per task
    groups: torch.Tensor   # (B,) int64 user/query of the row (GAUC, ranking); not a feature

    def to(self, device: torch.device | str) -> "FeatureBatch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return FeatureBatch(move(self.dense), move(self.sparse), move(self.history),
                            move(self.target), move(self.labels), move(self.groups))

    def __len__(self) -> int:
        return len(self.target)
