"""BM25: hand-computed scores on three documents, agreement with a slow per-document reference
of the documented formula, ordering/ties/k, and loud errors. (rank_bm25 is not a dependency,
so the independent check is the reference below.)"""

import math
from collections import Counter

import numpy as np
import pytest

from genrec.retrieval.bm25 import BM25, tokenize

DOCS = ["Apple banana apple", "banana cherry", "cherry CHERRY cherry date"]


def test_tokenize_lowercases_splits_and_drops_stopwords():
    assert tokenize("The Red-Lipstick, for él!") == ["red", "lipstick", "él"]


def test_hand_computed_three_documents():
    # N = 3, |d| = 3, 2, 4, avgdl = 3; df: apple 1, banana 2, cherry 2, date 1; k1 = 1.2, b = 0.75
    idf_apple = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))   # ln(8/3)
    idf_banana = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # ln(1.6)
    # doc 0: norm = 1.2 * (0.25 + 0.75 * 3/3) = 1.2; apple tf 2 -> 2*2.2/(2+1.2); banana tf 1 -> 1
    doc0 = idf_apple * (2 * 2.2) / (2 + 1.2) + idf_banana * 2.2 / (1 + 1.2)
    # doc 1: norm = 1.2 * (0.25 + 0.75 * 2/3) = 0.9; banana tf 1 -> 2.2 / 1.9
    doc1 = idf_banana * 2.2 / (1 + 0.9)
    scores = BM25().fit(DOCS).scores("apple banana")
    assert scores.dtype == np.float32 and scores.shape == (3,)
    np.testing.assert_allclose(scores, [doc0, doc1, 0.0], rtol=1e-6)
    np.testing.assert_allclose([doc0, doc1], [1.8186440, 0.5442147], rtol=1e-6)


def test_repeated_query_term_counts_twice_and_unknown_words_are_ignored():
    bm25 = BM25().fit(DOCS)
    np.testing.assert_allclose(bm25.scores("date date zebra"), 2 * bm25.scores("date"))


def _reference(docs: list[str], query: str, k1: float, b: float) -> np.ndarray:
    """The module docstring's formula, one document at a time."""
    toks = [tokenize(d) for d in docs]
    n, avgdl = len(docs), sum(map(len, toks)) / len(docs)
    out = []
    for doc in toks:
        tf, s = Counter(doc), 0.0
        for t in tokenize(query):
            df = sum(t in d for d in toks)
            if tf[t]:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(doc) / avgdl))
        out.append(s)
    return np.array(out)


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (2.0, 0.0), (0.5, 1.0)])
def test_agrees_with_slow_reference(k1, b):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(15)]
    docs = [" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(40)]
    bm25 = BM25(k1, b).fit(docs)
    for _ in range(10):
        query = " ".join(rng.choice(words, 3))
        np.testing.assert_allclose(bm25.scores(query), _reference(docs, query, k1, b),
                                   rtol=1e-5, atol=1e-6)


def test_search_orders_best_first_keeps_only_matches_and_breaks_ties_by_index():
    bm25 = BM25().fit(["red lipstick", "hair dryer", "red hair dye", "blue shampoo", "red nail"])
    idx, scores = bm25.search("red hair", 10)
    assert idx.tolist() == [2, 1, 0, 4]  # 3 (no shared word) is left out
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    assert bm25.search("red hair", 2)[0].tolist() == [2, 1]
    tie_idx, _ = bm25.search("red", 2)  # lipstick and nail tie; hair dye is longer
    assert tie_idx.tolist() == [0, 4]


def test_no_matching_word_gives_empty_result():
    idx, scores = BM25().fit(DOCS).search("the zebra", 5)
    assert idx.shape == (0,) and scores.shape == (0,)


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_empty_query_raises(query):
    with pytest.raises(ValueError, match="query is empty"):
        BM25().fit(DOCS).search(query, 3)


def test_loud_errors():
    with pytest.raises(RuntimeError, match="fit"):
        BM25().scores("apple")
    with pytest.raises(ValueError, match="non-empty list"):
        BM25().fit([])
    with pytest.raises(ValueError, match="k1"):
        BM25(k1=-1)
    with pytest.raises(ValueError, match="b must"):
        BM25(b=1.5)
    with pytest.raises(ValueError, match="k must"):
        BM25().fit(DOCS).search("apple", 0)
