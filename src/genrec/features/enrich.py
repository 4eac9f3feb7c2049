"""Metadata enrichment: fetch per-item JSON from an HTTP API and merge chosen fields into
``items.parquet``.

The API is TMDb-style: ``GET {api}/movie/{id}`` answers one JSON object per item, 404 for
unknown ids. ``api`` may instead contain ``{id}`` itself (``http://host/v3/movie/{id}?lang=en``).
The id sent is the item's ``id_column`` value (``item_id`` by default; a ``tmdb_id`` column
when the dataset has one). Requests use the machinery of ``features._http``: bounded
concurrency, retries with backoff on 429/5xx/timeouts/dropped connections, and a cache
(``<dataset>/cache/enrich.sqlite``, key: URL template + id) so a re-run only asks for what is
missing. A 404 is cached as "not found".

Field values become text the encoders can use: a list of objects with a ``name`` (TMDb
genres) becomes "Drama|Comedy", other lists are ``|``-joined, objects become JSON, numbers stay
numbers. Dotted fields (``belongs_to_collection.name``) reach into objects; the column is named
with ``_`` for ``.``. A field that is already an item column keeps its old value where the API
has none.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import polars as pl

from genrec._files import atomic_file
from genrec.data.dataset import DataError, Dataset
from genrec.features._http import (APIError, KVCache, RetryPolicy, api_headers, cache_key,
                                   run_pool, send)

__all__ = ["enrich_items", "EnrichResult", "url_template", "field_value"]


@dataclass(frozen=True)
class EnrichResult:
    path: Path  # the items.parquet written
    columns: list[str]  # columns added or updated
    n_found: int  # items the API described
    n_not_found: int  # 404 or no id
    n_fetched: int  # requests answered this run (the rest came from the cache)


def url_template(api: str) -> str:
    api = api.strip()
    return api if "{id}" in api else api.rstrip("/") + "/movie/{id}"


def field_value(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` of a JSON object, flattened to str/number (None if absent)."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    if isinstance(obj, list):
        items = [o.get("name") if isinstance(o, dict) else o for o in obj]
        return "|".join(str(i) for i in items if i is not None) or None
    if isinstance(obj, dict):
        return json.dumps(obj, sort_keys=True)
    if isinstance(obj, str):
        return obj.strip() or None
    return obj


def enrich_items(ds: Dataset, api: str, fields: list[str], *, id_column: str = "item_id",
                 api_key_env: str | None = "TMDB_API_KEY", concurrency: int = 4,
                 policy: RetryPolicy = RetryPolicy(), cache: bool | str | Path = True,
                 progress: bool = False) -> EnrichResult:
    """Fetch every item's JSON, merge ``fields`` into ``items.parquet`` (atomically)."""
    import httpx
    from tqdm.auto import tqdm

    if ds.path is None:
        raise DataError("enrich_items needs a saved dataset; load it with load_dataset(NAME)")
    if not fields:
        raise DataError("name the fields to merge, e.g. --fields overview,genres,tagline")
    if id_column not in ds.items.columns:
        raise DataError(f"items have no {id_column!r} column to build the request from "
                        f"(columns: {ds.items.columns}); pass --id-column")
    template = url_template(api)
    ids = [None if v is None else str(v) for v in ds.items[id_column].to_list()]
    wanted = list(dict.fromkeys(i for i in ids if i))

    store = KVCache(Path(ds.path) / "cache" / "enrich.sqlite" if cache is True else Path(cache)) \
        if cache else None
    keys = {i: cache_key(template, i) for i in wanted}
    found = store.get_many(list(keys.values())) if store is not None else {}
    answers: dict[str, Any] = {i: json.loads(found[k]) for i, k in keys.items() if k in found}
    todo = [i for i in wanted if i not in answers]

    stop = threading.Event()
    limits = httpx.Limits(max_connections=concurrency)
    try:
        with httpx.Client(headers=api_headers(api_key_env), limits=limits) as client, \
                tqdm(total=len(todo), desc="enriching", unit="item", disable=not progress) as bar:

            def fetch(item: str) -> Any:
                url = template.replace("{id}", quote(item, safe=""))
                response = send(client, "GET", url, policy, stop=stop)
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise APIError(f"GET {url} answered HTTP {response.status_code}: "
                                   f"{response.text[:300]}"
                                   + (f" (check ${api_key_env})" if response.status_code in
                                      (401, 403) else ""))
                try:
                    body = response.json()
                except ValueError:
                    raise APIError(f"GET {url} answered non-JSON: {response.text[:200]}") from None
                if not isinstance(body, dict):
                    raise APIError(f"GET {url} answered {type(body).__name__}, expected an object")
                return body

            for item, body in run_pool(fetch, todo, concurrency, stop):
                if store is not None:
                    store.put_many([(keys[item], json.dumps(body).encode())])
                answers[item] = body
                bar.update(1)
    finally:
        if store is not None:
            store.close()

    items = ds.items
    columns = []
    for f in fields:
        col = f.replace(".", "_")
        values = [field_value(answers.get(i), f) if i else None for i in ids]
        try:
            series = pl.Series(col, values, strict=False)
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            series = pl.Series(col, [None if v is None else str(v) for v in values])
        if col in items.columns:
            old = items[col]
            if old.dtype != series.dtype:
                series, old = series.cast(pl.Utf8), old.cast(pl.Utf8)
            series = series.fill_null(old)
        items = items.with_columns(series)
        columns.append(col)

    path = Path(ds.path) / "items.parquet"
    with atomic_file(path, "wb") as fh:
        items.write_parquet(fh)
    n_found = sum(1 for i in ids if i and answers.get(i) is not None)
    _note_in_meta(Path(ds.path), {"api": template, "fields": fields, "id_column": id_column,
                                  "n_found": n_found})
    ds.items = items
    return EnrichResult(path, columns, n_found, len(ids) - n_found, len(todo))


def _note_in_meta(folder: Path, note: dict[str, Any]) -> None:
    meta_path = folder / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("enriched", []).append(note)
    with atomic_file(meta_path) as fh:
        fh.write(json.dumps(meta, indent=2, default=str))
