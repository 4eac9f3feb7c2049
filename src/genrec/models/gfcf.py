"""GF-CF: a linear item-item filter plus an ideal low-pass filter, in closed form, no training.

Reference: Shen et al., "How Powerful is Graph Convolution for Recommendation?" (CIKM 2021):
R~ = D_U^-1/2 R D_I^-1/2, P~ = R~^T R~, V = the top-k right singular vectors of R~ (items x k);
score(u) = r_u P~ + alpha r_u D_I^-1/2 V V^T D_I^1/2 (the authors' Gowalla setting: alpha 0.3,
k 256, their Recall@20 / NDCG@20 0.1849 / 0.1518).
Optional sharpening (BSPM, Choi et al., SIGIR 2022, "Blurring-Sharpening Process Models for
Collaborative Filtering"): the GF-CF score s0 is the blurred signal (their Euler steps with
T_b = T_idl = 1 are exactly r P~ and r D_I^-1/2 V V^T D_I^1/2, idl_beta = alpha), then the
sharpening ODE ds/dt = -s P~ runs for time ``sharpen`` in ``sharpen_steps`` RK4 steps. For this
linear ODE one RK4 step of size h is exactly s (I - hP~ + (hP~)^2/2 - (hP~)^3/6 + (hP~)^4/24),
applied by Horner's rule (4 products with P~ per step). Their Gowalla setting: alpha 0.2, k 448,
sharpen 2.5, one step (BSPM-EM, their Recall@20 / NDCG@20 0.1920 / 0.1626).
Option ``linear = "ease"``: the linear filter is EASE's item-item weights (Steck, WWW 2019; with
``dropout`` > 0 EDLAE's, NeurIPS 2020) instead of P~, beside the same ideal low-pass filter:
score(u) = r_u B + alpha r_u D_I^-1/2 V V^T D_I^1/2. Not in the GF-CF paper, which names such
learned linear filters as the family its P~ belongs to; on dense data (MovieLens) B is the
stronger linear filter. B is dense N x N (refused before any work where it would not fit).
Option ``text_weight`` (beta) > 0: the filters blended with content similarity (issue 18). Z =
the items' text vectors (``content``, given by the builder through ``set_content``), L2-normalised;
an item without a vector has a zero row. Of a user's history, n_u items have a vector.
``text_side`` "item": + beta r_u C / n_u with C = Z Z^T, zero diagonal (the mean cosine between
item j and the user's other history items); "user": + beta cos(r_u Z, z_j) (the cosine between j
and the user's mean text vector); "both": the two. Either term lies in [-1, 1] whatever the
dataset and history length, so one beta means the same across datasets. The text term is added
after sharpening, and an item nobody trained on but with a vector gets it alone: text reaches
cold items. A user without a history item with a vector gets no text term.
Deviations: users or items without a training interaction get normalisation 0, not inf (the
authors' code multiplies by 1/0 = inf on such items), so they get and give score 0; V comes from
ARPACK (scipy svds) with a fixed start vector, so a fit is deterministic.

Memory (U users, N items, k): P~ is never built: the linear part is scored as (r R~^T) R~, so
the model keeps the sparse R~ (8 bytes per training interaction: ~6.5 MB for Gowalla, where P~
would hold ~47M entries and ~380 MB) and V, 4 N k bytes (~42 MB for Gowalla's 41k items at
k 256); text adds Z, 4 N C bytes (C = Z Z^T is never built: r_u C = (r_u Z) Z^T). ``score``
works on chunks of at most _CHUNK_CELLS / N users, so its temporaries stay under ~100 MB whatever
batch it is given.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1, 1, 0], [0, 1, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]],
    ...                            dtype=np.float32))
    >>> m = GFCF(GFCFConfig(n_items=3, k=1, alpha=0.3)).fit(X)
    >>> m.score(np.array([0]), X).round(3)  # k = 1: the ideal filter is |r_u| * popularity share
    array([[ -inf, 1.128, 0.876, 0.626]], dtype=float32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg

from genrec.models._sparse import binary_matrix
from genrec.models.ease import EASE, EASEConfig

__all__ = ["GFCFConfig", "GFCF"]

_DTYPES = ("float32", "float64")
LINEAR = ("normalized", "ease")  # P~ = R~^T R~ (the paper) | EASE / EDLAE weights
TEXT_SIDES = ("item", "user", "both")  # see the module docstring
_CHUNK_CELLS = 1 << 22  # users x items scored at once inside ``score``
_SEED = 0  # ARPACK's start vector: the same matrix always gives the same V
_RANK_TOL = 1e-4  # a kept singular value below this (the largest is 1) means k > rank(R~)


@dataclass
class GFCFConfig:
    n_items: int = 0  # number of real items, filled from the data (matrices are n_items+1 wide)
    alpha: float = 0.3  # weight of the ideal low-pass filter beside the linear one (paper: 0.3)
    k: int = 256  # singular vectors of R~ in the ideal filter; must be < min(users, items)
    dtype: str = "float32"  # precision of the SVD and of the stored filters: float32 | float64
    sharpen: float = 0.0  # BSPM's sharpening time T_s (ds/dt = -s P~); 0 = plain GF-CF
    sharpen_steps: int = 1  # RK4 steps over the sharpening time (BSPM's K_s)
    linear: str = "normalized"  # linear filter: normalized (P~, the paper) | ease (dense B)
    l2: float = 500.0  # linear = "ease": EASE's L2 penalty lambda
    dropout: float = 0.0  # linear = "ease": EDLAE's input dropout p (0 = EASE)
    zero_diagonal: bool = True  # linear = "ease": diag(B) = 0 (EASE, EDLAE); False: DLAE
    text_weight: float = 0.0  # beta: weight of the text term beside the filters (0 = no text)
    text_side: str = "item"  # item (mean cosine to the history) | user (cosine to the user's
    #                          mean text vector) | both
    content: str = ""  # text_weight > 0: encoder name in the dataset's item_vectors, or a
    #                    .parquet/.npz/.npy file keyed by raw item id (read by the builder)
    content_dim: int = 0  # C: width of the text vectors, filled by the builder

    def validate(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"gfcf: dtype must be one of {list(_DTYPES)}, got {self.dtype!r}")
        if self.k < 1:
            raise ValueError(f"gfcf: params.k must be >= 1 (singular vectors in the ideal "
                             f"low-pass filter), got {self.k}")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"gfcf: params.alpha must be a finite number >= 0 (0 = the linear "
                             f"filter alone), got {self.alpha}")
        if not (math.isfinite(self.sharpen) and self.sharpen >= 0) or self.sharpen_steps < 1:
            raise ValueError(f"gfcf: params.sharpen must be a finite number >= 0 (0 = off) and "
                             f"params.sharpen_steps >= 1, got {self.sharpen}, "
                             f"{self.sharpen_steps}")
        if self.linear not in LINEAR:
            raise ValueError(f"gfcf: params.linear must be one of {list(LINEAR)}, got "
                             f"{self.linear!r}")
        if self.linear == "ease":
            self.ease_config().validate()
        if self.n_items < 0:
            raise ValueError(f"gfcf: n_items must be >= 0, got {self.n_items}")
        if not (math.isfinite(self.text_weight) and self.text_weight >= 0):
            raise ValueError(f"gfcf: params.text_weight must be a finite number >= 0 (0 = no "
                             f"text), got {self.text_weight}")
        if self.text_side not in TEXT_SIDES:
            raise ValueError(f"gfcf: params.text_side must be one of {list(TEXT_SIDES)}, got "
                             f"{self.text_side!r}")
        if self.text_weight > 0 and not self.content:
            raise ValueError("gfcf: params.text_weight > 0 needs params.content: an encoder name "
                             "whose vectors `genrec embed items` wrote, or a .parquet/.npz/.npy "
                             "file keyed by raw item id")
        if self.content_dim < 0:
            raise ValueError(f"gfcf: content_dim must be >= 0, got {self.content_dim}")

    def ease_config(self) -> EASEConfig:
        return EASEConfig(n_items=self.n_items, l2=self.l2, dtype=self.dtype,
                          dropout=self.dropout, zero_diagonal=self.zero_diagonal)

    def check_k(self, n_users: int, n_items: int) -> None:
        """The SVD needs k < min(n_users, n_items); checked before any work."""
        bound = min(n_users, n_items) - 1
        if self.k > bound:
            raise ValueError(f"gfcf: params.k {self.k} is more than the matrix allows "
                             f"(min(n_users, n_items) - 1 = min({n_users}, {n_items}) - 1 = "
                             f"{bound}); lower params.k")


def _inv_sqrt(degree: np.ndarray) -> np.ndarray:
    """degree^-1/2, and 0 where the degree is 0 (an isolated user or item is left out)."""
    out = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=out, where=degree > 0)
    return out


def _top_right_singular_vectors(r: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(V (N, k), s (k,)) of the k largest singular values of ``r``; deterministic (seeded)."""
    v0 = np.random.default_rng(_SEED).standard_normal(min(r.shape)).astype(r.dtype)
    _, s, vt = scipy.sparse.linalg.svds(r, k=k, v0=v0, solver="arpack",
                                        return_singular_vectors="vh")
    return np.ascontiguousarray(vt.T, dtype=r.dtype), s


