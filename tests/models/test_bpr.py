"""BPR-MF conformance (finite loss with gradients, score shape, PAD, save -> load), the loss by
hand, a planted block pattern learned through ``genrec.runs.train``, and, for users without
training items, the popularity fallback of evaluation and the fold-in of ``recommend``; MF with
SimpleX's cosine contrastive loss (``loss = "ccl"``): the loss by hand, cosine scores, config
errors, and two planted groups learned better than popularity."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from genrec.config import ConfigError
from genrec.data.batches import PairBatch
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.models.bpr import BPR, BPRConfig
from genrec.runs import evaluate_run, load_run, make_config, recommend, scorer, train

N_USERS, N_ITEMS = 6, 12


def block_dataset(n_blocks: int = 6, users_per_block: int = 20, block: int = 12, per_user: int = 8,
                  seed: int = 0, late_users: int = 0):
    """Items come in ``n_blocks`` blocks; each user consumes ``per_user`` items of one block.

    ``late_users`` extra users interact only after everyone else (a temporal split puts all of
    their interactions in test: users without training items)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(n_blocks):
        for k in range(users_per_block):
            u = f"u{b}_{k}"
            items = rng.choice(block, size=per_user, replace=False) + b * block + 1
            rows += [(u, str(i), int(rng.integers(0, 1000))) for i in items]
    for k in range(late_users):
        rows += [(f"late{k}", str(i), 10_000 + i) for i in (1, 2)]
    u, i, t = zip(*rows)
    return build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})),
                         "blocks")


def model(**kw) -> BPR:
    torch.manual_seed(0)
    return BPR(BPRConfig(**{"n_users": N_USERS, "n_items": N_ITEMS, "dim": 8, **kw}))


def batch() -> PairBatch:
    return PairBatch(torch.tensor([0, 1, 5]), torch.tensor([1, 4, 12]), torch.tensor([3, 2, 7]))


def test_finite_loss_with_gradients_and_pad_never_learns():
    m = model()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert m.item_emb.weight.grad[0].abs().sum() == 0
    with pytest.raises(ValueError, match="pos and neg"):
        m.loss(PairBatch(torch.tensor([0])))


def test_loss_is_bpr_plus_the_batch_l2_term_by_hand():
    m = model(dim=2, l2=0.5)
    with torch.no_grad():
        m.user_emb.weight[0] = torch.tensor([1.0, 2.0])
        m.item_emb.weight[3] = torch.tensor([0.5, 0.0])   # score 0.5
        m.item_emb.weight[4] = torch.tensor([0.0, -1.0])  # score -2
    value = m.loss(PairBatch(torch.tensor([0]), torch.tensor([3]), torch.tensor([4])))
    expected = -math.log(1 / (1 + math.exp(-(0.5 + 2.0)))) + 0.5 * (5 + 0.25 + 1) / 2
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_score_shape_pad_column_and_save_load_identical(tmp_path):
    m = model().eval()
    users = PairBatch(torch.tensor([0, 3, 5]))
    with torch.no_grad():
        s = m.score(users)
    assert s.shape == (3, N_ITEMS + 1)
    assert (s[:, 0] == -math.inf).all() and torch.isfinite(s[:, 1:]).all()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    other = BPR(BPRConfig(n_users=N_USERS, n_items=N_ITEMS, dim=8))
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(other.score(users), s)


def test_config_is_checked():
    with pytest.raises(ValueError, match="negatives 'hard'"):
        BPRConfig(n_users=2, n_items=2, negatives="hard").validate()
    with pytest.raises(ValueError, match="builder fills them"):
        BPR(BPRConfig(n_users=0, n_items=5))


@pytest.mark.parametrize("negatives", ["uniform", "popularity"])
def test_runs_train_learns_the_planted_blocks_then_reloads(tmp_path, negatives):
    block_dataset().save(tmp_path / "blocks")
    sets = [f"data.name={tmp_path / 'blocks'}", "data.split=ratio", "params.dim=16",
            f"params.negatives={negatives}", "params.l2=0.0", "train.lr=0.02",
            "train.batch_size=128", "train.epochs=25", "train.clip_norm=0", "train.threads=1",
            "train.metric=HR@10", "eval.ks=[10]"]
    run = train(make_config("bpr", sets), tmp_path / "run")
    test = run.info["metrics"]["test"]
    # 11 unseen items per user, ~1 test item in the user's block among them: chance is ~0.1
    assert test["HR@10"] > 0.9, test
    assert run.info["cold_start"]["n_users_without_train_items"] == 0
    again = load_run(tmp_path / "run")
    assert evaluate_run(again, "test").metrics["HR@10"] == pytest.approx(test["HR@10"])


