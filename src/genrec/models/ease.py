"""EASE: a shallow linear item-item autoencoder with a closed-form solution.

Reference: Steck, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW 2019):
G = X^T X + l2 I, P = G^-1, B = -P / diag(P) column-wise, diag(B) = 0; score(u) = x_u B.
Option ``dropout`` = p > 0 is EDLAE (Steck, "Autoencoders that don't overfit towards the
Identity", NeurIPS 2020): dropout of input items with probability p, in closed form, adds
p / (1 - p) * diag(X^T X) to the L2 penalty on the diagonal of G (the zero-diagonal variant, so
p = 0 is EASE exactly). ``zero_diagonal = False`` drops EASE's diag(B) = 0 constraint: the
same paper's DLAE, B = I - P diag(Lambda) with Lambda the whole added penalty.
Deviations: none in the model. G is inverted in place through its Cholesky factor (LAPACK
potrf/potri: G is symmetric positive definite) in ``dtype``: float64 (default, peak ~12 N^2 bytes
with the float32 copy of B) or float32 (peak ~4 N^2 bytes, B is built in the same buffer; what
makes 40k-item catalogues such as Gowalla fit in 24 GB). B is stored in float32; catalogues above
MAX_ITEMS are refused (B is dense N x N).

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
import scipy.linalg.lapack
import scipy.sparse as sp

from genrec.models._sparse import binary_matrix, check_dense_fits

__all__ = ["EASEConfig", "EASE", "MAX_ITEMS"]

MAX_ITEMS = 50_000
# peak bytes per N^2 entry: float64 G inverted in place + its float32 copy B; float32 all in place
_BYTES = {"float64": 12, "float32": 4}


@dataclass
class EASEConfig:
    n_items: int = 0  # number of real items, filled from the data (matrices are n_items+1 wide)
    l2: float = 500.0  # L2 penalty lambda added to the diagonal of X^T X (Steck uses 500)
    dtype: str = "float64"  # precision of the inversion: float64, or float32 (a third of the memory)
    dropout: float = 0.0  # EDLAE's input dropout p: adds p/(1-p) * diag(X^T X) to the penalty
    zero_diagonal: bool = True  # EASE / EDLAE's diag(B) = 0; False: DLAE, B = I - P diag(Lambda)

    def validate(self) -> None:
        if self.dtype not in _BYTES:
            raise ValueError(f"ease: dtype must be one of {list(_BYTES)}, got {self.dtype!r}")
        if self.l2 <= 0:
            raise ValueError(f"ease: l2 must be > 0 (X^T X alone is usually singular), "
                             f"got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"ease: dropout must be in [0, 1) (0 = plain EASE), got "
                             f"{self.dropout}")
        if self.n_items < 0:
            raise ValueError(f"ease: n_items must be >= 0, got {self.n_items}")
        if self.n_items > MAX_ITEMS:
            gb = _BYTES[self.dtype] * self.n_items**2 / 1e9
            raise ValueError(
                f"ease: {self.n_items:,} items is above the {MAX_ITEMS:,}-item limit: EASE keeps "
                f"a dense {self.n_items:,} x {self.n_items:,} matrix and would need about "
                f"{gb:.0f} GB of memory; use itemcf (sparse top-k neighbours) for large "
                f"catalogues, or shrink the catalogue with a k-core filter")


# The OpenBLAS that numpy/scipy ship (0.3.31) crashes (SIGSEGV) in multi-threaded dpotrf past
# about 15,000 rows on this machine class (14,000 ran, 16,384 and Amazon Sports' 18,357
# crashed, with 2 threads; one thread runs them): larger matrices are factorised on one thread.
_MULTI_THREAD_MAX_ROWS = 14_000


def _inverse_in_place(g: np.ndarray, block: int = 2048) -> np.ndarray:
    """Overwrite the symmetric positive definite Fortran-ordered ``g`` with its inverse.

    potrf/potri compute the upper triangle only; the lower one is then mirrored a block of
    rows at a time, so the extra memory is O(block * N), never a second N x N matrix.
    """
    from threadpoolctl import threadpool_limits

    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (g,))
    one_thread = g.shape[0] > _MULTI_THREAD_MAX_ROWS
    with threadpool_limits(limits=1 if one_thread else None, user_api="blas"):
        g, info = potrf(g, lower=False, clean=False, overwrite_a=True)
        if info == 0:
            g, info = potri(g, lower=False, overwrite_c=True)
    if info != 0:  # l2 > 0 makes G positive definite, so only non-finite input gets here
        raise ValueError(f"ease: X^T X + l2 I is not positive definite (LAPACK info {info}); "
                         f"check the train matrix for NaN/inf values")
    n = g.shape[0]
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        g[lo:hi, :lo] = g[:lo, lo:hi].T  # rows lo:hi, left of the diagonal block
        d = g[lo:hi, lo:hi]
        d[np.tril_indices(hi - lo, -1)] = d.T[np.tril_indices(hi - lo, -1)]
    return g


class EASE:
    kind = "matrix"  # fitted in closed form (genrec.runs.kinds.matrix)

    def __init__(self, config: EASEConfig) -> None:
        config.validate()
        self.config = config
        self.weights: np.ndarray | None = None  # B: (N, N) float32 over real items 1..N

    def fit(self, train: sp.spmatrix) -> "EASE":
        c = self.config
        if c.n_items == 0:
            c.n_items = train.shape[1] - 1
            c.validate()
        check_dense_fits("ease", c.n_items, _BYTES[c.dtype],
                         "set params.dtype = 'float32' (a third of the memory), or use itemcf "
                         "(sparse top-k neighbours) or a k-core filter for this catalogue")
        x = binary_matrix(train, c.n_items, "train matrix")[:, 1:]  # (users, N): drop empty PAD
        # LAPACK works in place only on a Fortran-ordered array of its own dtype
        g = (x.T @ x).astype(c.dtype).toarray(order="F")  # (N, N)
        penalty = np.diag(g) * (c.dropout / (1.0 - c.dropout)) + c.l2  # Lambda; EASE: l2 I
        g[np.diag_indices_from(g)] += penalty
        p = _inverse_in_place(g).T  # P is symmetric: its C-ordered view is P itself
        if c.zero_diagonal:
            p /= -np.diag(p)  # column j divided by -P_jj
            np.fill_diagonal(p, 0.0)
        else:  # DLAE: B = I - P Lambda
            p *= -penalty.astype(p.dtype)
            p[np.diag_indices_from(p)] += 1.0
        # float32 keeps the buffer (no second N x N copy); scipy's sparse @ dense wants C order
        self.weights = p if p.dtype == np.float32 else p.astype(np.float32)
        return self

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """(B, n_items+1) float32 = history rows @ B; column 0 is -inf."""
        if self.weights is None:
            raise RuntimeError("EASE has no weights yet: call fit() or load_state_dict()")
        h = binary_matrix(history[users], self.config.n_items, "history matrix")[:, 1:]  # (B, N)
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
