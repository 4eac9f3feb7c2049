"""Protocol P5: the candidate union with its documented defaults, full ranking where items outside
the candidate set rank after every candidate (hand-computed), the ranker's AUC / GAUC / logloss
by hand; then a LightGBM pipeline end to end on planted data (train, evaluate, CLI) and its
refusals: a recall run that moved or changed, a refit recall run, an unknown feature name."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from genrec.cli import app
from genrec.config import ConfigError, from_dict
from genrec.data.dataset import DataError
from genrec.data.splits import Split
from genrec.features.ranking import FeatureConfig, build_features
from genrec.pipeline.p5 import candidates, full_ranking, ranker_metrics, sampled_negatives
from genrec.pipeline import ranking
from genrec.pipeline.ranking import (PipelineConfig, evaluate_pipeline, feature_batches,
                                     standardiser, train_pipeline)
from genrec.pipeline.recall import Channel, popularity_channel, scored_channel
from genrec.runs import make_config, train
from tests.training.test_trainer import planted_dataset


def frame(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    u, i, t = zip(*rows)
    return pl.DataFrame({"user_idx": u, "item_idx": i, "timestamp": t, "rating": [None] * len(u)},
                        schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                "timestamp": pl.Int64, "rating": pl.Float32})


def tiny_split() -> Split:
    """3 users, 6 items; train 2 items each, then one validation and one test item."""
    train_rows = [(0, 1, 1), (0, 2, 2), (1, 1, 1), (1, 3, 2), (2, 2, 1), (2, 4, 2)]
    return Split("loo", frame(train_rows), frame([(0, 3, 3), (1, 2, 3), (2, 5, 3)]),
                 frame([(0, 5, 4), (1, 6, 4), (2, 1, 4)]), 3, 6)


A_SCORES = np.array([[-np.inf, 0.1, 0.9, 0.5, 0.2, 0.8, 0.0],
                     [-np.inf, 0.9, 0.1, 0.9, 0.3, 0.2, 0.1],
                     [-np.inf, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]], dtype=np.float32)


def test_candidates_are_the_union_with_documented_defaults():
    split = tiny_split()
    chans = [(popularity_channel(split, "valid"), 2),
             (scored_channel("a", lambda u: A_SCORES[u], split.history("valid")), 2)]
    c = candidates(chans, split, "valid").filter(pl.col("user_idx") == 0)
    # user 0 (history 1, 2): popularity lists 3, 4 (count 1 each); 'a' lists 5 (.8), 3 (.5)
    assert c["item_idx"].to_list() == [3, 4, 5]
    assert c["label"].to_list() == [1, 0, 0] and c["t"].to_list() == [3, 3, 3]
    assert c["ch_popularity_rank"].to_list() == [1, 2, 3]       # 5 not listed: k + 1
    assert c["ch_popularity_score"].to_list() == [1, 1, 1]      # its lowest listed score
    assert c["ch_a_rank"].to_list() == [2, 3, 1]
    assert c["ch_a_score"].to_list() == pytest.approx([0.5, 0.5, 0.8])
    assert c["ch_n"].to_list() == [2, 1, 1]


@pytest.mark.parametrize("how", ["uniform", "popularity"])
def test_sampled_negatives_lie_outside_candidates_and_history(how):
    split = tiny_split()
    chans = [(popularity_channel(split, "valid"), 1),
             (scored_channel("a", lambda u: A_SCORES[u], split.history("valid")), 1)]
    c = candidates(chans, split, "valid")
    extra = sampled_negatives(c, split, "valid", {"popularity": 1, "a": 1}, n=2, how=how, seed=3)
    assert extra.columns == c.columns and extra.schema == c.schema
    assert (extra["label"] == 0).all() and (extra["ch_n"] == 0).all()
    assert (extra["ch_a_rank"] == 2).all() and (extra["ch_popularity_rank"] == 2).all()
    assert extra.group_by("user_idx").len()["len"].max() <= 2
    hist = split.history("valid")
    for u, i, t, score in extra.select("user_idx", "item_idx", "t", "ch_a_score").iter_rows():
        assert i not in hist[u].indices and i != 0
        mine = c.filter(pl.col("user_idx") == u)
        assert i not in mine["item_idx"].to_list() and t == mine["t"][0]
        assert score == pytest.approx(mine["ch_a_score"].min())  # the user's lowest 'a' score
    if how == "popularity":  # items 5 and 6 have no training events: never drawn
        assert not extra["item_idx"].is_in([5, 6]).any()
    assert extra.height > 0


def test_a_failing_channel_lists_nothing_and_is_reported():
    split = tiny_split()

    def broken(users, k):
        raise RuntimeError("index file missing")

    chans = [(popularity_channel(split, "valid"), 2), (Channel("broken", broken), 3)]
    failures: dict[str, str] = {}
    c = candidates(chans, split, "valid", failures=failures)
    assert failures == {"broken": "RuntimeError: index file missing"}
    assert c.filter(pl.col("user_idx") == 0)["item_idx"].to_list() == [3, 4]  # popularity's
    assert set(c["ch_broken_rank"].to_list()) == {4.0} and set(c["ch_broken_score"]) == {0.0}
    with pytest.raises(RuntimeError, match="index file missing"):  # nobody asked to report it
        candidates(chans, split, "valid")
    with pytest.raises(ValueError, match="every recall channel failed"):
        candidates(chans[1:], split, "valid", failures={})


def hand_candidates() -> tuple[pl.DataFrame, np.ndarray]:
    """Test candidates with ranker scores: user 0's target 5 second; user 1's target 6 outside the
    set; user 2's target 1 tied with item 3."""
    rows = [(0, 4, 0, 0.9), (0, 5, 1, 0.5), (0, 6, 0, 0.1), (1, 5, 0, 0.3),
            (2, 1, 1, 0.2), (2, 3, 0, 0.2), (2, 6, 0, 0.1)]
    u, i, y, s = zip(*rows)
    return pl.DataFrame({"user_idx": u, "item_idx": i, "label": y}), np.array(s)


