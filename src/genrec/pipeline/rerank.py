"""Re-ranking after the ranker: diversity (MMR, per-category caps) and business filters.

The ranker orders each user's candidates by relevance alone; a re-ranker trades some of it for
a more varied top of the list. Methods (``RerankConfig.method``):

    none      the ranker's order
    mmr       maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998): the first
              ``top_n`` positions are picked greedily, each the candidate with the largest
              lambda * rel(i) - (1 - lambda) * max over the items already picked of sim(i, j);
              rel = the ranker's score min-max scaled to [0, 1] within the user's candidates
    category  at most ``max_per_category`` items of one category among the first ``top_n``
              positions, in the ranker's order; items without a category are not capped
Positions after ``top_n`` keep the ranker's order. Similarity: cosine of the items' content
vectors when ``content`` names an encoder (`genrec embed items`), else 1 for the same primary
category (``genrec.features.ranking.primary_categories``) and 0 otherwise (or without one).

Business filters: items the user already saw are never candidates (the channels exclude the
history and the evaluator masks it); items flagged unavailable (raw ids in ``unavailable`` and
in ``unavailable_file``, one a line) are removed from the candidates, so they rank after every
candidate like any item outside the set.

``ild`` measures what the re-ranking buys: ILD@K, the intra-list diversity of each user's top K
(the mean of 1 - sim over its pairs of items), averaged over the users with two items or more.

Example:
    >>> sim = ItemSimilarity.of(items, n_items)                             # doctest: +SKIP
    >>> cfg = RerankConfig(method="mmr", mmr_lambda=0.7)
    >>> frame, scores = rerank(cands, ranker_scores, cfg, sim)              # doctest: +SKIP
    >>> ild(frame, scores, sim, k=10)                                       # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from genrec.config import ConfigError
from genrec.features.ranking import primary_categories

__all__ = ["METHODS", "RerankConfig", "ItemSimilarity", "unavailable_items", "mmr_order", "rerank",
           "ild"]

METHODS = ("none", "mmr", "category")


@dataclass
class RerankConfig:
    method: str = "none"
    """none | mmr | category (see the module docstring)."""
    mmr_lambda: float = 0.7
    """MMR's weight of relevance against similarity to the items already picked (1 = none)."""
    max_per_category: int = 2
    """category: the most items of one category among the first top_n."""
    top_n: int = 10
    """How many leading positions are re-ranked."""
    content: str = ""
    """Encoder name of item vectors for the similarity; "" = same primary category."""
    unavailable: list[str] = field(default_factory=list)
    """Raw item ids never to recommend (out of catalogue)."""
    unavailable_file: str = ""
    """A text file of more such raw ids, one a line."""

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"rerank.method {self.method!r} is not one of {', '.join(METHODS)}")
        if not 0 <= self.mmr_lambda <= 1 or self.max_per_category < 1 or self.top_n < 1:
            raise ConfigError(f"rerank needs mmr_lambda in [0, 1], max_per_category >= 1 and "
                              f"top_n >= 1, got {self.mmr_lambda}, {self.max_per_category}, "
                              f"{self.top_n}")

    @property
    def active(self) -> bool:
        """Whether re-ranking changes anything (a method, or items to filter out)."""
        return self.method != "none" or bool(self.unavailable or self.unavailable_file)


@dataclass
class ItemSimilarity:
    """Item-item similarity: cosine of unit content vectors, or same-category match."""

    unit: np.ndarray | None   # (n_items + 1, D) unit vectors (zero rows: no vector), or
    category: np.ndarray      # (n_items + 1,) primary category id, 0 = none
    source: str               # "content:<encoder>" or "category"

    @classmethod
    def of(cls, items: pl.DataFrame, n_items: int, category_column: str = "",
           vectors: np.ndarray | None = None, encoder: str = "") -> ItemSimilarity:
        category = primary_categories(items, n_items, category_column)[0]
        if vectors is None:
            return cls(None, category, "category")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float32),
                         where=norms > 0)
        return cls(unit, category, f"content:{encoder}")

    def rows(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) similarity of every item of ``a`` to every item of ``b``."""
        if self.unit is not None:
            return self.unit[a] @ self.unit[b].T
        ca, cb = self.category[a][:, None], self.category[b][None, :]
        return ((ca == cb) & (ca > 0)).astype(np.float32)

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity of ``a[i]`` and ``b[i]`` (same shapes)."""
        if self.unit is not None:
            return np.einsum("...d,...d->...", self.unit[a], self.unit[b])
        ca, cb = self.category[a], self.category[b]
        return ((ca == cb) & (ca > 0)).astype(np.float32)


