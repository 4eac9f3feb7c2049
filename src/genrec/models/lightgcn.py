"""LightGCN: linear propagation of ID embeddings over the user-item graph, BPR loss.

Paper: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation" (SIGIR 2020). E^(k+1) = D^-1/2 A D^-1/2 E^(k) over the bipartite train graph,
final embedding = mean of E^(0..K), score = <e_u, e_i>, BPR loss + l2 / 2 * |ego embeddings of the
batch|^2 / batch size (the authors' code). Propagation is K sparse matmuls over the whole graph per
training step (torch sparse CSR, with a backward that reuses the symmetric adjacency instead of
transposing it); evaluation propagates once and caches the result until a weight changes.
NOTE additions: semantic fusion (AGLRec-style). Item text vectors (``content``) and user text
vectors (mean of the user's training items' vectors) go through one learned projection
(``_layers.ContentItems``: Linear -> GELU -> Linear, C -> D) and are fused with the ID embeddings
by ``sum`` (e = e_id + e_text) or ``concat`` (e = [e_id; e_text], width 2D), ``before``
propagation (text travels along the graph) or ``after`` it (propagated ids + text). Side
without text (``item_semantic`` / ``user_semantic`` False) adds zeros. Fallback: an item without
a vector, or a user none of whose training items has one, gets a zero text part, i.e. its ID
embedding alone (``genrec.runs`` counts such items in run.json).
NOTE option: ``loss = "sampled"`` replaces BPR's one negative per positive by a sampled softmax
over ``n_negatives`` uniform items shared by the batch (``models._losses``: dot-product logits /
``temperature``, a negative equal to the row's positive masked), ``loss = "infonce"`` by the same
softmax over cosine similarities / ``temperature`` (scores are then cosines too, the geometry the
loss trained); both keep the L2 term on the users' and positives' ego embeddings. Not the paper's
objective (Wu et al., "On the Effectiveness of Sampled Softmax Loss for Item Recommendation",
2022, pair the two): every positive meets ``n_negatives`` negatives instead of one, and with a
large batch an epoch needs fewer propagations. ``loss = "ccl"``: SimpleX's cosine contrastive
loss (Mao et al., CIKM 2021; ``models._losses.cosine_contrastive``: 1 - cos(u, i+) plus
``neg_weight`` times the mean of max(0, cos(u, j) - ``margin``) over the same shared uniform
negatives), scored by cosine as well. ``bpr`` stays the default.

Example:
    >>> import scipy.sparse as sp
    >>> model = LightGCN(LightGCNConfig(n_users=2, n_items=3, dim=8, n_layers=2))
    >>> model.set_graph(sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [1, 2, 3])), shape=(2, 4)))
    >>> batch = PairBatch(torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([3, 1]))
    >>> model.loss(batch).backward(); model.score(PairBatch(torch.tensor([0, 1]))).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from genrec.config import ConfigError
from genrec.data.batches import NEGATIVES, PairBatch
from genrec.models._layers import ContentItems, fold_in_scores, id_embeddings
from genrec.models._sparse import binary_matrix
from genrec.models._losses import ccl_loss, check_ccl, sequence_loss

__all__ = ["LightGCNConfig", "LightGCN", "FUSIONS", "FUSION_STAGES", "PAIR_LOSSES",
           "COSINE_LOSSES", "normalized_adjacency", "propagate"]

FUSIONS = ("none", "sum", "concat")
FUSION_STAGES = ("before", "after")
PAIR_LOSSES = ("bpr", "sampled", "infonce", "ccl")
INITS = ("normal", "svd")
COSINE_LOSSES = ("infonce", "ccl")  # these train cosines, so scores are cosines too


@dataclass
class LightGCNConfig:
    n_users: int = 0            # number of users, filled from the data (ids 0..n_users-1)
    n_items: int = 0            # number of real items, filled from the data (1..n_items, 0 = PAD)
    dim: int = 64               # D: embedding size (paper: 64)
    n_layers: int = 3           # K propagation layers (paper: 3; 0 = plain MF-BPR)
    l2: float = 1e-4            # weight of the L2 penalty on the batch's ego embeddings (paper)
    negatives: str = "uniform"  # uniform | popularity (by training count), never a training item
    init_std: float = 0.1       # ID embeddings start as N(0, init_std^2) (the authors' code)
    init: str = "normal"        # normal: N(0, init_std^2) | svd: the graph's leading singular
                                # vectors (see the NOTE above; needs dim < n_users, n_items)
    fusion: str = "none"        # none | sum | concat: how text vectors join the ID embeddings
    fusion_stage: str = "before"  # before | after propagation
    item_semantic: bool = True  # fusion: items get their projected text vector
    user_semantic: bool = True  # fusion: users get the projected mean of their items' vectors
    content: str = ""           # fusion: encoder name in the dataset's item_vectors, or a
                                # .parquet/.npz/.npy file keyed by raw item id (read by the builder)
    content_dim: int = 0        # C: width of the text vectors, filled by the builder
    loss: str = "bpr"           # bpr (the paper) | sampled | infonce: softmax over shared negatives
                                # | ccl: SimpleX's cosine contrastive loss over them
    n_negatives: int = 1024     # sampled / infonce / ccl: uniform negatives per batch, shared
    temperature: float = 1.0    # sampled: <e_u, e_i> / T; infonce: cos(e_u, e_i) / T (try ~0.1)
    margin: float = 0.9         # ccl: only negatives with cos(e_u, e_j) > margin are pushed away
    neg_weight: float = 150.0   # ccl: w, weight of the mean negative hinge against 1 - cos(u, i+)

    def validate(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ConfigError(f"lightgcn: negatives {self.negatives!r} is not one of "
                              f"{', '.join(NEGATIVES)}")
        if self.fusion not in FUSIONS or self.fusion_stage not in FUSION_STAGES:
            raise ConfigError(f"lightgcn: fusion must be one of {', '.join(FUSIONS)} and "
                              f"fusion_stage one of {', '.join(FUSION_STAGES)}, got "
                              f"{self.fusion!r}, {self.fusion_stage!r}")
        if self.fusion != "none" and not (self.item_semantic or self.user_semantic):
            raise ConfigError("lightgcn: fusion needs item_semantic or user_semantic (or both); "
                              "set fusion = 'none' for ID embeddings only")
        if min(self.n_users, self.n_items, self.n_layers) < 0 or self.dim < 1:
            raise ConfigError(f"lightgcn: need n_users, n_items, n_layers >= 0 and dim >= 1, got "
                              f"{self.n_users}, {self.n_items}, {self.n_layers}, {self.dim}")
        if self.loss not in PAIR_LOSSES:
            raise ConfigError(f"lightgcn: loss {self.loss!r} is not one of "
                              f"{', '.join(PAIR_LOSSES)}")
        if self.loss in ("sampled", "infonce") and (self.n_negatives < 1 or self.temperature <= 0):
            raise ConfigError(f"lightgcn: loss {self.loss!r} needs n_negatives >= 1 and "
                              f"temperature > 0, got {self.n_negatives}, {self.temperature}")
        if self.loss == "ccl":
            check_ccl("lightgcn", self.n_negatives, self.margin, self.neg_weight)
        if self.loss != "bpr" and self.negatives != "uniform":
            raise ConfigError(f"lightgcn: loss {self.loss!r} draws its own uniform negatives, "
                              f"shared by the batch, so negatives = {self.negatives!r} would be "
                              f"ignored; set negatives = 'uniform' (popularity is for bpr)")
        if self.init not in INITS:
            raise ConfigError(f"lightgcn: init {self.init!r} is not one of {', '.join(INITS)}")
        if self.init == "svd" and self.n_users and self.n_items and \
                self.dim >= min(self.n_users, self.n_items):
            raise ConfigError(f"lightgcn: init = 'svd' takes dim = {self.dim} singular vectors, "
                              f"but the {self.n_users} x {self.n_items} matrix has fewer; set "
                              f"params.dim below {min(self.n_users, self.n_items)} or init = "
                              f"'normal'")
        if self.l2 < 0 or self.init_std <= 0:
            raise ConfigError(f"lightgcn: need l2 >= 0 and init_std > 0, got {self.l2}, "
                              f"{self.init_std}")


def _binary_interactions(interactions: sp.spmatrix, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary float32 CSR (n_users, n_items + 1) with PAD empty, or a ValueError naming the fix."""
    if interactions.shape != (n_users, n_items + 1):
        raise ValueError(f"lightgcn: the interaction matrix is {interactions.shape}, expected "
                         f"(n_users, n_items + 1) = ({n_users}, {n_items + 1}); pass "
                         f"Split.train_matrix() of the split the model was built for")
    return binary_matrix(interactions, n_items, "lightgcn: the interaction matrix")


