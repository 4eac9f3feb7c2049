"""Text queries made from the catalogue itself: (query, item) pairs, a held-out split, metrics.

There is no query log in these datasets, so queries come from the items' own text, and a
query's relevant set is every item whose text yields it:

    categories  each " > " path (root dropped): its leaf, and the leaf with its parent
                "Beauty > Skin Care > Face > Moisturizers" -> "moisturizers", "face moisturizers"
    title       2-4-word phrases of the title, within one clause (no punctuation, digits or unit
                words inside), not starting or ending with a stop word, not brand-only, shared
                by at least ``min_phrase_items`` items; ``title_phrases`` of them are sampled
                per item (seeded) into the query vocabulary, and then EVERY item whose title
                holds a sampled phrase is relevant to it
    genres/tags each "|"-separated value of those columns (ml-latest-small genres and user
                tags, goodbooks-10k shelves with generic ones such as "to-read" dropped, anime
                genres), "-"/"_" read as spaces

Brand words: a title's first word is taken as a brand when it opens at least two titles and
at least half of the titles that hold it (e.g. "opi", "nyx"), its second word too when that
two-word opening recurs and the word is a title's second word at least half of the time
("dr. scholl's"); a phrase made only of the item's brand words is not a query.

Split (per item, seeded): each item's pairs are shuffled; ``test_share`` of them (stochastic
rounding) go to test, ``valid_share`` to valid, and at least one stays in train. A stage's
queries are those with at least one pair in that stage; they are scored against ALL their
relevant items (any split), while the model trained on train pairs only. Metrics (``metrics``):

    Recall@K        hits among all relevant items / min(K, |relevant|)  (1.0 = a perfect list)
    NDCG@K          binary gains over all relevant items, ideal DCG over min(K, |relevant|)
    HeldOutRecall@K hits among the query's pairs of that stage / min(K, their number): only
                    items never paired with the query in training count, so memorising the
                    training pairs earns nothing here

Example:
    >>> qs = build_queries(ds.items, QueryConfig(seed=0))                 # doctest: +SKIP
    >>> qs.summary()["queries"], qs.stage("test")[0][:3]                  # doctest: +SKIP
"""

from __future__ import annotations

import html
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from genrec._files import atomic_file
from genrec.evaluation.metrics import NO_RANK, ndcg_at_k

__all__ = ["QueryConfig", "QuerySet", "build_queries", "title_phrases", "category_queries",
           "metrics", "SOURCES", "TRAIN", "VALID", "TEST"]

SOURCES = ("categories", "title", "genres", "tags")
TRAIN, VALID, TEST = 0, 1, 2
_STAGES = {"train": TRAIN, "valid": VALID, "test": TEST}

STOP = frozenset(
    "a about after all also an and any are as at be been but by can de del des do does du each "
    "et for from has have he her his how i if in into is it its la le les more most my no not "
    "of on or our out over per she so some such than that the their them then there these they "
    "this those to too under up us very was we were what when which while who will with without "
    "you your w".split())
# words that make a phrase about packaging rather than the product; they break phrases like digits
NOISE = frozenset(
    "oz ounce ounces fl fluid ml l lb lbs g gram grams kg mg pack packs count ct pc pcs piece "
    "pieces inch inches cm mm size new item items pk qty".split())
# goodbooks shelves that say nothing about a book
GENERIC_TAGS = frozenset(
    "to-read currently-reading favorites favourites owned books-i-own owned-books my-books "
    "default i-own own library kindle ebook ebooks to-buy wish-list wishlist read-in-2015 "
    "re-read reread audiobook audiobooks audio on-hold books must-read abandoned "
    "did-not-finish dnf".split())
_CLAUSE = re.compile(r"[,;:()\[\]{}/|+!?\"“”]|\s[-–—]\s|\.\s|\.$")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # unicode letters/digits, inner apostrophes


