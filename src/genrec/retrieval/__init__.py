"""Retrieval: faiss item indexes for vector models, BM25, and text indexes (``text``)."""

from genrec.retrieval.index import KINDS, IndexConfig, ItemIndex, exact_search, recall_at_k

__all__ = ["KINDS", "IndexConfig", "ItemIndex", "exact_search", "recall_at_k"]
