"""The HTTP API in-process (TestClient): every endpoint, every bad-input case, known answers.

The shop (see conftest.py): even users buy red make-up sku01..sku20, odd users blue bath
products sku21..sku40; "Mascara" is in the titles of sku02, sku06, sku10, sku14, sku18.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import polars as pl
import pytest
import torch
import typer
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from genrec.data.batches import SeqBatch
from genrec.cli import serve
from genrec.data.dataset import DataError, Dataset
from genrec.features import embed_items, load_vectors, make_encoder, save_vectors
from genrec.retrieval.text import MiniLMIndex
from genrec.runs import load_run, make_config, recommend, train
from genrec.serving import app as app_module
from genrec.serving.app import MAX_BODY_BYTES, app_from_env, create_app
from genrec.serving.bundle import load_bundle
from genrec.serving.schemas import MAX_HISTORY, MAX_K


def sku(i: int) -> str:
    return f"sku{i:02d}"


def number(item_id: str) -> int:
    return int(item_id[3:])


@pytest.fixture(scope="module")
def ease_bundle(ease_run):
    return load_bundle(ease_run, search="tfidf")


@pytest.fixture
def client(ease_bundle):
    with TestClient(create_app(bundle=ease_bundle)) as c:
        yield c


def post(client, **body):
    return client.post("/recommend", json=body)


def counts(shop_dir) -> dict[str, int]:
    """Distinct users per raw item id, straight from the stored interactions."""
    ds = Dataset.load(shop_dir)
    per_item = ds.interactions.group_by("item_idx").agg(pl.col("user_idx").n_unique().alias("n"))
    ids = ds.item_ids
    return {ids[i]: n for i, n in per_item.iter_rows()}


# ---- lifespan, health, OpenAPI, page -------------------------------------------------------
def test_the_lifespan_loads_the_run_directory_and_health_says_what_is_loaded(ease_run):
    app = create_app(ease_run, search="tfidf")
    assert app.state.bundle is None  # nothing is loaded before the server starts
    with TestClient(app) as c:
        health = c.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "ease" and health["dataset"] == "shop"
    assert (health["n_users"], health["n_items"]) == (60, 40)
    assert health["search"] == "tfidf" and health["similar"] == "EASE item-item weights"
    assert health["search_vectors"] == "item texts, fitted at load"


def test_health_names_a_known_user_and_the_most_popular_title_for_the_page(client, shop_dir):
    health = client.get("/health").json()
    assert health["example_user_id"] == "u00"
    pop = counts(shop_dir)
    top = max(pop, key=lambda i: (pop[i], -number(i)))  # most users, ties to the lower id
    assert health["example_title"] == client.get(f"/items/{top}").json()["title"]


def test_start_up_logs_what_it_loads_and_when_it_is_ready(ease_run):
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("uvicorn.error")  # the log uvicorn prints at start-up
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with TestClient(create_app(ease_run, search="tfidf")):
            pass
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [r.getMessage() for r in records]
    assert lines[0].startswith(f"loading {ease_run}: model, dataset, catalogue and search index")
    assert lines[-1].startswith("ready in ") and "ease on shop, 60 users, 40 items" in lines[-1]
    assert "search: tfidf" in lines[-1]


def test_openapi_lists_every_endpoint_and_the_page_is_served_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/recommend", "/similar/{item_id}", "/search", "/items/{item_id}", "/health",
            "/metrics"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == MAX_K
    page = client.get("/")
    assert page.status_code == 200 and 'id="search-form"' in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace('http-equiv', '')  # no CDN: everything is local
    assert 'rel="icon" href="data:,"' in page.text  # no request for /favicon.ico
    # history is an array: its limit is maxItems, not maxLength
    history = spec["components"]["schemas"]["RecommendRequest"]["properties"]["history"]
    assert history["type"] == "array" and history["maxItems"] == MAX_HISTORY
    assert "maxLength" not in history


def test_docs_is_swagger_ui_served_from_this_machine(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    assert "cdn" not in docs.text and "https://" not in docs.text  # works with no network
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200


def test_docs_without_the_swagger_package_lists_the_routes(ease_bundle, monkeypatch):
    monkeypatch.setattr(app_module, "FastAPIOffline", None)
    with TestClient(create_app(bundle=ease_bundle)) as c:
        docs = c.get("/docs")
    assert docs.status_code == 200 and "<code>POST /recommend</code> Recommend" in docs.text
    assert "/openapi.json" in docs.text


# ---- /recommend ------------------------------------------------------------------------------
def test_a_known_user_gets_exactly_what_the_library_recommends(client, ease_run):
    body = post(client, user_id="u00", k=5).json()
    expected = recommend(load_run(ease_run), "u00", k=5)
    assert [it["item_id"] for it in body["items"]] == [it["item_id"] for it in expected["items"]]
    assert [it["score"] for it in body["items"]] == pytest.approx(
        [it["score"] for it in expected["items"]], rel=1e-6)
    assert body["model"] == "ease" and body["fallback"] is None and body["latency_ms"] > 0


def test_an_explicit_history_equals_the_same_users_history(client, ease_bundle):
    seen = [sku(i) for i in ease_bundle.known[0].indices]  # everything user u00 did
    by_user = post(client, user_id="u00", k=8).json()["items"]
    by_history = post(client, history=seen, k=8).json()["items"]
    assert by_history == by_user


def test_a_red_history_gets_red_items_never_the_history_and_never_the_excluded(client):
    history = [sku(1), sku(5), sku(9)]
    first = post(client, history=history, k=5).json()["items"]
    got = [number(it["item_id"]) for it in first]
    assert len(got) == 5 and all(i <= 20 for i in got) and not {1, 5, 9} & set(got)
    assert [it["title"] for it in first][0].startswith("Red ")
    # excluding the top item moves everything else up by one
    second = post(client, history=history, k=5, exclude=[first[0]["item_id"]]).json()["items"]
    assert [it["item_id"] for it in second[:4]] == [it["item_id"] for it in first[1:]]
    assert first[0]["item_id"] not in {it["item_id"] for it in second}


def test_k_beyond_the_catalogue_returns_every_unseen_item(client):
    items = post(client, history=[sku(1), sku(2)], k=MAX_K).json()["items"]
    assert len(items) == 38 and {it["item_id"] for it in items}.isdisjoint({sku(1), sku(2)})
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)


def test_an_empty_history_gets_the_most_popular_items_flagged(client, shop_dir):
    body = post(client, history=[], k=5, exclude=[sku(15)]).json()
    pop = counts(shop_dir)
    # most users first, ties to the lower id; sku15 excluded
    expected = sorted((i for i in pop if i != sku(15)), key=lambda i: (-pop[i], i))[:5]
    assert [it["item_id"] for it in body["items"]] == expected
    assert [it["score"] for it in body["items"]] == [pop[i] for i in expected]
    assert body["fallback"] == "popular" and body["reason"] == "empty history"


def test_an_unknown_user_is_a_404_unless_the_popular_fallback_is_asked_for(client):
    r = post(client, user_id="ghost")
    assert r.status_code == 404 and "unknown user 'ghost'" in r.json()["detail"]
    body = post(client, user_id="ghost", fallback="popular", k=3).json()
    assert body["fallback"] == "popular" and body["reason"] == "unknown user 'ghost'"
    assert len(body["items"]) == 3


def test_ids_sent_as_json_integers_are_read_as_their_text(client):
    # MovieLens ids are numbers: {"user_id": 1} means user "1", not a type error
    r = post(client, user_id=7)
    assert r.status_code == 404 and "unknown user '7'" in r.json()["detail"]
    r = post(client, history=[50, "sku01"], exclude=[181])
    assert r.status_code == 422 and r.json()["unknown_item_ids"] == ["50", "181"]
    # one error per bad id, not one per member of a union
    r = post(client, user_id=1.5)
    assert r.status_code == 422 and [e["loc"] for e in r.json()["detail"]] == [["body", "user_id"]]


def test_unknown_item_ids_are_all_listed_in_one_422(client):
    r = post(client, history=[sku(1), "nope", "nope", "gone"], exclude=["missing", sku(2)])
    assert r.status_code == 422
    assert r.json()["unknown_item_ids"] == ["nope", "gone", "missing"]
    assert "nope" in r.json()["detail"]


@pytest.mark.parametrize("body", [
    {"history": [sku(1)], "k": 0},
    {"history": [sku(1)], "k": MAX_K + 1},
    {"history": [sku(1)], "k": "ten"},
    {"history": [sku(1)], "k": True},                    # a JSON bool is not a count
    {"user_id": True},
    {"history": [sku(1), None]},
    {"user_id": "x" * 201},
    {},                                                  # neither user nor history
    {"user_id": "u00", "history": [sku(1)]},             # both
    {"history": [sku(1)], "colour": "red"},              # unknown field
    {"history": [sku(1)] * (MAX_HISTORY + 1)},
    {"history": sku(1)},                                 # not a list
    {"user_id": "u00", "fallback": "random"},
])
def test_out_of_range_or_malformed_requests_are_422(client, body):
    assert post(client, **body).status_code == 422


def test_oversized_bodies_are_rejected_with_413_whether_or_not_they_declare_a_length(client):
    big = json.dumps({"history": ["x" * 100] * 3000}).encode()
    assert len(big) > MAX_BODY_BYTES
    r = client.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    chunks = (big[i:i + 8192] for i in range(0, len(big), 8192))  # chunked: no Content-Length
    r = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"]
    assert client.post("/recommend", content=b"{", headers={"content-type": "application/json"}
                       ).status_code == 422  # small but broken JSON is still a validation error


# ---- /similar -----------------------------------------------------------------------------
def test_similar_for_ease_follows_the_weight_row(client, ease_bundle):
    body = client.get(f"/similar/{sku(3)}", params={"k": 4}).json()
    row = ease_bundle.run.model.weights[3 - 1].astype(np.float64)  # B[3, j] over items 1..N
    row[3 - 1] = -np.inf
    expected = [sku(j + 1) for j in np.lexsort((np.arange(40), -row))[:4]]
    assert [it["item_id"] for it in body["items"]] == expected
    assert body["item"] == {"item_id": sku(3), "title": "Red Blush 3",
                            "image": "/items/sku03/image"}
    assert all(number(it["item_id"]) <= 20 for it in body["items"])


def test_similar_without_model_relations_is_cooccurrence_cosine(popularity_run, shop_dir):
    ds = Dataset.load(shop_dir)
    users = {i: set() for i in range(1, 41)}
    for u, i in ds.interactions.select("user_idx", "item_idx").iter_rows():
        users[i].add(u)
    cos = {j: len(users[1] & users[j]) / math.sqrt(len(users[1]) * len(users[j]))
           for j in range(2, 41) if users[1] & users[j]}
    expected = sorted(cos, key=lambda j: (-cos[j], j))[:5]
    with TestClient(create_app(popularity_run, search="tfidf")) as c:
        body = c.get(f"/similar/{sku(1)}", params={"k": 5}).json()
    assert body["source"] == "item co-occurrence cosine (known interactions)"
    assert [number(it["item_id"]) for it in body["items"]] == expected
    assert [it["score"] for it in body["items"]] == pytest.approx([cos[j] for j in expected])


def test_similar_bad_input(client):
    assert client.get("/similar/nope").status_code == 404
    assert client.get(f"/similar/{sku(1)}", params={"k": 0}).status_code == 422
    assert client.get(f"/similar/{sku(1)}", params={"k": MAX_K + 1}).status_code == 422


# ---- /search, /items ------------------------------------------------------------------------
def test_search_finds_exactly_the_items_that_name_the_word(client):
    body = client.get("/search", params={"q": "mascara"}).json()
    assert {it["item_id"] for it in body["items"]} == {sku(i) for i in (2, 6, 10, 14, 18)}
    assert body["encoder"] == "tfidf" and body["query"] == "mascara"
    assert client.get("/search", params={"q": "blue lotion", "k": 1}).json()["items"][0][
        "title"].startswith("Blue Lotion")
    assert client.get("/search", params={"q": "zzzz"}).json()["items"] == []


@pytest.mark.parametrize("params", [{"q": ""}, {"q": "   \t"}, {}, {"q": "mascara", "k": 0}])
def test_search_bad_input_is_422(client, params):
    assert client.get("/search", params=params).status_code == 422


def test_search_cuts_a_long_query_with_a_note(client):
    r = client.get("/search", params={"q": "mascara " + "x" * 2500})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["query"]) == 2000 and "cut to its first 2,000 of 2,508" in body["note"]
    assert body["items"]  # the words before the cut still match
    assert client.get("/search", params={"q": "mascara"}).json()["note"] is None


def test_item_details_popularity_and_local_image(client, shop_dir):
    body = client.get(f"/items/{sku(2)}").json()
    assert body == {"item_id": sku(2), "title": "Red Mascara 2",
                    "popularity": counts(shop_dir)[sku(2)], "image": "/items/sku02/image",
                    "details": {"categories": "Makeup"}}
    image = client.get(body["image"])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert image.headers["content-type"] == "image/png"
    assert client.get(f"/items/{sku(4)}").json()["image"] is None
    assert client.get(f"/items/{sku(4)}/image").status_code == 404
    assert client.get("/items/nope").status_code == 404


def test_minilm_search_matches_meaning_not_words_and_reuses_item_vectors(ease_run, shop_dir,
                                                                          monkeypatch):
    pytest.importorskip("sentence_transformers")
    with TestClient(create_app(ease_run, search="minilm")) as c:
        body = c.get("/search", params={"q": "hair wash", "k": 5}).json()
    # no title says "hair" or "wash" (TF-IDF finds nothing); the bi-encoder finds the shampoos
    assert body["encoder"] == "minilm"
    assert [it["title"].split()[1] for it in body["items"]] == ["Shampoo"] * 5
    assert (ease_run / "search_minilm.npy").is_file()
    # a restart reads the cached item vectors: only the query is encoded
    encoded: list[int] = []
    encode = MiniLMIndex._encode
    monkeypatch.setattr(MiniLMIndex, "_encode",
                        lambda self, texts, **kw: encoded.append(len(texts)) or encode(self, texts))
    bundle = load_bundle(ease_run, search="minilm")
    assert encoded == [] and bundle.search_index.source.startswith("item texts encoded")
    hits = bundle.search("hair wash", 5)[0].tolist()
    assert hits == [number(it["item_id"]) for it in body["items"]]
    assert encoded == [1]
    # vectors that `genrec embed items` stored beside the dataset win over encoding; an item
    # without a stored vector (a zero row) is never returned
    ds = Dataset.load(shop_dir)
    embed_items(ds, make_encoder("minilm"), cache=False)
    matrix, present, meta = load_vectors(ds, "minilm")
    keep = [i for i in range(1, 41) if i != 21]  # drop sku21, the best "hair wash" match
    save_vectors(ds, "minilm", [sku(i) for i in keep], matrix[keep], meta)
    encoded.clear()
    bundle = load_bundle(ease_run, search="minilm")
    assert encoded == [] and bundle.search_index.source.startswith("item_vectors/minilm.parquet")
    items, _ = bundle.search("hair wash", 40)
    assert 21 not in items and len(items) == 39
    assert [bundle.titles[i].split()[1] for i in items[:4]] == ["Shampoo"] * 4


# ---- /metrics --------------------------------------------------------------------------------
def test_metrics_count_requests_per_route_and_status_with_histograms(client):
    for _ in range(3):
        post(client, history=[sku(1)])
    post(client, history=["nope"])
    client.get(f"/similar/{sku(1)}")
    client.get("/similar/nope")
    text = client.get("/metrics").text
    assert 'genrec_requests_total{method="POST",route="/recommend",status="200"} 3' in text
    assert 'genrec_requests_total{method="POST",route="/recommend",status="422"} 1' in text
    assert 'genrec_requests_total{method="GET",route="/similar/{item_id}",status="404"} 1' in text
    assert 'genrec_request_seconds_bucket{method="POST",route="/recommend",le="+Inf"} 4' in text
    assert 'genrec_request_seconds_count{method="GET",route="/similar/{item_id}"} 2' in text
    buckets = [int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('genrec_request_seconds_bucket{method="POST",route="/recommend"')]
    assert buckets == sorted(buckets) and len(buckets) == 13  # cumulative, 12 bounds + Inf


# ---- sequence models --------------------------------------------------------------------------
def test_sequence_model_scores_an_explicit_history_as_a_left_padded_batch(sasrec_run):
    bundle = load_bundle(sasrec_run, search="tfidf")
    model = bundle.run.model
    history = np.array([3, 7, 1, 11, 5, 9, 13, 15, 17, 19, 2, 4])  # longer than max_len = 8
    with torch.no_grad():
        batch = SeqBatch(torch.tensor([0]), torch.from_numpy(history[None, -8:]))  # (1, L=8)
        direct = model.score(batch).double()
    assert np.allclose(bundle.score_history(history), direct.numpy()[0])
    assert np.allclose(bundle.score_history(history), bundle.score_history(history[-8:]))
    with TestClient(create_app(bundle=bundle)) as c:
        body = c.post("/recommend", json={"user_id": "u01", "k": 5}).json()
        similar = c.get(f"/similar/{sku(1)}", params={"k": 3}).json()
    expected = recommend(bundle.run, "u01", k=5)
    assert [it["item_id"] for it in body["items"]] == [it["item_id"] for it in expected["items"]]
    assert body["model"] == "sasrec"
    assert similar["source"] == "SASRec item embeddings (cosine)" and len(similar["items"]) == 3


# ---- the command ------------------------------------------------------------------------------
def test_serve_command_hands_uvicorn_the_app_for_the_run(ease_run, monkeypatch):
    served, limited = {}, []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    # thread limits are process-wide: record them instead of changing this test process
    monkeypatch.setattr("genrec.serving.bundle._limit_threads", limited.append)
    cli = typer.Typer()
    serve.register(cli)
    cli.command("other")(lambda: None)  # two commands: typer then dispatches by name
    args = ["serve", str(ease_run), "--port", "8123", "--search", "tfidf"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    with TestClient(served["app"]) as c:
        assert c.get("/health").json()["search"] == "tfidf"
    assert limited == [1]
    result = CliRunner().invoke(cli, ["serve", str(ease_run.parent / "nope")])
    assert isinstance(result.exception, DataError) and "not a genrec run directory" in str(
        result.exception)


def test_app_from_env_serves_the_run_the_environment_names(ease_run, monkeypatch):
    monkeypatch.delenv("GENREC_SERVE_RUN_DIR", raising=False)
    with pytest.raises(ValueError, match="GENREC_SERVE_RUN_DIR"):
        app_from_env()
    monkeypatch.setenv("GENREC_SERVE_RUN_DIR", str(ease_run))
    monkeypatch.setenv("GENREC_SERVE_SEARCH", "tfidf")
    with TestClient(app_from_env()) as c:
        assert c.get("/health").json()["model"] == "ease"


# ---- real data ---------------------------------------------------------------------------------
@pytest.mark.integration
def test_itemcf_on_real_ml100k(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_DATA", str(shared_data("ml-100k").parent))
    train(make_config("itemcf", ["data.name=ml-100k", "eval.ks=[10]"]), tmp_path / "run")
    with TestClient(create_app(tmp_path / "run", search="tfidf")) as c:
        health = c.get("/health").json()
        hits = c.get("/search", params={"q": "star wars", "k": 3}).json()["items"]
        star_wars = hits[0]["item_id"]
        similar = c.get(f"/similar/{star_wars}", params={"k": 5}).json()["items"]
        recs = c.post("/recommend", json={"user_id": "1", "k": 10}).json()
        by_number = c.post("/recommend", json={"user_id": 1, "k": 10}).json()
        numeric_history = c.post("/recommend", json={"history": [50, 181], "k": 3})
    assert (health["n_users"], health["n_items"]) == (943, 1682)  # ml-100k SOURCE.md counts
    assert health["similar"] == "ItemCF top-k cosine neighbours"
    assert hits[0]["title"] == "Star Wars (1977)"
    assert "Return of the Jedi (1983)" in [it["title"] for it in similar]
    expected = recommend(load_run(tmp_path / "run"), "1", k=10)
    assert [it["item_id"] for it in recs["items"]] == [it["item_id"] for it in expected["items"]]
    assert by_number == {**recs, "latency_ms": by_number["latency_ms"]}
    assert numeric_history.status_code == 200 and len(numeric_history.json()["items"]) == 3


def test_search_on_a_catalogue_without_text_is_refused_not_matched_against_ids(tmp_path,
                                                                              monkeypatch):
    from genrec.data.prepare import prepare

    monkeypatch.setenv("GENREC_HOME", str(tmp_path / "home"))
    rows = ["user_id,item_id"] + [f"u{u},{100 + (u + t) % 9}" for u in range(12) for t in range(4)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    prepare("ids_only", path=tmp_path / "log.csv", mapping={"user": "user_id", "item": "item_id"})
    train(make_config("popularity", ["data.name=ids_only"]), tmp_path / "run")
    with TestClient(create_app(tmp_path / "run", search="auto")) as c:
        assert c.get("/health").json()["search"] == "none"
        r = c.get("/search", params={"q": "101"})
        assert r.status_code == 404 and "no item text" in r.json()["detail"]
        assert c.post("/recommend", json={"user_id": "u1", "k": 3}).status_code == 200
