"""/search through the text -> items system: a `genrec search train` run directory passed as the
bundle's search serves the generator + cross-encoder, mapped onto the served catalogue."""

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from genrec.data.dataset import Dataset
from genrec.pipeline.text_search import load_config, train_text_search
from genrec.serving.app import create_app
from genrec.serving.bundle import load_bundle
from genrec.serving.search import GenerateRankIndex, is_search_run
from tests.pipeline.test_text_search import CONFIG


@pytest.fixture(scope="module")
def search_run(shop_dir, tmp_path_factory):
    from genrec.features.store import save_vectors

    torch.set_num_threads(1)
    ds = Dataset.load(shop_dir)
    ids = ds.items.sort("item_idx")["item_id"].cast(str).to_list()
    # random item vectors stand in for MiniLM's: only the semantic-ID layout matters here
    vecs = np.random.default_rng(0).normal(size=(ds.n_items, 8)).astype(np.float32)
    save_vectors(ds, "vec", ids, vecs, {})
    out = tmp_path_factory.mktemp("search") / "run"
    train_text_search(load_config(str(shop_dir), CONFIG), out, progress=False, log=lambda m: None)
    return out


def test_search_uses_generate_and_rank_with_only_catalogue_items(ease_run, search_run):
    assert is_search_run(search_run) and not is_search_run(ease_run)
    bundle = load_bundle(ease_run, search=str(search_run))
    assert isinstance(bundle.search_index, GenerateRankIndex)
    assert bundle.search_index.method == "generator+ce" and bundle.search_index.note is None
    with TestClient(create_app(bundle=bundle)) as client:
        r = client.get("/search", params={"q": "red mascara", "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["encoder"] == "generate-and-rank" and body["note"] is None
        ids = [it["item_id"] for it in body["items"]]
        assert 1 <= len(ids) <= 5 and len(set(ids)) == len(ids)
        assert all(client.get(f"/items/{i}").status_code == 200 for i in ids)
        scores = [it["score"] for it in body["items"]]
        assert scores == sorted(scores, reverse=True)  # cross-encoder order
        # a script the MiniLM tokenizer cannot read still answers, with a note
        r = client.get("/search", params={"q": "ᚠᚢᚦᚨᚱᚲ ᚷᚹᚺ", "k": 3})
        assert r.status_code == 200 and r.json()["items"] and "unknown" in r.json()["note"]
        assert client.get("/search", params={"q": "   "}).status_code == 422
