"""Two-tower retrieval model: a user tower over the history, an item tower over id + text.

Papers: Covington et al., "Deep Neural Networks for YouTube Recommendations" (RecSys 2016: the
user is a pooled bag of watched items, trained as next-item classification), and Yi et al.,
"Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations" (RecSys 2019:
in-batch sampled softmax with the logQ correction). NOTE what we do:
- user tower: the history is pooled by a ``mean`` or an ``attention`` (softmax over a learned
  item importance plus a learned recency bias), then u = pooled + MLP([pooled; user features]);
  the residual keeps plain pooling reachable. A user without history gets u = MLP(0 [; features])
  (``genrec.pipeline.recall`` serves such users the popularity channel instead).
  User features are categorical columns of users.parquet (``user_features``), coded by
  ``genrec.runs`` (0 = unknown value) and held in a buffer, so a reloaded model needs no table.
- item tower: ``_layers.ContentItems`` (``item_repr`` id | content | gated), shared with the
  history side, so an item's vector is the same wherever it appears.
- training: every position of a ``SeqBatch`` is one example (the prefix up to it predicts the
  next item), the negatives are the batch's own targets (optionally a random ``n_negatives``
  subset) and logits are corrected by -log q with q the item's share of the batch's targets.
  At serving the correction is dropped: ``score`` is the plain (cosine / temperature) product,
  which is what ``user_vectors`` x ``item_vectors`` gives to a faiss inner-product index.

Example:
    >>> model = TwoTower(TwoTowerConfig(n_items=100, max_len=20, dim=32))
    >>> batch = next(train_batches(split, 20, batch_size=64, seed=0, epoch=0))  # doctest: +SKIP
    >>> model.loss(batch).backward(); model.score(batch).shape   # (64, 101)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import SeqBatch
from genrec.models._layers import ContentItems, check_item_repr
from genrec.models._losses import in_batch_negatives, sampled_softmax

__all__ = ["TwoTowerConfig", "TwoTower", "POOLINGS"]

POOLINGS = ("mean", "attention")


@dataclass
class TwoTowerConfig:
    n_items: int = 0            # number of real items, filled from the data (0 = PAD)
    max_len: int = 50           # the user tower pools the most recent max_len items
    dim: int = 64               # D: user and item vector size
    pooling: str = "mean"       # mean | attention (item importance + recency bias)
    dropout: float = 0.1        # on the pooled history inside the user MLP
    temperature: float = 0.2    # logits = cosine / temperature; 0.05 stalled on ML-100k (P1)
    normalize: bool = True      # L2-normalise both towers (cosine); False = raw inner product
    logq: bool = True           # subtract log q(item) from the in-batch logits (Yi et al. 2019)
    n_negatives: int = 1024     # in-batch negatives per step: 0 = every target in the batch,
                                # else a random subset of that many (bounds the (N, N) logits)
    item_repr: str = "id"       # id | content | gated (item vectors: see genrec.models._layers)
    content: str = ""           # content/gated: encoder name in the dataset's item_vectors, or a
                                # .parquet/.npz/.npy file keyed by raw item id (read by the builder)
    content_dim: int = 0        # C: width of the content vectors, filled by the builder
    user_features: tuple[str, ...] = ()  # categorical users.parquet columns for the user tower
    user_feature_dim: int = 16  # embedding size of each user feature
    n_users: int = 0            # number of users, filled from the data (user feature table rows)
    user_cards: tuple[int, ...] = ()  # values per user feature (+1 for unknown), from the builder

    def validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"two_tower: pooling {self.pooling!r} is not one of "
                             f"{', '.join(POOLINGS)}")
        check_item_repr("two_tower", self.item_repr)
        if min(self.max_len, self.dim, self.user_feature_dim) < 1 or min(
                self.n_items, self.content_dim, self.n_negatives, self.n_users) < 0:
            raise ValueError(f"two_tower: max_len, dim, user_feature_dim must be >= 1 and "
                             f"n_items, content_dim, n_negatives, n_users >= 0, got {self}")
        if not 0 <= self.dropout < 1 or self.temperature <= 0:
            raise ValueError(f"two_tower: need 0 <= dropout < 1 and temperature > 0, got "
                             f"dropout={self.dropout}, temperature={self.temperature}")
        if self.user_cards and len(self.user_cards) != len(self.user_features):
            raise ValueError(f"two_tower: user_cards {list(self.user_cards)} must give one "
                             f"cardinality per user feature {list(self.user_features)}")


class HistoryPooling(nn.Module):
    """(B, L, D) item vectors of left-padded histories -> (B, L, D): at column t the pooled
    prefix 0..t (causal), so one pass yields the user vector after every position."""

    def __init__(self, c: TwoTowerConfig) -> None:
        super().__init__()
        self.attention = c.pooling == "attention"
        if self.attention:
            self.importance = nn.Sequential(nn.Linear(c.dim, c.dim), nn.Tanh(),
                                            nn.Linear(c.dim, 1, bias=False))
            self.recency = nn.Parameter(torch.zeros(c.max_len))  # bias by steps back from t

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        t = torch.arange(L, device=x.device)
        back = t[:, None] - t[None, :]                  # (L, L): steps from query t back to key i
        allowed = (back >= 0)[None] & real[:, None, :]  # (B, L, L): real items at or before t
        if self.attention:
            logits = self.importance(x).squeeze(-1)[:, None, :] + self.recency[back.clamp(min=0)]
        else:
            logits = x.new_zeros(B, L, L)
        # a prefix of PAD only has no item to attend to: its weights are all zero (pooled = 0)
        empty = ~allowed.any(-1, keepdim=True)  # (B, L, 1)
        weights = torch.softmax(logits.masked_fill(~allowed, -math.inf).masked_fill(empty, 0.0), -1)
        return weights.masked_fill(empty, 0.0) @ x  # (B, L, L) @ (B, L, D) -> (B, L, D)


class TwoTower(nn.Module):
    kind = "sequence"  # fed SeqBatch histories (genrec.runs.kinds.sequence)

    def __init__(self, config: TwoTowerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.item_emb = (nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
                         if c.item_repr != "content" else None)
        self.pool = HistoryPooling(c)
        n_feat = len(c.user_cards)
        self.user_feats = nn.ModuleList(nn.Embedding(card, c.user_feature_dim)
                                        for card in c.user_cards)
        self.register_buffer("user_codes", torch.zeros(c.n_users if n_feat else 0, n_feat,
                                                       dtype=torch.int64))
        width = c.dim + n_feat * c.user_feature_dim
        self.user_mlp = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(width, c.dim), nn.GELU(),
                                      nn.Linear(c.dim, c.dim))
        self.apply(self._init)
        # after _init: the content module keeps its own initialisation (gates start at 0.5)
        self.content = (ContentItems(c.n_items, c.content_dim, c.dim, c.item_repr == "gated")
                        if c.item_repr != "id" else None)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.1)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Item content vectors (n_items + 1, content_dim) for item_repr content/gated."""
        if self.content is None:
            raise ValueError("two_tower: item_repr='id' takes no content vectors")
        self.content.set_content(vectors, present)

    @torch.no_grad()
    def set_user_features(self, codes: torch.Tensor) -> None:
        """(n_users, F) int codes of the user features; 0 = unknown, j < user_cards[f]."""
        codes = torch.as_tensor(codes, dtype=torch.int64)
        if codes.shape != self.user_codes.shape:
            raise ValueError(f"user feature codes must be (n_users, n_features) = "
                             f"{tuple(self.user_codes.shape)}, got {tuple(codes.shape)}")
        cards = torch.tensor(list(self.config.user_cards), dtype=torch.int64)
        if len(codes) and ((codes < 0) | (codes >= cards)).any():
            raise ValueError(f"user feature codes must lie in 0..card-1 with cards "
                             f"{list(self.config.user_cards)}; re-code the features")
        self.user_codes.copy_(codes)

    # ---- item tower ----------------------------------------------------------------------------
    def _item_table(self) -> torch.Tensor:
        if self.content is None:
            return self.item_emb.weight
        return self.content(self.item_emb.weight if self.item_emb is not None else None)

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) retrieval vectors (unit length when ``normalize``); row 0 is PAD."""
        table = self._item_table()
        return F.normalize(table, dim=-1) if self.config.normalize else table

    # ---- user tower ----------------------------------------------------------------------------
    def _user_states(self, batch: SeqBatch, table: torch.Tensor) -> torch.Tensor:
        """(B, L, D) user vectors after every position of the left-padded history."""
        items = batch.items
        if items.shape[1] > self.config.max_len:
            raise ValueError(f"two_tower: got histories of length {items.shape[1]} > max_len="
                             f"{self.config.max_len}; build batches with the model's max_len")
        if items.shape[1] == 0:  # no history at all (a cold user): one PAD column
            items = items.new_zeros(items.shape[0], 1)
        real = items > 0
        pooled = self.pool(table[items] * real[..., None], real)  # (B, L, D)
        parts = [pooled]
        if len(self.user_feats):
            codes = self.user_codes[batch.users]  # (B, F)
            feats = torch.cat([emb(codes[:, f]) for f, emb in enumerate(self.user_feats)], -1)
            parts.append(feats[:, None, :].expand(-1, pooled.shape[1], -1))  # (B, L, F*Df)
        u = pooled + self.user_mlp(torch.cat(parts, dim=-1))
        return F.normalize(u, dim=-1) if self.config.normalize else u

    def user_vectors(self, batch: SeqBatch) -> torch.Tensor:
        """(B, D) retrieval vectors of the users' whole histories (the last column)."""
        return self._user_states(batch, self._item_table())[:, -1]

    # ---- the model contract --------------------------------------------------------------------
    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """In-batch sampled softmax (logQ-corrected) at every position with a target."""
        if batch.targets is None:
            raise ValueError("two_tower.loss needs a training batch with targets (train_batches)")
        c = self.config
        table = self._item_table()
        mask = batch.targets > 0
        h = self._user_states(batch, table)[mask]  # (N, D)
        targets = batch.targets[mask]              # (N,)
        negatives, log_q = in_batch_negatives(targets, c.n_items)
        if c.n_negatives and len(negatives) > c.n_negatives:
            # a uniform subset of the batch's targets is still drawn in proportion to batch
            # frequency, so log_q (counts / N) stays the right correction
            negatives = negatives[torch.randperm(len(negatives), device=h.device)[:c.n_negatives]]
        items = F.normalize(table, dim=-1) if c.normalize else table
        return sampled_softmax(h, targets, items, negatives, log_q if c.logq else None,
                               c.temperature)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1) exact scores u . v / temperature; column 0 (PAD) is -inf."""
        scores = self.user_vectors(batch) @ self.item_vectors().T / self.config.temperature
        scores[:, 0] = -math.inf
        return scores
