"""Knob-free pieces shared by model files (kept small on purpose; see STYLE.md #5).

``ContentItems`` turns frozen item content vectors (text/image encoders, ``genrec.features``)
into item representations of the model's width, alone or gated with the id embeddings:

    content:  e = proj(c)                                      proj = Linear -> GELU -> Linear
    gated:    g = sigmoid(W [e_id; proj(c)]),  e = g * e_id + (1 - g) * proj(c)   (per dimension)

Two options of the gated mode, for the items with few training interactions (the cold tail):
``count_gate`` also feeds the gate log(1 + n) / log(1 + n_max), n = the item's training count
(``set_content(..., counts=)``), so the mix can depend on how well the id vector was trained;
``id_dropout`` p replaces, during training, each item's mix by its content vector alone with
probability p (DropoutNet, Volkovs et al. 2017), so the content path must carry an item by itself.

Items without a vector (``present`` False: missing from the vector file or encoded from nothing)
hold a zero content vector. In ``gated`` mode their gate is fixed to 1, so they use their id
embedding alone. In ``content`` mode they all share proj(0), one learned "unknown item" vector,
so they are indistinguishable from each other (give them vectors to tell them apart).

``CountPrior`` holds tau * log(1 + n) per item, the logit adjustment a sequence model's loss adds
in training when its config sets ``logit_adjust = tau`` (see ``genrec.models._losses``): the
softmax explains popularity with this fixed term, so the scores the model ranks with place rare
items higher. Filled by ``set_counts`` (the builder passes the split's training counts).

``id_embeddings`` and ``fold_in_scores`` serve the user/item factor models (BPR, LightGCN): their
embedding tables, and scoring a user known only by an item history.

The content vectors are a buffer: frozen, saved in the model's state_dict (a reloaded model needs
no vector file) and moved with ``.to(device)``. The model builder fills them with ``set_content``.

Example:
    >>> fusion = ContentItems(n_items=3, content_dim=8, dim=4, gated=True)
    >>> fusion.set_content(torch.randn(4, 8))
    >>> fusion(torch.randn(4, 4)).shape
    torch.Size([4, 4])
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["ITEM_REPRS", "check_item_repr", "check_logit_adjust", "ContentItems", "CountPrior",
           "id_embeddings", "fold_in_scores"]

ITEM_REPRS = ("id", "content", "gated")  # the ``item_repr`` choices of sequence model configs


def check_item_repr(model: str, item_repr: str, count_gate: bool = False,
                    id_dropout: float = 0.0) -> None:
    """The config checks of ``item_repr`` and the gated options, for every model that has them
    (``model`` names it in the error)."""
    if item_repr not in ITEM_REPRS:
        raise ValueError(f"{model}: item_repr {item_repr!r} is not one of {', '.join(ITEM_REPRS)}")
    if (count_gate or id_dropout) and item_repr != "gated":
        raise ValueError(f"{model}: count_gate / id_dropout need item_repr='gated', got "
                         f"item_repr={item_repr!r}")
    if not 0 <= id_dropout < 1:
        raise ValueError(f"{model}: id_dropout must be in [0, 1), got {id_dropout}")


def check_logit_adjust(model: str, logit_adjust: float, loss: str) -> None:
    """The config check of ``logit_adjust`` (``CountPrior``), for every model that has it."""
    if logit_adjust < 0 or (logit_adjust and loss == "bce"):
        raise ValueError(f"{model}: logit_adjust must be >= 0 and needs a softmax loss (ce, "
                         f"sampled, infonce), got {logit_adjust} with loss={loss!r}")


class ContentItems(nn.Module):
    def __init__(self, n_items: int, content_dim: int, dim: int, gated: bool,
                 count_gate: bool = False, id_dropout: float = 0.0) -> None:
        super().__init__()
        check_item_repr("ContentItems", "gated" if gated else "content", count_gate, id_dropout)
        if content_dim < 1:
            raise ValueError(f"content vectors need content_dim >= 1, got {content_dim}; the "
                             f"builder fills it from the vector file (set params.content)")
        self.register_buffer("vectors", torch.zeros(n_items + 1, content_dim))
        self.register_buffer("present", torch.zeros(n_items + 1, dtype=torch.bool))
        self.proj = nn.Sequential(nn.Linear(content_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.id_dropout = id_dropout
        if count_gate:  # log(1 + n) / log(1 + n_max) per item, filled by set_content
            self.register_buffer("count_feature", torch.full((n_items + 1, 1), math.nan))
        self.count_gate = count_gate
        self.gate = nn.Linear(2 * dim + count_gate, dim) if gated else None
        if self.gate is not None:  # every gate starts at exactly 0.5: an even mix
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

    @torch.no_grad()
    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None,
                    counts: torch.Tensor | None = None) -> None:
        """Load (n_items + 1, C) vectors aligned to item_idx (row 0 = PAD, ignored).

        ``present`` (n_items + 1,) bool marks real vectors; by default every non-zero row.
        ``counts`` (n_items + 1,) training interactions per item: needed with ``count_gate``.
        """
        if self.count_gate:
            if counts is None:
                raise ValueError("count_gate needs the items' training counts: "
                                 "set_content(vectors, present, counts=...)")
            counts = torch.as_tensor(counts, dtype=torch.float32).reshape(-1)
            if counts.shape[0] != self.vectors.shape[0] or (counts < 0).any():
                raise ValueError(f"counts must be (n_items + 1,) = ({self.vectors.shape[0]},) "
                                 f"and >= 0, got shape {tuple(counts.shape)}")
            feature = torch.log1p(counts) / math.log1p(max(float(counts.max()), 1.0))
            self.count_feature.copy_(feature[:, None])
        vectors = torch.as_tensor(vectors, dtype=torch.float32)
        if vectors.shape != self.vectors.shape:
            raise ValueError(f"content vectors must be (n_items + 1, content_dim) = "
                             f"{tuple(self.vectors.shape)}, got {tuple(vectors.shape)}; align them "
                             f"to item_idx with row 0 for PAD")
        if not torch.isfinite(vectors).all():
            raise ValueError("content vectors contain NaN/inf; re-encode the items")
        if present is None:
            present = vectors.abs().sum(1) > 0
        present = torch.as_tensor(present, dtype=torch.bool).clone()
        present[0] = False
        self.vectors.copy_(vectors * present[:, None])  # absent items hold exactly zero
        self.present.copy_(present)

    def forward(self, id_table: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items + 1, D) item vectors; ``id_table`` (n_items + 1, D) is needed when gated."""
        content = self.proj(self.vectors)  # (N + 1, C) -> (N + 1, D)
        if self.gate is None:
            return content
        if id_table is None:
            raise ValueError("gated item vectors need the id embedding table")
        inputs = [id_table, content]
        if self.count_gate:
            if torch.isnan(self.count_feature).any():
                raise ValueError("count_gate: set_content(..., counts=) was never called")
            inputs.append(self.count_feature)  # (N + 1, 1)
        g = torch.sigmoid(self.gate(torch.cat(inputs, dim=-1)))  # (N + 1, D)
        if self.training and self.id_dropout:  # this step, some items are their content alone
            keep = torch.rand(g.shape[0], 1, device=g.device) >= self.id_dropout
            g = g * keep
        g = torch.where(self.present[:, None], g, torch.ones_like(g))  # no vector: id only
        return g * id_table + (1 - g) * content


