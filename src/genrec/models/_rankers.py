"""Pieces shared by the rankers over candidate lists (DIN, DCN-V2, MMoE, the composed ranker).

Every ranker of the ``features`` kind reads a ``FeatureBatch`` (one row per (user, candidate)) and
returns (B, T) logits, one per task. Their configs share the data-derived fields the pipeline fills
(``n_items``, ``n_dense``, ``sparse_cards``, ``n_tasks``, ``max_len``), declared and checked here:

    RankerInputs       the config fields every ranker shares (each model's config extends it),
                       ``check_inputs`` (those fields, the embedding size, the task weights) and
                       ``embeddings()`` (the FeatureEmbeddings they size)
    FeatureEmbeddings  one item table shared by the candidate and the behaviour sequence (as in
                       DIN), one table for every sparse column (column c's ids offset by the
                       cardinalities before it); checks that a batch fits the config
    masked_mean        the mean of the real (non-PAD) history vectors
    mlp                Linear -> activation -> dropout, per hidden width
    multitask_bce      BCE with logits, mean over rows, weighted sum over tasks

Example:
    >>> emb = FeatureEmbeddings(n_items=10, sparse_cards=[3, 5], dim=4, n_dense=2, max_len=6)
    >>> dense, sparse, target, history, real = emb(batch)              # doctest: +SKIP
    >>> sparse.shape, history.shape  # (B, 2 * 4), (B, L, 4)           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import FeatureBatch

__all__ = ["RankerInputs", "FeatureEmbeddings", "masked_mean", "mlp", "multitask_bce"]


@dataclass
class RankerInputs:
    """The config fields every ranker of kind "features" shares; the pipeline fills the first
    three from the data. Each model's config extends this with its own sizes."""

    n_items: int = 0          # number of real items, filled from the data (ids 1..n_items, 0 = PAD)
    n_dense: int = 0          # F: numeric features, filled by the pipeline
    sparse_cards: list[int] = field(default_factory=list)  # cardinality of each categorical column
    n_tasks: int = 1          # T: one logit (and, with task heads, one gate and tower) per task
    max_len: int = 50         # L: the longest behaviour sequence a batch may hold
    task_weights: list[float] = field(default_factory=list)  # loss weight per task; [] = all 1
    dim: int = 16             # D: item and sparse embedding size

    def check_inputs(self, model: str, dropout: float) -> None:
        """The checks every ranker shares (``model`` names it in the error)."""
        if min(self.n_items, self.n_dense) < 0 or min(self.n_tasks, self.max_len, self.dim) < 1:
            raise ValueError(f"{model}: need n_items, n_dense >= 0 and n_tasks, max_len, dim >= 1, "
                             f"got n_items={self.n_items}, n_dense={self.n_dense}, "
                             f"n_tasks={self.n_tasks}, max_len={self.max_len}, dim={self.dim}")
        if any(c < 1 for c in self.sparse_cards):
            raise ValueError(f"{model}: every sparse_cards entry must be >= 1 (ids 0..card - 1, "
                             f"0 = missing), got {list(self.sparse_cards)}")
        if self.task_weights and (len(self.task_weights) != self.n_tasks
                                  or min(self.task_weights) < 0):
            raise ValueError(f"{model}: task_weights needs one weight >= 0 per task "
                             f"({self.n_tasks}), got {list(self.task_weights)}; leave it empty "
                             f"for equal weights")
        if not 0 <= dropout < 1:
            raise ValueError(f"{model}: dropout must be in [0, 1), got {dropout}")

    def embeddings(self) -> "FeatureEmbeddings":
        return FeatureEmbeddings(self.n_items, self.sparse_cards, self.dim, self.n_dense,
                                 self.max_len)


class FeatureEmbeddings(nn.Module):
    def __init__(self, n_items: int, sparse_cards: Sequence[int], dim: int, n_dense: int,
                 max_len: int) -> None:
        super().__init__()
        self.n_items, self.n_dense, self.max_len = n_items, n_dense, max_len
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)
        cards = torch.tensor(list(sparse_cards), dtype=torch.int64)
        self.register_buffer("cards", cards, persistent=False)
        self.register_buffer("offsets", torch.cumsum(cards, 0) - cards, persistent=False)
        self.sparse = nn.Embedding(max(int(cards.sum()), 1), dim)
        for table in (self.items, self.sparse):
            nn.init.normal_(table.weight, std=0.05)
        with torch.no_grad():
            self.items.weight[0] = 0.0

    @property
    def width(self) -> int:
        """Size of [dense, sparse embeddings, target embedding]: the flat features of a row."""
        return self.n_dense + (len(self.cards) + 1) * self.items.embedding_dim

    def check(self, batch: FeatureBatch) -> None:
        """ValueError when ``batch`` does not fit the config the model was built with."""
        (B, F), C, L = batch.dense.shape, batch.sparse.shape[1], batch.history.shape[1]
        if F != self.n_dense or C != len(self.cards) or L > self.max_len:
            raise ValueError(f"batch has {F} dense, {C} sparse columns and history length {L}; "
                             f"the model was built for n_dense={self.n_dense}, "
                             f"{len(self.cards)} sparse_cards and max_len={self.max_len}: build "
                             f"the model from the feature table's sizes")
        if C and ((batch.sparse < 0) | (batch.sparse >= self.cards)).any():
            raise ValueError(f"a sparse id is outside 0..card - 1 (sparse_cards "
                             f"{self.cards.tolist()}); map unseen categories to 0")
        if B and (batch.target.min() < 1 or batch.target.max() > self.n_items
                  or batch.history.min() < 0 or batch.history.max() > self.n_items):
            raise ValueError(f"target/history items must be in 1..n_items={self.n_items} "
                             f"(history: 0 = PAD); the model was built for another catalogue")

    def forward(self, batch: FeatureBatch) -> tuple[torch.Tensor, ...]:
        """(dense (B, F), sparse (B, C * D), target (B, D), history (B, L, D), real (B, L))."""
        self.check(batch)
        B = batch.dense.shape[0]
        sparse = self.sparse(batch.sparse + self.offsets).reshape(B, -1)  # (B, C, D) -> (B, C*D)
        real = batch.history > 0
        return batch.dense, sparse, self.items(batch.target), self.items(batch.history), real


def masked_mean(history: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B, L, D) vectors, (B, L) real -> (B, D) mean over the real ones (0 for an empty history)."""
    total = (history * real[..., None]).sum(1)
    return total / real.sum(1, keepdim=True).clamp(min=1)


def mlp(sizes: Sequence[int], activation: Callable[[int], nn.Module],
        dropout: float) -> nn.Sequential:
    """``sizes`` = [in, hidden...]: Linear -> activation(width) -> Dropout per hidden layer."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), activation(b), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def multitask_bce(logits: torch.Tensor, labels: torch.Tensor,
                  weights: Sequence[float] = ()) -> torch.Tensor:
    """(B, T) logits and labels -> scalar: per-task mean BCE, summed with ``weights`` (all 1
    by default)."""
    if logits.shape != labels.shape:
        raise ValueError(f"labels {tuple(labels.shape)} do not match the logits "
                         f"{tuple(logits.shape)}: one label column per task (n_tasks)")
    per_task = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(0)
    if weights:
        per_task = per_task * per_task.new_tensor(list(weights))
    return per_task.sum()
