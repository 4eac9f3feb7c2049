"""The serving bundle: a run directory loaded once, plus what answering requests needs.

``load_bundle(run_dir)`` reloads the run (config, dataset, split, weights; see ``genrec.runs``) and
builds, once: the item catalogue (raw ids, titles, text, local image paths), raw-id lookups, the
known-interactions matrix, item popularity, the item-item similarity source and the text index
for search. Every request then only scores.

Scoring an explicit item history works for every model contract:

- history-matrix models (popularity, ItemCF, EASE): ``score(users, history)`` on a 1-row CSR;
- sequence models (``input_kind = "sequence"``: SASRec, HSTU): a one-row ``SeqBatch`` of the last
  ``max_len`` items. An explicit history carries no times, so it is fed as one session (every
  timestamp equal); known users are fed their real sequence with real timestamps.
- pair models (``input_kind = "pairs"``: BPR, LightGCN): a known user is scored by user index,
  ``score(PairBatch(users))``, from the training graph, as ``genrec.runs`` evaluates them. An
  explicit history is folded in (``model.score_history``): the user vector is the mean of the
  history's final item vectors (after propagation and text fusion for LightGCN). That is an
  approximation, since these models learn no encoder from items to users; a known user with
  no training interaction (the model never saw them) is folded in from their known items
  rather than served ``genrec.runs``' popularity fallback.

``similar`` uses the model's own item-item structure when it has one (EASE weights, the ItemCF
similarity matrix, a sequence model's item table or a pair model's final item vectors by
cosine), else item co-occurrence cosine over every known interaction.

Example:
    >>> b = load_bundle("runs/ease_amazon-beauty_loo", search="tfidf")     # doctest: +SKIP
    >>> b.recommend(history=b.item_index(["B004756YJA"]), k=5).items       # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from genrec.data.batches import PairBatch, SeqBatch, eval_batch, user_sequences
from genrec.data.dataset import DataError
from genrec.runs import Run, load_run
from genrec.serving.search import GenerateRankIndex, TextIndex, build_text_index, is_search_run

__all__ = ["Bundle", "Recommendation", "UnknownItemsError", "UnknownUserError", "check_run_dir",
           "load_bundle"]

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


@dataclass
class Recommendation:
    items: np.ndarray              # (k,) item_idx, best first
    scores: np.ndarray             # (k,) float64
    fallback: str | None = None    # "popular" when the model could not personalise
    reason: str | None = None      # why the fallback was used


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
    load_seconds: float = 0.0
    _items: dict[str, int] = field(default_factory=dict, repr=False)
    _users: dict[str, int] = field(default_factory=dict, repr=False)
    _similar: Callable[[int], np.ndarray] | None = field(default=None, repr=False)
    # pair models: (users,) True where a user has no training interaction, so no user vector
    _untrained: np.ndarray | None = field(default=None, repr=False)

    # ---- catalogue ------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.run.config.model

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
    def _sequence_model(self) -> bool:
        return getattr(self.run.model, "input_kind", None) == "sequence"

    def _pair_model(self) -> bool:
        return getattr(self.run.model, "input_kind", None) == "pairs"

    def _score_batch(self, batch: SeqBatch | PairBatch) -> np.ndarray:
        with torch.inference_mode():
            return self.run.model.score(batch).double().numpy()[0]

    def _fold_in(self, items: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            scores = self.run.model.score_history(torch.as_tensor(items, dtype=torch.int64))
            return scores.double().numpy()

    def _seen(self, u: int) -> np.ndarray:
        """item_idx user ``u`` interacted with (a CSR row without scipy's slicing overhead)."""
        return self.known.indices[self.known.indptr[u]:self.known.indptr[u + 1]]

    def score_user(self, u: int) -> np.ndarray:
        """(n_items + 1,) scores from everything user ``u`` is known to have done (a pair model:
        its trained user vector, or the fold-in of the known items of a user it never saw)."""
        model = self.run.model
        if self._sequence_model():
            return self._score_batch(eval_batch(self.run.split, "all", np.array([u]),
                                                model.config.max_len))
        if self._pair_model():
            if self._untrained[u]:  # no user vector was trained: fold in what they did
                return self._fold_in(self._seen(u))
            return self._score_batch(PairBatch(users=torch.tensor([u])))
        return np.asarray(model.score(np.array([u]), self.known), dtype=np.float64)[0]

    def score_history(self, items: np.ndarray) -> np.ndarray:
        """(n_items + 1,) scores from an explicit item history (item_idx, oldest first)."""
        model = self.run.model
        if self._sequence_model():
            recent = torch.as_tensor(items[-model.config.max_len:], dtype=torch.int64)[None]
            # no user row: -1 makes any model that looked users up fail loudly, not silently
            batch = SeqBatch(users=torch.tensor([-1]), items=recent,
                             timestamps=torch.zeros_like(recent))
            return self._score_batch(batch)
        if self._pair_model():
            return self._fold_in(items)
        row = sp.csr_matrix((np.ones(len(items), dtype=np.float32),
                             (np.zeros(len(items), dtype=np.int64), items)),
                            shape=(1, self.n_items + 1))
        return np.asarray(model.score(np.array([0]), row), dtype=np.float64)[0]

    def recommend(self, *, user: str | None = None, history: np.ndarray | None = None,
                  k: int = 10, exclude: np.ndarray | None = None,
                  fallback: str | None = None) -> Recommendation:
        """Top-``k`` for a raw user id or an explicit history; seen and excluded items masked.

        An empty history, or an unknown user with ``fallback="popular"``, gets the most popular
        items, flagged in the result.
        """
        reason = None
        if user is not None:
            try:
                u = self.user_index(user)
                scores, seen = self.score_user(u), self._seen(u)
            except UnknownUserError:
                if fallback != "popular":
                    raise
                reason = f"unknown user {user!r}"
        elif history is not None and len(history):
            scores, seen = self.score_history(history), history
        else:
            reason = "empty history"
        if reason is not None:
            scores, seen = self.popularity.astype(np.float64), np.zeros(0, dtype=np.int64)
        mask = np.concatenate([seen, exclude if exclude is not None else []]).astype(np.int64)
        top, top_scores = _top_k(scores, mask, k)
        return Recommendation(top, top_scores, "popular" if reason else None, reason)

    def similar(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items related to ``item`` (itself excluded) and their similarity."""
        return _top_k(self._similar(item), np.array([item]), k)

    def search(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        return self.search_index.search(query, k)


def _top_k(scores: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` finite scores outside ``mask`` and PAD, best first, ties to the lower item_idx."""
    scores = np.array(scores)  # a copy in the model's dtype: callers' arrays stay untouched
    scores[np.isnan(scores)] = -np.inf
    scores[0] = -np.inf
    scores[mask] = -np.inf
    k = min(k, len(scores) - 1)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    # the k-th best score by torch.topk (4x faster than np.argpartition on a 12k catalogue);
    # then everything above it, and the lowest item_idx among those tied with it
    kth = torch.topk(torch.from_numpy(scores), k).values[-1].item()
    above = np.flatnonzero(scores > kth)
    top = np.concatenate([above, np.flatnonzero(scores == kth)[:k - len(above)]])
    top = top[np.isfinite(scores[top])]  # fewer than k candidates left: drop the masked ones
    top = top[np.lexsort((top, -scores[top]))]
    return top.astype(np.int64), scores[top].astype(np.float64)


# ---- item-item similarity sources ----------------------------------------------------------
def _similarity(model: Any, known: sp.csr_matrix) -> tuple[str, Callable[[int], np.ndarray]]:
    """(description, item_idx -> (n_items + 1,) similarity, -inf where unrelated)."""
    n1 = known.shape[1]
    weights = getattr(model, "weights", None)
    if isinstance(weights, np.ndarray) and weights.shape == (n1 - 1, n1 - 1):
        # EASE: B[i, j] is how much having i raises j's score
        return "EASE item-item weights", lambda i: np.concatenate([[-np.inf], weights[i - 1]])
    sim = getattr(model, "sim", None)
    if sp.issparse(sim) and sim.shape == (n1, n1):
        return "ItemCF top-k cosine neighbours", lambda i: _sparse_row(sim.getrow(i), n1)
    if getattr(model, "input_kind", None) == "pairs":
        # the vectors score() uses: LightGCN's after propagation (and fusion), not item_emb;
        # under inference_mode LightGCN propagates here once and caches it for every request
        with torch.inference_mode():
            vectors = torch.nn.functional.normalize(model.item_vectors().float(), dim=-1)
        table = vectors.numpy()
        return (f"{type(model).__name__} item vectors as scored (cosine)",
                lambda i: (table @ table[i]).astype(np.float64))
    emb = getattr(model, "item_emb", None)
    if isinstance(emb, torch.nn.Embedding) and emb.weight.shape[0] == n1:
        table = torch.nn.functional.normalize(emb.weight.detach().float(), dim=-1).numpy()
        return (f"{type(model).__name__} item embeddings (cosine)",
                lambda i: (table @ table[i]).astype(np.float64))
    xt = known.T.tocsr()  # (items, users)
    norms = np.sqrt(np.asarray(known.sum(axis=0), dtype=np.float64).ravel())

    def cooccurrence(i: int) -> np.ndarray:
        co = xt[i] @ known  # (1, n_items + 1): users shared with item i
        out = _sparse_row(co, n1)
        hit = np.isfinite(out)
        out[hit] /= norms[hit] * norms[i]
        return out

    return "item co-occurrence cosine (known interactions)", cooccurrence


def _sparse_row(row: sp.spmatrix, width: int) -> np.ndarray:
    out = np.full(width, -np.inf)
    row = sp.csr_matrix(row)
    keep = row.data > 0  # a stored zero is no relation
    out[row.indices[keep]] = row.data[keep]
    return out


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


def check_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` if it looks like a run directory (cheap: files only), else DataError."""
    run_dir = Path(run_dir)
    has_weights = any((run_dir / n).is_file() for n in ("model.pt", "model.npz"))
    missing = [n for n in ("config.toml", "run.json") if not (run_dir / n).is_file()]
    missing += [] if has_weights else ["model.pt or model.npz"]
    if missing:
        raise DataError(f"{run_dir} is not a genrec run directory (missing {', '.join(missing)}); "
                        f"create one with `genrec train MODEL --data NAME`")
    return run_dir


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
    run = load_run(run_dir)
    if hasattr(run.model, "eval"):
        run.model.eval()  # dropout off
    if getattr(run.model, "input_kind", None) == "sequence":
        user_sequences(run.split, "all")  # cached on the split: built now, not on a request
    item_ids, titles, details, images = _catalogue(run)
    known = run.split.known()
    popularity = np.asarray(known.sum(axis=0), dtype=np.float64).ravel()
    popularity[0] = 0.0
    source, similar = _similarity(run.model, known)
    untrained = None
    if getattr(run.model, "input_kind", None) == "pairs":
        untrained = np.diff(run.split.train_matrix().indptr) == 0
    if is_search_run(search):  # a `genrec search train` run: generate-and-rank
        index = GenerateRankIndex(search, [str(r) for r in item_ids])
    else:
        index = build_text_index(_search_texts(titles, details), search, cache_dir=Path(run_dir),
                                 dataset_dir=run.dataset.path)
    users = run.dataset.users
    bundle = Bundle(run, item_ids, titles, details, images, known, popularity, index, source,
                    _items={str(r): i for i, r in enumerate(item_ids) if i},
                    _users=dict(zip(users["user_id"].cast(str).to_list(),
                                    users["user_idx"].to_list())),
                    _similar=similar, _untrained=untrained)
    bundle.load_seconds = round(time.perf_counter() - t0, 3)
    return bundle
