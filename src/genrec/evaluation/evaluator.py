"""Full-ranking evaluation: score every item for every user, mask history, rank, measure.

``evaluate`` is the fast path used everywhere; ``reference_evaluate`` is a slow, obviously correct
per-user version that the tests hold it to.

Protocol (ARCHITECTURE.md): every item is a candidate except the user's ``history`` items and
column 0 (PAD). A target that is also in the history is therefore masked too and counts as a miss
(it is still counted in the Recall/NDCG/MAP denominators and, for AUC, sits below every candidate).
Users without a target are skipped. Ranks are exact and pessimistic under ties: a relevant item's
rank is 1 + #candidates with a higher score + #non-relevant candidates with an equal score
+ #relevant candidates with an equal score and a smaller item index, i.e. its position when
candidates are sorted by (-score, is_relevant, item_idx).

Keys of ``EvalResult.metrics`` (K from ``ks``):
    HR@K Recall@K Precision@K NDCG@K MRR@K MAP@K   accuracy, see ``metrics.RANK_METRICS``
    AUC                                           per-user AUC averaged (GAUC-style), not with
                                                  auc=False
    coverage@K gini@K                             over the top-K lists of all evaluated users
    novelty@K                                     only with ``item_popularity``
    diversity@K                                   intra-list diversity, only with ``item_vectors``
Each value is the mean over users where it is defined (AUC needs a non-relevant candidate,
diversity two listed items). Top-K lists break score ties by the smaller item index: they are
what a user would be shown.

Example:
    >>> split = make_split(ds, "loo")                                          # doctest: +SKIP
    >>> res = evaluate(model_scores, split.history("test"), split.targets("test"))  # doctest: +SKIP
    >>> res.metrics["NDCG@10"], res.n_users                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from genrec.evaluation import metrics as M
from genrec.topk import top_k_counted

__all__ = ["EvalResult", "evaluate", "reference_evaluate", "slice_metrics", "ScoreFn"]

ScoreFn = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]

# At most this many score cells (users x columns) per chunk: ~32 MB per float32 copy, a few
# hundred MB for all per-chunk temporaries, whatever the catalogue size.
_MAX_CHUNK_CELLS = 1 << 23
# Exact ranks for AUC: with this few relevant items per row, one comparison pass per item beats
# sorting the rows (float32, one CPU thread: the crossover is ~16 items).
_FEW_RELEVANT = 16


@dataclass
class EvalResult:
    metrics: dict[str, float]
    n_users: int                     # users evaluated (with at least one target)
    seconds: float
    per_user: dict[str, np.ndarray] = field(default_factory=dict)  # rows aligned with ``users``
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    n_skipped: int = 0               # requested users without a target
    topk: np.ndarray | None = None   # (n_users, max K) item indices, -1 = empty slot
    # (n_users,) with topk: its leading slots that hold items the model scored above -inf (the
    # rest it scored -inf: listed only because nothing else was left; serving leaves them out)
    topk_scored: np.ndarray | None = None


# ---- input checks ------------------------------------------------------------------------------
def _canonical(m: sp.spmatrix, name: str) -> sp.csr_matrix:
    """CSR copy with sorted, unique indices and no stored zeros."""
    if not sp.issparse(m):
        raise ValueError(f"{name} must be a scipy.sparse matrix (users x n_items+1), got "
                         f"{type(m).__name__}; build it with Split.history()/Split.targets()")
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


def _prepare(history, targets, ks, users):
    """Validated (history without PAD, targets, sorted ks, users with a target, users without)."""
    history, targets = _canonical(history, "history"), _canonical(targets, "targets")
    if history.shape != targets.shape:
        raise ValueError(f"history has shape {history.shape} but targets {targets.shape}; both "
                         f"must be users x (n_items + 1) from the same split")
    if targets[:, 0].nnz:
        raise ValueError("targets has entries in column 0, which is PAD; real items are 1..n_items")
    # PAD is always masked: dropping it from history keeps n_items - row nnz = #candidates
    history.data[history.indices == 0] = 0
    history.eliminate_zeros()
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    n_users = history.shape[0]
    users = np.arange(n_users) if users is None else np.asarray(users, dtype=np.int64).ravel()
    if len(users) and (users.min() < 0 or users.max() >= n_users):
        raise ValueError(f"users must lie in 0..{n_users - 1} (rows of history), got "
                         f"{users.min()}..{users.max()}")
    has_target = np.diff(targets.indptr)[users] > 0
    if not has_target.any():
        raise ValueError(f"none of the {len(users)} requested users has a target; check the split "
                         f"stage (valid/test) and the users passed")
    return history, targets, ks, users[has_target], users[~has_target]


def _check_item_inputs(item_popularity, item_vectors, n_cols: int) -> None:
    if item_popularity is not None and np.shape(item_popularity) != (n_cols,):
        raise ValueError(f"item_popularity must hold one train count per item_idx, shape "
                         f"({n_cols},) incl. PAD; got {np.shape(item_popularity)}")
    if item_vectors is not None and (np.ndim(item_vectors) != 2 or len(item_vectors) != n_cols):
        raise ValueError(f"item_vectors must be (n_items + 1, D) = ({n_cols}, D), row 0 = PAD; "
                         f"got {np.shape(item_vectors)}")


def _mean(values: np.ndarray) -> float:
    """Mean over the users where the metric is defined (AUC, novelty, diversity can be NaN)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else math.nan


