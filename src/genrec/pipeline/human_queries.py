"""Text queries written by people (protocols T1 / T2 of ``PROTOCOL.md``): query set, item text,
popularity, and the metrics those protocols report.

Where ``genrec.pipeline.text_queries`` cuts queries out of the items' own text, here the queries
come with the data (prepared by ``genrec data prepare lastfm-tags`` / ``tomt-books``, readers in
``genrec.data.formats.human_text``), and the item text depends on the query split:

    T1 lastfm-tags  a tag given to >= ``min_artists`` distinct artists is a query; its relevant
                    set is every artist given that tag. The TAGS are split (a seeded
                    permutation of the sorted tag ids: the first round(80%) train, the next
                    round(10%) valid, the rest test), so a test query is a string no model
                    trained on. Item text = "artist name. Tags: t1, t2, ..." with the artist's
                    ``item_tags`` most frequent TRAIN tags (by how many users gave them; ties to
                    the lower tag id): a valid or test tag never reaches item text.
    T2 tomt-books   the authors' train / valid / test splits; query = the person's title + "\\n"
                    + description (never the Reddit replies: the reader drops them); one
                    relevant book per query; item text = "title. description".

Both give a ``QuerySet`` (the pipeline's (query, item, split) pairs), so the text-search pipeline
and its evaluation read them as they read item-text queries. Metrics (``ranking_metrics``) follow
``PROTOCOL.md`` and are averaged over queries: Recall@K = hits / |relevant| (RecBole's,
not over min(K, |relevant|): T1 sets are large), NDCG@K with binary gains, MRR@K; Recall@100 is
reported for the candidate stage.

Example:
    >>> hq = human_queries(load_dataset("lastfm-tags"), HumanQueryConfig(seed=0))  # doctest: +SKIP
    >>> hq.queries.summary()["test_queries"], hq.texts[1]                           # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from genrec.data.dataset import DataError, Dataset
from genrec.evaluation.metrics import NO_RANK, mrr_at_k, ndcg_at_k, recall_at_k
from genrec.pipeline.text_queries import TEST, TRAIN, VALID, QuerySet

__all__ = ["HumanQueryConfig", "HumanQueries", "PROTOCOLS", "human_queries", "lastfm_queries",
           "tomt_queries", "ranking_metrics"]

# the reader's ``format`` (meta.json) -> the protocol it serves
PROTOCOLS = {"lastfm-hetrec-tags": "T1", "reddit-tomt-books": "T2"}
_SPLIT_CODES = {"train": TRAIN, "valid": VALID, "test": TEST}


@dataclass
class HumanQueryConfig:
    min_artists: int = 10       # T1: a tag is a query when given to at least this many artists
    valid_share: float = 0.1    # T1: share of query tags held out for validation (selection)
    test_share: float = 0.1     # T1: ... and for test
    item_tags: int = 10         # T1: most frequent TRAIN tags written into an artist's text
    seed: int = 0               # T1: the tag permutation

    def validate(self) -> None:
        if self.min_artists < 1 or self.item_tags < 0:
            raise ValueError(f"human queries: need min_artists >= 1 and item_tags >= 0, got "
                             f"{self.min_artists}, {self.item_tags}")
        if not (0 < self.valid_share and 0 < self.test_share
                and self.valid_share + self.test_share < 1):
            raise ValueError(f"human queries: need valid_share, test_share > 0 with a sum below "
                             f"1, got {self.valid_share}, {self.test_share}")


@dataclass
class HumanQueries:
    """A protocol's queries and what the models read about the items (aligned to item_idx)."""

    protocol: str               # "T1" | "T2"
    queries: QuerySet
    texts: list[str]            # (n_items + 1,) item text; [0] = PAD = ""
    titles: list[str]           # (n_items + 1,) display titles; [0] = ""
    popularity: np.ndarray      # (n_items + 1,) training pairs (T1: user-tag assignments) per item

    def summary(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "n_items": len(self.texts) - 1,
                **self.queries.summary()}


