"""P1-new (``make_split(..., new_items=f)``): a seeded share of the items is new; no new item is
ever in a training frame, matrix, sequence or batch, nor in a model input at any stage; targets
are the plain loo split's; evaluation masks what the user saw and reports the new-target slice
over exactly the users whose target is a new item."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from genrec.data import DataError
from genrec.data.batches import eval_batch, train_batches, user_sequences
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split
from genrec.evaluation import evaluate, slice_metrics
from genrec.runs import evaluate_run, load_run, make_config, train

N_ITEMS = 40


@pytest.fixture(scope="module")
def ds():
    rng = np.random.default_rng(1)
    rows = []
    for u in range(80):
        items = rng.choice(N_ITEMS, size=4 + u % 9, replace=False)
        rows += [(f"u{u:02d}", f"i{i:02d}", t) for t, i in enumerate(items)]
    u, i, t = zip(*rows)
    return build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "toy")


@pytest.fixture(scope="module")
def split(ds):
    return make_split(ds, "loo", seed=7, new_items=0.2)


def _items(m) -> set[int]:
    return set(m.indices.tolist())


def test_new_items_are_a_seeded_share_of_the_catalogue(ds, split):
    new = split.new_items
    assert len(new) == round(0.2 * ds.n_items) and len(set(new.tolist())) == len(new)
    assert new.min() >= 1 and new.max() <= ds.n_items and np.all(np.diff(new) > 0)
    assert np.array_equal(make_split(ds, "loo", seed=7, new_items=0.2).new_items, new)
    assert not np.array_equal(make_split(ds, "loo", seed=8, new_items=0.2).new_items, new)
    assert len(make_split(ds, "loo").new_items) == 0


def test_no_new_item_in_training_data_or_model_inputs(split):
    new = set(split.new_items.tolist())
    assert not new & set(split.train["item_idx"].to_list())
    assert not new & _items(split.train_matrix())
    assert split.item_counts()[split.new_items].sum() == 0
    for stage in ("valid", "test"):
        assert not new & _items(split.history(stage))
        assert not new & {i for seq in split.sequences(stage) for i in seq.tolist()}
        users = np.arange(split.n_users)
        assert not new & set(eval_batch(split, stage, users, 50).items.unique().tolist())
    for stage in ("train", "valid", "test", "all"):
        assert not new & set(user_sequences(split, stage).items.tolist())
    for batch in train_batches(split, max_len=5, batch_size=16, seed=0, epoch=0):
        assert not new & (set(batch.items.unique().tolist()) | set(batch.targets.unique().tolist()))


def test_targets_are_the_loo_targets_and_only_non_new_training_rows_go(ds, split):
    plain = make_split(ds, "loo", seed=7)
    assert split.valid.equals(plain.valid) and split.test.equals(plain.test)
    kept = plain.train.filter(~pl.col("item_idx").is_in(split.new_items.tolist()))
    assert split.train.equals(kept)
    # new items do appear as targets, else the protocol would have nothing to report
    assert set(split.new_items.tolist()) & set(split.test["item_idx"].to_list())


def test_evaluation_masks_what_the_user_saw_but_inputs_leave_new_items_out(split):
    seen, inputs = split.seen("test"), split.history("test")
    valid_new = split.valid.filter(pl.col("item_idx").is_in(split.new_items.tolist()))
    assert valid_new.height  # some validation targets are new items
    for u, i in valid_new.select("user_idx", "item_idx").iter_rows():
        assert seen[u, i] == 1 and inputs[u, i] == 0
    assert (seen - inputs).min() >= 0  # inputs are a subset of what is masked


def test_new_target_users_are_exactly_the_users_whose_test_item_is_new(split):
    test = split.test.to_dicts()
    want = sorted({r["user_idx"] for r in test if r["item_idx"] in set(split.new_items.tolist())})
    assert np.flatnonzero(split.new_target_users("test")).tolist() == want
    assert split.summary()["new_target_users_test"] == len(want)


def test_slice_metrics_equal_an_evaluation_of_only_those_users(split):
    rng = np.random.default_rng(0)
    table = rng.random((split.n_users, split.n_items + 1))
    score = lambda users: table[users]  # noqa: E731
    history, targets = split.seen("test"), split.targets("test")
    full = evaluate(score, history, targets, ks=(5, 10))
    flags = split.new_target_users("test")
    got = slice_metrics(full, flags[full.users], "new/")
    alone = evaluate(score, history, targets, ks=(5, 10), users=np.flatnonzero(flags))
    assert got["new/users"] == alone.n_users == flags.sum() > 0
    for key in ("HR@10", "NDCG@10", "MRR@5", "AUC"):
        assert got[f"new/{key}"] == pytest.approx(alone.metrics[key])
    with pytest.raises(ValueError, match="flag each"):
        slice_metrics(full, flags[:3], "new/")


def test_a_run_reports_the_new_target_slice_and_reloads_the_same_split(ds, tmp_path):
    ds.save(tmp_path / "toy")
    cfg = make_config("ease", [f"data.name={tmp_path / 'toy'}", "data.new_items=0.2",
                               "data.seed=7", "eval.ks=[5,10]"])
    with pytest.warns(UserWarning, match="no interaction before"):  # history: new items only
        run = train(cfg, tmp_path / "run")
    test = run.info["metrics"]["test"]
    flags = run.split.new_target_users("test")
    assert test["new/users"] == flags.sum() > 0
    assert 0 <= test["new/HR@10"] <= 1 and "new/NDCG@10" in run.info["metrics"]["valid"]
    assert run.info["split"]["new_items"] == round(0.2 * ds.n_items)
    # EASE never trained on a new item: its weights towards new items are all zero
    assert np.abs(run.model.weights[:, run.split.new_items - 1]).max() == 0
    loaded = load_run(tmp_path / "run")
    assert np.array_equal(loaded.split.new_items, run.split.new_items)
    again = evaluate_run(loaded, "test").metrics
    assert again["new/HR@10"] == pytest.approx(test["new/HR@10"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["new/users"] > 0


def test_new_items_outside_loo_or_out_of_range_are_refused(ds):
    with pytest.raises(DataError, match="option of the loo split"):
        make_split(ds, "ratio", new_items=0.1)
    with pytest.raises(DataError, match="0 < new_items < 1"):
        make_split(ds, "loo", new_items=1.5)
    with pytest.raises(Exception, match="data.new_items"):
        make_config("ease", ["data.split=ratio", "data.new_items=0.1"])
