"""Data layer: raw files -> Dataset (Parquet dir) -> splits. Never imports models."""

from genrec.data.dataset import DataError, Dataset

__all__ = ["Dataset", "DataError"]