@dataclass
class QueryConfig:
    sources: tuple[str, ...] = SOURCES  # query sources to use, each where its column exists
    title_phrases: int = 4          # phrases sampled per item into the query vocabulary
    min_words: int = 2              # shortest title phrase
    max_words: int = 4              # longest title phrase
    min_phrase_items: int = 2       # a title phrase must occur in this many items (1 = any)
    max_phrase_items: int = 500     # ... and in at most this many (generic phrases dropped)
    test_share: float = 0.2         # share of each item's (query, item) pairs held out for test
    valid_share: float = 0.1        # ... and for validation (selection / early stopping only)
    seed: int = 0                   # phrase sampling and split seed

    def validate(self) -> None:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"queries.sources: {unknown or '(none)'} not among {list(SOURCES)}")
        if not 1 <= self.min_words <= self.max_words or self.title_phrases < 0:
            raise ValueError(f"queries: need 1 <= min_words <= max_words and title_phrases >= 0, "
                             f"got {self.min_words}, {self.max_words}, {self.title_phrases}")
        if not 1 <= self.min_phrase_items <= self.max_phrase_items:
            raise ValueError("queries: need 1 <= min_phrase_items <= max_phrase_items")
        if not (0 <= self.test_share < 1 and 0 <= self.valid_share < 1
                and self.test_share + self.valid_share < 1):
            raise ValueError(f"queries: need test_share, valid_share >= 0 with a sum below 1, got "
                             f"{self.test_share}, {self.valid_share}")


# ---- query extraction ------------------------------------------------------------------------
def _words(text: str) -> list[list[str]]:
    """Clauses of ``text``, each a list of lowercase words; digits and unit words become
    clause breaks too (a phrase never spans them)."""
    out = []
    for clause in _CLAUSE.split(html.unescape(text).lower()):
        run: list[str] = []
        for w in _WORD.findall(clause):
            if any(c.isdigit() for c in w) or w in NOISE:
                out.append(run)
                run = []
            else:
                run.append(w.replace("’", "'"))
        out.append(run)
    return [r for r in out if r]


def _brands(titles: list[list[str]]) -> list[set[str]]:
    """Brand words of each title (module docstring): from where words sit across all titles."""
    first, second, pair, holding = Counter(), Counter(), Counter(), Counter()
    for words in titles:
        for w in set(words):
            holding[w] += 1
        if words:
            first[words[0]] += 1
        if len(words) > 1:
            second[words[1]] += 1
            pair[words[0], words[1]] += 1
    out = []
    for words in titles:
        b: set[str] = set()
        if words and first[words[0]] >= 2 and first[words[0]] >= 0.5 * holding[words[0]]:
            b.add(words[0])
            if (len(words) > 1 and pair[words[0], words[1]] >= 2
                    and second[words[1]] >= 0.5 * holding[words[1]]):
                b.add(words[1])
        out.append(b)
    return out


def title_phrases(titles: list[str], min_words: int = 2, max_words: int = 4) -> list[set[str]]:
    """Candidate query phrases of each title (module docstring), before the item-count rules."""
    clauses = [_words(t or "") for t in titles]
    brands = _brands([[w for c in cs for w in c] for cs in clauses])
    out = []
    for cs, brand in zip(clauses, brands):
        found: set[str] = set()
        for words in cs:
            for n in range(min_words, max_words + 1):
                for s in range(len(words) - n + 1):
                    gram = words[s:s + n]
                    if gram[0] in STOP or gram[-1] in STOP:
                        continue
                    content = [w for w in gram if w not in STOP]
                    if all(w in brand for w in content) or all(len(w) < 2 for w in content):
                        continue
                    found.add(" ".join(gram))
        out.append(found)
    return out


def _clean(text: str) -> str:
    return " ".join(_WORD.findall(html.unescape(text).lower().replace("-", " ").replace("_", " ")))


def category_queries(paths: str | None) -> set[str]:
    """Leaf and parent + leaf of each "|"-separated " > " category path (root dropped)."""
    out: set[str] = set()
    for path in (paths or "").split("|"):
        parts = [_clean(p) for p in path.split(">")]
        parts = [p for p in parts[1:] if p] if len(parts) > 1 else [p for p in parts if p]
        if parts:
            out.add(parts[-1])
            if len(parts) > 1 and parts[-2] != parts[-1]:
                out.add(f"{parts[-2]} {parts[-1]}")
    return out


def _labels(values: str | None, drop: frozenset[str] = frozenset()) -> set[str]:
    parts = [v.strip() for v in (values or "").split("|")]
    return {_clean(v) for v in parts if v and v.lower() not in drop} - {""}


