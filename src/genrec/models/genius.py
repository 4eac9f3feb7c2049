"""GENIUS: session generation, an HSTU (or SASRec) encoder and a mixture-of-experts decoder.

Reference: the design of issue 22 (after a public "generative session" project): HSTU (Zhai et al.,
ICML 2024, arXiv:2402.17152) reads the history; a causal Transformer decoder (Vaswani et al. 2017)
with cross-attention to it writes the next items. Changes against the public project: the decoder
is causal everywhere (its experts are per-item representations, they attend to nothing), inputs are
the targets shifted by one, and the same decoder is what evaluation scores. The encoder may be the
registered SASRec instead of HSTU (``encoder = "sasrec"``): on ML-100k P6 it is the stronger
next-item model (BENCHMARKS.md), and the decoder can only refine what the encoder reads. DPO
(Rafailov et al., NeurIPS 2023) is ``loss(PreferenceBatch)``; its pairs are sampled by the session
kind's adapter.

Per decoder position p the input item x_p (BOS at p = 0, else the previous true / generated item)
is represented by each active expert e, and the experts are mixed (BOS itself is a learned vector,
or with ``start = "state"`` the encoder's state after the newest history item, so that position 0
starts from what the encoder alone would score):
    behaviour  E[x] * sqrt(D)            the item table, also the tied output layer
    content    W_c c[x]                  c: frozen text vectors (buffer), W_c learned
    image      W_i v[x]                  v: frozen image vectors (buffer), W_i learned
    gate       g = softmax(W_g mean_e(r_e)) over the experts the item HAS (an item without a
               content / image vector drops that expert from its gate: no zero vector is mixed)
    h_p        sum_e g_e r_e + pos[p]    (mix = "sum": the plain sum of the item's experts)
    logits_p   Decoder(h)_p . E^T        full softmax CE over the session (sampled by config)
An expert whose vectors the dataset lacks (content_dim / image_dim 0) is dropped from the model.
No shared dataset has images: the image expert is tested on generated vectors and fed by a vector
file (``params.image``), never faked with zeros.

Example:
    >>> import torch
    >>> m = Genius(GeniusConfig(n_items=9, max_len=4, session_len=3, dim=8, n_time_buckets=0))
    >>> hist = SeqBatch(torch.tensor([0]), torch.tensor([[0, 1, 2, 3]]))
    >>> m.eval().score(hist).shape, m.generate(hist, 3).shape
    (torch.Size([1, 10]), torch.Size([1, 3]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrec.data.batches import SeqBatch
from genrec.data.sessions import PreferenceBatch, SessionBatch
from genrec.models import _losses as losses
from genrec.models.hstu import HSTU, HSTUConfig
from genrec.models.sasrec import SASRec, SASRecConfig

__all__ = ["GeniusConfig", "Genius", "SessionOutput", "dpo_loss", "EXPERTS", "ENCODERS", "STARTS",
           "MIXES", "DECODES", "DPO_FIELDS"]

EXPERTS = ("behaviour", "content", "image")
ENCODERS = ("hstu", "sasrec")
STARTS = ("learned", "state")
MIXES = ("gate", "sum")
DECODES = ("greedy", "beam", "top_p")
# fields a DPO run (or an init_from run) may set differently from the run whose weights it starts
# from: everything else must match
DPO_FIELDS = ("dpo_reference", "dpo_beta", "dpo_samples", "dpo_lambda", "dpo_mu",
              "pretrain_epochs", "freeze_encoder", "decode", "beam_size", "top_p", "init_from")


@dataclass
class GeniusConfig:
    n_items: int = 0  # number of real items 1..n_items, filled from the data (0 = PAD)
    max_len: int = 50  # newest history items the encoder reads
    session_len: int = 20  # decoder positions: items trained per sample and generated per list
    dim: int = 64  # model width D
    encoder: str = "hstu"  # hstu | sasrec: the registered model that reads the history
    n_layers: int = 2  # encoder blocks
    n_decoder_layers: int = 2  # Transformer decoder layers
    start: str = "learned"  # what decoder position 0 reads: a learned BOS vector, or "state", the
    # encoder's state after the newest history item (what the encoder alone scores from)
    n_heads: int = 2  # attention heads of encoder and decoder; dim must divide by it
    dropout: float = 0.2
    n_time_buckets: int = 128  # HSTU's log-bucketed time-gap bias; 0 disables (SASRec: none)
    experts: tuple[str, ...] = ("behaviour", "content", "image")  # the ablation's switch
    mix: str = "gate"  # gate (softmax over the item's experts) | sum (plain sum)
    content: str = ""  # content expert: encoder name in the dataset's item_vectors, or a
    # .parquet/.npz/.npy file keyed by raw item id (read by the builder); "" = no content expert
    content_dim: int = 0  # width of the content vectors, filled by the builder (0 = absent)
    image: str = ""  # image expert: an item_vectors name or a .parquet/.npz/.npy file keyed by
    # raw item id (e.g. from `genrec embed items --encoder open_clip:...`); "" = no image expert
    image_dim: int = 0  # width of the image vectors, filled by the builder (0 = absent)
    loss: str = "ce"  # ce (full softmax) | sampled (n_negatives uniform negatives)
    n_negatives: int = 128
    pretrain_epochs: int = 0  # first epochs train the encoder alone on next-item prediction
    freeze_encoder: bool = False  # afterwards: no gradient through the encoder's blocks
    decode: str = "greedy"  # greedy | beam | top_p: how evaluation generates a session
    beam_size: int = 4
    top_p: float = 0.9  # top_p: sample from the smallest item set with this much probability
    allow_history: bool = False  # generation may repeat items of the user's history
    allow_repeats: bool = False  # generation may repeat an item within one session
    # -- DPO (Rafailov et al. 2023), a run of its own after the SFT run: every epoch samples
    # sessions from the frozen reference, chosen = the best reward, rejected = the worst
    # (genrec.evaluation.session.session_rewards); the policy starts from the reference weights
    dpo_reference: str = ""  # the trained genius run directory (same config) to align; "" = SFT
    dpo_beta: float = 0.1  # DPO temperature
    dpo_samples: int = 4  # top_p sessions sampled per history (>= 2)
    dpo_lambda: float = 0.0  # reward weight of ILD@10 over the content vectors
    dpo_mu: float = 0.0  # reward weight of novelty@10 (scaled to [0, 1])
    # a trained genius run directory (same config, up to DPO_FIELDS) whose weights plain SFT
    # starts from, e.g. the "same extra steps without DPO" control of a DPO run; "" = fresh
    init_from: str = ""

    def validate(self) -> None:
        bad = [e for e in self.experts if e not in EXPERTS]
        if bad or len(set(self.experts)) != len(self.experts):
            raise ValueError(f"genius: experts {list(self.experts)} must be distinct names from "
                             f"{list(EXPERTS)} (an empty list is the no-expert ablation)")
        for name, value, choices in (("encoder", self.encoder, ENCODERS),
                                     ("start", self.start, STARTS), ("mix", self.mix, MIXES),
                                     ("decode", self.decode, DECODES),
                                     ("loss", self.loss, ("ce", "sampled"))):
            if value not in choices:
                raise ValueError(f"genius: {name} {value!r} is not one of {', '.join(choices)}")
        for name in ("max_len", "session_len", "dim", "n_layers", "n_decoder_layers", "n_heads",
                     "beam_size", "n_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"genius: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_items", "n_time_buckets", "content_dim", "image_dim", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"genius: {name} must be >= 0, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ValueError(f"genius: dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.dpo_reference and (self.pretrain_epochs or self.dpo_samples < 2
                                   or self.dpo_beta <= 0 or min(self.dpo_lambda, self.dpo_mu) < 0):
            raise ValueError(f"genius: a DPO run needs pretrain_epochs = 0 (it starts from the "
                             f"reference), dpo_samples >= 2, dpo_beta > 0 and dpo_lambda, dpo_mu "
                             f">= 0; got {self.pretrain_epochs}, {self.dpo_samples}, "
                             f"{self.dpo_beta}, {self.dpo_lambda}, {self.dpo_mu}")
        if self.init_from and (self.dpo_reference or self.pretrain_epochs):
            raise ValueError(f"genius: init_from continues a trained run, so it needs "
                             f"pretrain_epochs = 0 and no dpo_reference (a DPO run already starts "
                             f"from its reference); got {self.pretrain_epochs}, "
                             f"{self.dpo_reference!r}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"genius: need 0 <= dropout < 1 and 0 < top_p <= 1, got "
                             f"dropout={self.dropout}, top_p={self.top_p}")


@dataclass(slots=True)
class SessionOutput:
    logits: torch.Tensor  # (B, S, N + 1) next-item logits per decoder position, PAD at -inf
    gate: torch.Tensor    # (B, S, E) each expert's weight per position, 0 where the item lacks
                          # it and at BOS (mix = "sum": 1 where the item has it)


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """-log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)))), averaged;
    log 2 while the policy equals the reference."""
    return -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected))).mean()


class ItemVectors(nn.Module):
    """One frozen modality (text or image vectors) projected to the model width."""

    def __init__(self, n_items: int, in_dim: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("vectors", torch.zeros(n_items + 1, in_dim))
        self.register_buffer("present", torch.zeros(n_items + 1, dtype=torch.bool))
        self.proj = nn.Linear(in_dim, dim)

    def set(self, vectors: torch.Tensor, present: torch.Tensor | None = None) -> None:
        if tuple(vectors.shape) != tuple(self.vectors.shape):
            raise ValueError(f"genius: item vectors must be {tuple(self.vectors.shape)} "
                             f"(n_items + 1, width; row 0 = PAD), got {tuple(vectors.shape)}")
        self.vectors.copy_(vectors)
        self.present.copy_(vectors.abs().sum(1) > 0 if present is None else present.bool())
        self.present[0] = False

    def forward(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(self.vectors[items]), self.present[items]  # (B, S, D), (B, S)


class Genius(nn.Module):
    kind = "session"  # fed SessionBatch / SeqBatch histories (genrec.runs.kinds.session)

    def __init__(self, config: GeniusConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        # the encoder is a registered next-item model (full-softmax loss for pre-training)
        self.encoder = (
            HSTU(HSTUConfig(n_items=c.n_items, max_len=c.max_len, dim=c.dim, n_layers=c.n_layers,
                            n_heads=c.n_heads, dropout=c.dropout, loss="ce", l2_norm=False,
                            n_time_buckets=c.n_time_buckets)) if c.encoder == "hstu" else
            SASRec(SASRecConfig(n_items=c.n_items, max_len=c.max_len, dim=c.dim,
                                n_layers=c.n_layers, n_heads=c.n_heads, dropout=c.dropout)))
        dims = {"behaviour": c.dim, "content": c.content_dim, "image": c.image_dim}
        self.experts = [e for e in c.experts if dims[e]]  # absent modalities are dropped
        self.modalities = nn.ModuleDict({e: ItemVectors(c.n_items, dims[e], c.dim)
                                         for e in self.experts if e != "behaviour"})
        self.gate = (nn.Linear(c.dim, len(self.experts))
                     if c.mix == "gate" and len(self.experts) > 1 else None)
        self.bos = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.pos_emb = nn.Embedding(c.session_len, c.dim)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        layer = nn.TransformerDecoderLayer(c.dim, c.n_heads, 4 * c.dim, c.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, c.n_decoder_layers, norm=nn.LayerNorm(c.dim))
        self.causal = True  # the decoder's causal mask; only the leakage test turns it off

    # ---- data the builder gives ---------------------------------------------------------------
    def set_content(self, vectors: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Text vectors (n_items + 1, content_dim) of the content expert; frozen."""
        self._modality("content").set(vectors, present)

    def set_image(self, vectors: torch.Tensor, present: torch.Tensor | None = None) -> None:
        """Image vectors (n_items + 1, image_dim) of the image expert; frozen."""
        self._modality("image").set(vectors, present)

    def _modality(self, name: str) -> ItemVectors:
        if name not in self.modalities:
            raise ValueError(f"genius: the {name} expert is off (experts="
                             f"{list(self.config.experts)}, {name} width 0): list it in "
                             f"params.experts and give its vectors")
        return self.modalities[name]

    # ---- encoder and decoder ------------------------------------------------------------------
    def encode(self, items: torch.Tensor, timestamps: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """History (B, L) -> (memory (B, L, D), key padding mask (B, L), True = ignore)."""
        items = items[:, -self.config.max_len:]
        timestamps = None if timestamps is None else timestamps[:, -self.config.max_len:]
        memory = (self.encoder.encode(items, timestamps) if self.config.encoder == "hstu"
                  else self.encoder.encode(items))
        ignore = items == 0
        ignore[ignore.all(1)] = False  # an empty history: attend to the PAD state, not to nothing
        return memory, ignore

    def _inputs(self, prev: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder inputs for ``prev`` (B, P), the item fed at each position (column 0 is BOS,
        which reads ``start`` (B, D)): (B, P, D) vectors and (B, P, E) gate weights."""
        B, P = prev.shape
        c = self.config
        reps, have = [], []
        for e in self.experts:
            if e == "behaviour":
                reps.append(self.encoder.item_emb(prev) * math.sqrt(c.dim))
                have.append(prev > 0)
            else:
                r, h = self.modalities[e](prev)
                reps.append(r)
                have.append(h)
        if not reps:  # the no-expert ablation: the decoder sees positions only
            x, gate = prev.new_zeros((B, P, c.dim), dtype=self.bos.dtype), prev.new_zeros((B, P, 0))
        else:
            r = torch.stack(reps, 2)                      # (B, P, E, D)
            have = torch.stack(have, 2).to(r.dtype)       # (B, P, E): the item has this expert
            if self.gate is not None:
                mean = (r * have[..., None]).sum(2) / have.sum(2, keepdim=True).clamp(min=1)
                # a finite mask: an item with no expert gets all-zero weights, never NaN
                gate = torch.softmax(self.gate(mean).masked_fill(have == 0, -1e4), -1) * have
            else:
                gate = have
            x = (gate[..., None] * r).sum(2)              # (B, P, D)
        first = torch.zeros(P, dtype=torch.bool, device=prev.device)
        first[0] = True
        x = torch.where(first[None, :, None], start[:, None], x)  # position 0 reads BOS
        gate = gate.masked_fill(first[None, :, None], 0.0)
        return x + self.pos_emb.weight[:P], gate

    def _hidden(self, memory: torch.Tensor, ignore: torch.Tensor, prev: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, D) decoder states and (B, P, E) gate weights for ``prev`` (B, P); position p
        sees prev[:, :p + 1] only (the causal mask) and the whole history."""
        start = memory[:, -1] if self.config.start == "state" else self.bos.expand(len(prev), -1)
        x, gate = self._inputs(prev, start)
        P = prev.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(P, device=x.device, dtype=x.dtype) \
            if self.causal else None
        return self.decoder(x, memory, tgt_mask=mask, memory_key_padding_mask=ignore), gate

    def decode(self, memory: torch.Tensor, ignore: torch.Tensor, prev: torch.Tensor
               ) -> SessionOutput:
        """Logits at every position of ``prev`` (B, P), tied to the item table."""
        h, gate = self._hidden(memory, ignore, prev)
        logits = h @ self.encoder.item_emb.weight.T  # (B, P, N + 1)
        logits[..., 0] = -torch.inf
        return SessionOutput(logits, gate)

    def forward(self, batch: SessionBatch) -> SessionOutput:
        """Teacher forcing: position p reads the history and targets[:, :p]."""
        memory, ignore = self.encode(batch.items, batch.timestamps)
        return self.decode(memory, ignore, self._shifted(batch.targets))

    @staticmethod
    def _shifted(targets: torch.Tensor) -> torch.Tensor:
        return F.pad(targets[:, :-1], (1, 0))  # (B, S): column 0 (BOS) then targets[:, :-1]

    # ---- the model contract -------------------------------------------------------------------
    def session_logp(self, batch: SessionBatch) -> torch.Tensor:
        """(B,) log p(targets | history): the sum over the session's non-PAD positions."""
        logp = torch.log_softmax(self(batch).logits, -1)                       # (B, S, N + 1)
        picked = logp.gather(2, batch.targets[..., None]).squeeze(2)          # (B, S)
        return picked.masked_fill(batch.targets == 0, 0.0).sum(1)

    def loss(self, batch: SessionBatch | SeqBatch | PreferenceBatch) -> torch.Tensor:
        """A ``SeqBatch``: the encoder's next-item loss (pre-training). A ``SessionBatch``: the
        session's loss with teacher forcing, over every position whose target is not PAD. A
        ``PreferenceBatch``: the DPO loss against the reference log-probabilities it carries."""
        if isinstance(batch, SeqBatch):
            return self.encoder.loss(batch)
        if isinstance(batch, PreferenceBatch):
            logp = [self.session_logp(SessionBatch(batch.users, batch.items, t, batch.timestamps))
                    for t in (batch.chosen, batch.rejected)]
            return dpo_loss(*logp, batch.ref_chosen, batch.ref_rejected, self.config.dpo_beta)
        c = self.config
        with torch.set_grad_enabled(torch.is_grad_enabled() and not c.freeze_encoder):
            memory, ignore = self.encode(batch.items, batch.timestamps)
        h, _ = self._hidden(memory, ignore, self._shifted(batch.targets))
        keep = batch.targets > 0
        return losses.sequence_loss(c.loss, h[keep], batch.targets[keep],
                                    self.encoder.item_emb.weight, c.n_negatives)

    def score(self, batch: SeqBatch) -> torch.Tensor:
        """(B, n_items + 1) scores of the session's first item; column 0 (PAD) is -inf."""
        memory, ignore = self.encode(batch.items, batch.timestamps)
        prev = batch.items.new_zeros((len(batch.items), 1))
        return self.decode(memory, ignore, prev).logits[:, 0]

    @torch.no_grad()
    def generate(self, batch: SeqBatch, n: int, method: str | None = None, seed: int = 0,
                 exclude: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n) generated sessions, -1 where no allowed item is left; ``method`` (default the
        config's ``decode``): greedy, beam or top_p (seeded sampling). ``exclude`` (B, n_items
        + 1) bool: the users' whole histories (default: the batch's items), never generated
        unless ``allow_history``."""
        c = self.config
        method = method or c.decode
        if method not in DECODES or not 1 <= n <= c.session_len:
            raise ValueError(f"genius: generate needs a method in {list(DECODES)} and 1 <= n <= "
                             f"session_len ({c.session_len}), got {method!r}, n={n}")
        memory, ignore = self.encode(batch.items, batch.timestamps)
        banned = torch.zeros(len(memory), c.n_items + 1, dtype=torch.bool, device=memory.device)
        banned[:, 0] = True
        if not c.allow_history:
            banned |= exclude if exclude is not None else banned.scatter(1, batch.items, True)
        if method == "beam":
            return self._beam(memory, ignore, banned, n)
        gen = torch.Generator(device=memory.device).manual_seed(seed)
        prev = batch.items.new_zeros((len(memory), 1))
        for _ in range(n):
            logits = self.decode(memory, ignore, prev).logits[:, -1].masked_fill(banned, -torch.inf)
            pick = self._top_p(logits, gen) if method == "top_p" else logits.argmax(1)
            pick = torch.where(torch.isinf(logits.max(1).values), -1, pick)  # nothing left
            if not c.allow_repeats:
                banned.scatter_(1, pick.clamp(min=0)[:, None], True)
            prev = torch.cat([prev, pick.clamp(min=0)[:, None]], 1)
        return prev[:, 1:].masked_fill(prev[:, 1:] == 0, -1)

    def _top_p(self, logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits, 1).nan_to_num(0.0)
        sorted_p, order = probs.sort(1, descending=True)
        drop = sorted_p.cumsum(1) - sorted_p >= self.config.top_p  # mass before it already >= p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        sorted_p[:, 0] += (sorted_p.sum(1) == 0).to(sorted_p.dtype)  # nothing left: any index
        return order.gather(1, torch.multinomial(sorted_p, 1, generator=gen)).squeeze(1)

    def _beam(self, memory: torch.Tensor, ignore: torch.Tensor, banned: torch.Tensor,
              n: int) -> torch.Tensor:
        """Beam search on summed log-probabilities; the best beam per user."""
        B, W, N1 = len(memory), self.config.beam_size, banned.shape[1]
        rep = lambda t: t.repeat_interleave(W, 0)  # noqa: E731  (B, ...) -> (B * W, ...)
        memory, ignore, banned = rep(memory), rep(ignore), rep(banned)
        score = torch.full((B, W), -torch.inf, device=memory.device)
        score[:, 0] = 0.0  # all beams start equal: keep one so the first step is not repeated
        prev = torch.zeros(B * W, 1, dtype=torch.long, device=memory.device)
        for _ in range(n):
            logp = torch.log_softmax(self.decode(memory, ignore, prev).logits[:, -1], 1)
            logp = logp.masked_fill(banned, -torch.inf)
            total = (score.reshape(-1, 1) + logp).reshape(B, W * N1)
            kept = score
            score, flat = total.topk(W, 1)                        # (B, W)
            stuck = torch.isinf(score[:, :1])  # nothing left for the best beam: keep the beams
            flat = torch.where(stuck, torch.arange(W, device=flat.device) * N1, flat)
            score = torch.where(stuck, kept, score)
            beam, item = flat // N1, flat % N1
            rows = (torch.arange(B, device=memory.device)[:, None] * W + beam).reshape(-1)
            item = torch.where(torch.isinf(score), 0, item).reshape(-1)  # nothing left: PAD
            banned = banned[rows]
            if not self.config.allow_repeats:
                banned[torch.arange(B * W), item] = True
            prev = torch.cat([prev[rows], item[:, None]], 1)
        best = prev.reshape(B, W, -1)[:, 0, 1:]                   # topk is sorted: beam 0 best
        return best.masked_fill(best == 0, -1)