def _titles(ds: Dataset) -> list[str]:
    return [""] + [str(t) for t in ds.titles()[1:]]


def _protocol(ds: Dataset) -> str:
    fmt = ds.meta.get("format", "")
    if fmt not in PROTOCOLS:
        raise DataError(f"{ds.name} is not a dataset of human-written queries (format "
                        f"{fmt!r}); prepare one with `genrec data prepare lastfm-tags` or "
                        f"`genrec data prepare tomt-books`")
    return PROTOCOLS[fmt]


def lastfm_queries(ds: Dataset, cfg: HumanQueryConfig = HumanQueryConfig()) -> HumanQueries:
    """T1 (module docstring) from a prepared ``lastfm-tags`` dataset."""
    cfg.validate()
    log = ds.interactions.select("user_idx", "item_idx", "count")  # one row per (tag, artist)
    tags = ds.users.sort("user_idx")
    tag_text = tags["tag"].to_list()
    tag_id = tags["user_id"].cast(pl.Int64).to_numpy()
    n_artists = np.bincount(log["user_idx"].to_numpy(), minlength=len(tag_text))
    query_tags = np.flatnonzero(n_artists >= cfg.min_artists)
    if len(query_tags) < 3:
        raise DataError(f"{ds.name}: only {len(query_tags)} tags have >= {cfg.min_artists} "
                        f"artists; lower min_artists")
    # a seeded permutation of the sorted tag ids: train, then valid, then test
    order = query_tags[np.argsort(tag_id[query_tags], kind="stable")]
    order = order[np.random.default_rng(cfg.seed).permutation(len(order))]
    n_train = int(round((1 - cfg.valid_share - cfg.test_share) * len(order)))
    n_valid = int(round(cfg.valid_share * len(order)))
    split_of = np.full(len(tag_text), -1, dtype=np.int8)  # -1: not a query tag
    split_of[order[:n_train]] = TRAIN
    split_of[order[n_train:n_train + n_valid]] = VALID
    split_of[order[n_train + n_valid:]] = TEST

    # item text: name + most frequent TRAIN tags (count desc, then tag id)
    train_log = log.filter(pl.Series(split_of[log["user_idx"].to_numpy()] == TRAIN))
    top = (train_log.with_columns(pl.Series("tag_id", tag_id[train_log["user_idx"].to_numpy()]))
           .sort(["item_idx", "count", "tag_id"], descending=[False, True, False])
           .group_by("item_idx", maintain_order=True).head(cfg.item_tags))
    item_tags: dict[int, list[str]] = {}
    for item, t in zip(top["item_idx"].to_list(), top["user_idx"].to_list()):
        item_tags.setdefault(item, []).append(tag_text[t])
    titles = _titles(ds)
    texts = [""] + [f"{titles[i]}. Tags: {', '.join(item_tags[i])}" if i in item_tags
                    else titles[i] for i in range(1, ds.n_items + 1)]
    popularity = np.bincount(train_log["item_idx"].to_numpy(),
                             weights=train_log["count"].to_numpy(), minlength=ds.n_items + 1)

    queries = [tag_text[t] for t in order]
    index = {t: q for q, t in enumerate(order.tolist())}
    pairs = log.filter(pl.Series(split_of[log["user_idx"].to_numpy()] >= 0)).sort(
        "user_idx", "item_idx")
    ptag = pairs["user_idx"].to_numpy()
    qs = QuerySet(queries, ["tag"] * len(queries),
                  np.array([index[t] for t in ptag.tolist()], dtype=np.int64),
                  pairs["item_idx"].to_numpy().astype(np.int64), split_of[ptag].copy())
    return HumanQueries("T1", qs, texts, titles, popularity)


