"""Item-based collaborative filtering with sparse top-k cosine neighbours.

Reference: Sarwar et al., "Item-based collaborative filtering recommendation algorithms"
(WWW 2001); defaults and definitions follow RecBole's ItemKNN (cosine, k=100, shrink=0):
sim(i, j) = |U_i ∩ U_j| / (|U_i|^alpha |U_j|^(1-alpha) + shrink), alpha=0.5 being cosine and
other alphas Aiolli's asymmetric cosine (RecSys 2013). Row i of S keeps the k most similar
items j != i, and score(u, j) = sum_i x_ui S[i, j] (history row @ S), as in RecBole.
Deviations: no +1e-6 in the denominator (items nobody saw have no neighbours instead), and ties
at the k-th neighbour go to the lower item index, so the result is fully deterministic.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 1, 0, 1]], dtype=np.float32))
    >>> m = ItemCF(ItemCFConfig(n_items=3)).fit(X)
    >>> m.score(np.array([0]), X).round(3)
    array([[ -inf, 0.707, 0.707, 0.707]], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from genrec.models._sparse import binary_matrix

__all__ = ["ItemCFConfig", "ItemCF"]


@dataclass
class ItemCFConfig:
    n_items: int = 0  # number of real items, filled from the data (matrices are n_items+1 wide)
    k: int = 100  # neighbours kept per item (RecBole ItemKNN default)
    shrink: float = 0.0  # added to the similarity denominator; damps pairs of rare items
    alpha: float = 0.5  # 0.5 = cosine; other values give the asymmetric cosine of Aiolli 2013
    block_items: int = 1024  # items per block when building S; peak memory ~24*block*n_items B

    def validate(self) -> None:
        if self.n_items < 0 or self.k < 1 or self.shrink < 0 or self.block_items < 1:
            raise ValueError(f"itemcf: need n_items >= 0, k >= 1, shrink >= 0, block_items >= 1; "
                             f"got {self}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"itemcf: alpha must be in [0, 1] (0.5 = cosine), got {self.alpha}")


def top_k_mask(sim: np.ndarray, k: int) -> np.ndarray:
    """Mask of each row's k largest positive entries; ties at the k-th go to the lower column."""
    if k >= sim.shape[1]:
        return sim > 0
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]  # (b, 1) k-th largest per row
    above, tied = sim > kth, sim == kth
    room = k - above.sum(axis=1, keepdims=True)
    keep = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
    return keep & (sim > 0)


def item_similarity(x: sp.csr_matrix, k: int, shrink: float, alpha: float,
                    block_items: int = 1024) -> sp.csr_matrix:
    """(N, N) sparse top-k similarity of the columns of binary ``x``, diagonal excluded.

    Works on ``block_items`` rows of S at a time, so memory is O(block_items * N), never N^2.
    """
    n = x.shape[1]
    xt = x.T.tocsr()  # (N, users): row i lists the users of item i
    counts = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
    left, right = counts**alpha, counts ** (1.0 - alpha)
    rows, cols, vals = [], [], []
    for start in range(0, n, block_items):
        co = (xt[start : start + block_items] @ x).tocoo()  # (b, N) co-occurrence counts
        b = min(block_items, n - start)
        sim = np.zeros((b, n))
        # only co-occurring pairs are computed, so zero-count items never divide by zero
        sim[co.row, co.col] = co.data / (left[co.row + start] * right[co.col] + shrink)
        sim[np.arange(b), np.arange(start, start + b)] = 0.0  # an item is not its own neighbour
        r, c = np.nonzero(top_k_mask(sim, k))
        rows.append(r + start)
        cols.append(c)
        vals.append(sim[r, c].astype(np.float32))
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return sp.csr_matrix(data, shape=(n, n), dtype=np.float32)


class ItemCF:
    kind = "matrix"  # fitted in closed form (genrec.runs.kinds.matrix)

    def __init__(self, config: ItemCFConfig) -> None:
        config.validate()
        self.config = config
        self.sim: sp.csr_matrix | None = None  # (N+1, N+1), row/column 0 (PAD) empty
        self._sim_t: sp.csr_matrix | None = None  # S^T as CSR, made once on first score()

    def fit(self, train: sp.spmatrix) -> "ItemCF":
        c = self.config
        if c.n_items == 0:
            c.n_items = train.shape[1] - 1
        x = binary_matrix(train, c.n_items, "train matrix")
        self.sim = item_similarity(x, c.k, c.shrink, c.alpha, c.block_items)
        self._sim_t = None
        return self

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """(B, n_items+1) float32 = history rows @ S^T; column 0 is -inf.

        Row j of S keeps candidate j's top-k neighbours, so a candidate is scored only by the
        history items among ITS neighbours (RecBole ItemKNN); ``history @ S`` would instead let
        each history item vote for its own top-k.
        """
        if self.sim is None:
            raise RuntimeError("ItemCF has no similarities yet: call fit() or load_state_dict()")
        h = binary_matrix(history[users], self.config.n_items, "history matrix")
        if self._sim_t is None:  # one transpose, not one per call (serving scores one user)
            self._sim_t = self.sim.T.tocsr()
        out = (h @ self._sim_t).toarray()
        out[:, 0] = -np.inf
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.sim is None:
            raise RuntimeError("ItemCF has nothing to save yet: call fit() first")
        s = self.sim
        return {"indptr": s.indptr.copy(), "indices": s.indices.copy(), "data": s.data.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        n = self.config.n_items + 1
        if len(state["indptr"]) != n + 1:
            raise ValueError(f"saved similarities cover {len(state['indptr']) - 1} items, this "
                             f"config expects {n} (n_items + 1); was the run made on another "
                             f"dataset?")
        parts = (np.asarray(state["data"], dtype=np.float32), np.asarray(state["indices"]),
                 np.asarray(state["indptr"]))
        self.sim = sp.csr_matrix(parts, shape=(n, n), copy=True)
        self._sim_t = None
