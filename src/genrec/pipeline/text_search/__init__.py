"""Text -> items: generate-and-rank search, its training, and one ``TextSearch`` for every caller.

Four ways to answer a free-text query (bm25, minilm, generator, generator+ce) behind one
``TextSearch.search(query, k, method)``; ``train_text_search(cfg, out)`` builds the whole system
(queries, semantic IDs, the Text2Items generator, the cross-encoder) into a run directory that
is enough to serve without the dataset. Three modules:

    config.py   TextSearchConfig and its parts; load_config (defaults -> preset -> --set)
    search.py   the runtime: TextSearch.load(run_dir).search(...) -> SearchResult; the methods
                and the errors callers get. The one module serving imports (import-linter)
    train.py    train_text_search (the run directory's files) and evaluate_search

This package re-exports their public names, so ``from genrec.pipeline.text_search import X``
works for every X below.

Example:
    >>> cfg = load_config("configs/text2items_beauty.toml", ["train.max_minutes=5"])  # doctest: +SKIP
    >>> search = train_text_search(cfg, Path("runs/text2items_beauty"))       # doctest: +SKIP
    >>> TextSearch.load("runs/text2items_beauty").search("coconut oil", k=5).rows()  # doctest: +SKIP
"""

from genrec.pipeline.text_search.config import (IdsConfig, RankerConfig, SearchEvalConfig,
                                                TextSearchConfig, load_config)
from genrec.pipeline.text_search.search import METHODS, SearchResult, TextSearch
from genrec.pipeline.text_search.train import evaluate_search, train_text_search

__all__ = ["METHODS", "IdsConfig", "RankerConfig", "SearchEvalConfig", "TextSearchConfig",
           "SearchResult", "TextSearch", "train_text_search", "evaluate_search", "load_config"]
