"""Candidate stages and rankers of the T1 / T2 benchmark on a tiny planted query set."""

import numpy as np
import pytest

from genrec.pipeline import human_baselines as hb
from genrec.pipeline.human_queries import HumanQueries
from genrec.pipeline.text_queries import TEST, TRAIN, QuerySet

TEXTS = ["", "red lipstick", "hair dryer", "lavender soap", "green tea", "running shoes",
         "guitar strings"]
# made-up words only the training pairs connect to their items
TRAIN_Q = {"zorblax": [1], "quimple": [2], "fendric": [3], "blorvat": [4], "snerkle": [5, 1]}


def planted() -> HumanQueries:
    queries = list(TRAIN_Q) + ["test query"]
    pq, pi, ps = [], [], []
    for q, items in enumerate(TRAIN_Q.values()):
        pq += [q] * len(items)
        pi += items
        ps += [TRAIN] * len(items)
    pq, pi, ps = pq + [5], pi + [6], ps + [TEST]
    qs = QuerySet(queries, ["tag"] * len(queries), np.array(pq), np.array(pi),
                  np.array(ps, dtype=np.int8))
    pop = np.bincount(np.array(pi)[np.array(ps) == TRAIN], minlength=len(TEXTS)).astype(float)
    return HumanQueries("T1", qs, TEXTS, TEXTS, pop)


def test_popularity_bm25_union() -> None:
    hq = planted()
    top = hb.popularity_rank(hq, 2, 3)
    assert len(top) == 2 and top[0].tolist() == [1, 2, 3]  # item 1 has two pairs, then ties
    assert hb.bm25_rank(TEXTS, ["hair soap"], 5)[0].tolist() == [2, 3]
    merged = hb.union([[np.array([1, 2, 3])], [np.array([2, 4, 5])]], 4)
    assert merged[0].tolist() == [1, 2, 4, 3]
    keys, pos = hb.train_queries(hq)
    assert keys == [0, 1, 2, 3, 4] and pos[4] == [5, 1]


class FakeRanker:
    """Scores an item by its index: re-ranking sorts the head by item_idx, descending."""

    def __init__(self, config) -> None:
        self.config = config

    def fit(self, queries, positives, candidates, texts):
        self.seen = (queries, positives, candidates)
        return {"steps": 1}

    def score(self, query, items, texts):
        return np.asarray(items, dtype=np.float32)


def test_cross_encoder_training_never_takes_a_training_item_as_negative(monkeypatch) -> None:
    import genrec.models.cross_encoder as ce

    monkeypatch.setattr(ce, "CrossEncoderRanker", FakeRanker)
    hq = planted()
    queries, positives = hb.sample_train_queries(hq, 10)
    assert queries == list(TRAIN_Q)
    mined = [[np.array([1, 2, 5, 6])] * 5, [np.array([3, 1])] * 5]
    ranker, info = hb.train_cross_encoder(hq, queries, positives, mined, {"max_minutes": 1},
                                          per_query=1)
    q, chosen, negs = ranker.seen
    assert info["queries"] == 5 and all(len(c) == 1 for c in chosen)
    assert negs[4] == [3, 2, 6]  # snerkle's training items 5 and 1 are not negatives
    assert negs[0] == [3, 2, 5, 6]  # round-robin order of the two stages, item 1 dropped
    lists = hb.rerank(ranker, ["x"], [np.array([2, 5, 3, 1])], TEXTS, depth=3)
    assert lists[0].tolist() == [5, 3, 2, 1]  # the head re-ordered, the tail kept


def test_fuse_interpolates_the_cross_encoder_with_the_list_order() -> None:
    lists = [np.array([7, 8, 9, 4])]
    scores = [np.array([0.0, 1.0, 3.0])]  # the CE prefers the third item, then the second
    assert hb.fuse(lists, scores, 0.0)[0].tolist() == [9, 8, 7, 4]
    # a large weight keeps the stage's order; z-scores make the weight scale-free
    assert hb.fuse(lists, scores, 10.0)[0].tolist() == [7, 8, 9, 4]
    assert hb.fuse(lists, [s * 100 for s in scores], 10.0)[0].tolist() == [7, 8, 9, 4]
    assert hb.fuse([np.array([3])], [np.array([], np.float32)], 1.0)[0].tolist() == [3]
    # the weight is chosen by NDCG on the given queries: item 7 relevant -> the list's order wins
    assert hb.fusion_weight(lists, scores, [np.array([7])], k=3) > 0
    assert hb.fusion_weight(lists, scores, [np.array([9])], k=3) == 0.0


def test_finetuned_biencoder_learns_planted_words() -> None:
    pytest.importorskip("sentence_transformers")
    hq = planted()
    zero = hb.BiEncoder(TEXTS, max_length=16)
    queries = list(TRAIN_Q)[:4]
    before = [r[0] for r in zero.rank(queries, 1)]
    cfg = hb.BiEncoderConfig(epochs=4, batch_size=6, lr=3e-4, max_length=16, max_minutes=1)
    model, info = hb.finetune_biencoder(hq, cfg, log=lambda m: None)
    assert info["steps"] == info["planned_steps"] == 4 and not info["stopped_by_time"]
    after = [r[0] for r in hb.BiEncoder(TEXTS, model, max_length=16).rank(queries, 1)]
    hits = sum(a == TRAIN_Q[q][0] for a, q in zip(after, queries))
    assert hits >= 3 and hits > sum(b == TRAIN_Q[q][0] for b, q in zip(before, queries))
    with pytest.raises(ValueError, match="bi-encoder"):
        hb.finetune_biencoder(hq, hb.BiEncoderConfig(batch_size=0))
