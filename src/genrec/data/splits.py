"""Train/validation/test splits, exactly as in ARCHITECTURE.md and PROTOCOL.md.

- ``loo``       per user in time order: last = test, second-to-last = validation (users with
                fewer than 3 interactions stay in train only). Protocol P1.
- ``ratio``     per user, rows shuffled with ``seed`` and cut by ``ratios`` (default 8:1:1) with
                RecBole's rounding, so every user with enough rows gets a validation and a test
                item. Protocols P3 (8:1:1) and P4 (``ratios=(0.75, 0, 0.25)``).
- ``temporal``  one global time cut: the earliest ``ratios[0]`` of all rows train, the next
                ``ratios[1]`` validation, the rest test (ties by raw-file order).
- ``fixed``     the split the source ships (LightGCN ``train.txt``/``test.txt``): protocol P2.
                Validation is empty unless ``valid_ratio`` > 0 carves it out of train per user
                (also for ``ratio`` with ``ratios[1] = 0``, e.g. P4; the test part is unchanged).
- ``next_k``    per user in time order: the last ``k`` (default 5) = the test session, the ``k``
                before them = the validation session, the rest train. Users with fewer than
                2k + 1 interactions (no training item left) stay in train only and are counted
                in ``Split.excluded``. Protocol P6 (session generation).

``loo`` with ``new_items`` = f > 0 is protocol P1-new: a seeded random share f of the catalogue
(``seed``) is declared new, and every training interaction with a new item is dropped, so a new
item is only ever a validation or test target. ``history`` and ``sequences`` (the model's inputs)
leave new items out at every stage, so a new item that was a user's validation target is not in
their test input either; ``seen`` (what evaluation masks) keeps it, since the user did interact
with it. ``new_target_users(stage)`` is the slice P1-new reports on. Items keep their content.

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

__all__ = ["Split", "make_split", "SPLITS", "ratio_counts", "draw_new_items"]

SPLITS = ("loo", "ratio", "temporal", "fixed", "next_k")
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
    excluded: int = 0  # next_k: users too short for a test and a validation session (train only)
    # P1-new: sorted item_idx of the items declared new (never in train or in model inputs)
    new_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

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

    def _without_new(self, m: sp.csr_matrix) -> sp.csr_matrix:
        """``m`` (a fresh matrix) without the columns of new items (P1-new)."""
        if len(self.new_items):
            m.data[np.isin(m.indices, self.new_items)] = 0
            m.eliminate_zeros()
        return m

    def history(self, stage: Stage) -> sp.csr_matrix:
        """What the model may see when predicting ``stage``: train (+ validation for test),
        without new items (P1-new). Without new items it is also what evaluation masks."""
        return self._without_new(self.seen(stage))

    def seen(self, stage: Stage) -> sp.csr_matrix:
        """What the user interacted with before ``stage``, new items included: what evaluation
        masks (equal to ``history`` unless the split declares new items)."""
        return self._csr(["train"] if stage == "valid" else ["train", "valid"])

    def new_target_users(self, stage: Stage) -> np.ndarray:
        """(n_users,) bool: users with a new item among their ``stage`` targets (P1-new's
        slice; all False when the split declares no new items)."""
        t = self._part("valid" if stage == "valid" else "test")
        hit = np.isin(t.indices, self.new_items)
        return np.bincount(np.repeat(np.arange(self.n_users), np.diff(t.indptr))[hit],
                           minlength=self.n_users) > 0

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
        df = df.filter(~pl.col("item_idx").is_in(self.new_items.tolist()))  # P1-new: not inputs
        items, users = df["item_idx"].to_numpy(), df["user_idx"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def sessions(self, stage: Stage) -> list[np.ndarray]:
        """Per-user time-ordered ``stage`` items: the true sessions of protocol P6 (empty for
        users without any)."""
        df = self.valid if stage == "valid" else self.test
        df = df.sort(["user_idx", "timestamp"], maintain_order=True)
        items, users = df["item_idx"].to_numpy(), df["user_idx"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def summary(self) -> dict[str, int]:
        out = {"train": self.train.height, "valid": self.valid.height, "test": self.test.height,
               "users": self.n_users, "items": self.n_items}
        if self.name == "next_k":
            out["excluded_users"] = self.excluded
        if len(self.new_items):
            out.update(new_items=len(self.new_items),
                       new_target_users_valid=int(self.new_target_users("valid").sum()),
                       new_target_users_test=int(self.new_target_users("test").sum()))
        return out


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
    """The split of rows by ``part`` (0 train, 1 valid, 2 test; any other value: dropped)."""
    df = df.with_columns(pl.Series("_part", part))
    get = lambda k: df.filter(pl.col("_part") == k).select(_COLS)  # noqa: E731
    return Split(name, get(0), get(1), get(2), n_users, n_items)


def draw_new_items(n_items: int, share: float, seed: int) -> np.ndarray:
    """P1-new's new items: round(share * n_items) distinct item_idx in 1..n_items (at least
    one), drawn with ``seed``, sorted."""
    n_new = max(1, int(round(share * n_items)))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(np.arange(1, n_items + 1), size=n_new, replace=False))


def make_split(
    ds: Dataset,
    name: str = "loo",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 2020,
    valid_ratio: float = 0.0,
    new_items: float = 0.0,
    k: int = 5,
) -> Split:
    """Split ``ds`` by ``name`` (one of SPLITS); see the module docstring for each rule.
    ``new_items`` > 0 (loo only): that share of items is new, seeded by ``seed`` (P1-new).
    ``k``: the session length of ``next_k`` (P6)."""
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
    if new_items and (name != "loo" or not 0 < new_items < 1):
        raise DataError(f"new_items={new_items} with split {name!r}: P1-new declares a share "
                        f"0 < new_items < 1 of the items new and is an option of the loo split; "
                        f"set data.split = \"loo\" and e.g. data.new_items = 0.1")
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
    elif name == "next_k":
        if k < 1:
            raise DataError(f"next_k split needs a session length k >= 1, got {k}")
        part = np.zeros(len(users), dtype=np.int8)
        eligible = n_per_user >= 2 * k + 1  # a test and a validation session and >= 1 train item
        back = n_per_user - pos  # 1 = the newest interaction
        part[eligible & (back <= 2 * k)] = 1
        part[eligible & (back <= k)] = 2
    elif name == "ratio":
        rng = np.random.default_rng(seed)
        shuffled = np.lexsort((rng.random(len(users)), users))  # random order within each user
        rank = np.empty(len(users), dtype=np.int64)
        rank[shuffled] = np.arange(len(users)) - np.searchsorted(users, users[shuffled])
        counts = ratio_counts(np.bincount(users, minlength=ds.n_users), ratios)[users]
        part = np.where(rank < counts[:, 0], 0, np.where(rank < counts[:, 0] + counts[:, 1], 1, 2))
        if valid_ratio > 0:  # P4 ships no validation part: carve one out of train, test unchanged
            if ratios[1] > 0:
                raise DataError(f"valid_ratio={valid_ratio} with ratios {ratios}: the split "
                                f"already has a validation part; set ratios[1] = 0 or drop "
                                f"data.valid_ratio")
            carve = np.random.default_rng([seed, 1]).random(len(users)) < valid_ratio
            part[(part == 0) & carve] = 1
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
    new = np.zeros(0, dtype=np.int64)
    if new_items:  # P1-new: a new item's training rows are dropped; it stays a valid/test target
        new = draw_new_items(ds.n_items, new_items, seed)
        part[(part == 0) & np.isin(df["item_idx"].to_numpy(), new)] = -1
    split = _by_part(df, np.asarray(part, dtype=np.int8), ds.n_users, ds.n_items, name)
    split.new_items = new
    if name == "next_k":
        split.excluded = int((np.bincount(users, minlength=ds.n_users) < 2 * k + 1).sum())
    return split
