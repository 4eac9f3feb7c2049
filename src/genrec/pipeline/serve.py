"""The whole recall -> rank -> re-rank chain of a pipeline run, for one known user (serving).

``ChainRecommender(run_dir)`` reloads a pipeline run once (``load_pipeline``: a recall run that
moved or changed is refused) and answers like ``genrec.runs.recommend.Recommender``, so the
serving bundle can hold it in place of a single run's recommender. For a known user:

    channels  each channel's top-k from everything known about the user (the recall runs'
              "all" stage); known items are never listed. A channel that raises is left out
              and named in the answer's ``reason``; the others still rank
    features  ``genrec.features.ranking.build_features`` with the point in time "now" (one
              second after the latest known event): item statistics from an ``ItemIndex`` of
              every known event built at load, the user's own features from their events
    ranker    the run's LightGBM booster or neural ranker
    re-rank   the run's ``[rerank]``: its method and unavailable items, plus the request's
              ``exclude`` items

An explicit item history or an unknown user has no features of its own: it is answered by the
first recall run alone (``Recommender`` of that run), as ``genrec serve`` would for that run.
Cost per request: the channels' scoring, the feature engine over the user's own events and the
candidates (binary searches in the index), the ranker; ``benchmarks/bench_serving.py`` on a
pipeline run measures it.

Example:
    >>> rec = ChainRecommender("runs/pipeline_ml100k_p5")         # doctest: +SKIP
    >>> rec.recommend(user=0, k=10).items                         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from genrec.features.ranking import ItemIndex, build_features
from genrec.pipeline.p5 import union
from genrec.pipeline.ranking import (MARKER, failing_channel, item_vectors, load_pipeline,
                                     rerank_parts, score_table)
from genrec.pipeline.recall import Channel, scored_channel
from genrec.pipeline.rerank import rerank
from genrec.runs.recommend import Recommendation, Recommender

__all__ = ["ChainRecommender", "is_pipeline_run"]


def is_pipeline_run(path: str | Path) -> bool:
    """Whether ``path`` is a pipeline run directory (it holds the marker ``pipeline.json``)."""
    return (Path(path) / MARKER).is_file()


class ChainRecommender(Recommender):
    """A pipeline run's chain for known users; the first recall run for anything else."""

    ranks_user_scores = False  # a known user's list is the chain's, not user_scores' top-k

    def __init__(self, run_dir: str | Path) -> None:
        self.pipeline = p = load_pipeline(run_dir)
        base = next(iter(p.runs.values()))
        super().__init__(base)
        split, ds = base.split, base.dataset
        self.name = f"{' + '.join(c.name for c in p.cfg.channels)} -> {p.cfg.ranker.model}" + \
            (f" -> {p.cfg.rerank.method}" if p.cfg.rerank.method != "none" else "")
        self.channels = [(self._channel(c.name, split), c.k) for c in p.cfg.channels]
        events = pl.concat([split.train, split.valid, split.test])
        self.now = int(events["timestamp"].max()) + 1
        self.index = ItemIndex(events, ds.items, split.n_items, p.cfg.features.category_column)
        # each user's own events are one slice of the log sorted by user
        self.events = events.sort("user_idx", maintain_order=True)
        self.offsets = np.searchsorted(self.events["user_idx"].to_numpy(),
                                       np.arange(split.n_users + 2))
        self.vectors = item_vectors(p.cfg, ds)
        self.similarity, self.unavailable = rerank_parts(p.cfg, ds)

    def _channel(self, name: str, split: Any) -> Channel:
        """Channel ``name`` over everything known (its "all" stage), known items excluded."""
        from genrec.runs import scorer

        try:
            if name not in self.pipeline.runs:  # popularity
                counts = split.item_counts()
                return scored_channel(name, lambda u: np.tile(counts, (len(u), 1)), self.known)
            run = self.pipeline.runs[name]
            return scored_channel(name, scorer(run, "all"), self.known,
                                  positive_only=run.config.model == "itemcf")
        except Exception as e:  # noqa: BLE001 - reported on use; the other channels still rank
            return failing_channel(name, e)

    def recommend(self, *, user: int | None = None, history: np.ndarray | None = None,
                  k: int = 10, exclude: np.ndarray | None = None,
                  unknown: str | None = None) -> Recommendation:
        """Top-``k`` of the chain for user_idx ``user``; see the class docstring otherwise."""
        if user is None or unknown is not None:
            return super().recommend(user=user, history=history, k=k, exclude=exclude,
                                     unknown=unknown)
        p = self.pipeline
        failures: dict[str, str] = {}
        cands = union(self.channels, np.array([user]), failures).with_columns(
            pl.lit(0, pl.Int8).alias("label"), pl.lit(self.now, pl.Int64).alias("t"))
        reason = f"channel(s) failed and were left out: {failures}" if failures else None
        if cands.height == 0:
            return Recommendation(np.zeros(0, np.int64), np.zeros(0), None, reason)
        lo, hi = self.offsets[user], self.offsets[min(user + 1, len(self.offsets) - 1)]
        table = build_features(cands, self.events.slice(lo, hi - lo), self.run.dataset.items,
                               p.cfg.features, self.run.split.n_items, self.vectors, self.index)
        scores, _ = score_table(p.cfg, p.ranker, table, p.info["ranker_state"])
        drop = np.r_[self.unavailable, exclude if exclude is not None else []].astype(np.int64)
        frame, scores = rerank(table.frame, scores, p.cfg.rerank, self.similarity, drop)
        top = np.argsort(-scores, kind="stable")[:k]
        return Recommendation(frame["item_idx"].to_numpy()[top].astype(np.int64),
                              np.asarray(scores, np.float64)[top], None, reason)
