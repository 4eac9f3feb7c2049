"""Item representations of the sequence models (``item_repr``: id | content | gated), for SASRec
and HSTU: conformance (finite loss with gradients, score shape, save -> load), the documented
fallback for items without a vector, content-only scoring of an item never seen in training, a
planted long-tail pattern that gated learns and id does not, and ``runs.train`` -> ``load_run``
with content vectors from the dataset's vector store (reloaded without the vector file)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec.config import ConfigError
from genrec.data.batches import SeqBatch
from genrec.features.store import save_vectors
from genrec.models.hstu import HSTU, HSTUConfig
from genrec.models.sasrec import SASRec, SASRecConfig
from genrec.runs import evaluate_run, load_run, make_config, train
from genrec.training import TrainConfig, fit
from tests.training.test_trainer import planted_dataset

N_ITEMS, L, C = 20, 6, 8
MODELS = {"sasrec": (SASRec, SASRecConfig), "hstu": (HSTU, HSTUConfig)}


def vectors(n_items: int = N_ITEMS, absent: tuple[int, ...] = (2, 5)) -> torch.Tensor:
    """(n_items + 1, C) random content vectors; PAD and the ``absent`` items are zero rows."""
    v = torch.randn(n_items + 1, C, generator=torch.Generator().manual_seed(0))
    v[[0, *absent]] = 0
    return v


def model(kind: str, item_repr: str, seed: int = 0, content: torch.Tensor | None = None, **kw):
    torch.manual_seed(seed)
    model_cls, config_cls = MODELS[kind]
    cfg = dict(n_items=N_ITEMS, max_len=L, dim=16, n_layers=1, n_heads=2, dropout=0.1,
               item_repr=item_repr, content_dim=C if item_repr != "id" else 0)
    if kind == "hstu":
        cfg |= {"n_negatives": 8, "n_time_buckets": 8}
    m = model_cls(config_cls(**(cfg | kw)))
    if item_repr != "id":
        m.set_content(vectors() if content is None else content)
    return m


def batch(targets: bool = True) -> SeqBatch:
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 2], [0, 0, 0, 0, 0, 10]])
    tgt = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 8, 2, 11], [0, 0, 0, 0, 0, 5]])
    times = (1_000_000 + 3600 * torch.arange(L)) * (items > 0)
    return SeqBatch(torch.arange(3), items, tgt if targets else None, times)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("item_repr", ["id", "content", "gated"])
def test_finite_loss_gradients_and_score_shape(kind, item_repr):
    m = model(kind, item_repr).train()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"
    assert (m.item_emb is None) == (item_repr == "content")  # content-only: no id table at all
    with torch.no_grad():
        s = m.eval().score(batch(targets=False))
    assert s.shape == (3, N_ITEMS + 1)
    assert torch.isneginf(s[:, 0]).all() and torch.isfinite(s[:, 1:]).all()


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("item_repr", ["content", "gated"])
def test_save_load_restores_the_content_vectors_too(kind, item_repr, tmp_path):
    m = model(kind, item_repr)
    m.loss(batch()).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * p.grad)  # not the initial weights
    torch.save(m.state_dict(), tmp_path / "m.pt")
    model_cls, config_cls = MODELS[kind]
    torch.manual_seed(7)
    other = model_cls(m.config)  # no set_content: the vectors come from the weights file
    assert other.content.vectors.abs().sum() == 0
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(other.content.vectors, vectors()) and torch.equal(other.content.present,
                                                                           m.content.present)
    with torch.no_grad():
        assert torch.equal(m.eval().score(batch(False)), other.eval().score(batch(False)))


@pytest.mark.parametrize("kind", MODELS)
def test_items_without_a_vector_follow_the_documented_fallback(kind):
    gated = model(kind, "gated")
    with torch.no_grad():
        gated.item_emb.weight.normal_()  # ids and content clearly apart
        table = gated.item_vectors()
    present = gated.content.present
    assert present.tolist() == [False, True, False, True, True, False] + [True] * (N_ITEMS - 5)
    # gated: no vector -> the id embedding alone; with a vector -> a mix
    assert torch.equal(table[[2, 5]], gated.item_emb.weight[[2, 5]])
    assert (table[[1, 3]] - gated.item_emb.weight[[1, 3]]).abs().min() > 0
    content = model(kind, "content")
    with torch.no_grad():
        table = content.item_vectors()
    # content-only: every item without a vector is the same learned "unknown item" vector
    assert torch.equal(table[2], table[5]) and not torch.equal(table[2], table[1])
    with pytest.raises(ValueError, match="item_repr='id' takes no content"):
        model(kind, "id").set_content(vectors())
    with pytest.raises(ValueError, match=r"\(n_items \+ 1, content_dim\)"):
        content.set_content(torch.zeros(N_ITEMS, C))


# ---- gated options for the cold tail: count_gate, id_dropout ------------------------------------
@pytest.mark.parametrize("kind", MODELS)
def test_count_gate_reads_the_training_counts_and_reloads_them(kind, tmp_path):
    counts = torch.arange(N_ITEMS + 1, dtype=torch.float32) ** 2
    model_cls, config_cls = MODELS[kind]
    with pytest.raises(ValueError, match="needs the items' training counts"):
        model(kind, "gated", count_gate=True)  # the helper passes no counts
    base = model(kind, "gated")
    m = model_cls(replace(base.config, count_gate=True))
    with pytest.raises(ValueError, match="never called"):  # built, counts not given yet
        m.item_vectors()
    m.set_content(vectors(), counts=counts)
    feature = m.content.count_feature[:, 0]
    assert feature[0] == 0 and feature[-1] == pytest.approx(1.0)
    assert torch.all(feature[1:] > feature[:-1])  # monotone in the count
    m.loss(batch()).backward()
    assert m.content.gate.weight.grad[:, -1].abs().sum() > 0  # the count column is trained
    with torch.no_grad():
        m.content.gate.weight[:, -1] = 3.0  # frequent items lean on their id vector
        table = m.eval().item_vectors()
    torch.save(m.state_dict(), tmp_path / "m.pt")
    other = model_cls(m.config)
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(other.eval().item_vectors(), table)
    for bad in (dict(item_repr="content", count_gate=True), dict(item_repr="id", id_dropout=0.2),
                dict(item_repr="gated", id_dropout=1.0)):
        with pytest.raises(ValueError, match="count_gate / id_dropout|id_dropout must be"):
            config_cls(n_items=N_ITEMS, max_len=L, content_dim=C, **bad).validate()


# ---- logit adjustment (logit_adjust): training counts as a prior of the loss -------------------
@pytest.mark.parametrize("kind", MODELS)
def test_logit_adjust_shifts_the_training_logits_only_and_reloads_its_counts(kind, tmp_path):
    model_cls, config_cls = MODELS[kind]
    plain = model(kind, "gated").train()
    adjusted = model_cls(replace(plain.config, logit_adjust=0.7)).train()
    adjusted.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the prior
    with pytest.raises(ValueError, match="never got its items' training counts"):
        adjusted.loss(batch())
    adjusted.set_content(vectors())

    def loss(m):  # dropout and sampled negatives drawn alike for both models
        torch.manual_seed(5)
        return m.loss(batch())

    adjusted.set_item_counts(torch.full((N_ITEMS + 1,), 9.0))  # the same count everywhere:
    assert torch.allclose(loss(adjusted), loss(plain))       # a shift softmax ignores
    counts = torch.arange(N_ITEMS + 1, dtype=torch.float32) ** 2
    adjusted.set_item_counts(counts)
    value = loss(adjusted)
    assert not torch.allclose(value, loss(plain))
    value.backward()
    assert adjusted.item_emb.weight.grad.abs().sum() > 0
    with torch.no_grad():  # ranking uses the learned scores alone
        assert torch.equal(adjusted.eval().score(batch(False)), plain.eval().score(batch(False)))
    torch.save(adjusted.state_dict(), tmp_path / "m.pt")
    other = model_cls(adjusted.config)
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(other.prior.log_count, torch.log1p(counts))
    with pytest.raises(ValueError, match="set_item_counts is for logit_adjust"):
        plain.set_item_counts(counts)
    for bad in (dict(logit_adjust=-1.0), dict(logit_adjust=1.0, loss="bce")):
        with pytest.raises(ValueError, match="logit_adjust must be >= 0 and needs a softmax"):
            config_cls(n_items=N_ITEMS, max_len=L, **bad).validate()


def test_id_dropout_makes_some_items_content_only_in_training_and_none_in_eval():
    m = model("sasrec", "gated", id_dropout=0.5)
    with torch.no_grad():
        m.item_emb.weight.normal_()
        content_only = m.content.proj(m.content.vectors)
        torch.manual_seed(0)
        train_table = m.train().item_vectors()
        eval_table = m.eval().item_vectors()
    dropped = (train_table - content_only).abs().amax(1) < 1e-6
    present = m.content.present
    assert 3 <= int(dropped[present].sum()) <= int(present.sum()) - 3  # about half of them
    assert not dropped[~present].any()  # no vector: the id vector, never dropped
    assert torch.equal(eval_table, m.item_vectors())  # deterministic at evaluation
    assert not ((eval_table - content_only).abs().amax(1) < 1e-6)[present].any()


# ---- planted patterns ------------------------------------------------------------------------
K = 12  # head items 1..K walk a cycle; tail item K + j shares item j's content vector


def walks(gen: torch.Generator, B: int, tail_p: float) -> SeqBatch:
    """Runs j, j+1, ... around the head cycle; each item is swapped for its tail twin with
    probability ``tail_p`` (the twin is followed by what follows j)."""
    start = torch.randint(1, K + 1, (B, 1), generator=gen)
    seq = (start - 1 + torch.arange(L + 1)) % K + 1  # (B, L + 1)
    seq = torch.where(torch.rand(B, L + 1, generator=gen) < tail_p, seq + K, seq)
    valid = torch.arange(L)[None, :] >= (L - torch.randint(2, L + 1, (B,), generator=gen))[:, None]
    return SeqBatch(torch.arange(B), seq[:, :-1] * valid, seq[:, 1:] * valid)


def twin_vectors(n_items: int) -> torch.Tensor:
    v = torch.zeros(n_items + 1, C)
    v[1:K + 1] = torch.randn(K, C, generator=torch.Generator().manual_seed(1))
    v[K + 1:2 * K + 1] = v[1:K + 1]
    return v


def trained_sasrec(item_repr: str, n_items: int, data: list[SeqBatch],
                   content: torch.Tensor | None = None) -> SASRec:
    torch.manual_seed(0)
    m = SASRec(SASRecConfig(n_items=n_items, max_len=L, dim=16, n_layers=1, n_heads=1,
                            dropout=0.0, item_repr=item_repr,
                            content_dim=C if item_repr != "id" else 0))
    if item_repr != "id":
        m.set_content(twin_vectors(n_items) if content is None else content)
    fit(m, TrainConfig(epochs=4, lr=1e-2, seed=0), lambda epoch: data)
    return m.eval()


def last_item_scores(m: SASRec, last: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.score(SeqBatch(torch.arange(len(last)), last[:, None]))


def test_content_only_scores_an_item_never_seen_in_training_by_its_vector():
    gen = torch.Generator().manual_seed(0)
    data = [walks(gen, 32, tail_p=0.0) for _ in range(20)]
    cold = 2 * K + 1  # in the catalogue, never in the data; starts as item 3's twin
    assert not any((b.items == cold).any() or (b.targets == cold).any() for b in data)
    vec = twin_vectors(cold)
    vec[cold] = vec[3]
    m = trained_sasrec("content", cold, data, vec)
    head = torch.arange(1, K + 1)
    s = last_item_scores(m, head)  # after item j comes j + 1
    assert (s.argmax(1) == head % K + 1).float().mean() == 1.0
    assert torch.equal(s[:, cold], s[:, 3])  # same vector, same score
    assert (s[1].argsort(descending=True)[:2].sort().values == torch.tensor([3, cold])).all()
    vec[cold] = vec[7]  # now the cold item looks like item 7: after 6, it ranks with 7
    m.set_content(vec)
    s2 = last_item_scores(m, head)
    assert torch.equal(s2[:, cold], s2[:, 7]) and not torch.allclose(s2[:, cold], s[:, cold])
    assert torch.equal(s2[:, :cold], s[:, :cold])  # the other items did not move


def test_gated_learns_the_tail_from_shared_vectors_where_id_cannot():
    # tail items occur ~once each in training: id embeddings barely move, while the gate lets
    # a tail item borrow the projected vector its head twin trained
    gen = torch.Generator().manual_seed(0)
    data = [walks(gen, 32, tail_p=0.005) for _ in range(20)]
    n_tail = sum(int((b.items > K).sum()) for b in data)
    assert 0 < n_tail < 2 * K
    tail = torch.arange(K + 1, 2 * K + 1)
    follows = tail % K + 1  # twin of j is followed by j + 1
    hr = {}
    for item_repr in ("id", "gated"):
        m = trained_sasrec(item_repr, 2 * K, data)
        head_hr = (last_item_scores(m, tail - K).argmax(1) == follows).float().mean().item()
        assert head_hr == 1.0, item_repr  # both learn the head pattern
        hr[item_repr] = (last_item_scores(m, tail).argmax(1) == follows).float().mean().item()
    assert hr["gated"] >= 0.9 and hr["id"] <= 0.7, hr


# ---- runs: vectors from the dataset's store ----------------------------------------------------
def test_runs_train_with_store_vectors_reports_missing_and_reloads_without_them(tmp_path):
    ds = planted_dataset(n_users=60, seed=3)
    ds.save(tmp_path / "planted")
    ids = [str(i) for i in ds.item_ids[1:]]
    rng = np.random.default_rng(0)
    keep = ids[4:]  # the first 4 items have no vector
    save_vectors(ds, "enc", keep, rng.normal(size=(len(keep), C)), {})
    sets = [f"data.name={tmp_path / 'planted'}", "params.dim=16", "params.max_len=8",
            "params.n_layers=1", "params.item_repr=content", "params.content=enc",
            "params.n_time_buckets=0", "train.epochs=2", "train.batch_size=32",
            "train.threads=1", "eval.ks=[10]"]
    run = train(make_config("hstu", sets), tmp_path / "run")
    content = run.info["content"]
    assert content["encoder"] == "enc" and content["dim"] == C
    assert content["n_without_vector"] == 4 and "share one learned vector" in content["fallback"]
    (tmp_path / "planted" / "item_vectors" / "enc.parquet").unlink()
    again = load_run(tmp_path / "run")
    assert torch.equal(again.model.content.vectors, run.model.content.vectors)
    assert evaluate_run(again, "test").metrics == pytest.approx(run.info["metrics"]["test"])
    assert math.isfinite(run.info["metrics"]["test"]["NDCG@10"])
    with pytest.raises(ConfigError, match="needs params.content"):
        train(make_config("hstu", [s for s in sets if not s.startswith("params.content")]))


def test_runs_train_gives_a_count_gate_the_training_counts(tmp_path):
    ds = planted_dataset(n_users=60, seed=3)
    ds.save(tmp_path / "planted")
    ids = [str(i) for i in ds.item_ids[1:]]
    save_vectors(ds, "enc", ids, np.random.default_rng(0).normal(size=(len(ids), C)), {})
    sets = [f"data.name={tmp_path / 'planted'}", "params.dim=16", "params.max_len=8",
            "params.n_layers=1", "params.item_repr=gated", "params.content=enc",
            "params.count_gate=true", "params.id_dropout=0.1", "train.epochs=1",
            "train.batch_size=32", "train.threads=1", "eval.ks=[10]"]
    run = train(make_config("sasrec", sets), tmp_path / "run")
    counts = np.asarray(run.split.train_matrix().sum(axis=0)).ravel()
    feature = run.model.content.count_feature[:, 0].numpy()
    assert np.allclose(feature, np.log1p(counts) / np.log1p(counts.max()), atol=1e-6)
    again = load_run(tmp_path / "run")
    assert torch.equal(again.model.content.count_feature, run.model.content.count_feature)
    assert evaluate_run(again, "test").metrics == pytest.approx(run.info["metrics"]["test"])


def test_runs_train_gives_logit_adjust_the_training_counts(tmp_path):
    ds = planted_dataset(n_users=60, seed=4)
    ds.save(tmp_path / "planted")
    sets = [f"data.name={tmp_path / 'planted'}", "params.dim=16", "params.max_len=8",
            "params.n_layers=1", "params.logit_adjust=1.0", "train.epochs=1",
            "train.batch_size=32", "train.threads=1", "eval.ks=[10]"]
    run = train(make_config("sasrec", sets), tmp_path / "run")
    counts = np.asarray(run.split.train_matrix().sum(axis=0)).ravel()
    assert np.allclose(run.model.prior.log_count.numpy(), np.log1p(counts), atol=1e-6)
    again = load_run(tmp_path / "run")
    assert torch.equal(again.model.prior.log_count, run.model.prior.log_count)
    assert evaluate_run(again, "test").metrics == pytest.approx(run.info["metrics"]["test"])
