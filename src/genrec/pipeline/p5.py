"""Protocol P5 (PROTOCOL.md): two-stage leave-one-out, recall -> rank, measured by full ranking.

Candidates for a stage ("valid": the ranker's training position, history = train part; "test":
the validation item added to the history) are the union of each channel's top-``k`` unseen
items (``genrec.pipeline.recall`` channels), one row per (user, item) with every channel's
score and rank as features:

    ch_<name>_rank    1-based rank in that channel's list; missing (not listed) = k + 1
    ch_<name>_score   that channel's score; missing = the lowest score the channel listed for the
                      user (0 when it listed nothing)
    ch_n              how many channels listed the item

plus ``label`` (the item is the user's target for the stage) and ``t`` (the target's timestamp:
the point in time every feature is computed before). A channel that raises, given a ``failures``
dict to report it in, lists nothing (every row gets its defaults) and the others still rank.

Evaluation: the ranker's scores order each user's candidates; every item outside the candidate
set scores below every candidate (ties among them, and with a target outside the set, count
against the model), and the full-ranking evaluator (``genrec.evaluation.evaluate``, history
masked) computes P1's metrics, so recall-only rows (each channel's own full ranking) and
recall + rank rows belong to one table. ``candidate_recall`` is the share of users whose
target is in the candidate set, the ceiling of any ranker. ``ranker_metrics`` measures the
scores on the candidate lists themselves with ``genrec.evaluation.binary``: AUC over all rows,
GAUC (per-user AUC averaged over users with a positive and a negative), logloss of the
probabilities; ties count one half, as in scikit-learn.

Example:
    >>> cands = candidates([(pop, 20), (ease, 100)], split, "test")         # doctest: +SKIP
    >>> res = full_ranking(cands, ranker_scores, split, "test", ks=(10,))   # doctest: +SKIP
    >>> res.metrics["NDCG@10"], res.metrics["candidate_recall"]             # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl

from genrec.data.dataset import DataError
from genrec.data.splits import Split
from genrec.evaluation import EvalResult, evaluate
from genrec.evaluation.binary import auc, gauc, group_auc, logloss
from genrec.pipeline.recall import Channel

__all__ = ["OUTSIDE", "candidates", "union", "candidate_recall", "full_ranking", "ranker_metrics",
           "sampled_negatives", "stage_targets"]
SAMPLERS = ("uniform", "popularity")

OUTSIDE = -1e30  # the score of every item outside a user's candidate set: below any candidate


def stage_targets(split: Split, stage: str) -> pl.DataFrame:
    """One row per user with a ``stage`` target: user_idx, target item, its timestamp ``t``."""
    part = split.valid if stage == "valid" else split.test
    if part.height == 0:
        raise DataError(f"the {split.name} split has no {stage} interactions; P5 needs a "
                        f"leave-one-out split (data.split = 'loo')")
    if part["user_idx"].n_unique() != part.height:
        raise DataError(f"P5 needs one {stage} item per user (a leave-one-out split), but the "
                        f"{split.name} split has {part.height} {stage} rows for "
                        f"{part['user_idx'].n_unique()} users")
    return part.select("user_idx", pl.col("item_idx").alias("target"),
                       pl.col("timestamp").alias("t")).sort("user_idx")


def _channel_lists(ch: Channel, k: int, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    items, scores = ch.topk(users, k)
    if items.shape != (len(users), k):
        raise ValueError(f"channel {ch.name!r} returned {items.shape} items for {len(users)} users "
                         f"and k={k}")
    return items, scores


def union(channels: list[tuple[Channel, int]], users: np.ndarray,
          failures: dict[str, str] | None = None) -> pl.DataFrame:
    """The union of each channel's top-k for ``users``, sorted by (user, item): user_idx,
    item_idx, ch_* (see the module docstring).

    A channel that raises lists nothing (its columns hold the defaults) and, with ``failures``,
    its error is recorded there by name; without ``failures`` the error propagates. ValueError
    when no channel listed anything because every one failed. Plain numpy on (user, item) keys:
    the same code serves one user per request and every user of a split."""
    users = np.asarray(users, dtype=np.int64)
    if not channels:
        raise ValueError("P5 candidates need at least one channel")
    lists = []
    for ch, k in channels:
        try:
            lists.append(_channel_lists(ch, k, users))
        except Exception as e:  # noqa: BLE001 - any channel error: report it, rank with the rest
            if failures is None:
                raise
            failures[ch.name] = f"{type(e).__name__}: {e}"
            lists.append(_nothing(users, k))
    if failures and len(failures) == len(channels):
        raise ValueError(f"every recall channel failed: {failures}")
    width = max(int(items.max(initial=0)) for items, _ in lists) + 1
    listed = [np.nonzero(items >= 0) for items, _ in lists]  # (user row, rank - 1) of each entry
    entry_keys = [users[r] * width + items[r, c] for (items, _), (r, c) in zip(lists, listed)]
    keys = np.unique(np.concatenate(entry_keys))  # sorted (user, item) pairs
    order = np.argsort(users, kind="stable")
    row = order[np.searchsorted(users[order], keys // width)]  # each candidate's user row
    columns: dict[str, np.ndarray] = {"user_idx": keys // width, "item_idx": keys % width}
    n_listed = np.zeros(len(keys), dtype=np.float32)
    for (ch, k), (_, scores), (r, c), entry in zip(channels, lists, listed, entry_keys):
        at = np.searchsorted(keys, entry)
        lowest = np.full(len(users), np.inf, dtype=np.float32)  # the user's lowest listed score
        np.minimum.at(lowest, r, scores[r, c])
        score = np.where(lowest < np.inf, lowest, 0.0).astype(np.float32)[row]
        rank = np.full(len(keys), k + 1, dtype=np.float32)
        score[at], rank[at] = scores[r, c], c + 1
        columns[f"ch_{ch.name}_score"], columns[f"ch_{ch.name}_rank"] = score, rank
        n_listed[at] += 1
    return pl.DataFrame({**columns, "ch_n": n_listed})


def _nothing(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k of a channel that failed: every slot empty."""
    return np.full((len(users), k), -1, np.int64), np.full((len(users), k), -np.inf, np.float32)