class GFCF:
    kind = "matrix"  # fitted in closed form (genrec.runs.kinds.matrix)

    def __init__(self, config: GFCFConfig) -> None:
        config.validate()
        self.config = config
        self.r_norm: sp.csr_matrix | None = None  # R~: (U, N) sparse; P~ = R~^T R~ implicitly
        self.r_norm_t: sp.csr_matrix | None = None  # R~^T as CSR, for r R~^T
        self.v: np.ndarray | None = None  # V: (N, k), top-k right singular vectors of R~
        self.item_degree: np.ndarray | None = None  # (N,) training users per item
        self.ease: EASE | None = None  # linear = "ease": its dense weights replace P~
        self.text: np.ndarray | None = None  # Z: (N, C) unit text vectors, zero row = none
        self.text_sq: np.ndarray | None = None  # (N,) |z_j|^2: C's diagonal, 0 = no vector

    def set_content(self, vectors: np.ndarray, present: np.ndarray | None = None) -> None:
        """Item text vectors (n_items + 1, C), row 0 = PAD; ``present``: the real rows (default:
        the non-zero ones). Kept L2-normalised, and saved with the filters."""
        c = self.config
        v = np.asarray(vectors, dtype=c.dtype)
        if c.n_items == 0 and v.ndim == 2:
            c.n_items = v.shape[0] - 1
        if v.ndim != 2 or v.shape[0] != c.n_items + 1 or \
                (c.content_dim and v.shape[1] != c.content_dim):
            raise ValueError(f"gfcf: text vectors have shape {v.shape}; this config expects "
                             f"({c.n_items + 1}, {c.content_dim or 'C'}) (row 0 = PAD): were "
                             f"they made for another dataset?")
        keep = np.ones(c.n_items, dtype=bool) if present is None else \
            np.asarray(present, dtype=bool)[1:].copy()
        z = np.where(keep[:, None], v[1:], 0)
        norm = np.linalg.norm(z, axis=1)
        self._set_text(z / np.where(norm > 0, norm, 1)[:, None])  # zero rows stay zero

    def _set_text(self, z: np.ndarray) -> None:
        """Z (N, C), rows unit length or zero."""
        self.text, self.text_sq = np.ascontiguousarray(z), (z * z).sum(axis=1)
        self.config.content_dim = z.shape[1]

    def fit(self, train: sp.spmatrix) -> "GFCF":
        c = self.config
        if c.n_items == 0:
            c.n_items = train.shape[1] - 1
            c.validate()
        c.check_k(train.shape[0], c.n_items)
        if c.linear == "ease":  # first: it refuses a catalogue whose dense B would not fit
            self.ease = EASE(c.ease_config()).fit(train)
        r = binary_matrix(train, c.n_items, "train matrix")[:, 1:].astype(c.dtype)  # (U, N)
        d_user = np.asarray(r.sum(axis=1), dtype=c.dtype).ravel()
        d_item = np.asarray(r.sum(axis=0), dtype=c.dtype).ravel()
        r_norm = (sp.diags(_inv_sqrt(d_user)) @ r @ sp.diags(_inv_sqrt(d_item))).tocsr()
        v, s = _top_right_singular_vectors(r_norm, c.k)
        if s.min() < _RANK_TOL * max(float(s.max()), 1e-30):
            raise ValueError(f"gfcf: params.k {c.k} is more than the rank of the normalised "
                             f"train matrix ({int((s >= _RANK_TOL * s.max()).sum())} of the {c.k} "
                             f"largest singular values are not ~0); lower params.k")
        self._set_r(r_norm)
        self.v, self.item_degree = v, d_item
        return self

    def _set_r(self, r_norm: sp.csr_matrix) -> None:
        r_norm.sort_indices()
        self.r_norm, self.r_norm_t = r_norm, r_norm.T.tocsr()

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """(B, n_items+1) float32 = r P~ (or r B) + alpha r D_I^-1/2 V V^T D_I^1/2 (+ beta text);
        column 0 -inf."""
        if self.r_norm is None or self.v is None or self.item_degree is None:
            raise RuntimeError("GFCF has no filters yet: call fit() or load_state_dict()")
        n, dtype = self.config.n_items, self.r_norm.dtype
        h = binary_matrix(history[users], n, "history matrix")[:, 1:].astype(dtype)  # (B, N)
        h_in = (h @ sp.diags(_inv_sqrt(self.item_degree))).tocsr()  # r D_I^-1/2
        d_out = np.sqrt(self.item_degree)  # D_I^1/2: 0 for an item nobody trained on
        out = np.empty((h.shape[0], n + 1), dtype=np.float32)
        out[:, 0] = -np.inf
        step = max(1, _CHUNK_CELLS // max(n, 1))
        for lo in range(0, h.shape[0], step):
            hi = min(lo + step, h.shape[0])
            ideal = (h_in[lo:hi] @ self.v) @ self.v.T  # (b, k) @ (k, N): dense
            ideal *= self.config.alpha * d_out
            if self.ease is not None:
                ideal += h[lo:hi] @ self.ease.weights  # r B, dense
            else:
                ideal += ((h[lo:hi] @ self.r_norm_t) @ self.r_norm).toarray()  # r P~, sparse
            if self.config.sharpen:
                ideal = self._sharpen(ideal)
            if self.config.text_weight:
                ideal += self.config.text_weight * self._text_term(h[lo:hi])
            out[lo:hi, 1:] = ideal
        return out

    def _text_term(self, h: sp.csr_matrix) -> np.ndarray:
        """(b, N) text term of ``text_side`` (without beta) for binary history rows ``h`` (b, N)."""
        z, sq = self.text, self.text_sq
        if z is None or sq is None:
            raise RuntimeError("gfcf: params.text_weight > 0 but the model has no text vectors: "
                               "call set_content() (build_model does, from params.content)")
        hz = np.asarray(h @ z)  # (b, C): r_u Z, the sum of the history's unit vectors
        out = np.zeros((h.shape[0], z.shape[0]), dtype=z.dtype)
        if self.config.text_side in ("item", "both"):
            sim = hz @ z.T  # (b, N): r_u Z Z^T
            rows, cols = h.nonzero()
            sim[rows, cols] -= sq[cols]  # C's diagonal: an item is not similar to itself
            n_with = np.asarray(h @ (sq > 0).astype(z.dtype)).ravel()  # n_u
            out += sim / np.maximum(n_with, 1)[:, None]
        if self.config.text_side in ("user", "both"):
            norm = np.linalg.norm(hz, axis=1)
            out += (hz / np.where(norm > 0, norm, 1)[:, None]) @ z.T  # cos(r_u Z, z_j)
        return out

    def _sharpen(self, s: np.ndarray) -> np.ndarray:
        """BSPM's sharpening: ``sharpen_steps`` RK4 steps of ds/dt = -s P~ from s (b, N)."""
        h = -self.config.sharpen / self.config.sharpen_steps
        for _ in range(self.config.sharpen_steps):
            t = s  # Horner: s (I + hP (I + hP/2 (I + hP/3 (I + hP/4)))) = one RK4 step
            for j in (4, 3, 2, 1):
                t = s + (h / j) * ((t @ self.r_norm_t) @ self.r_norm)  # t P~ without P~
            s = np.asarray(t, dtype=s.dtype)
        return s

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.r_norm is None or self.v is None or self.item_degree is None:
            raise RuntimeError("GFCF has nothing to save yet: call fit() first")
        r = self.r_norm
        state = {"r_data": r.data.copy(), "r_indices": r.indices.copy(),
                 "r_indptr": r.indptr.copy(), "v": self.v.copy(),
                 "item_degree": self.item_degree.copy()}
        if self.ease is not None:
            state["ease_weights"] = self.ease.state_dict()["weights"]
        if self.text is not None:
            state["text"] = self.text.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        n, dtype = self.config.n_items, self.config.dtype
        v = np.asarray(state["v"], dtype=dtype)
        degree = np.asarray(state["item_degree"], dtype=dtype)
        indices = np.asarray(state["r_indices"])
        indptr = np.asarray(state["r_indptr"])
        if v.shape != (n, self.config.k) or degree.shape != (n,) or \
                (len(indices) and indices.max() >= n):
            raise ValueError(f"saved GFCF filters have V {v.shape}, degrees {degree.shape}; this "
                             f"config expects ({n}, {self.config.k}), ({n},): was the run made "
                             f"on another dataset or with another params.k?")
        data = np.asarray(state["r_data"], dtype=dtype)
        r_norm = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n), copy=True)
        r_norm.check_format(full_check=True)
        self._set_r(r_norm)
        self.v, self.item_degree = v.copy(), degree.copy()
        if self.config.linear == "ease":
            if "ease_weights" not in state:
                raise ValueError("saved GFCF filters have no EASE weights but params.linear = "
                                 "'ease': was the run made with another params.linear?")
            self.ease = EASE(self.config.ease_config())
            self.ease.load_state_dict({"weights": state["ease_weights"]})
        if "text" in state:
            text = np.asarray(state["text"], dtype=dtype)
            if text.ndim != 2 or text.shape[0] != n or \
                    (self.config.content_dim and text.shape[1] != self.config.content_dim):
                raise ValueError(f"saved GFCF text vectors have shape {text.shape}; this config "
                                 f"expects ({n}, {self.config.content_dim or 'C'}): was the run "
                                 f"made with other item vectors?")
            self._set_text(text)
        elif self.config.text_weight:
            raise ValueError("saved GFCF filters have no text vectors but params.text_weight > 0: "
                             "was the run made without text?")
