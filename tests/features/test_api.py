"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 with injected faults."""

from __future__ import annotations

import email.utils
import random
import time
from collections import Counter

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from genrec.features import EncoderOptions, embed_items, load_vectors, make_encoder
from genrec.features._http import (APIError, KVCache, RetryPolicy, backoff_delay, retry_after,
                                   run_pool)
from genrec.features.api import APIEncoder, embeddings_url
from tests.features import FakeAPI, tiny_dataset

FAST = RetryPolicy(max_retries=6, base_delay=0.01, max_delay=0.05, timeout=5.0)
TEXTS = [f"product number {i}: a thing" for i in range(30)]


def encoder(server: FakeAPI, policy: RetryPolicy = FAST, **kw) -> APIEncoder:
    kw = {"batch_size": 4, "concurrency": 3, **kw}
    return APIEncoder(server.url, model="fake-embed", api_key_env="GENREC_TEST_KEY",
                      policy=policy, **kw)


@pytest.fixture
def ds(tmp_path):
    return tiny_dataset(tmp_path / "ds", {"item_id": [f"sku{i}" for i in range(30)],
                                          "title": TEXTS})


def test_every_item_gets_exactly_one_vector_through_faults(ds):
    faults = ["429", "500", "slow", "drop", None, "429", "500", "drop"]
    policy = RetryPolicy(max_retries=6, base_delay=0.01, max_delay=0.05, timeout=0.5)
    with FakeAPI(dim=8, faults=faults, slow_s=1.2) as server:
        path = embed_items(ds, encoder(server, policy), fields=["title"], normalize=False)
        outcomes = Counter(o for o, _, _ in server.log)
        assert not server.faults, "every injected fault was hit"
        assert {k: outcomes[k] for k in ("429", "500", "drop", "slow")} == \
            {"429": 2, "500": 2, "drop": 2, "slow": 1}
        # 8 batches of <= 4 texts; more only if a normal answer outlived the 0.5 s timeout
        assert outcomes["ok"] >= 8
        assert sorted(set(server.ok_texts())) == sorted(TEXTS)

        table = pq.read_table(path)
        assert table.num_rows == 30
        assert sorted(table.column("item_id").to_pylist()) == sorted(f"sku{i}" for i in range(30))
        matrix, present, meta = load_vectors(ds, "api-fake-embed")
        assert matrix.shape == (31, 8) and present[1:].all() and not present[0]
        for idx, text in enumerate(TEXTS, start=1):  # each item holds the vector of its own text
            np.testing.assert_array_equal(matrix[idx], FakeAPI.vector(text, 8))
        assert meta["model"] == "fake-embed" and meta["api_url"].endswith("/v1/embeddings")

        # re-run: everything is cached, the server sees nothing
        n_requests = len(server.log)
        embed_items(ds, encoder(server, policy), fields=["title"], normalize=False)
        assert len(server.log) == n_requests


def test_interrupted_run_resumes_without_paying_twice(ds):
    cache_path = ds.path / "cache" / "embeddings.sqlite"
    with FakeAPI(dim=8, fail_texts={TEXTS[13]}) as server:
        with pytest.raises(APIError, match="failed 2 time"):
            embed_items(ds, encoder(server, RetryPolicy(1, 0.01, 0.05, 5.0)), fields=["title"])
        first = set(server.ok_texts())
        assert TEXTS[13] not in first and 0 < len(first) < 30
        with KVCache(cache_path) as cache:
            assert cache.count() == len(first)  # every answered batch was stored, nothing else
        assert not (ds.path / "item_vectors" / "api-fake-embed.parquet").exists()

        server.fail_texts.clear()
        server.log.clear()
        embed_items(ds, encoder(server), fields=["title"])
        second = server.ok_texts()
        assert not first & set(second), "no cached text was requested again"
        assert Counter([*first, *second]) == Counter(TEXTS)  # each text paid for exactly once
    _, present, _ = load_vectors(ds, "api-fake-embed")
    assert present[1:].all()