# ---- the query set ---------------------------------------------------------------------------
@dataclass
class QuerySet:
    """Queries and their (query, item) pairs with a split. Arrays are aligned per pair."""

    queries: list[str]          # (Q,) query text
    kinds: list[str]            # (Q,) the source that first yielded each query
    pair_query: np.ndarray      # (P,) int64 query index
    pair_item: np.ndarray       # (P,) int64 item_idx (1-based)
    pair_split: np.ndarray      # (P,) int8 TRAIN | VALID | TEST

    def pairs(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """(query index, item_idx) of the pairs of ``stage`` (train | valid | test)."""
        keep = self.pair_split == _STAGES[stage]
        return self.pair_query[keep], self.pair_item[keep]

    def relevant(self) -> list[np.ndarray]:
        """Every item (all splits) of each query, sorted."""
        order = np.lexsort((self.pair_item, self.pair_query))
        bounds = np.searchsorted(self.pair_query[order], np.arange(len(self.queries) + 1))
        items = self.pair_item[order]
        return [items[bounds[q]:bounds[q + 1]] for q in range(len(self.queries))]

    def stage(self, stage: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """(query indices, all relevant items, the stage's own items) of the stage's queries."""
        q, i = self.pairs(stage)
        qs = np.unique(q)
        rel = self.relevant()
        own: dict[int, list[int]] = defaultdict(list)
        for a, b in zip(q.tolist(), i.tolist()):
            own[a].append(b)
        return qs, [rel[x] for x in qs], [np.array(sorted(own[x]), dtype=np.int64) for x in qs]

    def summary(self) -> dict[str, Any]:
        kinds = Counter(self.kinds)
        out: dict[str, Any] = {"queries": len(self.queries), "pairs": int(len(self.pair_query)),
                               "by_kind": dict(kinds)}
        for name, code in _STAGES.items():
            out[f"{name}_pairs"] = int((self.pair_split == code).sum())
            out[f"{name}_queries"] = int(len(np.unique(self.pair_query[self.pair_split == code])))
        trained = set(self.pair_query[self.pair_split == TRAIN].tolist())
        test = np.unique(self.pair_query[self.pair_split == TEST])
        out["test_queries_unseen_in_train"] = int(sum(q not in trained for q in test.tolist()))
        return out

    def save(self, path: str | Path) -> None:
        """One Parquet row per pair (query text, kind, item_idx, split); written atomically."""
        table = pl.DataFrame({
            "query": [self.queries[q] for q in self.pair_query.tolist()],
            "kind": [self.kinds[q] for q in self.pair_query.tolist()],
            "item_idx": self.pair_item.astype(np.int32),
            "split": self.pair_split.astype(np.int8),
        })
        with atomic_file(path, "wb") as fh:
            table.write_parquet(fh)

    @classmethod
    def load(cls, path: str | Path) -> "QuerySet":
        df = pl.read_parquet(path)
        queries, first = np.unique(df["query"].to_numpy().astype(str), return_index=True)
        kinds = df["kind"].to_numpy()[first].tolist()
        index = {q: n for n, q in enumerate(queries.tolist())}
        return cls(queries.tolist(), kinds,
                   np.array([index[q] for q in df["query"].to_list()], dtype=np.int64),
                   df["item_idx"].to_numpy().astype(np.int64),
                   df["split"].to_numpy().astype(np.int8))


def _split(items: np.ndarray, cfg: QueryConfig) -> np.ndarray:
    """(P,) TRAIN/VALID/TEST per pair: per item, shuffled, shares by stochastic rounding, and at
    least one train pair per item."""
    rng = np.random.default_rng(cfg.seed + 1)
    u = rng.random(len(items))
    order = np.lexsort((u, items))
    uniq, start, counts = np.unique(items[order], return_index=True, return_counts=True)
    extra = rng.random((len(uniq), 2))
    n_test = np.floor(cfg.test_share * counts + extra[:, 0]).astype(np.int64)
    n_valid = np.floor(cfg.valid_share * counts + extra[:, 1]).astype(np.int64)
    n_test = np.minimum(n_test, counts - 1)
    n_valid = np.minimum(n_valid, counts - 1 - n_test)
    rank = np.arange(len(items)) - np.repeat(start, counts)  # position within the item
    item_of = np.repeat(np.arange(len(uniq)), counts)
    split = np.full(len(items), TRAIN, dtype=np.int8)
    sorted_split = np.where(rank < n_test[item_of], TEST,
                            np.where(rank < n_test[item_of] + n_valid[item_of], VALID, TRAIN))
    split[order] = sorted_split
    return split


def build_queries(items: pl.DataFrame, cfg: QueryConfig = QueryConfig()) -> QuerySet:
    """Queries and a held-out split from an items table (item_idx plus text columns)."""
    cfg.validate()
    if "item_idx" not in items.columns:
        raise ValueError(f"items table needs an item_idx column, has {items.columns}")
    items = items.sort("item_idx")
    idx = items["item_idx"].to_numpy().astype(np.int64)
    per_item: list[list[tuple[str, str]]] = [[] for _ in range(len(idx))]  # (query, kind)
    used = [s for s in cfg.sources if s in items.columns]
    if not used:
        raise ValueError(f"no query source among {list(cfg.sources)} is an item column "
                         f"(items.parquet has {items.columns}); text queries need titles, "
                         f"category paths, genres or tags")
    rng = np.random.default_rng(cfg.seed)
    for source in used:
        col = items[source].cast(pl.Utf8).to_list()
        if source == "title":
            cands = title_phrases(col, cfg.min_words, cfg.max_words)
            df = Counter(p for c in cands for p in c)
            ok = [sorted(p for p in c if cfg.min_phrase_items <= df[p] <= cfg.max_phrase_items)
                  for c in cands]
            vocab = set()
            for c in ok:
                pick = rng.permutation(len(c))[:cfg.title_phrases]
                vocab.update(c[j] for j in pick)
            for row, c in enumerate(ok):
                per_item[row] += [(p, "title") for p in c if p in vocab]
        else:
            make: Callable[[str | None], set[str]] = (
                category_queries if source == "categories"
                else (lambda v: _labels(v, GENERIC_TAGS)) if source == "tags" else _labels)
            for row, v in enumerate(col):
                per_item[row] += [(q, source) for q in sorted(make(v))]
    index: dict[str, int] = {}
    kinds: list[str] = []
    pq, pi = [], []
    for row, found in enumerate(per_item):
        seen = set()
        for q, kind in found:
            if q in seen:
                continue
            seen.add(q)
            if q not in index:
                index[q] = len(kinds)
                kinds.append(kind)
            pq.append(index[q])
            pi.append(idx[row])
    if not pq:
        raise ValueError(f"no queries could be made from columns {used} of {len(idx)} items; "
                         f"lower queries.min_phrase_items or add sources")
    pair_item = np.array(pi, dtype=np.int64)
    return QuerySet(list(index), kinds, np.array(pq, dtype=np.int64), pair_item,
                    _split(pair_item, cfg))


# ---- metrics ---------------------------------------------------------------------------------
def _ranks(ranked: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of each relevant item in ``ranked`` (NO_RANK when absent)."""
    pos = {int(x): r + 1 for r, x in enumerate(ranked.tolist()) if x > 0}
    return np.array([pos.get(int(x), NO_RANK) for x in relevant], dtype=np.int64)


def metrics(ranked: list[np.ndarray], relevant: list[np.ndarray], held: list[np.ndarray],
            k: int = 10, kinds: list[str] | None = None) -> dict[str, Any]:
    """Recall@k, NDCG@k, HeldOutRecall@k (module docstring) averaged over queries, overall
    and per query kind. ``ranked[q]``: item_idx best first (0 = padding)."""
    rec, ndcg, held_rec = [], [], []
    for r, rel, own in zip(ranked, relevant, held):
        ranks = _ranks(np.asarray(r), rel)
        rec.append((ranks <= k).sum() / min(k, len(rel)))
        ndcg.append(float(ndcg_at_k(ranks[None], np.array([len(rel)]), k)[0]))
        held_rec.append((_ranks(np.asarray(r), own) <= k).sum() / max(min(k, len(own)), 1))
    table = np.array([rec, ndcg, held_rec]).reshape(3, -1)
    names = [f"Recall@{k}", f"NDCG@{k}", f"HeldOutRecall@{k}"]
    out: dict[str, Any] = {n: round(float(v.mean()), 5) if v.size else float("nan")
                           for n, v in zip(names, table)}
    out["n_queries"] = len(ranked)
    if kinds is not None:
        for kind in sorted(set(kinds)):
            sel = np.array([x == kind for x in kinds])
            out[kind] = {n: round(float(v[sel].mean()), 5) for n, v in zip(names, table)}
            out[kind]["n_queries"] = int(sel.sum())
    return out
