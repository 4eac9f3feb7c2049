"""Multi-channel recall: quota allocation, merging (dedup, channel order, unused slots passed
on), the popularity fallback for users without history, HitRate by hand on a tiny split, and
channels from real runs (EASE's HitRate equals the evaluator's; ItemCF lists only items with
evidence; two-tower through faiss returns what its exact scores rank)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from genrec.data.dataset import DataError
from genrec.data.splits import Split
from genrec.pipeline.recall import (Channel, allocate, ann_channel, multi_channel_recall,
                                    popularity_channel, recall_report, run_channel,
                                    scored_channel)
from genrec.retrieval import IndexConfig, recall_at_k
from genrec.runs import evaluate_run, make_config, train
from tests.training.test_trainer import planted_dataset


def frame(rows: list[tuple[int, int]]) -> pl.DataFrame:
    u, i = zip(*rows) if rows else ((), ())
    return pl.DataFrame({"user_idx": list(u), "item_idx": list(i), "timestamp": list(range(len(u))),
                         "rating": [None] * len(u)},
                        schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                "timestamp": pl.Int64, "rating": pl.Float32})


def tiny_split() -> Split:
    """4 users, 6 items; user 3 has no training item (cold) but a test item."""
    train_rows = [(0, 1), (0, 2), (1, 1), (1, 3), (2, 2), (2, 4)]
    test_rows = [(0, 5), (1, 5), (2, 1), (3, 1)]
    return Split("tiny", frame(train_rows), frame([]), frame(test_rows), 4, 6)


A_SCORES = np.array([[-np.inf, 0.1, 0.9, 0.5, 0.2, 0.8, 0.0],
                     [-np.inf, 0.9, 0.1, 0.9, 0.3, 0.2, 0.1],
                     [-np.inf, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
                     [-np.inf, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], dtype=np.float32)


def channels(split: Split) -> list[Channel]:
    return [popularity_channel(split, "test", quota=1),
            scored_channel("a", lambda users: A_SCORES[users], split.history("test"), quota=1)]


def test_allocate_is_proportional_with_largest_remainders():
    assert allocate([1, 2, 2], 50) == [10, 20, 20]
    assert allocate([0.2, 0.4, 0.4], 100) == [20, 40, 40]
    assert allocate([1, 1, 1], 10) == [4, 3, 3]  # the leftover slot goes to the earlier channel
    assert allocate([1, 0], 7) == [7, 0]
    with pytest.raises(ValueError, match="positive sum"):
        allocate([0, 0], 5)


def test_channel_lists_mask_history_and_break_ties_by_index():
    split = tiny_split()
    pop, a = channels(split)
    items, scores = pop.topk(np.arange(4), 4)
    assert items.tolist() == [[3, 4, 5, 6], [2, 4, 5, 6], [1, 3, 5, 6], [1, 2, 3, 4]]
    assert scores[3].tolist() == [2, 2, 1, 1]
    items, _ = a.topk(np.arange(4), 4)
    assert items.tolist() == [[5, 3, 4, 6], [4, 5, 2, 6], [1, 3, 5, 6], [6, 1, 2, 3]]


def test_merge_takes_quotas_in_channel_order_without_duplicates_and_flags_cold_users():
    split = tiny_split()
    res = multi_channel_recall(channels(split), split, "test", n=3)
    # slots 2 + 1; user 2: 'a' wants 1 and 3, both taken by popularity, so it adds 5
    assert res.quotas == {"popularity": 2, "a": 1}
    assert res.items.tolist() == [[3, 4, 5], [2, 4, 5], [1, 3, 5], [1, 2, 3]]
    assert res.channel.tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 0]]
    assert res.scores[2].tolist() == [2, 1, 0.5]
    assert res.cold.tolist() == [False, False, False, True]  # user 3: popularity only


def test_slots_a_channel_cannot_fill_go_to_the_others():
    split = tiny_split()
    def one_item(users, k):  # item 6 and nothing else
        items = np.tile(np.r_[6, [-1] * (k - 1)], (len(users), 1))
        return items, np.where(items > 0, 9.0, -np.inf).astype(np.float32)

    only_one = Channel("short", one_item, quota=2)
    res = multi_channel_recall([only_one, popularity_channel(split, "test", 1)], split, "test",
                               n=3, users=np.array([0]))
    assert res.items.tolist() == [[6, 3, 4]] and res.channel.tolist() == [[0, 1, 1]]


def test_hit_rates_per_channel_and_merged_by_hand():
    split = tiny_split()
    rep = recall_report(channels(split), split, "test", ns=(2, 3))
    # N=2: popularity [3,4] [2,4] [1,3] [1,2] -> users 2, 3 hit; 'a' [5,3] [4,5] [1,3] [6,1] -> all
    assert rep["per_channel"]["popularity"]["HR@2"] == 0.5
    assert rep["per_channel"]["a"]["HR@2"] == 1.0
    # merged N=2 (1 + 1): [3,5] [2,4] [1,3] and cold user 3 gets popularity [1,2] -> 3 of 4
    assert rep["merged"]["HR@2"] == 0.75 and rep["merged"]["Recall@2"] == 0.75
    assert rep["merged"]["HR@3"] == 1.0
    assert rep["n_users"] == 4 and rep["n_cold"] == 1
    assert rep["quotas"][2] == {"popularity": 1, "a": 1}
    # N=2 slots: popularity fills 5 of 8 (cold user 3 both), 'a' 3; hits: user 0 via 'a' (5),
    # user 2 via popularity (1), user 3 via popularity (1)
    assert rep["share"][2] == {"popularity": 0.625, "a": 0.375}
    assert rep["hits_from"][2] == {"popularity": round(2 / 3, 4), "a": round(1 / 3, 4)}


# ---- channels from real runs -------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recall")
    planted_dataset(n_users=60, seed=3).save(root / "planted")
    base = [f"data.name={root / 'planted'}", "eval.ks=[5,10]", "train.threads=1"]
    extra = {"popularity": [], "itemcf": ["params.k=3"], "ease": ["params.l2=10"],
             "two_tower": ["params.dim=16", "params.max_len=8", "train.epochs=3",
                           "train.batch_size=16", "train.metric=NDCG@10"]}
    out = {name: train(make_config(name, base + sets), root / name) for name, sets in extra.items()}
    out["ratio"] = train(make_config("popularity", base + ["data.split=ratio"]), root / "ratio")
    return out


def test_a_run_channel_hit_rate_equals_the_evaluator(runs):
    ease = runs["ease"]
    rep = recall_report([run_channel(ease, ease.split, "test")], ease.split, "test", ns=(5, 10))
    metrics = evaluate_run(ease, "test").metrics
    for n in (5, 10):
        assert rep["per_channel"]["ease"][f"HR@{n}"] == pytest.approx(metrics[f"HR@{n}"])


def test_itemcf_lists_only_items_with_evidence(runs):
    itemcf = runs["itemcf"]
    users = np.arange(itemcf.split.n_users)
    items, scores = run_channel(itemcf, itemcf.split, "test").topk(users, 10)
    assert np.isfinite(scores[items >= 0]).all() and (scores[items >= 0] > 0).all()
    assert (items < 0).any()  # k=3 neighbours per item: fewer than 10 candidates for some users
    full, _ = run_channel(itemcf, itemcf.split, "test", positive_only=False).topk(users, 10)
    assert (full >= 0).all()


def test_two_tower_through_faiss_returns_its_exact_top_k(runs):
    tt = runs["two_tower"]
    users = np.arange(tt.split.n_users)
    exact, _ = run_channel(tt, tt.split, "test").topk(users, 10)
    for kind in ("flat", "hnsw"):
        ann, _ = ann_channel(tt, tt.split, "test", index=IndexConfig(kind=kind)).topk(users, 10)
        assert recall_at_k(ann, exact) >= 0.99, kind
    channels = [popularity_channel(tt.split, "test", 1),
                run_channel(runs["ease"], tt.split, "test", 2),
                ann_channel(tt, tt.split, "test", 2, name="two_tower_ann")]
    rep = recall_report(channels, tt.split, "test", ns=(5, 10))
    assert set(rep["per_channel"]) == {"popularity", "ease", "two_tower_ann"}
    assert rep["merged"]["HR@10"] >= max(rep["per_channel"]["popularity"]["HR@5"],
                                        rep["per_channel"]["ease"]["HR@5"])


def test_runs_on_another_split_and_bad_channels_are_refused(runs):
    split = runs["ease"].split
    with pytest.raises(DataError, match="another split"):
        run_channel(runs["ratio"], split, "test")
    with pytest.raises(ValueError, match="user_vectors/item_vectors"):
        ann_channel(runs["ease"], split, "test")
    pop = popularity_channel(split, "test")
    with pytest.raises(ValueError, match="names must be unique"):
        recall_report([pop, pop], split, "test", ns=(5,))


def test_cli_reports_per_channel_and_merged(runs):
    import json

    import typer
    from typer.testing import CliRunner

    from genrec.cli import recall as recall_cli

    app = typer.Typer()
    recall_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `recall` a subcommand
    itemcf, tt = runs["itemcf"], runs["two_tower"]
    args = ["recall", "--channel", "popularity:1", "--channel", f"{itemcf.path}:2",
            "--ann", f"{tt.path}:2", "--n", "5,10", "--json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    rep = json.loads(result.output)
    assert list(rep["per_channel"]) == ["popularity", "itemcf", "two_tower (ann)"]
    assert rep["quotas"]["10"] == {"popularity": 2, "itemcf": 4, "two_tower (ann)": 4}
    direct = recall_report([popularity_channel(tt.split, "test", 1),
                            run_channel(itemcf, tt.split, "test", 2)], tt.split, "test", (10,))
    assert rep["per_channel"]["itemcf"]["HR@10"] == direct["per_channel"]["itemcf"]["HR@10"]
    bad = CliRunner().invoke(app, ["recall", "--channel", "popularity:x"])
    assert bad.exit_code != 0 and "quota after ':' must be a number" in str(bad.exception)