def normalized_adjacency(interactions: sp.spmatrix) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph of ``interactions`` (U, N + 1), as a sparse CSR
    float32 tensor of shape (U + N + 1)^2: node u is user u, node U + i is item i (PAD and
    other isolated nodes have empty rows)."""
    r = sp.csr_matrix(interactions, dtype=np.float32)
    a = sp.bmat([[None, r], [r.T, None]], format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    inv_sqrt[deg > 0] = deg[deg > 0] ** -0.5
    a = sp.csr_matrix(sp.diags(inv_sqrt) @ a @ sp.diags(inv_sqrt), dtype=np.float32)
    a.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": CPU spmm is what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(a.indptr.astype(np.int64)),
                                       torch.from_numpy(a.indices.astype(np.int64)),
                                       torch.from_numpy(a.data), a.shape, check_invariants=False)


class _SymmetricSpMM(torch.autograd.Function):
    """adj @ x for a SYMMETRIC sparse adj: the gradient is adj @ grad (no transpose, which
    autograd would build as a CSC copy at every step: ~3x slower on Gowalla)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adj, grad)


def propagate(adj: torch.Tensor, ego: torch.Tensor, n_layers: int) -> torch.Tensor:
    """mean(E, adj E, ..., adj^K E) for ego embeddings E (U + N + 1, D)."""
    out, x = ego, ego
    for _ in range(n_layers):
        x = _SymmetricSpMM.apply(adj, x)
        out = out + x
    return out / (n_layers + 1)


