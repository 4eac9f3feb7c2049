"""SASRec: causal self-attention over the item sequence, next item from the last position.

Paper: Kang & McAuley, "Self-Attentive Sequential Recommendation" (ICDM 2018). Learned absolute
positions, causal attention blocks, the item embedding shared between input and output, PAD masked.
NOTE deviations: pre-LN blocks (LayerNorm before attention/FFN on the whole residual stream, plus a
final LayerNorm; the paper's code normalises only the queries) with a 4*D GELU feed-forward
(the paper: D -> D ReLU); the loss is configurable (``models._losses``: full softmax CE by
default, which beats the paper's BCE with one negative in later re-evaluations); history items
are not excluded from BCE negatives. Positions count from the right: batches are left-padded,
so the most recent item always has position max_len - 1. The token-wise layers (LayerNorm,
projections, feed-forward, dropout) run on the batch's real items only, packed as (N, D); only
attention sees the padded (B, L) layout. Most histories are far shorter than max_len, so this
saves most of the compute without changing any output. ``item_repr`` picks the item vectors
(``_layers.ContentItems``): ``id`` embeddings, projected ``content`` vectors (items never seen in
training still get a representation), or a ``gated`` mix; input and output share them. It and the
other cold-tail knobs closing ``SASRecConfig`` are experiment options (BENCHMARKS 'item
representation ablation'); their defaults are the plain id model.

Example:
    >>> model = SASRec(SASRecConfig(n_items=100, max_len=20, dim=32))
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
from genrec.models._layers import (ContentItems, CountPrior, check_item_repr,
                                   check_logit_adjust)
from genrec.models._losses import LOSSES, sequence_loss

__all__ = ["SASRecConfig", "SASRec"]


@dataclass
class SASRecConfig:
    n_items: int = 0          # number of real items, filled from the data (ids 1..n_items, 0 = PAD)
    max_len: int = 50         # inputs keep the most recent max_len items (left truncation)
    dim: int = 64             # D: item, position and hidden size
    n_layers: int = 2         # attention blocks
    n_heads: int = 1          # H: attention heads (dim must divide by it)
    dropout: float = 0.2      # on embeddings, attention weights and residual branches
    loss: str = "ce"          # ce | sampled | bce | infonce (see genrec.models._losses)
    n_negatives: int = 128    # sampled / infonce: uniform negatives shared by the batch
    temperature: float = 1.0  # logits / temperature (infonce: cosine / temperature, HSTU 0.05)
    negatives: str = "uniform"  # sampled / infonce: uniform | in_batch
    logq: bool = False        # sampled / infonce: subtract log q(item) from the logits

    # -- experiment knobs: cold-tail item representation; see BENCHMARKS 'item representation
    # ablation' (experiments/cold_tail.py). The defaults keep the plain id model.
    item_repr: str = "id"     # id | content | gated (item vectors: see genrec.models._layers)
    content: str = ""         # content/gated: encoder name in the dataset's item_vectors, or a
                              # .parquet/.npz/.npy file keyed by raw item id (read by the builder)
    content_dim: int = 0      # C: width of the content vectors, filled by the builder
    count_gate: bool = False  # gated: the gate also sees the item's training count (cold tail)
    id_dropout: float = 0.0   # gated: P(an item is its content vector alone) per training step
    logit_adjust: float = 0.0  # tau > 0: the loss sees logits + tau * log(1 + training count),
                               # ranking the plain scores, so rare items rank higher (not bce)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"sasrec: loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        check_item_repr("sasrec", self.item_repr, self.count_gate, self.id_dropout)
        if self.dim % self.n_heads:
            raise ValueError(f"sasrec: dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if (min(self.max_len, self.dim, self.n_layers, self.n_heads) < 1
                or min(self.n_items, self.content_dim) < 0):
            raise ValueError(f"sasrec: max_len, dim, n_layers, n_heads must be >= 1 and n_items, "
                             f"content_dim >= 0, got {self}")
        check_logit_adjust("sasrec", self.logit_adjust, self.loss)
        if not 0 <= self.dropout < 1 or self.temperature <= 0:
            raise ValueError(f"sasrec: need 0 <= dropout < 1 and temperature > 0, got "
                             f"dropout={self.dropout}, temperature={self.temperature}")


class CausalSelfAttention(nn.Module):
    def __init__(self, c: SASRecConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = c.n_heads, c.dropout
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)

    def forward(self, t: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """(N, D) packed real tokens -> (N, D); ``real`` (B, L) says where they sit."""
        (B, L), D = real.shape, t.shape[-1]
        packed = self.qkv(t)  # (N, 3D)
        qkv = packed.new_zeros(B, L, 3 * D)
        qkv[real] = packed  # PAD keys are masked out by ``allowed``
        # (B, L, 3D) -> 3 x (B, H, L, D/H)
        q, k, v = qkv.view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, D)[real])  # (B, H, L, D/H) -> (N, D)


class Block(nn.Module):
    def __init__(self, c: SASRecConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn = CausalSelfAttention(c)
        self.ffn = nn.Sequential(nn.Linear(c.dim, 4 * c.dim), nn.GELU(), nn.Linear(4 * c.dim, c.dim))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, t: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        t = t + self.drop(self.attn(self.ln1(t), real, allowed))  # (N, D)
        return t + self.drop(self.ffn(self.ln2(t)))


class SASRec(nn.Module):
    kind = "sequence"  # fed SeqBatch histories (genrec.runs.kinds.sequence)

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        # content-only models have no id embedding: every item is its projected vector
        self.item_emb = (nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
                         if c.item_repr != "content" else None)
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.dim)
        self.apply(self._init)
        # after _init: the content module keeps its own initialisation (gates start at 0.5)
        self.content = (ContentItems(c.n_items, c.content_dim, c.dim, c.item_repr == "gated",
                                     c.count_gate, c.id_dropout)
                        if c.item_repr != "id" else None)
        self.prior = CountPrior(c.n_items, c.logit_adjust) if c.logit_adjust else None

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])

    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None,
                    counts: torch.Tensor | None = None) -> None:
        """Item content vectors (n_items + 1, content_dim) for item_repr content/gated;
        ``counts`` (n_items + 1,): training interactions per item, for ``count_gate``."""
        if self.content is None:
            raise ValueError("sasrec: item_repr='id' takes no content vectors")
        self.content.set_content(vectors, present, counts)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """Training interactions per item (n_items + 1,), for ``logit_adjust``."""
        if self.prior is None:
            raise ValueError("sasrec: set_item_counts is for logit_adjust > 0")
        self.prior.set_counts(counts)

    def encode(self, items: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, D) hidden states (PAD positions: unused).

        ``table``: ``item_vectors()``, when the caller already has them."""
        B, L = items.shape
        if L > self.config.max_len:
            raise ValueError(f"sasrec: got sequences of length {L} > max_len={self.config.max_len}; "
                             f"build batches with the model's max_len")
        real = items > 0  # (B, L)
        pos = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        table = self.item_vectors() if table is None else table
        # the N real items of the batch, packed row by row: (N, D)
        t = table[items[real]] * math.sqrt(self.config.dim) + self.pos_emb(pos.expand(B, L)[real])
        t = self.drop(t)
        # query i sees keys j <= i that are real items; it always sees itself, so a PAD query
        # (whose output is discarded) never has an empty row that would turn softmax into NaN
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=items.device)
        allowed = causal & (real[:, None, :] | eye)  # (B, L, L)
        for block in self.blocks:
            t = block(t, real, allowed)
        x = t.new_zeros(B, L, t.shape[-1])
        x[real] = t
        return self.ln_f(x)  # (B, L, D); PAD positions hold ln_f(0)

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) item vectors, shared by the input and the output side."""
        if self.content is None:
            return self.item_emb.weight
        return self.content(self.item_emb.weight if self.item_emb is not None else None)

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Next-item loss at every position with a target (``batch.targets > 0``)."""
        if batch.targets is None:
            raise ValueError("sasrec.loss needs a training batch with targets (train_batches)")
        table = self.item_vectors()
        h = self.encode(batch.items, table)  # (B, L, D)
        mask = batch.targets > 0
        c = self.config
        return sequence_loss(c.loss, h[mask], batch.targets[mask], table,
                             n_negatives=c.n_negatives, temperature=c.temperature,
                             negatives=c.negatives, logq=c.logq,
                             prior=self.prior() if self.prior is not None else None)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1) scores for the item after the last input; column 0 (PAD) is -inf."""
        items = batch.items
        if items.shape[1] == 0:  # no history at all (a cold user): one PAD column
            items = items.new_zeros(items.shape[0], 1)
        table = self.item_vectors()
        h = self.encode(items, table)[:, -1]  # (B, D): the last column is the most recent item
        if self.config.loss == "infonce":  # rank in the geometry the loss trained
            h, table = F.normalize(h, dim=-1), F.normalize(table, dim=-1)
        scores = h @ table.T / self.config.temperature  # (B, N + 1)
        scores[:, 0] = -math.inf
        return scores
