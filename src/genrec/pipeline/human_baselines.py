"""The candidate stages and rankers that T1 / T2 compare (``benchmarks/bench_text_human.py``).

Each candidate stage maps a batch of query texts to ranked item_idx lists (best first):

    popularity   the items with the most training pairs, the same list for every query
    bm25         Okapi BM25 over the item text (``genrec.retrieval.bm25``, k1 1.2, b 0.75)
    minilm       the bundled all-MiniLM-L6-v2 bi-encoder, zero-shot: cosine over L2-normalised
                 mean-pooled vectors, exact scan
    minilm-ft    the same bi-encoder fine-tuned on the training (query, item text) pairs with
                 in-batch negatives (``finetune_biencoder``)
    union        round-robin interleaving of several stages' lists, duplicates dropped, cut at
                 the same length (so Recall@100 compares like with like)

and the cross-encoder (``genrec.models.cross_encoder``, MiniLM) re-ranks the top ``depth`` of any
stage (``rerank``); it is trained on training queries with hard negatives from the candidate
stages (``train_cross_encoder``). Its logits can be interpolated with the stage's own order
(``fuse``; the weight chosen on validation queries by ``fusion_weight``), the usual practice for
a re-ranker trained on little data (Wang, Zhuang & Zuccon, "BERT-based Dense Retrievers Require
Interpolation with BM25 for Effective Passage Retrieval", ICTIR 2021).

Bi-encoder fine-tuning (Henderson et al. 2017; Reimers & Gurevych's
MultipleNegativesRankingLoss): a batch of (query, positive item text) pairs, scores = 20 x cosine
of every query with every item of the batch, cross-entropy with the pair's own item as the
label. NOTE what we change: an in-batch item that is another TRAINING positive of the query is
masked out (T1 tags share many artists: it would be a false negative), and each epoch draws at
most ``pairs_per_query`` positives per query (a tag has up to hundreds of artists). AdamW, 10%
linear warm-up then linear decay, gradients clipped at 1.0, a ``max_minutes`` wall budget.

Example:
    >>> stage = BiEncoder(hq.texts)                                   # doctest: +SKIP
    >>> stage.rank(["melancholic", "80s synth"], 100)[0][:5]          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genrec.pipeline.human_queries import HumanQueries

__all__ = ["BiEncoderConfig", "BiEncoder", "sentence_minilm", "finetune_biencoder",
           "popularity_rank", "bm25_rank", "union", "sample_train_queries",
           "train_cross_encoder", "ce_scores", "fuse", "fusion_weight", "rerank", "train_queries"]


@dataclass
class BiEncoderConfig:
    epochs: int = 1
    batch_size: int = 32          # (query, item) pairs per step; the rest of the batch = negatives
    lr: float = 2e-5
    pairs_per_query: int = 8      # positives drawn per training query per epoch
    max_length: int = 128         # tokens per query or item text
    scale: float = 20.0           # cosine -> logit (MultipleNegativesRankingLoss's default)
    max_minutes: float = 10.0     # wall budget of the whole fine-tuning
    threads: int = 1
    seed: int = 0

    def validate(self) -> None:
        if min(self.epochs, self.batch_size, self.pairs_per_query, self.threads) < 1 \
                or self.max_length < 8 or not self.lr > 0 or not self.max_minutes > 0:
            raise ValueError(f"bi-encoder: epochs, batch_size, pairs_per_query, threads >= 1, "
                             f"max_length >= 8, lr and max_minutes > 0; got {self}")


def sentence_minilm(path: Any = None) -> Any:
    """The bundled all-MiniLM-L6-v2 SentenceTransformer, or the one saved in ``path``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from genrec.features.text import minilm_path

    return SentenceTransformer(str(path or minilm_path()), device="cpu", local_files_only=True)


def train_queries(hq: HumanQueries) -> tuple[list[int], list[list[int]]]:
    """(query indices, their training items) of every training query."""
    q, items = hq.queries.pairs("train")
    pos: dict[int, list[int]] = {}
    for a, b in zip(q.tolist(), items.tolist()):
        pos.setdefault(a, []).append(b)
    keys = sorted(pos)
    return keys, [pos[k] for k in keys]


