"""The ranking feature engine: point in time (nothing at or after a label's timestamp can change a
feature; something before it does), hand-computed values on a tiny log, documented defaults
counted, unknown feature names refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from genrec.config import ConfigError, from_dict
from genrec.features.ranking import FEATURES, FeatureConfig, build_feature_chunks, build_features

ITEMS = pl.DataFrame({"item_idx": [1, 2, 3, 4, 5],
                      "item_id": ["a", "b", "c", "d", "e"],
                      "genres": ["Drama|War", "Comedy", "Drama", None, "Comedy|Drama"],
                      "brand": ["x", "y", "x", "", None]})
DAY = 86400


def events(rows: list[tuple[int, int, int, float]]) -> pl.DataFrame:
    u, i, t, r = zip(*rows)
    return pl.DataFrame({"user_idx": u, "item_idx": i, "timestamp": t, "rating": r},
                        schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                "timestamp": pl.Int64, "rating": pl.Float32})


# user 0's label is at day 10; user 1's at day 5; user 2 has nothing before its label (day 1)
LOG = events([(0, 1, 2 * DAY, 4.0), (0, 2, 4 * DAY, 2.0), (0, 3, 9 * DAY, 5.0),
              (1, 1, 1 * DAY, 3.0), (1, 4, 3 * DAY, 1.0), (2, 4, 12 * DAY, 2.0)])
LABEL = (0, 5, 10 * DAY, 4.0)  # user 0 chooses item 5 at its label time


def cands() -> pl.DataFrame:
    rows = [(0, 2, 0), (0, 4, 0), (0, 5, 1), (1, 3, 1), (1, 5, 0), (2, 1, 1)]
    t = {0: 10 * DAY, 1: 5 * DAY, 2: 1 * DAY}
    u, i, y = zip(*rows)
    return pl.DataFrame({"user_idx": u, "item_idx": i, "label": y, "t": [t[x] for x in u],
                         "ch_a_score": [0.5, 0.4, 0.3, 0.2, 0.1, 0.0]})


def table(log: pl.DataFrame, **cfg):
    return build_features(cands(), log, ITEMS, FeatureConfig(max_len=3, recent_days=6.5, **cfg),
                          n_items=5)


def test_nothing_at_or_after_the_label_changes_a_feature():
    base = table(LOG)
    with_label = table(pl.concat([LOG, events([LABEL])]))
    changed_label = table(pl.concat([LOG, events([(0, 2, 10 * DAY, 1.0)])]))
    later = table(pl.concat([LOG, events([(0, 4, 11 * DAY, 5.0), (1, 5, 30 * DAY, 5.0),
                                          (2, 2, 10 * DAY, 1.0), (1, 3, 5 * DAY, 2.0)])]))
    for other in (with_label, changed_label, later):
        assert other.frame.equals(base.frame)
        assert np.array_equal(other.history, base.history)
    # the test is not blind: one event of item 5 before user 0's label does change item_pop
    earlier = table(pl.concat([LOG, events([(2, 5, 9 * DAY, 3.0)])]))
    row = pl.col("user_idx").eq(0) & pl.col("item_idx").eq(5)
    assert earlier.frame.filter(row)["item_pop"].item() == 1
    assert base.frame.filter(row)["item_pop"].item() == 0


def test_values_by_hand_and_defaults_counted():
    t = table(LOG)
    f = t.frame.sort(["user_idx", "item_idx"])
    u0 = f.filter(pl.col("user_idx") == 0)
    assert u0["user_activity"].to_list() == [3, 3, 3]
    assert u0["user_recency_days"].to_list() == [1.0] * 3          # last event day 9, label day 10
    assert u0["user_mean_rating"].to_list() == pytest.approx([11 / 3] * 3)
    # item 4 before day 10: user 1 at day 3 (user 2's day-12 event is later): pop 1, none recent
    item4 = u0.filter(pl.col("item_idx") == 4)
    assert item4["item_pop"].item() == 1 and item4["item_pop_recent"].item() == 0
    assert item4["item_age_days"].item() == 7.0 and item4["item_category"].item() == 0
    # item 2 (Comedy) for user 0 (Drama, Comedy, Drama): share 1/3, last Comedy 6 days ago
    item2 = u0.filter(pl.col("item_idx") == 2)
    assert item2["category_share"].item() == pytest.approx(1 / 3)
    assert item2["days_since_category"].item() == 6.0
    assert item2["item_trend"].item() == 1.0   # its one event (day 4) is within 6.5 days
    vocab = ["Comedy", "Drama"]                                     # ids 1, 2
    assert u0["user_top_category"].to_list() == [vocab.index("Drama") + 1] * 3
    assert t.sparse_cards == [3, 3, 3]                             # item_category, brand, user_top
    # user 2: nothing before its label -> documented defaults, counted
    u2 = f.filter(pl.col("user_idx") == 2)
    assert u2["user_activity"].item() == 0 and u2["user_recency_days"].item() == -1
    assert u2["user_top_category"].item() == 0 and u2["days_since_category"].item() == -1
    assert t.defaults["users_without_history"] == 1
    assert t.defaults["candidates_without_item_history"] == 4  # (0,5) (1,3) (1,5) (2,1)
    assert t.defaults["candidates_without_brand"] == 3  # items 4, 5: (0,4) (0,5) (1,5)
    # behaviour sequence: last 3 items before the label, left-padded, most recent last
    assert t.users.tolist() == [0, 1, 2]
    assert t.history.tolist() == [[1, 2, 3], [0, 1, 4], [0, 0, 0]]
    assert "ch_a_score" in t.dense


def test_unknown_feature_names_fail_with_the_known_list():
    with pytest.raises(ConfigError, match="unknown feature.*'user_age'.*known: user_activity"):
        from_dict(FeatureConfig, {"names": ["item_pop", "user_age"]})
    with pytest.raises(ConfigError, match="content_sim' needs features.content"):
        from_dict(FeatureConfig, {"names": ["content_sim"]})
    assert set(FeatureConfig().names) <= set(FEATURES)


def test_content_similarity_is_the_cosine_to_the_history_mean():
    vectors = np.zeros((6, 2), dtype=np.float32)
    vectors[1], vectors[2], vectors[3], vectors[5] = [1, 0], [0, 1], [1, 0], [1, 1]
    t = build_features(cands(), LOG, ITEMS, FeatureConfig(names=["content_sim"], content="v"),
                       n_items=5, vectors=vectors)
    f = t.frame.sort(["user_idx", "item_idx"])
    # user 0 history 1, 2, 3 -> sum of unit vectors (2, 1); item 5 = (1, 1)
    got = f.filter((pl.col("user_idx") == 0) & (pl.col("item_idx") == 5))["content_sim"].item()
    assert got == pytest.approx(3 / (np.sqrt(5) * np.sqrt(2)), rel=1e-5)
    assert f.filter(pl.col("item_idx") == 4)["content_sim"].to_list() == [0.0]  # no vector
    assert t.defaults["candidates_without_vector"] == 1


@pytest.mark.parametrize("per_chunk", [1, 2])
def test_chunks_equal_one_table(per_chunk):
    """build_feature_chunks (one ItemClock, each chunk its users' own events) writes what one
    build_features call writes, chunk by chunk in user order."""
    cfg = FeatureConfig(max_len=3, recent_days=6.5)
    whole = build_features(cands().sort("user_idx", maintain_order=True), LOG, ITEMS, cfg, 5)
    parts = list(build_feature_chunks(cands(), LOG, ITEMS, cfg, 5, users_per_chunk=per_chunk))
    assert len(parts) == -(-3 // per_chunk)
    assert pl.concat([p.frame for p in parts]).equals(whole.frame)
    assert np.array_equal(np.concatenate([p.history for p in parts]), whole.history)
    assert np.array_equal(np.concatenate([p.users for p in parts]), whole.users)
