"""Point-in-time features for a ranker over candidate lists (protocol P5, PROTOCOL.md).

Input: a candidate frame, one row per (user, candidate item) with ``t``, the timestamp of the
user's label position, plus any precomputed ``ch_*`` columns (channel scores and ranks, added by
``genrec.pipeline.ranking``); the ``events`` the stage may see (the split's history part: train
for the validation position, train + validation for the test position) and the dataset's items.

Point in time: a label at time ``t`` sees only events strictly before ``t``, the user's own and,
for item statistics, everybody's. Nothing at or after the label (the label itself, events of the
same second, anything later) can change a feature, whatever ``events`` holds
(tests/features/test_ranking.py). Same-second events of the user (ML-100k rates in bursts) are
therefore left out too: "before" is only certain for an earlier timestamp.

Features (``FEATURES``; pick them by name in ``FeatureConfig.names``), with the default a
missing value gets (counted in ``FeatureTable.defaults``):

    user_activity        dense   the user's events before the label                    0
    user_recency_days    dense   days since the user's last event                      -1
    user_mean_rating     dense   mean rating of those events (datasets with ratings)   0
    user_top_category    sparse  the user's most frequent category                     id 0
    item_pop             dense   the item's events before t (every user)               0
    item_pop_recent      dense   ... within the last ``recent_days``                   0
    item_trend           dense   item_pop_recent / item_pop                            0
    item_age_days        dense   days since the item's first event before t            -1
    item_category        sparse  the item's primary category                           id 0
    item_brand           sparse  the item's brand (a ``brand`` column)                 id 0
    content_sim          dense   cosine of the item's content vector to the mean of
                                 the user's history vectors (``content`` encoder)      0
    category_share       dense   share of the user's events in the item's category     0
    days_since_category  dense   days since the user's last event in that category     -1
    channels             dense   every ``ch_*`` column of the candidate frame (channel
                                 score / rank, number of channels proposing the item)
    history              seq     the user's last ``max_len`` items, time order, left-padded
                                 (for target attention; not a column of the frame)

Primary category: the first entry of the category column split on "|", and of an "A > B > C"
path its last part (ML-100k ``genres``, Amazon ``categories``). Days are timestamp seconds /
86400. Example:
    >>> table = build_features(cands, train_events, ds.items, FeatureConfig())  # doctest: +SKIP
    >>> table.frame.select(table.dense).to_numpy()                               # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from genrec.config import ConfigError

__all__ = ["FEATURES", "DEFAULT_FEATURES", "FeatureConfig", "FeatureTable", "ItemIndex",
           "build_features", "build_feature_chunks", "primary_categories"]

FEATURES: dict[str, str] = {
    "user_activity": "dense", "user_recency_days": "dense", "user_mean_rating": "dense",
    "user_top_category": "sparse", "item_pop": "dense", "item_pop_recent": "dense",
    "item_trend": "dense", "item_age_days": "dense", "item_category": "sparse",
    "item_brand": "sparse", "content_sim": "dense", "category_share": "dense",
    "days_since_category": "dense", "channels": "dense", "history": "seq",
}
# every feature that needs nothing beyond interactions and item columns
DEFAULT_FEATURES = [n for n in FEATURES if n not in ("content_sim",)]
_DAY = 86400.0


@dataclass
class FeatureConfig:
    names: list[str] = field(default_factory=lambda: list(DEFAULT_FEATURES))
    """Which features to build (see ``FEATURES``)."""
    recent_days: float = 30.0
    """Window of ``item_pop_recent`` / ``item_trend``, in days before the label."""
    category_column: str = ""
    """Item column holding categories; "" = ``genres`` or ``categories`` when present."""
    content: str = ""
    """Encoder name of the dataset's item vectors (``genrec embed items``) for content_sim."""
    max_len: int = 50
    """Length of the behaviour sequence (``history``)."""

    def validate(self) -> None:
        unknown = [n for n in self.names if n not in FEATURES]
        if unknown:
            raise ConfigError(f"unknown feature(s) {', '.join(map(repr, unknown))} in "
                              f"features.names; known: {', '.join(FEATURES)}")
        if "content_sim" in self.names and not self.content:
            raise ConfigError("feature 'content_sim' needs features.content: the encoder name of "
                              "item vectors written by `genrec embed items --data NAME`")
        if self.recent_days <= 0 or self.max_len < 1:
            raise ConfigError(f"features.recent_days must be > 0 and features.max_len >= 1, got "
                              f"{self.recent_days} and {self.max_len}")