def _score_chunk(score_fn: ScoreFn, users: np.ndarray, n_cols: int) -> torch.Tensor:
    with torch.no_grad():
        out = score_fn(users)
    scores = torch.as_tensor(out).detach()
    if tuple(scores.shape) != (len(users), n_cols):
        raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {len(users)} users; "
                         f"expected ({len(users)}, {n_cols}) = (users, n_items + 1), column 0 = PAD")
    # compare in a dtype that represents every score exactly (ties must stay ties, and only ties)
    exact64 = scores.dtype == torch.float64 or not scores.is_floating_point()
    scores = scores.double() if exact64 else scores.float()
    if torch.isnan(scores.amax()):  # max propagates NaN: one pass, no (B, N) bool temporary
        raise ValueError(f"score_fn returned NaN scores for users {users[:5].tolist()}...; "
                         f"check the model for diverged weights")
    # -inf marks masked items below; a model's own -inf becomes the lowest finite score
    return scores.clamp(min=torch.finfo(scores.dtype).min)


# ---- the fast path -----------------------------------------------------------------------------
def _pad_rows(rows: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR rows -> (B, R) item indices padded with 0 (PAD) and the (B, R) mask of real slots."""
    counts = np.diff(rows.indptr)
    slot_ok = np.arange(max(int(counts.max()), 1)) < counts[:, None]
    items = np.zeros(slot_ok.shape, dtype=np.int64)
    items[slot_ok] = rows.indices  # row-major fill keeps each row's ascending item order
    return torch.from_numpy(items).to(device), torch.from_numpy(slot_ok).to(device)


def _count(mask: torch.Tensor) -> torch.Tensor:
    """True entries per row; an int32 sum is several times faster than torch's default int64."""
    return mask.sum(1, dtype=torch.int32)


def _count_at_least(scores: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(B, R) int64: how many entries of each row of ``scores`` (B, N) are >= each threshold."""
    n_thr = thresholds.shape[1]
    if n_thr <= _FEW_RELEVANT:
        return torch.stack([_count(scores >= thresholds[:, j:j + 1]) for j in range(n_thr)],
                           1).long()
    # Sort every row once (O(N log N), ~_FEW_RELEVANT comparison passes on one CPU thread with
    # numpy's SIMD sort), then binary-search each threshold: #entries < t is its insertion point.
    if scores.device.type == "cpu":
        sorted_rows = torch.from_numpy(np.sort(scores.numpy(), axis=1))
    else:
        sorted_rows = scores.sort(dim=1).values
    below = torch.searchsorted(sorted_rows, thresholds.contiguous())
    return scores.shape[1] - below


def _rank_chunk(scores: torch.Tensor, hist: sp.csr_matrix, tgt: sp.csr_matrix, k_max: int,
                full: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mask, rank and list one chunk: (ranks (B, R), #valid relevant (B,), top-k (B, k_max),
    #top-k slots the model scored above -inf (B,)).

    full=True ranks every valid target exactly (AUC needs that). full=False ranks exactly only
    the targets that can be in the top k_max; the others get ``NO_RANK`` like a masked target,
    which no metric @K with K <= k_max can tell apart from their true rank (> k_max).
    """
    dev, n_rows = scores.device, scores.shape[0]
    rows = torch.from_numpy(np.repeat(np.arange(n_rows), np.diff(hist.indptr))).to(dev)
    scores[rows, torch.from_numpy(hist.indices.astype(np.int64)).to(dev)] = -math.inf
    scores[:, 0] = -math.inf

    rel, slot_ok = _pad_rows(tgt, dev)        # (B, R)
    rel_scores = scores.gather(1, rel)         # masked targets read -inf
    valid = slot_ok & (rel_scores > -math.inf)
    # top-k lists with ties to the lower index (genrec.topk), and #entries >= the k-th score
    top, values, n_at_least_kth = top_k_counted(scores, k_max)

    # rank = 1 + #non-relevant candidates >= its score + #relevant ones ahead in (score desc,
    # item index asc), where #non-relevant >= s = #candidates >= s - #valid relevant >= s.
    # Relevant items, sorted by that key (invalid slots last; slots are in ascending item order):
    key = (-rel_scores).masked_fill(~valid, math.inf)
    key_sorted, order = key.sort(dim=1, stable=True)
    n_slots = rel.shape[1]
    positions = torch.arange(n_slots, device=dev).expand(n_rows, n_slots)
    rel_above = torch.empty_like(order).scatter_(1, order, positions)
    rel_at_least = torch.searchsorted(key_sorted, key, right=True)  # itself included

    if full:
        ranked = valid
        at_least = _count_at_least(scores, rel_scores.masked_fill(~valid, math.inf))
    else:
        # Why this is exact: with v = values[:, -1] the k_max-th largest candidate score, a
        # target scoring s < v has >= k_max candidates strictly above it, so its rank is > k_max
        # and it is a miss at every K. A target with s >= v is counted exactly from the top-k
        # values: every candidate scoring > v is among them, so for s > v #candidates >= s =
        # #values >= s; for s == v (ties at the threshold, possibly beyond the list: they count
        # against the target) it is #entries >= v of the whole row, which top_k_counted counted.
        # Masked items read -inf < s and are never counted; fewer than k_max candidates means
        # v = -inf and every valid target is ranked.
        kth = values[:, -1:]
        ranked = valid & (rel_scores >= kth)
        ascending = values.flip(1).contiguous()
        in_top = values.shape[1] - torch.searchsorted(ascending, rel_scores.contiguous())
        at_least = torch.where(rel_scores == kth, n_at_least_kth.long(), in_top)
    ranks = (1 + (at_least - rel_at_least) + rel_above).masked_fill(~ranked, M.NO_RANK)

    # the model's own -inf reads as the lowest finite score here (_score_chunk)
    scored = _count(values > torch.finfo(values.dtype).min)
    if top.shape[1] < k_max:  # catalogue smaller than K
        top = torch.nn.functional.pad(top, (0, k_max - top.shape[1]), value=-1)
    return (ranks.cpu().numpy(), valid.sum(1).cpu().numpy(), top.cpu().numpy(),
            scored.cpu().numpy())


def _list_metrics(top: np.ndarray, ks: list[int], item_popularity, item_vectors, n_users: int
                  ) -> dict[str, np.ndarray]:
    out = {}
    for k in ks:
        if item_popularity is not None:
            out[f"novelty@{k}"] = M.novelty(top[:, :k], item_popularity, n_users)
        if item_vectors is not None:
            out[f"diversity@{k}"] = M.intra_list_diversity(top[:, :k], item_vectors)
    return out


def evaluate(
    score_fn: ScoreFn,
    history: sp.csr_matrix,
    targets: sp.csr_matrix,
    ks: tuple[int, ...] = (5, 10, 20),
    users: np.ndarray | None = None,
    batch_users: int = 1024,
    item_popularity: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
    progress: bool = False,
    keep_topk: bool = False,
    auc: bool = True,
) -> EvalResult:
    """Full-ranking evaluation of ``score_fn`` on ``targets`` with ``history`` masked.

    score_fn(user_idx (B,)) -> scores (B, n_items + 1), numpy or torch (any device; the work runs
    where the scores live). history / targets: CSR users x (n_items + 1). users: which rows to
    evaluate (default all); those without a target are skipped and counted in ``n_skipped``.
    item_popularity: train interaction count per item (n_items + 1,) for novelty; item_vectors:
    (n_items + 1, D) for intra-list diversity. Chunks hold at most ``batch_users`` users and
    ~8M score cells. See the module docstring for the protocol and the metric keys.
    auc=False leaves out ``AUC``, the one metric that needs the exact rank of every target: the
    others only need ranks up to max(ks), which come from the top-k lists (several times faster).
    keep_topk: keep each user's top-max(ks) list in the result (``topk``, ``topk_scored``).
    """
    start = time.perf_counter()
    history, targets, ks, users, skipped = _prepare(history, targets, ks, users)
    n_cols, k_max = history.shape[1], ks[-1]
    _check_item_inputs(item_popularity, item_vectors, n_cols)
    n_items = n_cols - 1
    n_candidates = n_items - np.diff(history.indptr)
    chunk = max(1, min(int(batch_users), _MAX_CHUNK_CELLS // n_cols))

    parts: dict[str, list[np.ndarray]] = {}
    counts = {k: np.zeros(n_cols, dtype=np.int64) for k in ks}
    tops, scored = [], []
    # Users with similar target counts share a chunk: ranking costs grow with the chunk's
    # largest target count, so one heavy user must not slow down a chunk of light ones.
    order = np.argsort(np.diff(targets.indptr)[users], kind="stable")
    with tqdm(total=len(users), unit="user", desc="evaluate", disable=not progress) as bar:
        for lo in range(0, len(users), chunk):
            u = users[order[lo:lo + chunk]]
            scores = _score_chunk(score_fn, u, n_cols)
            tgt = targets[u]
            ranks, n_valid, top, n_scored = _rank_chunk(scores, history[u], tgt, k_max, full=auc)
            n_rel = np.diff(tgt.indptr)
            values = {f"{name}@{k}": fn(ranks, n_rel, k)
                      for k in ks for name, fn in M.RANK_METRICS.items()}
            if auc:
                values["AUC"] = M.auc(ranks, n_rel, n_candidates[u] - n_valid)
            values.update(_list_metrics(top, ks, item_popularity, item_vectors, history.shape[0]))
            for key, val in values.items():
                parts.setdefault(key, []).append(val)
            for k in ks:
                listed = top[:, :k]
                counts[k] += np.bincount(listed[listed >= 0], minlength=n_cols)
            if keep_topk:
                tops.append(top)
                scored.append(n_scored)
            bar.update(len(u))

    back = np.argsort(order)  # per-user results in the callers' user order again
    per_user = {key: np.concatenate(vals)[back] for key, vals in parts.items()}
    result = {key: _mean(val) for key, val in per_user.items()}
    for k in ks:
        result[f"coverage@{k}"] = M.coverage(counts[k][1:])
        result[f"gini@{k}"] = M.gini(counts[k][1:])
    kept = {"topk": np.concatenate(tops)[back],
            "topk_scored": np.concatenate(scored)[back]} if keep_topk else {}
    return EvalResult(metrics=_ordered(result, ks), n_users=len(users),
                      seconds=time.perf_counter() - start, per_user=per_user, users=users,
                      n_skipped=len(skipped), **kept)


def slice_metrics(result: EvalResult, rows: np.ndarray, prefix: str) -> dict[str, float]:
    """Per-user metrics of ``result`` averaged over the users ``rows`` selects (bool, aligned
    with ``result.users``), keys ``prefix + name``, plus ``prefix + "users"``: their number.
    List metrics over all users (coverage, gini) have no per-user value and are left out.

    P1-new reports the users whose target is a new item this way (``prefix="new/"``)."""
    rows = np.asarray(rows, dtype=bool)
    if rows.shape != result.users.shape:
        raise ValueError(f"rows must flag each of the {len(result.users)} evaluated users, got "
                         f"shape {rows.shape}")
    out = {f"{prefix}{key}": _mean(values[rows]) for key, values in result.per_user.items()}
    return {**out, f"{prefix}users": int(rows.sum())}


def _ordered(result: dict[str, float], ks: list[int]) -> dict[str, float]:
    """Metrics grouped by K in a stable, readable order."""
    names = [*M.RANK_METRICS, "coverage", "gini", "novelty", "diversity"]
    keys = [f"{n}@{k}" for k in ks for n in names] + ["AUC"]
    return {key: result[key] for key in keys if key in result}


# ---- the slow reference ------------------------------------------------------------------------
def reference_evaluate(
    score_fn: ScoreFn,
    history: sp.csr_matrix,
    targets: sp.csr_matrix,
    ks: tuple[int, ...] = (5, 10, 20),
    users: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
) -> EvalResult:
    """Same contract as ``evaluate``, one user at a time in plain Python, metrics by definition."""
    start = time.perf_counter()
    history, targets, ks, users, skipped = _prepare(history, targets, ks, users)
    n_users, n_cols = history.shape
    k_max = ks[-1]
    _check_item_inputs(item_popularity, item_vectors, n_cols)
    per_user: dict[str, list[float]] = {}
    counts = {k: np.zeros(n_cols, dtype=np.int64) for k in ks}
    tops = []
    for u in users:
        scores = torch.as_tensor(score_fn(np.array([u]))).detach().double().cpu().numpy()[0]
        masked = set(history[u].indices.tolist()) | {0}
        relevant = set(targets[u].indices.tolist())
        candidates = [i for i in range(n_cols) if i not in masked]
        ranking = sorted(candidates, key=lambda i: (-scores[i], i in relevant, i))
        shown = sorted(candidates, key=lambda i: (-scores[i], i))[:k_max]
        tops.append(shown + [-1] * (k_max - len(shown)))
        row: dict[str, float] = {}
        for k in ks:
            hits = [i in relevant for i in ranking[:k]]
            n_hits = sum(hits)
            row[f"HR@{k}"] = float(n_hits > 0)
            row[f"Recall@{k}"] = n_hits / len(relevant)
            row[f"Precision@{k}"] = n_hits / k
            dcg = sum(1 / math.log2(pos + 2) for pos, hit in enumerate(hits) if hit)
            idcg = sum(1 / math.log2(pos + 2) for pos in range(min(k, len(relevant))))
            row[f"NDCG@{k}"] = dcg / idcg
            row[f"MRR@{k}"] = 1 / (hits.index(True) + 1) if n_hits else 0.0
            precisions = [sum(hits[:pos + 1]) / (pos + 1) for pos, hit in enumerate(hits) if hit]
            row[f"MAP@{k}"] = sum(precisions) / min(k, len(relevant))
            listed = shown[:k]
            for i in listed:
                counts[k][i] += 1
            if item_popularity is not None:
                info = [-math.log2(max(item_popularity[i], 1) / n_users) for i in listed]
                row[f"novelty@{k}"] = float(np.mean(info)) if info else math.nan
            if item_vectors is not None:
                dist = [1 - _cosine(item_vectors[a], item_vectors[b])
                        for x, a in enumerate(listed) for b in listed[x + 1:]]
                row[f"diversity@{k}"] = float(np.mean(dist)) if dist else math.nan
        position = {item: pos for pos, item in enumerate(ranking)}
        negatives = [i for i in candidates if i not in relevant]
        wins = sum(1 for r in relevant if r in position for n in negatives
                   if position[r] < position[n])
        row["AUC"] = wins / (len(relevant) * len(negatives)) if negatives else math.nan
        for key, val in row.items():
            per_user.setdefault(key, []).append(val)

    result = {key: _mean(np.array(vals)) for key, vals in per_user.items()}
    for k in ks:
        x = counts[k][1:].astype(np.float64)
        result[f"coverage@{k}"] = float(np.count_nonzero(x) / len(x))
        # Gini as the mean absolute difference, independent of the sorted formula in metrics.py
        mad = np.abs(x[:, None] - x[None, :]).sum()
        result[f"gini@{k}"] = float(mad / (2 * len(x) * x.sum())) if x.sum() else math.nan
    return EvalResult(metrics=_ordered(result, ks), n_users=len(users),
                      seconds=time.perf_counter() - start,
                      per_user={key: np.array(vals) for key, vals in per_user.items()},
                      users=users, n_skipped=len(skipped), topk=np.array(tops, dtype=np.int64))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 0.0