def tomt_queries(ds: Dataset) -> HumanQueries:
    """T2 (module docstring) from a prepared ``tomt-books`` dataset."""
    if "split" not in ds.interactions.columns:
        raise DataError(f"{ds.name} has no split column; prepare it with `genrec data prepare "
                        f"tomt-books`")
    users = ds.users.sort("user_idx")
    text = [f"{t or ''}\n{d or ''}".strip() for t, d in
            zip(users["title"].to_list(), users["description"].to_list())]
    log = ds.interactions.sort("user_idx", "item_idx")
    index: dict[str, int] = {}  # identical texts are one query (relevant: their books' union)
    pq = np.array([index.setdefault(text[u], len(index)) for u in log["user_idx"].to_list()],
                  dtype=np.int64)
    unknown = set(log["split"].unique().to_list()) - set(_SPLIT_CODES)
    if unknown:
        raise DataError(f"{ds.name}: unknown split values {sorted(unknown)}; expected "
                        f"{list(_SPLIT_CODES)}")
    split = np.array([_SPLIT_CODES[s] for s in log["split"].to_list()], dtype=np.int8)
    items = ds.items.sort("item_idx")
    desc = items["description"].to_list() if "description" in items.columns else [""] * ds.n_items
    titles = _titles(ds)
    texts = [""] + [". ".join(p for p in (titles[i], (desc[i - 1] or "").strip()) if p)
                    for i in range(1, ds.n_items + 1)]
    item = log["item_idx"].to_numpy().astype(np.int64)
    _, first = np.unique(np.stack([pq, item]), axis=1, return_index=True)  # one pair each
    keep = np.sort(first)
    pq, item, split = pq[keep], item[keep], split[keep]
    popularity = np.bincount(item[split == TRAIN], minlength=ds.n_items + 1).astype(np.float64)
    qs = QuerySet(list(index), ["tomt"] * len(index), pq, item, split)
    return HumanQueries("T2", qs, texts, titles, popularity)


def human_queries(ds: Dataset, cfg: HumanQueryConfig = HumanQueryConfig()) -> HumanQueries:
    """The protocol the dataset serves (T1 for lastfm-tags, T2 for tomt-books)."""
    return lastfm_queries(ds, cfg) if _protocol(ds) == "T1" else tomt_queries(ds)


def ranking_metrics(ranked: list[np.ndarray], relevant: list[np.ndarray], k: int = 10,
                    k_candidates: int = 100) -> dict[str, Any]:
    """Recall@k, NDCG@k, MRR@k and Recall@k_candidates (module docstring), averaged over
    queries. ``ranked[q]``: item_idx best first (0 = padding, never a hit)."""
    if len(ranked) != len(relevant):
        raise ValueError(f"ranked ({len(ranked)}) and relevant ({len(relevant)}) must align")
    relevant = [np.unique(np.asarray(r)) for r in relevant]  # a repeated item counts once
    width = max([len(r) for r in relevant] + [1])
    ranks = np.full((len(ranked), width), NO_RANK, dtype=np.int64)  # (Q, R) padded
    n_rel = np.array([len(r) for r in relevant], dtype=np.int64)
    for q, (r, rel) in enumerate(zip(ranked, relevant)):
        pos = {int(x): j + 1 for j, x in reversed(list(enumerate(np.asarray(r).tolist())))
               if x > 0}
        ranks[q, :len(rel)] = [pos.get(int(x), NO_RANK) for x in rel]
    out: dict[str, Any] = {
        f"Recall@{k}": recall_at_k(ranks, n_rel, k), f"NDCG@{k}": ndcg_at_k(ranks, n_rel, k),
        f"MRR@{k}": mrr_at_k(ranks, n_rel, k),
        f"Recall@{k_candidates}": recall_at_k(ranks, n_rel, k_candidates)}
    out = {name: round(float(np.nanmean(v)), 5) if len(v) else float("nan")
           for name, v in out.items()}
    out["n_queries"] = len(ranked)
    return out
