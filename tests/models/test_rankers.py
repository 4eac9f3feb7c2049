"""Conformance of the rankers over candidate lists (``kind = "features"``) and their own checks.

Every registered neural model of the features kind gets the suite below, as
``test_conformance.py`` does for the models trained on an interaction log: (B, T) logits,
save -> load of the state_dict gives identical logits, unknown config keys and batches that do
not fit the config fail, PAD is never read, ``genrec train`` refuses it, and it learns a planted
signal through ``fit_features_model``. The planted rows: 40
items in two groups (1..20, 21..40), each user's history from one group, eight random candidates
per user, label 1 when the candidate's group is the user's (10% flipped); dense and sparse
columns are noise unless a test plants something in them. Then one test per model of what its
paper is about: DIN ignores PAD, DCN-V2 learns a multiplicative cross a linear model cannot,
MMoE trains both task heads with gates that sum to 1, the composed ranker beats chance GAUC.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from genrec.config import ConfigError, from_dict
from genrec.data.batches import FeatureBatch
from genrec.evaluation.binary import auc, gauc
from genrec.models.dcnv2 import DCNV2, DCNV2Config
from genrec.models.din import DIN, DINConfig
from genrec.models.mmoe import MMoE, MMoEConfig
from genrec.registry import MODELS, model_classes
from genrec.runs import make_config, train
from genrec.runs.kinds.features import fit_features_model, score_features_model
from genrec.training.trainer import TrainConfig

N_ITEMS, MAX_LEN, CARDS, N_DENSE = 40, 6, [3, 5], 2
RANKERS = [n for n in MODELS if model_classes(n)[0].kind == "features"
           and issubclass(model_classes(n)[0], nn.Module)]
SMALL = {"dim": 8, "hidden": [32], "attention_hidden": 8, "n_cross": 2, "n_experts": 2,
         "expert_hidden": [32], "tower_hidden": [16]}
FAST = dict(epochs=8, lr=0.02, batch_size=64, threads=1, patience=8, metric="GAUC")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def planted(n_users: int, seed: int, tasks: tuple[str, ...] = ("match",)) -> FeatureBatch:
    """All rows of ``n_users`` users, eight candidates each (see the module docstring), one label
    column per task: "match" (the candidate's group is the user's), "odd" (the candidate is an odd
    item), "dense" (the first dense feature is positive); match and odd are 10% flipped."""
    rng = np.random.default_rng(seed)
    n_cands = 8
    history = np.zeros((n_users, MAX_LEN), dtype=np.int64)
    for u in range(n_users):
        n = rng.integers(2, MAX_LEN + 1)
        history[u, MAX_LEN - n:] = rng.integers(1, 21, n) + 20 * (u % 2)  # left-padded
    target = rng.integers(1, N_ITEMS + 1, (n_users, n_cands))
    dense = rng.normal(size=(n_users * n_cands, N_DENSE)).astype(np.float32)
    flip = rng.random((2, target.size)) < 0.1
    labels = {"match": ((target > 20) == (np.arange(n_users) % 2 == 1)[:, None]).ravel() ^ flip[0],
              "odd": (target.ravel() % 2 == 1) ^ flip[1], "dense": dense[:, 0] > 0}
    return FeatureBatch(
        dense=torch.from_numpy(dense),
        sparse=torch.from_numpy(np.stack([rng.integers(0, c, target.size) for c in CARDS], 1)),
        history=torch.from_numpy(np.repeat(history, n_cands, 0)),
        target=torch.from_numpy(target.ravel()),
        labels=torch.from_numpy(np.stack([labels[t] for t in tasks], 1).astype(np.float32)),
        groups=torch.from_numpy(np.repeat(np.arange(n_users), n_cands) + 1000 * seed))


def chunks(rows: FeatureBatch, size: int = 64) -> list[FeatureBatch]:
    return [FeatureBatch(*(getattr(rows, f.name)[lo:lo + size]
                           for f in dataclasses.fields(FeatureBatch)))
            for lo in range(0, len(rows), size)]


def build(name: str, n_tasks: int = 1, **params):
    model_cls, config_cls = model_classes(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    sizes = {k: v for k, v in SMALL.items() if k in fields}
    config = from_dict(config_cls, {"n_items": N_ITEMS, "n_dense": N_DENSE, "sparse_cards": CARDS,
                                    "n_tasks": n_tasks, "max_len": MAX_LEN, **sizes, **params})
    return model_cls(config)


def fit(model, rows: FeatureBatch, valid: FeatureBatch, **train):
    return fit_features_model(model, lambda: chunks(rows), lambda: chunks(valid),
                              TrainConfig(**{**FAST, **train}))


# ---- the conformance suite, every features model ---------------------------------------------
@pytest.mark.parametrize("name", RANKERS)
def test_logits_are_b_by_t_and_save_load_gives_identical_logits(name):
    model = build(name, n_tasks=2)
    rows = planted(10, seed=1, tasks=("match", "odd"))
    fit_features_model(model, lambda: chunks(rows), None, TrainConfig(**{**FAST, "epochs": 1}))
    logits = model(rows)  # fit leaves the model in eval mode (Dice: running statistics)
    assert logits.shape == (len(rows), 2) and torch.isfinite(logits).all()
    fresh = build(name, n_tasks=2)
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh(rows), logits, rtol=0, atol=0)
    assert model.loss(rows).shape == ()


@pytest.mark.parametrize("name", RANKERS)
def test_an_unknown_config_key_fails_and_genrec_train_refuses(name):
    config_cls = model_classes(name)[1]
    with pytest.raises(ConfigError, match=f"no_such_field for {config_cls.__name__}"):
        make_config(name, ["params.no_such_field=1"])
    # refused before any data is read: this dataset does not exist
    with pytest.raises(ConfigError, match="genrec pipeline train") as err:
        train(make_config(name, ["data.name=no-such-dataset"]))
    assert "\n" not in str(err.value)


def test_genrec_train_nproc_refuses_a_ranker_before_launching(monkeypatch):
    from typer.testing import CliRunner

    from genrec.cli import app, run as run_cli

    monkeypatch.setattr(run_cli, "launch", lambda *a: pytest.fail("torchrun was launched"))
    result = CliRunner().invoke(app, ["train", "din", "--nproc", "2", "--data", "no-such-dataset"])
    assert isinstance(result.exception, ConfigError)
    assert "genrec pipeline train" in str(result.exception)


@pytest.mark.parametrize("name", RANKERS)
def test_a_batch_that_does_not_fit_the_config_is_refused(name):
    model = build(name)
    rows = planted(2, seed=2)
    with pytest.raises(ValueError, match="n_dense=2"):
        model(dataclasses.replace(rows, dense=rows.dense[:, :1]))
    with pytest.raises(ValueError, match="sparse id"):
        model(dataclasses.replace(rows, sparse=rows.sparse + 10))


@pytest.mark.parametrize("name", RANKERS)
def test_pad_is_never_read(name):
    # every neural ranker embeds items through _rankers.FeatureEmbeddings (``model.embed``)
    model = build(name).eval()
    rows = planted(6, seed=14)
    before = model(rows)
    with torch.no_grad():
        model.embed.items.weight[0] = torch.randn(SMALL["dim"])
    torch.testing.assert_close(model(rows), before, rtol=0, atol=0)
    short = dataclasses.replace(rows, history=rows.history[:, -2:])  # two real items each
    wider = dataclasses.replace(short, history=torch.cat(
        [torch.zeros(len(rows), 3, dtype=torch.int64), short.history], 1))
    torch.testing.assert_close(model(wider), model(short))


@pytest.mark.parametrize("name", RANKERS)
def test_the_planted_signal_is_learned(name):
    model = build(name)
    valid = planted(40, seed=4)
    result = fit(model, planted(200, seed=3), valid)
    probs = score_features_model(model, chunks(valid))
    assert probs.shape == (len(valid), 1) and ((probs >= 0) & (probs <= 1)).all()
    got = gauc(probs[:, 0], valid.labels[:, 0].numpy(), valid.groups.numpy())
    assert got == pytest.approx(result.best_metric) and got > 0.75, f"{name}: GAUC {got:.3f}"


# ---- one test per paper ---------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["none", "softmax"])
@pytest.mark.parametrize("training", [False, True])
def test_din_attention_ignores_pad(norm, training):
    model = DIN(DINConfig(n_items=N_ITEMS, n_dense=N_DENSE, sparse_cards=CARDS, max_len=MAX_LEN,
                          dim=8, hidden=[16], attention_norm=norm)).train(training)
    rows = planted(6, seed=5)
    before = model(rows)
    with torch.no_grad():  # PAD's own embedding row is never read...
        model.embed.items.weight[0] = torch.randn(8)
    torch.testing.assert_close(model(rows), before, rtol=0, atol=0)
    short = dataclasses.replace(rows, history=rows.history[:, -2:])  # ...nor is more padding
    wider = dataclasses.replace(short, history=torch.cat(
        [torch.zeros(len(rows), 3, dtype=torch.int64), short.history], 1))
    torch.testing.assert_close(model(wider), model(short))
    empty = dataclasses.replace(rows, history=torch.zeros_like(rows.history))  # all PAD: finite
    assert torch.isfinite(model(empty)).all()
    embed = model.embed(rows)
    weights = model.attention.weights(embed[3], embed[2], embed[4])
    assert (weights[rows.history == 0] == 0).all() and (weights[rows.history > 0] != 0).any()


def test_dcnv2_learns_a_multiplicative_cross_a_linear_model_cannot():
    rng = np.random.default_rng(6)

    def rows(n: int) -> FeatureBatch:
        x = rng.normal(size=(n, 2)).astype(np.float32)
        return FeatureBatch(dense=torch.from_numpy(x), sparse=torch.zeros(n, 0, dtype=torch.int64),
                            history=torch.zeros(n, 1, dtype=torch.int64),
                            target=torch.ones(n, dtype=torch.int64),
                            labels=torch.from_numpy((x[:, :1] * x[:, 1:] > 0).astype(np.float32)),
                            groups=torch.zeros(n, dtype=torch.int64))

    class Linear(nn.Module):  # logistic regression on the same dense features
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Linear(2, 1)

        def forward(self, batch: FeatureBatch) -> torch.Tensor:
            return self.w(batch.dense)

        def loss(self, batch: FeatureBatch) -> torch.Tensor:
            return nn.functional.binary_cross_entropy_with_logits(self(batch), batch.labels)

    train_rows, test_rows = rows(2000), rows(1000)
    results = {}
    for name, model in [("linear", Linear()),
                        ("dcnv2", DCNV2(DCNV2Config(n_items=1, n_dense=2, dim=2, n_cross=2,
                                                    hidden=[])))]:  # the cross network alone
        fit_features_model(model, lambda: chunks(train_rows), None,
                           TrainConfig(**{**FAST, "epochs": 15}))
        probs = score_features_model(model, chunks(test_rows))
        results[name] = auc(probs[:, 0], test_rows.labels[:, 0].numpy())
    assert results["linear"] < 0.6 and results["dcnv2"] > 0.9, results


@pytest.mark.parametrize("low_rank,structure", [(0, "parallel"), (2, "stacked")])
def test_dcnv2_variants_build_and_train(low_rank, structure):
    model = build("dcnv2", low_rank=low_rank, structure=structure)
    rows = planted(10, seed=7)
    loss = model.loss(rows)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.cross.parameters())


def test_mmoe_trains_both_task_heads_and_its_gates_sum_to_one():
    # two tasks read different inputs: the dense features and the candidate's id
    model = build("mmoe", n_tasks=2, n_experts=3)
    valid = planted(40, seed=9, tasks=("dense", "odd"))
    fit(model, planted(200, seed=8, tasks=("dense", "odd")), valid)
    probs = score_features_model(model, chunks(valid))
    per_task = [auc(probs[:, t], valid.labels[:, t].numpy()) for t in range(2)]
    assert min(per_task) > 0.8, per_task
    gates = model.gates(valid)
    assert gates.shape == (len(valid), 2, 3) and (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(len(valid), 2))


def test_shared_bottom_trains_both_heads_and_has_no_gates():
    model = build("mmoe", n_tasks=2, structure="shared_bottom")
    model.loss(planted(10, seed=10, tasks=("dense", "odd"))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for tower in model.heads.towers for p in tower.parameters())
    with pytest.raises(ValueError, match="no gates"):
        model.gates(planted(2, seed=10))


def test_the_composed_ranker_trains_two_tasks_end_to_end_and_beats_chance_gauc():
    model = build("ranker", n_tasks=2)
    valid = planted(40, seed=12, tasks=("dense", "odd"))
    result = fit(model, planted(200, seed=11, tasks=("dense", "odd")), valid)
    best = [h for h in result.history if h["epoch"] == result.best_epoch][0]["valid"]
    assert best["GAUC_t0"] > 0.75 and best["GAUC_t1"] > 0.75, best
    assert model.gates(valid).shape == (len(valid), 2, SMALL["n_experts"])


def test_a_metric_the_ranker_cannot_report_is_refused():
    rows = planted(4, seed=13)
    with pytest.raises(ValueError, match="set train.metric to one of GAUC"):
        fit_features_model(build("din"), lambda: chunks(rows), lambda: chunks(rows),
                           TrainConfig(metric="NDCG@10"))


def test_a_config_with_bad_sizes_fails_loudly():
    with pytest.raises(ValueError, match="sparse_cards"):
        MMoE(MMoEConfig(n_items=5, sparse_cards=[0]))
    with pytest.raises(ValueError, match="task_weights"):
        DIN(DINConfig(n_items=5, n_tasks=2, task_weights=[1.0]))
    with pytest.raises(ValueError, match="structure"):
        DCNV2(DCNV2Config(n_items=5, structure="sideways"))
