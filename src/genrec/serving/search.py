"""Text search for the service: the text -> items system of ``genrec search train``.

The plain text indexes (``minilm``, ``tfidf``) are ``genrec.retrieval.text``. This module adds the
serving-specific third kind, ``GenerateRankIndex``: ``--search RUN_DIR`` of a
``genrec search train`` run serves its generator + cross-encoder ("generate-and-rank"), with the
run's items mapped to the served catalogue by raw item id; items the served catalogue lacks are
dropped, and the answer says how many.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["GenerateRankIndex", "is_search_run"]


def is_search_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory of ``genrec search train`` (text -> items)."""
    p = Path(path)
    return p.is_dir() and (p / "generator.pt").is_file() and (p / "config.toml").is_file()


class GenerateRankIndex:
    """The text -> items generator, re-ranked by its cross-encoder when the run has one."""

    name = "generate-and-rank"

    def __init__(self, run_dir: str | Path, item_ids: list[str]) -> None:
        from genrec.pipeline.text_search.search import TextSearch

        self._search = TextSearch.load(run_dir)
        self.method = "generator+ce" if self._search.ranker is not None else "generator"
        self.source = f"{run_dir} ({self.method})"
        served = {str(r): i for i, r in enumerate(item_ids) if i}
        # the search run's item_idx -> the served item_idx (0 where the catalogue lacks it)
        self._to_served = np.array([served.get(str(r), 0) if i else 0
                                    for i, r in enumerate(self._search.item_ids)], dtype=np.int64)
        missing = int((self._to_served[1:] == 0).sum())
        self.note = (f"{missing} of the search run's items are not in the served catalogue"
                     if missing else None)

    def query_note(self, query: str) -> str | None:
        """e.g. a query whose word pieces the tokenizer mostly does not know."""
        return self._search.note(query)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        res = self._search.search(query, k, self.method)
        served = self._to_served[res.items]
        keep = served > 0
        return served[keep], np.asarray(res.scores, dtype=np.float64)[keep]
