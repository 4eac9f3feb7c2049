"""HSTU: a causal stack of Hierarchical Sequential Transduction Units over a user's item sequence.

Reference: Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers
for Generative Recommendations" (ICML 2024, arXiv:2402.17152); meta-recsys/generative-recommenders.
Deviations: the time bias buckets |t_i - t_j| between the query's own event and each key (the public
code uses the query's *next* event time, i.e. the target's); sequences are left-padded, so absolute
positions count back from the newest item; heads share one relative bias; attention is divided by
the constant max_len (the public code's padded n), so extra padding never changes an output.
``item_repr`` picks the item vectors (``_layers.ContentItems``): ``id`` embeddings, projected
``content`` vectors (items never seen in training still get one), or a ``gated`` mix of both. It and
the other cold-tail knobs closing ``HSTUConfig`` are experiment options (BENCHMARKS 'item
representation ablation'); their defaults are the plain id model.

One block over the residual stream x (B, L, D), N() a LayerNorm without learned scale or shift:
    U, V, Q, K = split(SiLU(N(x) W))                      one projection, four (B, L, D) views
    A[i, j]    = SiLU(Q_i . K_j + rab(i, j)) / max_len    only for keys j <= i that are not PAD
    rab(i, j)  = pos_bias[i - j] + time_bias[bucket(|t_i - t_j|)]
    bucket(dt) = min(floor(ln(max(dt, 1)) / 0.301), n_time_buckets)
    x'         = x + Linear(Dropout(N(A V) * U))

Example:
    >>> import torch
    >>> m = HSTU(HSTUConfig(n_items=5, max_len=4))
    >>> items = torch.tensor([[0, 1, 2, 3]])
    >>> m.eval().score(SeqBatch(torch.tensor([0]), items, None, items * 100)).shape
    torch.Size([1, 6])
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
from genrec.models import _losses as losses

__all__ = ["HSTUConfig", "HSTU", "time_buckets", "hstu_attention", "hstu_attention_reference"]

BUCKET_WIDTH = 0.301  # natural-log width of one time bucket (the public code's constant)


@dataclass
class HSTUConfig:
    n_items: int = 0  # number of real items 1..n_items, filled from the data (0 = PAD)
    max_len: int = 50  # newest items kept per sequence; also the attention divisor
    dim: int = 64  # model and embedding width D (the HSTU paper uses 50 on ML-1M)
    n_layers: int = 2  # HSTU blocks
    n_heads: int = 1  # attention heads; dim must divide by it
    dropout: float = 0.2  # on the input embeddings and before each block's output projection
    loss: str = "sampled"  # ce | sampled | bce | infonce
    n_negatives: int = 128  # sampled / infonce: negatives shared by the batch (infonce: 0 = all)
    negatives: str = "uniform"  # sampled / infonce: uniform | in_batch
    logq: bool = False  # sampled / infonce: subtract log q(item) from the logits
    temperature: float = 0.05  # logits are cosine / temperature when l2_norm is on
    l2_norm: bool = True  # L2-normalise outputs and item embeddings before dot products
    n_time_buckets: int = 128  # log-bucketed time gaps in the attention bias; 0 disables

    # -- experiment knobs: cold-tail item representation; see BENCHMARKS 'item representation
    # ablation' (experiments/cold_tail.py). The defaults keep the plain id model.
    item_repr: str = "id"  # id | content | gated (item vectors: see genrec.models._layers)
    content: str = ""  # content/gated: encoder name in the dataset's item_vectors, or a
    # .parquet/.npz/.npy file keyed by raw item id (read by the builder in genrec.runs)
    content_dim: int = 0  # C: width of the content vectors, filled by the builder
    count_gate: bool = False  # gated: the gate also sees the item's training count (cold tail)
    id_dropout: float = 0.0  # gated: P(an item is its content vector alone) per training step
    logit_adjust: float = 0.0  # tau > 0: the loss sees logits + tau * log(1 + training count),
    # ranking the plain scores, so rare items rank higher (softmax losses only, not bce)

    def validate(self) -> None:
        if self.loss not in losses.LOSSES:
            raise ValueError(f"hstu: loss {self.loss!r} is not one of {list(losses.LOSSES)}")
        if self.negatives not in ("uniform", "in_batch"):
            raise ValueError(f"hstu: negatives {self.negatives!r} is not 'uniform' or 'in_batch'")
        check_item_repr("hstu", self.item_repr, self.count_gate, self.id_dropout)
        check_logit_adjust("hstu", self.logit_adjust, self.loss)
        if self.dim % self.n_heads:
            raise ValueError(f"hstu: dim={self.dim} is not divisible by n_heads={self.n_heads}; "
                             f"pick dim as a multiple of n_heads")
        for name in ("n_items", "n_negatives", "n_time_buckets", "content_dim"):
            if getattr(self, name) < 0:
                raise ValueError(f"hstu: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_len", "dim", "n_layers", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"hstu: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or self.temperature <= 0:
            raise ValueError(f"hstu: need 0 <= dropout < 1 and temperature > 0, got "
                             f"dropout={self.dropout}, temperature={self.temperature}")


def time_buckets(timestamps: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """(B, L) int64 -> (B, L, L) int64 bucket of |t_i - t_j| (see the module docstring)."""
    gap = (timestamps[:, :, None] - timestamps[:, None, :]).abs().clamp(min=1)  # (B, L, L)
    # float64: seconds up to 2^53 are exact, so bucket edges match the math.log reference
    return torch.floor(torch.log(gap.double()) / BUCKET_WIDTH).long().clamp(max=n_buckets)


def hstu_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor,
                   pos_bias: torch.Tensor, time_bias: torch.Tensor | None,
                   buckets: torch.Tensor | None, n: int) -> torch.Tensor:
    """Causal pointwise attention. q, k, v: (B, H, L, D/H); valid: (B, L) bool, False at PAD;
    pos_bias: (>= L,) by distance i - j; time_bias: (n_buckets + 1,) indexed by ``buckets``
    (B, L, L), both optional. Returns (B, L, D) with zero rows at PAD queries."""
    B, H, L, _ = q.shape
    pos = torch.arange(L, device=q.device)
    dist = pos[:, None] - pos[None, :]  # (L, L): i - j, negative above the diagonal
    rab = pos_bias[dist.clamp(min=0)].expand(B, L, L)
    if time_bias is not None and buckets is not None:
        rab = rab + time_bias[buckets]
    keep = (dist >= 0) & valid[:, None, :] & valid[:, :, None]  # (B, L, L) query i, key j
    attn = F.silu(q @ k.transpose(-1, -2) + rab[:, None]) / n  # (B, H, L, L)
    attn = attn * keep[:, None]
    return (attn @ v).transpose(1, 2).reshape(B, L, -1)  # (B, H, L, D/H) -> (B, L, D)


def hstu_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             valid: torch.Tensor, pos_bias: torch.Tensor,
                             time_bias: torch.Tensor | None, timestamps: torch.Tensor | None,
                             n: int) -> torch.Tensor:
    """The same attention one example, head, query and key at a time (slow; for tests)."""
    B, H, L, Dh = q.shape
    out = torch.zeros(B, L, H, Dh, dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(L):
                if not valid[b, i]:
                    continue
                for j in range(i + 1):
                    if not valid[b, j]:
                        continue
                    bias = pos_bias[i - j]
                    if time_bias is not None and timestamps is not None:
                        gap = max(abs(int(timestamps[b, i]) - int(timestamps[b, j])), 1)
                        bucket = min(math.floor(math.log(gap) / BUCKET_WIDTH), len(time_bias) - 1)
                        bias = bias + time_bias[bucket]
                    weight = F.silu(torch.dot(q[b, h, i], k[b, h, j]) + bias) / n
                    out[b, i, h] += weight * v[b, h, j]
    return out.reshape(B, L, H * Dh)


class HSTUBlock(nn.Module):
    def __init__(self, c: HSTUConfig) -> None:
        super().__init__()
        self.n_heads, self.max_len = c.n_heads, c.max_len
        self.uvqk = nn.Linear(c.dim, 4 * c.dim, bias=False)
        nn.init.normal_(self.uvqk.weight, std=0.02)
        self.out = nn.Linear(c.dim, c.dim)
        nn.init.xavier_uniform_(self.out.weight)
        self.pos_bias = nn.Parameter(torch.randn(c.max_len) * 0.02)
        self.time_bias = (nn.Parameter(torch.randn(c.n_time_buckets + 1) * 0.02)
                          if c.n_time_buckets else None)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor,
                buckets: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        uvqk = F.silu(self.uvqk(F.layer_norm(x, (D,))))  # (B, L, 4D)
        u, v, q, k = uvqk.split(D, dim=-1)
        # (B, L, D) -> (B, H, L, D/H); U gates the concatenated heads, so it stays whole
        v, q, k = (t.reshape(B, L, self.n_heads, -1).transpose(1, 2) for t in (v, q, k))
        a = hstu_attention(q, k, v, valid, self.pos_bias, self.time_bias, buckets, self.max_len)
        return x + self.out(self.dropout(F.layer_norm(a, (D,)) * u))


class HSTU(nn.Module):
    kind = "sequence"  # fed SeqBatch histories (genrec.runs.kinds.sequence)

    def __init__(self, config: HSTUConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.item_emb = None  # content-only: every item is its projected content vector
        if c.item_repr != "content":
            self.item_emb = nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
            nn.init.normal_(self.item_emb.weight, std=0.02)
            nn.init.zeros_(self.item_emb.weight[0])
        self.content = (ContentItems(c.n_items, c.content_dim, c.dim, c.item_repr == "gated",
                                     c.count_gate, c.id_dropout)
                        if c.item_repr != "id" else None)
        self.prior = CountPrior(c.n_items, c.logit_adjust) if c.logit_adjust else None
        self.pos_emb = nn.Embedding(c.max_len, c.dim)  # index 0 = newest item
        nn.init.normal_(self.pos_emb.weight, std=c.dim**-0.5)
        self.dropout = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(HSTUBlock(c) for _ in range(c.n_layers))

    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None,
                    counts: torch.Tensor | None = None) -> None:
        """Item content vectors (n_items + 1, content_dim) for item_repr content/gated;
        ``counts`` (n_items + 1,): training interactions per item, for ``count_gate``."""
        if self.content is None:
            raise ValueError("hstu: item_repr='id' takes no content vectors")
        self.content.set_content(vectors, present, counts)

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """Training interactions per item (n_items + 1,), for ``logit_adjust``."""
        if self.prior is None:
            raise ValueError("hstu: set_item_counts is for logit_adjust > 0")
        self.prior.set_counts(counts)

    def encode(self, items: torch.Tensor, timestamps: torch.Tensor | None,
               table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) left-padded items -> (B, L, D) hidden state after each position.

        ``table``: ``item_vectors()``, when the caller already has them."""
        c = self.config
        if c.n_time_buckets and timestamps is None:
            raise ValueError(f"HSTU with n_time_buckets={c.n_time_buckets} needs "
                             f"batch.timestamps; build batches with timestamps or set "
                             f"n_time_buckets=0")
        valid = items > 0  # (B, L)
        L = items.shape[1]
        back = torch.arange(L - 1, -1, -1, device=items.device)  # (L,): L-1 .. 0, newest = 0
        table = self.item_vectors() if table is None else table
        x = table[items] * math.sqrt(c.dim) + self.pos_emb(back)  # (B, L, D)
        x = self.dropout(x) * valid[..., None]
        buckets = time_buckets(timestamps, c.n_time_buckets) if c.n_time_buckets else None
        for block in self.blocks:
            x = block(x, valid, buckets)
        return F.normalize(x, dim=-1) if self._cosine else x

    @property
    def _cosine(self) -> bool:
        """Score by cosine: asked for, or implied by InfoNCE (which normalises in the loss)."""
        return self.config.l2_norm or self.config.loss == "infonce"

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D) raw item vectors, shared by the input and the output side."""
        if self.content is None:
            return self.item_emb.weight
        return self.content(self.item_emb.weight if self.item_emb is not None else None)

    def item_table(self, raw: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, D) output item vectors (of ``raw``, default ``item_vectors()``); row 0 is
        PAD."""
        w = self.item_vectors() if raw is None else raw
        return F.normalize(w, dim=-1) if self._cosine else w

    def _truncated(self, batch: SeqBatch) -> SeqBatch:
        """Keep the newest max_len columns, as SASRec does; older items are dropped."""
        m = self.config.max_len
        if batch.items.shape[1] <= m:
            return batch
        cut = lambda t: None if t is None else t[:, -m:]  # noqa: E731
        return SeqBatch(batch.users, batch.items[:, -m:], cut(batch.targets), cut(batch.timestamps))

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Scalar next-item loss averaged over every position whose target is not PAD."""
        batch = self._truncated(batch)
        if batch.targets is None:
            raise ValueError("HSTU.loss needs batch.targets (next item per position); "
                             "build training batches with targets")
        raw = self.item_vectors()
        hidden = self.encode(batch.items, batch.timestamps, raw)  # (B, L, D)
        keep = batch.targets > 0
        hidden, targets = hidden[keep], batch.targets[keep]  # (N, D), (N,)
        c = self.config
        # cosines live in [-1, 1]: every loss sees cosine / temperature, as in the paper
        t = c.temperature if self._cosine else 1.0
        if c.loss == "bce":  # bce takes no temperature; scaling one side is the same thing
            hidden, t = hidden / t, 1.0
        return losses.sequence_loss(c.loss, hidden, targets, self.item_table(raw), c.n_negatives,
                                    temperature=t, negatives=c.negatives, logq=c.logq,
                                    prior=self.prior() if self.prior is not None else None)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1) scores for the item after each sequence; column 0 (PAD) is -inf."""
        batch = self._truncated(batch)
        raw = self.item_vectors()
        last = self.encode(batch.items, batch.timestamps, raw)[:, -1]  # (B, D): newest position
        scores = last @ self.item_table(raw).T  # (B, N + 1)
        scores[:, 0] = -torch.inf
        return scores