class LightGCN(nn.Module):
    kind = "pairs"  # fed PairBatch triples (genrec.runs.kinds.pairs)

    def __init__(self, config: LightGCNConfig) -> None:
        super().__init__()
        config.validate()
        if min(config.n_users, config.n_items) < 1:
            raise ValueError(f"lightgcn: n_users and n_items must be >= 1, got {config.n_users}, "
                             f"{config.n_items}; the run builder fills them from the data")
        self.config = c = config
        self.user_emb, self.item_emb = id_embeddings(c.n_users, c.n_items, c.dim, c.init_std)
        self.text = (ContentItems(c.n_items, c.content_dim, c.dim, gated=False)
                     if c.fusion != "none" else None)
        # data, not weights: set_graph builds them from the train matrix (runs does, on load too)
        self._interactions: sp.csr_matrix | None = None
        self._adj: torch.Tensor | None = None
        self._user_text: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self._svd_pending = c.init == "svd"  # done at the first loss(): training, not loading

    def load_state_dict(self, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        """nn.Module's; weights loaded (a saved run, a resumed checkpoint) are never re-initialised
        from the SVD."""
        self._svd_pending = False
        return super().load_state_dict(state_dict, *args, **kwargs)

    def _init_from_svd(self) -> None:
        """ID embeddings = the leading singular vectors of D_u^-1/2 R D_i^-1/2, scaled by the
        square roots of their singular values (see the module NOTE)."""
        from scipy.sparse.linalg import svds

        r = sp.csr_matrix(self._interactions, dtype=np.float64)
        deg_u, deg_i = np.asarray(r.sum(axis=1)).ravel(), np.asarray(r.sum(axis=0)).ravel()
        r = sp.diags(np.where(deg_u > 0, deg_u, 1) ** -0.5) @ r @ \
            sp.diags(np.where(deg_i > 0, deg_i, 1) ** -0.5)
        p, sv, qt = svds(r, k=self.config.dim, random_state=0)
        root = np.sqrt(sv)
        with torch.no_grad():
            w = self.user_emb.weight
            w.copy_(torch.from_numpy(p * root).to(w.dtype))
            w = self.item_emb.weight
            w.copy_(torch.from_numpy(qt.T * root).to(w.dtype))
            w[0] = 0.0  # PAD: an empty column, zero up to rounding
        self._svd_pending = False

    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Item text vectors (n_items + 1, content_dim), row 0 = PAD; ``present``: real ones."""
        if self.text is None:
            raise ValueError("lightgcn: fusion='none' takes no text vectors; set params.fusion")
        self.text.set_content(vectors, present)

    def set_graph(self, interactions: sp.spmatrix) -> None:
        """The training interactions (n_users, n_items + 1) the graph and user text come from."""
        c = self.config
        self._interactions = _binary_interactions(interactions, c.n_users, c.n_items)
        self._adj = normalized_adjacency(self._interactions)
        self._user_text = self._cache = None

    # ---- embeddings ----------------------------------------------------------------------------
    def _graph(self, device: torch.device) -> torch.Tensor:
        if self._adj is None:
            raise ValueError("lightgcn: no graph; call model.set_graph(split.train_matrix()) "
                             "before training or scoring (genrec.runs does)")
        if self._adj.device != device:
            self._adj = self._adj.to(device)
        return self._adj

    def _user_text_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, C) mean text vector of each user's training items that have one, (U,) has-one."""
        t = self.text
        key = (id(self._interactions), t.vectors._version, t.present._version, t.vectors.device)
        if self._user_text is None or self._user_text[0] != key:
            present = t.present.cpu().numpy().astype(np.float32)
            w = self._interactions @ sp.diags(present)  # keep items that have a vector
            n = np.asarray(w.sum(axis=1)).ravel()
            w = sp.diags(np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)) @ w
            mean = torch.from_numpy(np.asarray(w @ t.vectors.cpu().numpy(), dtype=np.float32))
            has = torch.from_numpy(n > 0)
            self._user_text = (key, mean.to(t.vectors.device), has.to(t.vectors.device))
        return self._user_text[1], self._user_text[2]

    def _text_parts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected text (U, D) and (N + 1, D); zero rows for a side without text and as the
        fallback for items / users without a vector."""
        c, t = self.config, self.text
        ref = self.item_emb.weight
        items = users = None
        if c.item_semantic:
            items = t.proj(t.vectors) * t.present[:, None]  # (N + 1, C) -> (N + 1, D)
        if c.user_semantic:
            raw, has = self._user_text_vectors()
            users = t.proj(raw) * has[:, None]  # (U, C) -> (U, D)
        items = ref.new_zeros(c.n_items + 1, c.dim) if items is None else items
        users = ref.new_zeros(c.n_users, c.dim) if users is None else users
        return users, items

    def _fuse(self, ids: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return ids + text if self.config.fusion == "sum" else torch.cat([ids, text], dim=-1)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (U, D') and item (N + 1, D') embeddings (D' = 2D for concat fusion)."""
        c = self.config
        users, items = self.user_emb.weight, self.item_emb.weight
        text = self._text_parts() if self.text is not None else None
        if text is not None and c.fusion_stage == "before":
            users, items = self._fuse(users, text[0]), self._fuse(items, text[1])
        if c.n_layers:
            out = propagate(self._graph(users.device), torch.cat([users, items]), c.n_layers)
            users, items = out[:c.n_users], out[c.n_users:]
        if text is not None and c.fusion_stage == "after":
            users, items = self._fuse(users, text[0]), self._fuse(items, text[1])
        return users, items

    def _embeddings_for_scoring(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``embeddings()`` (unit length after infonce / ccl: scores are then cosines), cached
        without grad until a weight or buffer changes in place, so an evaluation propagates once
        however many user chunks it scores."""
        if torch.is_grad_enabled():
            return self._scoring_geometry(*self.embeddings())
        key = tuple((p.data_ptr(), p._version) for p in [*self.parameters(), *self.buffers()])
        key += (id(self._adj),)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, *self._scoring_geometry(*self.embeddings()))
        return self._cache[1], self._cache[2]

    def _scoring_geometry(self, users: torch.Tensor, items: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.config.loss not in COSINE_LOSSES:
            return users, items
        return F.normalize(users, dim=-1), F.normalize(items, dim=-1)

    # ---- the model contract --------------------------------------------------------------------
    def loss(self, batch: PairBatch) -> torch.Tensor:
        """BPR loss of the (user, positive, negative) triples (or, with ``loss`` sampled /
        infonce, the softmax of each positive against shared uniform negatives; with ccl, the
        cosine contrastive loss against them) after one full propagation, plus the L2 term on
        the batch's ego (layer-0 ID) embeddings."""
        c = self.config
        if batch.pos is None or (batch.neg is None and c.loss == "bpr"):
            raise ValueError("lightgcn.loss needs a training batch with pos and neg (pair_batches)")
        if self._svd_pending:
            self._graph(self.user_emb.weight.device)  # the graph must be set first
            self._init_from_svd()
        users, items = self.embeddings()
        u, p = users[batch.users], items[batch.pos]  # (B, D') each
        ego = self.user_emb(batch.users).pow(2).sum() + self.item_emb(batch.pos).pow(2).sum()
        if c.loss == "ccl":  # K uniform negatives shared by the batch, no softmax
            main = ccl_loss(u, batch.pos, items, c.n_negatives, c.margin, c.neg_weight)
        elif c.loss != "bpr":  # K uniform negatives shared by the batch, as for sequence models
            main = sequence_loss(c.loss, u, batch.pos, items, c.n_negatives, c.temperature)
        else:
            n = items[batch.neg]
            ego = ego + self.item_emb(batch.neg).pow(2).sum()
            main = F.softplus((u * n).sum(-1) - (u * p).sum(-1)).mean()  # -log sigmoid(pos - neg)
        return main + c.l2 * ego / (2 * len(batch))

    def score(self, batch: PairBatch) -> torch.Tensor:
        """(B, n_items + 1) scores of every item for ``batch.users``; column 0 (PAD) is -inf."""
        users, items = self._embeddings_for_scoring()
        scores = users[batch.users] @ items.T  # (B, N + 1)
        scores[:, 0] = -math.inf
        return scores

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, D') the final item embeddings ``score`` uses: after propagation and,
        with ``fusion``, fused with the text part (D' = 2D for concat); row 0 = PAD. Cached
        without grad like ``score``; with grad on, it propagates the whole graph."""
        return self._embeddings_for_scoring()[1]

    def score_history(self, items: torch.Tensor) -> torch.Tensor:
        """(n_items + 1,) scores for a user given only by an item history (item_idx), by fold-in.

        An approximation: LightGCN learns a free ego vector per training user and no encoder
        from items to users, and the graph is fixed at ``set_graph``; a user it never saw (or a
        known user with an edited history) gets the mean of the history's final item vectors
        (``item_vectors``) as user vector, not a re-propagated one. Repeated items count once,
        as in the binary graph; order is ignored. Column 0 (PAD) is -inf.
        """
        return fold_in_scores(items, self.item_vectors, self.config.n_items, "lightgcn")
