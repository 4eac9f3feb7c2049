"""EASE: a shallow linear item-item autoencoder with a closed-form solution.

Reference: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019):
G = X^T X + l2 I, P = G^-1, B = -P / diag(P) column-wise, diag(B) = 0; score(u) = x_u B.
Deviations: none in the model. The inverse is taken in float64 (in place, to halve peak memory)
and B is stored in float32; catalogues above MAX_ITEMS are refused (B is dense N x N).

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 1, 0, 1]], dtype=np.float32))
    >>> m = EASE(EASEConfig(n_items=3, l2=1.0)).fit(X)
    >>> m.score(np.array([0]), X).round(3)
    array([[-inf,  0.5,  0.4,  0.2]], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

__all__ = ["EASEConfig", "EASE", "MAX_ITEMS"]

MAX_ITEMS = 50_000


@dataclass
class EASEConfig:
    n_items: int = 0  # number of real items, filled from the data (matrices are n_items+1 wide)
    l2: float = 500.0  # L2 penalty lambda added to the diagonal of X^T X (Steck uses 500)

    def validate(self) -> None:
        if self.l2 <= 0:
            raise ValueError(f"ease: l2 must be > 0 (X^T X alone is usually singular), "
                             f"got {self.l2}")
        if self.n_items < 0:
            raise ValueError(f"ease: n_items must be >= 0, got {self.n_items}")
        if self.n_items > MAX_ITEMS:
            gb = 12 * self.n_items**2 / 1e9  # float64 G (inverted in place) + float32 B
            raise ValueError(
                f"ease: {self.n_items:,} items is above the {MAX_ITEMS:,}-item limit: EASE keeps "
                f"a dense {self.n_items:,} x {self.n_items:,} matrix and would need about "
                f"{gb:.0f} GB of memory; use itemcf (sparse top-k neighbours) for large "
                f"catalogues, or shrink the catalogue with a k-core filter")


def _checked(matrix: sp.spmatrix, n_items: int, what: str) -> sp.csr_matrix:
    """Binary float32 CSR copy of ``matrix``, which must be (users, n_items+1) with PAD empty."""
    m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    if m.shape[1] != n_items + 1:
        raise ValueError(f"{what} has {m.shape[1]} columns but n_items={n_items}: matrices must "
                         f"be users x (n_items + 1) with column 0 = PAD; build them with "
                         f"Split.train_matrix() / Split.history()")
    m.sum_duplicates()
    m.eliminate_zeros()
    if (m.indices == 0).any():
        raise ValueError(f"{what} has interactions in column 0, which is PAD; item indices "
                         f"start at 1 (shift 0-based item ids by one)")
    m.data[:] = 1.0  # implicit feedback: a user counts once per item, whatever the rating
    return m


class EASE:
    def __init__(self, config: EASEConfig) -> None:
        config.validate()
        self.config = config
        self.weights: np.ndarray | None = None  # B: (N, N) float32 over real items 1..N

    def fit(self, train: sp.spmatrix) -> "EASE":
        c = self.config
        if c.n_items == 0:
            c.n_items = train.shape[1] - 1
            c.validate()
        x = _checked(train, c.n_items, "train matrix")[:, 1:]  # (users, N): drop empty PAD
        # G is symmetric, so a Fortran-ordered copy lets LAPACK invert it in place
        g = (x.T @ x).astype(np.float64).toarray(order="F")  # (N, N)
        g[np.diag_indices_from(g)] += c.l2
        p = scipy.linalg.inv(g, overwrite_a=True, check_finite=False)
        del g
        p /= -np.diag(p)  # column j divided by -P_jj
        np.fill_diagonal(p, 0.0)
        self.weights = p.astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """(B, n_items+1) float32 = history rows @ B; column 0 is -inf."""
        if self.weights is None:
            raise RuntimeError("EASE has no weights yet: call fit() or load_state_dict()")
        h = _checked(history[users], self.config.n_items, "history matrix")[:, 1:]  # (B, N)
        out = np.empty((h.shape[0], self.config.n_items + 1), dtype=np.float32)
        out[:, 0] = -np.inf
        out[:, 1:] = h @ self.weights
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.weights is None:
            raise RuntimeError("EASE has nothing to save yet: call fit() first")
        return {"weights": self.weights.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        w = np.asarray(state["weights"], dtype=np.float32)
        n = self.config.n_items
        if w.shape != (n, n):
            raise ValueError(f"saved EASE weights have shape {w.shape}, this config expects "
                             f"({n}, {n}); was the run made on another dataset?")
        self.weights = w.copy()