# ---- candidate stages ------------------------------------------------------------------------
def popularity_rank(hq: HumanQueries, n_queries: int, k: int) -> list[np.ndarray]:
    """The ``k`` items with the most training pairs (ties to the lower item_idx), per query."""
    pop = hq.popularity.copy()
    pop[0] = -np.inf
    top = np.lexsort((np.arange(len(pop)), -pop))[:k]
    return [top.astype(np.int64)] * n_queries


def bm25_rank(texts: list[str], queries: list[str], k: int) -> list[np.ndarray]:
    """BM25 top ``k`` of each query over ``texts`` (row i = item_idx i, row 0 = PAD "")."""
    from genrec.retrieval.bm25 import BM25

    index = BM25().fit(texts)
    return [index.search(q, k)[0] for q in queries]


class BiEncoder:
    """Item texts encoded once; ``rank(queries, k)`` by cosine. ``model``: a SentenceTransformer
    (None = the bundled MiniLM, zero-shot)."""

    def __init__(self, texts: list[str], model: Any = None, max_length: int = 128,
                 batch_size: int = 64) -> None:
        self.model = model if model is not None else sentence_minilm()
        self.model.max_seq_length = max_length
        self.batch_size = batch_size
        self.items = self.encode(texts[1:])  # (N, D) row r = item_idx r + 1

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.model.eval()
        with torch.inference_mode():
            v = self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                  show_progress_bar=False)
        return torch.nn.functional.normalize(v.float(), dim=-1)

    def rank(self, queries: list[str], k: int) -> list[np.ndarray]:
        from genrec.topk import top_k

        out = []
        for lo in range(0, len(queries), 256):
            scores = self.encode(queries[lo:lo + 256]) @ self.items.T  # (B, N)
            idx = top_k(scores, min(k, scores.shape[1]))[0]
            out += [row.numpy().astype(np.int64) + 1 for row in idx]
        return out


def finetune_biencoder(hq: HumanQueries, cfg: BiEncoderConfig = BiEncoderConfig(),
                       log: Any = print) -> tuple[Any, dict[str, Any]]:
    """MiniLM fine-tuned on the training pairs (module docstring); (model, summary)."""
    cfg.validate()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = sentence_minilm()
    model.max_seq_length = cfg.max_length
    keys, positives = train_queries(hq)
    known = [set(p) for p in positives]
    per_epoch = sum(min(len(p), cfg.pairs_per_query) for p in positives)
    total = cfg.epochs * math.ceil(per_epoch / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))

    def embed(texts: list[str]) -> torch.Tensor:
        feats = model.preprocess(texts)
        return torch.nn.functional.normalize(model(feats)["sentence_embedding"], dim=-1)

    start, losses, stopped = time.monotonic(), [], False
    model.train()
    for epoch in range(cfg.epochs):
        pairs = [(j, int(i)) for j, p in enumerate(positives)
                 for i in rng.permutation(p)[:cfg.pairs_per_query]]
        pairs = [pairs[i] for i in rng.permutation(len(pairs))]
        for lo in range(0, len(pairs), cfg.batch_size):
            batch = pairs[lo:lo + cfg.batch_size]
            q = embed([hq.queries.queries[keys[j]] for j, _ in batch])  # (B, D)
            d = embed([hq.texts[i] for _, i in batch])                   # (B, D)
            logits = cfg.scale * q @ d.T                                  # (B, B)
            # another training positive of the query in the batch is no negative
            false_neg = torch.tensor([[a != b and batch[b][1] in known[batch[a][0]]
                                       for b in range(len(batch))] for a in range(len(batch))])
            logits = logits.masked_fill(false_neg, -1e4)
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if len(losses) % 20 == 0:
                log(f"bi-encoder step {len(losses)}/{total}: loss "
                    f"{np.mean(losses[-20:]):.4f}")
            if time.monotonic() - start > 60 * cfg.max_minutes:
                stopped = True
                break
        if stopped:
            break
    model.eval()
    return model, {"steps": len(losses), "planned_steps": total, "epochs": epoch + 1,
                   "pairs_per_epoch": per_epoch, "first_loss": losses[0] if losses else None,
                   "final_loss": float(np.mean(losses[-10:])) if losses else None,
                   "seconds": round(time.monotonic() - start, 1), "stopped_by_time": stopped}