@dataclass
class FeatureTable:
    frame: pl.DataFrame       # user_idx, item_idx, label, t, then the dense and sparse columns
    dense: list[str]          # float columns
    sparse: list[str]         # int64 categorical ids, 0 = missing
    sparse_cards: list[int]   # ids of sparse[c] are < sparse_cards[c]
    users: np.ndarray         # (U,) user_idx of the rows of ``history``
    history: np.ndarray       # (U, L) int64 item ids before the label, left-padded with 0
    defaults: dict[str, int]  # how many users / candidates got a documented default


def primary_categories(items: pl.DataFrame, n_items: int, column: str = ""
                       ) -> tuple[np.ndarray, list[str]]:
    """``(ids (n_items + 1,) int64, vocabulary)``: each item's primary category as an id
    (1-based into the sorted vocabulary; 0 = none, and at PAD)."""
    column = column or next((c for c in ("genres", "categories") if c in items.columns), "")
    ids = np.zeros(n_items + 1, dtype=np.int64)
    if not column:
        return ids, []
    if column not in items.columns:
        raise ConfigError(f"features.category_column {column!r} is not an item column; the items "
                          f"have {', '.join(items.columns)}")
    first = (items[column].cast(pl.Utf8).str.split("|").list.first().str.split(">").list.last()
             .str.strip_chars())
    first = first.replace("", None)
    vocab = sorted(first.drop_nulls().unique().to_list())
    code = {c: i + 1 for i, c in enumerate(vocab)}
    ids[items["item_idx"].to_numpy()] = [code.get(c, 0) if c is not None else 0
                                         for c in first.to_list()]
    return ids, vocab


def _codes(items: pl.DataFrame, n_items: int, column: str) -> tuple[np.ndarray, int]:
    """Ids of a plain string column (e.g. brand): 1-based, 0 = missing; and the cardinality."""
    ids = np.zeros(n_items + 1, dtype=np.int64)
    if column not in items.columns:
        return ids, 1
    values = items[column].cast(pl.Utf8).str.strip_chars().replace("", None)
    vocab = sorted(values.drop_nulls().unique().to_list())
    code = {c: i + 1 for i, c in enumerate(vocab)}
    ids[items["item_idx"].to_numpy()] = [code.get(c, 0) if c is not None else 0
                                         for c in values.to_list()]
    return ids, len(vocab) + 1


