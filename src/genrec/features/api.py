"""An OpenAI-compatible embeddings client (``POST {base}/v1/embeddings``) that resumes.

Request body ``{"model": M, "input": [texts], "encoding_format": "float"}`` (plus
``"dimensions": D`` when asked for); the answer must hold one ``{"embedding": [...], "index": i}``
per input. Texts already in the cache (key sha256(model + NUL + text)) are never sent again;
the rest go out in batches of at most ``batch_size`` (the provider's limit) on at most
``concurrency`` connections, with retries and backoff (``features._http``). Each batch is
checked (vector count, indices, one dimension for the whole run) before it is cached, so a bad
answer raises APIError and is never stored. The key is read from the environment variable
``api_key_env`` and never written anywhere.

Example:
    >>> enc = APIEncoder("http://127.0.0.1:8000/v1", model="text-embedding-3-small")  # doctest: +SKIP
    >>> enc.encode(["red lipstick"], cache=KVCache("cache.sqlite")).shape             # doctest: +SKIP
    (1, 1536)
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrec.features._http import (APIError, KVCache, RetryPolicy, api_headers, cache_key,
                                   run_pool, send)

__all__ = ["APIEncoder", "APIError", "embeddings_url"]


def embeddings_url(url: str) -> str:
    """Accept a base (``http://h:8000``), a ``.../v1`` base or the full ``.../v1/embeddings``."""
    url = url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    return f"{url}/embeddings" if url.endswith("/v1") else f"{url}/v1/embeddings"


@dataclass
class APIEncoder:
    """Embeddings from an OpenAI-compatible HTTP API (OpenAI, vLLM, TEI, Ollama, LiteLLM ...)."""

    url: str
    model: str = "text-embedding-3-small"
    api_key_env: str | None = "OPENAI_API_KEY"
    batch_size: int = 64
    concurrency: int = 4
    dim: int | None = None  # ask for this many dimensions; otherwise the first answer fixes it
    policy: RetryPolicy = RetryPolicy()
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1")
        self.url = embeddings_url(self.url)

    @property
    def name(self) -> str:
        return "api-" + re.sub(r"[^A-Za-z0-9._-]+", "-", self.model).strip("-")

    @property
    def namespace(self) -> str:
        return self.model if self.dim is None else f"{self.model}@{self.dim}"

    def describe(self) -> dict[str, Any]:
        return {"model_path": None, "api_url": self.url, "model": self.model,
                "requested_dim": self.dim, "batch_size": self.batch_size}

    def encode(self, texts: list[str], cache: KVCache | None = None) -> np.ndarray:
        """(len(texts), D) float32, in the order of ``texts``."""
        import httpx
        from tqdm.auto import tqdm

        keys = [cache_key(self.namespace, t) for t in texts]
        found = cache.get_many(keys) if cache is not None else {}
        vectors: dict[bytes, np.ndarray] = {k: np.frombuffer(v, "<f4") for k, v in found.items()}
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in vectors))
        dim = self.dim or (len(next(iter(vectors.values()))) if vectors else None)
        batches = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]

        stop = threading.Event()
        limits = httpx.Limits(max_connections=self.concurrency,
                              max_keepalive_connections=self.concurrency)
        bar = tqdm(total=len(todo), desc="embedding", unit="text", disable=not self.progress)
        with httpx.Client(headers=api_headers(self.api_key_env), limits=limits) as client, bar:

            def post(batch: list[str]) -> np.ndarray:
                body: dict[str, Any] = {"model": self.model, "input": batch,
                                        "encoding_format": "float"}
                if self.dim is not None:
                    body["dimensions"] = self.dim
                response = send(client, "POST", self.url, self.policy, stop=stop, json=body)
                return self._parse(response, len(batch))

            for batch, vecs in run_pool(post, batches, self.concurrency, stop):
                dim = dim or vecs.shape[1]
                if vecs.shape[1] != dim:
                    raise APIError(f"{self.url} returned {vecs.shape[1]}-d vectors for model "
                                   f"{self.model!r}, expected {dim} (earlier answers/cache or "
                                   f"--dim); nothing of this batch was stored")
                batch_keys = [cache_key(self.namespace, t) for t in batch]
                if cache is not None:
                    cache.put_many((k, v.tobytes()) for k, v in zip(batch_keys, vecs))
                vectors.update(zip(batch_keys, vecs))
                bar.update(len(batch))
        if not texts:
            return np.zeros((0, dim or 0), dtype=np.float32)
        bad = {len(v) for v in vectors.values()} - {dim}
        if bad:
            where = cache.path if cache is not None else "cache"
            raise APIError(f"{where} holds {sorted(bad)}-d vectors for model {self.namespace!r} "
                           f"but this run gets {dim}-d ones; delete it or pass the model's --dim")
        return np.stack([vectors[k] for k in keys])

    def _parse(self, response: Any, n: int) -> np.ndarray:
        """(n, D) from one answer; APIError for anything but exactly n equal-length vectors."""
        if response.status_code != 200:
            hint = f" (check ${self.api_key_env})" if response.status_code in (401, 403) else ""
            raise APIError(f"{self.url} answered HTTP {response.status_code}{hint}: "
                           f"{response.text[:300]}")
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda d: d.get("index", 0))
            indices = [d.get("index", i) for i, d in enumerate(rows)]
            vecs = [d["embedding"] for d in rows]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise APIError(f"{self.url} answered with no OpenAI-style data[].embedding list "
                           f"({type(e).__name__}: {e}): {response.text[:200]}") from None
        if len(vecs) != n or indices != list(range(n)):
            raise APIError(f"{self.url} returned {len(vecs)} vectors (indices {indices[:10]}) for "
                           f"a batch of {n} texts; lower --batch-size to the provider's limit")
        lengths = {len(v) for v in vecs}
        if len(lengths) != 1 or 0 in lengths:
            raise APIError(f"{self.url} returned vectors of different lengths {sorted(lengths)} "
                           f"in one batch")
        arr = np.asarray(vecs, dtype="<f4")
        if not np.isfinite(arr).all():
            raise APIError(f"{self.url} returned NaN/inf in a vector")
        return arr
