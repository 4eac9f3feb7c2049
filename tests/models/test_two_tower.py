"""Two-tower conformance: finite loss with gradients everywhere, score shape / PAD / cold users,
causal history pooling (hand-computed mean), the in-batch logQ loss against a by-hand version,
user features, a planted cluster pattern learned, save -> load, and ``runs.train`` end to end
(content vectors with missing items reported, user features from users.parquet, reload)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from genrec.config import ConfigError
from genrec.data.batches import SeqBatch
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.features.store import save_vectors
from genrec.models.two_tower import HistoryPooling, TwoTower, TwoTowerConfig
from genrec.runs import evaluate_run, load_run, make_config, train
from genrec.training import TrainConfig, fit

N_ITEMS, L = 20, 6


def model(seed: int = 0, **kw) -> TwoTower:
    torch.manual_seed(seed)
    return TwoTower(TwoTowerConfig(**{"n_items": N_ITEMS, "max_len": L, "dim": 16, **kw}))


def batch(targets: bool = True) -> SeqBatch:
    items = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 7, 8, 2], [0, 0, 0, 0, 0, 10]])
    tgt = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 8, 2, 11], [0, 0, 0, 0, 0, 2]])
    return SeqBatch(torch.arange(3), items, tgt if targets else None)


def with_features(m: TwoTower) -> TwoTower:
    m.set_user_features(torch.tensor([[1, 2], [2, 0], [0, 1]]))
    return m


FEATS = dict(user_features=("gender", "age"), user_cards=(3, 4), n_users=3)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
@pytest.mark.parametrize("logq", [True, False])
def test_finite_loss_with_gradients_on_every_parameter(pooling, logq):
    m = with_features(model(pooling=pooling, logq=logq, **FEATS)).train()
    value = m.loss(batch())
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"
    assert m.item_emb.weight.grad[0].abs().sum() == 0  # PAD's embedding never learns


@pytest.mark.parametrize("normalize", [True, False])
def test_score_is_the_exact_product_of_the_two_towers(normalize):
    m = model(pooling="attention", normalize=normalize, temperature=0.5).eval()
    b = SeqBatch(torch.arange(4), torch.tensor([[0, 0, 0, 0, 1, 2], [0] * 6, [3] * 6,
                                                [0, 0, 0, 0, 0, 4]]))
    with torch.no_grad():
        s = m.score(b)
        u, v = m.user_vectors(b), m.item_vectors()
        empty = m.score(SeqBatch(torch.arange(2), torch.zeros(2, 0, dtype=torch.int64)))
    assert s.shape == (4, N_ITEMS + 1) and v.shape == (N_ITEMS + 1, 16) and u.shape == (4, 16)
    assert (s[:, 0] == -math.inf).all() and torch.isfinite(s[:, 1:]).all()
    assert torch.allclose(s[:, 1:], (u @ v.T)[:, 1:] / 0.5, atol=1e-5)
    if normalize:  # unit vectors: the inner product of a faiss index is the cosine
        assert torch.allclose(v[1:].norm(dim=1), torch.ones(N_ITEMS), atol=1e-5)
        assert torch.allclose(u[[0, 2, 3]].norm(dim=1), torch.ones(3), atol=1e-5)
    # no history at all scores like an all-PAD history: the user MLP's learned "cold" vector
    assert torch.allclose(empty, s[1:2].expand(2, -1))


def test_mean_pooling_is_the_causal_mean_of_real_items():
    pool = HistoryPooling(TwoTowerConfig(n_items=5, max_len=4, dim=2, pooling="mean"))
    items = torch.tensor([[0, 0, 1, 3], [2, 0, 4, 5]])  # a PAD inside the second row is skipped
    table = torch.tensor([[0.0, 0], [1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])
    real = items > 0
    got = pool(table[items] * real[..., None], real)
    expected = torch.tensor([[[0, 0], [0, 0], [1, 2], [3, 4]],           # mean of {1}, {1, 3}
                             [[3, 4], [3, 4], [5, 6], [19 / 3, 22 / 3]]])  # {2}, {2,4}, {2,4,5}
    assert torch.allclose(got, expected)


def test_attention_pooling_is_causal():
    m = model(pooling="attention").eval()
    with torch.no_grad():
        table = m._item_table()
        a = m._user_states(SeqBatch(torch.arange(1), torch.tensor([[0, 1, 2, 3, 4, 5]])), table)
        b = m._user_states(SeqBatch(torch.arange(1), torch.tensor([[0, 1, 2, 3, 4, 9]])), table)
    assert torch.allclose(a[:, :-1], b[:, :-1]) and not torch.allclose(a[:, -1], b[:, -1])
    with pytest.raises(ValueError, match="max_len"):
        m.user_vectors(SeqBatch(torch.arange(1), torch.ones(1, L + 1, dtype=torch.int64)))


def test_in_batch_loss_with_logq_matches_a_by_hand_softmax():
    m = model(temperature=0.2, dropout=0.0, n_negatives=0).eval()  # every batch target
    b = batch()
    with torch.no_grad():
        got = m.loss(b)
        h = m._user_states(b, m._item_table())[b.targets > 0]
        v = m.item_vectors()
    t = b.targets[b.targets > 0].tolist()  # 2 appears 3 times among 11 targets
    counts = {i: t.count(i) for i in t}
    losses = []
    for row, pos in enumerate(t):
        logit = lambda j: float(h[row] @ v[j]) / 0.2 - math.log(counts[j] / len(t))  # noqa: E731
        # every batch target is a negative, except copies of the row's own target
        negs = [logit(j) for j in t if j != pos]
        losses.append(-logit(pos) + math.log(sum(math.exp(x) for x in [logit(pos), *negs])))
    assert got.item() == pytest.approx(sum(losses) / len(losses), rel=1e-4)
    # a subset of negatives is a different (still finite) estimate
    sub = model(temperature=0.2, n_negatives=4).eval()
    torch.manual_seed(0)
    assert torch.isfinite(sub.loss(b)) and sub.loss(b).item() != pytest.approx(got.item())


def test_user_features_change_the_user_vector_and_are_checked():
    m = with_features(model(**FEATS)).eval()
    same_history = SeqBatch(torch.arange(3), torch.tensor([[1, 2, 3]] * 3))
    with torch.no_grad():
        u = m.user_vectors(same_history)
    assert not torch.allclose(u[0], u[1]) and not torch.allclose(u[1], u[2])
    with pytest.raises(ValueError, match=r"0..card-1 with cards \[3, 4\]"):
        m.set_user_features(torch.tensor([[3, 0], [0, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"\(n_users, n_features\) = \(3, 2\)"):
        m.set_user_features(torch.zeros(2, 2, dtype=torch.int64))


# ---- a planted pattern ---------------------------------------------------------------------------
CLUSTER = 5  # items 1-5, 6-10, 11-15, 16-20: every user stays inside one cluster


def cluster_batches(gen: torch.Generator, n: int, B: int = 32) -> list[SeqBatch]:
    out = []
    for _ in range(n):
        base = torch.randint(0, N_ITEMS // CLUSTER, (B, 1), generator=gen) * CLUSTER
        seq = base + torch.randint(1, CLUSTER + 1, (B, L + 1), generator=gen)
        out.append(SeqBatch(torch.arange(B), seq[:, :-1], seq[:, 1:]))
    return out


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_learns_a_planted_cluster_pattern(pooling):
    data = cluster_batches(torch.Generator().manual_seed(0), 15)
    m = model(pooling=pooling)
    fit(m, TrainConfig(epochs=6, lr=1e-2, seed=0), lambda epoch: data)
    histories = torch.tensor([[c * CLUSTER + 1, c * CLUSTER + 2] for c in range(4)])
    with torch.no_grad():
        s = m.eval().score(SeqBatch(torch.arange(4), histories))
    s[torch.arange(4)[:, None], histories] = -math.inf  # seen items are not recommended
    top = s.topk(3, dim=1).indices
    same_cluster = ((top - 1) // CLUSTER == torch.arange(4)[:, None]).float().mean().item()
    assert same_cluster == 1.0, (pooling, top)


def test_save_load_gives_identical_scores(tmp_path):
    m = with_features(model(pooling="attention", dropout=0.3, **FEATS))
    m.loss(batch()).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * p.grad)  # not the initial weights
    torch.save(m.state_dict(), tmp_path / "m.pt")
    other = model(seed=7, pooling="attention", dropout=0.3, **FEATS)  # no set_user_features
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(other.user_codes, m.user_codes)
    with torch.no_grad():
        assert torch.equal(m.eval().score(batch(False)), other.eval().score(batch(False)))


@pytest.mark.parametrize("bad,match", [({"pooling": "max"}, "pooling 'max' is not one of"),
                                       ({"item_repr": "bert"}, "item_repr 'bert' is not one of"),
                                       ({"item_repr": "gated"}, "content_dim >= 1"),
                                       ({"temperature": 0.0}, "temperature > 0"),
                                       ({"user_features": ("a",), "user_cards": (2, 3)},
                                        "one cardinality per user feature")])
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        TwoTower(TwoTowerConfig(**{"n_items": 5, **bad}))


# ---- runs: train -> evaluate -> reload ----------------------------------------------------------
def cluster_dataset(n_users: int = 80, seed: int = 0):
    """Each user walks 6-9 items of one of 4 clusters; users.parquet has a 'group' feature (the
    cluster) and an uninformative 'shoe' feature, one user without it."""
    rng = np.random.default_rng(seed)
    rows, users = [], []
    for u in range(n_users):
        c = int(rng.integers(4))
        items = rng.permutation(CLUSTER)[:int(rng.integers(3, 6))] + c * CLUSTER + 1
        rows += [(f"u{u:02d}", str(i), t) for t, i in enumerate(items)]
        users.append((f"u{u:02d}", f"g{c}", None if u == 0 else str(u % 3)))
    u, i, t = zip(*rows)
    uid, group, shoe = zip(*users)
    raw = RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t}),
                  users=pl.DataFrame({"user_id": uid, "group": group, "shoe": shoe}))
    return build_dataset(raw, "clusters")


def test_runs_train_reports_missing_vectors_and_reloads(tmp_path):
    ds = cluster_dataset()
    ds.save(tmp_path / "clusters")
    ids = [str(i) for i in ds.item_ids[1:]]
    keep = ids[3:]  # the first 3 items have no vector
    save_vectors(ds, "enc", keep, np.random.default_rng(0).normal(size=(len(keep), 8)), {})
    sets = [f"data.name={tmp_path / 'clusters'}", "params.dim=16", "params.max_len=8",
            "params.item_repr=gated", "params.content=enc", "params.user_features=group,shoe",
            "train.epochs=3", "train.batch_size=16", "train.threads=1", "eval.ks=[5]",
            "train.metric=NDCG@5"]
    run = train(make_config("two_tower", sets), tmp_path / "run")
    content = run.info["content"]
    assert content["n_without_vector"] == 3 and "id embedding alone" in content["fallback"]
    feats = run.info["user_features"]
    assert feats["columns"] == ["group", "shoe"] and feats["cards"] == [5, 4]
    assert feats["n_missing"] == {"group": 0, "shoe": 1}
    (tmp_path / "clusters" / "item_vectors" / "enc.parquet").unlink()
    again = load_run(tmp_path / "run")
    assert torch.equal(again.model.user_codes, run.model.user_codes)
    assert evaluate_run(again, "test").metrics == pytest.approx(run.info["metrics"]["test"])
    with pytest.raises(ConfigError, match="user_features.*'age'.*found: group, shoe"):
        train(make_config("two_tower", sets[:3] + ["params.user_features=age"]))
