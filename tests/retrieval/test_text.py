"""Text indexes: TF-IDF ranks literal word matches (row r is item_idx r + 1), a query that
shares no word finds nothing, and an unknown encoder is a loud error. (MiniLM is exercised
through the service in tests/serving/test_app.py.)"""

import numpy as np
import pytest

from genrec.retrieval.text import ENCODERS, TfidfIndex, build_text_index

TEXTS = ["Red Lipstick", "Blue Shampoo", "Red Shampoo for curls"]


def test_tfidf_ranks_word_matches_best_first():
    index = build_text_index(TEXTS, "tfidf")
    assert isinstance(index, TfidfIndex) and index.name == "tfidf"
    items, scores = index.search("red shampoo", 3)
    assert items.tolist()[0] == 3  # both words
    assert set(items.tolist()) == {1, 2, 3}
    assert np.all(np.diff(scores) <= 0)
    assert index.search("red", 1)[0].tolist() in ([1], [3])


def test_no_shared_word_finds_nothing():
    items, scores = build_text_index(TEXTS, "tfidf").search("guitar", 5)
    assert items.size == 0 and scores.size == 0


def test_unknown_encoder_says_which_exist():
    assert "tfidf" in ENCODERS
    with pytest.raises(ValueError, match="is not one of auto, minilm, tfidf"):
        build_text_index(TEXTS, "word2vec")
