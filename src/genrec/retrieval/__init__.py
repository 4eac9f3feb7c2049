"""Retrieval: approximate nearest-neighbour item indexes (faiss) for vector models."""

from genrec.retrieval.index import KINDS, IndexConfig, ItemIndex, exact_search, recall_at_k

__all__ = ["KINDS", "IndexConfig", "ItemIndex", "exact_search", "recall_at_k"]
