"""Multi-channel recall: several candidate sources with quotas, merged into one candidate list.

A ``Channel`` answers ``topk(users, k) -> (items, scores)``: each user's best ``k`` items that
are not in the user's history for the stage (``-1`` / ``-inf`` where it has fewer). Sources:

    popularity_channel  train interaction counts (also the fallback for users without history)
    run_channel         any saved run (``genrec train``): itemcf, ease, lightgcn, sasrec, hstu,
                        two_tower... scored exactly over the whole catalogue through the run's
                        own scorer; ItemCF keeps only items with a positive score (a zero means
                        no neighbour of the history: no evidence, so no slot is spent on it)
    ann_channel         a vector model (two_tower) through a faiss index (``genrec.retrieval``)

Merging a budget of N slots: the quotas (relative weights) are turned into whole numbers of
slots summing to N (largest remainder). In channel order, each channel takes its best items not
taken by an earlier channel until it has its quota; slots a channel cannot fill (it ran out of
candidates) go to the channels in order again. The merged list keeps channel order, and within
a channel the channel's own order; every slot records its channel and that channel's score.

Users with no history for the stage (``history(stage)`` row empty: nothing to personalise from)
get the popularity fallback as their whole merged list and ``cold = True``; the report counts
them. Per-channel numbers are each channel alone at N; merged numbers are the merged list at N.

Example:
    >>> channels = [popularity_channel(split, "test", quota=1),                 # doctest: +SKIP
    ...             run_channel(load_run("runs/itemcf"), split, "test", quota=2),
    ...             ann_channel(load_run("runs/two_tower"), split, "test", quota=2)]
    >>> report = recall_report(channels, split, "test", ns=(50, 100, 200))     # doctest: +SKIP
    >>> report["merged"]["HR@100"], report["per_channel"]["itemcf"]["HR@100"]   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import torch

from genrec.data.dataset import DataError
from genrec.data.splits import Split
from genrec.retrieval.index import IndexConfig, ItemIndex
from genrec.topk import top_k

__all__ = ["Channel", "RecallResult", "popularity_channel", "scored_channel", "run_channel",
           "ann_channel", "allocate", "multi_channel_recall", "recall_report", "FALLBACK"]

FALLBACK = "popularity"  # the channel cold users get
TopK = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
_MAX_CELLS = 1 << 23  # users x catalogue per scoring chunk (~32 MB of float32 scores)


@dataclass
class Channel:
    name: str
    topk: TopK           # (users (B,), k) -> items (B, k) int64, scores (B, k); history excluded
    quota: float = 1.0   # share of the merged budget, relative to the other channels


@dataclass
class RecallResult:
    names: list[str]       # channel names; ``channel`` indexes this list
    users: np.ndarray      # (U,) user_idx
    items: np.ndarray      # (U, N) merged item_idx, -1 = empty slot
    channel: np.ndarray    # (U, N) int8: which channel filled the slot, -1 = empty
    scores: np.ndarray     # (U, N) float32: that channel's score for the item
    cold: np.ndarray       # (U,) bool: no history, the whole list is the popularity fallback
    quotas: dict[str, int] = field(default_factory=dict)  # slots per channel for this N


def scored_channel(name: str, score_fn: Callable[[np.ndarray], Any], history: sp.csr_matrix,
                   quota: float = 1.0, positive_only: bool = False) -> Channel:
    """A channel from ``score_fn(users) -> (B, n_items + 1)`` scores (numpy or torch).

    ``history`` rows (and PAD) are excluded; ``positive_only`` also drops scores <= 0.
    """
    history = sp.csr_matrix(history)

    def topk(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        items = np.full((len(users), k), -1, dtype=np.int64)
        scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        chunk = max(1, _MAX_CELLS // history.shape[1])
        for lo in range(0, len(users), chunk):
            u = users[lo:lo + chunk]
            with torch.no_grad():
                s = torch.as_tensor(score_fn(u)).detach().float().cpu().clone()
            if tuple(s.shape) != (len(u), history.shape[1]):
                raise ValueError(f"channel {name!r}: scores of shape {tuple(s.shape)} for "
                                 f"{len(u)} users, expected ({len(u)}, {history.shape[1]})")
            h = history[u]
            rows = np.repeat(np.arange(len(u)), np.diff(h.indptr))
            s[torch.from_numpy(rows), torch.from_numpy(h.indices.astype(np.int64))] = -math.inf
            s[:, 0] = -math.inf
            if positive_only:
                s[s <= 0] = -math.inf
            s = s.masked_fill(s.isnan(), -math.inf)
            idx, val = top_k(s, k)  # ties to the lower item index; -1 where only -inf
            items[lo:lo + len(u), :idx.shape[1]] = idx.numpy()
            scores[lo:lo + len(u), :idx.shape[1]] = val.numpy()
        return items, np.where(items >= 0, scores, -np.inf).astype(np.float32)

    return Channel(name, topk, quota)


def popularity_channel(split: Split, stage: str, quota: float = 1.0) -> Channel:
    """Most-popular unseen items (train interaction counts, one per user and item)."""
    counts = split.item_counts()
    return scored_channel(FALLBACK, lambda users: np.tile(counts, (len(users), 1)),
                          split.history(stage), quota)


def _same_split(a: Split, b: Split) -> bool:
    cols = ["user_idx", "item_idx"]
    return a is b or (a.summary() == b.summary() and all(
        getattr(a, f).select(cols).equals(getattr(b, f).select(cols))
        for f in ("train", "valid", "test")))


def _check_same_split(run: Any, split: Split) -> None:
    if not _same_split(run.split, split):
        raise DataError(f"run {run.path or run.config.model} was made on another split "
                        f"({run.split.name}: {run.split.summary()}) than this recall "
                        f"({split.name}: {split.summary()}); train every channel's run with the "
                        f"same data.* settings")


def _load(run: Any) -> Any:
    from genrec.runs import load_run

    return load_run(run) if isinstance(run, (str, Path)) else run


def run_channel(run: Any, split: Split, stage: str, quota: float = 1.0, name: str | None = None,
                positive_only: bool | None = None) -> Channel:
    """Exact scores of a saved run (a ``Run`` or its directory) over every item.

    ``positive_only`` defaults to True for ItemCF (see the module docstring), else False.
    """
    from genrec.runs import scorer  # the model's kind knows how it is fed

    run = _load(run)
    _check_same_split(run, split)
    if positive_only is None:
        positive_only = run.config.model == "itemcf"
    return scored_channel(name or run.config.model, scorer(run, stage), split.history(stage),
                          quota, positive_only)


def ann_channel(run: Any, split: Split, stage: str, quota: float = 1.0, name: str | None = None,
                index: IndexConfig | ItemIndex | None = None) -> Channel:
    """A vector model (``user_vectors`` / ``item_vectors``, e.g. two_tower) through faiss.

    ``index``: an IndexConfig to build from the model's item vectors (default flat inner
    product), or a prebuilt ItemIndex whose ids are item_idx.
    """
    from genrec.runs.kinds import model_kind

    run = _load(run)
    _check_same_split(run, split)
    # item vectors () -> (n_items + 1, D), user vectors (users) -> (B, D); ValueError for a
    # model without two towers
    item_vectors, user_vectors = model_kind(run.config.model).vector_search(run, split, stage)
    if not isinstance(index, ItemIndex):
        vectors = item_vectors()
        index = ItemIndex.build(vectors[1:], np.arange(1, len(vectors)), index)  # PAD left out
    history = split.history(stage)

    def topk(users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(users, dtype=np.int64)
        scores, items = index.search(user_vectors(users), k, history[users])
        return items, scores

    return Channel(name or run.config.model, topk, quota)


# ---- merging ------------------------------------------------------------------------------------
def allocate(quotas: list[float], n: int) -> list[int]:
    """Whole slots per channel summing to ``n``, proportional to ``quotas`` (largest remainder;
    ties go to the earlier channel)."""
    q = np.asarray(quotas, dtype=np.float64)
    if len(q) == 0 or (q < 0).any() or q.sum() <= 0:
        raise ValueError(f"channel quotas must be >= 0 with a positive sum, got {list(quotas)}")
    exact = n * q / q.sum()
    slots = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - slots), kind="stable")
    slots[order[:n - slots.sum()]] += 1
    return slots.tolist()


def _merge_chunk(lists: list[tuple[np.ndarray, np.ndarray]], slots: list[int], n: int,
                 n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge one chunk of users: (items, channel, scores), each (B, n)."""
    b = len(lists[0][0])
    taken = np.zeros((b, n_cols), dtype=bool)
    filled = np.zeros(b, dtype=np.int64)
    picks = []  # (items, scores, channel, keep) in merged order
    for second in (False, True):  # first up to each quota, then what is left of the budget
        for c, (items, scores) in enumerate(lists):
            free = (items >= 0) & ~taken[np.arange(b)[:, None], np.maximum(items, 0)]
            limit = n - filled if second else np.full(b, slots[c])
            keep = free & (np.cumsum(free, axis=1) <= limit[:, None])
            taken[np.nonzero(keep)[0], items[keep]] = True
            filled += keep.sum(1)
            picks.append((items, scores, np.full(items.shape, c, dtype=np.int8), keep))
    cat = [np.concatenate([p[i] for p in picks], axis=1) for i in range(4)]
    keep = cat[3]
    slot = np.cumsum(keep, axis=1) - 1
    out_i = np.full((b, n), -1, dtype=np.int64)
    out_c = np.full((b, n), -1, dtype=np.int8)
    out_s = np.full((b, n), -np.inf, dtype=np.float32)
    r, col = np.nonzero(keep)
    out_i[r, slot[r, col]] = cat[0][r, col]
    out_s[r, slot[r, col]] = cat[1][r, col]
    out_c[r, slot[r, col]] = cat[2][r, col]
    return out_i, out_c, out_s


