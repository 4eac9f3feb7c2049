"""Shared machinery for the HTTP clients (embedding API, metadata enrichment).

Three small pieces, used together by ``features.api`` and ``features.enrich``:

- ``send``: one request with retries. 429, 408 and 5xx answers, timeouts and dropped
  connections are retried with exponential backoff and full jitter; a ``Retry-After`` /
  ``retry-after-ms`` header wins over the computed delay (both capped at ``max_delay``).
  Other 4xx answers come back to the caller at once: retrying a bad request only re-pays.
- ``run_pool``: run jobs on at most ``concurrency`` threads and yield each result in the
  caller's thread as it completes, so the caller alone touches the cache.
- ``KVCache``: a SQLite key -> bytes table; every ``put_many`` is one committed transaction,
  so an interrupted run keeps everything finished before the interruption.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from genrec.data.dataset import DataError

__all__ = ["APIError", "RetryPolicy", "send", "retry_after", "backoff_delay", "run_pool",
           "KVCache", "cache_key", "api_headers"]

J = TypeVar("J")
R = TypeVar("R")

RETRY_STATUS = frozenset({408, 425, 429})  # plus every 5xx


class APIError(DataError):
    """An HTTP API failed or answered something unusable; the message says what and how to go on."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Delays in seconds; ``timeout`` is per request (connect, read, write)."""

    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout: float = 60.0


def api_headers(api_key_env: str | None) -> dict[str, str]:
    """``Authorization: Bearer $KEY`` when the variable is set; local servers often need none."""
    import os

    key = os.environ.get(api_key_env) if api_key_env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an
    HTTP date; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, policy: RetryPolicy, server_wait: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff; a server-given wait is honoured (plus a little jitter so
    that the threads told to wait do not all come back in the same instant)."""
    rng = rng or random
    if server_wait is not None:
        return min(policy.max_delay, server_wait + rng.uniform(0, policy.base_delay))
    return rng.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** attempt))


def send(client: httpx.Client, method: str, url: str, policy: RetryPolicy,
         stop: threading.Event | None = None, **kwargs: Any) -> httpx.Response:
    """The first answer that is not worth retrying (2xx, or a 4xx such as 400/401/404).

    Raises APIError when the retries run out, naming the last failure, or as soon as ``stop``
    is set (another job failed: nothing more should be paid for).
    """
    stop = stop or threading.Event()
    last = ""
    for attempt in range(policy.max_retries + 1):
        wait_s: float | None = None
        try:
            response = client.request(method, url, timeout=policy.timeout, **kwargs)
        except httpx.TransportError as e:  # timeouts, refused or dropped connections
            last = f"{type(e).__name__}: {e}"
        else:
            if response.status_code not in RETRY_STATUS and response.status_code < 500:
                return response
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            wait_s = retry_after(response.headers)
        if attempt < policy.max_retries and stop.wait(backoff_delay(attempt, policy, wait_s)):
            break
    raise APIError(f"{method} {url} failed {attempt + 1} time(s) (last: {last}); "
                   f"finished work is cached, so re-running resumes; raise --max-retries or "
                   f"lower --concurrency if the server is overloaded")


def run_pool(fn: Callable[[J], R], jobs: Iterable[J], concurrency: int,
             stop: threading.Event | None = None) -> Iterator[tuple[J, R]]:
    """``(job, fn(job))`` in completion order, at most ``concurrency`` jobs in flight.

    After the first failing job no new job starts and ``stop`` is set (``fn`` passes it to
    ``send``, so running jobs give up at their next retry); jobs that still succeed are yielded,
    because they were paid for and the caller stores them; then the first error is raised.
    """
    stop = stop if stop is not None else threading.Event()
    jobs = iter(jobs)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    pending: dict[Future, J] = {}
    error: BaseException | None = None

    def submit() -> None:
        job = next(jobs, _END)
        if job is not _END:
            pending[pool.submit(fn, job)] = job

    try:
        # a short queue: a huge catalogue should not become a huge list of futures
        for _ in range(2 * max(1, concurrency)):
            submit()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                job = pending.pop(fut)
                if fut.cancelled():
                    continue
                if fut.exception() is not None:
                    if error is None:
                        error = fut.exception()
                        stop.set()
                        for queued in pending:
                            queued.cancel()
                    continue
                yield job, fut.result()
                if error is None:
                    submit()
    finally:
        if pending:  # the caller left early: stop paying for work nobody will store
            stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


_END = object()


def cache_key(namespace: str, text: str) -> bytes:
    """sha256(namespace + NUL + text): the namespace is the model (or URL template)."""
    return hashlib.sha256(f"{namespace}\0{text}".encode()).digest()


class KVCache:
    """A SQLite table key -> value (bytes), safe to share between runs and processes.

    Example:
        >>> cache = KVCache(tmp / "cache.sqlite")                       # doctest: +SKIP
        >>> cache.put_many([(cache_key("m", "hi"), b"...")]); cache.count()  # doctest: +SKIP
        1
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB)")
        self._db.commit()

    def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        out: dict[bytes, bytes] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT key, value FROM kv WHERE key IN ({marks})", chunk))
        return out

    def put_many(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        with self._db:  # one transaction: all of a batch or none of it
            self._db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM kv").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "KVCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
