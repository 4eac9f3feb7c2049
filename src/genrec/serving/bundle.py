"""The serving bundle: a run directory loaded once, plus what answering requests needs.

``load_bundle(run_dir)`` reloads the run (config, dataset, split, weights; see ``genrec.runs``) and
builds, once: the item catalogue (raw ids, titles, text, local image paths), raw-id lookups, the
known-interactions matrix, item popularity, the item-item similarity source and the text index
for search. Every request then only scores.

A pipeline run directory (``genrec pipeline train``; marker ``pipeline.json``) is served by
``genrec.pipeline.serve.ChainRecommender``: channels -> features -> ranker -> re-rank for a known
user, its first recall run for the rest (catalogue, /similar, explicit histories).

Recommendations come from ``genrec.runs.recommend.Recommender``, the one top-k that
``genrec recommend`` uses too; it asks the model's kind (``genrec.runs.kinds``) how to score a
known user or an explicit item history:

- matrix models (popularity, ItemCF, EASE): ``score(users, history)`` on a 1-row CSR;
- sequence models (SASRec, HSTU, TIGER, two-tower): a one-row ``SeqBatch`` of the last
  ``max_len`` items. An explicit history carries no times, so it is fed as one session (every
  timestamp equal); known users are fed their real sequence with real timestamps.
- pair models (BPR, LightGCN): a known user is scored by user index, ``score(PairBatch(users))``,
  from the training graph, as ``genrec.runs`` evaluates them. An explicit history is folded in
  (``model.score_history``): the user vector is the mean of the history's final item vectors
  (after propagation and text fusion for LightGCN). That is an approximation, since these models
  learn no encoder from items to users; a known user with no training interaction (the model
  never saw them) is folded in from their known items.

``similar`` is the kind's item-item relation: the model's own structure when it has one (EASE
weights, the ItemCF similarity matrix, a sequence model's item table or a pair model's final
item vectors by cosine), else item co-occurrence cosine over every known interaction.

Example:
    >>> b = load_bundle("runs/ease_amazon-beauty_loo", search="tfidf")     # doctest: +SKIP
    >>> b.recommend(history=b.item_index(["B004756YJA"]), k=5).items       # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from genrec.data.dataset import DataError
from genrec.pipeline.serve import ChainRecommender, is_pipeline_run
from genrec.retrieval.text import TextIndex, build_text_index
from genrec.runs import Run, check_run_dir, load_run
from genrec.runs.recommend import Recommendation, Recommender, top_k
from genrec.serving.search import GenerateRankIndex, is_search_run

__all__ = ["Bundle", "Recommendation", "UnknownItemsError", "UnknownUserError", "check_run_dir",
           "is_pipeline_run", "load_bundle"]

# columns of items.parquet shown as item details and, when textual, indexed for search
_TEXT_COLUMNS = ("title", "categories", "genres", "genre", "tags", "brand", "description")
_IMAGE_COLUMNS = ("image_path", "image")


class UnknownItemsError(DataError):
    """Raw item ids that are not in the catalogue; ``ids`` lists every one of them."""

    def __init__(self, ids: list[str], dataset: str) -> None:
        self.ids = ids
        super().__init__(f"unknown item id(s) {ids[:20]} in dataset {dataset!r}; look ids up "
                         f"with GET /search?q=... or GET /items/{{item_id}}")


class UnknownUserError(DataError):
    """A raw user id the dataset does not have."""


class NoItemTextError(DataError):
    """/search on a catalogue without any item text (no title or text column)."""


class NoTextSearch:
    """The search of a catalogue without item text: every query is refused with the reason,
    instead of matching the words against raw item ids."""

    name = "none"
    source = "no item text in the dataset"

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NoItemTextError(f"dataset {self.dataset!r} has no item text (no title or text "
                              f"column), so there is nothing to search; look items up by id "
                              f"with GET /items/{{item_id}}")


@dataclass
class Bundle:
    run: Run
    item_ids: np.ndarray           # (n_items + 1,) raw id per item_idx, "" at PAD
    titles: np.ndarray             # (n_items + 1,) display title per item_idx
    details: dict[str, np.ndarray] # text column -> (n_items + 1,) values
    images: dict[int, Path]        # item_idx -> local image file (only files that exist)
    known: sp.csr_matrix           # users x (n_items + 1): every interaction (never recommended)
    popularity: np.ndarray         # (n_items + 1,) users per item over every interaction
    search_index: TextIndex
    similar_source: str            # which item-item relation `similar` uses
    recommender: Recommender       # the one top-k of CLI and HTTP (holds known and popularity)
    load_seconds: float = 0.0
    _items: dict[str, int] = field(default_factory=dict, repr=False)
    _users: dict[str, int] = field(default_factory=dict, repr=False)
    _similar: Callable[[int], np.ndarray] | None = field(default=None, repr=False)

    # ---- catalogue ------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return getattr(self.recommender, "name", self.run.config.model)  # a chain names itself

    @property
    def n_items(self) -> int:
        return len(self.item_ids) - 1

    def item_index(self, raw_ids: list[str]) -> np.ndarray:
        """item_idx per raw id, in order; UnknownItemsError lists every unknown id."""
        missing = list(dict.fromkeys(r for r in raw_ids if r not in self._items))
        if missing:
            raise UnknownItemsError(missing, self.run.dataset.name)
        return np.array([self._items[r] for r in raw_ids], dtype=np.int64)

    def user_index(self, raw_id: str) -> int:
        if raw_id not in self._users:
            some = list(self._users)[:3]
            raise UnknownUserError(f"unknown user {raw_id!r} in dataset {self.run.dataset.name!r} "
                                   f"(e.g. {some}); send an item history instead, or "
                                   f"fallback='popular'")
        return self._users[raw_id]

    # ---- scoring ----------------------------------------------------------------------------
    def score_user(self, u: int) -> np.ndarray:
        """(n_items + 1,) scores from everything user ``u`` is known to have done (a pair model:
        its trained user vector, or the fold-in of the known items of a user it never saw)."""
        return self.recommender.score_user(u)

    def score_history(self, items: np.ndarray) -> np.ndarray:
        """(n_items + 1,) scores from an explicit item history (item_idx, oldest first)."""
        return self.recommender.score_history(items)

    def recommend(self, *, user: str | None = None, history: np.ndarray | None = None,
                  k: int = 10, exclude: np.ndarray | None = None,
                  fallback: str | None = None, scores: np.ndarray | None = None
                  ) -> Recommendation:
        """Top-``k`` for a raw user id or an explicit history; seen and excluded items masked.

        An empty history, or an unknown user with ``fallback="popular"``, gets the most popular
        items, flagged in the result. ``scores``: the known user's scores, already computed
        (``genrec.serving.app``'s batcher, for a recommender whose ``ranks_user_scores``).
        """
        u = unknown = None
        if user is not None:
            try:
                u = self.user_index(user)
            except UnknownUserError:
                if fallback != "popular":
                    raise
                unknown = user
        given = {"scores": scores} if scores is not None else {}  # a chain takes none
        return self.recommender.recommend(user=u, history=history if user is None else None,
                                          k=k, exclude=exclude, unknown=unknown, **given)

    def similar(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items related to ``item`` (itself excluded) and their similarity."""
        return top_k(self._similar(item), np.array([item]), k)

    def search(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        return self.search_index.search(query, k)


# ---- loading ----------------------------------------------------------------------------------
def _catalogue(run: Run) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[int, Path]]:
    ds = run.dataset
    items = ds.items
    idx = items["item_idx"].to_numpy()
    details: dict[str, np.ndarray] = {}
    for col in _TEXT_COLUMNS[1:]:
        if col in items.columns:
            values = np.full(ds.n_items + 1, None, dtype=object)
            column = items[col]
            if isinstance(column.dtype, pl.List):
                column = column.cast(pl.List(pl.Utf8)).list.join(", ")
            values[idx] = column.cast(pl.Utf8, strict=False).to_numpy()
            details[col] = values
    images: dict[int, Path] = {}
    col = next((c for c in _IMAGE_COLUMNS if c in items.columns), None)
    if col is not None:
        base = ds.path or Path(".")
        for i, p in zip(idx, items[col].to_list()):
            if isinstance(p, str) and p and not p.startswith(("http://", "https://")):
                path = Path(p) if Path(p).is_absolute() else base / p
                if path.is_file():
                    images[int(i)] = path
    return ds.item_ids, ds.titles(), details, images


def _search_texts(titles: np.ndarray, details: dict[str, np.ndarray]) -> list[str]:
    """What the search encoder reads per real item: the title, then its other text fields."""
    texts = []
    for i in range(1, len(titles)):
        parts = [str(titles[i])] + [str(v[i]) for v in details.values()
                                    if v[i] not in (None, "", "None")]
        texts.append(". ".join(parts))
    return texts


def _limit_threads(n: int) -> None:
    """Every CPU thread pool of the process (torch, BLAS, OpenMP, faiss) at ``n`` threads.

    Several requests can be scored at once (the server's thread pool); BLAS and OpenMP pools
    that each wake every core per call then fight each other. Measured on 2 cores, /similar of
    a 12k-item SASRec (one 12k x 64 product) from 8 threads: 32 calls/s before, 4,400 after.
    """
    import faiss
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # process-wide from here on (the object is not a context here)
    faiss.omp_set_num_threads(n)


def load_bundle(run_dir: str | Path, search: str = "auto", threads: int | None = None) -> Bundle:
    """Load ``run_dir`` and build everything serving needs, once.

    ``search``: "minilm" (sentence-transformers bi-encoder over item text, faiss inner product),
    "tfidf" (word TF-IDF, no model weights), "auto" (minilm when its weights are installed), or
    the run directory of a `genrec search train` run (its generator + cross-encoder).
    ``threads``: CPU threads of torch, BLAS and faiss (process-wide; None leaves them alone).
    1 suits many concurrent small requests: each request then runs on one core.
    """
    t0 = time.perf_counter()
    if threads:
        _limit_threads(threads)
    if is_pipeline_run(run_dir):  # `genrec pipeline train`: the whole chain for known users
        recommender: Recommender = ChainRecommender(run_dir)
        run = recommender.run      # its first recall run: catalogue, /similar, explicit histories
    else:
        run = load_run(run_dir)
        recommender = Recommender(run)  # the kind's scorer, built now (dropout off)
    item_ids, titles, details, images = _catalogue(run)
    source, similar = recommender.kind.similar(run, recommender.known)
    if is_search_run(search):  # a `genrec search train` run: generate-and-rank
        index = GenerateRankIndex(search, [str(r) for r in item_ids])
    elif "title" not in run.dataset.items.columns and not details:  # raw ids are not text
        index = NoTextSearch(run.dataset.name)
    else:
        index = build_text_index(_search_texts(titles, details), search, cache_dir=Path(run_dir),
                                 dataset_dir=run.dataset.path)
    users = run.dataset.users
    bundle = Bundle(run, item_ids, titles, details, images, recommender.known,
                    recommender.popularity, index, source, recommender,
                    _items={str(r): i for i, r in enumerate(item_ids) if i},
                    _users=dict(zip(users["user_id"].cast(str).to_list(),
                                    users["user_idx"].to_list())),
                    _similar=similar)
    bundle.load_seconds = round(time.perf_counter() - t0, 3)
    return bundle