def _merge(lists: list[tuple[np.ndarray, np.ndarray]], slots: list[int], n: int, n_cols: int,
           chunk: int = 1024) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [_merge_chunk([(i[lo:lo + chunk, :n], s[lo:lo + chunk, :n]) for i, s in lists],
                          slots, n, n_cols)
             for lo in range(0, len(lists[0][0]), chunk)]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def _fetch(channels: list[Channel], users: np.ndarray, k: int
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for ch in channels:
        items, scores = ch.topk(users, k)
        if items.shape != (len(users), k) or scores.shape != items.shape:
            raise ValueError(f"channel {ch.name!r} returned shapes {items.shape}/{scores.shape} "
                             f"for {len(users)} users and k={k}; expected ({len(users)}, {k})")
        out.append((items, scores))
    return out


def _with_fallback(channels: list[Channel], split: Split, stage: str
                   ) -> tuple[list[Channel], int]:
    """The channels plus the popularity fallback (reused when a channel already is it)."""
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ValueError(f"channel names must be unique, got {names}; pass name=... to tell "
                         f"two runs of the same model apart")
    if FALLBACK in names:
        return channels, names.index(FALLBACK)
    return channels + [popularity_channel(split, stage, quota=0.0)], len(channels)


def multi_channel_recall(channels: list[Channel], split: Split, stage: str, n: int,
                         users: np.ndarray | None = None) -> RecallResult:
    """The merged top-``n`` candidates per user (see the module docstring for the rules)."""
    history = split.history(stage)
    users = np.arange(split.n_users) if users is None else np.asarray(users, dtype=np.int64)
    all_channels, fb = _with_fallback(channels, split, stage)
    lists = _fetch(all_channels, users, n)
    return _recall_at(lists, all_channels, fb, len(channels), history, users, n)


def _recall_at(lists, all_channels, fb, n_real, history, users, n) -> RecallResult:
    slots = allocate([c.quota for c in all_channels[:n_real]], n)
    items, chan, scores = _merge(lists[:n_real], slots, n, history.shape[1])
    cold = np.diff(history.indptr)[users] == 0
    fb_items, fb_scores = lists[fb]
    items[cold], scores[cold] = fb_items[cold, :n], fb_scores[cold, :n]
    chan[cold] = np.where(fb_items[cold, :n] >= 0, fb, -1)
    names = [c.name for c in all_channels]
    return RecallResult(names, users, items, chan, scores, cold,
                        dict(zip(names[:n_real], slots)))


def _hits(items: np.ndarray, targets: sp.csr_matrix) -> np.ndarray:
    """(U, N) bool: items[u, j] is a target of user row u (``targets`` rows align with items)."""
    rows = np.repeat(np.arange(len(items)), items.shape[1])
    found = np.asarray(targets[rows, np.maximum(items, 0).ravel()]).ravel() != 0
    return found.reshape(items.shape) & (items > 0)


def _rates(hits: np.ndarray, n_targets: np.ndarray, n: int) -> dict[str, float]:
    per_user = hits.sum(1)
    return {f"HR@{n}": float((per_user > 0).mean()),
            f"Recall@{n}": float((per_user / n_targets).mean())}


def recall_report(channels: list[Channel], split: Split, stage: str = "test",
                  ns: tuple[int, ...] = (50, 100, 200), users: np.ndarray | None = None
                  ) -> dict[str, Any]:
    """HitRate@N and Recall@N per channel alone and merged, over users with a ``stage`` target.

    Returns ``{"per_channel": {name: {"HR@N", "Recall@N"...}}, "merged": {...}, "quotas":
    {N: {name: slots}}, "share": {N: {name: share of merged slots}}, "hits_from": {N: {name:
    share of merged hits}}, "n_users", "n_cold", "seconds"}``. Cold users count in every line:
    the per-channel lines score what each channel itself returns for them.
    """
    start = time.perf_counter()
    ns = tuple(sorted({int(n) for n in ns}))
    if not ns or ns[0] < 1:
        raise ValueError(f"ns must be positive cut-offs, got {ns}")
    targets = split.targets(stage)
    n_targets = np.diff(targets.indptr)
    users = np.flatnonzero(n_targets > 0) if users is None else np.asarray(users, dtype=np.int64)
    users = users[n_targets[users] > 0]
    if len(users) == 0:
        raise DataError(f"no user has a {stage} target in the {split.name} split; recall has "
                        f"nothing to measure")
    history = split.history(stage)
    all_channels, fb = _with_fallback(channels, split, stage)
    lists = _fetch(all_channels, users, ns[-1])
    tgt, n_t = targets[users], n_targets[users]
    report: dict[str, Any] = {"per_channel": {c.name: {} for c in channels}, "merged": {},
                              "quotas": {}, "share": {}, "hits_from": {}}
    for c, ch in enumerate(channels):
        hits = _hits(lists[c][0], tgt)
        for n in ns:
            report["per_channel"][ch.name].update(_rates(hits[:, :n], n_t, n))
    for n in ns:
        res = _recall_at(lists, all_channels, fb, len(channels), history, users, n)
        hits = _hits(res.items, tgt)
        report["merged"].update(_rates(hits, n_t, n))
        report["quotas"][n] = res.quotas
        filled = max(int((res.channel >= 0).sum()), 1)
        n_hits = max(int(hits.sum()), 1)
        report["share"][n] = {name: round(float((res.channel == c).sum()) / filled, 4)
                              for c, name in enumerate(res.names)}
        report["hits_from"][n] = {name: round(float(hits[res.channel == c].sum()) / n_hits, 4)
                                  for c, name in enumerate(res.names)}
    n_cold = int((np.diff(history.indptr)[users] == 0).sum())
    report.update(n_users=int(len(users)), n_cold=n_cold,
                  seconds=round(time.perf_counter() - start, 3))
    return report
