"""Pair models (BPR, LightGCN: ``kind = "pairs"``) through the HTTP API (TestClient).

A known user is scored by user index, exactly as ``genrec.runs`` scores them; an explicit history
is folded in (the mean of the history's final item vectors), checked against a plain numpy
computation from the item vectors ``score`` itself uses: LightGCN's after propagation and
concat text fusion, never its ``item_emb``. The shop (see conftest.py): even users buy red
make-up sku01..sku20, odd users blue bath products sku21..sku40.

BPR trains on a global 80:20 temporal split (timestamps grow with the user number), so users
u48..u59 have no training interaction: the model has no vector for them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from genrec.data.batches import PairBatch
from genrec.data.dataset import Dataset
from genrec.runs import make_config, recommend, train
from genrec.serving.app import create_app
from genrec.serving.bundle import load_bundle

DIM = 8
FAST = ["eval.ks=[5,10]", f"params.dim={DIM}", "train.epochs=2", "train.lr=0.05",
        "train.batch_size=32", "train.threads=1"]


def sku(i: int) -> str:
    return f"sku{i:02d}"


@pytest.fixture(scope="module")
def bpr_bundle(shop_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bpr"
    # no validation part: a validation of users the model never saw would keep epoch 0's weights
    train(make_config("bpr", [f"data.name={shop_dir}", "data.split=temporal",
                              "data.ratios=[0.8,0.0,0.2]", *FAST]), out)
    return load_bundle(out, search="tfidf")


@pytest.fixture(scope="module")
def lightgcn_bundle(shop_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ids = [str(i) for i in Dataset.load(shop_dir).item_ids[1:]]
    # text vectors keyed by raw id: a colour direction plus noise
    colour = np.array([[1.0, 0.0] if int(i[3:]) <= 20 else [0.0, 1.0] for i in ids])
    noise = np.random.default_rng(0).normal(scale=0.3, size=(len(ids), 4))
    np.savez(root / "text.npz", item_id=np.array(ids), vector=np.hstack([colour, noise]))
    train(make_config("lightgcn", [f"data.name={shop_dir}", "params.n_layers=2",
                                   "params.fusion=concat", "params.fusion_stage=before",
                                   f"params.content={root / 'text.npz'}", *FAST]), root / "lgcn")
    return load_bundle(root / "lgcn", search="tfidf")


@pytest.fixture(params=["bpr", "lightgcn"])
def bundle(request):
    return request.getfixturevalue(f"{request.param}_bundle")


def final_items(model) -> np.ndarray:
    """(N + 1, D') item vectors recomputed from the weights, without the model's scoring cache."""
    with torch.no_grad():
        table = model.embeddings()[1] if hasattr(model, "embeddings") else model.item_emb.weight
    return table.detach().double().numpy()


def top(scores: np.ndarray, masked: list[int], k: int) -> list[int]:
    scores = scores.copy()
    scores[[0, *masked]] = -np.inf
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -scores))[:k]]


def post(bundle, **body) -> dict:
    with TestClient(create_app(bundle=bundle)) as c:
        r = c.post("/recommend", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_known_user_gets_what_runs_scores_for_them_by_user_index(bundle):
    body = post(bundle, user_id="u01", k=5)
    expected = recommend(bundle.run, "u01", k=5)
    assert [it["item_id"] for it in body["items"]] == [it["item_id"] for it in expected["items"]]
    assert [it["score"] for it in body["items"]] == pytest.approx(
        [it["score"] for it in expected["items"]], rel=1e-5)
    assert body["model"] == bundle.model_name and body["fallback"] is None
    with torch.no_grad():
        direct = bundle.run.model.score(PairBatch(torch.tensor([1]))).double().numpy()[0]
    scores = bundle.score_user(1)
    assert scores.shape == (41,) and scores[0] == -np.inf
    assert np.allclose(scores[1:], direct[1:])
    seen = {sku(i) for i in bundle.known[1].indices}  # train, valid and test items
    assert seen.isdisjoint(it["item_id"] for it in post(bundle, user_id="u01", k=40)["items"])


def test_an_explicit_history_is_folded_in_from_the_final_item_vectors(bundle):
    history = [1, 5, 9, 5]  # a repeat counts once
    body = post(bundle, history=[sku(i) for i in history], k=6, exclude=[sku(2)])
    table = final_items(bundle.run.model)
    scores = table @ table[[1, 5, 9]].mean(0)
    expected = top(scores, [1, 5, 9, 2], 6)
    assert [it["item_id"] for it in body["items"]] == [sku(i) for i in expected]
    assert [it["score"] for it in body["items"]] == pytest.approx(scores[expected], rel=1e-5)
    assert body["fallback"] is None
    direct = bundle.score_history(np.array(history))
    assert direct[0] == -np.inf and np.allclose(direct[1:], scores[1:])
    # even after two epochs, a red history gets red items
    assert sum(int(it["item_id"][3:]) <= 20 for it in body["items"]) >= 5


def test_lightgcn_folds_in_propagated_fused_vectors_not_its_id_table(lightgcn_bundle):
    model = lightgcn_bundle.run.model
    table = final_items(model)
    assert table.shape == (41, 2 * DIM)  # concat fusion: [propagated id; propagated text]
    with torch.no_grad():  # score() multiplies user vectors by exactly these item vectors
        users = model.embeddings()[0].double().numpy()
        assert np.allclose(model.score(PairBatch(torch.tensor([3])))[0, 1:].numpy(),
                           (users[3] @ table.T)[1:], atol=1e-5)


def test_similar_is_cosine_over_the_final_item_vectors(bundle):
    table = final_items(bundle.run.model)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True).clip(1e-12)
    cos = unit @ unit[3]
    expected = top(cos, [3], 4)
    with TestClient(create_app(bundle=bundle)) as c:
        body = c.get(f"/similar/{sku(3)}", params={"k": 4}).json()
        health = c.get("/health").json()
    name = type(bundle.run.model).__name__
    assert body["source"] == health["similar"] == f"{name} item vectors as scored (cosine)"
    assert [it["item_id"] for it in body["items"]] == [sku(i) for i in expected]
    assert [it["score"] for it in body["items"]] == pytest.approx(cos[expected], rel=1e-5)


def test_a_user_the_model_never_trained_on_is_folded_in_from_their_known_items(bpr_bundle):
    u = 59  # all of u59's interactions are in the temporal test part
    assert bpr_bundle.run.split.train_matrix()[u].nnz == 0
    seen = [int(i) for i in bpr_bundle.known[u].indices]
    table = final_items(bpr_bundle.run.model)
    expected = top(table @ table[seen].mean(0), seen, 5)
    body = post(bpr_bundle, user_id="u59", k=5)
    assert [it["item_id"] for it in body["items"]] == [sku(i) for i in expected]
    assert body["fallback"] is None  # personalised
    cli = recommend(bpr_bundle.run, "u59", k=5)  # genrec recommend: the same recommend
    assert cli["fallback"] is None
    assert [it["item_id"] for it in cli["items"]] == [it["item_id"] for it in body["items"]]
    assert [it["score"] for it in cli["items"]] == pytest.approx(
        [it["score"] for it in body["items"]], rel=1e-6)
    by_history = post(bpr_bundle, history=[sku(i) for i in seen], k=5)["items"]
    assert by_history == body["items"]


def test_fold_in_rejects_histories_outside_the_catalogue(bundle):
    model = bundle.run.model
    for bad in ([], [0, 1], [41], [[1, 2]]):
        with pytest.raises(ValueError, match="score_history needs a non-empty 1-D history"):
            model.score_history(torch.tensor(bad, dtype=torch.int64))
