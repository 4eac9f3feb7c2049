"""The ``pairs`` kind: user/item factor models trained on (user, positive, negative) triples
(BPR, LightGCN).

Contract: ``config.negatives`` (how ``pair_batches`` draws negatives), ``loss(PairBatch)``,
``score(PairBatch(users)) -> (B, n_items + 1)`` by user index, ``set_graph(train_csr)`` (the
training interactions, data rather than weights: given after building and after loading),
``item_vectors()`` (the item vectors ``score`` multiplies user vectors with) and
``score_history(items)`` (a user known only by items, folded in).

Users without a training interaction have no trained vector. Evaluation serves them the
popularity channel (the items' training counts), counted in run.json (``cold_start``). Serving
(``stage = "all"``) folds in what they are known to have done (``score_history`` of their known
items), as for an explicit history; only a user known to have done nothing gets popularity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch

from genrec.data.batches import PairBatch, n_pair_batches, pair_batches
from genrec.data.dataset import DataError
from genrec.runs.kinds import Kind, Scorer, Similar, cosine

if TYPE_CHECKING:
    import scipy.sparse as sp

    from genrec.data.splits import Split
    from genrec.runs import Run

__all__ = ["PairsKind"]


class PairsKind(Kind):
    name = "pairs"
    trains = True
    cold_fallback = "popularity: the items' training counts"

    def attach(self, model: Any, split: Split) -> None:
        model.set_graph(split.train_matrix())

    def batches(self, run: Run) -> tuple[Callable[[int], Iterable[PairBatch]], int]:
        cfg, split = run.config.train, run.split
        negatives, steps = run.model.config.negatives, n_pair_batches(split, cfg.batch_size)
        if steps == 0:
            raise DataError(f"{run.dataset.name}: the {split.name} split has no training "
                            f"interactions, so {run.config.model} has nothing to learn from")
        return lambda epoch: pair_batches(split, cfg.batch_size, cfg.seed, epoch, negatives), steps

    def cold_users(self, split: Split) -> np.ndarray:
        """(n_users,) True where a user has no training interaction: the model never saw them."""
        return np.diff(split.train_matrix().indptr) == 0

    def scorer(self, run: Run, stage: str) -> Scorer:
        model, cold = run.model, self.cold_users(run.split)
        popularity = torch.from_numpy(run.split.item_counts())
        popularity[0] = -np.inf
        known = run.split.known() if stage == "all" else None  # serving folds cold users in
        model.eval()

        def score(users: np.ndarray) -> torch.Tensor:
            device = next(model.parameters()).device
            users = np.asarray(users, dtype=np.int64)
            with torch.no_grad():  # LightGCN propagates once and reuses it for every chunk
                out = model.score(PairBatch(torch.from_numpy(users)).to(device))
                rows = torch.from_numpy(cold[users]).to(device)
                if rows.any():
                    out[rows] = popularity.to(device, out.dtype)
                    for r in np.flatnonzero(cold[users]) if known is not None else ():
                        seen = known.indices[known.indptr[users[r]]:known.indptr[users[r] + 1]]
                        if len(seen):
                            items = torch.from_numpy(seen.astype(np.int64)).to(device)
                            out[r] = model.score_history(items).to(out.dtype)
            return out

        return score

    def score_history(self, run: Run, items: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            scores = run.model.score_history(torch.as_tensor(items, dtype=torch.int64))
            return scores.double().numpy()

    def similar(self, run: Run, known: sp.csr_matrix) -> Similar:
        """Cosine over the vectors ``score`` uses: LightGCN's after propagation (and fusion), not
        its id table."""
        model = run.model
        with torch.inference_mode():  # LightGCN propagates here once and caches it
            vectors = torch.nn.functional.normalize(model.item_vectors().float(), dim=-1)
        return cosine(f"{type(model).__name__} item vectors as scored (cosine)", vectors.numpy())