def candidates(channels: list[tuple[Channel, int]], split: Split, stage: str,
               users: np.ndarray | None = None, failures: dict[str, str] | None = None
               ) -> pl.DataFrame:
    """The union of each channel's top-k for the users with a ``stage`` target (or ``users``),
    sorted by (user, item): user_idx, item_idx, label, t, ch_* (see the module docstring);
    ``failures`` collects the channels that raised (see ``union``)."""
    targets = stage_targets(split, stage)
    if users is not None:
        targets = targets.filter(pl.col("user_idx").is_in(np.asarray(users).tolist()))
    frame = union(channels, targets["user_idx"].to_numpy(), failures)
    return (frame.join(targets, on="user_idx")
            .with_columns((pl.col("item_idx") == pl.col("target")).cast(pl.Int8).alias("label"))
            .drop("target").sort(["user_idx", "item_idx"]))


def sampled_negatives(cands: pl.DataFrame, split: Split, stage: str, ks: dict[str, int], n: int,
                      how: str = "uniform", seed: int = 0) -> pl.DataFrame:
    """Up to ``n`` extra negatives per user of ``cands``: items outside the user's candidates and
    ``stage`` history, drawn without repeats ``how`` = "uniform" over the catalogue or by
    "popularity" (train counts), as candidate rows with ``cands``' columns: label 0, the same
    ``t``, each channel's columns at what ``union`` gives an item it did not list (rank k + 1 from
    ``ks``, the user's lowest score of that channel) and ``ch_n`` 0. A user whose draws (3n)
    hold fewer than n admissible items gets fewer."""
    if how not in SAMPLERS:
        raise ValueError(f"negative sampling {how!r} is not one of {', '.join(SAMPLERS)}")
    per_user = cands.group_by("user_idx").agg(
        pl.col("t").first(), *(pl.col(c).min() for c in cands.columns if c.endswith("_score")))
    per_user = per_user.sort("user_idx")
    users = per_user["user_idx"].to_numpy().astype(np.int64)
    p = np.ones(split.n_items + 1) if how == "uniform" else split.item_counts().astype(np.float64)
    p[0] = 0.0
    rng = np.random.default_rng(seed)
    draw = rng.choice(split.n_items + 1, size=(len(users), 3 * n), p=p / p.sum())
    width = split.n_items + 1
    keys = (users[:, None] * width + draw).ravel()
    h = split.history(stage)[users].tocoo()
    taken = np.concatenate([users[h.row] * width + h.col,
                            cands["user_idx"].to_numpy().astype(np.int64) * width
                            + cands["item_idx"].to_numpy()])
    first = np.sort(np.unique(keys, return_index=True)[1])  # each (user, item) once, draw order
    keys = keys[first[~np.isin(keys[first], taken)]]
    extra = (pl.DataFrame({"user_idx": keys // width, "item_idx": keys % width})
             .filter(pl.int_range(pl.len()).over("user_idx") < n)
             .join(per_user, on="user_idx"))
    fills = {f"ch_{name}_rank": float(k + 1) for name, k in ks.items()}
    return (extra.with_columns(pl.lit(0).alias("label"), pl.lit(0.0).alias("ch_n"),
                               *(pl.lit(v).alias(c) for c, v in fills.items()))
            .select(cands.columns).cast(dict(cands.schema)))


def candidate_recall(cands: pl.DataFrame, split: Split, stage: str) -> float:
    """Share of the users with a ``stage`` target whose target is among their candidates."""
    n_users = stage_targets(split, stage).height
    return float(cands.filter(pl.col("label") == 1)["user_idx"].n_unique() / n_users)


def full_ranking(cands: pl.DataFrame, scores: np.ndarray, split: Split, stage: str,
                 ks: tuple[int, ...] = (5, 10, 20)) -> EvalResult:
    """P1's full-ranking evaluation when ``scores`` (one per candidate row) order each user's
    candidates and every other item ranks after them; ``metrics`` adds ``candidate_recall``."""
    cu = cands["user_idx"].to_numpy().astype(np.int64)
    ci = cands["item_idx"].to_numpy().astype(np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if len(scores) != len(cu) or not np.isfinite(scores).all():
        raise ValueError(f"need one finite ranker score per candidate row ({len(cu)}), got "
                         f"{len(scores)} ({int((~np.isfinite(scores)).sum())} not finite)")
    order = np.argsort(cu, kind="stable")
    cu, ci, scores = cu[order], ci[order], scores[order]
    n_cols = split.n_items + 1

    def score_fn(users: np.ndarray) -> np.ndarray:
        out = np.full((len(users), n_cols), OUTSIDE, dtype=np.float32)
        lo, hi = np.searchsorted(cu, users, "left"), np.searchsorted(cu, users, "right")
        rows = np.repeat(np.arange(len(users)), hi - lo)
        idx = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(users) else \
            np.zeros(0, dtype=np.int64)
        out[rows, ci[idx]] = scores[idx]
        return out

    result = evaluate(score_fn, split.history(stage), split.targets(stage), ks=tuple(ks),
                      auc=False)
    result.metrics["candidate_recall"] = candidate_recall(cands, split, stage)
    return result


def ranker_metrics(cands: pl.DataFrame, scores: np.ndarray, probs: np.ndarray
                   ) -> dict[str, float]:
    """AUC, GAUC and logloss of a ranker on candidate lists (``probs``: its probabilities), by
    ``genrec.evaluation.binary``; ``GAUC_users``: the users with a positive and a negative."""
    labels = cands["label"].to_numpy()
    users = cands["user_idx"].to_numpy()
    per_user = group_auc(scores, labels, users)
    return {"AUC": auc(scores, labels), "GAUC": gauc(scores, labels, users),
            "logloss": logloss(probs, labels), "GAUC_users": int((~np.isnan(per_user)).sum())}