def test_users_without_training_items_get_popularity_in_evaluation(tmp_path):
    ds = block_dataset(n_blocks=2, users_per_block=6, late_users=3)
    ds.save(tmp_path / "blocks")
    # temporal: the last 6 of the 102 rows (by time) are test: exactly the late users' rows
    sets = [f"data.name={tmp_path / 'blocks'}", "data.split=temporal",
            "data.ratios=[0.94,0.0,0.06]", "params.dim=8", "train.epochs=2",
            "train.batch_size=64", "train.threads=1", "eval.ks=[5]"]
    run = train(make_config("bpr", sets), tmp_path / "run")
    cold = run.info["cold_start"]
    assert cold["n_users_without_train_items"] == 3
    assert cold["n_test_users_without_train_items"] == 3 and "popularity" in cold["fallback"]
    late = np.array([ds.user_index(f"late{k}") for k in range(3)])
    scores = scorer(run, "test")(late).numpy()
    counts = np.asarray(run.split.train_matrix().sum(axis=0)).ravel()
    assert np.array_equal(scores[:, 1:], np.tile(counts[1:], (3, 1)))
    assert (scores[:, 0] == -np.inf).all()
    # serving (CLI as HTTP) folds in what they are known to have done: their test items
    folded = recommend(run, "late0", k=3)
    assert folded["fallback"] is None
    assert [it["score"] for it in folded["items"]] != sorted(counts[1:], reverse=True)[:3]
    assert recommend(run, "u0_0", k=3)["fallback"] is None  # a user the model knows


# ---- loss = "ccl": SimpleX's cosine contrastive loss -----------------------------------------------
def test_ccl_loss_by_hand_against_shared_negatives(monkeypatch):
    import genrec.models._losses as losses

    monkeypatch.setattr(losses, "uniform_negatives", lambda n_items, k, device: torch.tensor([4, 5]))
    m = model(dim=2, l2=0.5, loss="ccl", n_negatives=2, margin=0.5, neg_weight=4.0)
    with torch.no_grad():
        m.user_emb.weight[0] = torch.tensor([2.0, 0.0])
        m.item_emb.weight[3] = torch.tensor([3.0, 4.0])   # cos 0.6: the positive
        m.item_emb.weight[4] = torch.tensor([8.0, -6.0])  # cos 0.8: above the margin
        m.item_emb.weight[5] = torch.tensor([0.0, 1.0])   # cos 0: clipped
    value = m.loss(PairBatch(torch.tensor([0]), torch.tensor([3]), None))  # no per-row negative
    main = (1 - 0.6) + 4.0 * (0.3 + 0.0) / 2
    assert value.item() == pytest.approx(main + 0.5 * (4 + 25) / 2, rel=1e-6)
    value.backward()
    for name, p in m.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    assert m.item_emb.weight.grad[5].abs().sum() == 0  # a clipped negative gets no gradient


def test_ccl_scores_are_cosines_and_survive_save_load(tmp_path):
    m = model(loss="ccl").eval()
    users = PairBatch(torch.tensor([0, 3, 5]))
    with torch.no_grad():
        s = m.score(users)
        unit_u = torch.nn.functional.normalize(m.user_emb.weight[[0, 3, 5]], dim=-1)
        unit_i = torch.nn.functional.normalize(m.item_emb.weight, dim=-1)
    assert torch.allclose(s[:, 1:], (unit_u @ unit_i.T)[:, 1:], atol=1e-6)
    assert (s[:, 0] == -math.inf).all() and s[:, 1:].abs().max() <= 1 + 1e-6
    torch.save(m.state_dict(), tmp_path / "m.pt")
    other = BPR(BPRConfig(n_users=N_USERS, n_items=N_ITEMS, dim=8, loss="ccl"))
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(other.eval().score(users), s)


def test_ccl_settings_fail_as_config_errors_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="loss 'hinge' is not one of bpr, ccl"):
        BPRConfig(loss="hinge").validate()
    for bad in ("params.margin=1.0", "params.margin=-2", "params.neg_weight=0",
                "params.n_negatives=0"):
        with pytest.raises(ConfigError, match="loss 'ccl' needs n_negatives >= 1, -1 <= margin"):
            make_config("bpr", ["params.loss=ccl", bad])
    with pytest.raises(ConfigError, match="negatives = 'popularity' would be ignored"):
        make_config("bpr", ["params.loss=ccl", "params.negatives=popularity"])
    # a preset is checked the same way, before any data is read
    preset = tmp_path / "p.toml"
    preset.write_text('model = "bpr"\n[data]\nname = "no-such-data"\n[params]\nloss = "ccl"\n'
                      'margin = 1.5\n')
    with pytest.raises(ConfigError, match="margin"):
        make_config(preset=preset)


def test_runs_train_ccl_learns_two_planted_groups_better_than_popularity(tmp_path):
    block_dataset(n_blocks=2, users_per_block=30).save(tmp_path / "groups")
    sets = [f"data.name={tmp_path / 'groups'}", "data.split=ratio", "eval.ks=[10]"]
    popular = train(make_config("popularity", sets), tmp_path / "pop").info["metrics"]["test"]
    sets += ["params.loss=ccl", "params.dim=16", "params.l2=0.0", "params.n_negatives=8",
             "train.lr=0.02", "train.batch_size=64", "train.epochs=10", "train.clip_norm=0",
             "train.threads=1", "train.metric=NDCG@10"]
    run = train(make_config("bpr", sets), tmp_path / "run")
    test = run.info["metrics"]["test"]
    assert test["NDCG@10"] > popular["NDCG@10"] + 0.1, (test, popular)
    # ~17 unseen candidates, ~5 of them in the user's group: chance (and popularity) is ~0.6
    assert test["HR@10"] > 0.9, test
    again = load_run(tmp_path / "run")
    assert evaluate_run(again, "test").metrics["NDCG@10"] == pytest.approx(test["NDCG@10"])