def test_api_key_comes_from_the_environment(ds, monkeypatch):
    monkeypatch.setenv("GENREC_TEST_KEY", "sk-test-123")
    with FakeAPI(dim=4) as server:
        encoder(server).encode(["a", "b"])
        assert {auth for _, _, auth in server.log} == {"Bearer sk-test-123"}
    monkeypatch.delenv("GENREC_TEST_KEY")
    with FakeAPI(dim=4, faults=["401"]) as server:
        with pytest.raises(APIError, match=r"HTTP 401 \(check \$GENREC_TEST_KEY\)"):
            encoder(server).encode(["a", "b"])
        assert [auth for _, _, auth in server.log] == [None]  # no key: no header, no retry


def test_wrong_dimension_is_an_error_and_never_stored(tmp_path):
    with FakeAPI(dim=8, faults=[None, "wrong_dim"]) as server, \
            KVCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(APIError, match="returned 9-d vectors .* expected 8"):
            encoder(server, batch_size=2, concurrency=1).encode(TEXTS[:6], cache)
        assert cache.count() == 2  # the first batch only


def test_requested_dimension_is_checked(tmp_path):
    with FakeAPI(dim=8, faults=["wrong_dim"]) as server:
        enc = encoder(server, batch_size=2, concurrency=1, dim=5)
        with pytest.raises(APIError, match="returned 6-d vectors .* expected 5"):
            enc.encode(TEXTS[:2])
        assert enc.encode(TEXTS[:2]).shape == (2, 5)  # the server honours "dimensions"


def test_wrong_count_is_an_error(tmp_path):
    with FakeAPI(dim=8, faults=["wrong_count"]) as server, \
            KVCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(APIError, match="returned 1 vectors .* for a batch of 2 texts"):
            encoder(server, batch_size=2, concurrency=1).encode(TEXTS[:2], cache)
        assert cache.count() == 0


def test_duplicate_texts_are_sent_once(ds):
    with FakeAPI(dim=4) as server:
        vecs = encoder(server).encode(["x", "y", "x", "x"])
        assert sorted(server.ok_texts()) == ["x", "y"]
    np.testing.assert_array_equal(vecs[0], vecs[2])
    assert vecs.shape == (4, 4)


def test_make_encoder_builds_the_api_client():
    enc = make_encoder("api:http://127.0.0.1:9/v1", EncoderOptions(model="bge/m3 large",
                                                                    batch_size=16))
    assert isinstance(enc, APIEncoder)
    assert enc.url == "http://127.0.0.1:9/v1/embeddings" and enc.batch_size == 16
    assert enc.name == "api-bge-m3-large"


def test_embeddings_url_forms():
    assert embeddings_url("http://h:1") == "http://h:1/v1/embeddings"
    assert embeddings_url("http://h:1/v1/") == "http://h:1/v1/embeddings"
    assert embeddings_url("http://h:1/v1/embeddings") == "http://h:1/v1/embeddings"


def test_retry_after_and_backoff():
    assert retry_after(httpx.Headers({"Retry-After": "2"})) == 2.0
    assert retry_after(httpx.Headers({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after(httpx.Headers({"Retry-After": date})) <= 30
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert retry_after(httpx.Headers({})) is None

    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(0)
    delays = [backoff_delay(a, policy, rng=rng) for a in range(10) for _ in range(20)]
    assert min(delays) >= 0 and max(delays) <= 4.0
    assert max(backoff_delay(0, policy, rng=rng) for _ in range(50)) <= 0.5  # 0.5 * 2**0
    assert backoff_delay(3, policy, server_wait=60.0) == 4.0  # a server's wait is capped too
    assert 1.0 <= backoff_delay(0, policy, server_wait=1.0, rng=rng) <= 1.5


def test_run_pool_stores_finished_work_then_raises():
    def job(i: int) -> int:
        if i == 3:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return i * i

    got = {}
    with pytest.raises(RuntimeError, match="boom"):
        for i, sq in run_pool(job, range(100), concurrency=2):
            got[i] = sq
    assert all(sq == i * i for i, sq in got.items()) and 3 not in got
    assert len(got) < 20  # no new jobs after the failure
