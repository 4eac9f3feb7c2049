"""Text queries from item text: category and title-phrase extraction, relevant sets, the held-out
split (no test pair in train, every item keeps a train pair, seeded), metrics by hand."""

import numpy as np
import polars as pl
import pytest

from genrec.pipeline.text_queries import (TEST, TRAIN, VALID, QueryConfig, QuerySet,
                                          build_queries, category_queries, metrics, title_phrases)


def items() -> pl.DataFrame:
    return pl.DataFrame({
        "item_idx": [1, 2, 3, 4, 5, 6],
        "item_id": ["a", "b", "c", "d", "e", "f"],
        "title": ["OPI Nail Lacquer, Red Shimmer 0.5 oz",
                  "OPI Nail Lacquer, Blue Shimmer",
                  "Cococare Coconut Oil for Hair 4 Oz",
                  "Pure Coconut Oil for Hair and Skin",
                  "Argan Oil Hair Serum",
                  "Dr. Scholl's Foot Cream"],
        "categories": ["Beauty > Makeup > Nails > Nail Polish",
                       "Beauty > Makeup > Nails > Nail Polish",
                       "Beauty > Hair Care > Styling Products > Oils",
                       "Beauty > Skin Care > Body > Moisturizers > Oils",
                       "Beauty > Hair Care > Styling Products > Oils|Beauty > Hair Care > Serums",
                       "Beauty > Skin Care > Feet"],
    })


def test_category_queries_are_leaf_and_parent_leaf_without_root():
    assert category_queries("Beauty > Skin Care > Face > Moisturizers") == {
        "moisturizers", "face moisturizers"}
    assert category_queries("Beauty > Hair Care > Serums|Beauty > Makeup > Lips") == {
        "serums", "hair care serums", "lips", "makeup lips"}
    assert category_queries(None) == set() and category_queries("") == set()


def test_title_phrases_skip_stop_word_edges_digits_units_and_brand_only():
    titles = items()["title"].to_list()
    ph = title_phrases(titles, 2, 4)
    # within a clause only; "0.5 oz" breaks the phrase; "opi" opens both OPI titles -> a brand
    assert "nail lacquer" in ph[0] and "red shimmer" in ph[0]
    assert "lacquer red" not in ph[0] and not any("oz" in p for p in ph[0])
    # "opi nail" opens both OPI titles and "nail" occurs nowhere else: a two-word brand here,
    # so it is no query on its own, but brand + product words are
    assert "opi nail" not in ph[0] and "opi nail lacquer" in ph[0]
    assert "coconut oil for hair" in ph[2] and "oil for hair" in ph[2]
    assert not any(p.startswith("for ") or p.endswith(" for") for p in ph[2])
    assert "coconut oil" in ph[2] and "coconut oil" in ph[3]
    # a two-word brand: only when its opening recurs; a single title cannot make one
    assert "dr scholl's" in ph[5] or "scholl's foot" in ph[5]
    two = title_phrases(["Dr Scholl Foot Cream", "Dr Scholl Gel Insoles", "Foot Gel"], 2, 2)
    assert "dr scholl" not in two[0] and {"scholl foot", "foot cream"} <= two[0]
    one = title_phrases(["Acme Soap Bar", "Acme Shampoo Gel", "Gentle Soap Bar"], 2, 2)
    assert {"acme soap", "soap bar"} <= one[0]  # "soap" is no brand word: it opens no title
    assert title_phrases(["Acme Acme"], 2, 2)[0] == {"acme acme"}  # one title: no brand evidence


def test_relevant_set_is_every_item_whose_text_yields_the_query():
    qs = build_queries(items(), QueryConfig(title_phrases=50, min_phrase_items=2, test_share=0.0,
                                            valid_share=0.0))
    rel = dict(zip(qs.queries, qs.relevant()))
    assert rel["coconut oil"].tolist() == [3, 4]
    assert rel["oil for hair"].tolist() == [3, 4]
    assert rel["nail polish"].tolist() == [1, 2]          # category leaf
    assert rel["styling products oils"].tolist() == [3, 5]  # parent + leaf, multi-path item 5
    assert rel["oils"].tolist() == [3, 4, 5]
    assert "argan oil" not in rel  # only one title holds it (min_phrase_items=2)
    assert qs.kinds[qs.queries.index("nail polish")] == "categories"
    assert (qs.pair_split == TRAIN).all()


