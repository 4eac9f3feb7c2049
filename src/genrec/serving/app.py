"""The HTTP service: a FastAPI app over one serving bundle (see ``genrec.serving.bundle``).

    POST /recommend          top-k for a user id or an explicit item history (+ exclude list)
    GET  /similar/{item_id}  related items (the model's item-item relation)
    GET  /search?q=          text -> items (bi-encoder over item text, or TF-IDF)
    GET  /items/{item_id}    title, popularity, text fields, image URL
    GET  /health             what is loaded;  GET /metrics: Prometheus counters and histograms
    GET  /                   the web page (static/, no build step, nothing from a CDN)
    GET  /docs               the API docs (Swagger UI, offline); GET /openapi.json: the schema

The bundle is loaded once, in the lifespan, with log lines on uvicorn's log (loading, still
loading every 15 s, ready in N s). Routes whose work takes a millisecond or two run on
the event loop (``async def``): handing them to a thread costs about as much CPU as the work
(0.2-0.6 ms per request, measured under load); ``/search``, whose text encoder takes tens of
milliseconds, runs in the thread pool so that it does not hold up the others. Known users'
/recommend scores are batched (``UserBatcher``): the requests that arrive while the model is
busy share its next call, which costs about a third per user of one call each (8 users, semid).

Errors: an unknown item id in a request body is a 422 that lists every unknown id; an unknown
item in the path is a 404; an unknown user is a 404 unless ``fallback="popular"``; bodies over
``max_body_bytes`` are a 413.

``/docs`` is Swagger UI from the files that the ``fastapi-offline`` wheel ships, so it needs no
network; without that package it is a plain list of the routes. There is no ``/redoc``: ReDoc
would fetch its logo from the network.

Example:
    >>> app = create_app("runs/ease_ml-100k_loo", search="tfidf")          # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, AsyncIterator
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, HTTPException, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from genrec import __version__
from genrec.serving.bundle import (Bundle, NoItemTextError, UnknownItemsError, UnknownUserError,
                                   load_bundle)
from genrec.serving.metrics import Metrics, MetricsMiddleware
from genrec.serving.schemas import (MAX_ID_LENGTH, MAX_K, MAX_QUERY_LENGTH, ErrorBody, Health,
                                    ItemDetails, ItemRef, RecommendRequest, RecommendResponse,
                                    ScoredItem, SearchResponse, SimilarResponse)

try:  # Swagger UI with its JS and CSS inside the wheel, not on a CDN
    from fastapi_offline import FastAPIOffline
except ImportError:  # requirements.lock installs it; without it /docs lists the routes
    FastAPIOffline = None

__all__ = ["create_app", "app_from_env", "MAX_BODY_BYTES"]

# uvicorn's own log: start-up lines appear beside "Waiting for application startup."
log = logging.getLogger("uvicorn.error")

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 256 * 1024  # a 500-item history of long ids is well under this
ItemId = Annotated[str, PathParam(min_length=1, max_length=MAX_ID_LENGTH,
                                  description="raw item id")]
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}}
_BODY_ERRORS = {**_ERRORS, 400: {"model": ErrorBody, "description": "body is not valid JSON"},
                413: {"model": ErrorBody, "description": "body too large"}}


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413, before the app parses anything.

    The body is read (up to the limit) and replayed to the app, so a body without a
    Content-Length (chunked) is bounded too.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await self._reject(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._reject(scope, receive, send)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: dict, receive: Any, send: Any) -> None:
        detail = f"request body over {self.max_bytes} bytes (or a bad Content-Length)"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def _bundle(request: Request) -> Bundle:
    return request.app.state.bundle


class UserBatcher:
    """Scores of known users, one model call for every request waiting.

    Handlers run on the event loop, so while one call runs the next requests wait in their
    sockets; they then reach ``scores`` within a few loop turns, and ``_flush`` waits until a
    turn brings no new one before it scores them all together."""

    def __init__(self, user_scores: Any) -> None:
        self._user_scores = user_scores  # user_idx (B,) -> (B, n_items + 1) float64 scores
        self._waiting: list[tuple[int, asyncio.Future]] = []

    async def scores(self, user: int) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((user, future))
        if len(self._waiting) == 1:
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        count = -1
        while count != len(self._waiting):  # until a loop turn brings no new request
            count = len(self._waiting)
            await asyncio.sleep(0)
        batch, self._waiting = self._waiting, []
        try:
            rows = self._user_scores(np.array([u for u, _ in batch], dtype=np.int64))
        except Exception as e:  # every waiting request gets the error, as it would alone
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for row, (_, future) in zip(rows, batch):
            if not future.done():
                future.set_result(row)


def _batcher(request: Request) -> UserBatcher | None:
    """The app's batcher, made on first use; None for a recommender whose known users' lists
    are not the top-k of ``user_scores`` (a ranking chain)."""
    state = request.app.state
    if not hasattr(state, "batcher"):
        r = _bundle(request).recommender
        state.batcher = UserBatcher(r.user_scores) if r.ranks_user_scores else None
    return state.batcher


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def _image(b: Bundle, i: int) -> str | None:
    return f"/items/{quote(str(b.item_ids[i]), safe='')}/image" if i in b.images else None


def _scored(b: Bundle, items: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
    return [ScoredItem(item_id=str(b.item_ids[i]), title=str(b.titles[i]), score=float(s),
                       image=_image(b, int(i))) for i, s in zip(items, scores)]


def _item_or_404(b: Bundle, item_id: str) -> int:
    try:
        return int(b.item_index([item_id])[0])
    except UnknownItemsError as e:
        raise HTTPException(404, str(e)) from None


def _load_logged(run_dir: str | Path, search: str, threads: int | None) -> Bundle:
    """``load_bundle`` with log lines: what is loading, a line every 15 s while it takes long,
    and what is ready."""
    t0 = time.perf_counter()
    note = ("; a first start encodes every item's text once, then reads it from the run "
            "directory" if search in ("auto", "minilm") else "")
    log.info("loading %s: model, dataset, catalogue and search index (search=%s%s)...", run_dir,
             search, note)
    done = threading.Event()

    def still_loading() -> None:
        while not done.wait(15):
            log.info("still loading (%.0f s)...", time.perf_counter() - t0)

    threading.Thread(target=still_loading, daemon=True).start()
    try:
        b = load_bundle(run_dir, search=search, threads=threads)
    finally:
        done.set()
    log.info("ready in %.1f s: %s on %s, %d users, %d items; search: %s (%s); similar: %s",
             time.perf_counter() - t0, b.model_name, b.run.dataset.name, b.known.shape[0],
             b.n_items, b.search_index.name, b.search_index.source, b.similar_source)
    return b


def _examples(b: Bundle) -> dict[str, str | None]:
    """A known user id and the most popular item's title, for the web page's placeholders."""
    users = b.run.dataset.users["user_id"]
    top = int(np.argmax(b.popularity))  # PAD's popularity is 0
    title = str(b.titles[top])
    return {"example_user_id": str(users[0]) if len(users) else None,
            "example_title": title if title != str(b.item_ids[top]) else None}


def _routes_page(app: FastAPI) -> HTMLResponse:
    """/docs without Swagger UI: every operation of the OpenAPI schema, one line each."""
    rows = "".join(f"<li><code>{method.upper()} {html.escape(path)}</code> "
                   f"{html.escape(op.get('summary', ''))}</li>"
                   for path, ops in app.openapi()["paths"].items() for method, op in ops.items())
    return HTMLResponse(f'<!doctype html><meta charset="utf-8"><title>genrec API</title>'
                        f'<link rel="icon" href="data:,"><h1>genrec API</h1><ul>{rows}</ul>'
                        f'<p>The full schema: <a href="/openapi.json">/openapi.json</a></p>')


def create_app(run_dir: str | Path | None = None, *, bundle: Bundle | None = None,
               search: str = "auto", threads: int | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The service for ``run_dir`` (loaded in the lifespan), or for an already loaded ``bundle``."""
    if run_dir is None and bundle is None:
        raise ValueError("create_app needs a run directory or a loaded bundle")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "bundle", None) is None:
            app.state.bundle = _load_logged(run_dir, search, threads)
        yield

    about = dict(title="genrec", version=__version__, lifespan=lifespan,
                 description=__doc__.split("\n\n")[0])
    if FastAPIOffline is not None:  # /docs, its assets under /static-offline-docs
        app = FastAPIOffline(redoc_url=None, **about)
    else:
        app = FastAPI(docs_url=None, redoc_url=None, **about)

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return _routes_page(app)
    app.state.bundle = bundle
    app.state.metrics = metrics = Metrics()
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times the 413s too

    @app.exception_handler(UnknownItemsError)
    async def unknown_items(request: Request, e: UnknownItemsError) -> JSONResponse:
        return JSONResponse({"detail": str(e), "unknown_item_ids": e.ids}, status_code=422)

    @app.exception_handler(UnknownUserError)
    async def unknown_user(request: Request, e: UnknownUserError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(NoItemTextError)
    async def no_item_text(request: Request, e: NoItemTextError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.post("/recommend", response_model=RecommendResponse, responses=_BODY_ERRORS)
    async def recommend(req: RecommendRequest, request: Request) -> RecommendResponse:
        """Top-k unseen items for a known user or an explicit history; [] -> popular items."""
        b, t0 = _bundle(request), time.perf_counter()
        given = (req.history or []) + req.exclude
        idx = b.item_index(given)  # one 422 listing every unknown id of both lists
        n = len(req.history or [])
        scores, batcher = None, _batcher(request)
        if req.user_id is not None and batcher is not None:
            try:
                scores = await batcher.scores(b.user_index(req.user_id))
            except UnknownUserError:
                pass  # b.recommend answers it: a 404, or the popular fallback
        rec = b.recommend(user=req.user_id, history=idx[:n] if req.history is not None else None,
                          k=req.k, exclude=idx[n:], fallback=req.fallback, scores=scores)
        return RecommendResponse(items=_scored(b, rec.items, rec.scores), model=b.model_name,
                                 fallback=rec.fallback, reason=rec.reason, latency_ms=_ms(t0))

    @app.get("/similar/{item_id}", response_model=SimilarResponse, responses=_ERRORS)
    async def similar(item_id: ItemId, request: Request,
                k: int = Query(10, ge=1, le=MAX_K)) -> SimilarResponse:
        """Items related to ``item_id`` by the model's item-item relation."""
        b, t0 = _bundle(request), time.perf_counter()
        i = _item_or_404(b, item_id)
        items, scores = b.similar(i, k)
        ref = ItemRef(item_id=item_id, title=str(b.titles[i]), image=_image(b, i))
        return SimilarResponse(item=ref, items=_scored(b, items, scores), source=b.similar_source,
                               latency_ms=_ms(t0))

    # a plain def: the bi-encoder takes tens of ms, so it runs in the thread pool
    @app.get("/search", response_model=SearchResponse, responses=_ERRORS)
    def search_items(request: Request,
                     q: str = Query(..., min_length=1, pattern=r"\S",
                                    description=f"free text; blank is a 422; past "
                                                f"{MAX_QUERY_LENGTH:,} characters it is cut, "
                                                f"with a note"),
                     k: int = Query(10, ge=1, le=MAX_K)) -> SearchResponse:
        """Items whose text best matches ``q``."""
        b, t0 = _bundle(request), time.perf_counter()
        notes = []
        if len(q) > MAX_QUERY_LENGTH:
            notes.append(f"the query was cut to its first {MAX_QUERY_LENGTH:,} of {len(q):,} "
                         f"characters")
            q = q[:MAX_QUERY_LENGTH]
        items, scores = b.search(q, k)
        note_for = getattr(b.search_index, "query_note", None)
        notes.append(note_for(q) if note_for else None)
        return SearchResponse(query=q, items=_scored(b, items, scores),
                              encoder=b.search_index.name, latency_ms=_ms(t0),
                              note="; ".join(n for n in notes if n) or None)

    @app.get("/items/{item_id}", response_model=ItemDetails, responses=_ERRORS)
    async def item(item_id: ItemId, request: Request) -> ItemDetails:
        """One catalogue entry."""
        b = _bundle(request)
        i = _item_or_404(b, item_id)
        details = {k: str(v[i]) for k, v in b.details.items() if v[i] not in (None, "")}
        return ItemDetails(item_id=item_id, title=str(b.titles[i]),
                           popularity=int(b.popularity[i]), image=_image(b, i), details=details)

    @app.get("/items/{item_id}/image", response_class=FileResponse, responses=_ERRORS)
    async def item_image(item_id: ItemId, request: Request) -> FileResponse:
        """The item's local image file."""
        b = _bundle(request)
        i = _item_or_404(b, item_id)
        if i not in b.images:
            raise HTTPException(404, f"item {item_id!r} has no local image")
        return FileResponse(b.images[i])

    @app.get("/health", response_model=Health)
    async def health(request: Request) -> Health:
        b = _bundle(request)
        return Health(status="ok", model=b.model_name, dataset=b.run.dataset.name,
                      n_users=b.known.shape[0], n_items=b.n_items, search=b.search_index.name,
                      search_vectors=b.search_index.source, similar=b.similar_source,
                      load_seconds=b.load_seconds, **_examples(b))

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text() -> str:
        """Request counts and latency histograms (Prometheus text format)."""
        return metrics.render()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """``create_app`` configured by environment variables, for servers that import the app by
    name (``uvicorn --factory genrec.serving.app:app_from_env``): GENREC_SERVE_RUN_DIR
    (required), GENREC_SERVE_SEARCH (default auto), GENREC_SERVE_THREADS (default: unchanged).
    """
    run_dir = os.environ.get("GENREC_SERVE_RUN_DIR")
    if not run_dir:
        raise ValueError("set GENREC_SERVE_RUN_DIR to a run directory (genrec serve sets it)")
    threads = os.environ.get("GENREC_SERVE_THREADS")
    return create_app(run_dir, search=os.environ.get("GENREC_SERVE_SEARCH", "auto"),
                      threads=int(threads) if threads else None)
