"""Most-popular baseline: every user gets the training-set interaction count of each item.

Reference: the "MostPop" baseline of Cremonesi, Koren & Turrin, "Performance of recommender
algorithms on top-N recommendation tasks" (RecSys 2010). Counts are distinct users per item
(the matrix is binarised), so a repeated interaction counts once. Scores are identical for
every user and ties are real: the evaluator breaks them pessimistically.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1, 1], [0, 1, 0]], dtype=np.float32))
    >>> Popularity(PopularityConfig(n_items=2)).fit(X).score(np.array([0]), X)
    array([[-inf,   2.,   1.]], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from genrec.models._sparse import binary_matrix

__all__ = ["PopularityConfig", "Popularity"]


@dataclass
class PopularityConfig:
    n_items: int = 0  # number of real items, filled from the data (matrices are n_items+1 wide)

    def validate(self) -> None:
        if self.n_items < 0:
            raise ValueError(f"popularity: n_items must be >= 0, got {self.n_items}")


class Popularity:
    kind = "matrix"  # fitted in closed form (genrec.runs.kinds.matrix)

    def __init__(self, config: PopularityConfig) -> None:
        config.validate()
        self.config = config
        self.counts: np.ndarray | None = None  # (n_items+1,) float32, counts[0] = 0

    def fit(self, train: sp.spmatrix) -> "Popularity":
        if self.config.n_items == 0:
            self.config.n_items = train.shape[1] - 1
        x = binary_matrix(train, self.config.n_items, "train matrix")
        self.counts = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray, history: sp.spmatrix) -> np.ndarray:
        """(B, n_items+1) float32: the same item counts for every user; column 0 is -inf."""
        if self.counts is None:
            raise RuntimeError("Popularity has no counts yet: call fit() or load_state_dict()")
        binary_matrix(history[users], self.config.n_items, "history matrix")
        out = np.tile(self.counts, (len(users), 1))
        out[:, 0] = -np.inf
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        if self.counts is None:
            raise RuntimeError("Popularity has nothing to save yet: call fit() first")
        return {"counts": self.counts.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        counts = np.asarray(state["counts"], dtype=np.float32)
        if counts.shape != (self.config.n_items + 1,):
            raise ValueError(f"saved counts have shape {counts.shape}, this config expects "
                             f"({self.config.n_items + 1},); was the run made on another dataset?")
        self.counts = counts.copy()
