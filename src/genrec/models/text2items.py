"""Text2Items: a T5 that reads a free-text query and writes an item's semantic ID.

Generative retrieval from text, as DSI (Tay et al., "Transformer Memory as a Differentiable
Search Index", NeurIPS 2022) does for documents and TIGER (``genrec.models.tiger``) for user
histories: items are short token sequences (``genrec.semantic_ids``: C RQ-KMeans levels over the
MiniLM vectors of the item text + a dedup token), the encoder reads the query's WordPiece tokens
(the bundled all-MiniLM-L6-v2 tokenizer, offline), the decoder emits the C + 1 ID tokens, and
retrieval is a beam search over the prefix trie of valid IDs, so only existing items come out,
ranked by the model's sequence log-probability.
NOTE deviations: a ``transformers`` T5 built from a config and trained from scratch (DSI starts
from a pretrained T5); small by default (2+2 layers, d_model 128); the encoder has the
WordPiece vocabulary (30,522 rows), the decoder its own small ID vocabulary and output layer
(untied), and the softmax at step l is taken over level l's token range only (as in TIGER).
With ``encoder = "minilm"`` the query is read by the bundled PRETRAINED all-MiniLM-L6-v2
(BERT, 6 layers, 384-d), frozen, and a linear bridge maps its token states to d_model for the
T5 decoder's cross-attention: words no training query held still mean something (the T5
encoder is then built with no layers and a 1-row vocabulary, its weights unused).
With ``code_prior`` (minilm encoder only) level l's logits also get ``scale * <q, C_l[t]>``: q
is the query's MiniLM sentence vector (mean-pooled, L2-normalised, as the bi-encoder reads it)
and C_l[t] the RQ centroid of token t of level l (``set_code_vectors``: the mean item vector,
or residual, of the items with that token). The output layer starts at zero, so before any
training an item's summed score is ``scale * <q, C_0[t_0] + C_1[t_1] + ...>`` plus a constant:
the zero-shot bi-encoder over the quantised item vectors, found by the beam search; training
learns the decoder's corrections on top (RIPOR, Zeng et al., "Scalable and Effective
Generative Information Retrieval", WWW 2024, starts generative retrieval from a dense
retriever's RQ codebooks in the same spirit). RQ codes lose most of what tells two books apart
(T2: ranking by the quantised vectors caps NDCG@10 near 0.12, the exact vectors give 0.35), so
``leaf_residual`` adds, at the last (dedup) level, ``scale * <q, x_i - x^_i>`` for the item i
the (prefix, token) names: x_i its vector, x^_i the sum of its centroids. It is added outside
the softmax (a softmax over one item's siblings would cancel it), so training is unchanged and
an untrained beam scores a full ID by the exact ``<q, x_i>`` plus the per-level normalisers.

Example:
    >>> model = Text2Items(Text2ItemsConfig(n_items=3, id_sizes=(2, 2), vocab_size=30522))
    >>> model.set_semantic_ids(torch.tensor([[-1, -1], [0, 0], [0, 1], [1, 0]]))
    >>> items, scores = model.generate(["coconut oil"], k=2)              # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.models._t5 import cached_beam_step, t5_config
from genrec.semantic_ids.trie import SemanticIdItems, beam_search

__all__ = ["Text2ItemsConfig", "Text2Items", "QueryBatch", "load_tokenizer", "unknown_share"]


@dataclass
class Text2ItemsConfig:
    n_items: int = 0            # number of real items, filled from the data (ids 1..n_items)
    id_sizes: tuple[int, ...] = ()  # vocabulary of each ID level (dedup last), builder-filled
    vocab_size: int = 0         # encoder WordPiece vocabulary, filled from the tokenizer
    tokenizer: str = ""         # tokenizer directory; "" = the bundled all-MiniLM-L6-v2 one
    max_query_len: int = 32     # WordPiece tokens read from a query ([CLS] and [SEP] included)
    dim: int = 128              # T5 d_model
    ff_dim: int = 512           # T5 d_ff
    n_heads: int = 4            # attention heads
    head_dim: int = 32          # T5 d_kv
    n_layers: int = 2           # encoder blocks
    n_decoder_layers: int = 2   # decoder blocks
    dropout: float = 0.1        # T5 dropout_rate
    beam_size: int = 100        # beams of generate(); candidates come from the final beam
    encoder: str = "t5"         # "t5" (trained from scratch) | "minilm" (pretrained, frozen)
    code_prior: bool = False    # minilm only: add scale * <query vector, RQ centroid> per level
    leaf_residual: bool = False  # code_prior only: + scale * <query vector, item's RQ residual>

    def validate(self) -> None:
        if self.id_sizes and min(self.id_sizes) < 1:
            raise ValueError(f"text2items: id_sizes {self.id_sizes} must give one vocabulary size "
                             f">= 1 per semantic-ID level (the builder fills it)")
        if min(self.max_query_len, self.dim, self.ff_dim, self.n_heads, self.head_dim,
               self.n_layers, self.n_decoder_layers, self.beam_size) < 1:
            raise ValueError(f"text2items: sizes and beam_size must be >= 1, got {self}")
        if self.max_query_len < 3:
            raise ValueError("text2items: max_query_len must leave room for [CLS], a word, [SEP]")
        if self.encoder not in ("t5", "minilm"):
            raise ValueError(f"text2items: encoder must be 't5' or 'minilm', got "
                             f"{self.encoder!r}")
        if self.code_prior and self.encoder != "minilm":
            raise ValueError("text2items: code_prior needs encoder = 'minilm' (the query vector "
                             "and the item vectors the IDs were built from share one space)")
        if self.leaf_residual and not self.code_prior:
            raise ValueError("text2items: leaf_residual needs code_prior = true (it completes the "
                             "prior's quantised item vectors)")
        if min(self.n_items, self.vocab_size) < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"text2items: need n_items, vocab_size >= 0, 0 <= dropout < 1, "
                             f"got {self}")


@dataclass(slots=True)
class QueryBatch:
    tokens: torch.Tensor                 # (B, L) WordPiece ids, right-padded with 0
    mask: torch.Tensor                   # (B, L) bool, True on real tokens
    targets: torch.Tensor | None = None  # (B,) item_idx to generate (training only)
    states: torch.Tensor | None = None   # (B, L, H) the frozen encoder's states, precomputed

    def __len__(self) -> int:
        return len(self.tokens)

    def to(self, device: torch.device | str) -> "QueryBatch":
        t = self.targets.to(device) if self.targets is not None else None
        st = self.states.to(device) if self.states is not None else None
        return QueryBatch(self.tokens.to(device), self.mask.to(device), t, st)


def load_tokenizer(path: str = "") -> Any:
    """The WordPiece tokenizer of ``path`` (default: the bundled all-MiniLM-L6-v2); offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer

    if not path:
        from genrec.features.text import minilm_path

        path = str(minilm_path("or set text2items' tokenizer to a local directory"))
    if not Path(path).is_dir():
        raise ValueError(f"text2items: tokenizer directory {path} does not exist")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def unknown_share(tokenizer: Any, text: str) -> float:
    """Share of ``text``'s word pieces that ``tokenizer`` maps to [UNK] (0 for none)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return sum(i == tokenizer.unk_token_id for i in ids) / max(len(ids), 1)


def _t5(c: Text2ItemsConfig):
    from dataclasses import replace

    from transformers import T5Model

    # T5Model (no LM head): the decoder reads our ID embeddings and we own the output layer
    if c.encoder == "minilm":  # MiniLM reads the query: an empty T5 encoder, a 1-row vocabulary
        return T5Model(t5_config(replace(c, n_layers=0), 1, tie_word_embeddings=False))
    return T5Model(t5_config(c, c.vocab_size, tie_word_embeddings=False))


def _minilm_encoder(c: Text2ItemsConfig) -> nn.Module:
    """The pretrained BERT body of the bundled all-MiniLM-L6-v2 (or ``c.tokenizer``'s folder),
    frozen."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel

    path = c.tokenizer
    if not path:
        from genrec.features.text import minilm_path

        path = str(minilm_path("or set text2items' tokenizer to a local BERT directory"))
    bert = AutoModel.from_pretrained(path, local_files_only=True)
    bert.requires_grad_(False)
    return bert.eval()


class Text2Items(SemanticIdItems, nn.Module):
    kind = "text"  # QueryBatch (query tokens -> item); trained by genrec.pipeline.text_search

    def __init__(self, config: Text2ItemsConfig) -> None:
        super().__init__()
        config.validate()
        if not config.id_sizes or not config.vocab_size:
            raise ValueError("text2items: id_sizes and vocab_size are empty; build the model with "
                             "`genrec search train DATASET` (it fills them from the semantic "
                             "IDs and the tokenizer)")
        self.config = c = config
        sizes = torch.tensor(c.id_sizes)
        # level l owns rows [offsets[l], offsets[l] + sizes[l]) of the output layer, and rows
        # 1 + those of the decoder embedding (row 0 = the decoder's start token)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.t5 = _t5(c)
        self.bert = _minilm_encoder(c) if c.encoder == "minilm" else None
        # MiniLM token states (384-d) -> d_model, the one trained part of the "minilm" encoder
        self.bridge = (nn.Linear(self.bert.config.hidden_size, c.dim) if self.bert is not None
                       else None)
        self.code_emb = nn.Embedding(1 + int(sizes.sum()), c.dim)
        self.head = nn.Linear(c.dim, int(sizes.sum()))
        if c.code_prior:  # (module docstring) the decoder learns corrections to the prior
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.register_buffer("centroids",
                                 torch.zeros(int(sizes.sum()), self.bert.config.hidden_size))
            self.prior_scale = nn.Parameter(torch.tensor(20.0))  # MNRL's cosine -> logit scale
        if c.leaf_residual:  # (n_items + 1, H) item vector minus its quantised one (row 0 PAD)
            self.register_buffer("residuals",
                                 torch.zeros(c.n_items + 1, self.bert.config.hidden_size))
        # (n_items + 1, T) each item's ID; row 0 (PAD) is -1; saved with the weights
        self.register_buffer("codes", torch.full((c.n_items + 1, len(c.id_sizes)), -1))
        self._tokenizer: Any = None

    # ---- text ----------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.config.tokenizer)
        return self._tokenizer

    def encode(self, queries: list[str], targets: np.ndarray | None = None) -> QueryBatch:
        """Tokenise ``queries`` into a batch; empty or blank queries are a ValueError."""
        if isinstance(queries, str):
            raise TypeError("text2items: pass a list of queries, not one string")
        blank = [i for i, q in enumerate(queries) if not q or not q.strip()]
        if blank:
            raise ValueError(f"empty query (position {blank[0]}): give some words to search for")
        enc = self.tokenizer()(list(queries), padding=True, truncation=True,
                               max_length=self.config.max_query_len, return_tensors="pt")
        tokens = enc["input_ids"]
        t = torch.as_tensor(targets, dtype=torch.int64) if targets is not None else None
        return QueryBatch(tokens, enc["attention_mask"].bool(), t)

    def unknown_share(self, query: str) -> float:
        """Share of the query's word pieces that the tokenizer maps to [UNK] (0 for none)."""
        return unknown_share(self.tokenizer(), query)

    def set_code_vectors(self, vectors: np.ndarray | torch.Tensor) -> None:
        """The prior's centroids from the item vectors (n_items + 1, H) the IDs were built
        from (row 0 PAD): level l's token t = the mean residual, after levels < l, of the
        items holding t (RQ-KMeans' own centroids, up to its last assignment step); the last
        (dedup) level keeps zeros. With ``leaf_residual`` each item's residual after the
        last RQ level is kept too. Call after ``set_semantic_ids``."""
        if not self.config.code_prior:
            raise ValueError("text2items: set_code_vectors needs code_prior = true")
        x = torch.as_tensor(vectors, dtype=torch.float32)[1:]  # (N, H)
        codes = self.codes[1:]
        if len(x) != len(codes) or x.shape[1] != self.centroids.shape[1]:
            raise ValueError(f"text2items: item vectors {tuple(x.shape)} do not match "
                             f"{len(codes)} items x {self.centroids.shape[1]} dims")
        out = torch.zeros_like(self.centroids)
        residual = x.clone()
        for level in range(codes.shape[1] - 1):
            size, lo = self.config.id_sizes[level], int(self.offsets[level])
            sums = torch.zeros(size, x.shape[1]).index_add_(0, codes[:, level], residual)
            counts = torch.bincount(codes[:, level], minlength=size).clamp(min=1)
            out[lo:lo + size] = sums / counts[:, None]
            residual = residual - out[lo + codes[:, level]]
        with torch.no_grad():
            self.centroids.copy_(out)
            if self.config.leaf_residual:
                self.residuals[1:] = residual

    def train(self, mode: bool = True) -> "Text2Items":
        super().train(mode)
        if self.bert is not None:  # frozen: no dropout in the pretrained encoder, ever
            self.bert.eval()
        return self

    def frozen_states(self, batch: QueryBatch) -> torch.Tensor:
        """(B, L, 384) the frozen MiniLM's token states of the batch: they never change, so a
        trainer may compute them once per text and hand them back in ``QueryBatch.states``."""
        if self.bert is None:
            raise ValueError("text2items: only the 'minilm' encoder is frozen")
        with torch.no_grad():
            return self.bert(input_ids=batch.tokens, attention_mask=batch.mask).last_hidden_state

    def _encode(self, batch: QueryBatch
                ) -> tuple[torch.Tensor, list[torch.Tensor] | None, torch.Tensor | None]:
        """(B, L) query tokens -> (B, L, D) states the decoder attends to, and with
        ``code_prior`` each level's prior logits (B, size_l) and the query vector (B, 384)."""
        if self.bert is None:
            return self.t5.encoder(input_ids=batch.tokens,
                                   attention_mask=batch.mask).last_hidden_state, None, None
        states = batch.states if batch.states is not None else self.frozen_states(batch)
        states = states.to(self.bridge.weight.dtype)  # (B, L, 384)
        prior = q = None
        if self.config.code_prior:  # the sentence vector: mean over real tokens, normalised
            m = batch.mask[..., None].to(states.dtype)
            q = F.normalize((states * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)  # (B, 384)
            logits = self.prior_scale * q @ self.centroids.T  # (B, sum(sizes))
            prior = [logits[:, int(lo):int(lo) + n]
                     for lo, n in zip(self.offsets, self.config.id_sizes)]
        return self.bridge(states), prior, q  # (B, L, D)

    # ---- training ------------------------------------------------------------------------
    def _decoder_inputs(self, items: torch.Tensor) -> torch.Tensor:
        """(N,) items -> (N, T) decoder input rows: start token, then levels 0..T-2."""
        tok = 1 + self.codes[items] + self.offsets  # (N, T) decoder-embedding rows
        return torch.cat([tok.new_zeros(len(items), 1), tok[:, :-1]], 1)

    def _level_logp(self, hidden: torch.Tensor, level: int,
                    prior: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D) decoder states (+ (N, size_l) prior logits) -> (N, size_l) log-probs over
        level ``level``'s tokens."""
        lo, size = int(self.offsets[level]), self.config.id_sizes[level]
        w, b = self.head.weight[lo:lo + size], self.head.bias[lo:lo + size]
        logits = F.linear(hidden, w, b)
        if prior is not None:
            logits = logits + prior
        return logits.float().log_softmax(-1)

    def loss(self, batch: QueryBatch) -> torch.Tensor:
        """Mean cross-entropy of the target item's ID tokens, each level over its own range."""
        if batch.targets is None:
            raise ValueError("text2items.loss needs a batch with targets (query, item pairs)")
        enc, prior, _ = self._encode(batch)
        dec = self.t5.decoder(inputs_embeds=self.code_emb(self._decoder_inputs(batch.targets)),
                              encoder_hidden_states=enc, encoder_attention_mask=batch.mask
                              ).last_hidden_state  # (B, T, D)
        codes = self.codes[batch.targets]  # (B, T)
        total = dec.new_zeros((), dtype=torch.float32)
        for level in range(codes.shape[1]):
            logp = self._level_logp(dec[:, level], level, prior[level] if prior else None)
            total = total + F.nll_loss(logp, codes[:, level])
        return total / codes.shape[1]

    # ---- retrieval -----------------------------------------------------------------------
    def _step_fn(self, batch: QueryBatch):
        """The beam-search step (genrec.semantic_ids.trie.StepFn) over this batch's encoding:
        a key/value cache per beam, reordered by parent, so each step feeds one new token.
        With ``leaf_residual`` the last level's log-probs get ``scale * <q, residual>`` of the
        item each (prefix, token) names, outside the softmax: an untrained generator's beam
        then scores a full ID by the exact item vector, not only its quantised part."""
        enc, prior, q = self._encode(batch)

        def decode(rows, level, states, states_mask, cache):  # the decoder on our ID embeddings
            out = self.t5.decoder(inputs_embeds=self.code_emb(rows), encoder_hidden_states=states,
                                  encoder_attention_mask=states_mask, cache=cache, use_cache=True)
            extra = None
            if prior is not None:  # rows are (query, beam) pairs, query-major
                extra = prior[level].repeat_interleave(len(rows) // len(enc), 0)
            return self._level_logp(out.last_hidden_state[:, -1], level, extra), out.cache

        # decoder-embedding row 0 is the start token: level l's tokens sit at 1 + offsets[l]
        step = cached_beam_step(decode, enc, batch.mask, 1 + self.offsets)
        if not self.config.leaf_residual:
            return step
        last, trie = len(self.config.id_sizes) - 1, self.trie()

        def leaf_step(tokens: torch.Tensor, parents: torch.Tensor | None) -> torch.Tensor:
            logp = step(tokens, parents)  # (B, M, V)
            if tokens.shape[2] != last:
                return logp
            B, M, V = logp.shape
            seqs = torch.cat([tokens[:, :, None, :].expand(B, M, V, last),
                              torch.arange(V, device=tokens.device).expand(B, M, V)[..., None]],
                             -1)  # (B, M, V, T)
            items = torch.as_tensor(trie.lookup(seqs), device=logp.device).clamp(min=0)
            vec = self.residuals[items]  # (B, M, V, H): the trie's ids are item_idx; 0 = none
            return logp + self.prior_scale * torch.einsum("bh,bmvh->bmv", q.to(vec.dtype), vec)

        return leaf_step

    @torch.no_grad()
    def beam(self, batch: QueryBatch, k: int, beam_size: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items (B, k) by constrained beam score and their log-probs, best first;
        0 (PAD) and -inf pad rows with fewer than ``k`` reachable items."""
        beam_size = max(beam_size or self.config.beam_size, k)
        ids, scores, _ = beam_search(self._step_fn(batch), self.trie(), len(batch), beam_size, k,
                                     device=batch.tokens.device)
        return ids.clamp(min=0), scores

    def generate(self, queries: list[str], k: int, beam_size: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items (B, k) for each query text, best first, and their log-probs."""
        was = self.training
        self.eval()
        try:
            return self.beam(self.encode(queries).to(self.codes.device), k, beam_size)
        finally:
            self.train(was)

    def ranked_lists(self, queries: list[str], k: int, beam_size: int | None = None,
                     batch_size: int = 32) -> list[np.ndarray]:
        """Per query, up to ``k`` item_idx (int64) best first: ``generate`` in batches of
        ``batch_size``, the PAD rows of a query with fewer reachable items dropped."""
        out = []
        with torch.inference_mode():
            for lo in range(0, len(queries), batch_size):
                ids, logp = self.generate(queries[lo:lo + batch_size], k, beam_size)
                out += [r[torch.isfinite(s)].numpy().astype(np.int64) for r, s in zip(ids, logp)]
        return out
