"""genrec: from a raw interaction log to trained recommenders, full-ranking evaluation and serving."""

__version__ = "0.1.0"
