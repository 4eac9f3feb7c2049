"""The ``matrix`` kind: models fitted in closed form on the interaction matrix (popularity,
ItemCF, EASE).

Contract: ``fit(interactions_csr)`` and ``score(users, history_csr) -> (B, n_items + 1)`` with
column 0 (PAD) at -inf; ``state_dict`` / ``load_state_dict`` of numpy arrays (``model.npz``).
A user is the row of the history matrix, so an explicit history is a one-row matrix and a
user without history is an empty row: nothing here needs a fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from genrec.runs.kinds import Kind, Scorer, Similar, sparse_row

if TYPE_CHECKING:
    from genrec.runs import Run

__all__ = ["MatrixKind"]


class MatrixKind(Kind):
    name = "matrix"

    def fit(self, model: Any, interactions: sp.csr_matrix) -> None:
        model.fit(interactions)

    def scorer(self, run: Run, stage: str) -> Scorer:
        model = run.model
        history = run.split.known() if stage == "all" else run.split.history(stage)
        return lambda users: model.score(users, history)

    def score_history(self, run: Run, items: np.ndarray) -> np.ndarray:
        n1 = run.split.n_items + 1
        row = sp.csr_matrix((np.ones(len(items), dtype=np.float32),
                             (np.zeros(len(items), dtype=np.int64), items)), shape=(1, n1))
        return np.asarray(run.model.score(np.array([0]), row), dtype=np.float64)[0]

    def similar(self, run: Run, known: sp.csr_matrix) -> Similar:
        """The model's own item-item structure when it has one (EASE's weights, ItemCF's top-k
        neighbours), else co-occurrence."""
        model, n1 = run.model, known.shape[1]
        weights = getattr(model, "weights", None)
        if isinstance(weights, np.ndarray) and weights.shape == (n1 - 1, n1 - 1):
            # EASE: B[i, j] is how much having i raises j's score
            return "EASE item-item weights", lambda i: np.concatenate([[-np.inf], weights[i - 1]])
        sim = getattr(model, "sim", None)
        if sp.issparse(sim) and sim.shape == (n1, n1):
            return "ItemCF top-k cosine neighbours", lambda i: sparse_row(sim.getrow(i), n1)
        return super().similar(run, known)
