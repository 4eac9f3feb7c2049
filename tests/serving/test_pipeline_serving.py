"""`genrec serve PIPELINE_RUN`: a tiny pipeline run (EASE + ItemCF + popularity -> LightGBM ->
category re-rank) behind /recommend through FastAPI's TestClient: a known user gets the chain's
unseen candidates, the request's exclude list and the run's unavailable items are filtered, a
channel that fails is named in the answer, and the directory is recognised by its marker."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from genrec.config import from_dict
from genrec.pipeline import serve
from genrec.pipeline.ranking import PipelineConfig, train_pipeline
from genrec.serving.app import create_app
from genrec.serving.bundle import is_pipeline_run
from tests.pipeline.test_ranking import config, recall_runs  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def pipeline_run(recall_runs, tmp_path_factory):  # noqa: F811 - the imported fixture
    out = tmp_path_factory.mktemp("serve") / "pipe"
    cfg = config(recall_runs)
    cfg["rerank"] = {"method": "category", "max_per_category": 1, "unavailable": ["3"]}
    train_pipeline(from_dict(PipelineConfig, cfg), out)
    return out


def test_a_pipeline_run_serves_the_whole_chain(pipeline_run):
    assert is_pipeline_run(pipeline_run) and not is_pipeline_run(pipeline_run.parent)
    with TestClient(create_app(pipeline_run, search="tfidf")) as client:
        b = client.app.state.bundle
        chain = b.recommender
        assert b.model_name == "ease + itemcf + popularity -> lightgbm -> category"
        user = str(b.run.dataset.users["user_id"][0])
        u = b.user_index(user)
        answer = client.post("/recommend", json={"user_id": user, "k": 5}).json()
        ids = [it["item_id"] for it in answer["items"]]
        items = b.item_index(ids)
        assert len(ids) == 5 and answer["model"] == b.model_name and answer["reason"] is None
        assert not set(items) & set(b.recommender.seen(u))  # nothing the user already has
        listed = set()  # every served item is one a channel proposed
        for channel, k in chain.channels:
            got = channel.topk(np.array([u]), k)[0][0]
            listed |= set(got[got > 0].tolist())
        assert set(items) <= listed and "3" not in ids  # "3" is flagged unavailable

        again = client.post("/recommend", json={"user_id": user, "k": 4, "exclude": ids[:1]})
        assert [it["item_id"] for it in again.json()["items"]][0] != ids[0]

        history = client.post("/recommend", json={"history": ids[:2], "k": 3})
        assert history.status_code == 200 and len(history.json()["items"]) == 3  # first run's
        assert client.post("/recommend", json={"user_id": "nobody"}).status_code == 404


def test_a_failing_channel_is_named_in_the_answer(pipeline_run, monkeypatch):
    def broken(self, name, split):
        if name == "itemcf":
            return serve.failing_channel(name, OSError("weights unreadable"))
        return real(self, name, split)

    real = serve.ChainRecommender._channel
    monkeypatch.setattr(serve.ChainRecommender, "_channel", broken)
    chain = serve.ChainRecommender(pipeline_run)
    rec = chain.recommend(user=0, k=5)
    assert len(rec.items) == 5 and "itemcf" in rec.reason and "weights unreadable" in rec.reason
