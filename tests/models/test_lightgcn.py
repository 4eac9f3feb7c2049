"""LightGCN: the normalised adjacency and K-layer mean against a dense numpy computation, the
symmetric sparse backward against dense autograd, conformance (finite loss with gradients, score
shape, PAD, save -> load), one propagation per evaluation, semantic fusion (sum / concat, before
/ after, user means, the missing-vector fallback), the sampled-softmax, InfoNCE and CCL (SimpleX's
cosine contrastive) loss options against a hand computation, a planted block pattern learned
through ``genrec.runs.train`` with each loss, and the missing-vector count in run.json."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import genrec.models.lightgcn as lg
import genrec.models._losses as losses
from genrec.config import ConfigError
from genrec.data.batches import PairBatch
from genrec.features.store import save_vectors
from genrec.models.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency, propagate
from genrec.runs import evaluate_run, load_run, make_config, train
from tests.models.test_bpr import block_dataset

# users x (PAD + 5 items); user 3 has no item, item 5 no user: isolated nodes, like PAD
R = np.array([[0, 1, 1, 0, 0, 0],
              [0, 0, 1, 1, 0, 0],
              [0, 1, 0, 0, 1, 0],
              [0, 0, 0, 0, 0, 0]], dtype=np.float32)
N_USERS, N_ITEMS, C = 4, 5, 6


def dense_normalized() -> np.ndarray:
    """D^-1/2 A D^-1/2 of [[0, R], [R^T, 0]] by definition, isolated nodes left at zero."""
    a = np.zeros((N_USERS + N_ITEMS + 1,) * 2)
    a[:N_USERS, N_USERS:], a[N_USERS:, :N_USERS] = R, R.T
    deg = a.sum(1)
    inv = np.array([d ** -0.5 if d > 0 else 0.0 for d in deg])
    return inv[:, None] * a * inv[None, :]


def vectors(absent: tuple[int, ...] = (4,)) -> torch.Tensor:
    v = torch.randn(N_ITEMS + 1, C, generator=torch.Generator().manual_seed(1))
    v[[0, *absent]] = 0
    return v


def model(seed: int = 0, content: bool = False, **kw) -> LightGCN:
    torch.manual_seed(seed)
    cfg = {"n_users": N_USERS, "n_items": N_ITEMS, "dim": 4, "n_layers": 3, **kw}
    if cfg.get("fusion", "none") != "none":
        cfg["content_dim"] = C
    m = LightGCN(LightGCNConfig(**cfg))
    m.set_graph(sp.csr_matrix(R))
    if content or cfg.get("fusion", "none") != "none":
        m.set_content(vectors())
    return m


def ego(m: LightGCN) -> np.ndarray:
    return torch.cat([m.user_emb.weight, m.item_emb.weight]).detach().double().numpy()


def test_normalized_adjacency_matches_the_definition():
    a = normalized_adjacency(sp.csr_matrix(R)).to_dense().numpy()
    assert np.allclose(a, dense_normalized(), atol=1e-7)
    # user 0 (degree 2) - item 2 (degree 2: users 0 and 1): 1 / sqrt(2 * 2)
    assert a[0, N_USERS + 2] == pytest.approx(0.5)
    assert np.allclose(a, a.T)


@pytest.mark.parametrize("n_layers", [0, 1, 3])
def test_propagation_is_the_mean_of_adjacency_powers(n_layers):
    m = model(n_layers=n_layers)
    a = dense_normalized()
    expected = sum(np.linalg.matrix_power(a, k) @ ego(m) for k in range(n_layers + 1))
    expected /= n_layers + 1
    users, items = m.embeddings()
    got = torch.cat([users, items]).detach().numpy()
    assert np.allclose(got, expected, atol=1e-6)
    if n_layers == 0:  # no layer: plain MF embeddings
        assert np.array_equal(got, ego(m).astype(np.float32))
    # isolated nodes (user 3, item 5) keep ego / (K + 1): nothing reaches them
    assert np.allclose(got[3], ego(m)[3] / (n_layers + 1), atol=1e-7)


def test_symmetric_sparse_backward_equals_dense_autograd():
    adj = normalized_adjacency(sp.csr_matrix(R))
    x = torch.randn(N_USERS + N_ITEMS + 1, 3, dtype=torch.float32, requires_grad=True)
    w = torch.randn(N_USERS + N_ITEMS + 1, 3)
    (propagate(adj, x, 3) * w).sum().backward()
    dense = torch.tensor(dense_normalized(), dtype=torch.float32)
    y = x.detach().clone().requires_grad_(True)
    acc, h = y, y
    for _ in range(3):
        h = dense @ h
        acc = acc + h
    (acc / 4 * w).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-6)


@pytest.mark.parametrize("fusion", ["none", "sum", "concat"])
def test_finite_loss_with_gradients_score_shape_and_pad(fusion):
    m = model(fusion=fusion)
    b = PairBatch(torch.tensor([0, 1, 2]), torch.tensor([1, 3, 4]), torch.tensor([5, 1, 2]))
    value = m.loss(b)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert m.item_emb.weight.grad[0].abs().sum() == 0  # PAD's row never learns
    m.eval()
    with torch.no_grad():
        s = m.score(PairBatch(torch.arange(N_USERS)))
    assert s.shape == (N_USERS, N_ITEMS + 1)
    assert (s[:, 0] == -math.inf).all() and torch.isfinite(s[:, 1:]).all()


def test_l2_is_on_the_batch_ego_embeddings():
    m = model(l2=0.0)
    b = PairBatch(torch.tensor([0, 2]), torch.tensor([1, 4]), torch.tensor([3, 5]))
    plain = m.loss(b)
    ego_sq = (m.user_emb.weight[[0, 2]].pow(2).sum() + m.item_emb.weight[[1, 4]].pow(2).sum()
              + m.item_emb.weight[[3, 5]].pow(2).sum())
    m.config.l2 = 0.1
    assert m.loss(b).item() == pytest.approx(plain.item() + 0.1 * ego_sq.item() / 4, rel=1e-5)


@pytest.mark.parametrize("loss", ["sampled", "infonce"])
def test_softmax_losses_are_cross_entropy_against_shared_negatives(monkeypatch, loss):
    m = model(loss=loss, n_negatives=3, temperature=0.5, l2=0.1)
    shared = torch.tensor([2, 4, 5])
    monkeypatch.setattr(losses, "uniform_negatives", lambda n_items, k, device: shared)
    b = PairBatch(torch.tensor([0, 2]), torch.tensor([1, 4]), None)  # no per-row negative needed
    users, items = (t.detach() for t in m.embeddings())
    if loss == "infonce":  # cosine similarities
        users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
    expected = 0.0
    for u, pos in zip([0, 2], [1, 4]):
        cands = [pos] + [i for i in shared.tolist() if i != pos]  # the row's own positive is masked
        logits = items[cands] @ users[u] / 0.5
        expected += -torch.log_softmax(logits, 0)[0].item() / 2
    ego_sq = m.user_emb.weight[[0, 2]].pow(2).sum() + m.item_emb.weight[[1, 4]].pow(2).sum()
    assert m.loss(b).item() == pytest.approx(expected + 0.1 * ego_sq.item() / 4, rel=1e-5)


def test_ccl_is_the_cosine_contrastive_loss_against_shared_negatives(monkeypatch):
    m = model(loss="ccl", n_negatives=3, margin=0.2, neg_weight=5.0, l2=0.1)
    shared = torch.tensor([2, 4, 5])
    monkeypatch.setattr(losses, "uniform_negatives", lambda n_items, k, device: shared)
    b = PairBatch(torch.tensor([0, 2]), torch.tensor([1, 4]), None)  # no per-row negative needed
    users, items = (F.normalize(t.detach(), dim=-1) for t in m.embeddings())
    expected = 0.0
    for u, pos in zip([0, 2], [1, 4]):
        hinge = [max(0.0, float(items[j] @ users[u]) - 0.2) if j != pos else 0.0  # hit: masked
                 for j in shared.tolist()]
        expected += ((1 - float(items[pos] @ users[u])) + 5.0 * sum(hinge) / 3) / 2
    ego_sq = m.user_emb.weight[[0, 2]].pow(2).sum() + m.item_emb.weight[[1, 4]].pow(2).sum()
    value = m.loss(b)
    assert value.item() == pytest.approx(expected + 0.1 * ego_sq.item() / 4, rel=1e-5)
    value.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_infonce_and_ccl_scores_are_cosines_and_bpr_scores_inner_products():
    for loss in ("bpr", "infonce", "ccl"):
        m = model(loss=loss).eval()
        users, items = (t.detach() for t in m.embeddings())
        if loss != "bpr":
            users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
        with torch.no_grad():
            s = m.score(PairBatch(torch.arange(N_USERS)))
        assert torch.allclose(s[:, 1:], (users @ items.T)[:, 1:], atol=1e-6), loss


def test_loss_options_fail_loudly():
    with pytest.raises(ConfigError, match="loss 'hinge' is not one of bpr, sampled, infonce, ccl"):
        model(loss="hinge")
    with pytest.raises(ConfigError, match="n_negatives >= 1 and temperature > 0"):
        model(loss="infonce", temperature=0.0)
    for bad in ({"margin": 1.0}, {"margin": -1.5}, {"neg_weight": -1.0}, {"n_negatives": 0}):
        with pytest.raises(ConfigError, match="loss 'ccl' needs n_negatives >= 1, -1 <= margin"):
            model(loss="ccl", **bad)
    for loss in ("sampled", "infonce", "ccl"):  # their negatives are shared uniform draws
        with pytest.raises(ConfigError, match="negatives = 'popularity' would be ignored"):
            make_config("lightgcn", [f"params.loss={loss}", "params.negatives=popularity"])
    model(loss="bpr", margin=5.0)  # ccl's knobs are not read by the other losses
    with pytest.raises(ValueError, match="pos and neg"):
        model().loss(PairBatch(torch.tensor([0]), torch.tensor([1]), None))  # BPR needs neg


@pytest.mark.parametrize("fusion", ["none", "concat"])
def test_save_load_gives_identical_scores(tmp_path, fusion):
    m = model(fusion=fusion).eval()
    users = PairBatch(torch.arange(N_USERS))
    with torch.no_grad():
        s = m.score(users)
    torch.save(m.state_dict(), tmp_path / "m.pt")
    cfg = {"n_users": N_USERS, "n_items": N_ITEMS, "dim": 4, "n_layers": 3, "fusion": fusion,
           "content_dim": C if fusion != "none" else 0}
    other = LightGCN(LightGCNConfig(**cfg))
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    other.set_graph(sp.csr_matrix(R))  # the graph is data: rebuilt from the split, not saved
    with torch.no_grad():
        assert torch.equal(other.eval().score(users), s)


def test_evaluation_propagates_once_and_notices_weight_updates(monkeypatch):
    calls = []
    real = lg.propagate
    monkeypatch.setattr(lg, "propagate", lambda *a: calls.append(1) or real(*a))
    m = model()
    with torch.no_grad():
        first = m.score(PairBatch(torch.tensor([0, 1])))
        m.score(PairBatch(torch.tensor([2])))
        m.score(PairBatch(torch.tensor([3])))
    assert len(calls) == 1  # one propagation for every chunk of the evaluation
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.loss(PairBatch(torch.tensor([0]), torch.tensor([1]), torch.tensor([5]))).backward()
    opt.step()
    with torch.no_grad():
        after = m.score(PairBatch(torch.tensor([0, 1])))
    assert len(calls) == 3  # the training step's own propagation, then a fresh one
    assert not torch.equal(first, after)


def test_missing_graph_and_wrong_shapes_are_clear_errors():
    m = LightGCN(LightGCNConfig(n_users=N_USERS, n_items=N_ITEMS, dim=4))
    with pytest.raises(ValueError, match="set_graph"):
        m.score(PairBatch(torch.tensor([0])))
    with pytest.raises(ValueError, match=r"expected \(n_users, n_items \+ 1\) = \(4, 6\)"):
        m.set_graph(sp.csr_matrix(R[:, 1:]))
    with pytest.raises(ValueError, match="column 0"):
        m.set_graph(sp.csr_matrix(np.eye(N_USERS, N_ITEMS + 1, dtype=np.float32)))
    with pytest.raises(ValueError, match="fusion='none' takes no text"):
        m.set_content(vectors())
    with pytest.raises(ValueError, match="fusion needs item_semantic or user_semantic"):
        LightGCNConfig(fusion="sum", item_semantic=False, user_semantic=False).validate()


# ---- semantic fusion ----------------------------------------------------------------------------
@pytest.mark.parametrize("fusion,stage,width", [("sum", "before", 4), ("sum", "after", 4),
                                                ("concat", "before", 8), ("concat", "after", 8)])
def test_fusion_shapes_and_the_vectors_are_used(fusion, stage, width):
    m = model(fusion=fusion, fusion_stage=stage).eval()
    users, items = m.embeddings()
    assert users.shape == (N_USERS, width) and items.shape == (N_ITEMS + 1, width)
    with torch.no_grad():
        before = m.score(PairBatch(torch.arange(N_USERS)))
        v = vectors()
        v[1] *= -3  # change one item's text: its scores (and, via user means, others') move
        m.set_content(v)
        after = m.score(PairBatch(torch.arange(N_USERS)))
    assert before.shape == (N_USERS, N_ITEMS + 1)
    assert not torch.allclose(before[:, 1], after[:, 1])


def test_fusion_after_adds_the_projected_text_to_the_propagated_ids():
    m = model(fusion="sum", fusion_stage="after")
    plain = model(fusion="none")  # same seed: same ID embeddings
    assert torch.equal(m.user_emb.weight, plain.user_emb.weight)
    users, items = m.embeddings()
    ids_u, ids_i = plain.embeddings()
    t = m.text
    expected_items = ids_i + t.proj(t.vectors) * t.present[:, None]
    assert torch.allclose(items, expected_items, atol=1e-6)
    # item 4 has no vector (and PAD none): the documented fallback is the ID embedding alone
    assert torch.allclose(items[4], ids_i[4]) and torch.allclose(items[0], ids_i[0])
    # users: the projected mean of their items' vectors, over the items that have one
    v = vectors()
    means = torch.stack([v[[1, 2]].mean(0), v[[2, 3]].mean(0), v[[1]].mean(0)])  # user 2: 4 lacks
    assert torch.allclose(users[:3], ids_u[:3] + t.proj(means), atol=1e-6)
    assert torch.allclose(users[3], ids_u[3])  # no training item at all: ID alone


def test_user_semantic_off_leaves_users_without_text():
    m = model(fusion="concat", fusion_stage="after", user_semantic=False)
    users, items = m.embeddings()
    assert (users[:, 4:] == 0).all() and items[1:4, 4:].abs().sum() > 0
    m = model(fusion="sum", fusion_stage="after", item_semantic=False)
    _, items = m.embeddings()
    assert torch.allclose(items, model(fusion="none").embeddings()[1])


# ---- through genrec.runs ------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["bpr", "sampled", "infonce", "ccl"])
def test_runs_train_learns_the_planted_blocks_then_reloads(tmp_path, loss):
    block_dataset().save(tmp_path / "blocks")
    sets = [f"data.name={tmp_path / 'blocks'}", "data.split=ratio", "params.dim=16",
            "params.n_layers=2", "params.l2=0.0", "train.lr=0.02", "train.batch_size=128",
            "train.epochs=15", "train.clip_norm=0", "train.threads=1", "train.metric=HR@10",
            "eval.ks=[10]", f"params.loss={loss}", "params.n_negatives=16"]
    run = train(make_config("lightgcn", sets), tmp_path / "run")
    test = run.info["metrics"]["test"]
    assert test["HR@10"] > 0.9, test  # chance: ~0.1
    again = load_run(tmp_path / "run")  # the graph is rebuilt from the split on load
    assert evaluate_run(again, "test").metrics["HR@10"] == pytest.approx(test["HR@10"])


def test_runs_counts_items_without_a_text_vector_and_reloads_without_the_file(tmp_path):
    ds = block_dataset(n_blocks=2, users_per_block=8)
    ds.save(tmp_path / "blocks")
    ids = [str(i) for i in ds.item_ids[1:]]
    keep = ids[5:]  # the first 5 items get no vector
    save_vectors(ds, "enc", keep, np.random.default_rng(0).normal(size=(len(keep), C)), {})
    sets = [f"data.name={tmp_path / 'blocks'}", "data.split=ratio", "params.dim=8",
            "params.fusion=sum", "params.fusion_stage=before", "params.content=enc",
            "train.epochs=2", "train.batch_size=64", "train.threads=1", "eval.ks=[10]"]
    run = train(make_config("lightgcn", sets), tmp_path / "run")
    content = run.info["content"]
    assert content["n_without_vector"] == 5 and content["dim"] == C
    assert "id embedding alone" in content["fallback"]
    (tmp_path / "blocks" / "item_vectors" / "enc.parquet").unlink()
    again = load_run(tmp_path / "run")
    assert evaluate_run(again, "test").metrics["NDCG@10"] == pytest.approx(
        run.info["metrics"]["test"]["NDCG@10"])


def test_svd_init_starts_from_the_graphs_leading_singular_vectors():
    m = model(init="svd", dim=2)
    batch = PairBatch(torch.tensor([0, 1]), torch.tensor([1, 3]), torch.tensor([4, 1]))
    m.loss(batch)  # the first training step initialises (a loaded model never does)
    inv_u = np.where(R.sum(1) > 0, R.sum(1), 1) ** -0.5
    inv_i = np.where(R.sum(0) > 0, R.sum(0), 1) ** -0.5
    rn = inv_u[:, None] * R * inv_i[None, :]
    p, s, qt = np.linalg.svd(rn)
    best2 = (p[:, :2] * s[:2]) @ qt[:2]  # the rank-2 approximation P S Q^T
    u, i = m.user_emb.weight.detach().double(), m.item_emb.weight.detach().double()
    np.testing.assert_allclose((u @ i.T).numpy(), best2, atol=1e-5)
    assert torch.all(i[0] == 0)  # PAD
    loaded = model(init="svd", dim=2, seed=7)
    loaded.load_state_dict(model(dim=2, seed=3).state_dict())
    before = loaded.user_emb.weight.detach().clone()
    loaded.loss(batch)
    assert torch.equal(loaded.user_emb.weight.detach(), before)  # weights loaded: kept
    with pytest.raises(ConfigError, match="init = 'svd' takes dim = 4 singular vectors"):
        model(init="svd", dim=4)