def test_items_outside_the_candidates_rank_after_every_candidate():
    cands, scores = hand_candidates()
    m = full_ranking(cands, scores, tiny_split(), "test", ks=(1, 2, 3)).metrics
    # ranks: user 0 -> 2; user 1 (history 1, 3, 2; candidate 5): target 6 ties with item 4 below
    # the candidate, counted against the model -> 3; user 2: tie with item 3 -> 2
    assert m["HR@1"] == 0 and m["HR@2"] == pytest.approx(2 / 3) and m["HR@3"] == 1
    assert m["NDCG@2"] == pytest.approx(2 / 3 / math.log2(3))
    assert m["NDCG@3"] == pytest.approx((2 / math.log2(3) + 1 / 2) / 3)
    assert m["candidate_recall"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="finite ranker score"):
        full_ranking(cands, np.r_[scores[:-1], np.nan], tiny_split(), "test")


def test_ranker_metrics_by_hand():
    cands, scores = hand_candidates()
    m = ranker_metrics(cands, scores, scores)
    assert m["AUC"] == pytest.approx(6.5 / 10)   # positives .5 and .2 against 5 negatives
    assert m["GAUC"] == pytest.approx((0.5 + 0.75) / 2) and m["GAUC_users"] == 2
    y = cands["label"].to_numpy()
    by_hand = -np.mean(y * np.log(scores) + (1 - y) * np.log(1 - scores))
    assert m["logloss"] == pytest.approx(by_hand)


# ---- the pipeline end to end on planted data ---------------------------------------------------
@pytest.fixture(scope="module")
def recall_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("p5")
    planted_dataset(n_users=80, seed=4).save(root / "planted")
    base = [f"data.name={root / 'planted'}", "eval.ks=[10]", "eval.refit=false"]
    for name in ("ease", "itemcf"):
        train(make_config(name, base), root / name)
    train(make_config("ease", base[:2] + ["eval.refit=true"]), root / "ease_refit")
    return root


