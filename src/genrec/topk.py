"""Top-k with deterministic ties: the one ranking that the evaluator, recommend, recall and the
text indexes share.

``top_k(scores, k)`` returns each row's best ``k`` column indices ordered by (score descending,
column index ascending), so among equal scores the lower item index wins, whatever the device,
chunking or torch version. Columns scored ``-inf`` are excluded: callers mask PAD (column 0),
history and anything else by writing ``-inf`` first, and read ``-1`` in the slots that a row
with fewer than ``k`` candidates cannot fill. Scores must not be NaN (map them to ``-inf``).

``reference_top_k`` is the slow, obviously correct version (one full stable sort per row) that
the tests hold ``top_k`` to on inputs with many ties.

Example:
    >>> import torch
    >>> top_k(torch.tensor([[-math.inf, 0.5, 0.9, 0.5, 0.5]]), 3)
    (tensor([[2, 1, 3]]), tensor([[0.9000, 0.5000, 0.5000]]))
"""

from __future__ import annotations

import math

import torch

__all__ = ["top_k", "top_k_counted", "reference_top_k"]


def _count(mask: torch.Tensor) -> torch.Tensor:
    """True entries per row; an int32 sum is several times faster than torch's default int64."""
    return mask.sum(1, dtype=torch.int32)


def top_k_counted(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``top_k`` plus, per row, how many entries score >= the k-th best: (idx, values, (B, 1)
    int32). The evaluator reads that count to rank targets tied with the k-th score."""
    k = max(0, min(k, scores.shape[1]))
    if k == 0:  # nothing to list (no k, or no columns)
        empty = scores.new_zeros(scores.shape[0], 0)
        return empty.long(), empty, empty.new_zeros(scores.shape[0], 1, dtype=torch.int32)
    values, idx = torch.topk(scores, k, dim=1)  # (B, k), values descending
    kth = values[:, -1:]
    n_at_least_kth = _count(scores >= kth)[:, None]
    # torch.topk picks arbitrarily among items tied with the k-th score: redo those rows so that
    # the lower indices win (deterministic, independent of chunking)
    tied_rows = (n_at_least_kth[:, 0] > k).nonzero().squeeze(1)
    if len(tied_rows):
        sub, sub_kth = scores[tied_rows], kth[tied_rows]
        above, tied = sub > sub_kth, sub == sub_kth
        room = k - _count(above)[:, None]
        take = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= room))  # exactly k per row
        idx[tied_rows] = take.nonzero()[:, 1].view(-1, k)
    idx = idx.sort(dim=1).values  # index ascending, then a stable sort by score descending
    order = scores.gather(1, idx).sort(dim=1, descending=True, stable=True).indices
    idx = idx.gather(1, order)
    return idx.masked_fill(values == -math.inf, -1), values, n_at_least_kth


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's best ``k`` of ``scores`` (B, N): (column indices (B, k) int64 by score
    descending then index ascending, -1 where only -inf is left; their scores (B, k)).

    ``k`` is capped at N (and k <= 0 lists nothing). Runs where ``scores`` lives (CPU or GPU)."""
    idx, values, _ = top_k_counted(scores, k)
    return idx, values


def reference_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slow reference of ``top_k``: a full stable sort of every row by score descending."""
    k = max(0, min(k, scores.shape[1]))
    values, idx = scores.sort(dim=1, descending=True, stable=True)
    values, idx = values[:, :k], idx[:, :k]
    return idx.masked_fill(values == -math.inf, -1), values
