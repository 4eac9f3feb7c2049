"""Session batches for sequence-to-sequence session generators (the ``session`` kind, GENIUS).

A ``SessionBatch`` is a ``SeqBatch``-style history (left-padded, newest item last, with its
timestamps) plus the session that followed it: ``targets`` (B, S), RIGHT-padded with 0, in time
order. A decoder reads the targets shifted by one (teacher forcing), so position p is trained to
predict ``targets[:, p]`` from the history and ``targets[:, :p]``.

Training (``session_batches``): one sample per user with >= 2 training items, users shuffled by
(seed, epoch). Each user's training sequence is cut at a point drawn by (seed, epoch), at least
one item before it and one after it: the history is the last ``max_len`` items before the cut, the
targets the next ``session_len`` items after it. Drawing the cut anew every epoch shows the decoder
sessions starting anywhere in the user's history, not only the last ``session_len`` items; it is
the same set of users as ``train_batches``, so both give the same number of steps per epoch.
Evaluation feeds ``eval_batch`` histories (``genrec.data.batches``); the true sessions of protocol
P6 are ``Split.sessions(stage)``.

Example:
    >>> split = make_split(ds, "next_k")                                          # doctest: +SKIP
    >>> for batch in session_batches(split, 50, 20, batch_size=128, seed=0, epoch=0):
    ...     loss = model.loss(batch.to(device))                                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from genrec.data.batches import n_train_batches, user_sequences
from genrec.data.splits import Split

__all__ = ["SessionBatch", "PreferenceBatch", "session_batches", "n_session_batches"]


@dataclass(slots=True)
class SessionBatch:
    users: torch.Tensor                     # (B,) int64 user_idx
    items: torch.Tensor                     # (B, L) int64 history, left-padded with 0
    targets: torch.Tensor                   # (B, S) int64 the next items in order, right-padded
    timestamps: torch.Tensor | None = None  # (B, L) int64 timestamps of ``items``, 0 at PAD

    def to(self, device: torch.device | str) -> "SessionBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return SessionBatch(move(self.users), move(self.items), move(self.targets),
                            move(self.timestamps))

    def __len__(self) -> int:
        return len(self.users)


@dataclass(slots=True)
class PreferenceBatch:
    """DPO pairs: per history a preferred (``chosen``) and a dispreferred (``rejected``) session,
    with their log-probabilities under the frozen reference model."""

    users: torch.Tensor                     # (B,) int64 user_idx
    items: torch.Tensor                     # (B, L) int64 history, left-padded with 0
    chosen: torch.Tensor                    # (B, S) int64 right-padded with 0
    rejected: torch.Tensor                  # (B, S) int64 right-padded with 0
    ref_chosen: torch.Tensor                # (B,) float32 log p_ref(chosen | history)
    ref_rejected: torch.Tensor              # (B,) float32 log p_ref(rejected | history)
    timestamps: torch.Tensor | None = None  # (B, L) int64 timestamps of ``items``

    def to(self, device: torch.device | str) -> "PreferenceBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return PreferenceBatch(move(self.users), move(self.items), move(self.chosen),
                               move(self.rejected), move(self.ref_chosen),
                               move(self.ref_rejected), move(self.timestamps))

    def __len__(self) -> int:
        return len(self.users)


def n_session_batches(split: Split, batch_size: int) -> int:
    """How many batches ``session_batches`` yields per epoch (as ``train_batches``)."""
    return n_train_batches(split, batch_size)


def session_batches(split: Split, max_len: int, session_len: int, batch_size: int, seed: int,
                    epoch: int) -> Iterator[SessionBatch]:
    """(history, next session) samples cut at a seeded point per user and epoch (module doc)."""
    if min(max_len, session_len, batch_size) < 1:
        raise ValueError(f"max_len, session_len and batch_size must be >= 1, got {max_len}, "
                         f"{session_len}, {batch_size}")
    seqs = user_sequences(split, "train")
    lengths = seqs.lengths()
    users = np.flatnonzero(lengths >= 2)
    rng = np.random.default_rng([seed, epoch])
    users = users[rng.permutation(len(users))]
    cuts = rng.integers(1, lengths[users])  # items before the cut: 1 .. n - 1
    for lo in range(0, len(users), batch_size):
        u, cut = users[lo:lo + batch_size], cuts[lo:lo + batch_size]
        width = int(min(max_len, cut.max()))
        items = np.zeros((len(u), width), dtype=np.int64)
        times = np.zeros((len(u), width), dtype=np.int64)
        targets = np.zeros((len(u), session_len), dtype=np.int64)
        for row, (user, c) in enumerate(zip(u, cut)):
            start = seqs.offsets[user]
            hist = slice(start + max(0, c - width), start + c)
            n = hist.stop - hist.start
            items[row, width - n:] = seqs.items[hist]
            times[row, width - n:] = seqs.timestamps[hist]
            nxt = seqs.items[start + c:min(start + c + session_len, seqs.offsets[user + 1])]
            targets[row, :len(nxt)] = nxt
        yield SessionBatch(torch.from_numpy(u.astype(np.int64)), torch.from_numpy(items),
                           torch.from_numpy(targets), torch.from_numpy(times))
