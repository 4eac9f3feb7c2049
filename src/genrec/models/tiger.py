"""TIGER: generative retrieval, a T5 that reads the history's semantic IDs and writes the next one.

Paper: Rajput et al., "Recommender Systems with Generative Retrieval" (NeurIPS 2023). Each item
is a short token sequence (``genrec.semantic_ids``: C codebook levels + a dedup token); the
encoder reads a hashed user token and the semantic IDs of the last ``max_len`` items, the decoder
emits the next item's C + 1 tokens, and retrieval is a beam search over the prefix trie of valid
IDs, so only existing items come out, ranked by the model's sequence log-probability.
NOTE deviations: every level has its own token range and the decoder's softmax at step l is
taken over level l's range only; the T5 (``transformers``) is built from a config and trained
from scratch (as in the paper) but smaller by default (4+4 layers, d_model 128, d_ff 512); a
training batch predicts every item of each user's window from the items before it (all prefixes,
or ``train_prefixes`` drawn at random per user), in length-sorted chunks to save padding;
the items of the input window are never returned, and prefixes holding only such items take no
beam (the evaluator masks history anyway, so beams are not wasted on them).

``score(batch)`` is what the evaluator reads: (B, n_items + 1) holding the beam's log-probs for
the ``beam_size`` generated items and -inf everywhere else. Metrics at K <= beam_size are exact;
past the beam every other item ties at the bottom, so metrics at K > beam_size are undefined
(the evaluator's pessimistic ties count them as misses): report K <= beam_size only.

Example:
    >>> model = TIGER(TIGERConfig(n_items=3, id_sizes=(2, 2)))
    >>> model.set_semantic_ids(torch.tensor([[-1, -1], [0, 0], [0, 1], [1, 0]]))
    >>> items, scores = model.generate(batch, k=2)               # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import SeqBatch
from genrec.models._t5 import cached_beam_step, t5_config
from genrec.semantic_ids.trie import SemanticIdItems, beam_search

__all__ = ["TIGERConfig", "TIGER"]

_HASH = 2654435761  # Knuth's multiplicative hash: user buckets independent of user numbering


@dataclass
class TIGERConfig:
    n_items: int = 0            # number of real items, filled from the data (ids 1..n_items)
    semantic_ids: str = ""      # <dataset>/semantic_ids/<name>.parquet (genrec semantic-ids build)
    id_sizes: tuple[int, ...] = ()  # vocabulary of each ID level (dedup last), filled by the builder
    max_len: int = 20           # history items read by the encoder (the most recent ones)
    user_buckets: int = 2000    # hashed user tokens; 0 = no user token
    dim: int = 128              # T5 d_model
    ff_dim: int = 512           # T5 d_ff
    n_heads: int = 4            # attention heads
    head_dim: int = 32          # T5 d_kv
    n_layers: int = 4           # encoder blocks
    n_decoder_layers: int = 4   # decoder blocks
    dropout: float = 0.1        # T5 dropout_rate
    beam_size: int = 20         # beams for score(); report metrics at K <= beam_size
    train_prefixes: int = 0     # prediction targets per user and batch; 0 = every one
    chunks: int = 4             # length-sorted encoder passes per training batch

    def validate(self) -> None:
        if self.id_sizes and min(self.id_sizes) < 1:
            raise ValueError(f"tiger: id_sizes {self.id_sizes} must give one vocabulary size >= 1 "
                             f"per semantic-ID level; the builder fills it from params.semantic_ids")
        if min(self.max_len, self.dim, self.ff_dim, self.n_heads, self.head_dim, self.n_layers,
               self.n_decoder_layers, self.beam_size, self.chunks) < 1:
            raise ValueError(f"tiger: sizes, beam_size and chunks must be >= 1, got {self}")
        if min(self.n_items, self.user_buckets, self.train_prefixes) < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"tiger: need n_items, user_buckets, train_prefixes >= 0 and "
                             f"0 <= dropout < 1, got {self}")


def _t5(c: TIGERConfig, vocab: int):
    from transformers import T5ForConditionalGeneration

    return T5ForConditionalGeneration(t5_config(c, vocab, tie_word_embeddings=True))


class TIGER(SemanticIdItems, nn.Module):
    kind = "sequence"  # fed SeqBatch histories (genrec.runs.kinds.sequence)

    def __init__(self, config: TIGERConfig) -> None:
        super().__init__()
        config.validate()
        if not config.id_sizes:
            raise ValueError("tiger: no semantic IDs (id_sizes is empty); set params.semantic_ids "
                             "to a file made by `genrec semantic-ids build --data NAME --vectors "
                             "ENCODER --method rq_kmeans` (genrec.runs fills id_sizes from it)")
        self.config = c = config
        sizes = torch.tensor(c.id_sizes)
        # token 0 = PAD (and the decoder start); level l owns [offsets[l], offsets[l] + sizes[l])
        self.register_buffer("offsets", 1 + torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.user_offset = 1 + int(sizes.sum())
        self.t5 = _t5(c, self.user_offset + c.user_buckets)
        # (n_items + 1, T) each item's ID; row 0 (PAD) is -1; saved with the weights
        self.register_buffer("codes", torch.full((c.n_items + 1, len(c.id_sizes)), -1))

    # ---- inputs --------------------------------------------------------------------------
    def encoder_inputs(self, items: torch.Tensor, users: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) left-padded items -> (tokens (B, 1 + L*T), attention mask), left-padded.

        The user token sits just before the first real item, so the relative positions T5
        sees never depend on how much padding a row has."""
        B, L = items.shape
        T = len(self.config.id_sizes)
        tok = torch.where(items[..., None] > 0, self.codes[items] + self.offsets, 0)  # (B, L, T)
        tok = torch.cat([tok.new_zeros(B, 1), tok.reshape(B, L * T)], 1)  # (B, 1 + L*T)
        if self.config.user_buckets:
            bucket = (users * _HASH) % (2 ** 32) % self.config.user_buckets
            first = (L - (items > 0).sum(1)) * T  # index of the slot before the first real token
            tok[torch.arange(B, device=tok.device), first] = self.user_offset + bucket
        return tok, tok > 0

    def _decoder_targets(self, items: torch.Tensor) -> torch.Tensor:
        """(N,) items -> (N, T) their tokens in the shared vocabulary."""
        return self.codes[items] + self.offsets

    def _level_logp(self, logits: torch.Tensor, level: int) -> torch.Tensor:
        """(..., V) full-vocabulary logits -> (..., size_l) log-probs over level ``level``."""
        lo = int(self.offsets[level])
        return logits[..., lo:lo + self.config.id_sizes[level]].float().log_softmax(-1)

    # ---- training ------------------------------------------------------------------------
    def _examples(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every (user, position) with a target as its own left-padded history:
        (histories (N, L), users (N,), targets (N,))."""
        items, targets = batch.items, batch.targets
        B, L = items.shape
        has = targets > 0  # (B, L)
        if self.config.train_prefixes:  # keep a random subset of each row's positions
            noise = torch.rand(B, L, device=items.device).masked_fill(~has, 2.0)
            keep = noise.argsort(1).argsort(1) < self.config.train_prefixes
            has = has & keep
        rows, cols = has.nonzero(as_tuple=True)  # (N,)
        # shift each history right so that its last item (column ``cols``) lands in column L - 1
        src = torch.arange(L, device=items.device) - (L - 1 - cols)[:, None]  # (N, L)
        hist = items[rows].gather(1, src.clamp(min=0)).masked_fill(src < 0, 0)
        return hist, batch.users[rows], targets[rows, cols]

    def loss(self, batch: SeqBatch) -> torch.Tensor:
        """Mean cross-entropy of the next item's tokens, each level over its own vocabulary."""
        if batch.targets is None:
            raise ValueError("tiger.loss needs a training batch with targets (train_batches)")
        hist, users, target = self._examples(batch)
        lengths = (hist > 0).sum(1)
        order = lengths.argsort()
        total, n = hist.new_zeros((), dtype=torch.float32), len(order)
        for part in order.chunk(min(self.config.chunks, max(n, 1))):
            width = int(lengths[part].max())  # trim the all-PAD columns of this chunk
            tok, mask = self.encoder_inputs(hist[part, hist.shape[1] - width:], users[part])
            labels = self._decoder_targets(target[part])  # (n, T)
            start = labels.new_zeros(len(part), 1)
            logits = self.t5(input_ids=tok, attention_mask=mask,
                             decoder_input_ids=torch.cat([start, labels[:, :-1]], 1)).logits
            for level in range(labels.shape[1]):
                logp = self._level_logp(logits[:, level], level)  # (n, size_l)
                code = labels[:, level] - self.offsets[level]
                total = total + F.nll_loss(logp, code, reduction="sum")
        return total / (n * len(self.config.id_sizes))

    # ---- retrieval -----------------------------------------------------------------------
    def _step_fn(self, batch: SeqBatch):
        """The beam-search step (genrec.semantic_ids.trie.StepFn) over this batch's encoding."""
        items = batch.items if batch.items.shape[1] else batch.items.new_zeros(len(batch), 1)
        tok, mask = self.encoder_inputs(items, batch.users)
        enc = self.t5.get_encoder()(input_ids=tok, attention_mask=mask).last_hidden_state

        def decode(ids, level, states, states_mask, cache):  # the whole T5, shared vocabulary
            out = self.t5(encoder_outputs=(states,), attention_mask=states_mask,
                          decoder_input_ids=ids, cache=cache, use_cache=True)
            return self._level_logp(out.logits[:, -1], level), out.cache

        return cached_beam_step(decode, enc, mask, self.offsets)

    @torch.no_grad()
    def beam(self, batch: SeqBatch, k: int, beam_size: int | None = None, constrained: bool = True
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, scores, tokens)`` of the top ``k`` beams (genrec.semantic_ids.trie.beam_search).

        Constrained: only items, excluding those of the input window. Unconstrained: any token
        sequence; ids are then the item each sequence names, -1 where it names none."""
        beam_size = max(beam_size or self.config.beam_size, k)
        exclude = batch.items if constrained else None
        trie = self.trie()
        ids, scores, tokens = beam_search(self._step_fn(batch), trie if constrained else None,
                                          len(batch), beam_size, k, exclude=exclude,
                                          sizes=list(self.config.id_sizes),
                                          device=batch.items.device)
        if not constrained:
            ids = torch.from_numpy(trie.lookup(tokens)).to(tokens.device)
        return ids, scores, tokens

    def generate(self, batch: SeqBatch, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items (B, k) by constrained beam score, best first, and their log-probs;
        0 (PAD) and -inf pad rows with fewer than ``k`` reachable items."""
        ids, scores, _ = self.beam(batch, k)
        return ids.clamp(min=0), scores

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1): the ``beam_size`` generated items' log-probs, -inf elsewhere.
        Rankings past ``beam_size`` are undefined (all tied at -inf)."""
        items, scores = self.generate(batch, self.config.beam_size)
        out = scores.new_full((len(batch), self.config.n_items + 1), -math.inf)
        out.scatter_(1, items, scores)
        out[:, 0] = -math.inf  # padding slots wrote -inf into PAD's column; PAD is never an item
        return out
