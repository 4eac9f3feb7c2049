"""Train/validation/test splits, exactly as in ARCHITECTURE.md and PROTOCOL.md.

- ``loo``       per user in time order: last = test, second-to-last = validation (users with
                fewer than 3 interactions stay in train only). Protocol P1.
- ``ratio``     per user, rows shuffled with ``seed`` and cut by ``ratios`` (default 8:1:1) with
                RecBole's rounding, so every user with enough rows gets a validation and a test
                item. Protocols P3 (8:1:1) and P4 (``ratios=(0.75, 0, 0.25)``).
- ``temporal``  one global time cut: the earliest ``ratios[0]`` of all rows train, the next
                ``ratios[1]`` validation, the rest test (ties by raw-file order).
- ``fixed``     the split the source ships (LightGCN ``train.txt``/``test.txt``): protocol P2.
                Validation is empty unless ``valid_ratio`` > 0 carves it out of train per user.

Rows keep the dataset's (user, time, file order) order, so ``train`` per user is a time-sorted
sequence. Example:
    >>> split = make_split(ds, "loo")                   # doctest: +SKIP
    >>> split.history("test")   # CSR user x (n_items+1): train + validation items
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from genrec.data.dataset import DataError, Dataset

__all__ = ["Split", "make_split", "SPLITS", "ratio_counts"]

SPLITS = ("loo", "ratio", "temporal", "fixed")
Stage = Literal["valid", "test"]
_COLS = ["user_idx", "item_idx", "timestamp", "rating"]


@dataclass
class Split:
    name: str
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    n_users: int
    n_items: int  # real items; matrices have n_items + 1 columns (0 = PAD)

    # per-part binary CSR matrices, built once: the frames are treated as read-only
    _parts: dict[str, sp.csr_matrix] = field(default_factory=dict, init=False, repr=False,
                                             compare=False)

    def _part(self, name: str) -> sp.csr_matrix:
        if name not in self._parts:
            df = getattr(self, name)
            u, i = df["user_idx"].to_numpy(), df["item_idx"].to_numpy()
            m = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)),
                              shape=(self.n_users, self.n_items + 1))
            m.data[:] = 1.0  # duplicates (dedup off) still count once
            self._parts[name] = m
        return self._parts[name]

    def _csr(self, names: list[str]) -> sp.csr_matrix:
        """A fresh binary matrix of the union of the parts (the caller may modify it)."""
        m = self._part(names[0]).copy()
        for name in names[1:]:
            m = m + self._part(name)  # a sorted merge of two CSR matrices, no re-sort
        m.data[:] = 1.0
        return m

    def train_matrix(self) -> sp.csr_matrix:
        return self._csr(["train"])

    def item_counts(self) -> np.ndarray:
        """(n_items + 1,) float32: training users per item (0 at PAD), the items' popularity."""
        return np.asarray(self._part("train").sum(axis=0), dtype=np.float32).ravel()

    def history(self, stage: Stage) -> sp.csr_matrix:
        """What the model may see (and what is masked) when predicting ``stage``."""
        return self._csr(["train"] if stage == "valid" else ["train", "valid"])

    def known(self) -> sp.csr_matrix:
        """Every interaction (train + valid + test): what serving sees and never recommends back."""
        return self._csr(["train", "valid", "test"])

    def targets(self, stage: Stage) -> sp.csr_matrix:
        return self._csr(["valid" if stage == "valid" else "test"])

    def sequences(self, stage: Stage | Literal["train"]) -> list[np.ndarray]:
        """Per-user time-ordered item sequences of what is known before ``stage``."""
        frames = {"train": [self.train], "valid": [self.train],
                  "test": [self.train, self.valid]}[stage]
        df = pl.concat(frames).sort(["user_idx", "timestamp"], maintain_order=True)
        items, users = df["item_idx"].to_numpy(), df["user_idx"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def summary(self) -> dict[str, int]:
        return {"train": self.train.height, "valid": self.valid.height, "test": self.test.height,
                "users": self.n_users, "items": self.n_items}


def ratio_counts(total: np.ndarray, ratios: tuple[float, ...]) -> np.ndarray:
    """Per-user part sizes with RecBole's rounding (``_calcu_split_ids``), vectorised.

    Each part gets floor(ratio * total); train takes the rest; then, from the last part
    backwards, a part whose exact share is in (0, 1) takes one row from train while train
    keeps more than one row.
    """
    total = np.asarray(total, dtype=np.int64)
    cnt = np.stack([np.floor(r * total).astype(np.int64) for r in ratios], axis=1)
    cnt[:, 0] = total - cnt[:, 1:].sum(axis=1)
    for j in range(len(ratios) - 1, 0, -1):
        share = ratios[j] * total
        bump = (cnt[:, 0] > 1) & (share > 0) & (share < 1)
        cnt[bump, j] += 1
        cnt[bump, 0] -= 1
    return cnt


def _by_part(df: pl.DataFrame, part: np.ndarray, n_users: int, n_items: int, name: str) -> Split:
    df = df.with_columns(pl.Series("_part", part))
    get = lambda k: df.filter(pl.col("_part") == k).select(_COLS)  # noqa: E731
    return Split(name, get(0), get(1), get(2), n_users, n_items)


def make_split(
    ds: Dataset,
    name: str = "loo",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2020,
    valid_ratio: float = 0.0,
) -> Split:
    """Split ``ds`` by ``name`` (one of SPLITS); see the module docstring for each rule."""
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    if abs(sum(ratios) - 1.0) > 1e-6 or any(r < 0 for r in ratios):
        raise DataError(f"split ratios must be >= 0 and sum to 1, got {ratios}")
    df = ds.interactions
    users = df["user_idx"].to_numpy()
    # position of each row within its user (rows are stored sorted by user, time, file order)
    starts = np.searchsorted(users, users, side="left")
    pos = np.arange(len(users)) - starts
    n_per_user = np.bincount(users, minlength=ds.n_users)[users]

    if name == "loo":
        part = np.zeros(len(users), dtype=np.int8)
        eligible = n_per_user >= 3
        part[eligible & (pos == n_per_user - 2)] = 1
        part[eligible & (pos == n_per_user - 1)] = 2
    elif name == "ratio":
        rng = np.random.default_rng(seed)
        shuffled = np.lexsort((rng.random(len(users)), users))  # random order within each user
        rank = np.empty(len(users), dtype=np.int64)
        rank[shuffled] = np.arange(len(users)) - np.searchsorted(users, users[shuffled])
        counts = ratio_counts(np.bincount(users, minlength=ds.n_users), ratios)[users]
        part = np.where(rank < counts[:, 0], 0, np.where(rank < counts[:, 0] + counts[:, 1], 1, 2))
    elif name == "temporal":
        order = np.lexsort((np.arange(len(users)), df["timestamp"].to_numpy()))
        cut1, cut2 = int(round(ratios[0] * len(users))), int(round((ratios[0] + ratios[1]) * len(users)))
        part = np.empty(len(users), dtype=np.int8)
        part[order[:cut1]], part[order[cut1:cut2]], part[order[cut2:]] = 0, 1, 2
    else:  # fixed
        if "split" not in df.columns:
            raise DataError(f"{ds.name} ships no fixed split (no 'split' column); "
                            f"use loo, ratio or temporal")
        is_test = (df["split"] == "test").to_numpy()
        part = np.where(is_test, 2, 0).astype(np.int8)
        if valid_ratio > 0:
            rng = np.random.default_rng(seed)
            part[(~is_test) & (rng.random(len(users)) < valid_ratio)] = 1
    return _by_part(df, np.asarray(part, dtype=np.int8), ds.n_users, ds.n_items, name)
