"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Paper: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI 2009).
score(u, i) = <p_u, q_i>; for a triple (u, i+, i-) the loss is -log sigmoid(s(u, i+) - s(u, i-))
plus l2 / 2 * (|p_u|^2 + |q_i+|^2 + |q_i-|^2), averaged over the batch.
NOTE deviations: mini-batches with Adam (the trainer's AdamW, weight_decay 0) instead of SGD on one
triple at a time; the L2 term is the LightGCN code's (on the batch's embeddings, / batch size), so
BPR and LightGCN are regularised alike. Negatives (``negatives``: uniform | popularity) are drawn
outside the user's training items by ``genrec.data.batches.pair_batches``.

Example:
    >>> model = BPR(BPRConfig(n_users=10, n_items=20, dim=8))
    >>> batch = PairBatch(torch.tensor([0, 1]), torch.tensor([3, 4]), torch.tensor([5, 6]))
    >>> model.loss(batch).backward(); model.score(PairBatch(torch.tensor([0, 1]))).shape
    torch.Size([2, 21])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import NEGATIVES, PairBatch
from genrec.models._layers import fold_in_scores, id_embeddings

__all__ = ["BPRConfig", "BPR"]


@dataclass
class BPRConfig:
    n_users: int = 0           # number of users, filled from the data (ids 0..n_users-1)
    n_items: int = 0           # number of real items, filled from the data (1..n_items, 0 = PAD)
    dim: int = 64              # D: user and item embedding size
    l2: float = 1e-4           # weight of the L2 penalty on the batch's embeddings
    negatives: str = "uniform"  # uniform | popularity (by training count), never a training item
    init_std: float = 0.1      # embeddings start as N(0, init_std^2) (LightGCN code: 0.1)

    def validate(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValueError(f"bpr: negatives {self.negatives!r} is not one of "
                             f"{', '.join(NEGATIVES)}")
        if min(self.n_users, self.n_items) < 0 or self.dim < 1:
            raise ValueError(f"bpr: need n_users, n_items >= 0 and dim >= 1, got {self.n_users}, "
                             f"{self.n_items}, {self.dim}")
        if self.l2 < 0 or self.init_std <= 0:
            raise ValueError(f"bpr: need l2 >= 0 and init_std > 0, got {self.l2}, {self.init_std}")


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(pos - neg) over (B,) score pairs (softplus keeps it finite)."""
    return F.softplus(neg - pos).mean()


class BPR(nn.Module):
    kind = "pairs"  # fed PairBatch triples (genrec.runs.kinds.pairs)

    def __init__(self, config: BPRConfig) -> None:
        super().__init__()
        config.validate()
        if min(config.n_users, config.n_items) < 1:
            raise ValueError(f"bpr: n_users and n_items must be >= 1, got {config.n_users}, "
                             f"{config.n_items}; the run builder fills them from the data")
        self.config = c = config
        self.user_emb, self.item_emb = id_embeddings(c.n_users, c.n_items, c.dim, c.init_std)

    def set_graph(self, interactions: Any) -> None:
        """The training interactions, which the pairs kind gives every pair model; BPR scores
        from its embeddings alone, so it keeps nothing."""

    def loss(self, batch: PairBatch) -> torch.Tensor:
        """BPR loss of the batch's (user, positive, negative) triples plus the L2 term."""
        if batch.pos is None or batch.neg is None:
            raise ValueError("bpr.loss needs a training batch with pos and neg (pair_batches)")
        u = self.user_emb(batch.users)  # (B, D)
        p, n = self.item_emb(batch.pos), self.item_emb(batch.neg)  # (B, D) each
        reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / (2 * len(batch))
        return bpr_loss((u * p).sum(-1), (u * n).sum(-1)) + self.config.l2 * reg

    def score(self, batch: PairBatch) -> torch.Tensor:
        """(B, n_items + 1) scores of every item for ``batch.users``; column 0 (PAD) is -inf."""
        scores = self.user_emb(batch.users) @ self.item_emb.weight.T  # (B, N + 1)
        scores[:, 0] = -math.inf
        return scores

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) the item vectors ``score`` multiplies user vectors with; row 0 = PAD."""
        return self.item_emb.weight

    def score_history(self, items: torch.Tensor) -> torch.Tensor:
        """(n_items + 1,) scores for a user given only by an item history (item_idx), by fold-in.

        An approximation: BPR learns a free vector per training user and no encoder from items
        to users, so a user it never saw (or a known user with an edited history) gets the mean
        of the history's item vectors as user vector. Repeated items count once, as in the
        distinct training pairs; order is ignored. Column 0 (PAD) is -inf.

        Example:
            >>> model = BPR(BPRConfig(n_users=2, n_items=5, dim=4))
            >>> model.score_history(torch.tensor([1, 3, 3])).shape
            torch.Size([6])
        """
        return fold_in_scores(items, self.item_vectors, self.config.n_items, "bpr")