def config(root, **ranker) -> dict:
    return {"channels": [{"name": "ease", "run": str(root / "ease"), "k": 8},
                         {"name": "itemcf", "run": str(root / "itemcf"), "k": 8},
                         {"name": "popularity", "k": 4}],
            "ks": [5, 10],
            "ranker": {"holdout": 0.3, "lightgbm": {"n_estimators": 20, "num_leaves": 7,
                                                    "min_child_samples": 2,
                                                    "early_stopping": 5}, **ranker}}


def test_lightgbm_pipeline_end_to_end(recall_runs, tmp_path):
    out = tmp_path / "pipe"
    res = train_pipeline(from_dict(PipelineConfig, config(recall_runs)), out)
    rows = res["rows"]
    assert list(rows) == ["ease", "itemcf", "popularity", "recall + lightgbm"]
    ranked = rows["recall + lightgbm"]
    for key in ("HR@10", "NDCG@10", "candidate_recall", "AUC", "GAUC", "logloss"):
        assert math.isfinite(ranked[key])
    # the planted walk is learnable: the ranker beats popularity alone on its candidate lists
    assert ranked["NDCG@10"] > rows["popularity"]["NDCG@10"] and ranked["AUC"] > 0.6
    assert ranked["HR@10"] <= ranked["candidate_recall"] + 1e-9  # nothing outside ranks in
    assert res["report"]["train_rows"] > 0 and res["report"]["holdout_users"] > 0
    assert res["report"]["defaults_test"]["users_without_popularity_candidates"] == 0
    assert (out / "ranker.txt").is_file() and (out / "pipeline.json").is_file()
    assert evaluate_pipeline(out)["rows"] == json.loads((out / "metrics.json").read_text())["rows"]

    result = CliRunner().invoke(app, ["pipeline", "evaluate", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"]["recall + lightgbm"]["NDCG@10"] == \
        pytest.approx(ranked["NDCG@10"])

    # a recall run that changed, or moved, is refused with the reason
    info = recall_runs / "itemcf" / "run.json"
    original = info.read_text()
    info.write_text(original.replace('"itemcf"', '"itemcf" ', 1))
    with pytest.raises(DataError, match="changed since the pipeline was trained"):
        evaluate_pipeline(out)
    info.write_text(original)
    shutil.move(recall_runs / "itemcf", recall_runs / "itemcf_moved")
    try:
        with pytest.raises(DataError, match="not at .* any more"):
            evaluate_pipeline(out)
    finally:
        shutil.move(recall_runs / "itemcf_moved", recall_runs / "itemcf")


def test_refit_runs_and_unknown_features_are_refused(recall_runs, tmp_path):
    cfg = config(recall_runs)
    cfg["channels"][0]["run"] = str(recall_runs / "ease_refit")
    with pytest.raises(ConfigError, match="refit on train \\+ validation"):
        train_pipeline(from_dict(PipelineConfig, cfg), tmp_path / "x")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[channels]]\nname = "popularity"\n[features]\nnames = ["item_pop", "age"]\n')
    result = CliRunner().invoke(app, ["pipeline", "train", str(bad), "--out", str(tmp_path / "y")])
    assert result.exit_code != 0 and "unknown feature(s) 'age'" in str(result.exception)
    assert not (tmp_path / "y").exists()


def test_a_neural_ranker_plugs_into_the_same_pipeline(recall_runs, tmp_path):
    cfg = config(recall_runs, model="din", params={"dim": 8, "hidden": [16]},
                 train={"epochs": 2, "batch_size": 64, "threads": 1})
    res = train_pipeline(from_dict(PipelineConfig, cfg), tmp_path / "din")
    ranked = res["rows"]["recall + din"]
    assert 0 <= ranked["HR@10"] <= ranked["candidate_recall"] and math.isfinite(ranked["logloss"])
    assert evaluate_pipeline(tmp_path / "din")["rows"]["recall + din"] == pytest.approx(ranked)


def test_extra_negatives_train_beside_the_candidates(recall_runs, tmp_path):
    plain = train_pipeline(from_dict(PipelineConfig, config(recall_runs)))
    res = train_pipeline(from_dict(PipelineConfig, config(recall_runs, negatives=5)))
    grew = res["report"]["train_rows"] - plain["report"]["train_rows"]
    assert 0 < grew <= 5 * res["report"]["train_users"]
    # the test position is untouched: same candidates, same candidate recall
    for key in ("test_rows",):
        assert res["report"][key] == plain["report"][key]
    assert res["rows"]["recall + lightgbm"]["candidate_recall"] == \
        plain["rows"]["recall + lightgbm"]["candidate_recall"]
    with pytest.raises(ConfigError, match="negative_sampling"):
        from_dict(PipelineConfig, config(recall_runs, negative_sampling="hard"))


def test_a_failing_channel_is_reported_and_the_others_rank(recall_runs, tmp_path, monkeypatch):
    real = ranking.run_channel

    def run_channel(run, split, stage, name=None, **kw):
        if name == "itemcf":
            raise OSError(f"cannot read {name}'s weights")
        return real(run, split, stage, name=name, **kw)

    monkeypatch.setattr(ranking, "run_channel", run_channel)
    cfg = config(recall_runs)
    cfg["rerank"] = {"method": "mmr", "mmr_lambda": 0.5}
    res = train_pipeline(from_dict(PipelineConfig, cfg), tmp_path / "pipe")
    assert res["report"]["failed_channels_test"] == {"itemcf": "OSError: cannot read itemcf's "
                                                               "weights"}
    assert res["failed_channels"] == res["report"]["failed_channels_valid"]
    assert list(res["rows"]) == ["ease", "popularity", "recall + lightgbm",
                                 "recall + lightgbm + mmr"]
    ranked, reranked = res["rows"]["recall + lightgbm"], res["rows"]["recall + lightgbm + mmr"]
    assert ranked["candidate_recall"] == reranked["candidate_recall"] > 0
    assert 0 <= reranked["HR@10"] <= reranked["candidate_recall"]
    assert 0 <= ranked["ILD@10"] <= 1 and 0 <= reranked["ILD@10"] <= 1  # no categories here: 1
    result = CliRunner().invoke(app, ["pipeline", "evaluate", str(tmp_path / "pipe")])
    assert result.exit_code == 0 and "channel 'itemcf' failed" in result.output


def test_feature_batches_follow_the_contract():
    split = tiny_split()
    cands = candidates([(popularity_channel(split, "valid"), 3)], split, "valid")
    table = build_features(cands, split.train, pl.DataFrame({"item_idx": [1]}),
                           FeatureConfig(max_len=4), n_items=6)
    stats = standardiser(table)
    batch = next(feature_batches(table, stats, batch_size=100))
    assert batch.dense.shape == (cands.height, len(table.dense))
    assert batch.dense.mean(0).abs().max() < 1e-5                  # standardised on these rows
    assert batch.labels.shape == (cands.height, 1) and batch.history.shape[1] == 4
    assert batch.groups.tolist() == cands["user_idx"].to_list()
    assert batch.target.tolist() == cands["item_idx"].to_list()
    assert batch.history[0].tolist() == [0, 0, 1, 2]  # user 0's train items, before its label


@pytest.mark.parametrize("name", ["ml100k", "beauty", "sports"])
def test_the_pipeline_presets_load(name):
    from pathlib import Path

    from genrec.pipeline.ranking import load_pipeline_config

    path = Path(__file__).resolve().parents[2] / "configs" / f"pipeline_{name}_p5.toml"
    cfg = load_pipeline_config(path)  # unknown keys and feature names would fail here
    runs = [c.run for c in cfg.channels if c.run]
    assert runs and all(f"p5_{name}_" in r for r in runs) and cfg.channels[-1].name == "popularity"
