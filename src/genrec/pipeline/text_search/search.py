"""The text-search runtime: ``TextSearch.load(run_dir).search(query, k, method)``.

Four ways to answer a free-text query, behind one ``TextSearch.search(query, k, method)``:

    bm25          Okapi BM25 over the item texts (``genrec.retrieval.bm25``)
    minilm        all-MiniLM-L6-v2 bi-encoder + exact faiss scan (``genrec.retrieval.text``)
    generator     Text2Items (``genrec.models.text2items``): a T5 writes semantic IDs, constrained
                  beam search over the prefix trie, ranked by sequence log-probability
    generator+ce  the generator's top ``ranker.depth`` candidates re-scored by the MiniLM
                  cross-encoder (``genrec.models.cross_encoder``; its logits interpolated with
                  the generator's order by ``ranker.fuse_weight``), whose hard negatives were
                  mined from the generator's own candidates on training queries: its top
                  ``ranker.candidates`` minus the query's training items. Held-out (valid/test)
                  items of the query are unknown at training time and may be drawn as
                  negatives, as they would be in real use (label noise, never a leak)

Errors for callers (CLI, HTTP): an empty or blank query, an unknown method, k < 1 or a method the
run lacks raise ValueError; a query whose word pieces are mostly [UNK] still gets results, with
``SearchResult.note`` saying so; a query over ``MAX_QUERY_CHARS`` characters is cut there, with a
note; a directory without semantic IDs or generator is a DataError
naming the command that makes one. One ``TextSearch`` serves one request at a time (the
bi-encoder locks its tokenizer; the generator and ranker hold no state between calls).

This is what serving imports (``genrec.serving.search``); training lives in ``train``.

Example:
    >>> search = TextSearch.load("runs/text2items_beauty")                     # doctest: +SKIP
    >>> search.search("coconut oil", k=5).rows()                               # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from genrec.config import from_dict, load_toml
from genrec.data.dataset import DataError
from genrec.models.text2items import Text2Items, load_tokenizer, unknown_share
from genrec.pipeline.text_search.config import TextSearchConfig

__all__ = ["METHODS", "MAX_QUERY_CHARS", "SearchResult", "TextSearch"]

METHODS = ("bm25", "minilm", "generator", "generator+ce")
UNKNOWN_NOTE = 0.5  # share of [UNK] word pieces from which on a result carries a note
MAX_QUERY_CHARS = 2000  # a longer query is cut here (the models read far fewer tokens anyway)
_TRAIN_HINT = "`genrec search train DATASET_OR_CONFIG --out {out}`"


@dataclass
class SearchResult:
    method: str
    items: np.ndarray                        # (n,) item_idx, best first
    scores: np.ndarray                       # (n,) the score the list is sorted by
    generator_logp: np.ndarray | None = None  # (n,) generator log-probability, when it ran
    ce_score: np.ndarray | None = None       # (n,) cross-encoder score, when it ran
    note: str | None = None                  # e.g. a query the tokenizer mostly cannot read
    titles: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for r, item in enumerate(self.items.tolist()):
            row = {"rank": r + 1, "item_idx": int(item), "item_id": self.item_ids[r],
                   "title": self.titles[r], "score": float(self.scores[r])}
            if self.generator_logp is not None:
                row["generator_logp"] = float(self.generator_logp[r])
            if self.ce_score is not None:
                row["ce_score"] = float(self.ce_score[r])
            out.append(row)
        return out


class TextSearch:
    """Query text -> items by BM25, MiniLM, the generator, or the generator + cross-encoder.

    ``texts[i]``, ``titles[i]``, ``item_ids[i]``: item_idx i (0 = PAD, ""). Indexes for bm25 and
    minilm are built on first use; ``generator`` / ``ranker`` are None when the run lacks them.
    """

    def __init__(self, texts: list[str], titles: list[str], item_ids: list[str],
                 generator: Text2Items | None = None, ranker: Any = None, depth: int = 30,
                 run_dir: Path | None = None, dataset_dir: Path | None = None,
                 fuse_weight: float = 0.0) -> None:
        if not (len(texts) == len(titles) == len(item_ids)) or texts[0] != "":
            raise ValueError("texts, titles and item_ids must be aligned to item_idx, row 0 = PAD "
                             "with empty text")
        self.texts, self.titles, self.item_ids = texts, titles, item_ids
        self.generator, self.ranker, self.depth = generator, ranker, depth
        self.fuse_weight = fuse_weight
        self.run_dir, self.dataset_dir = run_dir, dataset_dir
        self._bm25: Any = None
        self._minilm: Any = None
        self._tokenizer: Any = None

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir: str | Path) -> "TextSearch":
        """Reload a run directory written by ``train_text_search``."""
        run_dir = Path(run_dir)
        hint = _TRAIN_HINT.format(out=run_dir)
        if not (run_dir / "config.toml").is_file() or not (run_dir / "items.parquet").is_file():
            raise DataError(f"{run_dir} is not a text-search run directory (no config.toml / "
                            f"items.parquet); create one with {hint}")
        for name, what in (("semantic_ids.npz", "semantic IDs"), ("generator.pt", "generator")):
            if not (run_dir / name).is_file():
                raise DataError(f"{run_dir} has no {what} ({name} is missing): its training did "
                                f"not finish or the file was removed; run {hint}")
        cfg = from_dict(TextSearchConfig, load_toml(run_dir / "config.toml"))
        info_path = run_dir / "run.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        items = pl.read_parquet(run_dir / "items.parquet").sort("item_idx")
        with np.load(run_dir / "semantic_ids.npz") as z:
            codes, sizes = z["codes"], [int(s) for s in z["sizes"]]
        if tuple(sizes) != tuple(cfg.generator.id_sizes) or len(codes) != items.height + 1:
            raise DataError(f"{run_dir}: semantic_ids.npz (sizes {sizes}, {len(codes) - 1} items) "
                            f"does not match config.toml / items.parquet; run {hint} again")
        if cfg.generator.tokenizer and not Path(cfg.generator.tokenizer).is_absolute():
            cfg.generator.tokenizer = str(run_dir / cfg.generator.tokenizer)  # e.g. encoder/
        model = Text2Items(cfg.generator)
        model.load_state_dict(torch.load(run_dir / "generator.pt", map_location="cpu",
                                         weights_only=True))
        model.eval()
        ranker = None
        if (run_dir / "cross_encoder").is_dir():
            from genrec.models.cross_encoder import CrossEncoderRanker

            ranker = CrossEncoderRanker.load(run_dir / "cross_encoder")
        ds_dir = Path(info.get("dataset_dir", "")) if info.get("dataset_dir") else None
        return cls(*_columns(items), generator=model, ranker=ranker, depth=cfg.ranker.depth,
                   fuse_weight=cfg.ranker.fuse_weight, run_dir=run_dir,
                   dataset_dir=ds_dir if ds_dir and ds_dir.is_dir() else None)

    # ---- indexes -------------------------------------------------------------------------
    def bm25(self) -> Any:
        if self._bm25 is None:
            from genrec.retrieval.bm25 import BM25

            self._bm25 = BM25().fit(self.texts)  # document i = item_idx i; PAD's "" never matches
        return self._bm25

    def minilm(self) -> Any:
        if self._minilm is None:
            from genrec.retrieval.text import build_text_index

            self._minilm = build_text_index(self.texts[1:], "minilm", cache_dir=self.run_dir,
                                            dataset_dir=self.dataset_dir)
        return self._minilm

    def tokenizer(self) -> Any:
        if self.generator is not None:
            return self.generator.tokenizer()
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer()
        return self._tokenizer

    def note(self, query: str) -> str | None:
        """A warning for a query the tokenizer mostly cannot read (else None)."""
        unk = unknown_share(self.tokenizer(), query)
        if unk >= UNKNOWN_NOTE:
            return (f"{unk:.0%} of the query's word pieces are unknown to the MiniLM tokenizer "
                    f"([UNK]); results are likely unrelated to it (the models read English "
                    f"best)")
        return None

    # ---- search --------------------------------------------------------------------------
    def search(self, query: str, k: int = 10, method: str = "generator+ce") -> SearchResult:
        """The top ``k`` items for ``query`` by ``method`` (one of METHODS)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError("empty query: give some words to search for")
        if method not in METHODS:
            raise ValueError(f"unknown search method {method!r}; use one of {', '.join(METHODS)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = query.strip()
        notes = []
        if len(query) > MAX_QUERY_CHARS:
            notes.append(f"the query was cut to its first {MAX_QUERY_CHARS:,} of {len(query):,} "
                         f"characters")
            query = query[:MAX_QUERY_CHARS]
        notes.append(self.note(query))
        gen = ce = None
        if method == "bm25":
            items, scores = self.bm25().search(query, k)
        elif method == "minilm":
            items, scores = self.minilm().search(query, k)
        else:
            if self.generator is None:
                raise ValueError("this search has no generator; load a run directory made by "
                                 "`genrec search train`")
            if method == "generator+ce" and self.ranker is None:
                raise ValueError("this run has no cross-encoder (trained with ranker.enabled = "
                                 "false); use method 'generator', or train with the ranker")
            width = k if method == "generator" else max(k, self.depth)
            beam = max(self.generator.config.beam_size, width)
            with torch.inference_mode():
                ids, logp = self.generator.generate([query], width, beam)
            keep = torch.isfinite(logp[0])
            items, gen = ids[0][keep].numpy(), logp[0][keep].numpy()
            scores = gen
            if method == "generator+ce" and len(items):
                from genrec.models.cross_encoder import fused_scores

                ce = np.asarray(self.ranker.score(query, items.tolist(), self.texts), np.float64)
                fused = fused_scores(ce, self.fuse_weight)
                order = np.lexsort((np.arange(len(ce)), -fused))[:k]  # generator order on ties
                items, gen, ce, scores = items[order], gen[order], ce[order], fused[order]
        items = np.asarray(items, dtype=np.int64)[:k]
        return SearchResult(method, items, np.asarray(scores)[:k],
                            None if gen is None else gen[:k], None if ce is None else ce[:k],
                            note="; ".join(n for n in notes if n) or None,
                            titles=[str(self.titles[i]) for i in items],
                            item_ids=[str(self.item_ids[i]) for i in items])


def _columns(items: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """(texts, titles, item_ids) aligned to item_idx from a run's items table."""
    n = items.height
    if items["item_idx"].to_list() != list(range(1, n + 1)):
        raise DataError("items.parquet must hold item_idx 1..n exactly once")
    return ([""] + items["text"].to_list(), [""] + items["title"].to_list(),
            [""] + items["item_id"].cast(pl.Utf8).to_list())