class CountPrior(nn.Module):
    def __init__(self, n_items: int, tau: float) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"CountPrior: tau must be > 0, got {tau}")
        self.tau = tau
        self.register_buffer("log_count", torch.full((n_items + 1,), math.nan))  # log(1 + n)

    def set_counts(self, counts: torch.Tensor) -> None:
        """``counts`` (n_items + 1,): training interactions per item (PAD's is ignored)."""
        counts = torch.as_tensor(counts, dtype=torch.float32).reshape(-1)
        if counts.shape != self.log_count.shape or (counts < 0).any():
            raise ValueError(f"counts must be (n_items + 1,) = {tuple(self.log_count.shape)} and "
                             f">= 0, got shape {tuple(counts.shape)}")
        self.log_count.copy_(torch.log1p(counts))

    def forward(self) -> torch.Tensor:
        """(n_items + 1,) tau * log(1 + n), the logit adjustment of the loss."""
        if torch.isnan(self.log_count).any():
            raise ValueError("logit_adjust: the model never got its items' training counts; "
                             "call model.set_item_counts(split.item_counts()) (genrec.runs does)")
        return self.tau * self.log_count


def id_embeddings(n_users: int, n_items: int, dim: int, init_std: float
                  ) -> tuple[nn.Embedding, nn.Embedding]:
    """(user table (n_users, dim), item table (n_items + 1, dim)), N(0, init_std²), PAD row 0."""
    users = nn.Embedding(n_users, dim)
    items = nn.Embedding(n_items + 1, dim, padding_idx=0)
    nn.init.normal_(users.weight, std=init_std)
    nn.init.normal_(items.weight, std=init_std)
    with torch.no_grad():
        items.weight[0] = 0.0
    return users, items


def fold_in_scores(items: torch.Tensor, item_vectors: Callable[[], torch.Tensor], n_items: int,
                   model: str) -> torch.Tensor:
    """(n_items + 1,) scores of a user known only by the item history ``items`` (item_idx).

    Fold-in: the user vector is the mean of the history's rows of ``item_vectors()``
    (n_items + 1, D), the item vectors the model scores with, asked for only once the history is
    valid; repeated items count once and order is ignored. Column 0 (PAD) is -inf. An
    approximation for models that learn a free vector per training user and no encoder from
    items to users (BPR, LightGCN)."""
    if items.ndim != 1 or not len(items) or not 0 < items.min() <= items.max() <= n_items:
        raise ValueError(f"{model}.score_history needs a non-empty 1-D history of item_idx in "
                         f"1..{n_items}, got {items.tolist()[:20]}")
    table = item_vectors()  # (N + 1, D)
    scores = table @ table[torch.unique(items)].mean(0)  # (N + 1,)
    scores[0] = -math.inf
    return scores
