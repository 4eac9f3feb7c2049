"""Helpers shared by the feature tests (and ``benchmarks/bench_embed.py``): a loopback HTTP
server with injected faults, and ``tiny_dataset`` to save a small Dataset from item rows.

``FakeAPI`` serves, on 127.0.0.1 (a free port):

    POST /v1/embeddings   OpenAI-style: {"data": [{"embedding": [...], "index": i}, ...]}; the
                          vector of a text is a fixed function of the text (``FakeAPI.vector``)
    GET  /movie/{id}      TMDb-style JSON from ``movies``; 404 for ids it does not know

Each request takes the next entry of ``faults`` (then None = answer normally):

    "429"          429 with Retry-After: 1         "500"   500 Internal Server Error
    "slow"         sleep ``slow_s`` before answering (past the client's timeout)
    "drop"         headers and half the body, then the connection is closed
    "wrong_dim"    vectors one longer than ``dim``  "wrong_count"  one vector too few
    "401"          401 Unauthorized

``fail_texts``: a request containing one of these texts always gets a 500. ``log`` records
``(outcome, texts or [movie id], authorization header)`` per request, outcome "ok" for a normal
answer.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import polars as pl

from genrec.data.dataset import Dataset

__all__ = ["FakeAPI", "tiny_dataset"]


def tiny_dataset(path, items: dict[str, list]) -> Dataset:
    """A saved Dataset whose items are ``items`` (columns; item_id required), item_idx 1..N in
    that order, and one user who saw every item."""
    frame = pl.DataFrame(items).with_columns(pl.col("item_id").cast(pl.Utf8))
    n = frame.height
    frame = frame.with_columns(pl.int_range(1, n + 1, dtype=pl.Int32).alias("item_idx"))
    ds = Dataset(
        interactions=pl.DataFrame({"user_idx": [0] * n, "item_idx": list(range(1, n + 1)),
                                   "timestamp": list(range(n)), "rating": [None] * n},
                                  schema={"user_idx": pl.Int32, "item_idx": pl.Int32,
                                          "timestamp": pl.Int64, "rating": pl.Float32}),
        items=frame.select("item_idx", pl.exclude("item_idx")),
        users=pl.DataFrame({"user_idx": [0], "user_id": ["u0"]},
                           schema={"user_idx": pl.Int32, "user_id": pl.Utf8}),
        meta={"name": "tiny"},
    )
    ds.save(path)
    return ds


class FakeAPI:
    def __init__(self, dim: int = 8, faults: list[str | None] = (), slow_s: float = 1.0,
                 movies: dict[str, dict[str, Any]] | None = None,
                 fail_texts: set[str] = frozenset()) -> None:
        self.dim = dim
        self.faults = list(faults)
        self.slow_s = slow_s
        self.movies = movies or {}
        self.fail_texts = set(fail_texts)
        self.log: list[tuple[str, list[str], str | None]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)  # short poll: quick shutdown

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @staticmethod
    def vector(text: str, dim: int) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)

    def ok_texts(self) -> list[str]:
        """Every text (or movie id) answered normally, once per answer."""
        return [t for outcome, texts, _ in self.log if outcome == "ok" for t in texts]

    def __enter__(self) -> "FakeAPI":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_fault(self, texts: list[str]) -> str | None:
        with self._lock:
            if self.fail_texts & set(texts):
                return "500"
            return self.faults.pop(0) if self.faults else None

    def _record(self, outcome: str, texts: list[str], auth: str | None) -> None:
        with self._lock:
            self.log.append((outcome, texts, auth))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real providers do

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def _answer(self, texts: list[str], ok_body: Any) -> None:
                auth = self.headers.get("Authorization")
                fault = api._next_fault(texts)
                api._record(fault or "ok", texts, auth)
                if fault == "429":
                    self._send(429, {"error": "rate limited"}, {"Retry-After": "1"})
                elif fault == "500":
                    self._send(500, {"error": "internal"})
                elif fault == "401":
                    self._send(401, {"error": "invalid api key"})
                elif fault == "slow":
                    time.sleep(api.slow_s)
                    self._send(*ok_body)
                elif fault == "drop":
                    data = json.dumps(ok_body[1]).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    status, body = ok_body
                    if fault in ("wrong_dim", "wrong_count") and status == 200:
                        body = api._broken(body, fault)
                    self._send(status, body)

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                texts = request["input"]
                dim = request.get("dimensions", api.dim)
                data = [{"object": "embedding", "index": i,
                         "embedding": FakeAPI.vector(t, dim).tolist()} for i, t in enumerate(texts)]
                self._answer(texts, (200, {"object": "list", "data": data,
                                           "model": request["model"]}))

            def do_GET(self) -> None:  # noqa: N802
                movie = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
                body = api.movies.get(movie)
                self._answer([movie], (200, body) if body is not None else (404, {"error": "nf"}))

        return Handler

    def _broken(self, body: dict[str, Any], fault: str) -> dict[str, Any]:
        data = body["data"]
        if fault == "wrong_count":
            data = data[:-1]
        else:
            data = [{**d, "embedding": d["embedding"] + [0.5]} for d in data]
        return {**body, "data": data}