def synthetic(n_items: int = 300) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    words = ["red", "blue", "green", "soft", "matte", "gloss", "shine", "silk", "rose", "mint"]
    titles = [" ".join(rng.choice(words, 5)) for _ in range(n_items)]
    cats = [f"Beauty > {rng.choice(['Hair', 'Skin', 'Nails'])} > {rng.choice(['Oil', 'Gel'])}"
            for _ in range(n_items)]
    return pl.DataFrame({"item_idx": np.arange(1, n_items + 1), "item_id": [str(i) for i in
                         range(n_items)], "title": titles, "categories": cats})


def test_held_out_split_has_no_test_pair_in_train_and_keeps_one_train_pair_per_item():
    cfg = QueryConfig(test_share=0.2, valid_share=0.1, seed=3)
    qs = build_queries(synthetic(), cfg)
    pairs = list(zip(qs.pair_query.tolist(), qs.pair_item.tolist()))
    assert len(pairs) == len(set(pairs))  # each (query, item) pair exactly once, in one split
    train = set(zip(*qs.pairs("train")))
    test = set(zip(*qs.pairs("test")))
    valid = set(zip(*qs.pairs("valid")))
    assert test and valid and not (test & train) and not (valid & train) and not (test & valid)
    assert set(qs.pairs("train")[1].tolist()) == set(range(1, 301))  # every item trains
    share = (qs.pair_split == TEST).mean()
    assert 0.15 < share < 0.25 and 0.05 < (qs.pair_split == VALID).mean() < 0.15
    again = build_queries(synthetic(), cfg)
    assert np.array_equal(again.pair_split, qs.pair_split)  # seeded
    other = build_queries(synthetic(), QueryConfig(test_share=0.2, valid_share=0.1, seed=4))
    assert not np.array_equal(other.pair_split, qs.pair_split)


def test_stage_scores_against_all_relevant_items_and_saves_round_trip(tmp_path):
    qs = build_queries(synthetic(), QueryConfig(seed=1))
    queries, relevant, held = qs.stage("test")
    rel = qs.relevant()
    for q, r, h in zip(queries[:50], relevant, held):
        assert np.array_equal(r, rel[q]) and set(h) <= set(r) and len(h) >= 1
    qs.save(tmp_path / "q.parquet")
    back = QuerySet.load(tmp_path / "q.parquet")
    key = lambda s: sorted(zip([s.queries[q] for q in s.pair_query], s.pair_item.tolist(),  # noqa: E731
                               s.pair_split.tolist()))
    assert key(back) == key(qs)
    assert back.summary()["test_pairs"] == qs.summary()["test_pairs"]


def test_metrics_by_hand():
    ranked = [np.array([5, 1, 9]), np.array([7, 8, 0])]
    relevant = [np.array([1, 2]), np.array([3])]
    held = [np.array([2]), np.array([3])]
    m = metrics(ranked, relevant, held, k=2, kinds=["title", "categories"])
    # query 1: one hit of two relevant within top 2 -> recall 1/2; NDCG = (1/log2 3) / (1 + 1/log2 3)
    ndcg1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["Recall@2"] == pytest.approx(0.25)
    assert m["NDCG@2"] == pytest.approx(ndcg1 / 2, abs=1e-5)
    assert m["HeldOutRecall@2"] == 0.0 and m["n_queries"] == 2
    assert m["title"]["Recall@2"] == 0.5 and m["categories"]["n_queries"] == 1
    # recall is over min(k, |relevant|): 10 relevant items, 2 hits at k=2 -> 1.0
    assert metrics([np.array([1, 2])], [np.arange(1, 11)], [np.array([1])], k=2)["Recall@2"] == 1.0