def unavailable_items(cfg: RerankConfig, item_ids: np.ndarray) -> np.ndarray:
    """item_idx of the raw ids flagged unavailable (``item_ids``: raw id per item_idx); an id
    that is not in the catalogue is a ConfigError (a typo would silently filter nothing)."""
    raw = list(cfg.unavailable)
    if cfg.unavailable_file:
        path = Path(cfg.unavailable_file)
        if not path.is_file():
            raise ConfigError(f"rerank.unavailable_file {path} does not exist; give a text file "
                              f"of raw item ids, one a line")
        raw += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    index = {str(r): i for i, r in enumerate(item_ids) if i}
    unknown = [r for r in raw if r not in index]
    if unknown:
        raise ConfigError(f"{len(unknown)} unavailable item id(s) are not in the catalogue, e.g. "
                          f"{unknown[:5]}; fix rerank.unavailable / rerank.unavailable_file")
    return np.array(sorted({index[r] for r in raw}), dtype=np.int64)


def _groups(users: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal user ids, and the end (rows sorted by user)."""
    return np.r_[np.flatnonzero(np.r_[True, users[1:] != users[:-1]]), len(users)]


def mmr_order(items: np.ndarray, rel: np.ndarray, sim: ItemSimilarity, lam: float, n: int
              ) -> np.ndarray:
    """Positions (into ``items``, given in the ranker's order) in MMR order for the first n:
    each pick maximises lam * rel (min-max scaled) - (1 - lam) * its largest similarity to the
    items picked so far; the rest follow in the ranker's order."""
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    left = np.ones(len(items), dtype=bool)
    max_sim = np.zeros(len(items))
    picked = []
    for _ in range(min(n, len(items))):
        gain = np.where(left, lam * rel - (1 - lam) * max_sim, -np.inf)
        j = int(np.argmax(gain))  # ties: the better ranked
        picked.append(j)
        left[j] = False
        max_sim = np.maximum(max_sim, sim.rows(items[j:j + 1], items)[0])
    return np.r_[picked, np.flatnonzero(left)].astype(np.int64)


def _capped(items: np.ndarray, sim: ItemSimilarity, cap: int, n: int) -> np.ndarray:
    """Positions (into ``items``, in the ranker's order): the first n with at most ``cap`` per
    category, then the rest in the ranker's order."""
    cats = sim.category[items]
    seen: dict[int, int] = {}
    head: list[int] = []
    for j, c in enumerate(cats):
        if len(head) == n:
            break
        if c == 0 or seen.get(int(c), 0) < cap:
            head.append(j)
            seen[int(c)] = seen.get(int(c), 0) + 1
    rest = np.setdiff1d(np.arange(len(items)), head)  # sorted: the ranker's order
    return np.r_[head, rest].astype(np.int64)


def rerank(frame: pl.DataFrame, scores: np.ndarray, cfg: RerankConfig, sim: ItemSimilarity,
           drop: np.ndarray | None = None) -> tuple[pl.DataFrame, np.ndarray]:
    """Candidate rows (sorted by user) without the ``drop`` items, and their new scores: with a
    method, the re-ranked order as descending scores (n, n - 1, ..., 1 for a user's n rows);
    with none, the ranker's scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if drop is not None and len(drop):
        keep = ~np.isin(frame["item_idx"].to_numpy(), drop)
        frame, scores = frame.filter(pl.Series(keep)), scores[keep]
    if cfg.method == "none":
        return frame, scores
    users, items = frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy().astype(np.int64)
    out = np.empty(len(scores))
    bounds = _groups(users)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        order = lo + np.argsort(-scores[lo:hi], kind="stable")  # the ranker's order
        if cfg.method == "mmr":
            pos = mmr_order(items[order], scores[order], sim, cfg.mmr_lambda, cfg.top_n)
        else:
            pos = _capped(items[order], sim, cfg.max_per_category, cfg.top_n)
        out[order[pos]] = np.arange(hi - lo, 0, -1, dtype=np.float64)  # n, n - 1, ..., 1
    return frame, out


def ild(frame: pl.DataFrame, scores: np.ndarray, sim: ItemSimilarity, k: int = 10) -> float:
    """ILD@k: mean over users (with >= 2 items) of the mean dissimilarity 1 - sim over the pairs
    of their top-k rows by ``scores`` (ties: the lower item_idx first)."""
    top = (frame.select("user_idx", "item_idx").with_columns(pl.Series("s", scores))
           .sort(["user_idx", "s", "item_idx"], descending=[False, True, False])
           .with_columns(pl.int_range(pl.len()).over("user_idx").alias("pos"))
           .filter(pl.col("pos") < k))
    users = top["user_idx"].unique(maintain_order=True)
    grid = np.zeros((len(users), k), dtype=np.int64)  # 0 = PAD: fewer than k rows
    row = np.searchsorted(users.to_numpy(), top["user_idx"].to_numpy())
    grid[row, top["pos"].to_numpy()] = top["item_idx"].to_numpy()
    total, n_pairs = np.zeros(len(users)), np.zeros(len(users))
    for p in range(k):
        for q in range(p + 1, k):
            real = (grid[:, p] > 0) & (grid[:, q] > 0)
            total += np.where(real, 1.0 - sim.pairs(grid[:, p], grid[:, q]), 0.0)
            n_pairs += real
    has = n_pairs > 0
    return float((total[has] / n_pairs[has]).mean()) if has.any() else float("nan")
