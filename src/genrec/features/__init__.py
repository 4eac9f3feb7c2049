"""Item features: content vectors from text, images or an embedding API, and the store that
later models read them from.

    store.py    item_vectors/<encoder>.parquet: save_vectors / load_vectors (aligned to item_idx)
    text.py     item text templates; MiniLM / sentence-transformers / TF-IDF encoders
    api.py      OpenAI-compatible /v1/embeddings client (batches, concurrency, retries, cache)
    image.py    precomputed vector files; open_clip when installed
    enrich.py   per-item JSON from an HTTP API merged into items.parquet
    embed.py    encoder specs ("minilm", "st:PATH", "api:URL", ...) and embed_items
    _http.py    retries/backoff, bounded thread pool, SQLite cache shared by api and enrich

Heavy libraries (torch, sentence-transformers, scikit-learn, open_clip) load only when an
encoder needs them.
"""

from genrec.features._http import RetryPolicy
from genrec.features.embed import EncoderOptions, embed_items, make_encoder
from genrec.features.store import load_vectors, read_meta, save_vectors

__all__ = ["EncoderOptions", "RetryPolicy", "embed_items", "make_encoder", "load_vectors",
           "read_meta", "save_vectors"]
