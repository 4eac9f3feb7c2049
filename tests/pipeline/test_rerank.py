"""Re-ranking after the ranker (genrec.pipeline.rerank) on hand-made candidate lists: MMR's greedy
picks and per-category caps computed by hand, unavailable items filtered out, ILD by hand, and
bad settings refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from genrec.config import ConfigError, from_dict
from genrec.pipeline.rerank import ItemSimilarity, RerankConfig, ild, rerank, unavailable_items

# 6 items: 1, 2, 3 in "a"; 4, 5 in "b"; 6 without a category
ITEMS = pl.DataFrame({"item_idx": [1, 2, 3, 4, 5, 6], "genres": ["a", "a", "a|x", "b", "b", ""]})


def cands() -> tuple[pl.DataFrame, np.ndarray]:
    """User 0 ranks 1 > 2 > 3 > 4 > 5 > 6 (scores 6..1); user 1 has items 4 (0.9), 5 (0.1)."""
    frame = pl.DataFrame({"user_idx": [0] * 6 + [1, 1], "item_idx": [1, 2, 3, 4, 5, 6, 4, 5],
                          "label": [0] * 8})
    return frame, np.array([6, 5, 4, 3, 2, 1, 0.9, 0.1])


def order(frame: pl.DataFrame, scores: np.ndarray, user: int) -> list[int]:
    mine = frame.with_columns(pl.Series("s", scores)).filter(pl.col("user_idx") == user)
    return mine.sort("s", descending=True)["item_idx"].to_list()


def test_category_caps_keep_the_ranker_order_otherwise():
    sim = ItemSimilarity.of(ITEMS, 6)
    frame, scores = cands()
    out, new = rerank(frame, scores, RerankConfig(method="category", max_per_category=1, top_n=3),
                      sim)
    # top 3 with at most one "a" and one "b": 1, 4, then 6 (no category: not capped)
    assert order(out, new, 0) == [1, 4, 6, 2, 3, 5]
    assert order(out, new, 1) == [4, 5]


def test_mmr_picks_by_hand():
    sim = ItemSimilarity.of(ITEMS, 6)
    frame, scores = cands()
    # rel = (6..1 - 1) / 5 = 1, .8, .6, .4, .2, 0; lambda .5:
    # pick 1 (.5); then 2: .4 - .5 = -.1, 3: -.2, 4: .2, 5: .1, 6: 0 -> 4;
    # then 2, 3: -.1/-.2, 5: .1 - .5, 6: 0 -> 6; then 2 (-.1) ... the rest in ranker order
    out, new = rerank(frame, scores, RerankConfig(method="mmr", mmr_lambda=0.5, top_n=4), sim)
    assert order(out, new, 0) == [1, 4, 6, 2, 3, 5]
    _, pure = rerank(frame, scores, RerankConfig(method="mmr", mmr_lambda=1.0), sim)
    assert order(frame, pure, 0) == [1, 2, 3, 4, 5, 6]  # lambda 1: relevance alone


def test_mmr_with_content_vectors():
    vectors = np.zeros((7, 2), dtype=np.float32)
    vectors[1:] = [[1, 0], [1, 0.01], [0, 1], [0.7, 0.7], [1, 0.02], [0, 0]]
    sim = ItemSimilarity.of(ITEMS, 6, vectors=vectors, encoder="toy")
    frame, scores = cands()
    out, new = rerank(frame, scores, RerankConfig(method="mmr", mmr_lambda=0.3, top_n=2), sim)
    assert sim.source == "content:toy"
    assert order(out, new, 0)[:2] == [1, 3]  # 3 is orthogonal to 1; 2 nearly the same vector


def test_unavailable_items_are_filtered_out(tmp_path):
    ids = np.array(["", "i1", "i2", "i3", "i4", "i5", "i6"])
    listed = tmp_path / "gone.txt"
    listed.write_text("i4\n\ni2\n")
    cfg = RerankConfig(unavailable=["i5"], unavailable_file=str(listed))
    drop = unavailable_items(cfg, ids)
    assert drop.tolist() == [2, 4, 5] and cfg.active
    frame, scores = cands()
    out, new = rerank(frame, scores, cfg, ItemSimilarity.of(ITEMS, 6), drop)
    assert order(out, new, 0) == [1, 3, 6] and out.filter(pl.col("user_idx") == 1).height == 0
    with pytest.raises(ConfigError, match="not in the catalogue"):
        unavailable_items(RerankConfig(unavailable=["nope"]), ids)
    with pytest.raises(ConfigError, match="does not exist"):
        unavailable_items(RerankConfig(unavailable_file=str(tmp_path / "none.txt")), ids)


def test_ild_by_hand():
    sim = ItemSimilarity.of(ITEMS, 6)
    frame, scores = cands()
    # user 0's top 3: 1, 2, 3 all "a" -> 0; user 1: 4, 5 both "b" -> 0
    assert ild(frame, scores, sim, k=3) == 0.0
    # top 4 of user 0: pairs with 4 (3 of 6) are dissimilar -> 0.5; user 1: 0 -> mean 0.25
    assert ild(frame, scores, sim, k=4) == pytest.approx(0.25)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="rerank.method 'diverse'"):
        from_dict(RerankConfig, {"method": "diverse"})
    with pytest.raises(ConfigError, match="mmr_lambda in \\[0, 1\\]"):
        from_dict(RerankConfig, {"method": "mmr", "mmr_lambda": 2.0})
    assert not RerankConfig().active
