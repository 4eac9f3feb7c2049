"""SemID: a decoder-only Transformer over the history that predicts the next item's semantic ID.

Paper: Hou et al., "Generating Long Semantic IDs in Parallel for Recommendation" (RPG, KDD 2025):
a causal Transformer whose hidden state at every position predicts all codes of the next item's
semantic ID at once, one softmax per level, so an item's score is the sum of its codes' log-probs.
NOTE deviations: the IDs are genrec's (``genrec.semantic_ids``: C RQ-KMeans/RQ-VAE levels + the
dedup level, T = C + 1 tokens, each with its own head), not RPG's long OPQ codes; a head is one
Linear(D, K_c) per level (packed as one Linear), not a projection matched against the code
embeddings; ranking is exact over the catalogue (below) instead of RPG's graph-constrained
decoding; blocks are SASRec's (pre-LN, 4*D GELU, positions counted from the right, packed real
tokens); ``item_input`` feeds items as the sum of their codes' embeddings (RPG), their ID
embedding, or both.

Loss (``loss``), at every position of the history in one pass. ``"levels"`` (RPG's): the next
item's negative log-probability under the factorised distribution p(item) = prod_c p_c(code_c),
which also puts mass on code tuples that name no item. ``"catalogue"``: that distribution
renormalised over the real items, a softmax over items of s(item) = sum_c logit_c[code(item, c)].
The heads are linear, so s(item) = <h, sum_c W[code_c]> + sum_c b[code_c]: one (N, D) matrix of
composed code vectors, a full softmax like SASRec's whose item vectors are built from shared
codes (a new item gets a trained vector from its codes). Both rank items identically at test
time: the per-level log_softmax subtracts one constant per level from every item's sum. The
softmax runs over the items that have a training interaction (``set_item_counts``, given by
genrec.runs): an item never trained on (P1-new's new items) is neither a target nor a negative,
so training holds no evidence against it. ``item_output = "both"`` (catalogue loss, exact
decoding only) adds an output ID vector per item, zero at the start, to its composed code
vector: seen items get their own correction, an unseen item keeps a zero vector and is scored
by its codes alone.

Decoding (``decode``). ``"exact"``: log_softmax per level, then every item's score is
sum_c logp_c[code(item, c)], one gather over the (N, T) code table: a full ranking of the
catalogue (item_output = "both": the catalogue loss's s(item) + <h, ID vector>, one matmul).
The dedup level makes every item's tuple distinct (``semantic_ids.store`` refuses a file
where two items share one), so two items tie only when their log-probs sum to the same float; the
evaluator then counts ties pessimistically and top-k lists take the lower item index
(``genrec.topk``). Items whose first C codes collide differ only by the dedup head, which learns
how often the next item has each within-group number: a prior on an arbitrary numbering.
``"beam"``: the constrained beam search over the prefix trie (``semantic_ids.trie``), fed the same
per-level log-probs. With parallel heads the levels are conditionally independent given the
position, so the beam sees no new information at deeper levels; it scores its items exactly as
"exact" does and, with beam_size >= the number of prefixes at every depth, returns exact's top
items. ``score`` then holds the beam's ``beam_size`` items (the input window excluded, as TIGER)
and -inf elsewhere: metrics at K > beam_size are undefined (all other items tie at the bottom),
so report K <= beam_size only. It exists to measure what a constrained beam costs against exact.

Example:
    >>> model = SemID(SemIDConfig(n_items=3, id_sizes=(2, 2), dim=8, max_len=4))
    >>> model.set_semantic_ids(torch.tensor([[-1, -1], [0, 0], [0, 1], [1, 0]]))
    >>> model.score(SeqBatch(torch.arange(1), torch.tensor([[1, 2]]))).shape
    torch.Size([1, 4])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import SeqBatch
from genrec.semantic_ids.trie import SemanticIdItems, beam_search

__all__ = ["SemIDConfig", "SemID"]

ITEM_INPUTS = ("codes", "id", "both")
ITEM_OUTPUTS = ("codes", "both")
DECODES = ("exact", "beam")
LOSSES = ("levels", "catalogue")


@dataclass
class SemIDConfig:
    n_items: int = 0          # number of real items, filled from the data (ids 1..n_items, 0 = PAD)
    semantic_ids: str = ""    # <dataset>/semantic_ids/<name>.parquet (genrec semantic-ids build)
    id_sizes: tuple[int, ...] = ()  # K_c per ID level (dedup last), filled by the builder
    max_len: int = 50         # inputs keep the most recent max_len items (left truncation)
    dim: int = 64             # D: embedding and hidden size
    n_layers: int = 2         # causal attention blocks
    n_heads: int = 1          # H: attention heads (dim must divide by it)
    dropout: float = 0.2      # on embeddings, attention weights and residual branches
    item_input: str = "codes"  # codes (sum of the item's code embeddings) | id | both (summed)
    decode: str = "exact"     # exact: every item scored | beam: constrained beam, -inf elsewhere
    beam_size: int = 20       # decode="beam": beams, and the items score() returns
    loss: str = "levels"      # levels: sum of per-level CEs | catalogue: softmax over real items
    item_output: str = "codes"  # codes | both: + an output ID vector per item (catalogue, exact)

    def validate(self) -> None:
        if self.item_input not in ITEM_INPUTS:
            raise ValueError(f"semid: item_input {self.item_input!r} is not one of "
                             f"{', '.join(ITEM_INPUTS)}")
        if self.decode not in DECODES:
            raise ValueError(f"semid: decode {self.decode!r} is not one of {', '.join(DECODES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"semid: loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.item_output not in ITEM_OUTPUTS:
            raise ValueError(f"semid: item_output {self.item_output!r} is not one of "
                             f"{', '.join(ITEM_OUTPUTS)}")
        if self.item_output == "both" and (self.loss, self.decode) != ("catalogue", "exact"):
            raise ValueError("semid: item_output = \"both\" needs loss = \"catalogue\" and "
                             "decode = \"exact\" (the per-level heads alone do not see the "
                             "output ID vectors)")
        if self.id_sizes and min(self.id_sizes) < 1:
            raise ValueError(f"semid: id_sizes {self.id_sizes} must give one vocabulary size >= 1 "
                             f"per semantic-ID level; the builder fills it from "
                             f"params.semantic_ids")
        if self.dim % self.n_heads:
            raise ValueError(f"semid: dim={self.dim} must be divisible by n_heads={self.n_heads}")
        if min(self.max_len, self.dim, self.n_layers, self.n_heads, self.beam_size) < 1 \
                or self.n_items < 0:
            raise ValueError(f"semid: max_len, dim, n_layers, n_heads, beam_size must be >= 1 and "
                             f"n_items >= 0, got {self}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"semid: need 0 <= dropout < 1, got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, c: SemIDConfig) -> None:
        super().__init__()
        self.n_heads, self.dropout = c.n_heads, c.dropout
        self.qkv = nn.Linear(c.dim, 3 * c.dim)
        self.proj = nn.Linear(c.dim, c.dim)

    def forward(self, t: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """(N, D) packed real tokens -> (N, D); ``real`` (B, L) says where they sit."""
        (B, L), D = real.shape, t.shape[-1]
        qkv = t.new_zeros(B, L, 3 * D)
        qkv[real] = self.qkv(t)  # PAD keys are masked out by ``allowed``
        # (B, L, 3D) -> 3 x (B, H, L, D/H)
        q, k, v = qkv.view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, D)[real])  # (B, H, L, D/H) -> (N, D)


class Block(nn.Module):
    def __init__(self, c: SemIDConfig) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn = CausalSelfAttention(c)
        self.ffn = nn.Sequential(nn.Linear(c.dim, 4 * c.dim), nn.GELU(),
                                 nn.Linear(4 * c.dim, c.dim))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, t: torch.Tensor, real: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        t = t + self.drop(self.attn(self.ln1(t), real, allowed))  # (N, D)
        return t + self.drop(self.ffn(self.ln2(t)))


class SemID(SemanticIdItems, nn.Module):
    kind = "sequence"  # fed SeqBatch histories (genrec.runs.kinds.sequence)

    def __init__(self, config: SemIDConfig) -> None:
        super().__init__()
        config.validate()
        if not config.id_sizes:
            raise ValueError("semid: no semantic IDs (id_sizes is empty); set params.semantic_ids "
                             "to a file made by `genrec semantic-ids build --data NAME --vectors "
                             "ENCODER --method rq_kmeans` (genrec.runs fills id_sizes from it)")
        self.config = c = config
        sizes = torch.tensor(c.id_sizes)
        # level c owns rows [offsets[c], offsets[c] + K_c) of the packed code tables and heads
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        n_codes = int(sizes.sum())
        self.code_emb = nn.Embedding(n_codes, c.dim) if c.item_input != "id" else None
        self.item_emb = (nn.Embedding(c.n_items + 1, c.dim, padding_idx=0)
                         if c.item_input != "codes" else None)
        self.pos_emb = nn.Embedding(c.max_len, c.dim)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.dim)
        self.heads = nn.Linear(c.dim, n_codes)  # the T parallel heads, one Linear(D, K_c) each
        self.apply(self._init)
        self.out_emb = None  # item_output = "both": (N, D) output ID vectors, zero at the start
        if c.item_output == "both":
            self.out_emb = nn.Parameter(torch.zeros(c.n_items, c.dim))
        # (n_items + 1, T) each item's ID; row 0 (PAD) is -1; saved with the weights
        self.register_buffer("codes", torch.full((c.n_items + 1, len(c.id_sizes)), -1))
        # (n_items,) items 1..N in the catalogue softmax: all, until set_item_counts
        self.register_buffer("seen", torch.ones(c.n_items, dtype=torch.bool), persistent=False)
        # item_output = "both": the item vectors scoring keeps (_frozen_vectors), with their key
        self._scoring: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])

    def set_item_counts(self, counts: torch.Tensor) -> None:
        """Training interactions per item (n_items + 1,): loss="catalogue" leaves unseen items
        out of its softmax (module docstring)."""
        if counts.shape != (self.config.n_items + 1,):
            raise ValueError(f"semid: counts must have shape ({self.config.n_items + 1},), "
                             f"got {tuple(counts.shape)}")
        self.seen = counts[1:].to(self.seen.device) > 0

    # ---- the history -----------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(N,) real item ids (no PAD) -> (N, D) input vectors, per ``item_input``."""
        x = 0
        if self.code_emb is not None:
            x = self.code_emb(self.codes[ids] + self.offsets).sum(1)  # (N, T, D) -> (N, D)
        if self.item_emb is not None:
            x = x + self.item_emb(ids)
        return x

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item ids -> (B, L, D) hidden states (PAD positions: unused)."""
        B, L = items.shape
        if L > self.config.max_len:
            raise ValueError(f"semid: got sequences of length {L} > max_len={self.config.max_len}; "
                             f"build batches with the model's max_len")
        real = items > 0  # (B, L)
        pos = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        # the N real items of the batch, packed row by row: (N, D)
        t = self.embed(items[real]) * math.sqrt(self.config.dim)
        t = self.drop(t + self.pos_emb(pos.expand(B, L)[real]))
        # query i sees keys j <= i that are real items, and always itself (no empty softmax row)
        causal = torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=items.device)
        allowed = causal & (real[:, None, :] | eye)  # (B, L, L)
        for block in self.blocks:
            t = block(t, real, allowed)
        x = t.new_zeros(B, L, t.shape[-1])
        x[real] = t
        return self.ln_f(x)  # (B, L, D); PAD positions hold ln_f(0)

    def level_logp(self, h: torch.Tensor) -> list[torch.Tensor]:
        """(..., D) hidden states -> T tensors (..., K_c): log-probs of each level's codes."""
        logits = self.heads(h).float()  # (..., sum K_c)
        return [part.log_softmax(-1) for part in logits.split(list(self.config.id_sizes), -1)]

    def last_state(self, batch: SeqBatch) -> torch.Tensor:
        """(B, D) the state after each history's most recent item (an empty one: a PAD row)."""
        items = batch.items
        if items.shape[1] == 0:  # no history at all (a cold user): one PAD column
            items = items.new_zeros(items.shape[0], 1)
        return self.encode(items)[:, -1]

    # ---- training --------------------------------------------------------------------------
    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Mean over positions with a target of sum_c CE(level c's head, the target's code c),
        or (loss="catalogue") of CE over the catalogue of the summed code logits."""
        if batch.targets is None:
            raise ValueError("semid.loss needs a training batch with targets (train_batches)")
        h = self.encode(batch.items)  # (B, L, D)
        mask = batch.targets > 0
        if self.config.loss == "catalogue":
            weight, bias = self.item_vectors()
            logits = (h[mask].float() @ weight.T + bias).masked_fill(~self.seen, -math.inf)
            return F.cross_entropy(logits, batch.targets[mask] - 1)  # (M, N) over seen items
        codes = self.codes[batch.targets[mask]]  # (M, T): the next item's ID at each position
        return sum(F.nll_loss(logp, codes[:, c])
                   for c, logp in enumerate(self.level_logp(h[mask])))  # (M, K_c) per level

    def item_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) weights and (N,) biases with <h, w_i> + b_i = sum_c logit_c[code(i, c)]
        (+ <h, item i's output ID vector> with item_output = "both")."""
        rows = self.codes[1:] + self.offsets  # (N, T) rows of the packed heads
        weight = self.heads.weight[rows].sum(1)  # (N, T, D) -> (N, D)
        if self.out_emb is not None:
            weight = weight + self.out_emb
        return weight.float(), self.heads.bias[rows].sum(1).float()

    def _frozen_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``item_vectors()`` for scoring without gradients, rebuilt only when a tensor it reads
        changed: an optimiser step or a weight load bumps a tensor's version counter, a move
        changes its storage. A served model then skips the (N, T, D) gather per request."""
        tensors = (self.heads.weight, self.heads.bias, self.out_emb, self.codes, self.offsets)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._scoring is None or self._scoring[0] != key:
            self._scoring = key, self.item_vectors()
        return self._scoring[1]

    # ---- retrieval -------------------------------------------------------------------------
    def exact_scores(self, h: torch.Tensor) -> torch.Tensor:
        """(B, D) states -> (B, N) sum_c logp_c[code(item, c)] for items 1..N, one gather
        (item_output = "both": the item vectors' logits, the catalogue loss's scores)."""
        if self.out_emb is not None:
            grad = torch.is_grad_enabled()
            weight, bias = self.item_vectors() if grad else self._frozen_vectors()
            return h.float() @ weight.T + bias
        logp = torch.cat(self.level_logp(h), -1)  # (B, sum K_c)
        rows = (self.codes[1:] + self.offsets).reshape(-1)  # (N * T,) columns of ``logp``
        return logp.index_select(1, rows).view(len(h), -1, len(self.config.id_sizes)).sum(-1)

    @torch.no_grad()
    def generate(self, batch: SeqBatch, k: int, beam_size: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items (B, k) by constrained beam search, best first, and their scores;
        the input window's items are never returned; 0 (PAD) and -inf pad short rows."""
        beam_size = max(beam_size or self.config.beam_size, k)
        levels = self.level_logp(self.last_state(batch))  # T x (B, K_c)

        def step(tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
            # parallel heads: level d's log-probs do not depend on the beam's prefix
            B, M, d = tokens.shape
            return levels[d][:, None, :].expand(B, M, -1)  # (B, M, K_d)

        ids, scores, _ = beam_search(step, self.trie(), len(batch), beam_size, k,
                                     exclude=batch.items, device=batch.items.device)
        return ids.clamp(min=0), scores

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1) scores for the item after the last input; column 0 (PAD) is -inf.
        decode="beam": only the ``beam_size`` generated items are finite."""
        if self.config.decode == "beam":
            items, scores = self.generate(batch, self.config.beam_size)
            out = scores.new_full((len(batch), self.config.n_items + 1), -math.inf)
            out.scatter_(1, items, scores)
        else:
            exact = self.exact_scores(self.last_state(batch))  # (B, N)
            out = torch.cat([exact.new_full((len(exact), 1), -math.inf), exact], 1)
        out[:, 0] = -math.inf  # beam padding slots wrote into PAD's column; PAD is never an item
        return out
