"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Paper: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI 2009).
score(u, i) = <p_u, q_i>; for a triple (u, i+, i-) the loss is -log sigmoid(s(u, i+) - s(u, i-))
plus l2 / 2 * (|p_u|^2 + |q_i+|^2 + |q_i-|^2), averaged over the batch.
NOTE deviations: mini-batches with Adam (the trainer's AdamW, weight_decay 0) instead of SGD on one
triple at a time; the L2 term is the LightGCN code's (on the batch's embeddings, / batch size), so
BPR and LightGCN are regularised alike. Negatives (``negatives``: uniform | popularity) are drawn
outside the user's training items by ``genrec.data.batches.pair_batches``.
NOTE option: ``loss = "ccl"`` trains MF with SimpleX's cosine contrastive loss (Mao et al., CIKM
2021; ``models._losses.cosine_contrastive``) against ``n_negatives`` uniform items shared by the
batch (the authors draw them per row), with the L2 term on users and positives; scores are then
cosines. Not taken from SimpleX: its dropout on the user vector and its history aggregation.

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

from genrec.config import ConfigError
from genrec.data.batches import NEGATIVES, PairBatch
from genrec.models._layers import fold_in_scores, id_embeddings
from genrec.models._losses import ccl_loss, check_ccl

__all__ = ["BPRConfig", "BPR", "BPR_LOSSES"]

BPR_LOSSES = ("bpr", "ccl")


@dataclass
class BPRConfig:
    n_users: int = 0           # number of users, filled from the data (ids 0..n_users-1)
    n_items: int = 0           # number of real items, filled from the data (1..n_items, 0 = PAD)
    dim: int = 64              # D: user and item embedding size
    l2: float = 1e-4           # weight of the L2 penalty on the batch's embeddings
    negatives: str = "uniform"  # uniform | popularity (by training count), never a training item
    init_std: float = 0.1      # embeddings start as N(0, init_std^2) (LightGCN code: 0.1)
    loss: str = "bpr"          # bpr (Rendle et al.) | ccl: SimpleX's cosine contrastive loss
    n_negatives: int = 1024    # ccl: uniform negatives per batch, shared by its rows
    margin: float = 0.9        # ccl: only negatives with cos(u, j) > margin are pushed away
    neg_weight: float = 150.0  # ccl: w, weight of the mean negative hinge against 1 - cos(u, i+)

    def validate(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"bpr: negatives {self.negatives!r} is not one of "
                              f"{', '.join(NEGATIVES)}")
        if min(self.n_users, self.n_items) < 0 or self.dim < 1:
            raise ConfigError(f"bpr: need n_users, n_items >= 0 and dim >= 1, got "
                              f"{self.n_users}, {self.n_items}, {self.dim}")
        if self.l2 < 0 or self.init_std <= 0:
            raise ConfigError(f"bpr: need l2 >= 0 and init_std > 0, got {self.l2}, "
                              f"{self.init_std}")
        if self.loss not in BPR_LOSSES:
            raise ConfigError(f"bpr: loss {self.loss!r} is not one of {', '.join(BPR_LOSSES)}")
        if self.loss == "ccl":
            check_ccl("bpr", self.n_negatives, self.margin, self.neg_weight)
            if self.negatives != "uniform":
                raise ConfigError(f"bpr: loss 'ccl' draws its own uniform negatives, shared by "
                                  f"the batch, so negatives = {self.negatives!r} would be "
                                  f"ignored; set negatives = 'uniform'")


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
        """BPR loss of the batch's (user, positive, negative) triples (or, with ``loss = "ccl"``,
        CCL of each positive against shared uniform negatives) plus the L2 term."""
        c = self.config
        if batch.pos is None or (batch.neg is None and c.loss == "bpr"):
            raise ValueError("bpr.loss needs a training batch with pos and neg (pair_batches)")
        u, p = self.user_emb(batch.users), self.item_emb(batch.pos)  # (B, D) each
        reg = u.pow(2).sum() + p.pow(2).sum()
        if c.loss == "ccl":
            main = ccl_loss(u, batch.pos, self.item_emb.weight, c.n_negatives, c.margin,
                            c.neg_weight)
        else:
            n = self.item_emb(batch.neg)  # (B, D)
            reg = reg + n.pow(2).sum()
            main = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        return main + c.l2 * reg / (2 * len(batch))

    def score(self, batch: PairBatch) -> torch.Tensor:
        """(B, n_items + 1) scores of every item for ``batch.users``; column 0 (PAD) is -inf.
        Cosines after a ccl loss (the geometry it trained), inner products otherwise."""
        users = self.user_emb(batch.users)  # (B, D)
        if self.config.loss == "ccl":
            users = F.normalize(users, dim=-1)
        scores = users @ self.item_vectors().T  # (B, N + 1)
        scores[:, 0] = -math.inf
        return scores

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) the item vectors ``score`` multiplies user vectors with (unit length
        after a ccl loss); row 0 = PAD."""
        items = self.item_emb.weight
        return F.normalize(items, dim=-1) if self.config.loss == "ccl" else items

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