def union(lists: list[list[np.ndarray]], k: int) -> list[np.ndarray]:
    """Per query, the stages' lists interleaved round-robin (first stage first), duplicates
    dropped, cut at ``k``."""
    out = []
    for per_stage in zip(*lists):
        seen: dict[int, None] = {}
        for r in range(max(len(x) for x in per_stage)):
            for x in per_stage:
                if r < len(x):
                    seen.setdefault(int(x[r]), None)
        out.append(np.array(list(seen)[:k], dtype=np.int64))
    return out


# ---- the cross-encoder -----------------------------------------------------------------------
def sample_train_queries(hq: HumanQueries, n: int, seed: int = 0
                         ) -> tuple[list[str], list[list[int]]]:
    """(texts, all training items) of a seeded sample of ``n`` training queries."""
    keys, pos = train_queries(hq)
    pick = np.sort(np.random.default_rng(seed).choice(len(keys), min(n, len(keys)),
                                                      replace=False))
    return [hq.queries.queries[keys[j]] for j in pick], [pos[j] for j in pick]


def train_cross_encoder(hq: HumanQueries, queries: list[str], positives: list[list[int]],
                        candidates: list[list[np.ndarray]], params: dict[str, Any],
                        per_query: int = 4, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """The MiniLM cross-encoder trained on training ``queries`` (``sample_train_queries``): up
    to ``per_query`` of their training items as positives, hard negatives = the candidate
    stages' lists (``candidates[s][j]``: stage s, query j) minus every training item of the
    query. Returns (ranker, fit summary)."""
    from genrec.models.cross_encoder import CrossEncoderConfig, CrossEncoderRanker

    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(p)[:per_query].tolist() for p in positives]
    negs = []
    for j, pos in enumerate(positives):
        known = set(pos)
        mined = union([[stage[j]] for stage in candidates], 10**9)[0]
        negs.append([int(i) for i in mined if int(i) not in known])
    ranker = CrossEncoderRanker(CrossEncoderConfig(**params))
    info = ranker.fit(queries, chosen, negs, hq.texts)
    return ranker, {**info, "queries": len(queries)}


def ce_scores(ranker: Any, queries: list[str], lists: list[np.ndarray], texts: list[str],
              depth: int) -> list[np.ndarray]:
    """The cross-encoder's logits of each list's top ``depth`` items, in list order."""
    return [ranker.score(q, np.asarray(items[:depth], dtype=np.int64).tolist(), texts)
            for q, items in zip(queries, lists)]


def fuse(lists: list[np.ndarray], scores: list[np.ndarray], weight: float = 0.0
         ) -> list[np.ndarray]:
    """Each list's scored head re-ordered by z(CE logit) - ``weight`` * ln(1 + rank in the
    list), the rest of the list behind it unchanged. ``weight`` 0 is the cross-encoder alone;
    a weight > 0 interpolates with the stage's own order (z = logits standardised within the
    head, so one weight fits every query); ties keep the list order."""
    from genrec.models.cross_encoder import fused_scores

    out = []
    for items, s in zip(lists, scores):
        items = np.asarray(items, dtype=np.int64)
        d = len(s)
        if d:
            order = np.argsort(-fused_scores(s, weight), kind="stable")
            items = np.concatenate([items[:d][order], items[d:]])
        out.append(items)
    return out


def fusion_weight(lists: list[np.ndarray], scores: list[np.ndarray],
                  relevant: list[np.ndarray], k: int,
                  grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)) -> float:
    """The ``fuse`` weight of ``grid`` with the best NDCG@k on these (validation) queries; ties
    go to the smaller weight (the cross-encoder's own order)."""
    from genrec.pipeline.human_queries import ranking_metrics

    ndcg = [ranking_metrics(fuse(lists, scores, w), relevant, k, k)[f"NDCG@{k}"] for w in grid]
    return grid[int(np.argmax(ndcg))]


def rerank(ranker: Any, queries: list[str], lists: list[np.ndarray], texts: list[str],
           depth: int, weight: float = 0.0) -> list[np.ndarray]:
    """Each list's top ``depth`` re-ordered by the cross-encoder (``fuse`` with ``weight``),
    the rest of the list behind them unchanged."""
    return fuse(lists, ce_scores(ranker, queries, lists, texts, depth), weight)