class ItemIndex:
    """What the features read of the items, built once per log: every event's (item, time),
    sorted, answering "how often was this item seen before time t" by two binary searches; and
    the items' primary-category and brand ids.

    Built inside ``build_features`` by default; a caller that builds many tables from one log
    (serving, ``build_feature_chunks``) builds it once and passes it in."""

    def __init__(self, events: pl.DataFrame, items: pl.DataFrame, n_items: int,
                 category_column: str = "") -> None:
        item = events["item_idx"].to_numpy().astype(np.int64)
        t = events["timestamp"].to_numpy().astype(np.int64)
        self.t0 = int(t.min()) if len(t) else 0
        # one int64 key per event, item-major; offsets clipped to [0, span) below keep every
        # query inside its item's range (t after the last event counts them all)
        self.span = (int(t.max()) - self.t0 + 2) if len(t) else 2
        self.key = np.sort(item * self.span + (t - self.t0))
        self.category, self.vocab = primary_categories(items, n_items, category_column)
        self.brand, self.brand_card = _codes(items, n_items, "brand")

    def _first_at_or_after(self, item: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index into ``key`` of the first event of ``item`` at or after ``t``."""
        return np.searchsorted(self.key, item * self.span + np.clip(t - self.t0, 0, self.span - 1),
                               "left")

    def stats(self, item: np.ndarray, t: np.ndarray, recent: float) -> dict[str, np.ndarray]:
        """Per (item, t) row: events of the item strictly before t (all, within ``recent``
        seconds, first time)."""
        start = np.searchsorted(self.key, item * self.span, "left")
        before = self._first_at_or_after(item, t)
        since = self._first_at_or_after(item, t - int(recent))
        pop = before - start
        first = np.where(pop > 0, self.key[np.minimum(start, max(len(self.key) - 1, 0))]
                         - item * self.span + self.t0, t)
        return {"item_pop": pop.astype(np.float32),
                "item_pop_recent": (before - since).astype(np.float32),
                "item_trend": np.where(pop > 0, (before - since) / np.maximum(pop, 1), 0.0
                                       ).astype(np.float32),
                "item_age_days": np.where(pop > 0, (t - first) / _DAY, -1.0).astype(np.float32)}


def _own_events(events: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Each label user's events strictly before the label time, in (user, time, stored) order."""
    return (events.with_row_index("_row").join(labels, on="user_idx")
            .filter(pl.col("timestamp") < pl.col("t"))
            .sort(["user_idx", "timestamp", "_row"]))


def _history(own: pl.DataFrame, users: np.ndarray, max_len: int) -> np.ndarray:
    """(U, max_len) the last max_len items of each user, left-padded with 0."""
    out = np.zeros((len(users), max_len), dtype=np.int64)
    u = own["user_idx"].to_numpy()
    items = own["item_idx"].to_numpy()
    row_of = np.full(int(max(users.max(initial=0), u.max(initial=0))) + 1, -1, dtype=np.int64)
    row_of[users] = np.arange(len(users))
    ends = np.searchsorted(u, users, "right")
    starts = np.maximum(np.searchsorted(u, users, "left"), ends - max_len)
    for r, (lo, hi) in enumerate(zip(starts, ends)):
        if hi > lo:
            out[r, max_len - (hi - lo):] = items[lo:hi]
    return out


def _content_sim(own: pl.DataFrame, cands: pl.DataFrame, vectors: np.ndarray,
                 chunk: int = 200_000) -> np.ndarray:
    """Cosine of each candidate's vector to the mean of the user's history vectors (0 when
    either is missing: a zero vector)."""
    users = own["user_idx"].to_numpy()
    n_users = int(max(users.max(initial=0), cands["user_idx"].max() or 0)) + 1
    ones = np.ones(len(users), dtype=np.float32)
    hist = sp.csr_matrix((ones, (users, own["item_idx"].to_numpy())), shape=(n_users, len(vectors)))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    profile = np.asarray(hist @ unit)  # (U, D) sum of unit vectors; the cosine ignores the scale
    p_norm = np.linalg.norm(profile, axis=1)
    cu, ci = cands["user_idx"].to_numpy(), cands["item_idx"].to_numpy()
    out = np.zeros(len(cu), dtype=np.float32)
    for lo in range(0, len(cu), chunk):
        u, i = cu[lo:lo + chunk], ci[lo:lo + chunk]
        dot = np.einsum("nd,nd->n", profile[u], unit[i])
        out[lo:lo + chunk] = np.divide(dot, p_norm[u], out=np.zeros(len(u)), where=p_norm[u] > 0)
    return out


def build_features(cands: pl.DataFrame, events: pl.DataFrame, items: pl.DataFrame,
                   cfg: FeatureConfig, n_items: int, vectors: np.ndarray | None = None,
                   index: ItemIndex | None = None) -> FeatureTable:
    """The feature table of ``cands`` (user_idx, item_idx, label, t, ch_* columns) from
    ``events`` (user_idx, item_idx, timestamp, rating) and the dataset's ``items``.

    ``vectors`` (n_items + 1, D): item content vectors, needed by ``content_sim``.
    ``index``: ``ItemIndex`` of all events and items, built once by the caller; then ``events``
    need only hold the candidate users' own events (item statistics come from the index)."""
    index = index or ItemIndex(events, items, n_items, cfg.category_column)
    names = set(cfg.names)
    labels = cands.group_by("user_idx").agg(pl.col("t").first()).sort("user_idx")
    own = _own_events(events, labels)
    cand_items = cands["item_idx"].to_numpy().astype(np.int64)
    t = cands["t"].to_numpy().astype(np.int64)
    cols: dict[str, np.ndarray] = {}
    defaults: dict[str, int] = {}

    # user profile
    prof = own.group_by("user_idx").agg(pl.len().alias("n"),
                                        pl.col("timestamp").max().alias("last"),
                                        pl.col("rating").mean().alias("rating"))
    per_cand = cands.select("user_idx", "t").join(prof, on="user_idx", how="left")
    n = per_cand["n"].fill_null(0).to_numpy().astype(np.float32)
    defaults["users_without_history"] = int((labels.join(prof, on="user_idx", how="left")["n"]
                                             .is_null()).sum())
    if "user_activity" in names:
        cols["user_activity"] = n
    if "user_recency_days" in names:
        last = per_cand["last"].to_numpy()
        cols["user_recency_days"] = np.where(n > 0, (t - np.nan_to_num(last)) / _DAY, -1.0)
    if "user_mean_rating" in names:
        cols["user_mean_rating"] = per_cand["rating"].fill_null(0.0).to_numpy()

    # item profile, as of the label time
    stats = index.stats(cand_items, t, cfg.recent_days * _DAY)
    cols.update({k: v for k, v in stats.items() if k in names})
    defaults["candidates_without_item_history"] = int((stats["item_pop"] == 0).sum())
    if "content_sim" in names:
        if vectors is None:
            raise ConfigError("feature 'content_sim' needs the item vectors of features.content")
        cols["content_sim"] = _content_sim(own, cands, vectors)
        defaults["candidates_without_vector"] = int((np.abs(vectors[cand_items]).sum(1) == 0).sum())

    # categories: the item's, the user's favourite, and the crosses
    cat, vocab = index.category, index.vocab
    sparse: dict[str, tuple[np.ndarray, int]] = {}
    if "item_category" in names:
        sparse["item_category"] = (cat[cand_items], len(vocab) + 1)
        defaults["candidates_without_category"] = int((cat[cand_items] == 0).sum())
    if "item_brand" in names:
        brand, card = index.brand, index.brand_card
        sparse["item_brand"] = (brand[cand_items], card)
        defaults["candidates_without_brand"] = int((brand[cand_items] == 0).sum())
    if names & {"user_top_category", "category_share", "days_since_category"}:
        by_cat = (own.with_columns(pl.Series("cat", cat[own["item_idx"].to_numpy()]))
                  .filter(pl.col("cat") > 0)
                  .group_by("user_idx", "cat").agg(pl.len().alias("n_cat"),
                                                   pl.col("timestamp").max().alias("last_cat")))
        if "user_top_category" in names:
            top = by_cat.sort(["user_idx", "n_cat", "cat"], descending=[False, True, False]
                              ).group_by("user_idx", maintain_order=True).first()
            ids = cands.select("user_idx").join(top, on="user_idx", how="left")["cat"]
            sparse["user_top_category"] = (ids.fill_null(0).to_numpy(), len(vocab) + 1)
        cross = (cands.select("user_idx", "t").with_columns(pl.Series("cat", cat[cand_items]))
                 .join(by_cat, on=["user_idx", "cat"], how="left"))
        n_cat = cross["n_cat"].fill_null(0).to_numpy().astype(np.float32)
        if "category_share" in names:
            cols["category_share"] = np.divide(n_cat, n, out=np.zeros_like(n), where=n > 0)
        if "days_since_category" in names:
            last_cat = np.nan_to_num(cross["last_cat"].to_numpy().astype(np.float64))
            cols["days_since_category"] = np.where(n_cat > 0, (t - last_cat) / _DAY, -1.0)

    channel_cols = [c for c in cands.columns if c.startswith("ch_")] if "channels" in names else []
    frame = cands.select("user_idx", "item_idx", "label", "t", *channel_cols).with_columns(
        *(pl.Series(k, np.asarray(v, dtype=np.float32)) for k, v in cols.items()),
        *(pl.Series(k, v.astype(np.int64)) for k, (v, _) in sparse.items()))
    users = labels["user_idx"].to_numpy().astype(np.int64)
    history = _history(own, users, cfg.max_len) if "history" in names else \
        np.zeros((len(users), 0), dtype=np.int64)
    return FeatureTable(frame, [*channel_cols, *cols], list(sparse),
                        [card for _, card in sparse.values()], users, history, defaults)


def build_feature_chunks(cands: pl.DataFrame, events: pl.DataFrame, items: pl.DataFrame,
                         cfg: FeatureConfig, n_items: int, vectors: np.ndarray | None = None,
                         users_per_chunk: int = 50_000) -> Iterator[FeatureTable]:
    """``build_features`` over ``users_per_chunk`` candidate users at a time, for logs whose
    whole candidate frame would not fit at once: one ``ItemIndex`` of every event, each chunk
    reading only its users' own events. The chunks' frames concatenated equal one
    ``build_features`` call (tests/features/test_ranking.py); the caller writes each away."""
    index = ItemIndex(events, items, n_items, cfg.category_column)
    by_user = events.sort("user_idx", maintain_order=True)
    ev_users = by_user["user_idx"].to_numpy()
    cands = cands.sort("user_idx", maintain_order=True)
    c_users = cands["user_idx"].to_numpy()
    users = np.unique(c_users)
    for lo in range(0, len(users), users_per_chunk):
        first, last = users[lo], users[min(lo + users_per_chunk, len(users)) - 1]
        a, b = np.searchsorted(ev_users, [first, last + 1])
        c, d = np.searchsorted(c_users, [first, last + 1])
        yield build_features(cands.slice(c, d - c), by_user.slice(a, b - a), items, cfg, n_items,
                             vectors, index)
