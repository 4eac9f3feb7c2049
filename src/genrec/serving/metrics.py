"""Request counters and latency histograms, exposed in the Prometheus text format.

``MetricsMiddleware`` times every HTTP request and files it under its route template (``/similar/
{item_id}``, not the concrete path, so the series stay few) and status code:

    genrec_requests_total{method="POST",route="/recommend",status="200"} 12
    genrec_request_seconds_bucket{method="POST",route="/recommend",le="0.005"} 9
    ...
    genrec_request_seconds_sum{...} 0.0412    genrec_request_seconds_count{...} 12

Example:
    >>> m = Metrics(); m.observe("GET", "/health", 200, 0.002)
    >>> 'genrec_requests_total{method="GET",route="/health",status="200"} 1' in m.render()
    True
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from typing import Any, Awaitable, Callable

__all__ = ["Metrics", "MetricsMiddleware", "BUCKETS"]

# seconds; spans a cached lookup (sub-ms) to a slow text search
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters and histograms keyed by (method, route[, status])."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = {}
        self._sums: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counts[(method, route, status)] += 1
            hist = self._buckets.setdefault((method, route), [0] * (len(BUCKETS) + 1))
            hist[bisect.bisect_left(BUCKETS, seconds)] += 1  # le is inclusive
            self._sums[(method, route)] += seconds

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = ["# HELP genrec_requests_total HTTP requests by route and status.",
                 "# TYPE genrec_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._counts.items()):
                lines.append(f'genrec_requests_total{{method="{method}",route="{route}",'
                             f'status="{status}"}} {n}')
            lines += ["# HELP genrec_request_seconds Request latency, from the first byte "
                      "received to the last byte sent.", "# TYPE genrec_request_seconds histogram"]
            for (method, route), hist in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                total = 0
                for le, n in zip([*map(str, BUCKETS), "+Inf"], hist):
                    total += n  # Prometheus buckets are cumulative
                    lines.append(f'genrec_request_seconds_bucket{{{labels},le="{le}"}} {total}')
                seconds = self._sums[(method, route)]
                lines.append(f"genrec_request_seconds_sum{{{labels}}} {seconds:.6f}")
                lines.append(f"genrec_request_seconds_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"


Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


class MetricsMiddleware:
    """Pure ASGI middleware (no response buffering) that feeds a ``Metrics``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the client sees if the app raises before responding

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - t0)
