"""Metrics of a ranker's scores on candidate rows with binary labels: AUC, GAUC, logloss.

The rows are (user, candidate) pairs, as a ranker over recall's candidate lists sees them.

    auc      the probability that a random positive row scores above a random negative one
             (Mann-Whitney; tied scores count one half, so a constant scorer gets 0.5)
    gauc     the mean of the per-group (per-user) AUC over the groups that hold both a positive
             and a negative row; unweighted (the DIN paper weights by impressions; the rows here
             are candidates, not impressions); NaN when no group qualifies
    logloss  mean binary cross-entropy of probabilities (clipped to [1e-7, 1 - 1e-7])

Labels in [0, 1] count as positive above 0.5 for AUC and GAUC; logloss takes them as they are.
``binary_metrics`` reports all three per task, and their mean over the tasks.

Example:
    >>> auc(np.array([0.9, 0.2, 0.4]), np.array([1, 0, 0]))
    1.0
    >>> gauc(np.array([0.9, 0.2, 0.1, 0.3]), np.array([1, 0, 0, 1]), np.array([7, 7, 8, 8]))
    1.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["auc", "gauc", "group_auc", "logloss", "binary_metrics"]


def group_auc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """AUC of every group (in ascending group order); NaN for a group without a positive or a
    negative row. Average ranks within runs of tied scores give ties one half."""
    scores, groups = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    positive = np.asarray(labels) > 0.5
    if not len(scores):
        return np.empty(0)
    order = np.lexsort((scores, groups))  # by group, then by score
    g, s, y = groups[order], scores[order], positive[order]
    new_group = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(new_group) - 1
    place = np.arange(len(s)) - np.flatnonzero(new_group)[gid]  # 0-based place within the group
    new_run = new_group | np.r_[True, s[1:] != s[:-1]]          # a run of tied scores
    rid = np.cumsum(new_run) - 1
    rank = place[new_run][rid] + (np.bincount(rid)[rid] + 1) / 2  # 1-based average rank
    n_pos = np.bincount(gid, weights=y)
    n_neg = np.bincount(gid) - n_pos
    wins = np.bincount(gid, weights=rank * y) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC over all rows (NaN without both a positive and a negative)."""
    return float(group_auc(scores, labels, np.zeros(len(scores), dtype=np.int64))[0]
                 if len(scores) else np.nan)


def gauc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Mean per-group AUC over the groups with both a positive and a negative row."""
    per_group = group_auc(scores, labels, groups)
    per_group = per_group[~np.isnan(per_group)]
    return float(per_group.mean()) if len(per_group) else float("nan")


def logloss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` against ``labels`` in [0, 1]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())


def binary_metrics(probs: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """(N, T) probabilities and labels, (N,) groups -> ``GAUC``, ``AUC``, ``logloss`` (means
    over the tasks), ``neg_logloss`` (for a metric that is maximised) and, with T > 1, each
    task's as ``AUC_t0``, ``GAUC_t0``, ``logloss_t0``, ..."""
    probs, labels = np.asarray(probs).reshape(len(groups), -1), np.asarray(labels)
    labels = labels.reshape(len(groups), -1)
    if probs.shape != labels.shape:
        raise ValueError(f"probabilities {probs.shape} and labels {labels.shape} differ in shape")
    per_task = [{"AUC": auc(probs[:, t], labels[:, t]),
                 "GAUC": gauc(probs[:, t], labels[:, t], groups),
                 "logloss": logloss(probs[:, t], labels[:, t])} for t in range(probs.shape[1])]
    out = {k: float(np.mean([m[k] for m in per_task])) for k in ("GAUC", "AUC", "logloss")}
    out["neg_logloss"] = -out["logloss"]
    if len(per_task) > 1:
        out.update({f"{k}_t{t}": v for t, m in enumerate(per_task) for k, v in m.items()})
    return out
