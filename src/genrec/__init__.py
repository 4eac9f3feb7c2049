"""genrec: from a raw interaction log to trained recommenders, full-ranking evaluation and serving."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_dataset", "train", "load_run", "compare"]


def __getattr__(name: str):
    """``genrec.train`` etc. (``genrec.api``), imported on first use: ``import genrec.data``
    stays light."""
    if name in ("load_dataset", "train", "load_run", "compare"):
        from genrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'genrec' has no attribute {name!r}")
